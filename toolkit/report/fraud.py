"""The fraud part of a model report: the version's own snapshot re-split as in training, its
test orders re-scored by the verified artifact, and the charts those scores allow."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import MlkitError
from . import charts
from .page import Page

TOP_ORDERS = 5  # orders whose per-feature contributions are drawn
CURVE_POINTS = 400  # at most this many points per curve, so the page stays small
CALIBRATION_BINS = 10


@dataclass
class Holdout:
    """The snapshot's rows, its test split and the test orders' scores."""

    frame: object  # pandas.DataFrame
    test: object  # pandas.DataFrame
    labels: np.ndarray
    scores: np.ndarray
    truth: np.ndarray | None  # the demo generator's probabilities, where known


def fraud_sections(page: Page, engine, config, mv, artifact: bytes) -> None:
    """Every fraud chart, from the artifact bytes the caller verified against the registry."""
    from ..fraud.model import load_model

    model = load_model(artifact, mv.params)
    holdout = _rescore(page, engine, config, mv, model)
    if holdout is None:
        return
    _curves(page, holdout)
    _calibration(page, holdout)
    _decisions(page, config, mv, holdout)
    _importances(page, model, holdout)
    _data_summary(page, mv, holdout)


def _rescore(page: Page, engine, config, mv, model) -> Holdout | None:
    """The test split rebuilt from `mv.dataset_ref` as training split it, and its scores;
    None (said on the page) when the snapshot is gone."""
    from ..demo.truth import fraud_probabilities
    from ..fraud.train import load_dataset, time_split

    page.heading("Test orders, re-scored")
    if not mv.dataset_ref or not Path(mv.dataset_ref).exists():
        page.warning(
            f"the training snapshot {mv.dataset_ref or '(none recorded)'} is not on this "
            "machine: curves, calibration and decisions need its test orders"
        )
        return None
    try:
        frame, _ = load_dataset(Path(mv.dataset_ref))
        split = time_split(frame, float(config.get("fraud.label_delay_days")))
    except MlkitError as exc:
        page.warning(f"the training snapshot cannot be re-split: {exc.message}")
        return None
    test = split.test.reset_index(drop=True)
    labels = test["label"].to_numpy().astype(int)
    scores = np.asarray(model.predict_proba(test), dtype=float)
    truth_frame = fraud_probabilities(engine, test["order_id"])
    truth = None
    if truth_frame is not None:
        joined = test[["order_id"]].merge(truth_frame, on="order_id", how="left")
        if joined["fraud_probability"].notna().all():
            truth = joined["fraud_probability"].to_numpy(dtype=float)
    _check_same_holdout(page, mv, labels, scores)
    page.text(
        f"{len(test):,} test orders from {test['event_ts'].min():%Y-%m-%d %H:%M} to "
        f"{test['event_ts'].max():%Y-%m-%d %H:%M}, {int(labels.sum()):,} of them fraud, "
        f"re-split from {mv.dataset_ref} and scored by the verified artifact."
    )
    return Holdout(frame, test, labels, scores, truth)


def _check_same_holdout(page: Page, mv, labels: np.ndarray, scores: np.ndarray) -> None:
    """Say so when the re-scored orders are not the ones training measured (another
    label delay in the config, an edited snapshot)."""
    from sklearn.metrics import average_precision_score

    recorded = (mv.metrics.get("split") or {}).get("test", {}).get("rows")
    if recorded is not None and recorded != len(labels):
        page.warning(
            f"training measured {recorded:,} test orders, this re-split has {len(labels):,}: "
            "the config's fraud.label_delay_days or the snapshot changed since"
        )
    stored = mv.metrics.get("auc_pr")
    if stored is not None and labels.any():
        now = float(average_precision_score(labels, scores))
        if abs(now - float(stored)) > 1e-6:
            page.warning(f"re-scored AUC-PR {now:.4f} differs from the recorded {stored:.4f}")


def _thin(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if len(x) <= CURVE_POINTS:
        return x, y
    keep = np.unique(np.linspace(0, len(x) - 1, CURVE_POINTS).round().astype(int))
    return x[keep], y[keep]


def _curves(page: Page, h: Holdout) -> None:
    from sklearn.metrics import (
        average_precision_score,
        precision_recall_curve,
        roc_auc_score,
        roc_curve,
    )

    pr, roc = {}, {}
    for name, scores in (("model", h.scores), ("oracle (true probability)", h.truth)):
        if scores is None:
            continue
        precision, recall, _ = precision_recall_curve(h.labels, scores)
        ap = average_precision_score(h.labels, scores)
        pr[f"{name}: AUC-PR {ap:.3f}"] = _thin(recall, precision)
        fpr, tpr, _ = roc_curve(h.labels, scores)
        roc[f"{name}: AUC-ROC {roc_auc_score(h.labels, scores):.3f}"] = _thin(fpr, tpr)
    prevalence = float(h.labels.mean())
    pr[f"no skill: {prevalence:.3f}"] = (np.array([0.0, 1.0]), np.array([prevalence] * 2))
    page.heading("Precision-recall and ROC")
    page.chart(
        "pr_curve",
        charts.lines(
            "Precision-recall on the test orders", pr, xtitle="recall", ytitle="precision"
        ),
        note="The oracle scores each order with the probability the demo generator drew its "
        "label from: the best any model could do (shown on demo databases only).",
    )
    page.chart(
        "roc_curve",
        charts.lines(
            "ROC on the test orders",
            roc,
            xtitle="false positive rate",
            ytitle="true positive rate",
            diagonal=True,
        ),
    )


def _calibration(page: Page, h: Holdout) -> None:
    """Reliability: the fraud share in each score bin (equal numbers of orders) against the
    bin's mean score; a calibrated model lies on the diagonal."""
    import plotly.graph_objects as go

    order = np.argsort(h.scores, kind="stable")
    bins = [b for b in np.array_split(order, CALIBRATION_BINS) if len(b)]
    predicted = [float(h.scores[b].mean()) for b in bins]
    observed = [float(h.labels[b].mean()) for b in bins]
    sizes = [len(b) for b in bins]
    figure = go.Figure(
        [
            go.Scatter(
                x=predicted,
                y=observed,
                mode="lines+markers",
                name="model",
                text=[f"{n:,} orders" for n in sizes],
            ),
            go.Scatter(
                x=[0, max(predicted + observed)],
                y=[0, max(predicted + observed)],
                mode="lines",
                name="perfectly calibrated",
                line={"dash": "dot", "color": "#999"},
            ),
        ]
    )
    figure.update_layout(
        title="Calibration (reliability) on the test orders",
        xaxis_title="mean predicted fraud probability in the bin",
        yaxis_title="observed fraud share in the bin",
    )
    brier = float(np.mean((h.scores - h.labels) ** 2))
    page.heading("Calibration")
    page.chart(
        "calibration",
        figure,
        note=f"{len(bins)} bins of equal order counts; Brier score {brier:.4f}.",
    )


def _decisions(page: Page, config, mv, h: Holdout) -> None:
    """Orders by true label and decision at the configured thresholds, and each threshold's
    confusion matrix (flagged at or above it)."""
    from ..fraud.columns import DECISIONS
    from ..fraud.scoring import Thresholds

    thresholds = Thresholds.from_config(config)
    decided = thresholds.decide(h.scores)
    matrix = [[int(((h.labels == k) & (decided == d)).sum()) for d in DECISIONS] for k in (0, 1)]
    page.heading("Decisions at the configured thresholds")
    page.chart(
        "decisions",
        charts.heatmap(
            "Test orders by true label and decision",
            matrix,
            DECISIONS,
            ["legit", "fraud"],
            xtitle="decision",
            ytitle="true label",
        ),
        height=340,
    )
    cuts = {
        "REQUIRE_2FA and above": thresholds.two_factor,
        "MANUAL_REVIEW and above": thresholds.review,
        "BLOCKED": thresholds.block,
    }
    if isinstance(mv.metrics.get("threshold"), float):
        cuts["best F1 on validation"] = mv.metrics["threshold"]
    rows = []
    for name, cut in cuts.items():
        flagged = h.scores >= cut
        tp = int((flagged & (h.labels == 1)).sum())
        fp = int((flagged & (h.labels == 0)).sum())
        fn = int((~flagged & (h.labels == 1)).sum())
        tn = int((~flagged & (h.labels == 0)).sum())
        precision = tp / (tp + fp) if tp + fp else None
        rows.append(
            (name, cut, tn, fp, fn, tp, precision, tp / max(tp + fn, 1), fp / max(fp + tn, 1))
        )
    page.table(
        ("flagged when", "score ≥", "TN", "FP", "FN", "TP", "precision", "recall", "FP rate"),
        rows,
    )


def _importances(page: Page, model, h: Holdout) -> None:
    """Gain (XGBoost) or standardised coefficients (logistic regression), and the
    per-feature contributions to the highest-scored test orders."""
    names, importance, what = model.importances()
    order = np.argsort(-np.abs(importance), kind="stable")
    page.heading("Feature importances")
    page.chart(
        "importances",
        charts.bars(
            f"Feature importance ({what})",
            [names[i] for i in order],
            [float(importance[i]) for i in order],
            horizontal=True,
            ytitle=what,
        ),
        height=max(360, 22 * len(names)),
    )
    top = np.argsort(-h.scores, kind="stable")[:TOP_ORDERS]
    rows = h.test.iloc[top]
    feature_names, contributions, unit = model.contributions(rows)
    strongest = np.argsort(-np.abs(contributions).max(axis=0), kind="stable")[:12]
    series = {
        f"order {rows['order_id'].iloc[i]} (score {h.scores[top[i]]:.3f}, "
        f"{'fraud' if h.labels[top[i]] else 'legit'})": [
            float(contributions[i, j]) for j in strongest
        ]
        for i in range(len(rows))
    }
    figure = charts.grouped(
        f"What drove the {len(rows)} highest-scored test orders",
        [feature_names[j] for j in strongest],
        series,
        ytitle=f"contribution ({unit})",
    )
    page.chart(
        "contributions",
        figure,
        height=460,
        note=f"Each bar is one feature's push on one order's score, in {unit}; positive "
        "pushes towards fraud. The largest twelve features over these orders are shown.",
    )


def _data_summary(page: Page, mv, h: Holdout) -> None:
    from ..fraud.columns import FEATURES

    frame = h.frame
    page.heading("Training data")
    page.pairs(
        {
            "snapshot": mv.dataset_ref,
            "rows": len(frame),
            "fraud labels": int(frame["label"].sum()),
            "fraud share": float(frame["label"].mean()),
            "first order": frame["event_ts"].min().to_pydatetime(),
            "last order": frame["event_ts"].max().to_pydatetime(),
        }
    )
    split = mv.metrics.get("split") or {}
    parts = [p for p in ("train", "valid", "test") if isinstance(split.get(p), dict)]
    if parts:
        page.table(
            ("part", "rows", "fraud", "from", "to"),
            [
                (p, split[p]["rows"], split[p]["positives"], split[p]["start"], split[p]["end"])
                for p in parts
            ],
        )
    missing = frame[list(FEATURES)].isna().mean()
    page.chart(
        "missing_share",
        charts.bars(
            "Share of missing values per feature (whole snapshot)",
            list(missing.index),
            [float(v) for v in missing.to_numpy()],
            horizontal=True,
            ytitle="missing share",
            text=[f"{v:.1%}" for v in missing.to_numpy()],
        ),
        height=max(360, 22 * len(missing)),
        note="Missing values are meaningful for some features (no earlier resale, no "
        "previous order); XGBoost splits on them, the logistic regression imputes them.",
    )
