"""Checks a model version must pass before it serves: `mlkit validate` and `promote`."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .errors import MlkitError


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


def validate_version(mv, config, *, min_auc_pr: float | None = None) -> list[Check]:
    """sha256, loading, feature list, a prediction on the stored example, metric gates.
    The artifact is checked byte for byte before anything is deserialised."""
    from .registry import read_artifact

    checks: list[Check] = []
    try:
        # The bytes checked are the bytes loaded below: the path is read once.
        artifact = read_artifact(mv, config.artifacts_dir)
        checks.append(Check("sha256", True, f"{mv.sha256[:12]}… matches {mv.artifact_path}"))
    except MlkitError as exc:
        return [Check("sha256", False, exc.message)]
    if mv.family == "signal":
        from .signal.model import validation_checks

        return checks + [Check(*check) for check in validation_checks(mv, config.artifacts_dir)]
    if mv.family != "fraud":
        return checks
    import numpy as np
    import pandas as pd

    from .fraud.columns import FEATURES
    from .fraud.model import load_model

    try:
        model = load_model(artifact, mv.params)
        checks.append(Check("loads", True, f"{mv.params.get('model')} model loaded"))
    except Exception as exc:  # any failure to load is a failed check, not a crash
        return [*checks, Check("loads", False, f"{type(exc).__name__}: {exc}")]
    current = list(FEATURES)
    same = list(mv.features or []) == current
    checks.append(
        Check(
            "features",
            same,
            "match the current definitions"
            if same
            else f"model has {mv.features}, current definitions are {current}",
        )
    )
    try:
        scores = model.predict_proba(pd.DataFrame(mv.input_example))
        sane = len(scores) == len(mv.input_example) and bool(np.all((scores >= 0) & (scores <= 1)))
        checks.append(
            Check(
                "predicts",
                sane,
                f"{len(scores)} example rows scored in [0, 1]"
                if sane
                else f"bad scores on the input example: {scores}",
            )
        )
    except Exception as exc:
        checks.append(Check("predicts", False, f"{type(exc).__name__}: {exc}"))
    gate = min_auc_pr if min_auc_pr is not None else config.get("fraud.min_auc_pr")
    auc_pr = (mv.metrics or {}).get("auc_pr")
    passed = auc_pr is not None and auc_pr >= gate
    checks.append(
        Check(
            "auc_pr",
            passed,
            f"test AUC-PR {auc_pr if auc_pr is None else round(auc_pr, 4)}"
            f" {'>=' if passed else '<'} gate {gate}",
        )
    )
    return checks


class CandidateRejected(MlkitError):
    """A freshly trained version failed its validation gate: registered, not promoted."""

    def __init__(self, message: str, failures: list[str], hint: str | None = None):
        super().__init__(message, hint=hint)
        self.failures = failures


def promote_trained(engine, config, mv, alias: str, reason: str) -> str:
    """Move `alias` to a freshly trained version once it validates and return it, else raise
    CandidateRejected naming the failed gates; called inside the training run, so that the
    run is recorded `rejected`."""
    from .registry import promote, resolve

    failures = validation_failures(mv, config)
    if failures:
        try:
            kept = f"still points at {resolve(engine, f'{mv.name}@{alias}').ref}"
        except MlkitError:
            kept = "is still unset"
        raise CandidateRejected(
            f"{mv.ref} rejected by its validation gate ({'; '.join(failures)}); "
            f"{mv.name}@{alias} {kept}",
            failures,
            hint=f"{mv.ref} stays registered for inspection: `mlkit validate model {mv.ref}`",
        )
    promote(engine, mv.name, mv.version, alias, reason=reason)
    return alias


def validation_failures(mv, config) -> list[str]:
    """What `promote` refuses a version for (empty: it may be promoted)."""
    return [f"{c.name}: {c.detail}" for c in validate_version(mv, config) if not c.ok]


def promote_validated(
    engine, config, name: str, version: int, alias: str, *, reason: str | None = None
):
    """`mlkit models promote`: point `name@alias` at `version` once it passes every check,
    reported as an `AliasMove`; a failing version is refused and the alias stays put."""
    from .registry import AliasMove, alias_target, promote

    before = alias_target(engine, name, alias)
    mv = promote(
        engine,
        name,
        version,
        alias,
        reason=reason,
        validate=lambda mv: validation_failures(mv, config),
    )
    return AliasMove(name, alias, before, mv)


@dataclass
class ValidationReport:
    """`mlkit validate model`: every check of one version."""

    model: str  # name:version
    checks: list[Check]

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def as_dict(self) -> dict:
        return {
            "model": self.model,
            "ok": not self.failed,
            "checks": [asdict(c) for c in self.checks],
        }

    def failure(self) -> MlkitError | None:
        """The error naming the failed checks, None when every check passed."""
        if not self.failed:
            return None
        return MlkitError(
            f"{self.model} failed " + ", ".join(c.name for c in self.failed),
            hint="; ".join(c.detail for c in self.failed),
        )


def validate_ref(engine, config, ref: str, *, min_auc_pr: float | None = None) -> ValidationReport:
    """`validate_version` of the version `ref` names."""
    from .registry import resolve

    mv = resolve(engine, ref)
    return ValidationReport(mv.ref, validate_version(mv, config, min_auc_pr=min_auc_pr))
