"""The data views' colours: numbers on cells stay readable, both schemes cover every class a
drawing uses, and the site's stylesheet carries them."""

from __future__ import annotations

import re

from model_trace.dataviews.palette import DARK, LEVELS, LIGHT, contrast, stylesheet
from model_trace.viewer_files import asset_bytes


def test_numbers_on_cells_meet_wcag_aa_in_both_schemes() -> None:
    for scheme in (LIGHT, DARK):
        assert len(scheme.heat) == LEVELS
        for cell, ink in zip(scheme.heat, scheme.heat_text, strict=True):
            assert contrast(cell, ink) >= 4.5, (cell, ink)


def test_accent_is_readable_on_its_ground() -> None:
    assert contrast(LIGHT.accent, "#ffffff") >= 4.5
    assert contrast(DARK.accent, "#1e2029") >= 4.5


def test_dark_scale_gets_lighter_with_weight_and_light_scale_darker() -> None:
    from model_trace.dataviews.palette import luminance

    light = [luminance(c) for c in LIGHT.heat]
    dark = [luminance(c) for c in DARK.heat]
    assert light == sorted(light, reverse=True)
    assert dark == sorted(dark)


def test_stylesheet_defines_every_variable_it_uses_in_both_schemes() -> None:
    css = stylesheet()
    used = set(re.findall(r"var\(--(mt-[hvg]\d+)\)", css))
    light_rule, dark_rule = css.splitlines()[1:3]
    for rule in (light_rule, dark_rule):
        defined = set(re.findall(r"--(mt-[hvg]\d+):", rule))
        assert used <= defined
    assert '[data-md-color-scheme="slate"] .model-trace-view' in dark_rule
    assert css in asset_bytes("viewer.css").decode("utf-8")
