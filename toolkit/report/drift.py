"""`mlkit report drift`: per-feature histograms of the training snapshot's reference slice
against the recent orders, each with the statistic the drift check judged and its threshold."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np

from . import charts
from .model import Report
from .page import Page, cell, reports_dir, safe_name, write_page

BINS = 20


def write_drift_report(
    engine, config, *, model: str | None = None, window: str | None = None, out: Path | None = None
) -> Report:
    """Run the drift check (unrecorded) and draw what it compared, feature by feature."""
    from ..drift import run_drift_check

    document = run_drift_check(engine, config, model=model, window=window, record=False)
    page = Page(f"Feature drift of {document['model']}")
    w = document["window"]
    subtitle = (
        f"recent orders {w['start']:%Y-%m-%d %H:%M} to {w['end']:%Y-%m-%d %H:%M} ({w['text']}) "
        f"against the training snapshot {document['reference']}"
    )
    for warning in document["warnings"]:
        page.warning(warning)
    if document["status"] == "checked":
        reference, current = _frames(engine, document)
        _summary(page, document)
        for result in document["features"]:
            _feature_chart(page, result, reference[result["feature"]], current[result["feature"]])
    target = out or reports_dir(config, engine) / f"drift-{safe_name(document['model'])}.html"
    return Report(write_page(page.render(subtitle), target), page.charts)


def _frames(engine, document: dict[str, Any]):
    """The rows the check compared: the snapshot's reference slice and the window's
    feature rows, read by the drift check's own readers."""
    import pandas as pd

    from ..drift import TIME_COLUMN, read_current, read_reference
    from ..registry import resolve

    mv = resolve(engine, document["model"])
    features = [r["feature"] for r in document["features"]]
    snapshot = read_reference(mv.dataset_ref, mv.ref, features)
    described = document["reference_slice"]
    if described["mode"] == "recent":
        times = pd.to_datetime(snapshot[TIME_COLUMN])
        snapshot = snapshot[(times >= described["start"]).to_numpy()]
    w = document["window"]
    current, _, _ = read_current(engine, w["start"], w["end"], features)
    return snapshot, current


def _summary(page: Page, document: dict[str, Any]) -> None:
    drifted = document["features_drifted"]
    page.heading("Verdict")
    page.text(
        f"drift in {len(drifted)} feature(s): {', '.join(drifted)}" if drifted else "no drift",
        "fail" if drifted else "pass",
    )
    page.text(
        f"{document['reference_rows']:,} snapshot rows ({document['reference_slice']['mode']} "
        f"slice) against {document['current_rows']:,} recent orders. A feature drifts when its "
        f"KL or PSI beyond its natural level (the snapshot's earlier windows) passes "
        f"{document['thresholds']['kl']:g} / {document['thresholds']['psi']:g}, or its test "
        "statistic beyond that level passes the test's threshold.",
        "note",
    )
    page.table(
        (
            "feature",
            "PSI",
            "KL",
            "natural KL",
            "test",
            "statistic",
            "natural",
            "threshold",
            "drift",
        ),
        [
            (
                r["feature"],
                r["psi"],
                r["kl"],
                r["baseline"]["kl"],
                r["test"],
                r["statistic"],
                r["baseline"]["statistic"],
                _threshold(r),
                ", ".join(r["reasons"]) if r["drifted"] else "no",
            )
            for r in document["features"]
        ],
    )


def _threshold(result: dict[str, Any]) -> str:
    if result["test"] in ("ks", "chi2"):
        return f"p < {result['threshold']:g} (p = {cell(result['p_value'])})"
    return f"> {result['threshold']:g}"


def _feature_chart(page: Page, result: dict[str, Any], reference, current) -> None:
    names, ref_share, cur_share = _shares(result["kind"], reference, current)
    series = {"training snapshot": ref_share, "recent orders": cur_share}
    statistic = result["statistic"]
    title = (
        f"{result['feature']}: {result['test']} {cell(statistic)} "
        f"(threshold {_threshold(result)}), PSI {result['psi']:.3f}, KL {result['kl']:.3f}"
        + (f" → drift ({', '.join(result['reasons'])})" if result["drifted"] else "")
    )
    figure = charts.grouped(title, names, series, ytitle="share of rows")
    figure.update_layout(bargap=0.05, title_font_color="#b3261e" if result["drifted"] else None)
    page.chart(f"drift_{result['feature']}", figure, height=340)


def _shares(kind: str, reference, current) -> tuple[list[str], list[float], list[float]]:
    """Bins (numeric: equal widths over both samples' 1st-99th percentiles, the tails in the
    end bins) or categories, with missing values as a bin of their own; shares of rows."""
    import pandas as pd

    if kind == "numeric":
        ref = pd.to_numeric(reference).to_numpy(dtype=float, na_value=np.nan)
        cur = pd.to_numeric(current).to_numpy(dtype=float, na_value=np.nan)
        both = np.concatenate([ref[~np.isnan(ref)], cur[~np.isnan(cur)]])
        if both.size == 0:
            names, ref_counts, cur_counts = [], [], []
        else:
            low, high = np.quantile(both, [0.01, 0.99])
            distinct = np.unique(both)
            if len(distinct) <= BINS:
                edges = np.append(distinct, distinct[-1] + 1)
                names = [f"{v:g}" for v in distinct]
            else:
                edges = np.linspace(low, high if high > low else low + 1, BINS + 1)
                names = [f"{a:.3g}–{b:.3g}" for a, b in itertools.pairwise(edges)]
            ref_counts = _counts(ref, edges)
            cur_counts = _counts(cur, edges)
        names += ["missing"]
        ref_counts = [*ref_counts, int(np.isnan(ref).sum())]
        cur_counts = [*cur_counts, int(np.isnan(cur).sum())]
    else:
        ref_values = reference.astype(object).where(reference.notna(), "missing").astype(str)
        cur_values = current.astype(object).where(current.notna(), "missing").astype(str)
        names = sorted(set(ref_values) | set(cur_values))
        ref_counts = [int((ref_values == n).sum()) for n in names]
        cur_counts = [int((cur_values == n).sum()) for n in names]
    return names, _share(ref_counts), _share(cur_counts)


def _counts(values: np.ndarray, edges: np.ndarray) -> list[int]:
    present = values[~np.isnan(values)]
    clipped = np.clip(present, edges[0], np.nextafter(edges[-1], -np.inf))
    return [int(c) for c in np.histogram(clipped, bins=edges)[0]]


def _share(counts: list[int]) -> list[float]:
    total = sum(counts)
    return [c / total if total else 0.0 for c in counts]
