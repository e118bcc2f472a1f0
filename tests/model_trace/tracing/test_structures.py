"""Tensors inside nested inputs and outputs: found with readable paths, mapped in place of
the originals, containers kept as they were."""

from __future__ import annotations

import dataclasses
import re
from collections import OrderedDict, defaultdict, namedtuple
from typing import Any

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from model_trace.tracing.structures import map_structure, named_tensors

Pair = namedtuple("Pair", "first second")


@dataclasses.dataclass
class Box:
    value: Any
    note: str = "box"


@dataclasses.dataclass
class Derived:
    """A dataclass with a field its constructor does not take: it cannot be rebuilt."""

    value: Any
    size: int = dataclasses.field(init=False, default=0)


class Loose(tuple):
    """A tuple subclass whose constructor takes its two items, not an iterable of them."""

    def __new__(cls, first: Any, second: Any) -> Loose:
        return super().__new__(cls, (first, second))


def _tensor(number: int) -> torch.Tensor:
    return torch.tensor([number])


_LEAVES = st.one_of(st.integers(0, 999).map(_tensor), st.integers(-5, 5), st.none(),
                    st.text("abc", max_size=3), st.just(Box))  # a dataclass, not an instance
STRUCTURES = st.recursive(_LEAVES, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.lists(inner, max_size=3).map(tuple),
    st.dictionaries(st.text("xyz", min_size=1, max_size=2), inner, max_size=3),
    st.builds(Pair, inner, inner), st.builds(Box, inner, st.text("abc", max_size=2))),
    max_leaves=12)

_PRINTED_TENSOR = re.compile(r"tensor\(\[(\d+)\]\)")


def _printed_order(value: Any) -> list[int]:
    """The tensors' numbers in the order ``repr`` prints them: depth first, in order."""
    return [int(n) for n in _PRINTED_TENSOR.findall(repr(value))]


@settings(max_examples=150, deadline=None)
@given(STRUCTURES)
def test_every_tensor_is_found_in_order_at_a_path_that_leads_to_it(value: Any) -> None:
    found = named_tensors(value, "output")
    assert [int(t) for _, t in found] == _printed_order(value)
    for label, tensor in found:
        assert label.startswith("output")
        assert eval(label, {"output": value}) is tensor  # the path is Python that finds it


@settings(max_examples=150, deadline=None)
@given(STRUCTURES)
def test_mapping_replaces_each_tensor_and_keeps_every_container(value: Any) -> None:
    before = repr(value)
    seen: list[torch.Tensor] = []

    def shifted(tensor: torch.Tensor) -> torch.Tensor:
        seen.append(tensor)
        return tensor + 1000

    mapped = map_structure(value, shifted)
    # the same containers of the same types, the same other values, each tensor mapped
    assert repr(mapped) == _PRINTED_TENSOR.sub(lambda m: f"tensor([{int(m[1]) + 1000}])",
                                               before)
    assert repr(value) == before  # the original is left as it was
    assert sorted(map(id, seen)) == sorted(id(t) for _, t in named_tensors(value, ""))
    assert [label for label, _ in named_tensors(mapped, "v")] == [
        label for label, _ in named_tensors(value, "v")]


def test_a_tensor_alone_is_mapped_and_named() -> None:
    x = torch.ones(2)
    assert map_structure(x, lambda t: t * 3).tolist() == [3.0, 3.0]
    assert named_tensors(x, "x") == [("x", x)]
    assert named_tensors(3, "x") == [] and named_tensors(None, "x") == []
    for leaf in (3, "text", None):  # no tensor, no container: handed back as it is
        assert map_structure(leaf, lambda t: t * 3) is leaf


def test_paths_of_each_kind_of_container() -> None:
    a, b, c, d = (torch.zeros(i) for i in range(1, 5))
    value = {"logits": a, "extra": ("note", [b]), "pair": Pair(c, 0), "box": Box(d)}
    assert [label for label, _ in named_tensors(value, "output")] == [
        "output['logits']", "output['extra'][1][0]", "output['pair'].first",
        "output['box'].value"]


def test_containers_that_cannot_be_rebuilt_alike() -> None:
    x = torch.ones(1)
    loose = map_structure(Loose(x, 1), lambda t: t + 1)  # rebuilt as a plain tuple
    assert type(loose) is tuple and loose[0].tolist() == [2.0] and loose[1] == 1
    derived = Derived(x)
    assert map_structure(derived, lambda t: t + 1) is derived  # left as it is
    assert named_tensors(derived, "d") == [("d.value", x)]


def test_dictionaries_keep_their_type_and_a_defaultdict_its_factory() -> None:
    x = torch.ones(1)
    ordered = map_structure(OrderedDict(b=x, a=1), lambda t: t + 1)
    assert type(ordered) is OrderedDict and list(ordered) == ["b", "a"]
    counts = map_structure(defaultdict(list, {"x": x}), lambda t: t + 1)
    assert type(counts) is defaultdict and counts.default_factory is list
    assert counts["x"].tolist() == [2.0] and counts["missing"] == []


def test_a_container_met_twice_is_rebuilt_once() -> None:
    shared = [torch.ones(1)]
    mapped = map_structure((shared, shared), lambda t: t * 2)
    assert mapped[0] is mapped[1] and mapped[0][0].tolist() == [2.0]


def test_deep_nesting_needs_no_recursion() -> None:
    value: Any = torch.ones(1)
    for _ in range(5000):
        value = [value]
    assert len(named_tensors(value, "v")) == 1
    mapped = map_structure(value, lambda t: t + 1)
    for _ in range(5000):
        mapped = mapped[0]
    assert mapped.tolist() == [2.0]


def test_named_tuples_inside_lists_inside_dicts_keep_their_types() -> None:
    pair = namedtuple("pair", "values count")
    t = torch.ones(2)
    mapped = map_structure({"a": [pair(t, 3), (t, "x")]}, lambda v: v * 2)
    (named, plain) = mapped["a"]
    assert type(named) is pair and named.count == 3 and named.values.tolist() == [2, 2]
    assert type(plain) is tuple and plain[1] == "x" and plain[0].tolist() == [2, 2]
