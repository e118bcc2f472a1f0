"""Exports that match: the SVG a fence exports (and the viewer downloads) renders the same in
Chromium, cairosvg (the project's own PNG route) and rsvg-convert: plain colours, generic font
fallbacks, nothing only one renderer understands."""

from __future__ import annotations

import io
import os
import shutil
import subprocess

import cairosvg
import pytest
from figure_models import encoder_layer
from PIL import Image, ImageChops, ImageStat

from model_trace.engine import DrawOptions, draw
from model_trace.render_html import FigureData

MEAN_DIFFERENCE = 0.02
"""The largest mean per-pixel difference (0..1 per channel) between two renderers: text
anti-aliasing differs by a fraction of a percent; a lost colour or font shows at once."""


def _pixels(png: bytes) -> Image.Image:
    return Image.open(io.BytesIO(png)).convert("RGB")


def _difference(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute difference per pixel and channel, 0..1."""
    assert a.size == b.size
    return sum(ImageStat.Stat(ImageChops.difference(a, b)).mean) / 3 / 255


def _brightness(image: Image.Image) -> float:
    return sum(ImageStat.Stat(image).mean) / 3 / 255


def _rsvg(svg: str) -> Image.Image:
    if shutil.which("rsvg-convert") is None:
        message = "rsvg-convert is not installed (apt-get install librsvg2-bin)"
        if os.environ.get("CI"):
            pytest.fail(message + " and CI is set", pytrace=False)
        pytest.skip(message)
    done = subprocess.run(["rsvg-convert"], input=svg.encode(), capture_output=True,
                          check=True)
    return _pixels(done.stdout)


@pytest.fixture(scope="module")
def figure() -> FigureData:
    return FigureData.of(encoder_layer(), show_constants=True)


CASES = [("light", "none"), ("dark", "flops")]


@pytest.mark.parametrize(("theme", "overlay"), CASES)
def test_cairosvg_and_rsvg_draw_the_export_alike(figure: FigureData, theme: str,
                                                 overlay: str) -> None:
    svg = draw(figure.json, DrawOptions(depth=2, standalone=True, theme=theme,
                                        overlay=overlay)).svg
    cairo = _pixels(cairosvg.svg2png(bytestring=svg.encode()))
    assert _difference(cairo, _rsvg(svg)) < MEAN_DIFFERENCE
    light = theme == "light"
    brightness = _brightness(cairo)
    assert brightness > 0.85 if light else brightness < 0.3  # not a black picture
    assert len(cairo.getcolors(1 << 20) or []) > 50  # colours, not a blank


@pytest.mark.browser
@pytest.mark.parametrize(("theme", "overlay"), CASES)
def test_chromium_draws_the_export_as_cairosvg_does(figure: FigureData, browser, theme: str,
                                                    overlay: str) -> None:
    svg = draw(figure.json, DrawOptions(depth=2, standalone=True, theme=theme,
                                        overlay=overlay)).svg
    cairo = _pixels(cairosvg.svg2png(bytestring=svg.encode()))
    width, height = cairo.size
    page = browser.new_page(viewport={"width": width, "height": height})
    page.set_content(f'<html><body style="margin: 0">{svg}</body></html>')
    chrome = _pixels(page.screenshot(clip={"x": 0, "y": 0, "width": width, "height": height}))
    page.close()
    assert _difference(cairo, chrome) < MEAN_DIFFERENCE
    assert _difference(_rsvg(svg), chrome) < MEAN_DIFFERENCE
