"""Checks a model version must pass before it serves: `mlkit validate` and `promote`.

The core checks the artifact's sha256, the version's family its own checks (it loads, its
features, a prediction on the stored example; see `families.py`), and the promotion gate the
version was registered with decides whether it may serve (`gate.py`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from .errors import MlkitError

CANDIDATE = "candidate"  # the alias every freshly trained version that loads gets


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    gate: bool = False  # a metric gate: it keeps a version from serving, not from `candidate`


def validate_version(mv, config, *, min_auc_pr: float | None = None) -> list[Check]:
    """sha256, the family's checks (loading, features, a prediction on the stored example,
    its metric floors), then the promotion gate. The artifact is checked byte for byte
    before anything is deserialised."""
    from .families import validation_checks
    from .registry import read_artifact

    try:
        # The bytes checked are the bytes the family loads: the path is read once.
        artifact = read_artifact(mv, config.artifacts_dir)
    except MlkitError as exc:
        return [Check("sha256", False, exc.message)]
    checks = [Check("sha256", True, f"{mv.sha256[:12]}… matches {mv.artifact_path}")]
    if min_auc_pr is not None:
        config = _overridden(config, "fraud.min_auc_pr", min_auc_pr)
    checks += validation_checks(mv, artifact, config)
    return [*checks, gate_check(mv)]


def gate_check(mv) -> Check:
    """The stored promotion verdict: ok when it passed. A version without one (registered
    before gates, or by hand) fails, except fraud's, which its auc_pr floor still judges."""
    from .gate import Verdict, stored_verdict

    document = stored_verdict(mv.metrics)
    if document is not None:
        verdict = Verdict.from_dict(document)
        return Check("gate", verdict.passed, verdict.summary(), gate=True)
    if mv.family == "fraud":
        return Check(
            "gate", True, "no gate verdict (trained before promotion gates): auc_pr judges it", True
        )
    return Check(
        "gate",
        False,
        "no gate verdict: registered before promotion gates or by hand; retrain it with its "
        "`mlkit train` command so it is judged against its baselines",
        gate=True,
    )


def _overridden(config, dotted: str, value):
    """A copy of `config` with one key set, the original untouched."""
    import copy
    import dataclasses

    data = copy.deepcopy(config.data)
    *path, last = dotted.split(".")
    node = data
    for part in path:
        node = node.setdefault(part, {})
    node[last] = value
    return dataclasses.replace(config, data=data)


class CandidateRejected(MlkitError):
    """A freshly trained version failed its checks or its gate: registered (and `candidate`
    when it loads), not serving."""

    def __init__(
        self,
        message: str,
        failures: list[str],
        hint: str | None = None,
        *,
        fallback: str | None = None,
    ):
        super().__init__(message, hint=hint)
        self.failures = failures
        self.fallback = fallback  # the baseline version promoted in its place (`with_fallback`)

    def kept_serving(self, engine, name: str, alias: str) -> CandidateRejected:
        """This rejection as a notice (exit 3) when a version serves `alias` all the same:
        the job did its work and nothing serving changed; a failure (exit 1) otherwise."""
        from .errors import NOTICE_EXIT
        from .registry import alias_target

        if alias != CANDIDATE and alias_target(engine, name, alias) is not None:
            self.exit_code = NOTICE_EXIT
        return self


def promote_trained(engine, config, mv, alias: str, reason: str) -> str:
    """A freshly trained version becomes `candidate` once it loads (every check but the
    metric gates passes), then `alias` (default `prod`) once every check and its gate pass;
    returns `alias`. Otherwise CandidateRejected names what failed and the previous version
    keeps serving. Called inside the training run, so that the run is recorded `rejected`."""
    from .registry import promote

    checks = validate_version(mv, config)
    broken = [_failure(c) for c in checks if not c.ok and not c.gate]
    if broken:
        raise CandidateRejected(
            f"{mv.ref} rejected: it does not pass its checks ({'; '.join(broken)}); "
            f"no alias moved, {_still(engine, mv.name, alias)}",
            broken,
            hint=f"{mv.ref} stays registered for inspection: `mlkit validate model {mv.ref}`",
        )
    promote(engine, mv.name, mv.version, CANDIDATE, reason=reason)
    gated = [_failure(c) for c in checks if not c.ok]
    if alias == CANDIDATE:
        return alias
    if gated:
        raise CandidateRejected(
            f"{mv.ref} rejected by its promotion gate, stays candidate ({'; '.join(gated)}); "
            f"{_still(engine, mv.name, alias)}",
            gated,
            hint=f"see `mlkit models show {mv.ref}`; `mlkit models promote {mv.name} "
            f"{mv.version} --alias {alias}` once it passes",
        ).kept_serving(engine, mv.name, alias)
    promote(engine, mv.name, mv.version, alias, reason=reason)
    return alias


def with_fallback(
    engine,
    config,
    rejected: CandidateRejected,
    mv,
    alias: str,
    fallback: Callable[[], tuple[Any, str] | None],
    *,
    label: str,
    reason: str,
) -> CandidateRejected:
    """What serves when the candidate `mv` (`label`: what it is) was rejected: the version
    serving `alias` keeps serving; only when none serves yet, the family's best baseline
    that passes its own gate does. `fallback()` registers that baseline as a version and
    returns it with a description (None: the family has none to offer); it moves to
    `alias` once every check passes, and `candidate` stays on `mv`.

    Returns the rejection to raise (the candidate's run stays `rejected`), saying what
    serves and with the fallback in its failures, so that the run records it."""
    from .registry import alias_target, promote

    if alias == CANDIDATE or alias_target(engine, mv.name, alias) is not None:
        return rejected
    offered = fallback()
    if offered is None:
        return rejected
    base, description = offered
    stays = f"{mv.ref} ({label}) stays candidate: {'; '.join(rejected.failures)}"
    refused = validation_failures(base, config)
    if refused:
        return CandidateRejected(
            f"{stays}; no version served yet, and {base.ref} ({description}) does not pass "
            f"either ({'; '.join(refused)}): {mv.name}@{alias} is still unset",
            [*rejected.failures, f"fallback {base.ref} refused: {'; '.join(refused)}"],
            hint=rejected.hint,
        )
    promote(engine, base.name, base.version, alias, reason=f"fallback: {reason}")
    return CandidateRejected(
        f"{stays}; no version served yet, so {base.ref} ({description}) serves",
        [*rejected.failures, f"fallback {base.ref} ({description}) promoted to {alias}"],
        hint=rejected.hint,
        fallback=base.ref,
    ).kept_serving(engine, mv.name, alias)


def _failure(check: Check) -> str:
    return f"{check.name}: {check.detail}"


def _still(engine, name: str, alias: str) -> str:
    from .registry import alias_target

    version = alias_target(engine, name, alias)
    return f"{name}@{alias} " + (
        "is still unset" if version is None else f"still points at {name}:{version}"
    )


def validation_failures(mv, config, *, serving: bool = True) -> list[str]:
    """What `promote` refuses a version for (empty: it may be promoted); the metric gates
    count only for an alias that serves (`serving`), not for `candidate`."""
    return [
        _failure(c) for c in validate_version(mv, config) if not c.ok and (serving or not c.gate)
    ]


def promote_validated(
    engine, config, name: str, version: int, alias: str, *, reason: str | None = None
):
    """`mlkit models promote`: point `name@alias` at `version` once it passes every check
    (its gate too, unless the alias is `candidate`), reported as an `AliasMove`; a failing
    version is refused and the alias stays put."""
    from .registry import AliasMove, alias_target, promote

    def validate(mv) -> list[str]:
        if alias == CANDIDATE:
            return validation_failures(mv, config, serving=False)
        return validation_failures(mv, config)

    before = alias_target(engine, name, alias)
    mv = promote(engine, name, version, alias, reason=reason, validate=validate)
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
