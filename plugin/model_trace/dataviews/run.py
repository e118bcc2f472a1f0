"""What a trace worker runs for a data view: capture once for fences that share it, draw
each fence, and make its export files (the same formats as a graph fence: ``svg``, ``png``,
and ``json``, here the numbers the figure shows)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from model_trace.cache import PREFIX_PLACEHOLDER, FenceOutput
from model_trace.dataviews.svg import Drawn
from model_trace.errors import ModelTraceError, SpecError
from model_trace.graph import Graph
from model_trace.loader import ImportPolicy, resolve
from model_trace.spec import FenceSpec

EXPORT_PREFIX = "model-trace"


@dataclass(frozen=True)
class Captured:
    """What a capture view ran the model for: attention maps of one text, or projected
    hidden states of many; ``note`` says where the weights came from, for the caption."""

    kind: str
    payload: Any
    note: str


def run_data_views(specs: list[FenceSpec], policy: ImportPolicy | None, theme: str = "auto"
                   ) -> list[FenceOutput | ModelTraceError]:
    """Capture ``specs[0]``'s data once and draw every spec from it (they share the fields
    that decide the capture); a problem with one spec's drawing is returned in its place.
    ``theme`` (auto, light, dark) is the plugin's: auto follows the page's scheme."""
    from model_trace.tracing.threads import one_thread

    with one_thread():
        captured = capture(specs[0], policy)
    outputs: list[FenceOutput | ModelTraceError] = []
    for spec in specs:
        try:
            outputs.append(output(draw_captured(captured, spec, PREFIX_PLACEHOLDER), spec,
                                  theme))
        except ModelTraceError as error:
            outputs.append(error)
    return outputs


def capture(spec: FenceSpec, policy: ImportPolicy | None) -> Captured:
    """Build the model with real weights and run it on the spec's text(s)."""
    from model_trace.dataviews.runnable import Tokenizer, check_length, real_model

    why = f"`view: {spec.view}`"
    model = real_model(spec, policy, why)
    tokenizer = Tokenizer(spec, policy)
    note = "seeded random weights (seed 0), not trained" if spec.weights == "random" else ""
    if spec.view == "attention":
        from model_trace.dataviews.attention import capture_attention
        from model_trace.dataviews.draw_attention import MAX_TOKENS

        if spec.tokens is not None:
            ids, labels = list(spec.tokens), tokenizer.labels(list(spec.tokens))
        else:
            assert spec.text is not None
            tokens = tokenizer.encode(spec.text)
            ids, labels = tokens.ids, tokens.labels
        field = "tokens" if spec.tokens is not None else "text"
        check_length(len(ids), model, spec, field)
        if len(ids) > MAX_TOKENS:
            raise SpecError(f"the text is {len(ids)} tokens long; an attention view draws at "
                            f"most {MAX_TOKENS} (a map of {MAX_TOKENS}² cells): shorten it",
                            field=field)
        return Captured("attention", (capture_attention(model, ids), labels), note)
    from model_trace.dataviews.hidden import hidden_states

    texts, groups = _texts(spec, policy)
    encoded = [tokenizer.encode(t).ids for t in texts]
    for ids, text in zip(encoded, texts, strict=True):
        check_length(len(ids), model, spec, "texts" if spec.texts is not None else "dataset",
                     f"the text {text[:40]!r}")
    vectors, layer, count = hidden_states(model, encoded, spec.layer, spec.pooling)
    about = (f"{spec.model.rpartition(':')[2] or spec.model}, layer {layer} of {count}, "
             f"{spec.pooling} over tokens")
    if note:
        about += f", {note}"
    return Captured("embeddings", (vectors, texts, groups, about), note)


def _texts(spec: FenceSpec, policy: ImportPolicy | None) -> tuple[list[str], list[str]]:
    """The texts and the group of each: from ``texts`` or the ``dataset`` function."""
    given: Any = spec.texts
    field = "texts"
    if spec.dataset is not None:
        given, field = resolve(spec.dataset, "dataset", policy)(), "dataset"
    if isinstance(given, dict):
        pairs = [(str(t), str(g)) for g, items in given.items() for t in items]
    elif isinstance(given, list | tuple):
        pairs = [(t, "texts") if isinstance(t, str) else (str(t[0]), str(t[1])) for t in given]
    else:
        raise SpecError(f"{field} gave a {type(given).__name__}; give a list of texts, a list "
                        "of (text, group) pairs or a mapping of groups to lists", field=field)
    return [t for t, _ in pairs], [g for _, g in pairs]


def draw_captured(captured: Captured, spec: FenceSpec, prefix: str) -> Drawn:
    """One spec's figure from its view's captured data."""
    if captured.kind == "attention":
        from model_trace.dataviews.draw_attention import draw_attention, select_panels

        maps, labels = captured.payload
        return draw_attention(select_panels(maps, spec.layers, spec.heads), labels, prefix,
                              captured.note)
    from model_trace.dataviews.draw_embeddings import draw_embeddings
    from model_trace.dataviews.projection import project

    vectors, texts, groups, about = captured.payload
    names = list(dict.fromkeys(groups))
    return draw_embeddings(project(vectors, spec.projection), texts, groups, names, prefix,
                           about)


def draw_experts_view(graph: Graph, spec: FenceSpec, theme: str = "auto") -> FenceOutput:
    """A ``view: experts`` fence from its traced graph."""
    from model_trace.dataviews.draw_experts import draw_experts
    from model_trace.dataviews.experts import ExpertLoad

    return output(draw_experts(ExpertLoad.of(graph), PREFIX_PLACEHOLDER), spec, theme)


def output(drawn: Drawn, spec: FenceSpec, theme: str = "auto") -> FenceOutput:
    """The fence's HTML (its caption, or the view's) and its export files."""
    caption = spec.caption or drawn.caption
    html = Drawn(drawn.kind, drawn.svg, drawn.data, caption).figure_html(PREFIX_PLACEHOLDER,
                                                                         theme)
    exports: dict[str, bytes] = {}
    formats = set(spec.export or ())
    if "json" in formats:
        exports["json"] = json.dumps({"view": drawn.kind, **drawn.data}, indent=1,
                                     ensure_ascii=False).encode("utf-8")
    if formats & {"svg", "png"}:
        svg = drawn.svg.replace(PREFIX_PLACEHOLDER, EXPORT_PREFIX)
        if "svg" in formats:
            exports["svg"] = svg.encode("utf-8")
        if "png" in formats:
            from model_trace.pipeline import svg_to_png

            exports["png"] = svg_to_png(svg)
    return FenceOutput(html=html, exports=exports)
