"""The Sphinx directive: a small Sphinx project built in a temporary folder."""

from __future__ import annotations

import io
import re
import shutil
import sys
import textwrap
from pathlib import Path

import pytest
from sphinx.errors import ExtensionError
from sphinx.testing.util import SphinxTestApp

INDEX = """\
Models
======

.. model-trace::
   :model: torch.nn:Linear
   :args: {in_features: 8, out_features: 4}
   :inputs: [[3, 8]]
   :caption: A linear layer
   :export: [svg]

.. note::

   .. model-trace::

      model: torch.nn:TransformerEncoderLayer
      args: {d_model: 64, nhead: 4, batch_first: true}
      inputs: [[2, 16, 64]]
      depth: 2
"""


def _build(tmp_path: Path, pages: dict[str, str], conf: str = "", builder: str = "html",
           warnings: io.StringIO | None = None) -> Path:
    """Build a Sphinx project; return the output folder."""
    source = tmp_path / "src"
    source.mkdir(exist_ok=True)
    (source / "conf.py").write_text(
        'project = "t"\nextensions = ["model_trace.sphinx_ext"]\n' + textwrap.dedent(conf))
    for name, text in pages.items():
        (source / name).write_text(text)
    app = SphinxTestApp(builder, srcdir=source, builddir=tmp_path / "build", freshenv=True,
                        status=io.StringIO(), warning=warnings or io.StringIO())
    try:
        app.build()
    finally:
        app.cleanup()
    return Path(app.outdir)


def test_directive_draws_graphs_and_ships_assets(tmp_path: Path) -> None:
    out = _build(tmp_path, {"index.rst": INDEX})
    html = (out / "index.html").read_text(encoding="utf-8")
    assert html.count('<figure class="model-trace"') == 2
    assert ">linear</text>" in html and ">(3, 4)</text>" in html
    assert "multi_head_attention_forward" in html
    assert re.search(r'class="admonition note".*?<figure class="model-trace"', html, re.S)
    assert 'src="_static/viewer.js' in html and 'href="_static/viewer.css' in html
    assert (out / "_static/viewer.js").is_file()
    ids = re.findall(r' id="(model-trace-[^"]+)"', html)
    assert ids and len(ids) == len(set(ids))
    assert 'href="model-trace-1.svg"' in html
    assert (out / "model-trace-1.svg").read_text().startswith("<svg")


def test_dirhtml_puts_exports_in_the_page_folder(tmp_path: Path) -> None:
    out = _build(tmp_path, {"index.rst": "Home\n====\n\n.. toctree::\n\n   page\n",
                            "page.rst": INDEX}, builder="dirhtml")
    assert 'href="model-trace-1.svg"' in (out / "page/index.html").read_text()
    assert (out / "page/model-trace-1.svg").is_file()


def test_bad_option_fails_the_build_naming_file_line_and_field(tmp_path: Path) -> None:
    page = "Bad\n===\n\nText.\n\n.. model-trace::\n   :model: torch.nn:Linear\n   :depth: deep\n"
    with pytest.raises(ExtensionError) as raised:
        _build(tmp_path, {"index.rst": page})
    message = str(raised.value)
    assert "index.rst:6" in message and "field 'depth'" in message


def test_unknown_field_in_content_names_its_line(tmp_path: Path) -> None:
    page = "Bad\n===\n\n.. model-trace::\n\n   model: torch.nn:Linear\n   colour: red\n"
    with pytest.raises(ExtensionError) as raised:
        _build(tmp_path, {"index.rst": page})
    assert "index.rst:7" in str(raised.value) and "unknown field 'colour'" in str(raised.value)


def test_warn_mode_and_allowed_roots_from_conf(tmp_path: Path) -> None:
    page = "Refused\n=======\n\n.. model-trace::\n   :model: os:getcwd\n   :inputs: []\n"
    warnings = io.StringIO()
    out = _build(tmp_path, {"index.rst": page}, conf='model_trace_on_error = "warn"\n',
                 warnings=warnings)
    assert "model-trace-error" in (out / "index.html").read_text()
    assert re.search(r"index\.rst:4: WARNING: model-trace: 'os' is outside the roots this "
                     r"site allows .*'os' in `model_trace_allowed_roots` in conf\.py",
                     warnings.getvalue())
    page = page.replace(":inputs: []", ":inputs: []\n   :args: {}").replace("os:getcwd",
                                                                           "json:dumps")
    out = _build(tmp_path, {"index.rst": page},
                 conf='model_trace_allowed_roots = ["json"]\nmodel_trace_on_error = "warn"\n')
    assert "model-trace-error" in (out / "index.html").read_text()  # getcwd is no Module
    assert "not an nn.Module class" in (out / "index.html").read_text()
    assert "`model_trace_own_roots` in conf.py" in (out / "index.html").read_text()


def test_a_model_package_beside_conf_py_imports_without_pythonpath(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``model_trace_paths`` (default: conf.py's folder) is on ``sys.path`` of the build and
    of its trace workers, as the MkDocs plugin's ``paths`` is."""
    monkeypatch.setattr(sys, "path", list(sys.path))  # the extension adds to it; undone after
    package = tmp_path / "src" / "sphinx_beside_conf_models"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        "from torch import nn\n\n\nclass Squash(nn.Module):\n"
        "    def __init__(self) -> None:\n        super().__init__()\n"
        "        self.proj = nn.Linear(4, 4)\n\n"
        "    def forward(self, x):\n        return self.proj(x).tanh()\n", encoding="utf-8")
    page = ("Local\n=====\n\n.. model-trace::\n   :model: sphinx_beside_conf_models:Squash\n"
            "   :inputs: [[2, 4]]\n")
    conf = 'model_trace_allowed_roots = ["sphinx_beside_conf_models"]\n'
    html = (_build(tmp_path, {"index.rst": page}, conf=conf) / "index.html").read_text()
    assert ">tanh</text>" in html
    elsewhere = tmp_path / "elsewhere"
    shutil.move(package, elsewhere / package.name)
    sys.modules.pop(package.name, None)
    conf += 'model_trace_paths = ["../elsewhere"]\nmodel_trace_cache_dir = ""\n'
    (tmp_path / "src" / "index.rst").write_text(page.replace("Squash", "Squash\n   :depth: 2"))
    html = (_build(tmp_path, {}, conf=conf) / "index.html").read_text()
    assert ">tanh</text>" in html


def test_a_warning_the_model_raises_names_the_file_and_line(tmp_path: Path) -> None:
    """The zoo warns when an override turns YaRN off: the build log says so at the directive."""
    page = ("Short context\n=============\n\n.. model-trace::\n\n   model: deepseek-v3\n"
            "   config: tiny\n   overrides: {max_seq_len: 64}\n   inputs: {tokens: [1, 16]}\n")
    warnings = io.StringIO()
    out = _build(tmp_path, {"index.rst": page}, warnings=warnings)
    assert '<figure class="model-trace"' in (out / "index.html").read_text()
    assert re.search(r"index\.rst:4: WARNING: model-trace: YarnOffWarning raised while the "
                     r"model was built or traced: config 'tiny' with max_seq_len=64",
                     warnings.getvalue()), warnings.getvalue()
