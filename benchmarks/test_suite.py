"""How long the test suite takes, as a ratio to a reference measured in the same run, and which
tests take the time.

    python benchmarks/test_suite.py              # the fast tests: README's `python -m pytest`
    python benchmarks/test_suite.py --slow       # everything, as CI runs it
    python benchmarks/test_suite.py -- tests/model_trace/test_cli.py   # some tests only

(from the repository root; the tests run as README says, in a subprocess.)

The reference is ``model-trace render`` of a ``TransformerEncoderLayer`` fence to SVG in a new
process (torch's import, a trace, the layout, the SVG): a fixed piece of work of the kind the
tests do, timed before and after the suite; its mean is the unit, so a run on a loaded or a
slower machine gives about the same ratio. Issue 14's target: the fast tests within
10 minutes on a 2-core machine.

Printed: the suite's wall time and its ratio to the reference, its CPU time (its processes
and the trace workers they waited for) and that ratio, which a busy machine changes less, the
tests' outcome counts, the slowest tests and the test files that take the most time in all
(from pytest's JUnit XML). One test's time on a busy machine says little: a test that waits
for a worker to start pays for whatever else runs then; compare files, and run again.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_FENCE = """\
model: torch.nn:TransformerEncoderLayer
args: {d_model: 64, nhead: 4, batch_first: true}
inputs: [[2, 16, 64]]
"""


def timed(command: list[str], **options: object) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the command and its children) of running ``command``."""
    cpu_before = _children_cpu_s()
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, **options)  # type: ignore[call-overload]
    return time.perf_counter() - started, _children_cpu_s() - cpu_before


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def reference_s(folder: Path) -> tuple[float, float]:
    """(wall, CPU) seconds for the reference: the encoder-layer fence to SVG, new process."""
    spec = folder / "reference.yml"
    spec.write_text(REFERENCE_FENCE, encoding="utf-8")
    return timed([sys.executable, "-m", "model_trace.cli", "render", str(spec), "-o",
                  str(folder / "reference.svg")], check=True, capture_output=True)


def run_suite(pytest_args: list[str], report: Path) -> tuple[float, float]:
    """(wall, CPU) seconds of ``python -m pytest`` with ``pytest_args``, JUnit XML in
    ``report``."""
    return timed([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                  f"--junitxml={report}", *pytest_args])


def _test_file(classname: str) -> str:
    """'tests/model_trace/test_cli.py' for 'tests.model_trace.test_cli' or '….test_cli.Class'."""
    parts = classname.split(".")
    last = max((i for i, part in enumerate(parts) if part.startswith("test_")), default=-1)
    return "/".join(parts[: last + 1]) + ".py" if last >= 0 else classname


def print_report(report: Path, wall_s: float, unit_s: float, top: int) -> None:
    """Outcomes and the slowest tests and files, in seconds and in units of the reference."""
    cases = ET.parse(report).getroot().iter("testcase")
    outcomes: Counter[str] = Counter()
    times: list[tuple[float, str]] = []
    per_file: Counter[str] = Counter()
    for case in cases:
        outcome = next((c.tag for c in case if c.tag in ("skipped", "failure", "error")),
                       "passed")
        outcomes[outcome] += 1
        seconds = float(case.get("time", 0))
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        times.append((seconds, name))
        per_file[_test_file(case.get("classname", ""))] += seconds
    print(f"suite: {wall_s / 60:.1f} min wall = {wall_s / unit_s:.0f} x the reference "
          f"({unit_s:.1f} s); {', '.join(f'{n} {k}' for k, n in sorted(outcomes.items()))}")
    print(f"\nslowest {top} tests (s, x reference):")
    for seconds, name in sorted(times, reverse=True)[:top]:
        print(f"  {seconds:7.1f}  {seconds / unit_s:5.1f}  {name}")
    print(f"\nslowest {top} files (s in tests, x reference):")
    for name, seconds in per_file.most_common(top):
        print(f"  {seconds:7.1f}  {seconds / unit_s:5.1f}  {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slow", action="store_true", help="run the slow tests too")
    parser.add_argument("--top", type=int, default=30, help="how many tests and files to list")
    parser.add_argument("pytest_args", nargs="*", help="after --: passed to pytest")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        load = os.getloadavg()[0]
        before = reference_s(work)
        wall, cpu = run_suite([*(["--slow"] if options.slow else []), *options.pytest_args],
                              work / "report.xml")
        after = reference_s(work)
        print(f"\nreference: {before[0]:.1f} s before, {after[0]:.1f} s after (CPU "
              f"{before[1]:.1f} s, {after[1]:.1f} s); load average {load:.1f} at the start, "
              f"{os.getloadavg()[0]:.1f} at the end; {os.cpu_count()} CPUs")
        unit_cpu = (before[1] + after[1]) / 2
        print(f"CPU time: the suite {cpu / 60:.1f} min = {cpu / unit_cpu:.0f} x the "
              f"reference's ({unit_cpu:.1f} s); on an idle machine its wall time is about "
              f"the CPU time divided by the cores it keeps busy (1 to {os.cpu_count()})")
        print_report(work / "report.xml", wall, (before[0] + after[0]) / 2, options.top)


if __name__ == "__main__":
    main()
