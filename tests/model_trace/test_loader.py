"""The import policy: a fence runs only the code the site allows, checked where it is defined
before anything is called; the attacks found against the first, text-only check."""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import pytest
from mkdocs.exceptions import Abort, PluginError

from model_trace.errors import SpecError
from model_trace.loader import ImportPolicy, build_inputs, build_model, check_allowed, resolve
from model_trace.spec import FenceSpec, parse_spec

SITE_PACKAGE = '''\
"""A site's own models, and things a hostile page might try to reach through them."""
import os
from os import system

import torch
from torch import nn
from torch.nn import Linear


class Net(nn.Module):
    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.proj = nn.Linear(width, width)

    def forward(self, x):
        return self.proj(x)


def factory(width: int = 8) -> nn.Module:
    return Net(width)


def make_inputs():
    return [torch.empty(2, 8, device="meta")]


instance = Net()
'''

IMPORT_SIDE_EFFECT = '''\
open({marker!r}, "w").close()


class Model:
    pass
'''


def _attack_fences(marker: Path) -> list[str]:
    """The three fences that ran a command with the text-only check and default roots."""
    return [
        f"model: torch:os.system\nargs: {{command: 'touch {marker}'}}\ninputs: []",
        f"model: torch.utils.collect_env:run\nargs: {{command: 'touch {marker}'}}\ninputs: []",
        f"model: torch.fx.graph_module:_exec_with_source\nargs: {{src: \"open('{marker}', 'w')"
        "\", globals: {}}\ninputs: []",
    ]


@pytest.fixture
def packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``site_models`` (a site's own code) and ``evil_models`` (writes a file when imported)
    on sys.path; returns the file ``evil_models`` would create."""
    root = tmp_path / "packages"
    root.mkdir()
    (root / "site_models.py").write_text(SITE_PACKAGE, encoding="utf-8")
    marker = tmp_path / "imported"
    (root / "evil_models.py").write_text(IMPORT_SIDE_EFFECT.format(marker=str(marker)),
                                        encoding="utf-8")
    monkeypatch.syspath_prepend(str(root))
    for name in ("site_models", "evil_models"):
        monkeypatch.delitem(__import__("sys").modules, name, raising=False)
    return marker


def _refusal(path: str, policy: ImportPolicy, field: str = "model") -> str:
    with pytest.raises(SpecError) as raised:
        check_allowed(FenceSpec(model=path) if field == "model"
                      else FenceSpec(model="torch.nn:Linear", inputs=path), policy)
        resolve(path, field, policy)
    assert raised.value.field == field and "\n" not in str(raised.value)
    return str(raised.value)


DEFAULT = ImportPolicy()
OWN = ImportPolicy(("torch",), ("site_models",), "`{name}`")


@pytest.mark.parametrize("index", range(3))
def test_the_three_code_execution_fences_are_refused_before_anything_runs(
        tmp_path: Path, index: int) -> None:
    marker = tmp_path / "pwned"
    spec = parse_spec(_attack_fences(marker)[index])
    with pytest.raises(SpecError) as raised:
        check_allowed(spec, DEFAULT)  # the text alone refuses the private name
        build_model(spec, policy=DEFAULT)
    assert raised.value.field == "model"
    assert not marker.exists()


def test_the_attacks_fail_a_real_build_with_default_roots(build_site, caplog,
                                                          tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    page = "\n\n".join(f"```model-trace\n{fence}\n```" for fence in _attack_fences(marker))
    with pytest.raises((Abort, PluginError)) as raised:
        build_site({"index.md": page})
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    message = "\n".join([*logged, str(raised.value)])
    assert not marker.exists()
    for line, words in ((2, "the module 'os'"), (8, "not an nn.Module class"),
                        (14, "private '_exec_with_source'")):
        assert f"index.md:{line}: " in message and words in message, message
    assert "Traceback" not in message


def test_a_module_outside_the_roots_is_not_even_imported(packages: Path) -> None:
    message = _refusal("evil_models:Model", DEFAULT)
    assert "outside the roots this site allows" in message
    assert "'evil_models' in `allowed_roots`" in message and "`own_roots`" in message
    with pytest.raises(SpecError):
        build_model(FenceSpec(model="evil_models:Model"), policy=DEFAULT)
    assert not packages.exists()


@pytest.mark.parametrize(("path", "words"), [
    ("site_models:system", "defined in 'posix'"),  # a re-exported function of another package
    ("site_models:os.system", "the module 'os'"),  # walking out through a module attribute
    ("site_models:instance.forward", "a Net object"),  # through an instance
    ("site_models:torch.utils.collect_env.run", "not an nn.Module class"),
    ("site_models:__builtins__", "special names"),
])
def test_own_roots_allow_only_what_they_define(packages: Path, path: str, words: str) -> None:
    assert words in _refusal(path, OWN)


def test_own_roots_allow_their_classes_and_functions(packages: Path) -> None:
    import torch

    built = build_model(FenceSpec(model="site_models:factory", args={"width": 4}), policy=OWN)
    assert isinstance(built, torch.nn.Module) and built.proj.in_features == 4
    assert build_model(FenceSpec(model="site_models:Net"), policy=OWN).proj.in_features == 8
    # a library class re-exported by the site's package is judged by where it is defined
    assert build_model(FenceSpec(model="site_models:Linear", args={
        "in_features": 2, "out_features": 3}), policy=OWN).out_features == 3
    args, _ = build_inputs(FenceSpec(model="site_models:Net", inputs="site_models:make_inputs"),
                           policy=OWN)
    assert args[0].shape == (2, 8)


def test_library_roots_allow_only_nn_module_classes(packages: Path) -> None:
    library = ImportPolicy(("torch", "site_models"))
    assert build_model(FenceSpec(model="site_models:Net"), policy=library) is not None
    message = _refusal("site_models:factory", library)
    assert "not an nn.Module class" in message and "own_roots" in message
    assert "own_roots" in _refusal("site_models:make_inputs", library, field="inputs")
    assert "library root" in _refusal("torch:randn", DEFAULT, field="inputs")
    assert "private" in _refusal("torch.nn.modules._functions:SyncBatchNorm", DEFAULT)


@pytest.mark.parametrize(("path", "words"), [
    (".os:system", "not an import path"),
    ("../os:system", "not an import path"),
    ("site_model:Net", "did you mean 'site_models'?"),  # a misspelt own root
    ("torch.nn:Linaer", "did you mean 'Linear'?"),
    ("torch.nnn:Linear", "did you mean 'torch.nn'"),
    ("nonexistent_package_xyz:Model", "there is no package 'nonexistent_package_xyz'"),
])
def test_hints_for_refused_and_misspelt_paths(packages: Path, path: str, words: str) -> None:
    message = _refusal(path, OWN)
    assert words in message
    assert "add ''" not in message and "'site_model' to" not in message  # the old wrong hints


def test_a_misspelt_zoo_model_gets_a_hint() -> None:
    assert "did you mean 'deepseek-v3'?" in _refusal("deepseek-v4", DEFAULT)


def test_the_zoo_is_allowed_only_with_its_root() -> None:
    check_allowed(FenceSpec(model="deepseek-v3"), DEFAULT)
    with pytest.raises(SpecError, match="add 'model_zoo'"):
        check_allowed(FenceSpec(model="deepseek-v3"), ImportPolicy(("torch",)))


def test_no_policy_allows_anything_for_the_cli() -> None:
    import os

    assert resolve("os:getcwd", "model", None) is os.getcwd


def test_the_docs_say_what_a_fence_runs() -> None:
    root = Path(__file__).parents[2]
    started = (root / "docs/getting-started.md").read_text(encoding="utf-8")
    assert "A fence is code" in started and "own_roots" in started
    assert "nn.Module" in textwrap.dedent(started)
