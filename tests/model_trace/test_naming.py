"""Names and numbers as a reader sees them: counts, bytes and seconds read back to the value
they stand for (three digits, the largest unit they reach, never an exponent), and module names
below their enclosing box, folded runs by range and class, loops by what they call."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model_trace.graph import Graph, ModuleCall, Node, Repeat, Stats
from model_trace.naming import (
    display_class,
    format_bytes,
    format_count,
    format_seconds,
    module_label,
    module_name,
    natural_key,
    never_called,
    numbered_run,
)

COUNT = {"": 1, "K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}
BYTES = {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}
SECONDS = {"ns": 1e-9, "µs": 1e-6, "ms": 1e-3, "s": 1.0}


def _read_back(text: str, units: dict[str, float], separator: str) -> tuple[float, str]:
    """The number and unit a formatted figure shows (a reader's reading of it)."""
    match = re.fullmatch(rf"(-?[0-9][0-9,]*(?:\.[0-9]+)?){separator}([a-zµA-Z]*)", text)
    assert match, f"{text!r} is not a number and a unit"
    number, unit = float(match[1].replace(",", "")), match[2]
    assert unit in units, text
    return number, unit


def _check_reading(value: float, text: str, units: dict[str, float], separator: str) -> None:
    number, unit = _read_back(text, units, separator)
    assert number * units[unit] == pytest.approx(value, rel=5e-3, abs=units[unit] * 0.5), text
    smallest, largest = min(units.values()), max(units.values())
    if units[unit] != smallest:  # a unit is taken only once the value reaches it
        assert abs(number) >= 1, text
    if units[unit] != largest:  # and left for the next one up once it rounds to 1000
        assert abs(number) < 1000, text


@settings(deadline=None)
@given(st.one_of(st.integers(-10**16, 10**16),
               st.floats(-1e16, 1e16).filter(lambda v: v == 0 or abs(v) >= 0.01)))
def test_a_count_reads_back_as_its_value_in_the_largest_unit_it_reaches(value: float) -> None:
    text = format_count(value)
    _check_reading(value, text, COUNT, "")
    if isinstance(value, int) and abs(value) < 1000:
        assert text == str(value)


@settings(deadline=None)
@given(st.one_of(st.integers(0, 10**16), st.floats(0, 1e16)))
def test_bytes_read_back_as_their_value_in_the_largest_unit_they_reach(value: float) -> None:
    text = format_bytes(value)
    _check_reading(value, text, BYTES, " ")
    if value < 999.5:
        assert text == f"{round(value)} B"


@settings(deadline=None)
@given(st.floats(1e-9, 1e5))
def test_seconds_read_back_as_their_value_in_the_largest_unit_they_reach(value: float) -> None:
    _check_reading(value, format_seconds(value), SECONDS, " ")


@pytest.mark.parametrize(("value", "text"), [
    (671026419200, "671B"), (37.6e9, "37.6B"), (1234, "1.23K"), (999, "999"), (1000, "1K"),
    (999_499, "999K"), (999_500, "1M"), (-1234, "-1.23K"), (2.5, "2.5"), (3.0, "3"), (0, "0"),
    (1e12, "1T"), (5e15, "5,000T"), (999.7, "1K"),
])
def test_counts(value: float, text: str) -> None:
    assert format_count(value) == text


@pytest.mark.parametrize(("value", "text"), [
    (1.36e12, "1.36 TB"), (512, "512 B"), (999_999, "1 MB"), (1000, "1 kB"), (2.5e9, "2.5 GB"),
    (0, "0 B"),
])
def test_bytes(value: float, text: str) -> None:
    assert format_bytes(value) == text


@pytest.mark.parametrize(("value", "text"), [
    (0, "0 s"), (3.2e-6, "3.2 µs"), (0.0151, "15.1 ms"), (2.5, "2.5 s"), (5e-10, "0.5 ns"),
    (0.9996, "1 s"), (1e-3, "1 ms"), (-0.002, "-2 ms"),
])
def test_seconds(value: float, text: str) -> None:
    assert format_seconds(value) == text


# -- module names --------------------------------------------------------------------------
def _graph(*calls: ModuleCall) -> Graph:
    modules = {c.id: c for c in calls}
    for call in calls:
        if call.parent is not None:
            modules[call.parent].children.append(call.id)
    return Graph(root=calls[0].id, modules=modules, nodes={}, tensors={}, edges=[])


def _repeat(members: list[str]) -> Repeat:
    return Repeat(len(members), members, [Stats() for _ in members])


def test_names_are_relative_to_the_enclosing_call() -> None:
    graph = _graph(ModuleCall("m0", "", "Net", None),
                   ModuleCall("m1", "layers.0", "Block", "m0"),
                   ModuleCall("m2", "layers.0.ffn", "MLP", "m1"),
                   ModuleCall("m3", "layers.0.ffn.act", "GELU", "m2"))
    assert [module_name(graph, graph.modules[m]) for m in graph.modules] == [
        "Net", "layers.0", "ffn", "act"]
    assert module_label(graph, graph.modules["m3"]) == "act: GELU"
    assert module_label(graph, graph.modules["m0"]) == "Net"


def test_a_folded_run_is_named_by_its_range_and_counted() -> None:
    run = ModuleCall("m2", "encoder.layers.3", "Block", "m1",
                     repeat=_repeat([f"encoder.layers.{i}" for i in range(3, 61)]))
    graph = _graph(ModuleCall("m0", "", "Net", None), ModuleCall("m1", "encoder", "Stack", "m0"),
                   run)
    assert module_name(graph, run) == "layers.3\u201360"
    assert module_label(graph, run) == "layers.3\u201360: Block \u00d758"


def test_a_folded_run_that_is_not_numbered_keeps_the_representatives_name() -> None:
    run = ModuleCall("m1", "heads.a", "Head", "m0", repeat=_repeat(["heads.a", "heads.b"]))
    graph = _graph(ModuleCall("m0", "", "Net", None), run)
    assert module_label(graph, run) == "heads.a: Head \u00d72"


def test_functions_traced_into_and_folded_roots() -> None:
    function = ModuleCall("m1", "attn", "multi_head_attention_forward", "m0", kind="function")
    graph = _graph(ModuleCall("m0", "", "Net", None, repeat=_repeat(["", ""])), function)
    assert module_name(graph, function) == "multi_head_attention_forward()"
    assert module_label(graph, function) == "multi_head_attention_forward()"
    assert module_label(graph, graph.modules["m0"]) == "Net \u00d72"


def test_a_call_whose_parent_is_unknown_is_named_by_its_path() -> None:
    orphan = ModuleCall("m1", "a.b", "Leaf", "m9")
    graph = _graph(ModuleCall("m0", "", "Net", None))
    graph.modules["m1"] = orphan
    assert module_name(graph, orphan) == "a.b"


def test_a_loop_is_named_after_the_classes_it_calls() -> None:
    loop = ModuleCall("m1", "experts", "loop", "m0", kind="loop")
    graph = _graph(ModuleCall("m0", "", "Net", None), loop,
                   ModuleCall("m2", "experts.1", "Expert", "m1"),
                   ModuleCall("m3", "experts.0", "Shared", "m1"),
                   ModuleCall("m4", "experts.2", "Expert", "m1"))
    loop.children.append("n9")  # an op: not a module, no class
    assert display_class(graph, loop) == "Expert/Shared"
    assert module_label(graph, loop) == "experts: Expert/Shared"
    empty = ModuleCall("m5", "steps", "loop", "m0", kind="loop")
    graph.modules["m5"] = empty
    assert display_class(graph, empty) == "loop"
    assert display_class(graph, graph.modules["m2"]) == "Expert"


@settings(deadline=None)
@given(st.integers(0, 10**6), st.integers(2, 50), st.sampled_from(["", "layers", "a.b"]))
def test_consecutive_numbers_make_a_run_and_anything_else_does_not(
        start: int, count: int, prefix: str) -> None:
    dot = f"{prefix}." if prefix else ""
    names = [f"{dot}{start + i}" for i in range(count)]
    assert numbered_run(names) == f"{names[0]}\u2013{start + count - 1}"
    assert numbered_run(names[:1]) is None
    assert numbered_run([*names[:-1], f"{dot}{start + count}"]) is None
    assert numbered_run([*names[:-1], f"other.{start + count - 1}"]) is None


def test_a_loop_names_its_classes_in_a_fixed_order_or_else_its_first_three_ops() -> None:
    loop = ModuleCall("m1", "blocks", "loop", "m0", kind="loop")
    calls = [ModuleCall(f"m{i + 2}", f"blocks.{i}", cls, "m1")
             for i, cls in enumerate(["Norm", "Gate", "Expert", "Conv", "Attention"])]
    graph = _graph(ModuleCall("m0", "", "Net", None), loop, *calls)
    assert display_class(graph, loop) == "Attention/Conv/Expert/Gate/Norm"
    ops = ModuleCall("m9", "steps", "loop", "m0", kind="loop", children=["n0", "n1", "n2", "n3"])
    graph.modules["m9"] = ops
    graph.nodes = {f"n{i}": Node(f"n{i}", "op", name, "math", "m9")
                   for i, name in enumerate(["matmul", "add", "matmul", "relu"])}
    graph.nodes["n4"] = Node("n4", "op", "sigmoid", "math", "m9")
    ops.children.append("n4")
    assert display_class(graph, ops) == "matmul/add/relu"


def test_a_count_of_a_thousand_of_the_largest_unit_groups_its_digits() -> None:
    assert format_count(1e15) == "1,000T" and format_bytes(1e15) == "1,000 TB"


def test_paths_sort_by_their_numbers_as_numbers() -> None:
    """A graph's JSON sorts keys as strings (``layers.10`` before ``layers.9``); the order a
    reader expects is restored by reading each run of digits as a number."""
    paths = ["layers.10.ffn", "layers.9.ffn.experts.12", "head", "layers.10.attn", "layers.2",
             "layers.9.ffn.experts.3"]
    assert sorted(paths, key=natural_key) == [
        "head", "layers.2", "layers.9.ffn.experts.3", "layers.9.ffn.experts.12",
        "layers.10.attn", "layers.10.ffn"]


def test_a_call_that_ran_nothing_says_whether_an_op_read_its_weights() -> None:
    ran = ModuleCall("m1", "ffn", "MLP", "m0")
    untouched = ModuleCall("m2", "experts.3", "Expert", "m0", called=False)
    read = ModuleCall("m3", "wkv_b", "Linear", "m0", called=False,
                      stats=Stats(activated_params=512))
    assert [never_called(c) for c in (ran, untouched, read)] == [
        "", "never called", "never called; weights read directly"]
