"""`mlkit train fraud --engine spark`: the fraud XGBoost fitted by `xgboost.spark` on a dataset
snapshot's Parquet, into the same booster, calibration and parameters as the local engine's
`XGBoostFraud`, so validation, scoring, serving and the dashboard read it unchanged.

Spark holds the training and validation rows; the driver receives at most `DRIVER_ROWS`
rows of each split, a seeded sample beyond that, so its memory stays flat as orders grow:
the validation margins (for the Platt calibration and the decision threshold), the test rows
(the metrics, the oracle and the promotion gate score the same orders) and the training and
validation rows the logistic-regression baseline learns from. The split's description gives
the whole splits' figures, and how many test orders were scored when they were sampled.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import MlkitError, message_line
from ..fraud.columns import DATASET_COLUMNS, FEATURES, NUMERIC_FEATURES
from ..fraud.train import MIN_POSITIVES, MIN_ROWS, SPLIT, Split

if TYPE_CHECKING:
    import numpy as np
    from pyspark.sql import DataFrame

    from ..config import Config
    from ..fraud.model import XGBoostFraud
    from ..fraud.train import FraudTraining

# Rows of each split the driver holds (a seeded sample beyond that). 300,000 test orders put
# the AUC-PR's bootstrap interval within about +-0.01 at a 1 % fraud rate, and the baseline is a
# yardstick; the driver's memory stays bounded whatever the orders.
DRIVER_ROWS = 300_000
# Rank error of the split boundaries' approximate quantiles: 1 / this of the rows.
QUANTILE_ACCURACY = 1_000_000
SECONDS = "event_seconds"


@dataclass
class SparkSplit(Split):
    """A split whose train and validation frames are samples of rows Spark holds: its
    description gives the whole splits' figures, which Spark computed."""

    whole: dict = field(default_factory=dict)

    def describe(self) -> dict:
        return {**super().describe(), **self.whole}


def _manifest(path: Path) -> dict:
    folder = path if path.is_dir() else path.parent
    manifest = folder / "manifest.json"
    return json.loads(manifest.read_text()) if manifest.is_file() else {}


def fit_fraud_spark(
    config: Config, path: Path, kind: str, label_delay_days: float, seed: int = 0
) -> tuple[FraudTraining, int, dict, dict]:
    """The time split of the snapshot at `path` and an XGBoost fitted on it by Spark, as
    `fit_fraud` does locally: early stopping on validation AUC-PR, Platt calibration on the
    validation margins, a refit on train + validation with the rounds scaled by the rows
    gained. Returns the training, the snapshot's rows, its label counts and its manifest."""
    from pyspark.sql import functions as F

    from ..fraud.model import _platt, _sigmoid
    from ..fraud.train import FraudTraining, best_f1_threshold, evaluate
    from .session import spark_session

    if kind != "xgboost":
        raise MlkitError(
            f"the Spark engine trains the xgboost model, not {kind}",
            hint="use --engine local for --model logreg",
        )
    frame = _read_snapshot(spark_session(config), path)
    totals = frame.agg(
        F.count(F.lit(1)).alias("rows"),
        F.sum(F.col("label").cast("long")).alias("positives"),
        F.sum(F.col("label").isNull().cast("long")).alias("missing"),
        F.min(SECONDS).alias("first"),
        F.max(SECONDS).alias("last"),
    ).first()
    _check_trainable(frame, totals, str(path))
    parts, gap = _time_split(frame, totals, label_delay_days)
    whole = _describe(parts)
    for name, figures in whole.items():
        if figures["positives"] in (0, figures["rows"]):
            raise MlkitError(
                f"the {'validation' if name == 'valid' else name} split holds only one class "
                f"({figures['rows']} rows)",
                hint="use a dataset with more history or more fraud labels",
            )
    model, train_valid = _fit_early(parts, whole, seed)
    valid_margin, valid_labels = _margins(
        _sampled(parts["valid"], whole["valid"]["rows"], seed), model
    )
    model.calibration_ = _platt(valid_margin, valid_labels)
    validation_scores = _sigmoid(model.calibration_[0] * valid_margin + model.calibration_[1])
    _refit(model, train_valid, whole)

    test = _sample(parts["test"], whole["test"]["rows"], seed)
    labels = test["label"].to_numpy()
    scores = model.predict_proba(test)
    threshold = best_f1_threshold(valid_labels, validation_scores)
    metrics = evaluate(labels, scores, threshold, max(10, min(100, len(labels) // 100)))
    split = SparkSplit(
        _sample(parts["train"], whole["train"]["rows"], seed),
        _sample(parts["valid"], whole["valid"]["rows"], seed),
        test,
        gap,
        whole=_whole(whole, scored=len(test)),
    )
    counts = {1: int(totals["positives"]), 0: int(totals["rows"] - totals["positives"])}
    training = FraudTraining(model, kind, split, metrics, scores)
    return training, int(totals["rows"]), counts, _manifest(path)


def _time_split(frame: DataFrame, totals, label_delay_days: float):
    """`train.time_split`'s boundaries (approximate quantiles of the order times) and gap
    on Spark: train < validation < test, the last rows before a boundary dropped."""
    from pyspark.sql import functions as F

    first, second = frame.approxQuantile(
        SECONDS, [SPLIT[0], SPLIT[0] + SPLIT[1]], 1 / QUANTILE_ACCURACY
    )
    span = timedelta(seconds=totals["last"] - totals["first"])
    gap = min(timedelta(days=label_delay_days), span * 0.05)
    seconds, gap_s = F.col(SECONDS), gap.total_seconds()
    in_train = seconds < first - gap_s
    in_valid = (seconds >= first) & (seconds < second - gap_s)
    parts = {
        "train": frame.where(in_train),
        "valid": frame.where(in_valid),
        "test": frame.where(seconds >= second),
        # one scan, no union: XGBoost's barrier stage refuses a union of two scans
        "train_valid": frame.where(in_train | in_valid).withColumn("is_valid", in_valid),
    }
    return parts, gap


def _read_snapshot(spark, path: Path) -> DataFrame:
    """The snapshot's rows (its data.parquet: a file, or a folder of partitions) with the
    order's time in seconds beside them."""
    from pyspark.sql import functions as F

    data = path / "data.parquet" if path.is_dir() else path
    if not data.exists():
        raise MlkitError(f"no dataset at {path}", hint="build one: mlkit dataset build fraud")
    try:
        frame = spark.read.parquet(str(data))
    except Exception as exc:  # Spark's AnalysisException: not Parquet, unreadable
        first = message_line(exc)
        raise MlkitError(
            f"cannot read the dataset {data}: {first}",
            hint="give a snapshot folder (or its data.parquet) from `mlkit dataset build fraud`",
        ) from None
    missing = [c for c in DATASET_COLUMNS if c not in frame.columns]
    if missing:
        raise MlkitError(
            f"{data} lacks column(s) {', '.join(missing)}",
            hint="rebuild it with `mlkit dataset build fraud`",
        )
    return frame.withColumn(SECONDS, F.unix_micros(F.col("event_ts").cast("timestamp")) / 1e6)


def _check_trainable(frame: DataFrame, totals, where: str) -> None:
    """`train.check_trainable`'s rules, counted by Spark."""
    from pyspark.sql import functions as F

    infinite = frame.agg(
        *[
            F.sum(F.when(F.abs(F.col(n).cast("double")) == float("inf"), 1).otherwise(0)).alias(n)
            for n in NUMERIC_FEATURES
        ]
    ).first()
    names = [n for n in NUMERIC_FEATURES if infinite[n]]
    if names:
        raise MlkitError(
            f"{where}: infinite values in {', '.join(names)}",
            hint="fix the source rows, rerun `mlkit etl run` and rebuild the dataset",
        )
    if totals["missing"]:
        raise MlkitError(f"{where}: some labels are missing (NaN)")
    rows, positives = int(totals["rows"]), int(totals["positives"] or 0)
    if rows < MIN_ROWS or positives < MIN_POSITIVES or positives == rows:
        raise MlkitError(
            f"{where}: {rows} rows with {positives} fraud labels is too little to train "
            f"(need >= {MIN_ROWS} rows, >= {MIN_POSITIVES} of each class)",
            hint="seed or load more orders, or widen the dataset's range",
        )


def _describe(parts: dict[str, DataFrame]) -> dict:
    """Rows, positives and time range of each split, as `Split.describe` gives them."""
    from pyspark.sql import functions as F

    described = {}
    for name in ("train", "valid", "test"):
        row = (
            parts[name]
            .agg(
                F.count(F.lit(1)).alias("rows"),
                F.sum(F.col("label").cast("long")).alias("positives"),
                F.min("event_ts").alias("start"),
                F.max("event_ts").alias("end"),
            )
            .first()
        )
        described[name] = {
            "rows": int(row["rows"]),
            "positives": int(row["positives"] or 0),
            "start": row["start"].isoformat() if row["start"] else None,
            "end": row["end"].isoformat() if row["end"] else None,
        }
    return described


def _feature_columns(frame: DataFrame, categories: list[str], *keep: str) -> DataFrame:
    """`XGBoostFraud._matrix`'s row as one array column `features`, in its order: the
    numeric features (NaN when missing), is_resale and one 0/1 per payment method. (One
    array rather than xgboost.spark's column list, which fails on an empty partition.)"""
    from pyspark.sql import functions as F

    from ..fraud.model import CATEGORICAL

    nan = F.lit(float("nan"))
    columns = [F.coalesce(F.col(n).cast("double"), nan) for n in NUMERIC_FEATURES]
    columns.append(F.col("is_resale").cast("boolean").cast("double"))
    columns += [
        F.coalesce((F.col(CATEGORICAL).cast("string") == c).cast("double"), F.lit(0.0))
        for c in categories
    ]
    label = F.col("label").cast("double").alias("label")
    return frame.select(F.array(*columns).alias("features"), label, *keep)


def _estimator(model: XGBoostFraud, workers: int, **options):
    from xgboost.spark import SparkXGBClassifier

    return SparkXGBClassifier(
        features_col="features",
        label_col="label",
        num_workers=workers,
        tree_method="hist",
        max_depth=model.max_depth,
        learning_rate=model.learning_rate,
        subsample=0.8,
        colsample_bytree=0.8,
        min_child_weight=model.min_child_weight,
        scale_pos_weight=model.scale_pos_weight_,
        random_state=model.seed,
        **options,
    )


def _fit_early(parts: dict[str, DataFrame], whole: dict, seed: int):
    """The first fit, early-stopped on validation AUC-PR; returns the model and the train +
    validation rows as feature columns with their validation flag."""

    from ..fraud.model import CATEGORICAL, XGBoostFraud

    model = XGBoostFraud(seed=seed)
    model.categories_ = sorted(
        str(row[0]) for row in parts["train"].select(CATEGORICAL).dropna().distinct().collect()
    )
    positives = max(whole["train"]["positives"], 1)
    model.scale_pos_weight_ = ((whole["train"]["rows"] - positives) / positives) ** 0.5
    train_valid = _feature_columns(parts["train_valid"], model.categories_, "is_valid")
    early = _estimator(
        model,
        _workers(parts["train"]),
        n_estimators=model.num_boost_round,
        validation_indicator_col="is_valid",
        early_stopping_rounds=model.early_stopping_rounds,
        eval_metric="aucpr",
    ).fit(train_valid)
    model.booster_ = early.get_booster()
    model.best_iteration_ = int(model.booster_.best_iteration)
    model.booster_.feature_names = model.feature_names
    return model, train_valid


def _refit(model: XGBoostFraud, train_valid: DataFrame, whole: dict) -> None:
    """The second fit, on train + validation, with the best rounds scaled by the rows
    gained: the validation weeks are the most recent, and every fraud label counts."""
    gained = (whole["train"]["rows"] + whole["valid"]["rows"]) / whole["train"]["rows"]
    rounds = round((model.best_iteration_ + 1) * gained)
    final = _estimator(model, _workers(train_valid), n_estimators=rounds).fit(
        train_valid.drop("is_valid")
    )
    model.booster_ = final.get_booster()
    model.booster_.feature_names = model.feature_names
    model.best_iteration_ = rounds - 1


def _workers(frame: DataFrame) -> int:
    """One XGBoost worker per core Spark offers (barrier tasks must all run at once)."""
    return max(1, frame.sparkSession.sparkContext.defaultParallelism)


def _margins(part: DataFrame, model: XGBoostFraud) -> tuple[np.ndarray, np.ndarray]:
    """The model's margins (`XGBoostFraud._margin`, the same matrix) of a split's rows,
    computed where the rows are, and their labels: two numbers per row on the driver."""
    import pandas as pd

    columns = [*FEATURES, "label"]

    def margins(batches):
        for batch in batches:
            yield pd.DataFrame({"margin": model._margin(batch), "label": batch["label"]})

    result = (
        part.select(*columns).mapInPandas(margins, schema="margin double, label long").toPandas()
    )
    return result["margin"].to_numpy(), result["label"].to_numpy()


def _to_pandas(part: DataFrame):
    """A split's dataset rows on the driver, ordered as `load_dataset` orders them."""
    ordered = part.select(*DATASET_COLUMNS).toPandas()
    return ordered.sort_values(["event_ts", "order_id"], ignore_index=True)


def _sampled(part: DataFrame, rows: int, seed: int) -> DataFrame:
    """A split's rows, a seeded sample of about DRIVER_ROWS when it has more."""
    return part.sample(fraction=DRIVER_ROWS / rows, seed=seed) if rows > DRIVER_ROWS else part


def _sample(part: DataFrame, rows: int, seed: int):
    """A split's rows on the driver, a seeded sample of about DRIVER_ROWS when it has more."""
    return _to_pandas(_sampled(part, rows, seed))


def _whole(whole: dict, scored: int) -> dict:
    """The figures of the whole splits; the test split's only when the driver scored a sample
    of it (its own rows describe it otherwise), with how many orders that sample holds."""
    if whole["test"]["rows"] <= DRIVER_ROWS:
        return {name: figures for name, figures in whole.items() if name != "test"}
    return whole | {"test": whole["test"] | {"scored": scored}}
