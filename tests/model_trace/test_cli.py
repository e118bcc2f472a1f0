"""The command line: ``render`` (a spec file to a page, SVG, PNG or JSON), ``trace`` (a model
to its Graph JSON) and ``summary`` (its per-module table)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from model_trace.cli import main
from model_trace.graph import Graph
from model_trace.viewer_files import viewer_modules

SPEC = """\
model: torch.nn:Linear
args: {in_features: 8, out_features: 4}
inputs: [[3, 8]]
caption: A linear layer
"""


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "linear.yml"
    path.write_text(SPEC)
    return path


def test_html_is_standalone_with_assets_inlined(spec_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "linear.html"
    assert main(["render", str(spec_file), "-o", str(out)]) == 0
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "<title>A linear layer</title>" in page
    assert '<figure class="model-trace" id="model-trace-1"' in page
    assert ">(3, 4)</text>" in page
    assert "<script src=" not in page and "<link " not in page  # nothing to fetch
    for name, source in viewer_modules():
        assert f"/* --- {name} --- */" in page and source.strip().splitlines()[0] in page
    assert page.index("<style>") < page.index("<figure") < page.rindex("<script>")


@pytest.mark.parametrize("suffix", ["svg", "png", "json"])
def test_other_formats(spec_file: Path, tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"linear.{suffix}"
    assert main(["render", str(spec_file), "-o", str(out)]) == 0
    data = out.read_bytes()
    if suffix == "svg":
        assert data.startswith(b"<svg") and b">linear</text>" in data
    elif suffix == "png":
        assert data.startswith(b"\x89PNG")
    else:
        graph = Graph.from_json(data.decode("utf-8"))
        assert any(node.name == "linear" for node in graph.nodes.values())


def test_errors_are_one_line_and_exit_1(spec_file: Path, tmp_path: Path, capsys) -> None:
    assert main(["render", str(spec_file), "-o", str(tmp_path / "x.pdf")]) == 1
    assert "suffix must be one of .html, .svg, .png, .json" in capsys.readouterr().err
    spec_file.write_text(SPEC + "depth: deep\n")
    assert main(["render", str(spec_file), "-o", str(tmp_path / "x.svg")]) == 1
    assert "field 'depth'" in capsys.readouterr().err



def test_a_warning_the_model_raises_goes_to_stderr_in_one_line(tmp_path: Path, capsys) -> None:
    spec = tmp_path / "short.yml"
    spec.write_text("model: deepseek-v3\nconfig: tiny\noverrides: {max_seq_len: 64}\n"
                    "inputs: {tokens: [1, 16]}\n")
    assert main(["render", str(spec), "-o", str(tmp_path / "short.svg")]) == 0
    (line,) = [x for x in capsys.readouterr().err.splitlines() if x.startswith("warning:")]
    assert line.startswith("warning: YarnOffWarning raised while the model was built or "
                           "traced: config 'tiny' with max_seq_len=64"), line


# -- model-trace trace / summary ------------------------------------------------------------

LINEAR = ["torch.nn:Linear", "--set", "in_features=8", "--set", "out_features=4",
          "--inputs", "[[3, 8]]"]
TINY = ["deepseek-v3", "--config", "tiny", "--set", "n_layers=2", "--inputs", "{tokens: [1, 8]}"]


def test_trace_writes_the_graph_a_spec_file_gives(spec_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "trace.json"
    assert main(["trace", *LINEAR, "-o", str(out)]) == 0
    graph = Graph.from_json(out.read_text(encoding="utf-8"))
    linear = next(n for n in graph.nodes.values() if n.name == "linear")
    assert [graph.tensors[t].shape for t in linear.outputs] == [[3, 4]]
    assert graph.meta["device"] == "meta"
    rendered = tmp_path / "render.json"
    assert main(["render", str(spec_file), "-o", str(rendered)]) == 0
    assert out.read_bytes() == rendered.read_bytes()  # one pipeline, the same bytes


def test_trace_sets_zoo_config_fields_and_routing(tmp_path: Path) -> None:
    out = tmp_path / "tiny.json"
    assert main(["trace", *TINY, "--routing", "[1, 2, 3, 4]", "--no-fold", "-o", str(out)]) == 0
    graph = Graph.from_json(out.read_text(encoding="utf-8"))
    assert graph.meta["routing"]["policy"] == "fixed"
    assert graph.meta["options"]["fold"] is False
    blocks = {m.path for m in graph.modules.values() if m.cls == "Block"}
    assert blocks == {"layers.0", "layers.1"}
    (load,) = graph.meta["experts"].values()
    assert [i for i, tokens in enumerate(load["tokens"]) if tokens] == [1, 2, 3, 4]


def test_summary_prints_the_per_module_table(capsys) -> None:
    assert main(["summary", *LINEAR]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["module", "class", "parameters", "activated", "per", "token",
                                "FLOPs", "FLOPs", "per", "member", "weights", "read",
                                "activations", "written", "workspace", "written", "in", "out"]
    row = lines[2].split()
    assert row[:3] == ["Linear", "Linear", "36"]  # 8 * 4 weights + 4 biases
    assert row[4] == "192"  # 2 * 3 * 8 * 4 FLOPs
    assert row[5:11] == ["144", "B", "48", "B", "0", "B"]  # float32: 36 read, (3, 4) written
    (totals,) = [line for line in lines if line.startswith("Totals: ")]
    assert totals.startswith("Totals: 36 parameters")
    # the total says what it counts: a reader must not take 192 for every op's FLOPs
    assert "192 FLOPs per forward pass (matrix products, convolutions and attention; " \
        "elementwise ops count 0)" in totals


def test_summary_depth_limits_the_rows(capsys) -> None:
    assert main(["summary", *TINY, "--depth", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [line.split()[0] for line in lines[2:lines.index("")]]
    assert rows == ["Transformer", "embed", "layers.0", "layers.1", "norm", "head"]


def test_the_command_line_and_a_fence_show_one_table(capsys) -> None:
    """A folded row is the sum over its members in both (issue 15, item 12)."""
    from model_trace.breakdown import breakdown_table
    from model_trace.pipeline import trace_spec
    from model_trace.spec import parse_spec

    assert main(["summary", "deepseek-v3", "--config", "tiny", "--depth", "1"]) == 0
    printed = capsys.readouterr().out
    graph = trace_spec(parse_spec("model: deepseek-v3\nconfig: tiny\n"))
    html = breakdown_table(graph, 1)
    folded = next(m for m in graph.modules.values() if m.repeat and m.path == "layers.1")
    total = sum(s.params for s in folded.repeat.member_stats)
    row = next(line for line in printed.splitlines() if "Block \u00d72" in line)
    assert f"{total:,}" in row.split()
    assert f"<code>layers.1\u20132</code></td><td>Block \u00d72</td>" \
           f'<td style="text-align: right; white-space: nowrap">{total:,}</td>' in html


def test_the_tables_show_the_three_kinds_of_bytes_summed_like_the_rest(capsys) -> None:
    """Weights read, activations and workspace written, each a column of its own: a folded
    row sums its members, the model's row is the totals' figures."""
    from model_trace.breakdown import breakdown_table
    from model_trace.naming import format_bytes
    from model_trace.pipeline import trace_spec
    from model_trace.spec import parse_spec
    from model_trace.tracing.summary import summary_rows

    graph = trace_spec(parse_spec("model: deepseek-v3\nconfig: tiny\n"))
    folded = next(m for m in graph.modules.values() if m.repeat and m.path == "layers.1")
    rows = {row.call: row for row in summary_rows(graph, 1)}
    for index, stat in enumerate(("weight_bytes", "activation_bytes", "workspace_bytes")):
        assert rows[folded.id].bytes[index] == sum(getattr(s, stat)
                                                   for s in folded.repeat.member_stats)
        assert rows[graph.root].bytes[index] == graph.meta["totals"][stat]
    workspace = format_bytes(rows[folded.id].bytes[2])
    assert rows[folded.id].bytes[2] > 0  # the caches
    html = breakdown_table(graph, 1)
    assert "<th>workspace written</th>" in html and "memory" not in html
    assert f'<td style="text-align: right; white-space: nowrap">{workspace}</td></tr>' in html
    assert main(["summary", "deepseek-v3", "--config", "tiny", "--depth", "1"]) == 0
    printed = capsys.readouterr().out
    row = next(line for line in printed.splitlines() if "Block \u00d72" in line)
    assert workspace in row


@pytest.mark.parametrize(("argv", "message"), [
    (["trace", "deepseek-v3", "--config", "huge"], "unknown DeepSeek-V3 config 'huge'"),
    (["trace", *TINY, "--routing", "fastest"], "--routing: field 'routing' is wrong"),
    (["trace", *LINEAR[:3], "--inputs", "[[3, 8"], "--inputs '[[3, 8': invalid YAML"),
    (["summary", "torch.nn:Linear", "--set", "in_features=8"], "missing a required argument"),
    (["trace", *LINEAR[:5], "--inputs", "[[3, 5]]"],
     "forward failed in module '<root>' (Linear) at op 'linear'"),
    (["summary", *LINEAR, "--set", "device=nowhere"], "building 'torch.nn:Linear' failed"),
])
def test_bad_input_is_one_line_and_exit_1(argv: list[str], message: str, tmp_path: Path,
                                          capsys) -> None:
    if argv[0] == "trace":
        argv = [*argv, "-o", str(tmp_path / "out.json")]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("model-trace: error: ") and message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "out.json").exists()


def test_malformed_option_is_a_usage_error(capsys) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["trace", *LINEAR, "--set", "n_layers", "-o", "x.json"])
    assert caught.value.code == 2
    assert "'n_layers' is not key=value" in capsys.readouterr().err


def test_command_line_in_a_subprocess(tmp_path: Path) -> None:
    """The installed entry point, twice: the same graph bytes from two processes; errors
    without a traceback."""
    command = [sys.executable, "-m", "model_trace.cli"]
    first = subprocess.run([*command, "trace", *TINY, "-o", "-"], capture_output=True,
                           text=True, check=True)
    out = tmp_path / "tiny.json"
    assert main(["trace", *TINY, "-o", str(out)]) == 0
    assert first.stdout == out.read_text(encoding="utf-8") + "\n"
    table = subprocess.run([*command, "summary", *TINY], capture_output=True, text=True,
                           check=True).stdout
    assert "  ffn  " in table and "MoE" in table and "Totals: " in table
    failed = subprocess.run([*command, "trace", *TINY, "--config", "nope", "-o", "-"],
                            capture_output=True, text=True)
    assert failed.returncode == 1 and failed.stdout == ""
    assert failed.stderr.startswith("model-trace: error: unknown DeepSeek-V3 config")
    assert "Traceback" not in failed.stderr


def test_help_is_plain_text_in_one_style() -> None:
    import argparse

    from model_trace.cli import build_parser

    parser = build_parser()
    assert "`" not in parser.description and not parser.description.startswith("`")
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = [a.help for a in commands._choices_actions]
    for sub in commands.choices.values():
        helps += [a.help for a in sub._actions if a.help and a.help != argparse.SUPPRESS]
    for text in helps:
        if text.startswith("show this help"):
            continue
        assert "`" not in text and not text.endswith("."), text
        first = text.split(" ", 1)[0]
        assert text[0].islower() or first[1:] != first[1:].lower(), text
