"""`mlkit --help` wall time beside `python -c pass`, measured in the same run.

Target: at most 0.3 s above the bare interpreter.
Run: python benchmarks/bench_help.py [--runs 15]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time

TARGET_OVERHEAD_S = 0.3


def wall_times(command: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    mlkit = shutil.which("mlkit")
    command = (
        [mlkit, "--help"] if mlkit else [sys.executable, "-m", "mlkit.commands.main", "--help"]
    )
    wall_times(command, 2)  # warm the file cache
    reference = statistics.median(wall_times([sys.executable, "-c", "pass"], args.runs))
    measured = statistics.median(wall_times(command, args.runs))
    overhead = measured - reference
    verdict = "ok" if overhead <= TARGET_OVERHEAD_S else "SLOW"
    print(f"python -c pass:  {reference:.3f} s (median of {args.runs})")
    print(f"mlkit --help:    {measured:.3f} s (median of {args.runs})")
    print(f"overhead:        {overhead:.3f} s (target <= {TARGET_OVERHEAD_S} s) {verdict}")


if __name__ == "__main__":
    main()
