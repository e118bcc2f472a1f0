"""``model-trace``: the pipeline from the command line, for use outside docs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from model_trace.errors import ModelTraceError
from model_trace.layout import expanded_modules, layout
from model_trace.pipeline import trace_spec, view_options
from model_trace.render_html import render_figure
from model_trace.render_svg import render_svg
from model_trace.spec import parse_spec

FORMATS = ("html", "svg", "png", "json")


def _render(args: argparse.Namespace) -> None:
    spec = parse_spec(Path(args.spec).read_text(encoding="utf-8"))
    out = Path(args.output)
    fmt = out.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise ModelTraceError(f"cannot write '{out}': the suffix must be one of "
                              f"{', '.join('.' + f for f in FORMATS)}")
    graph = trace_spec(spec)
    if fmt == "json":
        out.write_text(graph.to_json(indent=1), encoding="utf-8")
    elif fmt == "html":
        out.write_text(render_figure(graph, view_options(spec), "model-trace"),
                       encoding="utf-8")
    else:
        svg = render_svg(graph, layout(graph, expanded_modules(graph, spec.depth)))
        if fmt == "svg":
            out.write_text(svg, encoding="utf-8")
        else:
            import cairosvg

            cairosvg.svg2png(bytestring=svg.encode("utf-8"), write_to=str(out),
                             scale=args.scale)
    print(f"wrote {out}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="model-trace", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    render = commands.add_parser("render", help="trace a fence spec and write html/svg/png/json")
    render.add_argument("spec", help="a YAML file with the same fields as a model-trace fence")
    render.add_argument("-o", "--output", required=True, help="output file: .html .svg .png .json")
    render.add_argument("--scale", type=float, default=1.0, help="PNG scale factor")
    render.set_defaults(run=_render)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (ModelTraceError, OSError) as error:
        print(f"model-trace: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
