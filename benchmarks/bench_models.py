"""Every family's model beside the references it must beat, on demo worlds, for several seeds.

Per family: fraud against the no-skill prior, logistic regression and the oracle (the
generator's true probabilities); signals against the training majority, random draws in
training proportions, momentum and a logistic regression, with the hidden-regime oracle;
the bandit policies against MABWiser's Thompson sampling, and the contextual bandit against
the best global arm; the recommender against popularity and item co-occurrence. Figures carry
bootstrap intervals; each family's module says which targets it checks.

Run: python benchmarks/bench_models.py [--family fraud,signal,bandit,recommender] [--seeds 0,1,2]
"""

from __future__ import annotations

import argparse
import importlib
import logging
import time

FAMILIES = ("fraud", "signal", "bandit", "recommender")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default=",".join(FAMILIES))
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    seeds = [int(s) for s in args.seeds.split(",")]
    for family in args.family.split(","):
        started = time.perf_counter()
        module = importlib.import_module(f"models_{family}")
        print(f"== {family} (seeds {args.seeds})", flush=True)
        for line in module.measure(seeds):
            print(f"  {line}", flush=True)
        print(f"  ({time.perf_counter() - started:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
