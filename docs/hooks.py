"""Build hooks of this site: reference tables generated from the code, so they cannot drift.

A page asks for a table with an HTML comment on a line of its own:

- ``<!-- table: fence fields -->``: every fence field (``model_trace.spec.FIELDS``);
- ``<!-- table: plugin options -->``: the MkDocs plugin's options, with their docstrings;
- ``<!-- table: torchvista -->``: torchvista's ``trace_model`` arguments beside ours;
- ``<!-- table: graph schema -->``: every structure of the Graph JSON with its fields' types
  and docstrings (``model_trace.graph``).

A number on a DeepSeek-V3 page is written ``{{ name }}``: the claim of that name in
``docs/claims.py``, a table that ``tests/docs/test_claims.py`` recomputes from the zoo and the
traces.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import inspect
import itertools
import re
import sys
from pathlib import Path
from typing import Any

from model_trace import graph as graph_module
from model_trace.mkdocs import config as plugin_config
from model_trace.spec import FIELDS, field_table

_CLAIMS_FILE = Path(__file__).with_name("claims.py")
_CLAIM = re.compile(r"^([ \t]*)(.*?)\{\{ ([a-z0-9_]+) \}\}", re.M)

TORCHVISTA_ARGUMENTS = (
    ("model", "required", ""),
    ("inputs", "required", "shapes (and dtypes) instead of real tensors, or a "
     "`package.module:make_inputs` function"),
    ("show_non_gradient_nodes", "`True`", ""),
    ("collapse_modules_after_depth", "`1`", ""),
    ("forced_module_tracing_depth", "`None`", ""),
    ("height", "`800`", ""),
    ("width", "`None`", "no field: a figure is as wide as the page's content column"),
    ("export_format", "`None`", "a list, since a page can offer several downloads; `json` "
     "instead of `html` (a standalone HTML file is `model-trace render spec.yml -o out.html`)"),
    ("show_module_attr_names", "`False`", "no field: module boxes always show `name: Class`"),
    ("export_path", "`None`", "no field: export files are written next to the page"),
    ("show_compressed_view", "`False`", "on by default here: a 61-layer model is unreadable "
     "unfolded"),
)
"""``torchvista.trace_model``'s arguments in its signature's order, with their defaults and
what differs here."""

_MARKER = re.compile(r"^<!-- table: ([a-z ]+) -->$", re.M)


def plugin_options_table() -> str:
    """Name, default and docstring of every option of ``ModelTraceConfig``."""
    tree = ast.parse(inspect.getsource(plugin_config.ModelTraceConfig))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs = {}
    for statement, following in itertools.pairwise(body):
        if isinstance(statement, ast.Assign) and isinstance(following, ast.Expr):
            docs[statement.targets[0].id] = " ".join(following.value.value.split())
    rows = ["| option | default | what it does |", "|---|---|---|"]
    for name, option in plugin_config.ModelTraceConfig._schema:
        default = option.default
        if isinstance(default, list):
            shown = "`[" + ", ".join(str(d) for d in default) + "]`"
        else:
            shown = f"`{str(default).lower() if isinstance(default, bool) else default}`"
        if name == "jobs":
            shown = "the number of CPUs"
        rows.append(f"| `{name}` | {shown} | {docs.get(name, '')} |")
    return "\n".join(rows)


def torchvista_table() -> str:
    """torchvista's ``trace_model`` arguments beside the fence fields that do the same."""
    ours = {rule.torchvista: (name, rule.default) for name, rule in FIELDS.items()
            if rule.torchvista}
    rows = ["| torchvista `trace_model` argument | its default | model-trace fence field | "
            "default here | what differs |", "|---|---|---|---|---|"]
    for argument, default, difference in TORCHVISTA_ARGUMENTS:
        field, our_default = ours.get(argument, ("", ""))
        shown = f"`{field}`" if field else "—"
        rows.append(f"| `{argument}` | {default} | {shown} | {our_default or '—'} | "
                    f"{difference} |")
    return "\n".join(rows)


GRAPH_STRUCTURES = ("Graph", "ModuleCall", "Node", "Tensor", "Edge", "Stats", "Selection", "Repeat",
                    "Measured", "SourceLocation", "SourceSpan")
"""The Graph's dataclasses in the order the schema page explains them."""
_JSON_NAMES = {"str": "string", "int": "integer", "float": "number", "bool": "boolean",
               "Any": "any"}


def _json_type(node: ast.expr, aliases: dict[str, str]) -> str:
    """A field's annotation in JSON terms, structures linked to their section."""
    if isinstance(node, ast.BinOp):  # X | None
        return f"{_json_type(node.left, aliases)} or {_json_type(node.right, aliases)}"
    if isinstance(node, ast.Constant):
        return "null" if node.value is None else f"`{node.value!r}`"
    if isinstance(node, ast.Subscript):
        outer = ast.unparse(node.value)
        inner = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        if outer == "list":
            return f"list of {_json_type(inner[0], aliases)}"
        if outer == "dict" and ast.unparse(inner[1]) in GRAPH_STRUCTURES:
            return f"list of {_json_type(inner[1], aliases)}"  # Graph.to_dict lists them
        return f"object of {_json_type(inner[1], aliases)}"
    name = ast.unparse(node)
    if name in aliases:
        return aliases[name]
    if name in GRAPH_STRUCTURES:
        return f"[{name}](#{name.lower()})"
    return _JSON_NAMES.get(name, f"`{name}`")


def graph_schema_table() -> str:
    """A section per Graph structure: its docstring and a table of its fields."""
    tree = ast.parse(inspect.getsource(graph_module))
    aliases: dict[str, str] = {}
    classes: dict[str, ast.ClassDef] = {}
    for statement in tree.body:
        if isinstance(statement, ast.Assign) and isinstance(statement.value, ast.Subscript) \
                and ast.unparse(statement.value.value) == "Literal":
            values = statement.value.slice.elts  # type: ignore[attr-defined]
            aliases[statement.targets[0].id] = "one of " + ", ".join(  # type: ignore[attr-defined]
                f'`"{v.value}"`' for v in values)
        elif isinstance(statement, ast.ClassDef):
            classes[statement.name] = statement
    missing = set(classes) - set(GRAPH_STRUCTURES)
    if missing:
        raise ValueError(f"graph.py defines {sorted(missing)}: add to GRAPH_STRUCTURES")
    sections = []
    for name in GRAPH_STRUCTURES:
        body = classes[name].body
        doc = " ".join(str(ast.get_docstring(classes[name])).split()).replace("``", "`")
        rows = [f"### {name}", "", doc, "", "| field | type | meaning |", "|---|---|---|"]
        for statement, following in itertools.pairwise([*body, None]):
            if not isinstance(statement, ast.AnnAssign):
                continue
            meaning = ""
            if isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant):
                meaning = " ".join(str(following.value.value).split())
            meaning = meaning.replace("``", "`").replace("|", "\\|")
            rows.append(f"| `{statement.target.id}` | "  # type: ignore[attr-defined]
                        f"{_json_type(statement.annotation, aliases)} | {meaning} |")
        sections.append("\n".join(rows))
    return "\n\n".join(sections)


TABLES = {"fence fields": field_table, "plugin options": plugin_options_table,
          "torchvista": torchvista_table, "graph schema": graph_schema_table}


@functools.cache
def claim_texts() -> dict[str, str]:
    """The claims table's texts by name (``docs/claims.py``, loaded by path: docs/ is not a
    package)."""
    spec = importlib.util.spec_from_file_location("model_trace_docs_claims", _CLAIMS_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks itself up there
    spec.loader.exec_module(module)
    return module.texts()


def fill_claims(markdown: str, page: str, texts: dict[str, str]) -> str:
    """Every ``{{ name }}`` replaced by its claim's text; a multi-line text keeps the
    placeholder line's indentation. An unknown name is an error naming the page and line."""
    def claim(match: re.Match[str]) -> str:
        indent, before, name = match[1], match[2], match[3]
        if name not in texts:
            line = markdown.count("\n", 0, match.start()) + 1
            raise ValueError(f"{page}:{line}: no claim named {name!r} in docs/claims.py; add it "
                             "there with the computation or the source behind the number")
        return indent + before + texts[name].replace("\n", "\n" + indent)

    while True:  # a line may hold several claims: substitute until none is left
        filled = _CLAIM.sub(claim, markdown)
        if filled == markdown:
            return filled
        markdown = filled


def on_page_markdown(markdown: str, page: Any, **_: object) -> str:
    def table(match: re.Match[str]) -> str:
        return TABLES[match[1]]()

    markdown = fill_claims(markdown, page.file.src_uri, claim_texts())
    return _MARKER.sub(table, markdown)
