"""Every figure tells the whole story: on a set of models (an encoder layer, a ResNet-like conv
net, a GPT-2, DeepSeek-V3 tiny and 671B whole and focused), drawn as a fence draws them at
every depth from 0 to the deepest, each tensor runs from its producer through the ports of
every box it crosses to each consumer, nothing dead-ends, nothing that ran floats alone."""

from __future__ import annotations

import pytest
from figure_models import FIGURE_MODELS

from model_trace.engine import DrawOptions, draw
from model_trace.integrity import check_figure
from model_trace.render_html import FigureData

MODELS = [pytest.param(name, marks=pytest.mark.slow) if "671B" in name else name
          for name in FIGURE_MODELS]
"""The 671B entries trace the full model (seconds): they run with ``--slow``, as CI does."""


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("direction", ["TB", "LR"])
def test_every_depth_draws_every_tensor_end_to_end(name: str, direction: str) -> None:
    figure = FigureData.of(FIGURE_MODELS[name]())
    tree = figure.tree
    idle = [i for i, item in tree.items.items() if item.kind == "idle"]
    depths = [*range(tree.deepest_level() + 1), -1]  # -1: every box, idle ones too
    for depth in depths:
        svg = draw(figure.json, DrawOptions(depth=depth, direction=direction)).svg
        report = check_figure(svg, tree.graph, tree.parents(), idle)
        assert report.total == 0, f"{name}, depth {depth}: {report}"


def test_a_weight_read_outside_its_module_links_that_module() -> None:
    """MLA's absorbed path reads wkv_b's weight without calling it: the box is linked."""
    figure = FigureData.of(FIGURE_MODELS["deepseek-v3 tiny, focus layers.0"]())
    wkv_b = next(m.id for m in figure.tree.graph.modules.values() if m.path.endswith("wkv_b"))
    svg = draw(figure.json, DrawOptions(depth=-1)).svg
    assert f'data-src="{wkv_b}"' in svg and "mt-param" in svg


def test_a_dropout_that_ran_nothing_is_drawn_in_the_flow() -> None:
    figure = FigureData.of(FIGURE_MODELS["encoder layer"]())
    dropout = next(m.id for m in figure.tree.graph.modules.values() if m.path == "dropout1")
    assert figure.tree.items[dropout].category == "idle"  # greyed
    svg = draw(figure.json, DrawOptions(depth=1)).svg
    assert f'data-dst="{dropout}"' in svg and f'data-src="{dropout}"' in svg
