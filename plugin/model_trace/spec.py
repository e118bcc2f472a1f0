"""The fence spec: the YAML inside a ```model-trace block, parsed and validated.

Validation is declarative (``FIELDS``) so every error names the field, what was wrong and the
values allowed, and so the docs' field reference (generated from ``FIELDS``) and the checks
cannot drift apart. Nothing here imports torch: the docs build parses every fence before it
knows whether anything has to be traced.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

from model_trace.errors import SpecError

ROUTING_POLICIES = ("balanced", "random", "first")
"""How a mixture-of-experts gate picks experts on the meta device, where scores have no values
(also ``random:SEED``, or a list of expert indices); the tracer's ``ROUTING_NAMES``."""
OVERLAYS = ("none", "params", "flops", "memory", "time")
"""What the viewer colours module boxes by."""
EXPORT_FORMATS = ("png", "svg", "json")
"""Files a fence can offer for download next to its page."""
DTYPES = ("float32", "float16", "bfloat16", "float64", "int64", "int32", "int8", "bool")
"""Input dtypes a fence may name."""


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
    torchvista: str = ""
    """The matching ``torchvista.trace_model`` argument, for the side-by-side table."""
    check: Callable[[Any], str | None] | None = None
    """Deeper validation: returns what is wrong, or None."""
    stage: str = "view"
    """"trace": the field changes what is traced (fences that differ only in "view" fields
    share one trace); "view": it changes only how the graph is shown."""


def _check_shape(value: Any) -> str | None:
    shape = value.get("shape") if isinstance(value, dict) else value
    if isinstance(value, dict):
        unknown = sorted(set(value) - {"shape", "dtype"})
        if unknown:
            return f"an input mapping has the keys shape and dtype, not {', '.join(unknown)}"
        if "dtype" in value and value["dtype"] not in DTYPES:
            return f"dtype {value['dtype']!r} is not one of {', '.join(DTYPES)}"
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        return (f"{value!r} is not a shape; write a list of sizes like [2, 16, 64] or "
                "{shape: [1, 128], dtype: int64}")
    return None


def _check_inputs(value: Any) -> str | None:
    if isinstance(value, str):
        return _check_import_path(value)
    shapes = value.values() if isinstance(value, dict) else value
    for shape in shapes:
        problem = _check_shape(shape)
        if problem:
            return problem
    return None


def _check_import_path(value: str) -> str | None:
    module, sep, attribute = value.partition(":")
    if not sep or not module or not attribute:
        return f"{value!r} is not an import path; write it as 'package.module:function'"
    return None


def _check_routing(value: Any) -> str | None:
    if isinstance(value, list):
        if all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in value):
            return None
        return f"{value!r} is not a list of expert indices"
    name, _, seed = value.partition(":")
    if name in ROUTING_POLICIES and (not seed or (name == "random" and seed.isdigit())):
        return None
    return (f"{value!r} is not a routing policy; allowed values: {', '.join(ROUTING_POLICIES)}, "
            "random:SEED, or a list of expert indices")


def _check_model(value: str) -> str | None:
    return None if ":" not in value else _check_import_path(value)


FIELDS: dict[str, FieldRule] = {
    "model": FieldRule(
        (str,), "A zoo name (`deepseek-v3`) or an import path `package.module:factory` whose "
        "package is in the allowed import roots. Required.",
        "torch.nn:TransformerEncoderLayer", default="required", torchvista="model",
        check=_check_model, stage="trace"),
    "args": FieldRule(
        (dict,), "Keyword arguments for the factory; for a zoo model, its runtime options "
        "(DeepSeek-V3: `attn_impl`, `gemm_impl`).",
        "{d_model: 64, nhead: 4}", default="{}", stage="trace"),
    "config": FieldRule(
        (str,), "A zoo model's named config.", "671B", default="the zoo model's default",
        stage="trace"),
    "overrides": FieldRule(
        (dict,), "Fields of the zoo config to change.", "{n_layers: 4}", default="{}",
        stage="trace"),
    "inputs": FieldRule(
        (list, dict, str), "Input shapes, a list for positional and a mapping for keyword "
        "inputs, each a shape or `{shape, dtype}`; or an import path "
        "`package.module:make_inputs` to a function returning the inputs.",
        "{tokens: {shape: [1, 128], dtype: int64}}", default="the zoo model's default",
        torchvista="inputs", check=_check_inputs, stage="trace"),
    "depth": FieldRule(
        (int,), "How many module levels are open when the page loads.", "2",
        default="plugin option `depth` (1)", minimum=0,
        torchvista="collapse_modules_after_depth"),
    "focus": FieldRule(
        (str,), "Draw one submodule (its dotted path) with the tensors that enter and leave "
        "it; the figure's root box names its place in the model.", "layers.3.ffn",
        default="the whole model"),
    "routing": FieldRule(
        (str, list), "How a mixture-of-experts gate picks experts on the meta device, where "
        "its scores have no values: `balanced` (every expert gets the same share of tokens), "
        "`random` or `random:SEED`, `first` (experts 0..k-1), or a list of expert indices.",
        "balanced", default="plugin option `routing` (balanced)", check=_check_routing,
        stage="trace"),
    "fold": FieldRule(
        (bool,), "Fold runs of identical layers into one box with a repeat count.", "true",
        default="true", torchvista="show_compressed_view", stage="trace"),
    "trace_depth": FieldRule(
        (int,), "How many levels into torch's own Python functions "
        "(`F.multi_head_attention_forward`, ...) to trace; 0 draws each as one op.", "1",
        default="0", minimum=0, torchvista="forced_module_tracing_depth", stage="trace"),
    "aten": FieldRule(
        (bool,), "Also record the ATen ops under each torch op.", "true", default="false",
        stage="trace"),
    "world_size": FieldRule(
        (int,), "Trace one rank of a tensor-parallel split this many ways (a fake process "
        "group: collectives are drawn, nothing is sent).", "8", default="1", minimum=1,
        stage="trace"),
    "rank": FieldRule(
        (int,), "Which rank of the `world_size`-way split to trace.", "0", default="0",
        minimum=0, stage="trace"),
    "show_constants": FieldRule(
        (bool,), "Draw constant inputs (tensors made inside the forward, non-gradient "
        "values).", "false", default="true", torchvista="show_non_gradient_nodes"),
    "overlay": FieldRule(
        (str,), "What module boxes are coloured by.", "flops", default="none",
        choices=OVERLAYS),
    "height": FieldRule(
        (int,), "Height of the viewer in pixels.", "600", default="the viewer's own",
        minimum=100, torchvista="height"),
    "summary": FieldRule(
        (int,), "Under the graph, a table of parameters, activated parameters and FLOPs per "
        "module, this many levels deep (0: no table).", "2", default="0", minimum=0),
    "export": FieldRule(
        (list, str), "Files written next to the page, with download links under the graph.",
        "[png, svg, json]", default="plugin option `export` ([])", choices=EXPORT_FORMATS,
        torchvista="export_format"),
    "caption": FieldRule((str,), "Caption shown under the graph.", "One MoE block",
                         default='""'),
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
    summary: int = 0
    export: tuple[str, ...] | None = None
    caption: str = ""
    lines: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    def with_defaults(self, *, depth: int, routing: str | list[int],
                      export: tuple[str, ...]) -> FenceSpec:
        """This spec with the plugin's defaults filled in where the fence left them out."""
        return dataclasses.replace(
            self,
            depth=self.depth if self.depth is not None else depth,
            routing=self.routing if self.routing is not None else routing,
            export=self.export if self.export is not None else export,
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


def read_mapping(text: str) -> tuple[dict[Any, Any], dict[str, int]]:
    """A fence body's YAML mapping, and the 1-based line of each of its keys."""
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        last = max(len(text.splitlines()) - 1, 0)  # libyaml puts end-of-text past the end
        line = min(mark.line, last) + 1 if mark is not None else None
        problem = " ".join((getattr(error, "problem", None) or str(error)).split())  # one line
        raise SpecError(f"invalid YAML: {problem}; check indentation and quoting",
                        line=line) from error
    finally:
        loader.dispose()
    if data is None:
        raise SpecError("the fence is empty; give at least `model: package.module:factory`")
    if not isinstance(data, dict):
        raise SpecError("the fence must be a YAML mapping of `field: value` lines, "
                        f"not a {type(data).__name__}")
    return data, _key_lines(root)


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
    return FenceSpec(**values, lines=lines)


def check_field(key: str, value: Any, line: int | None = None) -> None:
    """Raise ``SpecError`` if ``key: value`` is not allowed in a fence."""
    rule = FIELDS.get(key)
    if rule is None:
        allowed = ", ".join(FIELDS)
        raise SpecError(f"unknown field {key!r}; allowed fields: {allowed}", field=key, line=line)

    def fail(problem: str) -> SpecError:
        return SpecError(f"field '{key}' {problem}; e.g. `{key}: {rule.example}`",
                         field=key, line=line)

    if (isinstance(value, bool) and bool not in rule.types) or not isinstance(value, rule.types):
        kinds = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in rule.types)
        raise fail(f"must be of type {kinds}, got {value!r}")
    items = value if isinstance(value, list) and rule.choices else [value]
    for item in items:
        if rule.choices and item not in rule.choices:
            allowed = ", ".join(str(c) for c in rule.choices)
            raise fail(f"has {item!r}; allowed values: {allowed}")
    if rule.minimum is not None and value < rule.minimum:
        raise fail(f"must be at least {rule.minimum}, got {value}")
    problem = rule.check(value) if rule.check else None
    if problem:
        raise fail(f"is wrong: {problem}")


_TYPE_NAMES = {str: "string", int: "integer", bool: "boolean (true or false)",
               dict: "mapping", list: "list"}
"""How errors and the field table name the YAML types."""


def _key_lines(root: yaml.Node | None) -> dict[str, int]:
    """1-based line of each top-level key, whether written in block or flow style."""
    if not isinstance(root, yaml.MappingNode):
        return {}
    lines: dict[str, int] = {}
    for key_node, _ in root.value:
        if isinstance(key_node, yaml.ScalarNode):
            lines.setdefault(str(key_node.value), key_node.start_mark.line + 1)
    return lines


def field_table() -> str:
    """The Markdown table of every fence field, for the docs' reference page."""
    rows = ["| field | type | default | changes | what it does | example | torchvista |",
            "|---|---|---|---|---|---|---|"]
    for name, rule in FIELDS.items():
        kinds = " or ".join(_TYPE_NAMES.get(t, t.__name__).split(" ")[0] for t in rule.types)
        what = rule.description
        if rule.choices:
            what += " One of " + ", ".join(f"`{c}`" for c in rule.choices) + "."
        if rule.minimum is not None:
            what += f" At least {rule.minimum}."
        torchvista = f"`{rule.torchvista}`" if rule.torchvista else "—"
        changes = "the trace" if rule.stage == "trace" else "the view"
        rows.append(f"| `{name}` | {kinds} | {rule.default} | {changes} | {what} | "
                    f"`{name}: {rule.example}` | {torchvista} |")
    return "\n".join(rows)
