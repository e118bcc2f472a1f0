"""The fence spec: the YAML inside a ```model-trace block, parsed and validated.

Validation is declarative (``FIELDS``) so every error names the field, what was wrong and the
values allowed, and so the docs' field reference (generated from ``FIELDS``) and the checks
cannot drift apart. Nothing here imports torch: the docs build parses every fence before it
knows whether anything has to be traced.

A fence is untrusted text, so its YAML is read in two passes: ``_check_events`` walks the
parser's events and refuses, with the line, what could make reading it costly or ambiguous (a
document over ``MAX_FENCE_BYTES``, nesting deeper than ``MAX_NESTING``, more than ``MAX_NODES``
values, anchors and aliases, numbers of more than ``MAX_NUMBER_CHARS`` characters, a key given
twice); only then are Python values built. Every value must be plain data (strings, numbers,
booleans, null, lists, mappings with string keys), so cache keys and messages stay cheap.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

from model_trace.errors import SpecError, brief, did_you_mean

ROUTING_POLICIES = ("balanced", "random", "first")
"""How a mixture-of-experts gate picks experts on the meta device, where scores have no values
(also ``random:SEED``, or a list of expert indices); the tracer's ``ROUTING_NAMES``."""
OVERLAYS = ("none", "params", "flops", "weights", "activations", "workspace", "time")
"""What the viewer colours module boxes by."""
DIRECTIONS = ("TB", "LR")
"""Which way a figure's data flows."""
EXPORT_FORMATS = ("png", "svg", "json")
ASSUME_MODES = ("error", "warn", "allow")
"""What a build does when a trace had to assume values that change the figure."""
"""Files a fence can offer for download next to its page."""
VIEWS = ("graph", "attention", "embeddings", "experts")
"""What a fence draws: the computation graph, or one of the data views (``dataviews``)."""
WEIGHTS = ("model", "random")
"""Where a data view's weights come from: what the model's factory loads, or seeded random."""
POOLINGS = ("mean", "first", "last")
"""How an embeddings view turns a text's hidden states into one vector."""
PROJECTIONS = ("pca", "tsne", "umap")
"""How an embeddings view projects vectors to 2-D (t-SNE and UMAP need optional packages)."""
EXECUTE_DEVICES = ("cpu",)
"""Where ``execute`` runs a model for real to measure it."""
MAX_TOKEN_ID = 2**31 - 1
DTYPES = ("float32", "float16", "bfloat16", "float64", "int64", "int32", "int8", "bool")
"""Input dtypes a fence may name."""

MAX_FENCE_BYTES = 64 * 1024
MAX_NESTING = 16
"""Levels of lists and mappings inside a fence (the fence's own mapping is the first)."""
MAX_NODES = 5_000
"""Values (scalars, lists, mappings) in one fence."""
MAX_NUMBER_CHARS = 32
MAX_TEXT_CHARS = 4_096
"""The longest string anywhere in a fence; fields such as ``caption`` allow less."""
MAX_SIZE = 2**40
"""The largest size of one tensor dimension an input shape may give."""
MAX_ELEMENTS = 2**62
"""The most elements one input tensor may have (an int64 count must hold them)."""


@dataclass(frozen=True)
class FieldRule:
    """One allowed key of a fence spec: its Python types, what it does and an example."""

    types: tuple[type, ...]
    description: str
    example: str
    default: str = ""
    """The default as the docs show it ("" for a field without one)."""
    choices: tuple[Any, ...] = ()
    """Allowed values; for a list-valued field, allowed items."""
    minimum: int | None = None
    maximum: int | None = None
    """Bounds of an integer field (the docs show them)."""
    max_length: int = MAX_TEXT_CHARS
    """The longest string (or list) the field takes."""
    torchvista: str = ""
    """The matching ``torchvista.trace_model`` argument, for the side-by-side table."""
    check: Callable[[Any], str | None] | None = None
    """Deeper validation: returns what is wrong, or None."""
    stage: str = "view"
    """"trace": the field changes what is traced (fences that differ only in "view" fields
    share one trace); "view": it changes only how the graph is shown."""
    integer_keys: bool = False
    """The field's mapping may have integer keys (``dims: {128: S}``); other keys are names."""


def _check_shape(value: Any) -> str | None:
    shape = value.get("shape") if isinstance(value, dict) else value
    if isinstance(value, dict):
        unknown = sorted(str(k) for k in set(value) - {"shape", "dtype"})
        if unknown:
            return (f"an input mapping has the keys shape and dtype, not "
                    f"{brief(', '.join(unknown), 60)}")
        if "dtype" in value and value["dtype"] not in DTYPES:
            return (f"dtype {brief(repr(value['dtype']), 40)} is not one of {', '.join(DTYPES)}"
                    f"{did_you_mean(str(value['dtype']), DTYPES)}")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        return (f"{brief(repr(value), 60)} is not a shape; write a list of sizes like "
                "[2, 16, 64] or {shape: [1, 128], dtype: int64}")
    if len(shape) > MAX_NESTING:
        return f"a shape has {len(shape)} dimensions; at most {MAX_NESTING}"
    elements = 1
    for size in shape:
        if size > MAX_SIZE:
            return f"the size {brief(str(size), 30)} is above 2**40; give a realistic shape"
        elements *= size
    if elements > MAX_ELEMENTS:
        return f"the shape {shape} has more than 2**62 elements; give a realistic shape"
    return None


def _check_inputs(value: Any) -> str | None:
    if isinstance(value, str):
        return _check_import_path(value)
    if isinstance(value, list) and value and all(
            isinstance(d, int) and not isinstance(d, bool) for d in value):
        return (f"{brief(repr(value), 40)} is one shape, but `inputs` is a list of shapes, one "
                f"per positional input: write [{brief(repr(value), 40)}]")
    if isinstance(value, dict):
        problem = _check_names(value, "inputs")
        if problem:
            return problem
    shapes = value.values() if isinstance(value, dict) else value
    for shape in shapes:
        problem = _check_shape(shape)
        if problem:
            return problem
    return None


def _check_import_path(value: str) -> str | None:
    module, sep, attribute = value.partition(":")
    parts = [*module.split("."), *attribute.split(".")]
    if not sep or not all(part.isidentifier() for part in parts):
        return (f"{brief(repr(value), 60)} is not an import path; write it as "
                "'package.module:Class', with Python names on both sides of the colon")
    return None


def _check_routing(value: Any) -> str | None:
    if isinstance(value, list):
        if not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < 2**20
                   for i in value):
            return f"{brief(repr(value), 60)} is not a list of expert indices (0 to 2**20)"
        if len(set(value)) != len(value):
            return f"{brief(repr(value), 60)} names an expert twice; name distinct experts"
        return None
    name, colon, seed = value.partition(":")
    if name in ROUTING_POLICIES and (not colon or (name == "random" and seed.isdigit()
                                                   and len(seed) <= 18)):
        return None
    return (f"{brief(repr(value), 40)} is not a routing policy; allowed values: "
            f"{', '.join(ROUTING_POLICIES)}, random:SEED, or a list of expert indices"
            f"{did_you_mean(name, ROUTING_POLICIES)}")


def _check_model(value: str) -> str | None:
    return None if ":" not in value else _check_import_path(value)


def _check_names(value: dict[Any, Any], what: str) -> str | None:
    """The keys of a mapping of keyword arguments are Python names."""
    for key in value:
        if not isinstance(key, str) or not key.isidentifier():
            return f"{brief(repr(key), 40)} is not a name; the keys of {what} are argument names"
    return None


def _check_keyword_arguments(value: dict[Any, Any]) -> str | None:
    return _check_names(value, "args") or _plain_data_problem(value)


def _check_overrides(value: dict[Any, Any]) -> str | None:
    return _check_names(value, "overrides") or _plain_data_problem(value)


def _check_index_list(items: list[Any]) -> str | None:
    value = items
    if not items or not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < 4096
                            for i in items):
        return f"{brief(repr(value), 60)} is not a list of indices from 0 (e.g. [0, 3])"
    if len(set(items)) != len(items):
        return f"{brief(repr(value), 60)} names an index twice"
    return None


def _check_tokens(value: list[Any]) -> str | None:
    if not value or not all(isinstance(i, int) and not isinstance(i, bool)
                            and 0 <= i <= MAX_TOKEN_ID for i in value):
        return f"{brief(repr(value), 60)} is not a list of token ids (integers from 0)"
    return None


def _check_texts(value: Any) -> str | None:
    groups = value.values() if isinstance(value, dict) else [value]
    for texts in groups:
        if not isinstance(texts, list) or not texts or not all(
                isinstance(t, str) and t.strip() for t in texts):
            return ("write a list of texts, or a mapping of group names to lists of texts "
                    "(e.g. {animals: [A cat sleeps., ...], food: [...]})")
    return None


MAX_VARIANTS = 6
"""The most variants a ``compare`` fence draws side by side."""
GRAPHS = ("forward", "backward")
"""Which pass a fence draws."""
COLOURS = {"red": "#cf222e", "orange": "#bc4c00", "yellow": "#9a6700", "green": "#1a7f37",
           "teal": "#0a7d86", "blue": "#0969da", "purple": "#8250df", "pink": "#bf3989",
           "grey": "#6e7781"}
"""Named highlight colours (plain hex: readable on light and dark pages, and in exports)."""
_HEX_COLOUR = re.compile(r"#[0-9a-fA-F]{6}|#[0-9a-fA-F]{3}")
_TARGET = re.compile(r"(?:[^/#\s]+/)?[^/#\s]+(?:#[1-9][0-9]{0,5})?")
_DIM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_']{0,23}")


def _check_target(target: Any, what: str) -> str | None:
    """A module path, class, op name or op kind, optionally ``scope/op`` and ``#n``."""
    if not isinstance(target, str) or not _TARGET.fullmatch(target):
        return (f"{brief(repr(target), 60)} is not a target; {what} names module paths "
                "(layers.0.attn), classes (RMSNorm), op names (einsum), op kinds (shape), "
                "an op inside a module (attn/einsum) and the n-th match (einsum#2)")
    return None


def _check_targets(value: Any) -> str | None:
    items = [value] if isinstance(value, str) else value
    if not items:
        return "is empty; name at least one module path, op name or op kind"
    return next(filter(None, (_check_target(t, "it") for t in items)), None)


def _check_colour(colour: Any) -> str | None:
    if isinstance(colour, str) and (colour in COLOURS or _HEX_COLOUR.fullmatch(colour)):
        return None
    return (f"{brief(repr(colour), 40)} is not a colour; use #rrggbb or one of "
            f"{', '.join(COLOURS)}{did_you_mean(str(colour), COLOURS)}")


def _check_highlight(value: Any) -> str | None:
    if not isinstance(value, dict):
        return _check_targets(value)
    if not value:
        return "is empty; map module paths or op names to colours"
    for target, colour in value.items():
        problem = _check_target(target, "it") or _check_colour(colour)
        if problem:
            return problem
    return None


def _text_mapping(limit: int) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if not value:
            return "is empty; map module paths or op names to text"
        for target, text in value.items():
            problem = _check_target(target, "it")
            if problem:
                return problem
            if not isinstance(text, str) or not text.strip():
                return f"the text for {brief(repr(target), 40)} must be a non-empty string"
            if len(text) > limit:
                return (f"the text for {brief(repr(target), 40)} has {len(text)} characters; "
                        f"at most {limit}")
        return None

    return check


def _check_dims(value: Any) -> str | None:
    if isinstance(value, str):
        return None if value == "auto" else (
            f"{brief(repr(value), 40)} is not `auto` or a mapping of sizes to names")
    if not value:
        return "is empty; map sizes to names, e.g. {1: B, 128: S}, or write `auto`"
    for size, name in value.items():
        number = size if isinstance(size, int) else int(size) if (
            isinstance(size, str) and size.isdigit()) else None
        if number is None or isinstance(size, bool) or not 0 < number <= MAX_SIZE:
            return f"{brief(repr(size), 30)} is not a dimension size (a positive integer)"
        if not isinstance(name, str) or not _DIM_NAME.fullmatch(name):
            return (f"{brief(repr(name), 30)} is not a dimension name; use a short name "
                    "like B, S or d_model")
    names = [str(n) for n in value.values()]
    twice = next((n for n in names if names.count(n) > 1), None)
    return f"the name {twice!r} is given to two sizes" if twice else None


def _check_compare(value: Any) -> str | None:
    """A list of variants (mappings of fence fields), or a mapping of fields (or
    ``args.X``/``overrides.X``/a bare argument name) to one value per variant."""
    if isinstance(value, list):
        count = len(value)
        for variant in value:
            if not isinstance(variant, dict):
                return (f"the variant {brief(repr(variant), 60)} is not a mapping; write each "
                        "variant as the fields that differ, e.g. {args: {attn_impl: naive}}")
            for key, item in variant.items():
                problem = _compare_field_problem(str(key), item)
                if problem:
                    return problem
    elif isinstance(value, dict):
        if not value:
            return "is empty"
        lengths = set()
        for key, values in value.items():
            if not isinstance(values, list):
                return (f"{brief(repr(key), 40)} must map to a list with one value per "
                        f"variant, e.g. {key}: [a, b]")
            lengths.add(len(values))
            if key in FIELDS:
                problem = next(filter(None, (_compare_field_problem(key, v) for v in values)),
                               None)
                if problem:
                    return problem
            elif not _compare_name(key):
                return (f"{brief(repr(key), 40)} is not a fence field, `args.NAME`, "
                        f"`overrides.NAME` or an argument name{did_you_mean(key, FIELDS)}")
        if len(lengths) > 1:
            return "its lists have different lengths; give every list one value per variant"
        count = lengths.pop()
    else:  # pragma: no cover - the type check comes first
        return "must be a list or a mapping"
    if not 2 <= count <= MAX_VARIANTS:
        return f"has {count} variant(s); compare 2 to {MAX_VARIANTS}"
    return None


def _compare_name(key: str) -> bool:
    scope, dot, name = key.partition(".")
    if dot:
        return scope in ("args", "overrides") and name.isidentifier()
    return key.isidentifier()


def _compare_field_problem(key: str, value: Any) -> str | None:
    if key == "compare":
        return "a variant cannot hold `compare` itself"
    try:
        check_field(key, value)
    except SpecError as error:
        return f"a variant's {error}"
    return None


FIELDS: dict[str, FieldRule] = {
    "model": FieldRule(
        (str,), "A zoo name (`deepseek-v3`), or an import path `package.module:Class` to an "
        "`nn.Module` class of an allowed package, or to a class or factory function of one of "
        "the site's own packages. Required.",
        "torch.nn:TransformerEncoderLayer", default="required", torchvista="model",
        max_length=300, check=_check_model, stage="trace"),
    "args": FieldRule(
        (dict,), "Keyword arguments for the class or factory; for a zoo model, its runtime "
        "options (DeepSeek-V3: `attn_impl`, `gemm_impl`).",
        "{d_model: 64, nhead: 4}", default="{}", check=_check_keyword_arguments, stage="trace"),
    "config": FieldRule(
        (str,), "A zoo model's named config.", "671B", default="the zoo model's default",
        max_length=100, stage="trace"),
    "overrides": FieldRule(
        (dict,), "Fields of the zoo config to change.", "{n_layers: 4}", default="{}",
        check=_check_overrides, stage="trace"),
    "inputs": FieldRule(
        (list, dict, str), "Input shapes, a list for positional and a mapping for keyword "
        "inputs, each a shape or `{shape, dtype}`; or an import path "
        "`package.module:make_inputs` to a function (in one of the site's own packages) "
        "returning the inputs.",
        "{tokens: {shape: [1, 128], dtype: int64}}", default="the zoo model's default",
        max_length=300, torchvista="inputs", check=_check_inputs, stage="trace"),
    "depth": FieldRule(
        (int,), "How many module levels are open when the page loads.", "2",
        default="plugin option `depth` (1)", minimum=0, maximum=64,
        torchvista="collapse_modules_after_depth"),
    "focus": FieldRule(
        (str,), "Draw one submodule (its dotted path) with the tensors that enter and leave "
        "it; the figure's root box names its place in the model.", "layers.3.ffn",
        default="the whole model", max_length=300),
    "routing": FieldRule(
        (str, list), "How a mixture-of-experts gate picks experts on the meta device, where "
        "its scores have no values: `balanced` (every expert gets the same share of tokens), "
        "`random` or `random:SEED`, `first` (experts 0..k-1), or a list of expert indices.",
        "balanced", default="plugin option `routing` (balanced)", max_length=1024,
        check=_check_routing, stage="trace"),
    "fold": FieldRule(
        (bool,), "Fold runs of identical layers into one box with a repeat count.", "true",
        default="true", torchvista="show_compressed_view", stage="trace"),
    "trace_depth": FieldRule(
        (int,), "How many levels into torch's own Python functions "
        "(`F.multi_head_attention_forward`, ...) to trace; 0 draws each as one op.", "1",
        default="0", minimum=0, maximum=16, torchvista="forced_module_tracing_depth",
        stage="trace"),
    "aten": FieldRule(
        (bool,), "Also record the ATen ops under each torch op.", "true", default="false",
        stage="trace"),
    "world_size": FieldRule(
        (int,), "Trace one rank of a tensor-parallel split this many ways (a fake process "
        "group: collectives are drawn, nothing is sent).", "8", default="1", minimum=1,
        maximum=4096, stage="trace"),
    "rank": FieldRule(
        (int,), "Which rank of the `world_size`-way split to trace.", "0", default="0",
        minimum=0, maximum=4095, stage="trace"),
    "show_constants": FieldRule(
        (bool,), "Draw constants, buffers and parameters the tracer records as nodes (values "
        "no gradient flows through, like BatchNorm's running statistics).", "false",
        default="true", torchvista="show_non_gradient_nodes"),
    "overlay": FieldRule(
        (str,), "What module boxes are coloured by: op kinds (`none`), parameters, FLOPs, "
        "the bytes of weights read, of activations or of workspace written (copies made from "
        "weights, caches), or an estimated time.", "flops", default="none",
        choices=OVERLAYS),
    "height": FieldRule(
        (int,), "The most the viewer's frame grows to, in pixels; a shorter graph gets a "
        "shorter frame.", "600", default="plugin option `height` (640)", minimum=100,
        maximum=10_000, torchvista="height"),
    "direction": FieldRule(
        (str,), "Which way data flows: `TB` top to bottom, `LR` left to right (slides, wide "
        "models); the viewer's toolbar switches it too.", "LR", default="TB",
        choices=DIRECTIONS),
    "downloads": FieldRule(
        (bool,), "Offer the current view as SVG, PNG and graph JSON downloads in the viewer's "
        "toolbar (`false`: a page that only shows the figure).", "false", default="true"),
    "summary": FieldRule(
        (int,), "Under the graph, a table of parameters, activated parameters, FLOPs, weights "
        "read and activations and workspace written per module, this many levels deep (0: no "
        "table).", "2", default="0", minimum=0,
        maximum=64),
    "export": FieldRule(
        (list, str), "Files written next to the page, with download links under the graph.",
        "[png, svg, json]", default="plugin option `export` ([])", choices=EXPORT_FORMATS,
        max_length=len(EXPORT_FORMATS), torchvista="export_format"),
    "assume": FieldRule(
        (str,), "What to do when the trace had to assume values that may change the figure "
        "(a branch on a value of meta floats): `error` fails the fence, `warn` logs a warning "
        "naming the op and the model's line (`mkdocs build --strict` fails on it), `allow` "
        "only marks it in the figure.", "error", default="plugin option `assume` (warn)",
        choices=ASSUME_MODES),
    "graph": FieldRule(
        (str,), "Which pass to draw: `forward`, or `backward`, the autograd graph of a scalar "
        "loss (the sum of the float outputs, or `loss:`) in the same boxes as the forward, "
        "each gradient op in the module whose op it differentiates, the tensors it saved "
        "from the forward as sources, the parameters' gradients as outputs (on the meta "
        "device too).", "backward", default="forward", choices=GRAPHS, stage="trace"),
    "loss": FieldRule(
        (str,), "With `graph: backward`: an import path to a function (in one of the site's "
        "own packages) that takes the model's output and returns the scalar loss.",
        "my_site.losses:token_loss", default="the sum of the float outputs", max_length=300,
        check=_check_import_path, stage="trace"),
    "dims": FieldRule(
        (dict, str), "Name dimensions on edges, tooltips and the summary: a mapping of sizes "
        "to names (input sizes checked by tracing again with them scaled: only the "
        "dimensions that follow them are named); `auto` traces again with each input size "
        "scaled and names the dimensions that follow (batch B, sequence S, the model width "
        "d_model; a product of two as B·S).", "{1: B, 128: S, 7168: d_model}",
        default="sizes as numbers", check=_check_dims, stage="trace", integer_keys=True),
    "compare": FieldRule(
        (list, dict), "Draw variants of this fence side by side, their differences marked "
        "(modules and ops only in one, shapes, dtypes, arguments and figures that differ; "
        "matched by module path, op and the line that called it), with a table of the "
        "differences: a list of mappings, each the fields a variant changes, or a mapping of "
        "fields to one value per variant. A name that is not a fence field is an `args` "
        "entry, or for a zoo model a config field (`overrides`).",
        "{attn_impl: [naive, absorb]}", default="no comparison", max_length=MAX_VARIANTS,
        check=_check_compare, stage="trace"),
    "highlight": FieldRule(
        (list, dict, str), "Outline boxes and ops: module paths, classes, op names or op "
        "kinds (`attn/einsum#2`: the second einsum inside attn), as a list (orange) or a "
        "mapping to a colour (`#rrggbb` or " + ", ".join(COLOURS) + "). A mark inside a "
        "closed box outlines that box, dashed.", "{wkv_b: blue, einsum: orange}",
        default="none", max_length=200, check=_check_highlight),
    "labels": FieldRule(
        (dict,), "Short text shown on a box or op instead of its name (the tooltip keeps the "
        "name): target → text.", "{wkv_b: expand the latent}", default="none",
        max_length=200, check=_text_mapping(60)),
    "notes": FieldRule(
        (dict,), "Numbered callouts: target → a sentence. The number is drawn on the box (on "
        "the closed box that holds it), the sentences are listed under the figure in order, "
        "and clicking one opens the figure there.", "{wkv_b: The latent is expanded here.}",
        default="none", max_length=50, check=_text_mapping(500)),
    "hide": FieldRule(
        (list, str), "Leave modules, classes, ops or op kinds out of the figure (`[dropout, "
        "shape]`); a tensor that passed through them is drawn straight from its producer to "
        "its consumers.", "[dropout, shape]", default="none", max_length=200,
        check=_check_targets),
    "caption": FieldRule((str,), "Caption shown under the graph.", "One MoE block",
                         default='""', max_length=500),
    "view": FieldRule(
        (str,), "What the fence draws: the computation `graph`, or a data view: `attention` "
        "maps of a text, `embeddings` of many texts projected to 2-D, `experts` (tokens per "
        "expert of a mixture of experts).", "attention", default="graph", choices=VIEWS),
    "text": FieldRule(
        (str,), "The text an attention view runs the model on, split by `tokenizer`.",
        "The cat sat on the mat.", default="none", stage="trace"),
    "tokens": FieldRule(
        (list,), "Token ids an attention view runs the model on (instead of `text`).",
        "[1, 17, 42, 9]", default="none", max_length=512, check=_check_tokens,
        stage="trace"),
    "tokenizer": FieldRule(
        (str,), "An import path to a function (in one of the site's own packages) returning "
        "the model's tokenizer: a `tokenizers.Tokenizer` or a transformers tokenizer.",
        "model_zoo.minilm:load_tokenizer", default="none", max_length=300,
        check=_check_import_path, stage="trace"),
    "weights": FieldRule(
        (str,), "Where a data view's or `execute`'s weights come from: `model`, what the "
        "model's class or factory loads; `random`, seeded random weights (seed 0), labelled "
        "as such under the figure.", "random", default="model", choices=WEIGHTS,
        stage="trace"),
    "layers": FieldRule(
        (list,), "Which attention layers to draw (counted from 0 in the order the "
        "forward runs them).", "[0, 5]", default="all", max_length=64,
        check=_check_index_list),
    "heads": FieldRule(
        (list,), "Which attention heads to draw; a single layer and head is drawn large.",
        "[3]", default="all", max_length=256, check=_check_index_list),
    "texts": FieldRule(
        (list, dict), "The texts of an embeddings view: a list, or a mapping of group names "
        "(the colours of the plot) to lists.", "{animals: [A cat sleeps.], food: [Fresh "
        "bread.]}", default="none", max_length=1_000, check=_check_texts, stage="trace"),
    "dataset": FieldRule(
        (str,), "An import path to a function (in one of the site's own packages) returning "
        "the texts of an embeddings view, as `texts` takes them.", "my_docs.data:sentences",
        default="none", max_length=300, check=_check_import_path, stage="trace"),
    "layer": FieldRule(
        (int,), "Which hidden state an embeddings view projects: 0 the embeddings, N the "
        "output of the Nth block.", "3", default="the last block", minimum=0, maximum=4096,
        stage="trace"),
    "pooling": FieldRule(
        (str,), "How an embeddings view makes one vector of a text's tokens.", "first",
        default="mean", choices=POOLINGS, stage="trace"),
    "projection": FieldRule(
        (str,), "How an embeddings view projects to 2-D: `pca`, or `tsne` (scikit-learn) and "
        "`umap` (umap-learn) when installed; seeded, so every build on one machine draws the "
        "same plot.",
        "tsne", default="pca", choices=PROJECTIONS),
    "execute": FieldRule(
        (str,), "Also run the model for real on this device, with `weights`, and measure time "
        "and memory per module and op (the `time` overlay, the summary table); the caption "
        "names the machine and torch's version. Only for models small enough to run.", "cpu",
        default="none", choices=EXECUTE_DEVICES, stage="trace"),
}


@dataclass(frozen=True)
class FenceSpec:
    """A validated fence: what to trace and how to show it.

    ``None`` means "the default": the plugin's option for ``depth``, ``routing`` and
    ``export``, the zoo model's for ``config`` and ``inputs``. ``lines`` maps each field to its
    1-based line in the fence body, for error messages; it is not part of the spec's identity.
    """

    model: str
    args: dict[str, Any] = field(default_factory=dict)
    config: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    inputs: list[Any] | dict[str, Any] | str | None = None
    depth: int | None = None
    focus: str | None = None
    routing: str | list[int] | None = None
    fold: bool = True
    trace_depth: int = 0
    aten: bool = False
    world_size: int = 1
    rank: int = 0
    show_constants: bool = True
    overlay: str = "none"
    height: int | None = None
    direction: str = "TB"
    downloads: bool = True
    summary: int = 0
    export: tuple[str, ...] | None = None
    assume: str | None = None
    graph: str = "forward"
    loss: str | None = None
    dims: dict[int, str] | str | None = None
    compare: list[dict[str, Any]] | dict[str, list[Any]] | None = None
    highlight: list[str] | dict[str, str] | str | None = None
    labels: dict[str, str] | None = None
    notes: dict[str, str] | None = None
    hide: list[str] | str | None = None
    caption: str = ""
    view: str = "graph"
    text: str | None = None
    tokens: tuple[int, ...] | None = None
    tokenizer: str | None = None
    weights: str = "model"
    layers: tuple[int, ...] | None = None
    heads: tuple[int, ...] | None = None
    texts: list[str] | dict[str, list[str]] | None = None
    dataset: str | None = None
    layer: int | None = None
    pooling: str = "mean"
    projection: str = "pca"
    execute: str | None = None
    lines: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    def with_defaults(self, *, depth: int, routing: str | list[int],
                      export: tuple[str, ...], assume: str = "warn",
                      height: int | None = None) -> FenceSpec:
        """This spec with the plugin's defaults filled in where the fence left them out."""
        return dataclasses.replace(
            self,
            depth=self.depth if self.depth is not None else depth,
            routing=self.routing if self.routing is not None else routing,
            export=self.export if self.export is not None else export,
            assume=self.assume if self.assume is not None else assume,
            height=self.height if self.height is not None else height,
        )

    def identity(self) -> dict[str, Any]:
        """Every field but ``lines``: what a cache key is made of."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name != "lines"}

    def trace_identity(self) -> dict[str, Any]:
        """The fields that decide the trace: fences equal in these share one."""
        return {name: getattr(self, name) for name, rule in FIELDS.items()
                if rule.stage == "trace"}

    def line_of(self, name: str | None) -> int | None:
        """The 1-based body line of a field, if the fence wrote it."""
        return self.lines.get(name) if name else None


@functools.lru_cache(maxsize=1024)
def parse_spec(text: str) -> FenceSpec:
    """Parse a fence body; raise ``SpecError`` with the field and the 1-based body line.

    Results are memoised by text: a docs build reads each fence when it submits the site's
    fences, when it submits the page's, and when it draws it.
    """
    return spec_from_mapping(*read_mapping(text))


_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's loader where PyYAML has it (several times faster), else the pure Python one."""
_RESOLVER = yaml.resolver.Resolver()
_NUMBER_TAGS = frozenset({"tag:yaml.org,2002:int", "tag:yaml.org,2002:float"})


def read_mapping(text: str) -> tuple[dict[Any, Any], dict[str, int]]:
    """A fence body's YAML mapping, and the 1-based line of each of its keys."""
    data, lines = _read(text)
    if data is None:
        raise SpecError("the fence is empty; give at least `model: package.module:Class`")
    if not isinstance(data, dict):
        raise SpecError("the fence must be a YAML mapping of `field: value` lines, "
                        f"not a {_type_name(data)}")
    return data, lines


def read_yaml(text: str) -> Any:
    """One YAML value (a directive option, a command-line value) read as a fence is: the same
    limits, plain data only."""
    return _read(text)[0]


def _read(text: str) -> tuple[Any, dict[str, int]]:
    size = len(text.encode("utf-8", "replace"))
    if size > MAX_FENCE_BYTES:
        raise SpecError(f"the fence holds {size:,} bytes; a fence may hold at most "
                        f"{MAX_FENCE_BYTES // 1024} KiB")
    lines = _check_events(text)
    loader = _Loader(text)
    try:
        data = loader.get_single_data()
    except (yaml.YAMLError, ValueError, OverflowError) as error:  # e.g. a date like 2001-02-30
        raise _yaml_error(error, text) from error
    finally:
        loader.dispose()
    problem = _fence_data_problem(data)
    if problem:
        raise SpecError(problem)
    return data, lines


def _fence_data_problem(data: Any) -> str | None:
    """``_plain_data_problem`` of a fence: a field that takes integer keys may have them."""
    if not isinstance(data, dict):
        return _plain_data_problem(data)
    for key, item in data.items():
        rule = FIELDS.get(key) if isinstance(key, str) else None
        problem = (_plain_data_problem({key: None}) or
                   _plain_data_problem(item, rule is not None and rule.integer_keys))
        if problem:
            return problem
    return None


@dataclass
class _Level:
    """An open list or mapping while the events of a fence are walked."""

    mapping: bool
    expect_key: bool = True
    keys: dict[str, int] = field(default_factory=dict)


def _check_events(text: str) -> dict[str, int]:
    """Walk the parser's events, refusing what ``MAX_*`` limits and duplicate keys; return
    the 1-based line of each top-level key (block or flow style)."""
    last_line = max(len(text.splitlines()), 1)
    stack: list[_Level] = []
    top_keys: dict[str, int] = {}
    field_name = ""  # the top-level key whose value is being read
    nodes = 0
    try:
        for event in yaml.parse(text, Loader=_Loader):
            line = min(event.start_mark.line + 1, last_line)
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise SpecError("YAML anchors and aliases (&name, *name) are not allowed in a "
                                "fence; write the value out", line=line)
            if isinstance(event, yaml.CollectionEndEvent):
                stack.pop()
                continue
            if not isinstance(event, yaml.ScalarEvent | yaml.CollectionStartEvent):
                continue
            nodes += 1
            if nodes > MAX_NODES:
                raise SpecError(f"the fence holds more than {MAX_NODES:,} values; a fence "
                                "describes a model, it does not hold data", line=line)
            parent = stack[-1] if stack else None
            if parent is not None and parent.mapping:
                if parent.expect_key:
                    rule = FIELDS.get(field_name)
                    _note_key(event, parent, line, top_keys if len(stack) == 1 else None,
                              integers=len(stack) == 2 and rule is not None and rule.integer_keys)
                    if len(stack) == 1 and isinstance(event, yaml.ScalarEvent):
                        field_name = event.value
                parent.expect_key = not parent.expect_key
            if isinstance(event, yaml.ScalarEvent):
                _check_scalar(event, line)
            else:
                stack.append(_Level(mapping=isinstance(event, yaml.MappingStartEvent)))
                if len(stack) > MAX_NESTING:
                    raise SpecError(f"the fence nests lists and mappings more than "
                                    f"{MAX_NESTING} levels deep", line=line)
    except yaml.YAMLError as error:
        raise _yaml_error(error, text) from error
    return top_keys


def _note_key(event: yaml.Event, mapping: _Level, line: int,
              top_keys: dict[str, int] | None, integers: bool = False) -> None:
    """Record a mapping's key; ``integers``: the field takes integer keys too."""
    if not isinstance(event, yaml.ScalarEvent):
        raise SpecError("a key must be a name, not a list or a mapping", line=line)
    key = event.value
    kind = _RESOLVER.resolve(yaml.ScalarNode, key, (True, False)) if event.implicit[0] else ""
    allowed = ("", "tag:yaml.org,2002:str", *(("tag:yaml.org,2002:int",) if integers else ()))
    if kind not in allowed:
        kind = kind.rpartition(":")[2]
        article = "an" if kind[0] in "aeiou" else "a"
        raise SpecError(f"the key {brief(key, 40)} is read as {article} {kind}; keys in a fence "
                        "are names (quote it)", line=line)
    if key in mapping.keys:
        raise SpecError(f"the key {brief(repr(key), 40)} appears twice (first on line "
                        f"{mapping.keys[key]}); keep one", field=key if top_keys is not None
                        else None, line=line)
    mapping.keys[key] = line
    if top_keys is not None:
        top_keys[key] = line


def _check_scalar(event: yaml.ScalarEvent, line: int) -> None:
    value = event.value
    if event.tag is not None and event.tag != "!":
        raise SpecError(f"YAML tags ({brief(event.tag, 30)}) are not allowed in a fence; write "
                        "plain strings, numbers, lists and mappings", line=line)
    tag = _RESOLVER.resolve(yaml.ScalarNode, value, (True, False)) if event.implicit[0] else ""
    if tag in _NUMBER_TAGS and len(value) > MAX_NUMBER_CHARS:
        raise SpecError(f"the number {brief(value, 24)} has {len(value):,} characters; numbers "
                        f"in a fence have at most {MAX_NUMBER_CHARS}", line=line)
    if tag == "tag:yaml.org,2002:timestamp":
        raise SpecError(f"{brief(value, 40)} is read as a date; quote it to pass a string",
                        line=line)
    if len(value) > MAX_TEXT_CHARS:
        raise SpecError(f"a value of {len(value):,} characters; a fence's values are at most "
                        f"{MAX_TEXT_CHARS:,}", line=line)


def _yaml_error(error: Exception, text: str) -> SpecError:
    mark = getattr(error, "problem_mark", None)
    last = max(len(text.splitlines()) - 1, 0)  # libyaml puts end-of-text past the end
    line = min(mark.line, last) + 1 if mark is not None else None
    problem = getattr(error, "problem", None) or str(error)
    return SpecError(f"invalid YAML: {brief(problem, 160)}; check indentation and quoting",
                     line=line)


_PLAIN_SCALARS = (str, int, float, bool, type(None))


def _plain_data_problem(value: Any, integer_keys: bool = False) -> str | None:
    """What in ``value`` is not plain data (a date, a set, binary, a mapping with keys that
    are not strings), or None; ``integer_keys``: the outermost mapping may have integer keys
    (and a fence's top-level mapping passes that on to the fields that take them). Nesting
    is bounded by ``_check_events``."""
    if isinstance(value, _PLAIN_SCALARS):
        return None
    if isinstance(value, list):
        return next(filter(None, map(_plain_data_problem, value)), None)
    if isinstance(value, dict):
        for key, item in value.items():
            if integer_keys and isinstance(key, int) and not isinstance(key, bool):
                continue
            if not isinstance(key, str):
                return (f"the key {brief(repr(key), 40)} is read as a {_type_name(key)}; keys "
                        "in a fence are strings (quote it)")
            problem = _plain_data_problem(item)
            if problem:
                return problem
        return None
    if isinstance(value, datetime.date):
        return f"{value} is read as a date; quote it to pass a string"
    return f"a {_type_name(value)} value is not allowed in a fence; use strings, numbers, lists"


def spec_from_mapping(data: dict[Any, Any], lines: dict[str, int] | None = None) -> FenceSpec:
    """Validate an already parsed mapping (the Sphinx directive's options, a CLI file)."""
    lines = lines or {}
    for key, value in data.items():
        check_field(str(key), value, lines.get(str(key)))
    if "model" not in data:
        raise SpecError("the field 'model' is missing; add e.g. "
                        f"`model: {FIELDS['model'].example}`", field="model")
    values = {str(k): v for k, v in data.items()}
    if values.get("rank", 0) >= values.get("world_size", 1):
        raise SpecError(f"field 'rank' is {values['rank']}, outside a "
                        f"{values.get('world_size', 1)}-way split; give `world_size` too, e.g. "
                        "`world_size: 8`", field="rank", line=lines.get("rank"))
    if "export" in values:
        export = values["export"]
        values["export"] = (export,) if isinstance(export, str) else tuple(export)
    for name in ("tokens", "layers", "heads"):
        if name in values:
            values[name] = tuple(values[name])
    if isinstance(values.get("dims"), dict):  # one key type, so cache keys can sort them
        values["dims"] = {int(size): name for size, name in values["dims"].items()}
    return FenceSpec(**values, lines=lines)


def check_field(key: str, value: Any, line: int | None = None) -> None:
    """Raise ``SpecError`` if ``key: value`` is not allowed in a fence."""
    rule = FIELDS.get(key)
    if rule is None:
        allowed = ", ".join(FIELDS)
        raise SpecError(f"unknown field {brief(repr(key), 40)}{did_you_mean(key, FIELDS)}; "
                        f"allowed fields: {allowed}", field=key, line=line)

    def fail(problem: str) -> SpecError:
        return SpecError(f"field '{key}' {problem}; e.g. `{key}: {rule.example}`",
                         field=key, line=line)

    if (isinstance(value, bool) and bool not in rule.types) or not isinstance(value, rule.types):
        kinds = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in rule.types)
        raise fail(f"must be of type {kinds}, got {brief(repr(value), 60)}")
    if isinstance(value, str | list) and len(value) > rule.max_length:
        unit = "characters" if isinstance(value, str) else "items"
        raise fail(f"has {len(value):,} {unit}; at most {rule.max_length:,}")
    items = value if isinstance(value, list) and rule.choices else [value]
    for item in items:
        if rule.choices and item not in rule.choices:
            allowed = ", ".join(str(c) for c in rule.choices)
            hint = did_you_mean(item, map(str, rule.choices)) if isinstance(item, str) else ""
            raise fail(f"has {brief(repr(item), 40)}; allowed values: {allowed}{hint}")
    if rule.minimum is not None and value < rule.minimum:
        raise fail(f"must be at least {rule.minimum}, got {value}")
    if rule.maximum is not None and value > rule.maximum:
        raise fail(f"must be at most {rule.maximum}, got {brief(str(value), 30)}")
    problem = rule.check(value) if rule.check else None
    if problem:
        raise fail(f"is wrong: {problem}")


_TYPE_NAMES = {str: "string", int: "integer", bool: "boolean (true or false)",
               dict: "mapping", list: "list", float: "number", type(None): "null"}
"""How errors and the field table name the YAML types."""


def _type_name(value: Any) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def field_table() -> str:
    """The Markdown table of every fence field, for the docs' reference page."""
    rows = ["| field | type | default | changes | what it does | example | torchvista |",
            "|---|---|---|---|---|---|---|"]
    for name, rule in FIELDS.items():
        kinds = " or ".join(_TYPE_NAMES.get(t, t.__name__).split(" ")[0] for t in rule.types)
        what = rule.description
        if rule.choices:
            what += " One of " + ", ".join(f"`{c}`" for c in rule.choices) + "."
        if rule.minimum is not None and rule.maximum is not None:
            what += f" From {rule.minimum} to {rule.maximum:,}."
        elif rule.minimum is not None:
            what += f" At least {rule.minimum}."
        torchvista = f"`{rule.torchvista}`" if rule.torchvista else "—"
        changes = "the trace" if rule.stage == "trace" else "the view"
        rows.append(f"| `{name}` | {kinds} | {rule.default} | {changes} | {what} | "
                    f"`{name}: {rule.example}` | {torchvista} |")
    return "\n".join(rows)
