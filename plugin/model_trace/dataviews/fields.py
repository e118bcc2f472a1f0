"""Which fence fields each view takes, checked before anything is imported or traced.

``spec.parse_spec`` checks each field on its own; this checks them together (a ``text`` on a
graph fence, an attention view without a text), so the error names the field and its line.
"""

from __future__ import annotations

from model_trace.errors import SpecError
from model_trace.spec import FenceSpec

CAPTURE_VIEWS = ("attention", "embeddings")
"""Views that run the model on data of their own instead of drawing from a trace."""

_OWN_FIELDS: dict[str, tuple[str, ...]] = {
    "text": ("attention",),
    "tokens": ("attention",),
    "layers": ("attention",),
    "heads": ("attention",),
    "tokenizer": ("attention", "embeddings"),
    "texts": ("embeddings",),
    "dataset": ("embeddings",),
    "layer": ("embeddings",),
    "pooling": ("embeddings",),
    "projection": ("embeddings",),
    "execute": ("graph", "experts"),
}
"""Fields that only some views take, and which."""
_DEFAULTS = {"pooling": "mean", "projection": "pca"}
_GRAPH_ONLY = ("focus", "summary", "overlay", "direction", "show_constants", "depth")
"""Fields of the graph figure that a capture view cannot show."""


def check_view_fields(spec: FenceSpec) -> None:
    """Raise ``SpecError`` (naming the field) if the spec's fields do not fit its view."""
    view = spec.view
    for name, views in _OWN_FIELDS.items():
        value = getattr(spec, name)
        if value is None or value == _DEFAULTS.get(name) or view in views:
            continue
        takes = " or ".join(f"`view: {v}`" for v in views)
        raise SpecError(f"field '{name}' applies to {takes}, not to `view: {view}`; remove it "
                        f"or set the view", field=name)
    if view == "attention":
        _one_of(spec, "text", "tokens", "`text: The cat sat on the mat.`")
        if spec.text is not None and spec.tokenizer is None:
            raise SpecError("an attention view of a `text` needs the model's `tokenizer` "
                            "(e.g. `tokenizer: model_zoo.minilm:load_tokenizer`), or give "
                            "`tokens` instead", field="text")
    if view == "embeddings":
        _one_of(spec, "texts", "dataset", "`texts: {animals: [A cat sleeps.], food: [...]}`")
        if spec.tokenizer is None:
            raise SpecError("an embeddings view needs the model's `tokenizer`, e.g. "
                            "`tokenizer: model_zoo.minilm:load_tokenizer`",
                            field="texts" if spec.texts is not None else "dataset")
    if view in CAPTURE_VIEWS:
        for name in _GRAPH_ONLY:
            if name in spec.lines:
                raise SpecError(f"field '{name}' applies to the graph figure, not to "
                                f"`view: {view}`; remove it", field=name)


def _one_of(spec: FenceSpec, first: str, second: str, example: str) -> None:
    given = [name for name in (first, second) if getattr(spec, name) is not None]
    if not given:
        raise SpecError(f"`view: {spec.view}` needs `{first}` or `{second}`, e.g. {example}",
                        field="view")
    if len(given) == 2:
        raise SpecError(f"give `{first}` or `{second}`, not both", field=second)
