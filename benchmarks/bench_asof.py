"""The as-of join `dataset build` uses, beside pandas.merge_asof on the same frames.

1,000,000 left rows x 1,000,000 right rows by 50,000 keys. Target: <= 1.5 x merge_asof.
Both results are checked to be equal before timing counts.

Run: python benchmarks/bench_asof.py [--rows 1000000] [--keys 50000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from mlkit.toolkit.datasets import asof_join_index

TARGET_RATIO = 1.5


def best_of(repeat: int, run) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--keys", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    span = 90 * 86_400
    # merge_asof needs both sides sorted by time; give both the same frames.
    right = pd.DataFrame(
        {
            "by": rng.integers(0, args.keys, args.rows),
            "on": np.sort(rng.integers(0, span, args.rows)),
        }
    )
    right["row"] = np.arange(args.rows)
    left = pd.DataFrame(
        {
            "by": rng.integers(0, args.keys, args.rows),
            "on": np.sort(rng.integers(0, span, args.rows)),
        }
    )

    expected = pd.merge_asof(left, right, on="on", by="by")["row"].to_numpy(dtype=float)
    ours = asof_join_index(
        left["by"].to_numpy(), left["on"].to_numpy(), right["by"].to_numpy(), right["on"].to_numpy()
    )
    assert np.array_equal(np.where(ours >= 0, ours, np.nan), expected, equal_nan=True)

    reference = best_of(args.repeat, lambda: pd.merge_asof(left, right, on="on", by="by"))
    measured = best_of(
        args.repeat,
        lambda: asof_join_index(
            left["by"].to_numpy(),
            left["on"].to_numpy(),
            right["by"].to_numpy(),
            right["on"].to_numpy(),
        ),
    )
    ratio = measured / reference
    print(
        f"mlkit asof_join_index, {args.rows:,} x {args.rows:,} rows by {args.keys:,} keys: "
        f"{measured:.3f} s (best of {args.repeat})"
    )
    print(f"reference, pandas.merge_asof on the same frames: {reference:.3f} s")
    print(
        f"ratio: {ratio:.2f} x (target <= {TARGET_RATIO} x) "
        f"{'ok' if ratio <= TARGET_RATIO else 'SLOW'}"
    )


if __name__ == "__main__":
    main()
