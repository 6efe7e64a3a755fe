"""The signal, pricing and recommender parts of a model report: the charts their metrics
and verified artifacts allow."""

from __future__ import annotations

import json
from collections.abc import Mapping

from . import charts
from .page import Page

BANDIT_LEVEL = 0.90  # the arms' posterior intervals


def signal_sections(page: Page, config, mv, artifact: bytes) -> None:
    """Per-class scores, per-fold figures, the confusion matrix when recorded, the backtest
    and CatBoost's feature importances."""
    from ..signal.model import load_signal_model

    metrics = mv.metrics or {}
    page.heading("Walk-forward evaluation")
    per_class = metrics.get("per_class") or {}
    if per_class:
        classes = list(per_class)
        page.chart(
            "per_class",
            charts.grouped(
                "Precision, recall and F1 per class on the walk-forward test bars",
                classes,
                {
                    k: [float(per_class[c][k]) for c in classes]
                    for k in ("precision", "recall", "f1")
                },
            ),
        )
    _folds(page, metrics.get("folds") or [])
    matrix = metrics.get("confusion_matrix")
    if isinstance(matrix, list) and matrix and all(isinstance(r, list) for r in matrix):
        classes = list(per_class) or [str(i) for i in range(len(matrix))]
        page.chart(
            "confusion_matrix",
            charts.heatmap(
                "Confusion matrix (walk-forward test bars)",
                matrix,
                classes,
                classes,
                xtitle="predicted",
                ytitle="true",
            ),
            height=380,
        )
    backtest = {
        name: float(values["return"])
        for name, values in (metrics.get("backtest") or {}).items()
        if isinstance(values, Mapping) and isinstance(values.get("return"), int | float)
    }
    if backtest:
        page.chart(
            "backtest",
            charts.bars(
                "Backtest return on the test bars",
                list(backtest),
                list(backtest.values()),
                colors=charts.reference_colors(["model" if n == "model" else n for n in backtest]),
                text=[f"{v:+.2%}" for v in backtest.values()],
                ytitle="return",
            ),
        )
    model = load_signal_model(mv, config.artifacts_dir)
    importance = [float(v) for v in model.get_feature_importance()]
    names = list(mv.features) if len(mv.features) == len(importance) else model.feature_names_
    order = sorted(range(len(importance)), key=lambda i: -importance[i])
    page.heading("Feature importances")
    page.chart(
        "importances",
        charts.bars(
            "CatBoost feature importance (prediction value change)",
            [names[i] for i in order],
            [importance[i] for i in order],
            horizontal=True,
            ytitle="importance",
        ),
        height=max(320, 24 * len(order)),
    )


def _folds(page: Page, folds: list) -> None:
    """Per-fold accuracy where the folds record it, else their sizes."""
    folds = [f for f in folds if isinstance(f, Mapping)]
    if not folds:
        return
    names = [f"fold {i + 1}" for i in range(len(folds))]
    scored = [k for k in ("accuracy", "macro_f1") if all(k in f for f in folds)]
    if scored:
        series = {k: [float(f[k]) for f in folds] for k in scored}
        for key in sorted({k for f in folds for k in f if k.endswith("_accuracy")}):
            series[key] = [float(f.get(key, float("nan"))) for f in folds]
        page.chart("folds", charts.grouped("Accuracy per walk-forward fold", names, series))
        return
    page.chart(
        "folds",
        charts.grouped(
            "Rows per walk-forward fold (this version records no per-fold accuracy)",
            names,
            {k: [float(f.get(k, 0)) for f in folds] for k in ("train_rows", "test_rows")},
            ytitle="bars",
        ),
    )


def pricing_sections(page: Page, config, mv, artifact: bytes) -> None:
    """Each arm's pulls, its mean reward with the Beta(1 + rewards, 1 + misses) posterior's
    interval, and per event type where the bandit keeps contexts."""
    document = json.loads(artifact)
    arms = document.get("arms") or {}
    names = list(arms)
    page.heading("Arms")
    page.chart(
        "arm_pulls",
        charts.bars(
            "Pulls per arm", names, [float(arms[a]["pulls"]) for a in names], ytitle="pulls"
        ),
    )
    means, low, high = _arm_intervals([arms[a] for a in names])
    truth = (mv.metrics or {}).get("oracle_best_arm")
    page.chart(
        "arm_means",
        charts.bars(
            "Mean normalised reward per arm",
            names,
            means,
            errors=(low, high),
            ytitle="mean reward",
            colors=[charts.ORACLE_COLOR if a == truth else charts.MODEL_COLOR for a in names],
        ),
        note=f"Error bars: the arm's Beta posterior {BANDIT_LEVEL:.0%} interval."
        + (f" Green: the demo world's truly best arm ({truth})." if truth else ""),
    )
    contexts = {k: v for k, v in (document.get("contexts") or {}).items() if isinstance(v, Mapping)}
    if contexts:
        page.chart(
            "context_means",
            charts.grouped(
                "Mean normalised reward per arm, by event type",
                names,
                {c: _arm_intervals([t[a] for a in names])[0] for c, t in contexts.items()},
                ytitle="mean reward",
            ),
        )
    per_arm = {
        key: (mv.metrics or {}).get(key) for key in ("conversion", "revenue_ratio", "mean_reward")
    }
    per_arm = {k: v for k, v in per_arm.items() if isinstance(v, Mapping)}
    if per_arm:
        page.chart(
            "arm_figures",
            charts.grouped(
                "Logged figures per arm",
                names,
                {k: [float(v.get(a) or 0.0) for a in names] for k, v in per_arm.items()},
            ),
        )


def _arm_intervals(states: list[Mapping]) -> tuple[list[float], list[float], list[float]]:
    """Means, and the distances below and above them to the posterior interval's ends."""
    from ..pricing.posterior import posterior_interval

    pulls = [float(state["pulls"]) for state in states]
    rewards = [float(state["reward_sum"]) for state in states]
    intervals = posterior_interval(pulls, rewards, BANDIT_LEVEL)
    means, low, high = [], [], []
    for n, r, (lo, hi) in zip(pulls, rewards, intervals, strict=True):
        mean = r / n if n else 0.0
        means.append(mean)
        low.append(max(mean - lo, 0.0))
        high.append(max(hi - mean, 0.0))
    return means, low, high


def recommender_sections(page: Page, config, mv, artifact: bytes) -> None:
    """Every ranking figure of the model beside the popularity reference it records."""
    metrics = mv.metrics or {}
    at_k = sorted(k for k, v in metrics.items() if "_at_" in k and isinstance(v, int | float))
    own = [k for k in at_k if not any(k.startswith(f"{p}_") for p in _prefixes(at_k))]
    if not own:
        return
    series = {"model": [float(metrics[k]) for k in own]}
    for prefix in _prefixes(at_k):
        series[prefix] = [float(metrics.get(f"{prefix}_{k}", float("nan"))) for k in own]
    page.heading("Ranking on the holdout")
    page.chart("ranking", charts.grouped("Ranking figures beside the references", own, series))


def _prefixes(keys: list[str]) -> list[str]:
    """`popular` of `popular_hit_rate_at_10` when `hit_rate_at_10` is also a key."""
    return sorted({k.split("_", 1)[0] for k in keys if "_" in k and k.split("_", 1)[1] in keys})


FAMILY_SECTIONS = {
    "signal": signal_sections,
    "pricing": pricing_sections,
    "recommender": recommender_sections,
}
