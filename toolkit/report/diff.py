"""`mlkit models diff A B`: two versions' metrics, features and parameters side by side."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .page import flatten


@dataclass
class VersionDiff:
    """Rows of (section, key, value in A, value in B, B minus A where both are numbers)."""

    a: str
    b: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    only_a: list[str] = field(default_factory=list)  # features
    only_b: list[str] = field(default_factory=list)
    shared_features: int = 0

    @property
    def changed(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["a"] != r["b"]]

    def as_dict(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "rows": self.rows,
            "features": {
                "shared": self.shared_features,
                "only_a": self.only_a,
                "only_b": self.only_b,
            },
            "changed": len(self.changed),
        }


def diff_versions(engine, a: str, b: str) -> VersionDiff:
    """Both versions resolved (an unknown reference is an error listing what exists) and
    compared key by key; nested metrics flatten to dotted keys."""
    from ..registry import resolve

    first, second = resolve(engine, a), resolve(engine, b)
    diff = VersionDiff(first.ref, second.ref)
    sections = (
        (
            "version",
            {"family": first.family, "aliases": ", ".join(first.aliases) or None},
            {"family": second.family, "aliases": ", ".join(second.aliases) or None},
        ),
        (
            "version",
            {"dataset": first.dataset_ref, "created": str(first.created_at)},
            {"dataset": second.dataset_ref, "created": str(second.created_at)},
        ),
        ("metrics", flatten(first.metrics), flatten(second.metrics)),
        ("params", flatten(first.params), flatten(second.params)),
    )
    for section, left, right in sections:
        for key in list(left) + [k for k in right if k not in left]:
            x, y = left.get(key), right.get(key)
            diff.rows.append(
                {"section": section, "key": key, "a": x, "b": y, "change": _change(x, y)}
            )
    features_a, features_b = list(first.features), list(second.features)
    diff.only_a = [f for f in features_a if f not in features_b]
    diff.only_b = [f for f in features_b if f not in features_a]
    diff.shared_features = len(set(features_a) & set(features_b))
    return diff


def _change(x: Any, y: Any) -> float | None:
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (x, y))
    return float(y) - float(x) if numbers else None
