"""``model-trace``: the pipeline from the command line, for use outside docs."""

from __future__ import annotations

import argparse
import html
import sys
from importlib import resources
from pathlib import Path

from model_trace.errors import ModelTraceError
from model_trace.session import Settings
from model_trace.spec import parse_spec

FORMATS = ("html", "svg", "png", "json")
PREFIX = "model-trace-1"


def _render(args: argparse.Namespace) -> None:
    from model_trace.cache import PREFIX_PLACEHOLDER
    from model_trace.pipeline import run_fence, svg_to_png

    spec = parse_spec(Path(args.spec).read_text(encoding="utf-8"))
    out = Path(args.output)
    fmt = out.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise ModelTraceError(f"cannot write '{out}': the suffix must be one of "
                              f"{', '.join('.' + f for f in FORMATS)}")
    defaults = Settings()
    exports = ("svg",) if fmt == "png" else () if fmt == "html" else (fmt,)
    spec = spec.with_defaults(depth=defaults.depth, routing=defaults.routing, export=exports)
    output = run_fence(spec, args.theme)
    if fmt == "html":
        figure = output.html.replace(PREFIX_PLACEHOLDER, PREFIX)
        out.write_text(standalone_page(figure, spec.caption or spec.model), encoding="utf-8")
    elif fmt == "png":
        out.write_bytes(svg_to_png(output.exports["svg"].decode("utf-8"), args.scale))
    else:
        out.write_bytes(output.exports[fmt])
    print(f"wrote {out}")


def standalone_page(figure: str, title: str) -> str:
    """A complete HTML page around one figure, with the viewer's scripts and styles inlined
    (libraries under ``assets/vendor`` first), so the file works on its own."""
    assets = resources.files("model_trace") / "assets"
    vendor = assets / "vendor"
    files = sorted((e for e in vendor.iterdir() if e.is_file()), key=lambda e: e.name) if (
        vendor.is_dir()) else []
    files += sorted((e for e in assets.iterdir() if e.is_file()), key=lambda e: e.name)
    styles = "\n".join(f"<style>\n{e.read_text(encoding='utf-8')}\n</style>"
                       for e in files if e.name.endswith(".css"))
    scripts = "\n".join(f"<script>\n{_script_safe(e.read_text(encoding='utf-8'))}\n</script>"
                        for e in files if e.name.endswith(".js"))
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{html.escape(title)}</title>\n{styles}\n</head>\n<body>\n{figure}\n"
            f"{scripts}\n</body>\n</html>\n")


def _script_safe(code: str) -> str:
    """A script's text that cannot end its inline ``<script>`` element early."""
    return code.replace("</script", "<\\/script")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="model-trace", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    render = commands.add_parser(
        "render", help="trace a fence spec and write html (standalone), svg, png or json")
    render.add_argument("spec", help="a YAML file with the same fields as a model-trace fence")
    render.add_argument("-o", "--output", required=True, help="output file: .html .svg .png .json")
    render.add_argument("--scale", type=float, default=1.0, help="PNG scale factor")
    render.add_argument("--theme", choices=("auto", "light", "dark"), default="auto",
                        help="the figure's colours (html)")
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
