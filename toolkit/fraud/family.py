"""The fraud family's side of the contract (`families.py`): its training, the references a
candidate must beat, its promotion gate and its validation checks."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from .columns import FEATURES

if TYPE_CHECKING:
    import pandas as pd
    from sqlalchemy.engine import Engine

    from ..gate import Verdict
    from ..validation import Check
    from .train import FraudTraining, Split

log = logging.getLogger("mlkit.train")
METRIC = "auc_pr"
UNIT = "order"


def train(engine: Engine, config, **options: Any) -> dict:
    """`mlkit train fraud`: `train_fraud_model` with its options."""
    from .pipeline import train_fraud_model

    return train_fraud_model(engine, config, **options)


def average_precision(truth: np.ndarray, scores: np.ndarray) -> float:
    """AUC-PR as scikit-learn's average precision; NaN on rows without a fraud."""
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(truth, scores)) if truth.any() else float("nan")


def baselines(
    split: Split, kind: str, logreg: FraudTraining | None = None
) -> dict[str, np.ndarray]:
    """The references' scores of the test rows, learnt from the training rows only:
    `prior`, the training positive rate for every order (AUC-PR of no skill), and `logreg`,
    the logistic-regression Pipeline fitted on the same rows as the candidate (`logreg`
    when the caller fitted it already, to offer it as the fallback; none when the candidate
    is that Pipeline).

    The prior's ties are broken at random (a fixed seed): an all-tied score gets exactly
    the fraud rate, while any ranking without skill averages a little more on a few dozen
    frauds, which would let a model of noise clear the prior."""
    from .train import fit_split

    rows = len(split.test)
    rate = float(split.train["label"].mean())
    tie_break = np.random.default_rng(0).random(rows) * 1e-9
    references = {"prior": rate + tie_break}
    if kind != "logreg":
        references["logreg"] = (logreg or fit_split(split, "logreg")).test_scores
    return references


def serving_scores(
    engine: Engine, config, test: pd.DataFrame
) -> tuple[tuple[str, np.ndarray] | None, str | None]:
    """`fraud@prod`'s scores of the test rows, or None with the reason it is left out: none
    serving, an artifact that does not load, other features, or a model trained on rows of
    this holdout (its score there would be in-sample)."""
    from ..errors import MlkitError
    from ..registry import resolve
    from .scoring import load_verified_model

    try:
        mv = resolve(engine, "fraud@prod")
    except MlkitError:
        return None, None
    if list(mv.features) != list(FEATURES):
        return None, f"{mv.ref} not compared: it uses other features"
    import pandas as pd

    trained_until = ((mv.metrics.get("split") or {}).get("valid") or {}).get("end")
    if trained_until is not None and test["event_ts"].min() <= pd.Timestamp(trained_until):
        return None, f"{mv.ref} not compared: it learnt from rows of this holdout"
    try:
        model = load_verified_model(mv, config.artifacts_dir)
        return (mv.ref, np.asarray(model.predict_proba(test), dtype=float)), None
    except Exception as exc:  # a serving model that cannot score is no reference
        return None, f"{mv.ref} not compared: {type(exc).__name__}: {exc}"


def judge(
    engine: Engine,
    config,
    split: Split,
    kind: str,
    scores: np.ndarray,
    *,
    logreg: FraudTraining | None = None,
) -> Verdict:
    """The candidate's test scores against the baselines (`logreg`: the Pipeline already
    fitted on this split) and the serving version, on the same test rows (orders resampled
    one by one: the score of an order does not carry over to the next)."""
    from .. import gate

    prod, note = serving_scores(engine, config, split.test)
    verdict = gate.judge(
        METRIC,
        average_precision,
        split.test["label"].to_numpy(),
        scores,
        baselines(split, kind, logreg),
        prod=prod,
        block=1,
        unit=UNIT,
    )
    if note:
        verdict.notes.append(note)
    log.info("[TRAIN] Gate: %s", verdict.summary())
    return verdict


def validation_checks(mv, artifact: bytes, config) -> list[Check]:
    """It loads, its features are today's, it scores its stored example in [0, 1], and its
    test AUC-PR reaches `fraud.min_auc_pr` (a metric gate)."""
    import pandas as pd

    from ..validation import Check
    from .model import load_model

    try:
        model = load_model(artifact, mv.params)
    except Exception as exc:  # any failure to load is a failed check, not a crash
        return [Check("loads", False, f"{type(exc).__name__}: {exc}")]
    checks = [Check("loads", True, f"{mv.params.get('model')} model loaded")]
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
    return [*checks, _floor(mv, config.get("fraud.min_auc_pr"))]


def _floor(mv, floor: float) -> Check:
    from ..validation import Check

    auc_pr = (mv.metrics or {}).get(METRIC)
    passed = auc_pr is not None and auc_pr >= floor
    shown = auc_pr if auc_pr is None else round(auc_pr, 4)
    return Check(
        METRIC,
        passed,
        f"test AUC-PR {shown} {'>=' if passed else '<'} gate {floor}",
        gate=True,
    )
