"""The fence spec: parsing, validation errors that name the field, line and allowed values."""

from __future__ import annotations

import re

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from model_trace.errors import SpecError
from model_trace.loader import ImportPolicy, check_allowed
from model_trace.spec import FIELDS, FenceSpec, field_table, parse_spec

FULL = """\
model: deepseek-v3
config: 671B
overrides: {n_layers: 4}
inputs: {tokens: [1, 128]}
depth: 2
focus: layers.3.ffn
routing: balanced
overlay: flops
trace_depth: 1
show_constants: false
height: 600
export: [png, svg, json]
caption: DeepSeek-V3, one MoE block
"""


def test_the_documented_example_parses() -> None:
    spec = parse_spec(FULL)
    assert spec.model == "deepseek-v3" and spec.overrides == {"n_layers": 4}
    assert spec.export == ("png", "svg", "json") and spec.show_constants is False
    assert spec.lines["caption"] == 13


def _error(text: str) -> SpecError:
    with pytest.raises(SpecError) as raised:
        parse_spec(text)
    return raised.value


@pytest.mark.parametrize(
    ("text", "field", "line", "words"),
    [
        ("model: a:b\ndeep: 3", "deep", 2, ["unknown field 'deep'", "depth", "trace_depth"]),
        ("model: a:b\ndepth: two", "depth", 2, ["must be of type integer", "depth: 2"]),
        ("model: a:b\ndepth: -1", "depth", 2, ["at least 0"]),
        ("model: a:b\nrouting: smart", "routing", 2, ["balanced", "first", "random:SEED"]),
        ("model: a:b\nrouting: first:3", "routing", 2, ["balanced"]),
        ("model: a:b\nrouting: [1, x]", "routing", 2, ["expert indices"]),
        ("model: a:b\noverlay: colour", "overlay", 2, ["flops", "params"]),
        ("model: a:b\nexport: [pdf]", "export", 2, ["'pdf'", "png, svg, json"]),
        ("model: a:b\nshow_constants: 0", "show_constants", 2, ["boolean"]),
        ("model: a:b\nfold: yes please", "fold", 2, ["boolean"]),
        ("model: a:b\ninputs: [[2, x]]", "inputs", 2, ["not a shape"]),
        ("model: a:b\ninputs: {tokens: {shape: [1], dtype: int3}}", "inputs", 2, ["int64"]),
        ("model: a:b\ninputs: pkg.module", "inputs", 2, ["import path"]),
        ("model: 'pkg.module:'", "model", 1, ["import path"]),
        ("{model: a:b,\n height: 12}", "height", 2, ["at least 100"]),
        ("depth: 1", "model", None, ["'model' is missing"]),
    ],
)
def test_errors_name_field_line_and_fix(text: str, field: str, line: int | None,
                                        words: list[str]) -> None:
    error = _error(text)
    assert (error.field, error.line) == (field, line)
    for word in words:
        assert word in str(error)


@pytest.mark.parametrize("text", ["", "# only a comment", "- a list", "just text"])
def test_a_fence_that_is_not_a_mapping_is_refused(text: str) -> None:
    assert "model" in str(_error(text)) or "mapping" in str(_error(text))


def test_invalid_yaml_reports_its_line() -> None:
    error = _error("model: a:b\nargs: {x: 1\ncaption: c")
    assert "invalid YAML" in str(error) and error.line in (2, 3)


def test_defaults_fill_only_what_the_fence_left_out() -> None:
    spec = parse_spec("model: a:b\ndepth: 0").with_defaults(depth=3, routing="first",
                                                            export=("svg",))
    assert (spec.depth, spec.routing, spec.export) == (0, "first", ("svg",))
    assert parse_spec("model: a:b\nexport: []").with_defaults(
        depth=1, routing="balanced", export=("svg",)).export == ()


def test_lines_are_not_part_of_the_identity() -> None:
    assert parse_spec("model: a:b\n\ndepth: 2").identity() == parse_spec(
        "depth: 2\nmodel: a:b").identity()


def test_every_field_is_a_fence_spec_attribute_and_documented() -> None:
    attributes = set(FenceSpec.__dataclass_fields__) - {"lines"}
    assert set(FIELDS) == attributes
    table = field_table()
    for name, rule in FIELDS.items():
        assert f"| `{name}` |" in table and rule.description and rule.example
        first = "" if name == "model" else "model: a:b\n"
        parse_spec(f"{first}{name}: {rule.example}")  # each example is valid


def test_every_torchvista_option_has_a_counterpart() -> None:
    torchvista = {rule.torchvista for rule in FIELDS.values()}
    assert {"collapse_modules_after_depth", "show_non_gradient_nodes",
            "forced_module_tracing_depth", "height", "export_format"} <= torchvista


def test_spec_choices_match_the_viewer() -> None:
    from model_trace import details, render_html, spec

    assert spec.OVERLAYS == render_html.OVERLAYS == ("none", *details.OVERLAYS)


def test_there_is_no_single_memory_overlay() -> None:
    """Bytes written are activations or workspace, beside the weights read: a fence asking for
    "memory" is told the three it can have."""
    with pytest.raises(SpecError, match="overlay") as caught:
        parse_spec("model: a:b\noverlay: memory")
    assert all(name in str(caught.value) for name in ("weights", "activations", "workspace"))


@pytest.mark.parametrize(
    ("model", "inputs", "allowed"),
    [("deepseek-v3", None, True), ("torch.nn:Linear", None, True),
     ("torchvision.models:resnet18", None, False), ("model_zoo.x:y", "os:environ", False),
     ("model_zoo_evil:y", None, False), ("not-in-the-zoo", None, False),
     ("torch.nn:Linear", "torch:randn", False), ("torch._C:Module", None, False)],
)
def test_allowed_roots(model: str, inputs: str | None, allowed: bool) -> None:
    spec = FenceSpec(model=model, inputs=inputs)
    if allowed:
        check_allowed(spec, ImportPolicy(("model_zoo", "torch")))
    else:
        with pytest.raises(SpecError, match=r"roots this site allows|zoo model|no package|"
                           r"library root|private"):
            check_allowed(spec, ImportPolicy(("model_zoo", "torch")))


def test_routing_policies_are_the_tracers() -> None:
    from model_trace.spec import ROUTING_POLICIES
    from model_trace.tracing.routing import ROUTING_NAMES

    assert set(ROUTING_POLICIES) == set(ROUTING_NAMES)


def test_plugin_themes_are_the_viewers() -> None:
    from model_trace import render_html
    from model_trace.mkdocs.config import THEMES

    assert set(THEMES) == set(render_html.THEMES)


# -- properties: whatever a page author writes, the outcome is a spec or a SpecError --------
_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-3, 2**40), st.floats(allow_nan=False),
                     st.text(max_size=12))
_VALUES = st.recursive(_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=8)
_KEYS = st.one_of(st.sampled_from(sorted(FIELDS)), st.text(min_size=1, max_size=10))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_KEYS, _VALUES, max_size=6))
def test_any_mapping_gives_a_spec_or_a_spec_error(mapping: dict) -> None:
    text = yaml.safe_dump(mapping, default_flow_style=True, allow_unicode=True)
    try:
        spec = parse_spec(text)
    except SpecError as error:
        assert str(error) and "\n" not in str(error)
        if error.field is not None and error.field in mapping and error.line is not None:
            assert error.line >= 1
    else:
        assert spec.model == mapping["model"]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_any_text_gives_a_spec_or_a_spec_error(text: str) -> None:
    try:
        parse_spec(text)
    except SpecError as error:
        assert str(error) and "\n" not in str(error)


# -- hostile and careless fences: one line naming the line, before anything is built -------
ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8))


@pytest.mark.parametrize(("text", "line", "words"), [
    (ALIAS_BOMB, 1, "aliases"),
    ("model: a:b\nargs: &r {a: *r}", 2, "aliases"),
    ("model: a:b\ndepth: " + "9" * 5000, 2, "5,000 characters"),
    ("model: a:b\nargs: {a: 2001-01-01}", 2, "read as a date; quote it"),
    ("model: a:b\nargs: {1: 2, a: 3}", 2, "the key 1 is read as an int"),
    ("model: a:b\nargs:\n  a:\n    null: 2", 4, "keys in a fence are names"),
    ("model: a:b\ndepth: 1\ndepth: 2", 3, "'depth' appears twice (first on line 2)"),
    ("model: a:b\nargs:\n  a: 1\n  a: 2", 4, "'a' appears twice"),
    ("model: a:b\nargs: " + "[" * 20 + "]" * 20, 2, "levels deep"),
    ("model: a:b\ncaption: " + "x" * 70_000, None, "at most 64 KiB"),
    ("model: a:b\ncaption: " + "x" * 600, 2, "at most 500"),
    ("model: a:b\nheight: 100000", 2, "at most 10000"),
    ("model: a:b\ndepth: 10^100", 2, "must be of type integer"),
    ("model: a:b\nrouting: [3, 3]", 2, "names an expert twice"),
    ("model: a:b\ninputs: [2, 16, 64]", 2, "write [[2, 16, 64]]"),
    ("model: a:b\ninputs: [[99999999999999999999, 8]]", 2, "above 2**40"),
    ("model: a:b\ninptus: [[1]]", 2, "did you mean 'inputs'?"),
    ("model: a:b\noverlay: flop", 2, "did you mean 'flops'?"),
    ("model: a:b\n? [x]\n: 1", 2, "a key must be a name"),
    ("model: a:b\nargs: !!binary aGVsbG8=", 2, "YAML tags (tag:yaml.org,2002:binary)"),
    ("model: !!python/name:os.system", 1, "YAML tags"),
])
def test_hostile_fences_get_one_line(text: str, line: int | None, words: str) -> None:
    error = _error(text)
    assert words in str(error) and error.line == line, (str(error), error.line)
    assert "\n" not in str(error) and len(str(error)) < 700


def test_zoo_overrides_and_routing_are_range_checked() -> None:
    from model_trace.loader import build_model

    for spec, words in [
        (FenceSpec(model="deepseek-v3", config="tiny", overrides={"n_layers": -3}),
         "outside 0..2**31"),
        (FenceSpec(model="deepseek-v3", config="tiny", overrides={"n_layer": 3}),
         "did you mean 'n_layers'?"),
        (FenceSpec(model="deepseek-v3", config="tiny", routing=[100000, 5]),
         "names expert 100000"),
        (FenceSpec(model="deepseek-v3", config="tny"), "did you mean 'tiny'?"),
    ]:
        with pytest.raises(SpecError, match=re.escape(words)):
            build_model(spec)


def test_known_mistakes_get_their_fix() -> None:
    from model_trace.errors import readable

    torch_error = ("forward failed in module '<root>' (Embedding) at op 'embedding': "
                   "RuntimeError: Expected tensor for argument #1 'indices' to have one of the "
                   "following scalar types: Long, Int; but got torch.float32 instead")
    assert "dtype: int64" in readable(torch_error)
    frames = "bad size\nException raised from empty at aten/x.cpp:1\nframe #0: 0x1 in libc10.so"
    assert readable(frames) == "bad size"
