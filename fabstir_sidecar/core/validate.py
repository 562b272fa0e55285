"""Value checks shared by every option source: code, CLI flags and environment variables.

Each check returns the value normalised or raises ConfigError naming the option (or the
environment variable it came from).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, NamedTuple

from fabstir_sidecar.core.errors import ConfigError

_TRUE: Final = frozenset({"true", "1", "yes", "on"})
_FALSE: Final = frozenset({"false", "0", "no", "off"})

P2PD_INT_MAX: Final = 2**63 - 1
"""The largest value p2pd's integer flags (Go ``int``, 64-bit) accept, e.g. ``-connHi``."""


def check_list(value: object, *, name: str, check: Callable[..., str]) -> tuple[str, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise ConfigError(name, value, f"expected a list of strings, got {type(value).__name__}")
    result = []
    for i, item in enumerate(value):
        item_name = f"{name}[{i}]"
        if not isinstance(item, str):
            raise ConfigError(item_name, item, f"expected a string, got {type(item).__name__}")
        result.append(check(item, name=item_name))
    return tuple(result)


def check_bool(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(name, value, "expected a boolean")
    return value


def check_int(value: object, name: str, *, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(name, value, "expected an integer")
    if value < minimum:
        raise ConfigError(name, value, f"must be >= {minimum}")
    if maximum is not None and value > maximum:
        raise ConfigError(name, value, f"must be <= {maximum}")
    return value


def check_seconds(value: object, name: str, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(name, value, "expected a number of seconds")
    if not math.isfinite(value):
        raise ConfigError(name, value, "must be a finite number of seconds")
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(name, value, "must be >= 0 seconds" if allow_zero else "must be > 0")
    return float(value)


def check_optional_str(value: object, name: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value:
        raise ConfigError(name, value, "expected a non-empty string")
    return value


def env_json_list(raw: str, var: str) -> list[Any]:
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            var, raw, f'not valid JSON ({exc.msg}); expected a JSON list such as ["/ip4/..."]'
        ) from exc
    if not isinstance(parsed, list):
        raise ConfigError(
            var, raw, f"expected a JSON list of strings, got JSON {type(parsed).__name__}"
        )
    return parsed


def check_choice(value: object, choices: tuple[str, ...], name: str) -> str:
    """``value`` if it is one of ``choices`` (a ``Literal``'s ``get_args``)."""
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(name, value, f"expected one of {', '.join(choices)}")
    return value


def env_choice(choices: tuple[str, ...]) -> Callable[[str, str], str]:
    """An environment parser for one of ``choices``, case and surrounding space ignored."""

    def parse(raw: str, var: str) -> str:
        word = raw.strip().lower()
        if word not in choices:
            raise ConfigError(var, raw, f"expected one of {', '.join(choices)}")
        return word

    return parse


class EnvVar(NamedTuple):
    """One ``P2P_*`` environment variable: the option it sets, its parser (which sees the raw
    string; range checks are the option's own), and what it means (``ENV_VARS``)."""

    field: str
    parse: Callable[[str, str], Any]
    help: str


def env_bool(raw: str, var: str) -> bool:
    word = raw.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ConfigError(var, raw, "expected true/false, 1/0, yes/no or on/off")


def env_int(raw: str, var: str) -> int:
    try:
        return int(raw.strip())
    except ValueError:
        raise ConfigError(var, raw, "expected an integer") from None


def env_millis(raw: str, var: str) -> float:
    try:
        millis = float(raw.strip())
    except ValueError:
        raise ConfigError(var, raw, "expected a number of milliseconds") from None
    if not math.isfinite(millis) or millis <= 0:
        raise ConfigError(var, raw, "must be a positive, finite number of milliseconds")
    return millis / 1000.0


def seconds_from_millis(millis: float | None, name: str = "milliseconds") -> float | None:
    """A duration given in milliseconds (as the CLI flags and ``P2P_*`` variables give it)
    in seconds, the unit of every ``NodeConfig`` field; ``None`` (not given) stays ``None``.

    Checked here, in the user's unit: ``name`` (the flag) is what the error calls it, so
    ``--connection-timeout -5`` is reported as ``-5`` milliseconds, not ``-0.005``."""
    if millis is None:
        return None
    if isinstance(millis, bool) or not isinstance(millis, int | float):
        raise ConfigError(name, millis, "expected a number of milliseconds")
    if not math.isfinite(millis) or millis <= 0:
        raise ConfigError(name, millis, "must be a positive, finite number of milliseconds")
    return millis / 1000.0


def env_path(raw: str, var: str) -> Path:
    return Path(raw.strip()).expanduser()


def env_str(raw: str, var: str) -> str:
    return raw.strip()
