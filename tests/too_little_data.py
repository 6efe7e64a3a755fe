"""The contract every family's training keeps on a window with too little data, shared by
tests/test_pricing.py and tests/test_recommender.py."""

from __future__ import annotations

import json


def assert_refused_then_skipped(cli, train: tuple[str, ...], env: dict, *error_parts: str):
    """`train` alone fails with one clear error (exit 1, no traceback, every part in
    stderr); with --skip-if-too-few it succeeds. Returns the refusal and the skip document."""
    refused = cli(*train, env=env)
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    for part in error_parts:
        assert part in refused.stderr
    skipped = cli(*train, "--skip-if-too-few", "--json", env=env)
    assert skipped.exit_code == 0, skipped.output
    return refused, json.loads(skipped.stdout)
