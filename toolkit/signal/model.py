"""CatBoost for SELL / HOLD / BUY: parameters that never conflict, feature selection (RFE or
importance-based), and the verified loading of a registered model."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config import Settings
from ..errors import MlkitError
from .labels import CLASSES

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd
    from catboost import CatBoostClassifier

log = logging.getLogger("mlkit.train")

FILENAME = "model.cbm"
RFE_ALGORITHMS = (
    "RecursiveByLossFunctionChange",
    "RecursiveByPredictionValuesChange",
    "RecursiveByShapValues",
)
# Bootstrap types that sample rows and so accept `subsample`; Bayesian weighs rows instead
# (bagging_temperature) and No samples nothing: CatBoost refuses `subsample` with those.
SUBSAMPLING_BOOTSTRAPS = ("Bernoulli", "MVS", "Poisson")
BOOTSTRAPS = (*SUBSAMPLING_BOOTSTRAPS, "Bayesian", "No")


@dataclass(frozen=True)
class ModelSettings(Settings):
    """What `signal.*` says about the model and its feature selection."""

    section = "signal"

    iterations: int
    learning_rate: float
    depth: int
    l2_leaf_reg: float
    early_stopping_rounds: int
    border_count: int
    bootstrap_type: str
    subsample: float
    bagging_temperature: float
    random_seed: int
    thread_count: int
    rfe_algorithm: str
    rfe_features: int
    rfe_steps: int
    selection_iterations: int
    selection_learning_rate: float
    min_rfe_samples: int
    max_baseline_features: int


def catboost_params(settings: ModelSettings, *, iterations: int | None = None, **extra) -> dict:
    """CatBoost multi-class parameters with balanced class weights. `subsample` goes in only
    with a bootstrap that samples rows (Bernoulli, MVS, Poisson); with Bayesian the
    bagging temperature does that job instead."""
    if settings.bootstrap_type not in BOOTSTRAPS:
        raise MlkitError(
            f"unknown signal.bootstrap_type {settings.bootstrap_type!r}",
            hint=f"use one of {', '.join(BOOTSTRAPS)}",
        )
    params: dict[str, Any] = {
        "loss_function": "MultiClass",
        "iterations": int(iterations if iterations is not None else settings.iterations),
        "learning_rate": settings.learning_rate,
        "depth": settings.depth,
        "l2_leaf_reg": settings.l2_leaf_reg,
        "border_count": settings.border_count,
        "auto_class_weights": "Balanced",
        "bootstrap_type": settings.bootstrap_type,
        "random_seed": settings.random_seed,
        "thread_count": settings.thread_count,
        "allow_writing_files": False,
        "logging_level": "Silent",
    }
    if settings.bootstrap_type in SUBSAMPLING_BOOTSTRAPS:
        params["subsample"] = settings.subsample
    elif settings.bootstrap_type == "Bayesian":
        params["bagging_temperature"] = settings.bagging_temperature
    params.update(extra)
    return params


def fit_classifier(
    X: pd.DataFrame, y: np.ndarray, settings: ModelSettings, **overrides
) -> CatBoostClassifier:
    from catboost import CatBoostClassifier

    present = np.unique(y)
    if len(present) < len(CLASSES):
        missing = [CLASSES[i] for i in range(len(CLASSES)) if i not in present]
        raise MlkitError(
            f"the training labels lack class(es) {', '.join(missing)}",
            hint="load more varied history or widen signal.sell_quantile / buy_quantile",
        )
    model = CatBoostClassifier(**catboost_params(settings, **overrides))
    model.fit(X, y)
    return model


def fit_regularised(
    X: pd.DataFrame, y: np.ndarray, settings: ModelSettings, *, gap: int
) -> CatBoostClassifier:
    """Early stopping on an inner time split: fit on the first four fifths of the rows,
    stop when the last fifth (behind a `gap`-row purge) stops improving, then refit every
    row with that many trees. Too few rows for the split: `iterations` trees."""
    n = len(X)
    eval_rows = n // 5
    fit_rows = n - eval_rows - gap
    rounds = settings.early_stopping_rounds
    inner = y[:fit_rows] if fit_rows > 0 else y[:0]
    if rounds <= 0 or eval_rows < 2 * gap or len(np.unique(inner)) < len(CLASSES):
        return fit_classifier(X, y, settings)
    from catboost import CatBoostClassifier

    probe = CatBoostClassifier(**catboost_params(settings))
    probe.fit(
        X.iloc[:fit_rows],
        inner,
        eval_set=(X.iloc[n - eval_rows :], y[n - eval_rows :]),
        early_stopping_rounds=rounds,
        use_best_model=True,
    )
    best = max(1, int(probe.get_best_iteration() or 0) + 1)
    return fit_classifier(X, y, settings, iterations=best)


# The model is CatBoost's probabilities averaged with those of a strongly regularised
# multinomial logistic regression on the same columns. The trend the demo regimes leave is
# nearly linear in the vol-normalised returns, which the logistic part reads with little
# variance, while the trees add the interactions (volatility level against trend); alone,
# CatBoost's fits swung with its seed. Fixed once (not tuned on any test fold): C = 0.05 on
# standardised inputs, equal weights. The logistic part travels inside the .cbm artifact as
# JSON metadata, so one file still holds the whole model.
LINEAR_KEY = "mlkit_linear"
LINEAR_C = 0.05
LINEAR_WEIGHT = 0.5


def fit_blend(
    X: pd.DataFrame, y: np.ndarray, settings: ModelSettings, *, gap: int
) -> CatBoostClassifier:
    """The regularised CatBoost (see fit_regularised) carrying a logistic regression fitted
    on the same rows in its metadata; predict_proba averages the two."""
    import json

    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    model = fit_regularised(X, y, settings, gap=gap)
    values = X.to_numpy(dtype=float)
    values = np.where(np.isfinite(values), values, np.nan)
    medians = np.nan_to_num(np.nanmedian(values, axis=0)) if len(values) else np.zeros(X.shape[1])
    filled = np.where(np.isnan(values), medians, values)
    mean, scale = filled.mean(axis=0), filled.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    linear = LogisticRegression(C=LINEAR_C, class_weight="balanced", max_iter=2000)
    # One BLAS thread: on these few thousand rows OpenBLAS's threads only wait on each
    # other, and the hourly jobs of several symbols start together (half the CPU time).
    with threadpool_limits(limits=1, user_api="blas"):
        linear.fit((filled - mean) / scale, y)
    coef = np.zeros((len(CLASSES), X.shape[1]))
    intercept = np.zeros(len(CLASSES))
    classes = [int(c) for c in linear.classes_]
    coef[classes], intercept[classes] = linear.coef_, linear.intercept_
    model.get_metadata()[LINEAR_KEY] = json.dumps(
        {
            "weight": LINEAR_WEIGHT,
            "median": medians.tolist(),
            "mean": mean.tolist(),
            "scale": scale.tolist(),
            "coef": coef.tolist(),
            "intercept": intercept.tolist(),
        }
    )
    return model


def _linear_proba(spec: dict, X: pd.DataFrame) -> np.ndarray:
    values = X.to_numpy(dtype=float)
    values = np.where(np.isfinite(values), values, np.asarray(spec["median"]))
    z = (values - np.asarray(spec["mean"])) / np.asarray(spec["scale"])
    logits = z @ np.asarray(spec["coef"]).T + np.asarray(spec["intercept"])
    logits -= logits.max(axis=1, keepdims=True)
    odds = np.exp(logits)
    return odds / odds.sum(axis=1, keepdims=True)


def class_weights(model: CatBoostClassifier) -> dict[str, float]:
    """The weights CatBoost's auto_class_weights gave each class, by class name."""
    weights = model.get_all_params().get("class_weights") or [1.0] * len(CLASSES)
    return {CLASSES[i]: round(float(w), 6) for i, w in enumerate(weights)}


def predict_proba(model: CatBoostClassifier, X: pd.DataFrame) -> np.ndarray:
    """Probabilities in CLASSES order, whatever order the model keeps its classes in; a model
    fitted by fit_blend averages in its logistic part."""
    raw = model.predict_proba(X)
    order = [int(c) for c in model.classes_]
    out = np.zeros((len(X), len(CLASSES)))
    out[:, order] = raw
    spec = model.get_metadata().get(LINEAR_KEY)
    if spec:
        import json

        linear = json.loads(spec)
        weight = float(linear["weight"])
        out = (1.0 - weight) * out + weight * _linear_proba(linear, X)
    return out


# ---------------------------------------------------------------- feature selection


@dataclass
class Selection:
    method: str  # rfe | importance
    features: list[str]
    reason: str
    seconds: float = 0.0
    details: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "method": self.method,
            "selected": len(self.features),
            "reason": self.reason,
            "seconds": round(self.seconds, 3),
            **self.details,
        }


def select_features(
    X: pd.DataFrame, y: np.ndarray, settings: ModelSettings, *, gap: int
) -> Selection:
    """RFE when the selection rows reach `min_rfe_samples`, else the most important
    features of one fit, at most `max_baseline_features`; RFE is judged on the last fifth of
    the rows, held out behind a `gap`-row purge so no training label overlaps it."""
    import time

    started = time.perf_counter()
    names = list(X.columns)
    n = len(X)
    eval_rows = max(1, n // 5)
    fit_rows = n - eval_rows - gap
    target = min(settings.rfe_features, len(names))
    if n >= settings.min_rfe_samples and fit_rows >= eval_rows and target < len(names):
        selection = _rfe(X, y, settings, fit_rows=fit_rows, eval_start=n - eval_rows)
        selection.reason = f"{n} samples >= signal.min_rfe_samples {settings.min_rfe_samples}"
    else:
        why = (
            f"{n} samples < signal.min_rfe_samples {settings.min_rfe_samples}"
            if n < settings.min_rfe_samples
            else f"{n} samples leave too few for RFE's held-out rows"
            if fit_rows < eval_rows
            else f"only {len(names)} features"
        )
        selection = _by_importance(X, y, settings)
        selection.reason = why
    selection.seconds = time.perf_counter() - started
    return selection


def _rfe(
    X: pd.DataFrame, y: np.ndarray, settings: ModelSettings, *, fit_rows: int, eval_start: int
) -> Selection:
    from catboost import CatBoostClassifier, EFeaturesSelectionAlgorithm, EShapCalcType

    if settings.rfe_algorithm not in RFE_ALGORITHMS:
        raise MlkitError(
            f"unknown signal.rfe_algorithm {settings.rfe_algorithm!r}",
            hint=f"use one of {', '.join(RFE_ALGORITHMS)}",
        )
    target = min(settings.rfe_features, X.shape[1])
    log.info(
        "[TRAIN] RFE (%s): %d -> %d features on %d samples",
        settings.rfe_algorithm,
        X.shape[1],
        target,
        fit_rows,
    )
    model = CatBoostClassifier(
        **catboost_params(
            settings,
            iterations=settings.selection_iterations,
            learning_rate=settings.selection_learning_rate,
        )
    )
    y_fit, y_eval = y[:fit_rows], y[eval_start:]
    if len(np.unique(y_fit)) < len(CLASSES):
        raise MlkitError("the feature-selection rows lack a class; load more varied history")
    result = model.select_features(
        X.iloc[:fit_rows],
        y_fit,
        eval_set=(X.iloc[eval_start:], y_eval),
        features_for_select=list(range(X.shape[1])),
        num_features_to_select=target,
        steps=max(1, settings.rfe_steps),
        algorithm=getattr(EFeaturesSelectionAlgorithm, settings.rfe_algorithm),
        shap_calc_type=EShapCalcType.Approximate,
        train_final_model=False,
        logging_level="Silent",
        plot=False,
    )
    selected = [str(name) for name in result["selected_features_names"]]
    return Selection(
        "rfe",
        selected,
        reason="",
        details={"algorithm": settings.rfe_algorithm, "steps": settings.rfe_steps},
    )


def _by_importance(X: pd.DataFrame, y: np.ndarray, settings: ModelSettings) -> Selection:
    cap = min(settings.max_baseline_features, X.shape[1])
    log.info(
        "[TRAIN] Importance-based selection: top %d of %d features on %d samples",
        cap,
        X.shape[1],
        len(X),
    )
    model = fit_classifier(
        X,
        y,
        settings,
        iterations=settings.selection_iterations,
        learning_rate=settings.selection_learning_rate,
    )
    importance = np.asarray(model.get_feature_importance(), dtype=float)
    # Stable order: by importance, ties by column position.
    order = np.lexsort((np.arange(len(importance)), -importance))[:cap]
    return Selection(
        "importance",
        [X.columns[i] for i in sorted(order)],
        reason="",
        details={"cap": settings.max_baseline_features},
    )


# ---------------------------------------------------------------- loading


def load_signal_model(mv, artifacts_dir: Path) -> CatBoostClassifier:
    """The CatBoost model of a registered version, from the `.cbm` bytes whose sha256
    matched (read once; the path is not reopened)."""
    from ..registry import read_artifact

    return model_from_bytes(mv, read_artifact(mv, artifacts_dir))


def model_from_bytes(mv, data: bytes) -> CatBoostClassifier:
    """The CatBoost model in a version's verified artifact bytes."""
    from catboost import CatBoostClassifier

    model = CatBoostClassifier()
    try:
        model.load_model(blob=data, format="cbm")
    except Exception as exc:  # CatBoostError on bytes that are not a model
        raise MlkitError(f"cannot load {mv.ref} from {mv.artifact_path}: {exc}") from None
    return model
