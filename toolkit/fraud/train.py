"""`mlkit train fraud`: a time-ordered split, a model, test metrics beside the oracle."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import MlkitError
from .columns import DATASET_COLUMNS, FEATURES, NUMERIC_FEATURES
from .model import MODEL_KINDS, model_class

log = logging.getLogger("mlkit.train")
MIN_ROWS = 200
MIN_POSITIVES = 10
SPLIT = (0.70, 0.15, 0.15)  # train, validation, test by time


@dataclass
class Split:
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    gap: timedelta

    def describe(self) -> dict:
        return {
            name: {
                "rows": len(part),
                "positives": int(part["label"].sum()),
                "start": part["event_ts"].min().isoformat() if len(part) else None,
                "end": part["event_ts"].max().isoformat() if len(part) else None,
            }
            for name, part in (("train", self.train), ("valid", self.valid), ("test", self.test))
        } | {"gap_days": round(self.gap.total_seconds() / 86400, 3)}


def _read_snapshot(data_file: Path) -> tuple[pd.DataFrame, dict]:
    import pyarrow as pa

    manifest_file = data_file.parent / "manifest.json"
    try:
        frame = pd.read_parquet(data_file)
        return frame, json.loads(manifest_file.read_text()) if manifest_file.is_file() else {}
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise MlkitError(
            f"cannot read the dataset {data_file}: {exc}",
            hint="give a snapshot folder (or its data.parquet) from `mlkit dataset build fraud`",
        ) from exc


def load_dataset(path: Path) -> tuple[pd.DataFrame, dict]:
    """A snapshot's rows and manifest, checked before any training starts."""
    data_file = path / "data.parquet" if path.is_dir() else path
    if not data_file.is_file():
        raise MlkitError(f"no dataset at {path}", hint="build one: mlkit dataset build fraud")
    frame, manifest = _read_snapshot(data_file)
    missing = [c for c in DATASET_COLUMNS if c not in frame.columns]
    if missing:
        raise MlkitError(
            f"{data_file} lacks column(s) {', '.join(missing)}",
            hint="rebuild it with `mlkit dataset build fraud`",
        )
    check_trainable(frame, str(data_file))
    return frame.sort_values(["event_ts", "order_id"], ignore_index=True), manifest


def check_trainable(frame: pd.DataFrame, where: str) -> None:
    numeric = frame[list(NUMERIC_FEATURES)].to_numpy(dtype=float)
    infinite = np.isinf(numeric).any(axis=0)
    if infinite.any():
        names = [n for n, bad in zip(NUMERIC_FEATURES, infinite, strict=True) if bad]
        raise MlkitError(
            f"{where}: infinite values in {', '.join(names)}",
            hint="fix the source rows, rerun `mlkit etl run` and rebuild the dataset",
        )
    if frame["label"].isna().any():
        raise MlkitError(f"{where}: some labels are missing (NaN)")
    positives = int(frame["label"].sum())
    if len(frame) < MIN_ROWS or positives < MIN_POSITIVES or positives == len(frame):
        raise MlkitError(
            f"{where}: {len(frame)} rows with {positives} fraud labels is too little to train "
            f"(need >= {MIN_ROWS} rows, >= {MIN_POSITIVES} of each class)",
            hint="seed or load more orders, or widen the dataset's range",
        )


def time_split(frame: pd.DataFrame, label_delay_days: float) -> Split:
    """Train < validation < test in time, with a gap before each boundary: the last
    rows before a boundary are dropped, since their labels were not yet known then."""
    times = frame["event_ts"]
    span = times.max() - times.min()
    gap = min(timedelta(days=label_delay_days), span * 0.05)
    first = times.quantile(SPLIT[0])
    second = times.quantile(SPLIT[0] + SPLIT[1])
    train = frame[times < first - gap]
    valid = frame[(times >= first) & (times < second - gap)]
    test = frame[times >= second]
    split = Split(train, valid, test, gap)
    for name, part in (("train", train), ("validation", valid), ("test", test)):
        if part["label"].nunique() < 2:
            raise MlkitError(
                f"the {name} split holds only one class ({len(part)} rows)",
                hint="use a dataset with more history or more fraud labels",
            )
    return split


def evaluate(labels: np.ndarray, scores: np.ndarray, threshold: float, k: int) -> dict:
    from sklearn.metrics import average_precision_score, confusion_matrix, roc_auc_score

    predicted = scores >= threshold
    tp = int((predicted & (labels == 1)).sum())
    precision = tp / max(int(predicted.sum()), 1)
    recall = tp / max(int(labels.sum()), 1)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    top = np.argsort(-scores, kind="stable")[:k]
    matrix = confusion_matrix(labels, predicted, labels=[0, 1])
    return {
        "auc_pr": float(average_precision_score(labels, scores)),
        "auc_roc": float(roc_auc_score(labels, scores)),
        "f1": f1,
        "precision": precision,
        "recall": recall,
        "threshold": threshold,
        f"precision_at_{k}": float(labels[top].mean()),
        "confusion_matrix": {
            "tn": int(matrix[0, 0]),
            "fp": int(matrix[0, 1]),
            "fn": int(matrix[1, 0]),
            "tp": int(matrix[1, 1]),
        },
    }


def best_f1_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The score threshold with the best F1 on held-out rows (chosen on validation only)."""
    from sklearn.metrics import precision_recall_curve

    precision, recall, thresholds = precision_recall_curve(labels, scores)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    return float(thresholds[int(np.argmax(f1[:-1]))]) if len(thresholds) else 0.5


@dataclass
class FraudTraining:
    model: object
    kind: str
    split: Split
    metrics: dict
    test_scores: np.ndarray


def fit_fraud(
    frame: pd.DataFrame, kind: str, label_delay_days: float, seed: int = 0
) -> FraudTraining:
    """The time split of `frame` and a `kind` model fitted on it (`fit_split`)."""
    if kind not in MODEL_KINDS:
        raise MlkitError(f"unknown model {kind!r}", hint=f"choose {' or '.join(MODEL_KINDS)}")
    split = time_split(frame, label_delay_days)
    counts = frame["label"].value_counts()
    log.info(
        "[TRAIN] Samples: %d (train %d, validation %d, test %d), gap %s",
        len(frame),
        len(split.train),
        len(split.valid),
        len(split.test),
        split.gap,
    )
    log.info(
        "[TRAIN] Class distribution - fraud: %d, legit: %d (rate %.4f)",
        counts.get(1, 0),
        counts.get(0, 0),
        counts.get(1, 0) / len(frame),
    )
    log.info("[TRAIN] Features: %d (%s)", len(FEATURES), ", ".join(FEATURES))
    return fit_split(split, kind, seed)


def fit_split(split: Split, kind: str, seed: int = 0) -> FraudTraining:
    """A `kind` model fitted on the split's training rows (early stopping and its threshold
    on validation), scored and measured on its test rows."""
    cls = model_class(kind)
    model = cls(seed=seed) if kind == "xgboost" else cls()
    model.fit(split.train, split.valid)
    threshold = best_f1_threshold(split.valid["label"].to_numpy(), model.validation_scores_)
    labels = split.test["label"].to_numpy()
    scores = model.predict_proba(split.test)
    k = max(10, min(100, len(labels) // 100))
    metrics = evaluate(labels, scores, threshold, k)
    log.info(
        "[TRAIN] %s test AUC-PR %.4f, AUC-ROC %.4f, F1 %.4f at %.3f",
        kind,
        metrics["auc_pr"],
        metrics["auc_roc"],
        metrics["f1"],
        threshold,
    )
    return FraudTraining(model, kind, split, metrics, scores)


def oracle_metrics(truth: pd.DataFrame, test: pd.DataFrame) -> dict:
    """AUC of the generator's true probabilities on the same test rows and labels: the
    best any model could do. `truth` has order_id, fraud_probability."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    joined = test[["order_id", "label"]].merge(truth, on="order_id", how="inner")
    if len(joined) < len(test) or joined["label"].nunique() < 2:
        return {}
    return {
        "oracle_auc_pr": float(
            average_precision_score(joined["label"], joined["fraud_probability"])
        ),
        "oracle_auc_roc": float(roc_auc_score(joined["label"], joined["fraud_probability"])),
    }
