"""Inspect a dataset snapshot: shape, labels, duplicates, nulls, amounts and leakage smells, as
JSON-safe data for the command line and the dashboard; naive timestamps are taken as UTC.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import MlkitError, message_line
from .formats import json_safe
from .fraud.columns import DATASET_COLUMNS, DATASET_KEYS, LABEL_HISTORY_FEATURES

if TYPE_CHECKING:
    import pandas as pd

DATA_FILE = "data.parquet"
MANIFEST_FILE = "manifest.json"
AUC_THRESHOLD = 0.98
SAMPLES_PER_CLASS = 3
ID_COLUMNS = ("order_id", "wallet_id", "event_id")
# Without these no report can be computed; missing feature columns only fail a check.
REQUIRED_COLUMNS = (*DATASET_KEYS, "amount", "label", "label_available_at")
NOT_FEATURES = frozenset((*ID_COLUMNS, "label"))


def build_hint(name: str) -> str:
    return f"build one with `mlkit dataset build {name}`"


def locate_snapshot(path: str | Path) -> tuple[Path, Path | None]:
    """(data.parquet, manifest.json or None) for a snapshot directory or a parquet file."""
    target = Path(path).expanduser()
    if not target.exists():
        raise MlkitError(
            f"no such dataset: {target}",
            hint="pass a snapshot directory or its data.parquet, or use --pointer latest",
        )
    if target.is_dir():
        data = target / DATA_FILE
        if not data.is_file():
            raise MlkitError(
                f"{target} holds no {DATA_FILE}",
                hint="pass a snapshot directory (<datasets>/fraud/dt=<date>/run_id=<id>/) "
                "or a parquet file",
            )
    else:
        data = target
    manifest = data.parent / MANIFEST_FILE
    if data.name == DATA_FILE and manifest.is_file():
        return data, manifest
    return data, None


def inspect_dataset(
    path: str | Path | None = None,
    *,
    pointer: str | None = None,
    datasets_dir: str | Path | None = None,
    name: str = "fraud",
    samples: int = SAMPLES_PER_CLASS,
    auc_threshold: float = AUC_THRESHOLD,
) -> dict[str, Any]:
    """The full report on one snapshot: PATH, or the snapshot a pointer names (default latest)."""
    if path is not None and pointer is not None:
        raise MlkitError("give a dataset path or a pointer, not both")
    pointer_info = None
    if path is None:
        if datasets_dir is None:
            raise MlkitError("no dataset path and no datasets directory to resolve a pointer in")
        from .datasets import resolve_pointer

        pointer = (pointer or "latest").lower()
        path = resolve_pointer(Path(datasets_dir), name, pointer)
        pointer_info = {"name": pointer, "target": str(path)}
    data_file, manifest_file = locate_snapshot(path)
    frame, schema = read_dataset(data_file, name=name)
    manifest = check_manifest(data_file, manifest_file, rows=len(frame))

    label = frame["label"]
    report: dict[str, Any] = {
        "path": str(data_file.resolve()),
        "pointer": pointer_info,
        "rows": len(frame),
        "columns": len(frame.columns),
        "schema": schema,
        "time_range": time_range(frame),
        "label_distribution": label_distribution(label),
        "distinct": {col: int(frame[col].nunique()) for col in ID_COLUMNS},
        "duplicates": duplicates(frame),
        "null_rates": null_rates(frame),
        "amount": amount_stats(frame["amount"]),
        "samples": sample_rows(frame, samples),
        "manifest": manifest,
        "leakage": {
            "feature_ts_after_event_ts": feature_ts_after_event_ts(frame),
            "label_after_cutoff": label_after_cutoff(frame, manifest.get("label_cutoff")),
            "single_feature_auc": single_feature_auc(frame, auc_threshold),
            "label_history_means": label_history_means(frame),
        },
    }
    report["checks"] = checks(report, frame)
    report["ok"] = all(check["ok"] for check in report["checks"])
    return json_safe(report)


def read_dataset(data_file: Path, *, name: str = "fraud") -> tuple[pd.DataFrame, dict[str, str]]:
    """The frame and its parquet schema (column -> type); refuses files that are no dataset."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(data_file)
    except (pa.ArrowException, OSError, ValueError) as exc:
        reason = message_line(exc)
        raise MlkitError(
            f"{data_file} is not a readable parquet file: {reason}",
            hint="pass a snapshot directory or its data.parquet",
        ) from None
    missing = [col for col in REQUIRED_COLUMNS if col not in table.column_names]
    if missing:
        raise MlkitError(
            f"{data_file} lacks required dataset columns: {', '.join(missing)}",
            hint=f"is it a {name} dataset snapshot? {build_hint(name)}",
        )
    import pandas as pd

    schema = {field.name: str(field.type) for field in table.schema}
    # Nullable booleans stay boolean (not object), so they are scored like any feature.
    return table.to_pandas(types_mapper={pa.bool_(): pd.BooleanDtype()}.get), schema


def check_manifest(data_file: Path, manifest_file: Path | None, *, rows: int) -> dict[str, Any]:
    """What manifest.json promises against what data.parquet holds (sha256, row count)."""
    from .datasets import sha256_file

    actual_sha = sha256_file(data_file)
    result: dict[str, Any] = {
        "path": str(manifest_file) if manifest_file else None,
        "present": manifest_file is not None,
        "error": None,
        "run_id": None,
        "created_at": None,
        "label_cutoff": None,
        "label_rule": None,
        "sha256": {"expected": None, "actual": actual_sha, "ok": False},
        "rows": {"expected": None, "actual": rows, "ok": False},
    }
    if manifest_file is None:
        result["error"] = f"no {MANIFEST_FILE} beside the data"
        return result
    try:
        document = json.loads(manifest_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        result["error"] = f"unreadable {MANIFEST_FILE}: {exc}"
        return result
    if not isinstance(document, Mapping):
        result["error"] = f"{MANIFEST_FILE} is not a JSON object"
        return result
    for key in ("run_id", "created_at", "label_cutoff", "label_rule"):
        result[key] = document.get(key)
    expected_sha = document.get("sha256")
    result["sha256"].update(
        expected=expected_sha,
        ok=isinstance(expected_sha, str) and expected_sha.lower() == actual_sha,
    )
    expected_rows = document.get("rows")
    result["rows"].update(expected=expected_rows, ok=expected_rows == rows)
    return result


def utc_naive(values: Any) -> pd.Series:
    """Timestamps as naive UTC, so naive and tz-aware columns compare; unparseable -> error."""
    import pandas as pd

    try:
        parsed = pd.to_datetime(values, utc=True)
    except (ValueError, TypeError) as exc:
        column = getattr(values, "name", "value")
        raise MlkitError(
            f"column {column} does not hold timestamps: {exc}",
            hint="the dataset writer must store event_ts, feature_ts and "
            "label_available_at as parquet timestamps",
        ) from None
    return parsed.dt.tz_localize(None) if isinstance(parsed, pd.Series) else parsed


def parse_cutoff(value: Any) -> Any:
    """A manifest timestamp as a naive UTC pandas Timestamp, or None when absent/unparseable."""
    import pandas as pd

    if value in (None, ""):
        return None
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError):
        return None
    if stamp is pd.NaT:
        return None
    return stamp.tz_convert("UTC").tz_localize(None) if stamp.tzinfo else stamp


def iso_utc(stamp: Any) -> str | None:
    import pandas as pd

    if stamp is None or stamp is pd.NaT or (isinstance(stamp, float) and math.isnan(stamp)):
        return None
    return pd.Timestamp(stamp).tz_localize("UTC").isoformat()


def time_range(frame: pd.DataFrame, column: str = "event_ts") -> dict[str, Any]:
    stamps = utc_naive(frame[column])
    return {"column": column, "min": iso_utc(stamps.min()), "max": iso_utc(stamps.max())}


def positive_mask(label: pd.Series) -> pd.Series:
    import pandas as pd

    return pd.to_numeric(label, errors="coerce").eq(1).fillna(False).astype(bool)


def label_distribution(label: pd.Series) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for value, count in label.value_counts(dropna=False).sort_index().items():
        key = "null" if value is None or value != value else str(int(value))
        counts[key] = counts.get(key, 0) + int(count)
    positives = int(positive_mask(label).sum())
    return {
        "counts": counts,
        "positives": positives,
        "rate": positives / len(label) if len(label) else None,
    }


def duplicates(frame: pd.DataFrame) -> dict[str, Any]:
    order_dups = frame["order_id"].duplicated(keep="first")
    # A fully duplicated row repeats its order_id, so only those rows need comparing whole.
    repeated = frame[frame["order_id"].duplicated(keep=False)]
    return {
        "order_id": int(order_dups.sum()),
        "rows": int(repeated.duplicated(keep="first").sum()),
        "examples": frame.loc[order_dups, "order_id"].drop_duplicates().head(5).tolist(),
    }


def null_rates(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Per column: nulls and rate, worst first (ties in column order)."""
    counts = frame.isna().sum()
    rows = len(frame)
    rates = [
        {"column": col, "nulls": int(counts[col]), "rate": counts[col] / rows if rows else 0.0}
        for col in frame.columns
    ]
    return sorted(rates, key=lambda item: -item["nulls"])


def amount_stats(amount: pd.Series) -> dict[str, Any]:
    import pandas as pd

    values = pd.to_numeric(amount, errors="coerce").dropna()
    if values.empty:
        return {"count": 0} | dict.fromkeys(("mean", "std", "min", "p50", "p95", "p99", "max"))
    quantiles = values.quantile([0.5, 0.95, 0.99])
    return {
        "count": len(values),
        "mean": float(values.mean()),
        "std": float(values.std()) if len(values) > 1 else None,
        "min": float(values.min()),
        "p50": float(quantiles[0.5]),
        "p95": float(quantiles[0.95]),
        "p99": float(quantiles[0.99]),
        "max": float(values.max()),
    }


def sample_rows(frame: pd.DataFrame, per_class: int) -> dict[str, list[dict[str, Any]]]:
    positives = positive_mask(frame["label"])
    return {
        "fraud": frame[positives].head(per_class).to_dict("records"),
        "non_fraud": frame[~positives].head(per_class).to_dict("records"),
    }


def feature_ts_after_event_ts(frame: pd.DataFrame) -> dict[str, Any]:
    """Rows whose features were known only after the order: an as-of join gone wrong."""
    event_ts = utc_naive(frame["event_ts"])
    feature_ts = utc_naive(frame["feature_ts"])
    after = (feature_ts > event_ts).fillna(False).astype(bool)
    lead = (feature_ts - event_ts)[after]
    return {
        "rows": int(after.sum()),
        "missing_timestamps": int((event_ts.isna() | feature_ts.isna()).sum()),
        "max_lead_seconds": lead.max().total_seconds() if after.any() else None,
        "examples": frame.loc[after, "order_id"].head(5).tolist(),
    }


def label_after_cutoff(frame: pd.DataFrame, cutoff: Any) -> dict[str, Any]:
    """Rows whose label became available after the manifest's label cutoff."""
    positives = positive_mask(frame["label"])
    available_at = utc_naive(frame["label_available_at"])
    result: dict[str, Any] = {
        "cutoff": cutoff,
        "rows": None,
        "positive_rows": None,
        "positives_without_available_at": int((positives & available_at.isna()).sum()),
        "examples": [],
    }
    stamp = parse_cutoff(cutoff)
    if stamp is None:
        return result
    after = (available_at > stamp).fillna(False).astype(bool)
    result["rows"] = int(after.sum())
    result["positive_rows"] = int((after & positives).sum())
    result["examples"] = frame.loc[after & positives, "order_id"].head(5).tolist()
    return result


def rank_auc(values: Any, positives: Any) -> float | None:
    """ROC AUC of a score against a boolean target (Mann-Whitney, ties averaged)."""
    import numpy as np
    import pandas as pd

    target = np.asarray(positives, dtype=bool)
    n_pos = int(target.sum())
    n_neg = len(target) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = pd.Series(np.asarray(values, dtype="float64")).rank(method="average").to_numpy()
    return float((ranks[target].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def candidate_features(frame: pd.DataFrame) -> list[str]:
    """Numeric and boolean columns that are neither ids nor the label."""
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    return [
        col
        for col in frame.columns
        if col not in NOT_FEATURES and (is_numeric_dtype(frame[col]) or is_bool_dtype(frame[col]))
    ]


def single_feature_auc(frame: pd.DataFrame, threshold: float = AUC_THRESHOLD) -> dict[str, Any]:
    """Each feature alone as a score (NaN -> median); max(auc, 1 - auc) near 1 smells of leakage."""
    import pandas as pd

    label = pd.to_numeric(frame["label"], errors="coerce")
    labelled = label.isin([0, 1])
    target = label[labelled].eq(1).to_numpy()
    features = []
    for col in candidate_features(frame):
        values = frame.loc[labelled, col].astype("float64")
        if values.notna().sum() == 0:
            features.append({"feature": col, "auc": None, "flagged": False, "note": "all null"})
            continue
        auc = rank_auc(values.fillna(values.median()), target)
        if auc is None:
            features.append({"feature": col, "auc": None, "flagged": False, "note": "one class"})
            continue
        auc = max(auc, 1.0 - auc)
        features.append({"feature": col, "auc": auc, "flagged": auc >= threshold, "note": None})
    features.sort(key=lambda item: -1.0 if item["auc"] is None else -item["auc"])
    return {
        "threshold": threshold,
        "features": features,
        "flagged": [item["feature"] for item in features if item["flagged"]],
    }


def label_history_means(frame: pd.DataFrame) -> dict[str, dict[str, float | None]]:
    """Mean of each label-history feature per label: a large gap is a hint, not a failure."""
    import pandas as pd

    label = pd.to_numeric(frame["label"], errors="coerce")
    means: dict[str, dict[str, float | None]] = {}
    for col in LABEL_HISTORY_FEATURES:
        if col not in frame.columns:
            continue
        values = pd.to_numeric(frame[col], errors="coerce")
        mean_0 = values[label == 0].mean()
        mean_1 = values[label == 1].mean()
        means[col] = {"label_0": mean_0, "label_1": mean_1, "gap": mean_1 - mean_0}
    return means


Verdict = tuple[str, bool, str]  # check name, passed, detail


def checks(report: dict[str, Any], frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Pass/fail verdicts over the report; any failure fails `--strict`."""
    manifest, leakage = report["manifest"], report["leakage"]
    verdicts = [
        _columns_check(frame),
        _labels_check(report["rows"], report["label_distribution"]),
        *_manifest_checks(manifest),
        _unique_check(report["duplicates"]),
        _feature_ts_check(leakage["feature_ts_after_event_ts"]),
        _cutoff_check(leakage["label_after_cutoff"], manifest),
        _auc_check(leakage["single_feature_auc"]),
    ]
    return [{"name": name, "ok": bool(ok), "detail": detail} for name, ok, detail in verdicts]


def _columns_check(frame: pd.DataFrame) -> Verdict:
    missing = [col for col in DATASET_COLUMNS if col not in frame.columns]
    extra = [col for col in frame.columns if col not in DATASET_COLUMNS]
    detail = f"missing: {', '.join(missing)}" if missing else "every dataset column present"
    if extra:
        detail += f" (extra: {', '.join(extra)})"
    return "columns", not missing, detail


def _labels_check(rows: int, labels: dict[str, Any]) -> Verdict:
    unexpected = sorted(set(labels["counts"]) - {"0", "1"})
    if rows == 0:
        return "labels", False, "the dataset is empty"
    if unexpected:
        return "labels", False, f"labels other than 0/1: {', '.join(unexpected)}"
    if len(labels["counts"]) < 2:
        return "labels", False, f"one class only ({next(iter(labels['counts']))})"
    return "labels", True, f"{labels['positives']:,} positives, rate {labels['rate']:.3%}"


def _manifest_checks(manifest: dict[str, Any]) -> list[Verdict]:
    """The manifest's sha256 and row count against the data."""
    if manifest["error"]:
        return [
            ("manifest_sha256", False, manifest["error"]),
            ("manifest_rows", False, manifest["error"]),
        ]
    sha, rows = manifest["sha256"], manifest["rows"]
    if sha["expected"] is None:
        sha_verdict = ("manifest_sha256", False, "the manifest records no sha256")
    elif sha["ok"]:
        sha_verdict = ("manifest_sha256", True, "data.parquet matches the manifest")
    else:
        actual, expected = sha["actual"][:12], str(sha["expected"])[:12]
        detail = f"data.parquet is {actual}…, the manifest says {expected}…"
        sha_verdict = ("manifest_sha256", False, detail)
    rows_detail = (
        f"{rows['actual']:,} rows"
        if rows["ok"]
        else f"data has {rows['actual']:,} rows, manifest says {rows['expected']}"
    )
    return [sha_verdict, ("manifest_rows", rows["ok"], rows_detail)]


def _unique_check(dups: dict[str, Any]) -> Verdict:
    if dups["order_id"] == 0:
        return "order_id_unique", True, "no duplicate order_id"
    detail = f"{dups['order_id']:,} duplicate order_id rows ({dups['rows']:,} fully duplicated)"
    return "order_id_unique", False, detail


def _feature_ts_check(late: dict[str, Any]) -> Verdict:
    problems = []
    if late["rows"]:
        problems.append(f"{late['rows']:,} rows with feature_ts after event_ts")
    if late["missing_timestamps"]:
        problems.append(f"{late['missing_timestamps']:,} rows missing event_ts or feature_ts")
    detail = "; ".join(problems) or "every feature_ts <= event_ts"
    return "feature_ts_not_after_event_ts", not problems, detail


def _cutoff_check(cutoff: dict[str, Any], manifest: dict[str, Any]) -> Verdict:
    if cutoff["rows"] is None:
        why = manifest["error"] or (
            "the manifest records no label_cutoff"
            if not cutoff["cutoff"]
            else f"unparseable label_cutoff {cutoff['cutoff']!r}"
        )
        return "labels_known_by_cutoff", False, f"cannot check: {why}"
    problems = []
    if cutoff["positive_rows"]:
        problems.append(
            f"{cutoff['positive_rows']:,} positive labels available after {cutoff['cutoff']}"
        )
    if cutoff["positives_without_available_at"]:
        problems.append(
            f"{cutoff['positives_without_available_at']:,} positive labels "
            "without label_available_at"
        )
    detail = "; ".join(problems) or f"every positive label known by {cutoff['cutoff']}"
    return "labels_known_by_cutoff", not problems, detail


def _auc_check(auc: dict[str, Any]) -> Verdict:
    flagged = [item for item in auc["features"] if item["flagged"]]
    if flagged:
        names = ", ".join(f"{item['feature']} ({item['auc']:.3f})" for item in flagged)
        return "single_feature_auc", False, f"suspiciously near 1: {names}"
    best = next((item for item in auc["features"] if item["auc"] is not None), None)
    if best is None:
        return "single_feature_auc", True, "no feature scored"
    detail = f"best single feature {best['feature']} at {best['auc']:.3f} < {auc['threshold']}"
    return "single_feature_auc", True, detail


def inspect_in_database(
    path: str | Path | None, *, pointer: str | None, samples: int, config=None, engine=None
) -> dict[str, Any]:
    """`mlkit inspect dataset`: `inspect_dataset`, a pointer read in the datasets folder of
    the database `engine` reaches (needed only when no path is given)."""
    datasets_dir = None
    if engine is not None:
        from .identity import database_home

        datasets_dir = database_home(config, engine).datasets_dir
    return inspect_dataset(path, pointer=pointer, datasets_dir=datasets_dir, samples=samples)
