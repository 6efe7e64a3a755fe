"""The model families behind one contract, found by name so that the core imports none of them.

Each family's module exposes `train(engine, config, **options) -> dict` (its configured
training workflow: candidate, then `prod` when the promotion gate passes), `baselines(...)`
(the honest references it must beat on the same holdout; the arguments are the family's
own) and `validation_checks(mv, artifact, config) -> list[Check]` (what it checks once the
artifact's sha256 matched). A family may offer its best baseline as the fallback that
serves while nothing else does (`validation.with_fallback`). What a family's versions are and
why its latest one does not serve is the same for every family: `status` below.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Any

from .errors import MlkitError

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from .validation import Check

FAMILY_MODULES = {
    "fraud": "mlkit.toolkit.fraud.family",
    "pricing": "mlkit.toolkit.pricing.family",
    "recommender": "mlkit.toolkit.recommender.family",
    "signal": "mlkit.toolkit.signal.family",
}
SERVING = "prod"  # the alias the families serve from


def family_module(family: str) -> ModuleType:
    """The module of `family`, imported on first use."""
    try:
        path = FAMILY_MODULES[family]
    except KeyError:
        raise MlkitError(
            f"unknown model family {family!r}", hint=f"families: {', '.join(FAMILY_MODULES)}"
        ) from None
    return importlib.import_module(path)


def train(engine: Engine, config, family: str, **options: Any) -> dict:
    """Train `family` with its configured workflow."""
    return family_module(family).train(engine, config, **options)


def validation_checks(mv, artifact: bytes, config) -> list[Check]:
    """The checks of `mv`'s family on its verified artifact bytes; none for a family this
    toolkit does not know (a version registered by hand under another family)."""
    if mv.family not in FAMILY_MODULES:
        return []
    return list(family_module(mv.family).validation_checks(mv, artifact, config))


def status(engine: Engine, name: str) -> dict[str, Any]:
    """One model's serving, candidate and latest versions; under `waiting`, the latest when
    it does not serve (or the candidate a fallback serves in place of) and why, from the gate
    verdict it was registered with."""
    from .registry import alias_target, resolve

    try:
        latest = resolve(engine, name)
    except MlkitError:  # nothing registered under that name yet
        return {"serving": None, "candidate": None, "latest": None, "waiting": None}
    serving = alias_target(engine, name, SERVING)
    candidate = alias_target(engine, name, "candidate")
    document: dict[str, Any] = {
        "serving": serving,
        "candidate": candidate,
        "latest": latest.version,
        "waiting": None,
    }
    if serving == latest.version and candidate not in (None, serving):
        # A fallback serves in place of the rejected candidate: that one waits.
        latest = resolve(engine, f"{name}:{candidate}")
    if serving != latest.version:
        document["waiting"] = {
            "version": latest.version,
            "aliases": latest.aliases,
            **why_not_serving(latest),
        }
    return document


def why_not_serving(mv) -> dict[str, Any]:
    """`gate` (the verdict's one-line summary, None without a verdict) and `reasons` why `mv`
    does not serve, as far as its stored verdict tells."""
    from .gate import Verdict, stored_verdict

    document = stored_verdict(mv.metrics)
    if document is None:
        return {
            "gate": None,
            "reasons": ["no gate verdict: registered before promotion gates or by hand"],
        }
    verdict = Verdict.from_dict(document)
    reasons = list(verdict.reasons) or [
        "its gate passed, but it was not promoted: trained without `--alias prod`, or "
        f"refused by another check (`mlkit validate model {mv.ref}`)"
    ]
    return {"gate": verdict.summary(), "reasons": reasons}
