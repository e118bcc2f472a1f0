"""Where things come from: which code is the model's, stable file names, class spans."""

from __future__ import annotations

import functools
import inspect
import os
import sys
import types

import pytest
import torch

import model_trace.tracing.source as source
from model_trace.tracing.source import (
    SourceIndex,
    _class_starts,
    is_model_code,
    is_traced_torch_code,
    is_tracer_code,
    relative_source_path,
)


def _here() -> None:
    """A function of this file: model code."""


def test_which_code_is_the_model_s_the_tracer_s_or_torch_s() -> None:
    linear = torch.nn.Linear.forward.__code__  # torch's own modules: model code
    functional = torch.nn.functional.normalize.__code__
    dispatch = torch.overrides.handle_torch_function.__code__
    tensor = torch.Tensor.__format__.__code__
    tracer = is_model_code.__code__
    compiled = compile("x = 1", "<string>", "exec")
    assert [is_model_code(c) for c in (_here.__code__, linear, functional, dispatch, tensor,
                                       tracer, compiled)] == [
        True, True, False, False, False, False, False]
    assert [is_tracer_code(c) for c in (tracer, _here.__code__, linear)] == [True, False, False]
    # inside a torch function traced into: its own lines, not the dispatch machinery's
    assert [is_traced_torch_code(c) for c in (functional, linear, dispatch, tensor,
                                              _here.__code__)] == [
        True, True, False, False, False]


def test_file_names_are_relative_to_the_deepest_import_root(monkeypatch) -> None:
    root = os.path.abspath(os.sep + "projects")
    monkeypatch.setattr(sys, "path", ["", root, os.path.join(root, "src")])
    assert relative_source_path(os.path.join(root, "src", "pkg", "mod.py")) == "pkg/mod.py"
    assert relative_source_path(os.path.join(root, "top.py")) == "top.py"
    assert relative_source_path(os.path.join(root + "2", "other.py")) == "other.py"
    assert relative_source_path(os.path.join(os.sep + "elsewhere", "a", "b.py")) == "b.py"


def _decorate(cls: type) -> type:
    return cls


@_decorate
@_decorate
class Decorated:
    """Its span starts at its first decorator."""

    class Inner:
        value = 1

    def method(self) -> int:
        return 2


def _make() -> type:
    class Local:
        pass

    return Local


def test_class_spans_cover_their_decorators_and_find_nested_and_local_classes() -> None:
    index = SourceIndex()
    lines, start = inspect.getsourcelines(Decorated)
    span = index.class_span(Decorated)
    assert span.file.endswith("tracing/test_source.py")
    assert (span.start, span.end) == (start, start + len(lines) - 1)
    assert lines[0].startswith("@_decorate") and span.end - span.start == len(lines) - 1
    inner_lines, inner_start = inspect.getsourcelines(Decorated.Inner)
    assert (index.class_span(Decorated.Inner).start, index.class_span(Decorated.Inner).end) == (
        inner_start, inner_start + len(inner_lines) - 1)
    local = index.class_span(_make())
    assert local.start == inspect.getsourcelines(_make)[1] + 1
    function = index.class_span(_make)
    assert (function.start, function.end) == (inspect.getsourcelines(_make)[1],
                                              local.start + 3)
    assert index.class_span(int) is None  # no Python source
    assert index.class_span(functools.partial(_make)) is None
    assert index.class_span(Decorated) is span  # looked up once


def test_class_starts_by_qualified_name_the_first_definition_winning() -> None:
    text = ("class A:\n"
            "    class B:\n"
            "        pass\n"
            "def f():\n"
            "    @dec\n"
            "    class C:\n"
            "        pass\n"
            "class A:\n"
            "    pass\n"
            "if True:\n"
            "    class D:\n"
            "        pass\n")
    assert _class_starts(text) == {"A": 0, "A.B": 1, "f.<locals>.C": 4, "D": 10}


def test_a_class_without_its_definition_in_its_file_has_no_span() -> None:
    fake = type("Nowhere", (), {"__module__": __name__})
    with pytest.raises(OSError, match="no definition of Nowhere"):
        source._class_source(fake)
    assert SourceIndex().class_span(fake) is None


def test_a_class_whose_module_file_is_gone_has_no_span(tmp_path, monkeypatch) -> None:
    """A module loaded from a file since deleted, with no loader to ask for its text: no
    file is read or parsed for its classes."""
    module = types.ModuleType("model_trace_gone")
    module.__file__ = str(tmp_path / "gone.py")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    gone = type("Gone", (), {"__module__": module.__name__})
    assert inspect.getsourcefile(gone) is None
    parsed_before = dict(source._CLASS_STARTS)
    with pytest.raises(OSError, match="no source file for Gone"):
        source._class_source(gone)
    assert SourceIndex().class_span(gone) is None
    assert parsed_before == source._CLASS_STARTS  # nothing parsed, no entry for no file


def test_a_call_from_inside_torch_points_at_the_model_line_that_called_torch() -> None:
    """A frame in torch's internals (here ``torch.autograd.functional``, calling back into
    the model's function) is not where an op comes from: the model's line above it is."""
    found = {}

    def model_function(x: torch.Tensor) -> torch.Tensor:
        torch_frame = sys._getframe(1)
        assert not is_model_code(torch_frame.f_code)
        found["site"] = SourceIndex().call_site(torch_frame)
        found["inside"] = SourceIndex().call_site(torch_frame, in_torch_function=True)
        return x * 2

    line = inspect.currentframe().f_lineno + 1
    torch.autograd.functional.jacobian(model_function, torch.ones(2))
    assert (found["site"].file.endswith("tracing/test_source.py"), found["site"].line) == (
        True, line)
    assert found["site"].code.startswith("torch.autograd.functional.jacobian(")
    assert found["inside"].file == "torch/autograd/functional.py"


def test_a_file_that_changed_is_parsed_again(tmp_path, monkeypatch) -> None:
    module_file = tmp_path / "changing_module.py"
    module_file.write_text("class Moved:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import changing_module

    assert source._class_source(changing_module.Moved)[1] == 1
    module_file.write_text("# a line\n# another\nclass Moved:\n    pass\n")
    os.utime(module_file, (1, 1))  # a stamp linecache cannot mistake for the old one
    assert source._class_source(changing_module.Moved)[1] == 3
    monkeypatch.delitem(sys.modules, "changing_module")


def test_a_call_site_is_found_once_per_process_until_sys_path_changes(monkeypatch) -> None:
    """A second trace reuses the locations the first found; a folder put on ``sys.path``
    may rename their files, so they are found again, relative to it."""
    frame = _finished_frame()
    first = SourceIndex().call_site(frame)
    assert SourceIndex().call_site(frame) is first
    here = os.path.dirname(os.path.abspath(__file__))
    monkeypatch.setattr(sys, "path", [here, *sys.path])
    again = SourceIndex().call_site(frame)
    assert again is not first and again.file == "test_source.py"
    assert (again.line, again.code) == (first.line, first.code) == (
        _finished_frame.__code__.co_firstlineno + 2, "return sys._getframe()")


def _finished_frame() -> types.FrameType:
    """A frame that stays at one line: its function has returned."""
    return sys._getframe()
