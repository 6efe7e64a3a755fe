"""The contract every family's training keeps on a window with too little data, shared by
tests/test_pricing.py and tests/test_recommender.py."""

from __future__ import annotations

import json


def refused_then_skipped(cli, env: dict, train: str):
    """`train` (a command line) alone fails with one clear error (exit 1, no traceback);
    with --skip-if-too-few it succeeds. Returns the refusal and the skip document."""
    refused = cli(*train.split(), env=env)
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    skipped = cli(*train.split(), "--skip-if-too-few", "--json", env=env)
    assert skipped.exit_code == 0, skipped.output
    return refused, json.loads(skipped.stdout)
