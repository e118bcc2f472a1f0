"""The fence spec at its boundaries: every numeric minimum, every type, every allowed value,
exact error lines, which fields decide the trace, and the reference table's columns."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from model_trace.errors import SpecError
from model_trace.spec import (
    DTYPES,
    EXPORT_FORMATS,
    FIELDS,
    OVERLAYS,
    FenceSpec,
    check_field,
    field_table,
    parse_spec,
    spec_from_mapping,
)

ROOT = Path(__file__).resolve().parents[2]
MINIMUMS = {name: rule.minimum for name, rule in FIELDS.items() if rule.minimum is not None}
MAXIMUMS = {name: rule.maximum for name, rule in FIELDS.items() if rule.maximum is not None}


def _error(text: str) -> SpecError:
    with pytest.raises(SpecError) as raised:
        parse_spec(text)
    return raised.value


def _numeric(name: str, value: int) -> str:
    """A fence setting ``name`` (and, for ``rank``, a split wide enough for any rank)."""
    wide = f"\nworld_size: {FIELDS['world_size'].maximum}" if name == "rank" else ""
    return f"model: a:b\n{name}: {value}{wide}"


@pytest.mark.parametrize("name", sorted(MINIMUMS))
def test_each_minimum_is_allowed_and_one_below_is_refused(name: str) -> None:
    minimum = MINIMUMS[name]
    assert getattr(parse_spec(_numeric(name, minimum)), name) == minimum
    assert getattr(parse_spec(_numeric(name, minimum + 1)), name) == minimum + 1
    error = _error(_numeric(name, minimum - 1))
    assert (error.field, error.line) == (name, 2)
    assert f"at least {minimum}, got {minimum - 1}" in str(error)


@pytest.mark.parametrize("name", sorted(MAXIMUMS))
def test_each_maximum_is_allowed_and_one_above_is_refused(name: str) -> None:
    maximum = MAXIMUMS[name]
    assert getattr(parse_spec(_numeric(name, maximum)), name) == maximum
    error = _error(_numeric(name, maximum + 1))
    assert (error.field, error.line) == (name, 2)
    assert f"at most {maximum}, got {maximum + 1}" in str(error)


WRONG_TYPES = [("5", int), ("{a: 1}", dict), ("[1]", list), ("text", str)]


@pytest.mark.parametrize(("name", "rule"), sorted(FIELDS.items()))
def test_every_field_refuses_a_value_of_another_type(name: str, rule) -> None:
    wrong = next(text for text, kind in WRONG_TYPES if kind not in rule.types)
    error = _error(f"model: a:b\n{name}: {wrong}" if name != "model" else f"model: {wrong}")
    assert error.field == name and "must be of type" in str(error)


@pytest.mark.parametrize("name", sorted(n for n, r in FIELDS.items() if int in r.types))
def test_a_boolean_is_not_a_number(name: str) -> None:
    error = _error(f"model: a:b\n{name}: true")
    assert error.field == name and "must be of type integer" in str(error)


@pytest.mark.parametrize("name", sorted(n for n, r in FIELDS.items() if bool in r.types))
@pytest.mark.parametrize(("text", "value"), [("true", True), ("false", False)])
def test_switches_take_booleans_only(name: str, text: str, value: bool) -> None:
    assert getattr(parse_spec(f"model: a:b\n{name}: {text}"), name) is value
    assert _error(f"model: a:b\n{name}: 1").field == name


def test_rank_must_lie_inside_the_split() -> None:
    assert parse_spec("model: a:b\nworld_size: 2\nrank: 1").rank == 1
    error = _error("model: a:b\nworld_size: 2\nrank: 2")
    assert (error.field, error.line) == ("rank", 3)
    assert "2-way split" in str(error)
    alone = _error("model: a:b\nrank: 1")
    assert "give `world_size` too" in str(alone) and "1-way split" in str(alone)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_is_allowed(overlay: str) -> None:
    assert parse_spec(f"model: a:b\noverlay: {overlay}").overlay == overlay


def test_export_takes_one_format_or_a_list() -> None:
    assert parse_spec("model: a:b\nexport: png").export == ("png",)
    assert parse_spec("model: a:b\nexport: [svg, png]").export == ("svg", "png")
    assert parse_spec("model: a:b\nexport: []").export == ()
    assert parse_spec("model: a:b").export is None
    for fmt in EXPORT_FORMATS:
        assert parse_spec(f"model: a:b\nexport: [{fmt}]").export == (fmt,)
    assert "'pdf'" in str(_error("model: a:b\nexport: pdf"))
    assert "'pdf'" in str(_error("model: a:b\nexport: [png, pdf]"))


@pytest.mark.parametrize("routing", ["balanced", "random", "first", "random:0", "random:42",
                                     "[0, 3]", "[5]"])
def test_routing_accepts_policies_seeds_and_expert_lists(routing: str) -> None:
    parse_spec(f"model: a:b\nrouting: {routing}")


@pytest.mark.parametrize("routing", ["random:abc", "'random:'", "random:-1", "first:3",
                                     "balanced:1", "[-1, 2]", "[true]", "['1']", "[1.5]"])
def test_routing_refuses_anything_else(routing: str) -> None:
    error = _error(f"model: a:b\nrouting: {routing}")
    assert (error.field, error.line) == ("routing", 2)


@pytest.mark.parametrize("inputs", ["[[2, 16]]", "[[0, 16]]", "[[]]", "{x: [1]}",
                                    "{tokens: {shape: [1, 8], dtype: int64}}",
                                    "[{shape: [3]}]", "pkg.module:make_inputs"])
def test_inputs_accept_shapes_mappings_and_import_paths(inputs: str) -> None:
    parse_spec(f"model: a:b\ninputs: {inputs}")


@pytest.mark.parametrize(("inputs", "words"), [
    ("[[-1, 16]]", "not a shape"), ("[[2, true]]", "not a shape"), ("[[2.5]]", "not a shape"),
    ("[3]", "write [[3]]"), ("{x: {shape: [1], dtype: int3}}", "int64"),
    ("{x: {shape: [1], layout: strided}}", "not layout"), ("{x: {dtype: int64}}", "not a shape"),
    ("pkg.module", "import path"), ("':make'", "import path"),
])
def test_inputs_refuse_bad_shapes_and_paths(inputs: str, words: str) -> None:
    error = _error(f"model: a:b\ninputs: {inputs}")
    assert (error.field, error.line) == ("inputs", 2) and words in str(error)


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_dtype_is_allowed(dtype: str) -> None:
    parse_spec(f"model: a:b\ninputs: {{x: {{shape: [1], dtype: {dtype}}}}}")


@pytest.mark.parametrize(("model", "allowed"), [("deepseek-v3", True), ("a.b:c", True),
                                                ("'a.b:'", False), ("':c'", False)])
def test_a_model_is_a_zoo_name_or_an_import_path(model: str, allowed: bool) -> None:
    if allowed:
        parse_spec(f"model: {model}")
    else:
        assert _error(f"model: {model}").field == "model"


# -- lines ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "line"), [
    ("model: a:b\nargs: {x: 1\ncaption: c", 3),  # where the parser finds the missing '}'
    ("model: a:b\n  depth: 2", 2),
    ("model: a:b\ndepth: [1\n", 2),  # at the end of the text: its last line
    ("model: a:b\n\n\nfocus: [a", 4),
    ("model: a:b\ndepth: @x", 2),
    ("model: a:b\nrouting: random:", 2),
    ("model: [a", 1),  # a one-line fence: the end of the text is on its only line
])
def test_yaml_errors_name_the_line_they_are_on(text: str, line: int) -> None:
    error = _error(text)
    assert "invalid YAML" in str(error) and error.line == line, str(error)
    # the parser's problem in one line, without its own position dump
    assert "\n" not in str(error) and "column" not in str(error), str(error)


def test_a_repeated_key_is_reported_at_the_line_whose_value_is_wrong() -> None:
    error = _error("model: a:b\ndepth: 1\ndepth: -1")
    assert (error.field, error.line) == ("depth", 3)


def test_lines_of_flow_style_and_comments() -> None:
    spec = parse_spec("# a comment\n{model: a:b,\n depth: 2,\n\n caption: c}")
    assert (spec.line_of("model"), spec.line_of("depth"), spec.line_of("caption")) == (2, 3, 5)
    assert spec.line_of("focus") is None and spec.line_of(None) is None


def test_a_mapping_without_lines_gives_errors_without_lines() -> None:
    with pytest.raises(SpecError) as raised:
        spec_from_mapping({"model": "a:b", "height": 5})
    assert (raised.value.field, raised.value.line) == ("height", None)
    assert spec_from_mapping({"model": "a:b", "export": "svg"}).export == ("svg",)


# -- what decides the trace ----------------------------------------------------------------
OTHER_VALUES = {
    "model": "c:d", "args": "{a: 1}", "config": "tiny", "overrides": "{n: 1}",
    "inputs": "[[1, 2]]", "depth": "3", "focus": "x.y", "routing": "first", "fold": "false",
    "trace_depth": "2", "aten": "true", "world_size": "4", "rank": "1",
    "show_constants": "false", "overlay": "flops", "height": "300", "summary": "2",
    "export": "[svg]", "caption": "c", "direction": "LR", "downloads": "false", "assume": "error",
    "view": "experts", "text": "a b", "tokens": "[1, 2]", "tokenizer": "x:tok",
    "weights": "random", "layers": "[1]", "heads": "[2]", "texts": "[a, b]", "dataset": "x:data",
    "layer": "2", "pooling": "first", "projection": "tsne", "execute": "cpu",
    "graph": "backward", "loss": "c:loss", "dims": "auto", "compare": "{d: [1, 2]}",
    "highlight": "[x]", "labels": "{x: y}", "notes": "{x: y}", "hide": "[x]",
}
"""For each field, a value other than its default."""


@pytest.mark.parametrize("name", sorted(FIELDS))
def test_only_trace_fields_change_the_trace_identity(name: str) -> None:
    assert set(OTHER_VALUES) == set(FIELDS)
    base = "model: a:b\nworld_size: 8" if name != "world_size" else "model: a:b"
    other = f"{base}\n{name}: {OTHER_VALUES[name]}" if name != "model" else \
        base.replace("a:b", OTHER_VALUES["model"])
    plain, changed = parse_spec(base), parse_spec(other)
    assert plain.identity() != changed.identity()
    differs = plain.trace_identity() != changed.trace_identity()
    assert differs == (FIELDS[name].stage == "trace"), name


def test_the_trace_is_decided_by_what_runs_and_not_by_how_it_is_shown() -> None:
    identity = parse_spec("model: a:b").trace_identity()
    assert {"model", "args", "inputs", "routing", "fold", "world_size", "rank"} <= set(identity)
    assert not {"depth", "overlay", "caption", "height", "show_constants", "focus",
                "export", "summary"} & set(identity)


# -- the reference table -------------------------------------------------------------------
def test_the_field_table_has_one_row_per_field_with_cells_under_their_headers() -> None:
    rows = [line.strip("|").split(" | ") for line in field_table().splitlines()]
    header, rule, body = rows[0], rows[1], rows[2:]
    assert [h.strip() for h in header] == ["field", "type", "default", "changes",
                                           "what it does", "example", "torchvista"]
    assert set("".join(rule)) <= {"-", "|"}
    assert [cells[0].strip() for cells in body] == [f"`{name}`" for name in FIELDS]
    for cells, (name, rule_) in zip(body, FIELDS.items(), strict=True):
        cells = [c.strip() for c in cells]
        assert len(cells) == 7, cells
        assert cells[2] == rule_.default
        assert cells[3] == ("the trace" if rule_.stage == "trace" else "the view")
        assert cells[4].startswith(rule_.description)
        assert cells[5] == f"`{name}: {rule_.example}`"
        assert cells[6] == (f"`{rule_.torchvista}`" if rule_.torchvista else "—")
    by_name = {cells[0].strip(): [c.strip() for c in cells] for cells in body}
    assert by_name["`depth`"][1] == "integer" and "From 0 to 64." in by_name["`depth`"][4]
    assert by_name["`inputs`"][1] == "list or mapping or string"
    assert by_name["`fold`"][1] == "boolean"
    assert "One of `none`, `params`" in by_name["`overlay`"][4]
    assert "None" not in field_table()


def _as_yaml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return '""' if value == "" else json.dumps(value) if isinstance(value, dict) else str(value)


def test_the_documented_defaults_are_the_specs_own() -> None:
    """A default the table shows is the value a fence without the field gets."""
    fields = {f.name: f for f in dataclasses.fields(FenceSpec)}
    assert fields["model"].default is dataclasses.MISSING and FIELDS["model"].default == "required"
    unset = FenceSpec(model="a:b")
    for name, rule in FIELDS.items():
        if name == "model":
            continue
        value = getattr(unset, name)
        if value is None:  # decided elsewhere (the plugin, the zoo): said in words
            assert rule.default and not rule.default[0].isdigit(), name
        else:
            assert rule.default == _as_yaml(value), name


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float64", "int64", "int32", "bool"])
def test_the_usual_dtypes_are_spelled_as_torch_spells_them(dtype: str) -> None:
    spec = parse_spec(f"model: a:b\ninputs: {{x: {{shape: [1], dtype: {dtype}}}}}")
    assert spec.inputs == {"x": {"shape": [1], "dtype": dtype}}


# -- the limits the design page promises ---------------------------------------------------
def _promised_limits() -> dict[str, int]:
    """The numbers of docs/design's "Reading a fence": what a reader is told is refused."""
    text = " ".join((ROOT / "docs/design/index.md").read_text(encoding="utf-8").split())
    found = re.search(r"more than (\d+) KiB, nesting deeper than (\d+) levels, more than "
                      r"([\d,]+) values, .* numbers of more than (\d+) characters", text)
    assert found, "the design page no longer states the fence's limits"
    kib, levels, values, digits = (int(g.replace(",", "")) for g in found.groups())
    return {"bytes": kib * 1024, "levels": levels, "values": values, "digits": digits}


def test_a_fence_of_exactly_the_promised_size_is_read_and_one_byte_more_is_not() -> None:
    size = _promised_limits()["bytes"]
    head = "model: a:b\n# "
    assert parse_spec(head + "x" * (size - len(head))).model == "a:b"
    error = _error(head + "x" * (size - len(head) + 1))
    assert f"{size + 1:,} bytes" in str(error) and error.line is None


def test_nesting_stops_at_the_promised_depth() -> None:
    levels = _promised_limits()["levels"]
    # the fence's mapping and args' mapping are two levels; the rest are lists
    inner = levels - 2
    deepest = parse_spec("model: a:b\nargs: {a: " + "[" * inner + "]" * inner + "}").args["a"]
    for _ in range(inner - 1):
        (deepest,) = deepest
    assert deepest == []
    error = _error("model: a:b\nargs: {a: " + "[" * (inner + 1) + "]" * (inner + 1) + "}")
    assert f"more than {levels} levels deep" in str(error) and error.line == 2


def test_a_fence_holds_the_promised_number_of_values_and_not_one_more() -> None:
    values = _promised_limits()["values"]
    # the fence, model, a:b, args, its mapping, x and the list: 7 values before the items
    items = values - 7
    assert len(parse_spec("model: a:b\nargs: {x: [" + ", ".join(["0"] * items) + "]}")
               .args["x"]) == items
    error = _error("model: a:b\nargs: {x: [" + ", ".join(["0"] * (items + 1)) + "]}")
    assert f"more than {values:,} values" in str(error) and error.line == 2


def test_numbers_have_at_most_the_promised_digits() -> None:
    digits = _promised_limits()["digits"]
    assert parse_spec(f"model: a:b\nargs: {{a: {'9' * digits}}}").args["a"] == 10**digits - 1
    error = _error(f"model: a:b\nargs: {{a: {'9' * (digits + 1)}}}")
    assert f"has {digits + 1} characters" in str(error) and error.line == 2


# -- shapes, indices and ids at their edges ------------------------------------------------
def test_a_shape_has_at_most_as_many_dimensions_as_a_fence_has_levels() -> None:
    levels = _promised_limits()["levels"]
    assert len(parse_spec(f"model: a:b\ninputs: [{[1] * levels}]").inputs[0]) == levels
    error = _error(f"model: a:b\ninputs: [{[1] * (levels + 1)}]")
    assert f"has {levels + 1} dimensions; at most {levels}" in str(error)


def test_a_shape_holds_up_to_2_62_elements_counted_over_every_dimension() -> None:
    parse_spec(f"model: a:b\ninputs: [[{2**31}, {2**31}]]")  # exactly 2**62
    for shape in ([2**31, 2**31, 2], [2**40, 2**40], [2**21, 2**21, 2**21]):
        error = _error(f"model: a:b\ninputs: [{shape}]")
        assert "more than 2**62 elements" in str(error), shape
    parse_spec(f"model: a:b\ninputs: [[{2**40}, 1, 1]]")


def test_token_ids_run_up_to_the_largest_int32() -> None:
    largest = 2**31 - 1
    assert parse_spec(f"model: a:b\ntokens: [0, {largest}]").tokens == (0, largest)
    for tokens in (f"[{largest + 1}]", "[-1]", "[]", "[true]", "[1.0]"):
        assert _error(f"model: a:b\ntokens: {tokens}").field == "tokens", tokens


def test_expert_indices_run_from_0_below_2_20() -> None:
    assert parse_spec(f"model: a:b\nrouting: [0, {2**20 - 1}]").routing == [0, 2**20 - 1]
    error = _error(f"model: a:b\nrouting: [{2**20}]")
    assert "not a list of expert indices (0 to 2**20)" in str(error)


@pytest.mark.parametrize("name", ["layers", "heads"])
def test_layer_and_head_indices_are_distinct_small_naturals(name: str) -> None:
    assert getattr(parse_spec(f"model: a:b\n{name}: [0, 4095]"), name) == (0, 4095)
    for items in ("[4096]", "[0, -1]", "[-1, 0]", "[true]", "['1']", "[]"):
        error = _error(f"model: a:b\n{name}: {items}")
        assert "not a list of indices from 0" in str(error), items
    assert "names an index twice" in str(_error(f"model: a:b\n{name}: [2, 2]"))


def test_a_rank_is_allowed_exactly_when_some_split_holds_it() -> None:
    """The largest rank a fence may give lies in the widest split it may give."""
    widest = FIELDS["world_size"].maximum
    assert FIELDS["rank"].maximum == widest - 1
    assert parse_spec(f"model: a:b\nworld_size: {widest}\nrank: {widest - 1}").rank == widest - 1


def test_an_import_path_may_name_an_attribute_of_an_attribute() -> None:
    assert parse_spec("model: pkg.mod:Outer.build").model == "pkg.mod:Outer.build"
    assert _error("model: pkg.mod:Outer.9x").field == "model"


def test_lengths_are_counted_in_characters_for_text_and_items_for_lists() -> None:
    assert "has 501 characters; at most 500" in str(_error(f"model: a:b\ncaption: {'x' * 501}"))
    assert "has 4 items; at most 3" in str(_error("model: a:b\nexport: [png, svg, json, png]"))


# -- defaults and the views a fence can name -----------------------------------------------
@pytest.mark.parametrize("name", sorted(
    n for n, f in FenceSpec.__dataclass_fields__.items()
    if n in FIELDS and f.default not in (None, dataclasses.MISSING)))
def test_a_default_written_out_is_the_same_spec_as_leaving_it_out(name: str) -> None:
    written = parse_spec(f"model: a:b\n{name}: {FIELDS[name].default}")
    assert written == parse_spec("model: a:b")
    assert written.line_of(name) == 2  # lines are kept, but a spec is what it holds


def test_specs_are_equal_whatever_lines_their_fields_are_on() -> None:
    first = parse_spec("model: a:b\ndepth: 2\ncaption: c")
    second = parse_spec("caption: c\n\n# a comment\ndepth: 2\nmodel: a:b")
    assert first == second and first.lines != second.lines


@pytest.mark.parametrize(("text", "view"), [
    ("view: graph", "graph"),
    ("view: experts", "experts"),
    ("view: attention\ntokens: [1, 17, 42]", "attention"),
    ("view: attention\ntext: The cat sat.\ntokenizer: pkg.tok:load", "attention"),
    ("view: embeddings\ntexts: [A cat sleeps., Fresh bread.]\ntokenizer: pkg.tok:load",
     "embeddings"),
    ("view: embeddings\ndataset: pkg.data:sentences\ntokenizer: pkg.tok:load\npooling: first\n"
     "projection: tsne\nlayer: 3", "embeddings"),
])
def test_each_view_a_page_can_ask_for_is_read(text: str, view: str) -> None:
    from model_trace.dataviews import check_view_fields

    spec = parse_spec(f"model: a:b\n{text}")
    check_view_fields(spec)
    assert spec.view == view


# -- what shares a trace: fences that run the same model on the same data ------------------
RUN_FIELDS = {"model", "args", "config", "overrides", "inputs", "routing", "fold", "trace_depth",
              "aten", "world_size", "rank", "text", "tokens", "tokenizer", "weights", "texts",
              "dataset", "layer", "pooling", "execute", "graph", "loss", "dims", "compare"}
"""Fields that change what runs: the model, its weights, its inputs (a data view's texts or
tokens, how they are pooled), how the tracer records it (the backward pass and its loss,
traces at scaled sizes to name dimensions, variants), or whether it runs for real."""
SHOW_FIELDS = {"depth", "focus", "show_constants", "overlay", "height", "direction", "downloads",
               "summary", "export", "assume", "caption", "view", "layers", "heads",
               "projection", "highlight", "labels", "notes", "hide"}
"""Fields that only change how the same run is shown: which boxes open, which layers and heads
of the captured attention are drawn, how the same vectors are projected, what is marked,
labelled, annotated or left out."""


def test_fences_share_a_trace_exactly_when_they_run_the_same_thing() -> None:
    assert set(FIELDS) == RUN_FIELDS | SHOW_FIELDS and not RUN_FIELDS & SHOW_FIELDS
    assert set(parse_spec("model: a:b").trace_identity()) == RUN_FIELDS


# -- highlight colours ---------------------------------------------------------------------
def test_every_named_colour_is_a_distinct_drawable_hex_colour() -> None:
    from model_trace.spec import COLOURS

    assert all(re.fullmatch(r"#[0-9a-f]{6}", hex_) for hex_ in COLOURS.values()), COLOURS
    assert len(set(COLOURS.values())) == len(COLOURS)
    for name in COLOURS:
        assert parse_spec(f"model: a:b\nhighlight: {{attn: {name}}}").highlight == {"attn": name}
    assert parse_spec("model: a:b\nhighlight: {attn: '#A0b1C2', ffn: '#abc'}").highlight
    for colour in ("'#12345'", "'#ggg'", "crimson", "'red '"):
        assert _error(f"model: a:b\nhighlight: {{attn: {colour}}}").field == "highlight"


def test_highlight_labels_and_notes_check_every_target_they_map() -> None:
    for field in ("highlight: {'attn/x/y': red}", "labels: {'a b': text}",
                  "notes: {'einsum#0': text}", "highlight: ['x/y/z']", "hide: ['#2']"):
        name = field.split(":")[0]
        assert "is not a target" in str(_error(f"model: a:b\n{field}")), field
        assert _error(f"model: a:b\n{field}").field == name


def test_dimension_sizes_are_positive() -> None:
    assert parse_spec("model: a:b\ndims: {1: B, 128: S}").dims == {1: "B", 128: "S"}
    for dims in ("{0: B}", "{-1: B}", f"{{{2**40 + 1}: B}}"):
        error = _error(f"model: a:b\ndims: {dims}")
        assert "is not a dimension size" in str(error), dims


def test_each_variant_of_a_comparison_is_checked_as_a_fence_field() -> None:
    assert parse_spec("model: a:b\ncompare: {depth: [1, 2], args.width: [4, 8]}").compare
    error = _error("model: a:b\ncompare: {depth: [1, -1]}")
    assert "a variant's field 'depth' must be at least 0" in str(error)
    assert error.field == "compare" and error.line == 2
    assert "cannot hold `compare` itself" in str(_error("model: a:b\ncompare: {compare: [1, 2]}"))
    assert "cannot hold `compare` itself" in str(_error("model: a:b\ncompare: [{compare: 1}, {}]"))
    assert "a variant's field 'fold'" in str(_error("model: a:b\ncompare: [{fold: 1}, {}]"))


# -- lengths ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [n for n, r in FIELDS.items()
                                  if str in r.types or list in r.types])
def test_every_text_or_list_field_takes_its_longest_value_and_refuses_one_more(name: str) -> None:
    """At exactly ``max_length`` characters (or items) no length error (another check may
    still refuse the value); one more is refused by length, with both numbers named."""
    rule = FIELDS[name]
    values = ([lambda n: "a" * n] if str in rule.types else []) + (
        [lambda n: [1] * n] if list in rule.types else [])
    for make in values:
        unit = "characters" if isinstance(make(0), str) else "items"
        with pytest.raises(SpecError, match=f"has {rule.max_length + 1:,} {unit}; "
                                            f"at most {rule.max_length:,};"):
            check_field(name, make(rule.max_length + 1))
        try:
            check_field(name, make(rule.max_length))
        except SpecError as error:
            assert f"{unit}; at most" not in str(error)


def test_every_field_that_names_a_path_takes_paths_of_one_length() -> None:
    """An import path (``model``, ``inputs``, ``loss``, ``tokenizer``) or a module path
    (``focus``): a user's longest path fits in all of them or in none."""
    paths = ("model", "inputs", "focus", "loss", "tokenizer")
    assert len({FIELDS[name].max_length for name in paths}) == 1


def test_a_comparison_draws_two_to_six_variants() -> None:
    for count, allowed in ((1, False), (2, True), (6, True), (7, False)):
        text = f"model: a:b\ncompare: {{depth: {list(range(count))}}}"
        if allowed:
            assert len(parse_spec(text).compare["depth"]) == count
        else:
            assert f"has {count} variant(s); compare 2 to 6" in str(_error(text))


def test_layers_and_heads_documented_as_all_draw_every_layer_and_head_when_absent() -> None:
    import torch

    from model_trace.dataviews.attention import AttentionMap
    from model_trace.dataviews.draw_attention import select_panels

    assert FIELDS["layers"].default == FIELDS["heads"].default == "all"
    maps = [AttentionMap(f"layers.{i}", "softmax", torch.full((3, 2, 2), 0.5)) for i in range(2)]
    rows = select_panels(maps, None, None)  # the fence gave neither field
    assert [[(p.layer, p.head) for p in row] for row in rows] == [
        [(layer, 0), (layer, 1), (layer, 2), (layer, None)] for layer in (0, 1)]
