"""Time and peak memory of building DeepSeek-V3 on the meta device, as a docs build would.

    python benchmarks/zoo_build.py                     # 671B, 3 runs
    python benchmarks/zoo_build.py --configs 671B 16B --runs 5

(from the repository root, with the project installed or PYTHONPATH=.)

Every run is a fresh Python process that imports torch and model_zoo, then times
`with torch.device("meta"): Transformer(args)` and counts its modules and parameters (fp8 block
scales excluded). Peak RSS is the process's ru_maxrss after the
build, imports included (that is what a docs build pays); the table also shows the RSS after
the imports alone. Target for 671B: at most 5 s and 1 GB.
"""

import argparse
import json
import statistics
import subprocess
import sys

TARGET_SECONDS = 5.0
TARGET_RSS_MB = 1024.0


def measure_in_this_process(config: str) -> dict[str, float]:
    """Build `config` on the meta device once; the numbers this process reports."""
    import resource
    import time

    import torch

    from model_zoo.deepseek_v3 import RuntimeOptions, Transformer, load_config

    args = load_config(config)
    rss_after_imports = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    with torch.device("meta"):
        model = Transformer(args, RuntimeOptions(world_size=1, rank=0))
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "rss_after_imports_mb": rss_after_imports,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "modules": sum(1 for _ in model.modules()),
        "parameters": sum(p.numel() for n, p in model.named_parameters() if n[-6:] != ".scale"),
    }


def measure_in_fresh_process(config: str) -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, __file__, "--measure", config],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", nargs="+", default=["671B"])
    parser.add_argument("--runs", type=int, default=3, help="fresh processes per config")
    parser.add_argument("--measure", metavar="CONFIG", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.measure:
        print(json.dumps(measure_in_this_process(options.measure)))
        return

    header = f"{'config':<8}{'build s (median)':>18}{'max s':>8}{'import MB':>11}"
    print(header + f"{'peak MB':>10}{'modules':>10}{'parameters':>20}")
    for config in options.configs:
        runs = [measure_in_fresh_process(config) for _ in range(options.runs)]
        seconds = [run["seconds"] for run in runs]
        peak = max(run["peak_rss_mb"] for run in runs)
        print(
            f"{config:<8}{statistics.median(seconds):>18.2f}{max(seconds):>8.2f}"
            f"{max(run['rss_after_imports_mb'] for run in runs):>11.0f}{peak:>10.0f}"
            f"{runs[0]['modules']:>10,}{runs[0]['parameters']:>20,}"
        )
        if config == "671B":
            ok = statistics.median(seconds) <= TARGET_SECONDS and peak <= TARGET_RSS_MB
            verdict = "meets" if ok else "MISSES"
            print(
                f"  {verdict} the target: <= {TARGET_SECONDS:.0f} s and <= {TARGET_RSS_MB:.0f} MB"
            )


if __name__ == "__main__":
    main()
