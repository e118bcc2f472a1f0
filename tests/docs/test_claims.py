"""The DeepSeek-V3 pages cannot drift from the code: every number they quote is a claim of
``docs/claims.py``, every computed claim is recomputed here from the zoo or from a trace of the
fence a page draws, and every cited claim's page links its source."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
PAGES = sorted((DOCS / "deepseek-v3").glob("*.md"))
PLACEHOLDER = re.compile(r"\{\{ ([a-z0-9_]+) \}\}")
# A number that must come from a claim: grouped thousands, a decimal fraction, a percentage, a
# ratio (71.1×), or a count with a unit (671B, 128K, 70 KB, 160 GB/s). Plain small integers that
# define the architecture (61 blocks, 256 experts, 8 per token) may be written as they are.
QUANTITY = re.compile(
    r"(?<![\w.§])\d{1,3}(?:,\d{3})+(?![\d])"  # 7,168
    r"|(?<![\w.§])\d+\.\d+(?![\d])"  # 0.1352
    r"|(?<![\w.§])\d+(?:\.\d+)?\s?%"  # 97.4%
    r"|(?<![\w.§])\d+(?:\.\d+)?×"  # 71.1×
    r"|(?<![\w.§])\d+(?:\.\d+)?\s?(?:[KMBT]|KB|MB|GB|TB|GFLOP|TFLOP|MFLOP)\b"  # 671B, 70 KB
    r"|(?<![\w.§])\d{5,}(?![\d])"  # 16384
)


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"docs_{name}", DOCS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


claims = _load("claims")


def _prose(text: str) -> list[tuple[int, str]]:
    """(line number, text) of every line outside fenced blocks and link definitions, with
    inline code spans and link targets removed."""
    lines, fenced = [], False
    for number, line in enumerate(text.splitlines(), start=1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced or re.match(r"^\[[^\]]+\]: ", line):
            continue
        line = re.sub(r"`[^`]*`", "", line)
        line = re.sub(r"\]\([^)]*\)", "]", line)
        lines.append((number, line))
    return lines


def test_every_computed_claim_reads_as_the_code_computes_it() -> None:
    facts = claims.Facts()
    wrong = {}
    for name, claim in claims.CLAIMS.items():
        if claim.compute is not None:
            value = claim.compute(facts)
            if value != claim.text:
                wrong[name] = f"the table says {claim.text!r}, the code gives {value!r}"
    assert not wrong, wrong


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_quantity_on_a_page_is_a_claim(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    unknown = sorted(set(PLACEHOLDER.findall(text)) - set(claims.CLAIMS))
    assert not unknown, f"{page.name}: placeholders without a claim: {unknown}"
    typed = [f"{page.name}:{number}: {match!r}" for number, line in _prose(text)
             for match in QUANTITY.findall(PLACEHOLDER.sub("", line))]
    assert not typed, "numbers typed in instead of written as {{ claim }}:\n" + "\n".join(typed)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_no_claim_sits_inside_a_figure_fence(page: Path) -> None:
    """Fences are read before pages are converted (to trace them early): a placeholder there
    would reach the tracer unfilled."""
    fences = re.findall(r"```model-trace\n(.*?)```", page.read_text(encoding="utf-8"), re.S)
    assert not [f for f in fences if PLACEHOLDER.search(f)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_a_page_quoting_a_cited_claim_links_its_source(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    missing = {name: claims.CLAIMS[name].source for name in PLACEHOLDER.findall(text)
               if claims.CLAIMS[name].source
               and claims.SOURCES[claims.CLAIMS[name].source] not in text}
    assert not missing, f"{page.name} quotes claims without linking their source: {missing}"


def test_every_claim_is_quoted_somewhere_and_has_a_source_or_a_computation() -> None:
    quoted = {name for page in PAGES for name in PLACEHOLDER.findall(page.read_text("utf-8"))}
    assert sorted(set(claims.CLAIMS) - quoted) == []
    assert all(c.source in (None, *claims.SOURCES) for c in claims.CLAIMS.values())
    with pytest.raises(ValueError, match="needs a computation or a source"):
        claims.Claim("1")


def test_the_build_hook_fills_claims_keeping_indentation_and_names_unknown_ones() -> None:
    hooks = _load("hooks")
    texts = {"a": "1", "table": "| x |\n|---|\n| 2 |"}
    page = "Say {{ a }} and {{ a }}.\n\n??? note\n\n    {{ table }}\n"
    assert hooks.fill_claims(page, "p.md", texts) == (
        "Say 1 and 1.\n\n??? note\n\n    | x |\n    |---|\n    | 2 |\n")
    with pytest.raises(ValueError, match=r"p\.md:3: no claim named 'b' in docs/claims\.py"):
        hooks.fill_claims("x\n\ny {{ b }}\n", "p.md", texts)
    assert hooks.claim_texts() == claims.texts()
