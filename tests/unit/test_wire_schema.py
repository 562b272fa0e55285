"""Unit tests of the schema engine itself (fabstir_sidecar.wire.schema), on toy messages."""

from __future__ import annotations

import dataclasses
from typing import Annotated, ClassVar

import pytest

from fabstir_sidecar.wire.schema import (
    COUNT,
    IDENT,
    TEXT,
    BadRequestError,
    Message,
    Record,
    RecordList,
    schema,
)


@schema
class Leaf(Message):
    PATH: ClassVar[str] = "leaf"
    name: Annotated[str, IDENT]
    size: Annotated[int | None, COUNT] = None


@schema
class Tree(Message):
    TYPE: ClassVar[str] = "tree"
    root: Annotated[Leaf, Record(Leaf)]
    leaves: Annotated[tuple[Leaf, ...], RecordList(Leaf)] = ()


@schema
class Tagged(Message):
    TAG: ClassVar[str] = "Wrapped"
    PATH: ClassVar[str] = "tagged"
    note: Annotated[str, TEXT]


def test_schema_makes_a_frozen_keyword_only_dataclass_with_path_from_type() -> None:
    assert dataclasses.is_dataclass(Tree)
    assert Tree.PATH == "tree"
    with pytest.raises(TypeError):
        Leaf("x")  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        Leaf(name="x").name = "y"  # type: ignore[misc]


def test_nested_records_encode_in_order_and_round_trip() -> None:
    tree = Tree(root=Leaf(name="r", size=1), leaves=(Leaf(name="a"),))
    data = tree.to_json()
    assert data == {"type": "tree", "root": {"name": "r", "size": 1}, "leaves": [{"name": "a"}]}
    assert Tree.from_json(data) == tree
    assert Tree.from_json({"type": "tree", "root": {"name": "r"}}).leaves == ()


def test_errors_name_the_nested_path() -> None:
    with pytest.raises(BadRequestError, match=r"^tree\.leaves\[1\]\.size: expected integer"):
        Tree.from_json(
            {
                "type": "tree",
                "root": {"name": "r"},
                "leaves": [{"name": "a"}, {"name": "b", "size": "1"}],
            }
        )
    with pytest.raises(BadRequestError, match=r"^leaf\.name: missing required field$"):
        Leaf.from_json({})


def test_a_tag_wraps_the_fields() -> None:
    assert Tagged(note="n").to_json() == {"Wrapped": {"note": "n"}}
    assert Tagged.from_json({"Wrapped": {"note": ""}}) == Tagged(note="")
    with pytest.raises(BadRequestError, match=r"^tagged\.Wrapped: missing required field$"):
        Tagged.from_json({"note": "n"})


def test_every_field_needs_exactly_one_kind() -> None:
    with pytest.raises(TypeError, match="annotate exactly one wire kind"):

        @schema
        class Bad(Message):
            name: str
