"""A small declarative schema engine for the JSON wire messages.

A message is a class deriving from :class:`Message`, decorated with :func:`schema` (which
makes it a frozen, keyword-only dataclass), whose fields are annotated with their wire
kind, e.g. ``job_id: Annotated[str, JOB_ID]``. The engine provides ``to_json()`` and
``from_json()``:

* ``to_json`` writes ``type`` first (when the class has a ``TYPE``), then every field in
  declaration order, omitting optional fields that are None; a class with a ``TAG`` is
  wrapped in ``{TAG: {...}}`` (serde's external tagging);
* ``from_json`` validates untrusted input and raises :class:`BadRequestError` naming the
  offending field's path (``status.host.reputation``). A field with a dataclass default is
  optional: absent or ``null`` gives the default. A required field must be present; a
  ``null`` there is reported by its kind (``expected string, got null``). Unknown fields
  are ignored.

Constructors trust their (type-checked) caller; only ``from_json`` validates.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, Final, Protocol, Self, TypeVar

from fabstir_sidecar.core.errors import BadRequestError
from fabstir_sidecar.wire.json_codec import json_type_name

__all__ = [
    "COUNT",
    "FLAG",
    "IDENT",
    "MAX_SAFE_INTEGER",
    "NUMBER",
    "TEXT",
    "BadRequestError",
    "Boolean",
    "Integer",
    "Kind",
    "Message",
    "Number",
    "Record",
    "RecordList",
    "Text",
    "TextList",
    "expect_object",
    "read_field",
    "schema",
    "show",
]

MAX_SAFE_INTEGER: Final = 2**53 - 1
"""The integer range JavaScript peers represent exactly: every wire integer is within +/-."""


def show(value: object) -> str:
    """``value`` as short JSON text, for error messages."""
    text = json.dumps(value, ensure_ascii=True, default=repr)
    return text if len(text) <= 40 else text[:37] + "..."


def _wrong_type(path: str, expected: str, value: object) -> BadRequestError:
    return BadRequestError(path, f"expected {expected}, got {json_type_name(value)}")


def expect_object(value: object, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _wrong_type(path, "object", value)
    return value


# ------------------------------------------------------------------ kinds


class Kind(Protocol):
    """How one field is validated (``decode``) and written (``encode``)."""

    def decode(self, value: object, path: str) -> Any: ...

    def encode(self, value: Any) -> Any: ...


class _Plain:
    """A kind whose Python value is already its JSON value."""

    __slots__ = ()

    def encode(self, value: Any) -> Any:
        return value


class Text(_Plain):
    """A string; identifiers are ``non_empty``; ``max_len`` counts code points."""

    __slots__ = ("max_len", "non_empty")

    def __init__(self, *, non_empty: bool = False, max_len: int | None = None) -> None:
        self.non_empty = non_empty
        self.max_len = max_len

    def decode(self, value: object, path: str) -> str:
        if not isinstance(value, str):
            raise _wrong_type(path, "string", value)
        if self.non_empty and not value:
            raise BadRequestError(path, "must not be empty")
        if self.max_len is not None and len(value) > self.max_len:
            raise BadRequestError(
                path, f"must be at most {self.max_len} characters, got {len(value)}"
            )
        return value


class Integer(_Plain):
    """An integer (never a boolean) between ``min_value`` and :data:`MAX_SAFE_INTEGER`."""

    __slots__ = ("min_value",)

    def __init__(self, *, min_value: int = -MAX_SAFE_INTEGER) -> None:
        self.min_value = min_value

    def decode(self, value: object, path: str) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise _wrong_type(path, "integer", value)
        if not self.min_value <= value <= MAX_SAFE_INTEGER:
            raise BadRequestError(
                path, f"must be between {self.min_value} and {MAX_SAFE_INTEGER}, got {value}"
            )
        return value


class Number(_Plain):
    """A finite number; an integer is accepted and converted to float."""

    __slots__ = ()

    def decode(self, value: object, path: str) -> float:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise _wrong_type(path, "number", value)
        number = float(value)
        if not math.isfinite(number):
            raise BadRequestError(path, "expected a finite number")
        return number


class Boolean(_Plain):
    __slots__ = ()

    def decode(self, value: object, path: str) -> bool:
        if not isinstance(value, bool):
            raise _wrong_type(path, "boolean", value)
        return value


class TextList:
    """An array of non-empty strings, held as a tuple."""

    __slots__ = ()

    def decode(self, value: object, path: str) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise _wrong_type(path, "array", value)
        for i, item in enumerate(value):
            IDENT.decode(item, f"{path}[{i}]")
        return tuple(value)

    def encode(self, value: tuple[str, ...]) -> list[str]:
        return list(value)


M = TypeVar("M", bound="Message")


class Record:
    """A nested object of another schema class."""

    __slots__ = ("cls",)

    def __init__(self, cls: type[Message]) -> None:
        self.cls = cls

    def decode(self, value: object, path: str) -> Message:
        return self.cls.decode_at(value, path)

    def encode(self, value: Message) -> dict[str, Any]:
        return value.to_json()


class RecordList:
    """An array of nested objects of another schema class, held as a tuple."""

    __slots__ = ("cls",)

    def __init__(self, cls: type[Message]) -> None:
        self.cls = cls

    def decode(self, value: object, path: str) -> tuple[Message, ...]:
        if not isinstance(value, list):
            raise _wrong_type(path, "array", value)
        return tuple(self.cls.decode_at(item, f"{path}[{i}]") for i, item in enumerate(value))

    def encode(self, value: tuple[Message, ...]) -> list[dict[str, Any]]:
        return [item.to_json() for item in value]


TEXT: Final = Text()
"""Free text: may be empty."""
IDENT: Final = Text(non_empty=True)
"""An identifier: a non-empty string."""
COUNT: Final = Integer(min_value=0)
NUMBER: Final = Number()
FLAG: Final = Boolean()


def read_field(data: Mapping[str, Any], name: str, kind: Kind, path: str) -> Any:
    """The required field ``name`` of the object at ``path``, decoded by ``kind``."""
    value = data.get(name)
    if value is None and name not in data:
        raise BadRequestError(f"{path}.{name}", "missing required field")
    return kind.decode(value, f"{path}.{name}")


# ------------------------------------------------------------------ messages


@dataclasses.dataclass(frozen=True, slots=True)
class _Spec:
    name: str
    kind: Kind
    required: bool
    plain: bool  # encode is the identity


class Message:
    """Base of every schema class: the generic ``to_json`` / ``from_json``.

    Class attributes: ``TYPE`` (the ``type`` field's value, or None for a nested record),
    ``TAG`` (serde's external tag wrapping the fields, or None) and ``PATH`` (the name
    errors start their path with when the class is decoded on its own).
    """

    __slots__ = ()
    TYPE: ClassVar[str | None] = None
    TAG: ClassVar[str | None] = None
    PATH: ClassVar[str] = ""
    _SPECS: ClassVar[tuple[_Spec, ...]] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {} if self.TYPE is None else {"type": self.TYPE}
        for spec in self._SPECS:
            value = getattr(self, spec.name)
            if value is not None:
                out[spec.name] = value if spec.plain else spec.kind.encode(value)
        return out if self.TAG is None else {self.TAG: out}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Self:
        return cls.decode_at(d, cls.PATH)

    @classmethod
    def decode_at(cls, data: object, path: str) -> Self:
        """Validate ``data`` as this class; errors name fields below ``path``."""
        fields = expect_object(data, path)
        if cls.TAG is not None:
            inner = read_field(fields, cls.TAG, _ANY, path)
            path = f"{path}.{cls.TAG}"
            fields = expect_object(inner, path)
        if cls.TYPE is not None:
            actual = read_field(fields, "type", TEXT, path)
            if actual != cls.TYPE:
                raise BadRequestError(
                    f"{path}.type", f"expected {show(cls.TYPE)}, got {show(actual)}"
                )
        values: dict[str, Any] = {}
        for spec in cls._SPECS:
            value = fields.get(spec.name)
            if value is None:
                if not spec.required:
                    continue  # absent or null: the default
                if spec.name not in fields:
                    raise BadRequestError(f"{path}.{spec.name}", "missing required field")
            values[spec.name] = spec.kind.decode(value, f"{path}.{spec.name}")
        return cls(**values)


class _Any(_Plain):
    __slots__ = ()

    def decode(self, value: object, path: str) -> object:
        return value


_ANY: Final = _Any()


@typing.dataclass_transform(kw_only_default=True, frozen_default=True)
def schema(cls: type[M]) -> type[M]:
    """Make ``cls`` a frozen, slotted, keyword-only dataclass and build its field table.

    ``PATH`` defaults to ``TYPE``. Pass a class through ``dataclasses.dataclass`` first
    to choose other dataclass options (e.g. positional fields).
    """
    if not dataclasses.is_dataclass(cls):
        cls = dataclasses.dataclass(frozen=True, slots=True, kw_only=True)(cls)
    if "PATH" not in cls.__dict__ and cls.TYPE is not None:
        cls.PATH = cls.TYPE
    hints = typing.get_type_hints(cls, include_extras=True)
    specs: list[_Spec] = []
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        metadata = getattr(hints[field.name], "__metadata__", ())
        kinds = [k for k in metadata if hasattr(k, "decode") and hasattr(k, "encode")]
        if len(kinds) != 1:
            raise TypeError(f"{cls.__name__}.{field.name}: annotate exactly one wire kind")
        required = field.default is dataclasses.MISSING
        if field.default_factory is not dataclasses.MISSING:
            raise TypeError(f"{cls.__name__}.{field.name}: use a plain default")
        kind = kinds[0]
        specs.append(_Spec(field.name, kind, required, isinstance(kind, _Plain)))
    cls._SPECS = tuple(specs)
    return cls
