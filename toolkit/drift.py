"""Feature drift: the features of recent orders against a model's training snapshot.

Each feature's measures are judged beyond its natural band over earlier windows of the snapshot,
since aging and event-driven features move between windows in an unchanged world.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .clock import parse_moment, utcnow
from .config import Settings
from .errors import MlkitError
from .schema import drift_checks, drift_results, fraud_features, orders

if TYPE_CHECKING:
    import pandas as pd

# Fewer recent rows than this and PSI/KL on ten bins are mostly sampling noise.
MIN_CURRENT_ROWS = 100
# Pseudo-count per bin, so a bin empty on one side gives a large but finite divergence.
PSEUDO_COUNT = 0.5
MISSING = "<missing>"
# The snapshot column that dates each row: the order's own time.
TIME_COLUMN = "event_ts"
REFERENCE_MODES = ("recent", "all")


@dataclass(frozen=True)
class DriftSettings(Settings):
    section = "drift"

    kl_threshold: float
    psi_threshold: float
    bins: int
    large_sample: int
    p_value: float
    wasserstein_threshold: float
    reference: str
    calibration_windows: int

    def check(self) -> None:
        problems = []
        if self.bins < 2:
            problems.append(f"drift.bins must be at least 2 (got {self.bins})")
        if not 0 < self.p_value < 1:
            problems.append(f"drift.p_value must be between 0 and 1 (got {self.p_value})")
        for name in ("kl_threshold", "psi_threshold", "wasserstein_threshold"):
            if getattr(self, name) <= 0:
                problems.append(f"drift.{name} must be positive (got {getattr(self, name)})")
        if self.reference not in REFERENCE_MODES:
            problems.append(
                f"drift.reference must be one of {', '.join(REFERENCE_MODES)} "
                f"(got {self.reference!r})"
            )
        if self.calibration_windows < 0:
            problems.append(
                f"drift.calibration_windows must be 0 or more (got {self.calibration_windows})"
            )
        if self.large_sample < 1:
            problems.append(f"drift.large_sample must be positive (got {self.large_sample})")
        if problems:
            raise MlkitError("; ".join(problems), hint="fix the drift: section of the config")


# ---------------------------------------------------------------- measures


def _divergences(ref_counts: np.ndarray, cur_counts: np.ndarray) -> tuple[float, float]:
    """PSI and KL(current || reference) of two histograms over the same bins."""
    used = (ref_counts + cur_counts) > 0  # a bin empty on both sides says nothing
    ref = ref_counts[used].astype(float) + PSEUDO_COUNT
    cur = cur_counts[used].astype(float) + PSEUDO_COUNT
    p = ref / ref.sum()
    q = cur / cur.sum()
    log_ratio = np.log(q / p)
    psi = float(np.sum((q - p) * log_ratio))
    kl = float(np.sum(q * log_ratio))
    # Identical histograms give exactly zero, not a rounding error's -1e-17.
    return max(psi, 0.0), max(kl, 0.0)


def _edges(ref_sorted: np.ndarray, bins: int) -> np.ndarray:
    """Bin edges from the reference: its quantiles, or its distinct values when ties
    collapse the quantiles (flags, small counts), so each value keeps a bin of its own."""
    n = len(ref_sorted)
    positions = np.floor(np.linspace(0, 1, bins + 1)[1:-1] * (n - 1)).astype(np.int64)
    edges = np.unique(ref_sorted[positions])
    if len(edges) < bins - 1:
        distinct = ref_sorted[np.concatenate(([True], np.diff(ref_sorted) != 0))]
        if len(distinct) <= 2 * bins:
            return distinct
    return edges


def _sorted_counts(values_sorted: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts in (-inf, e0), [e0, e1), ..., [e_last, inf) of an already sorted array."""
    positions = np.searchsorted(values_sorted, edges, side="left")
    return np.diff(np.concatenate(([0], positions, [len(values_sorted)])))


def wasserstein_sorted(u: np.ndarray, v: np.ndarray) -> float:
    """The 1-Wasserstein distance of two samples given sorted: the area between their
    empirical CDFs, from one merge of the two arrays."""
    merged = np.concatenate((u, v))
    order = np.argsort(merged, kind="stable")  # two sorted runs: a linear merge
    values = merged[order]
    taken_u = np.cumsum(order < len(u))[:-1]  # values of u at or below each merged value
    taken_v = np.arange(1, len(merged)) - taken_u
    gap = np.abs(taken_u / len(u) - taken_v / len(v))
    return float(np.dot(gap, np.diff(values)))


def compare_numeric(
    name: str, reference: np.ndarray, current: np.ndarray, settings: DriftSettings
) -> dict[str, Any]:
    reference = np.asarray(reference, dtype=float)
    current = np.asarray(current, dtype=float)
    ref_missing, cur_missing = np.isnan(reference), np.isnan(current)
    ref_sorted = np.sort(reference[~ref_missing])
    cur_sorted = np.sort(current[~cur_missing])
    if len(ref_sorted):
        edges = _edges(ref_sorted, settings.bins)
        ref_counts = np.append(_sorted_counts(ref_sorted, edges), ref_missing.sum())
        cur_counts = np.append(_sorted_counts(cur_sorted, edges), cur_missing.sum())
    else:  # never seen in training: only the missing share can be compared
        ref_counts = np.array([0, ref_missing.sum()])
        cur_counts = np.array([len(cur_sorted), cur_missing.sum()])
    psi, kl = _divergences(ref_counts, cur_counts)
    # On large samples a p-value flags differences too small to matter: a distance is used there.
    smaller = min(len(ref_sorted), len(cur_sorted))
    p_value = statistic = None
    if smaller == 0:
        test, threshold, test_drifted = "ks", settings.p_value, False
    elif smaller < settings.large_sample:
        test, threshold = "ks", settings.p_value
        from scipy import stats  # only here: importing it costs most of a second

        # The asymptotic p-value: exact is slow for hundreds of rows and fails on ties.
        result = stats.ks_2samp(ref_sorted, cur_sorted, method="asymp")
        statistic, p_value = float(result.statistic), float(result.pvalue)
        test_drifted = p_value < threshold
    else:
        test, threshold = "wasserstein", settings.wasserstein_threshold
        spread = float(np.std(ref_sorted))
        # Constant in training: the raw distance (any move is a move of that size).
        statistic = wasserstein_sorted(ref_sorted, cur_sorted) / (spread if spread > 0 else 1.0)
        test_drifted = statistic > threshold
    outcome = (test, statistic, p_value, threshold, test_drifted)
    return _verdict(name, "numeric", (psi, kl), outcome, settings) | {
        "reference_mean": float(ref_sorted.mean()) if len(ref_sorted) else None,
        "current_mean": float(cur_sorted.mean()) if len(cur_sorted) else None,
        "reference_missing": float(ref_missing.mean()) if len(reference) else None,
        "current_missing": float(cur_missing.mean()) if len(current) else None,
    }


def compare_categorical(
    name: str, reference: pd.Series, current: pd.Series, settings: DriftSettings
) -> dict[str, Any]:
    import pandas as pd

    ref_counts = _category_counts(reference)
    cur_counts = _category_counts(current)
    categories = sorted(set(ref_counts.index) | set(cur_counts.index))
    ref = ref_counts.reindex(categories, fill_value=0).to_numpy()
    cur = cur_counts.reindex(categories, fill_value=0).to_numpy()
    psi, kl = _divergences(ref, cur)
    smaller = min(len(reference), len(current))
    statistic = p_value = None
    if smaller < settings.large_sample:
        test, threshold = "chi2", settings.p_value
        used = (ref + cur) > 0
        if used.sum() >= 2:
            from scipy import stats

            result = stats.chi2_contingency(np.vstack((ref[used], cur[used])))
            statistic, p_value = float(result.statistic), float(result.pvalue)
        test_drifted = p_value is not None and p_value < threshold
    else:
        test, threshold = "psi", settings.psi_threshold
        statistic, test_drifted = psi, psi > threshold
    outcome = (test, statistic, p_value, threshold, test_drifted)
    return _verdict(name, "categorical", (psi, kl), outcome, settings) | {
        "reference_missing": float(pd.isna(reference).mean()) if len(reference) else None,
        "current_missing": float(pd.isna(current).mean()) if len(current) else None,
        "dof": max(int(((ref + cur) > 0).sum()) - 1, 1),  # of the chi-square test
    }


def _category_counts(values: pd.Series) -> pd.Series:
    """Counts per category as text (True/False for flags), missing values as MISSING."""
    counts = values.value_counts(dropna=False)
    labels = [MISSING if _is_missing(label) else str(label) for label in counts.index]
    return counts.groupby(labels).sum()


def _is_missing(value: Any) -> bool:
    try:
        return bool(value != value) or value is None  # NaN and pandas NA
    except (TypeError, ValueError):
        return True  # pandas NA refuses to be a bool


def _verdict(
    name: str,
    kind: str,
    divergences: tuple[float, float],
    outcome: tuple[str, float | None, float | None, float, bool],
    settings: DriftSettings,
) -> dict[str, Any]:
    """One feature's result before calibration; `outcome` is the size-aware test's
    (name, statistic, p-value, threshold, drifted)."""
    psi, kl = divergences
    test, statistic, p_value, threshold, test_drifted = outcome
    reasons = []
    if kl > settings.kl_threshold:
        reasons.append("kl")
    if psi > settings.psi_threshold:
        reasons.append("psi")
    if test_drifted and test not in reasons:
        reasons.append(test)
    return {
        "feature": name,
        "kind": kind,
        "psi": psi,
        "kl": kl,
        "test": test,
        "statistic": statistic,
        "p_value": p_value,
        "threshold": threshold,
        "drifted": bool(reasons),
        "reasons": reasons,
        "reference_mean": None,
        "current_mean": None,
    }


def compare_frames(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    features: list[str],
    settings: DriftSettings,
    categorical: tuple[str, ...] | set[str] = (),
) -> list[dict[str, Any]]:
    """One result per feature, in the order given; features compare in parallel threads
    (numpy's sorts release the GIL)."""

    def one(name: str) -> dict[str, Any]:
        return _compare_column(name, reference[name], current[name], settings, categorical)

    with ThreadPoolExecutor(max_workers=_workers()) as pool:
        return list(pool.map(one, features))


def _workers() -> int:
    import os

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(4, cpus or 1))


def _compare_column(
    name: str, ref: pd.Series, cur: pd.Series, settings: DriftSettings, categorical
) -> dict[str, Any]:
    import pandas as pd

    numeric = (
        name not in categorical
        and pd.api.types.is_numeric_dtype(ref)
        and not pd.api.types.is_bool_dtype(ref)
    )
    if not numeric:
        return compare_categorical(name, ref, cur, settings)
    return compare_numeric(
        name,
        ref.to_numpy(dtype=float, na_value=np.nan),
        pd.to_numeric(cur).to_numpy(dtype=float, na_value=np.nan),
        settings,
    )


# ---------------------------------------------------------------- calibration


def calibrate(
    results: list[dict[str, Any]],
    baselines: list[list[dict[str, Any]]],
    settings: DriftSettings,
    sizes: tuple[int, int],
) -> list[dict[str, Any]]:
    """Judge each feature's measures beyond its natural band (the most its earlier windows reach,
    plus their spread); test critical values are Bonferroni-corrected over the features.
    """
    n, m = sizes
    alpha = settings.p_value / max(len(results), 1)  # Bonferroni over the features
    ks_margin = np.sqrt(-np.log(alpha / 2) / 2 * (n + m) / (n * m))
    for i, r in enumerate(results):
        earlier = [b[i] for b in baselines]

        def band(key: str, earlier=earlier) -> float:
            values = [e[key] for e in earlier if e[key] is not None]
            return 2 * max(values) - min(values) if values else 0.0

        level = {
            "kl": band("kl"),
            "psi": band("psi"),
            "statistic": band("statistic"),
            "windows": len(earlier),
        }
        kl_excess = max(r["kl"] - level["kl"], 0.0)
        reasons = []
        if kl_excess > settings.kl_threshold:
            reasons.append("kl")
        if r["psi"] - level["psi"] > settings.psi_threshold:
            reasons.append("psi")
        statistic = r["statistic"]
        if r["test"] == "ks":
            test_drifted = statistic is not None and statistic - level["statistic"] > ks_margin
        elif r["test"] == "chi2":
            from scipy import stats

            critical = float(stats.chi2.ppf(1 - alpha, r["dof"]))
            test_drifted = statistic is not None and statistic - level["statistic"] > critical
        else:
            test_drifted = statistic is not None and statistic - level["statistic"] > r["threshold"]
        if test_drifted and r["test"] not in reasons:
            reasons.append(r["test"])
        r.update(kl_excess=kl_excess, baseline=level, drifted=bool(reasons), reasons=reasons)
    return results


def earlier_slices(
    snapshot: pd.DataFrame,
    reference_start: datetime | None,
    length: timedelta,
    count: int,
    step: timedelta | None = None,
) -> list[pd.DataFrame]:
    """Up to `count` slices of the snapshot as long as its reference slice, starting one,
    two, ... `step`s (default: `length`) before it, so each covers the same hours of the
    day; newest first; those with too few rows to compare are left out."""
    import pandas as pd

    if reference_start is None or count < 1 or TIME_COLUMN not in snapshot.columns:
        return []
    step = step or length
    times = pd.to_datetime(snapshot[TIME_COLUMN]).to_numpy()
    slices = []
    for k in range(1, count + 1):
        start = reference_start - k * step
        rows = snapshot[(times >= start) & (times < start + length)]
        if len(rows) < MIN_CURRENT_ROWS:
            break
        slices.append(rows)
    return slices


# ---------------------------------------------------------------- the check


def read_reference(path_text: str | None, ref: str, features: list[str]) -> pd.DataFrame:
    """The training snapshot's feature columns and, when it has it, each row's order time."""
    import pandas as pd
    import pyarrow.parquet as pq

    if not path_text:
        raise MlkitError(
            f"{ref} records no training snapshot to compare with",
            hint="retrain it (`mlkit train fraud`) so the version names its dataset",
        )
    path = Path(path_text)
    data_file = path / "data.parquet" if path.is_dir() else path
    if not data_file.is_file():
        raise MlkitError(
            f"the training snapshot of {ref} is gone: {data_file} does not exist",
            hint="restore the datasets directory, or retrain and check the new version",
        )
    try:
        stored = set(pq.read_schema(data_file).names)
        columns = features + [c for c in (TIME_COLUMN,) if c in stored and c not in features]
        return pd.read_parquet(data_file, columns=columns)
    except Exception as exc:  # pyarrow raises several types for a bad or foreign file
        raise MlkitError(
            f"cannot read the training snapshot of {ref} at {data_file}: {exc}",
            hint="rebuild the dataset with `mlkit dataset build fraud` and retrain",
        ) from None


def reference_slice(
    snapshot: pd.DataFrame, length: timedelta, mode: str
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The rows of the snapshot to compare with: its last `length` of orders (mode
    "recent"), or all of it (mode "all", a snapshot without order times, or a last
    stretch too thin to compare)."""
    import pandas as pd

    described: dict[str, Any] = {
        "mode": "all",
        "column": None,
        "start": None,
        "end": None,
        "rows": len(snapshot),
        "snapshot_rows": len(snapshot),
        "note": None,
    }
    if TIME_COLUMN not in snapshot.columns or snapshot.empty:
        if mode == "recent":
            described["note"] = f"the snapshot has no {TIME_COLUMN} column: all of it is used"
        return snapshot, described
    times = pd.to_datetime(snapshot[TIME_COLUMN])
    first, last = times.min().to_pydatetime(), times.max().to_pydatetime()
    described.update(column=TIME_COLUMN, start=first, end=last)
    if mode != "recent":
        return snapshot, described
    start = last - length
    recent = snapshot[(times >= start).to_numpy()]
    if len(recent) < MIN_CURRENT_ROWS:
        described["note"] = (
            f"the snapshot's last {_duration(length)} hold only {len(recent)} rows: "
            "all of it is used"
        )
        return snapshot, described
    described.update(mode="recent", start=max(start, first), rows=len(recent))
    return recent, described


def _duration(length: timedelta) -> str:
    hours = length.total_seconds() / 3600
    return f"{hours / 24:g} days" if hours >= 24 else f"{hours:g} hours"


def read_current(
    engine: Engine, start: datetime, end: datetime, features: list[str]
) -> tuple[pd.DataFrame, int, datetime | None]:
    """Feature rows of the orders in [start, end], the number of orders there and the time
    of the newest order with features (the nightly ETL leaves the latest hours without)."""
    from .db import read_frame

    with engine.connect() as conn:
        covered_until = conn.execute(
            sa.select(sa.func.max(fraud_features.c.feature_ts)).where(
                fraud_features.c.feature_ts >= start, fraud_features.c.feature_ts <= end
            )
        ).scalar()
        n_orders = conn.execute(
            sa.select(sa.func.count())
            .select_from(orders)
            .where(orders.c.created_at >= start, orders.c.created_at <= end)
        ).scalar_one()
        columns = [fraud_features.c[name] for name in features]
        frame = read_frame(
            conn,
            sa.select(*columns).where(
                fraud_features.c.feature_ts >= start, fraud_features.c.feature_ts <= end
            ),
        )
    return frame, int(n_orders), covered_until


def _window_start(window: str, now: datetime) -> datetime:
    start = parse_moment(window, now=now, option="--window")
    if start >= now:
        raise MlkitError(
            f"--window {window!r} starts at {start:%Y-%m-%d %H:%M}, not before now "
            f"({now:%Y-%m-%d %H:%M})",
            hint="use a duration like 7d (back from now) or an earlier date",
        )
    return start


def _fraud_version(engine: Engine, model: str) -> tuple[Any, list[str]]:
    """The registry version `model` names and the fraud features it uses."""
    from .fraud.columns import FEATURES
    from .registry import resolve

    mv = resolve(engine, model)
    if mv.family != "fraud":
        raise MlkitError(
            f"{mv.ref} is a {mv.family} model: drift checks compare order features",
            hint="check a fraud model, e.g. --model fraud@prod",
        )
    features = [f for f in (mv.features or FEATURES) if f in FEATURES]
    if not features:
        raise MlkitError(f"{mv.ref} lists none of the fraud features to compare")
    return mv, features


def _judge(
    snapshot: pd.DataFrame,
    reference: pd.DataFrame,
    current: pd.DataFrame,
    features: list[str],
    settings: DriftSettings,
    slice_info: dict[str, Any],
    span: timedelta,
    step: timedelta,
) -> list[dict[str, Any]]:
    """Each feature's result, calibrated on the snapshot's earlier windows when the
    reference is its recent slice (recording how many in `slice_info`)."""
    from .fraud.columns import CATEGORICAL_FEATURES

    results = compare_frames(reference, current, features, settings, CATEGORICAL_FEATURES)
    earlier = []
    if slice_info["mode"] == "recent":
        windows = settings.calibration_windows
        earlier = earlier_slices(snapshot, slice_info["start"], span, windows, step=step)
    baselines = [
        compare_frames(reference, rows, features, settings, CATEGORICAL_FEATURES)
        for rows in earlier
    ]
    slice_info["calibration_windows"] = len(baselines)
    return calibrate(results, baselines, settings, (len(reference), len(current)))


def run_drift_check(
    engine: Engine,
    config,
    *,
    model: str | None = None,
    window: str | None = None,
    record: bool = True,
) -> dict[str, Any]:
    """Compare the features of the orders of the last `window` before now with the last
    `window` of `model`'s training snapshot; record the check and return it."""
    started = time.perf_counter()
    settings = DriftSettings.from_config(config)
    window = window or str(config.get("drift.window"))
    now = utcnow()
    start = _window_start(window, now)
    mv, features = _fraud_version(engine, model or str(config.get("drift.model")))
    # The snapshot's Parquet read overlaps the database read (both release the GIL).
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(read_reference, mv.dataset_ref, mv.ref, features)
        current, n_orders, covered_until = read_current(engine, start, now, features)
        snapshot = pending.result()
    # Equal spans of time on both sides: when the newest features are hours old (a daily
    # ETL), the window holds only part of a day, and a full day of the snapshot would mix
    # in hours the window lacks (wallet ages and event mixes follow the time of day).
    span = (covered_until - start) if covered_until is not None else now - start
    span = max(span, timedelta(hours=1))
    reference, slice_info = reference_slice(snapshot, span, settings.reference)
    document = {
        "check_id": None,
        "status": "checked",
        "model": mv.ref,
        "reference": str(mv.dataset_ref),
        "reference_slice": slice_info,
        "window": {"text": window, "start": start, "end": now, "features_until": covered_until},
        "reference_rows": len(reference),
        "current_rows": len(current),
        "orders_in_window": n_orders,
        "drifted": False,
        "features_drifted": [],
        "max_kl": None,
        "max_kl_raw": None,
        "max_psi": None,
        "thresholds": {
            "kl": settings.kl_threshold,
            "psi": settings.psi_threshold,
            "ks_p_value": settings.p_value,
            "wasserstein": settings.wasserstein_threshold,
            "large_sample": settings.large_sample,
        },
        "features": [],
        "warnings": [],
        "checked_at": now,
        "seconds": None,
    }
    if len(snapshot) < MIN_CURRENT_ROWS:
        raise MlkitError(
            f"the training snapshot of {mv.ref} holds only {len(snapshot)} rows",
            hint="retrain on a larger dataset",
        )
    if len(current) < MIN_CURRENT_ROWS:
        # A quiet night is not a failure: nothing is compared, nothing recorded, exit 0.
        document["status"] = "skipped"
        document["warnings"].append(
            f"skipped: only {len(current)} recent orders with features since "
            f"{start:%Y-%m-%d %H:%M} ({n_orders} orders in the window); at least "
            f"{MIN_CURRENT_ROWS} are needed"
        )
        document["seconds"] = round(time.perf_counter() - started, 3)
        return document
    if len(current) < n_orders:
        document["warnings"].append(
            f"{n_orders - len(current):,} of {n_orders:,} orders in the window have no "
            "features yet: run `mlkit etl run --since last`"
        )
    if slice_info["note"]:
        document["warnings"].append(slice_info["note"])
    step = now - start
    results = _judge(snapshot, reference, current, features, settings, slice_info, span, step)
    drifted = [r["feature"] for r in results if r["drifted"]]
    document.update(
        drifted=bool(drifted),
        features_drifted=drifted,
        # What the model_drift rule reads: KL beyond the snapshot's own week-to-week level.
        max_kl=max(r["kl_excess"] for r in results),
        max_kl_raw=max(r["kl"] for r in results),
        max_psi=max(r["psi"] for r in results),
        features=results,
    )
    document["seconds"] = round(time.perf_counter() - started, 3)
    if record:
        document["check_id"] = _record(engine, document)
    return document


def _record(engine: Engine, document: dict[str, Any]) -> int:
    with engine.begin() as conn:
        check_id = conn.execute(
            drift_checks.insert().values(
                model_ref=document["model"],
                reference=document["reference"][:1024],
                window_text=document["window"]["text"][:32],
                window_start=document["window"]["start"],
                window_end=document["window"]["end"],
                reference_rows=document["reference_rows"],
                current_rows=document["current_rows"],
                features_checked=len(document["features"]),
                features_drifted=len(document["features_drifted"]),
                drifted=document["drifted"],
                max_kl=document["max_kl"],
                max_psi=document["max_psi"],
                kl_threshold=document["thresholds"]["kl"],
                seconds=document["seconds"],
                checked_at=document["checked_at"],
            )
        ).inserted_primary_key[0]
        conn.execute(
            drift_results.insert(),
            [
                {
                    "check_id": check_id,
                    **{k: v for k, v in r.items() if k in drift_results.c},
                    "reasons": ",".join(r["reasons"]) or None,
                }
                for r in document["features"]
            ],
        )
    return int(check_id)


def latest_drift_check(engine: Engine) -> dict[str, Any] | None:
    """The newest recorded check with its drifted features, or None (none yet, or no table)."""
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table(drift_checks.name):
            return None
        row = conn.execute(
            sa.select(drift_checks).order_by(drift_checks.c.check_id.desc()).limit(1)
        ).first()
        if row is None:
            return None
        drifted = conn.execute(
            sa.select(drift_results.c.feature)
            .where(drift_results.c.check_id == row.check_id, drift_results.c.drifted.is_(True))
            .order_by(drift_results.c.kl.desc())
        ).scalars()
        return {**row._asdict(), "features_drifted_names": list(drifted)}
