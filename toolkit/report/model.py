"""`mlkit report model REF`: one version's page: the gate's verdict, its metrics beside the
baselines and the oracle, and the charts its family allows."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import charts
from .page import Page, flatten, reports_dir, safe_name, write_page

# The figure a family is judged by when a version records no gate.
HEADLINE = {
    "fraud": "auc_pr",
    "signal": "accuracy",
    "recommender": "hit_rate_at_10",
    "pricing": "policy_replay_reward",
}


@dataclass(frozen=True)
class Report:
    """A written report: where, and the names of the charts it draws."""

    path: Path
    charts: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "charts": list(self.charts)}


def write_model_report(engine, config, ref: str, *, out: Path | None = None) -> Report:
    """Build the report of the version `ref` names and write it to `out` (default: the
    database's reports folder); the artifact is verified before anything is loaded."""
    from ..registry import read_artifact, resolve

    mv = resolve(engine, ref)
    artifact = read_artifact(mv, config.artifacts_dir)  # refuses a tampered artifact
    page = Page(f"{mv.ref} · {mv.family} model report")
    _overview(page, mv)
    verdict_section(page, mv)
    if mv.family == "fraud":
        from .fraud import fraud_sections

        fraud_sections(page, engine, config, mv, artifact)
    else:
        from .families import FAMILY_SECTIONS

        section = FAMILY_SECTIONS.get(mv.family)
        if section is not None:
            section(page, config, mv, artifact)
    _all_values(page, mv)
    subtitle = f"{ref} → {mv.ref}, artifact sha256 {mv.sha256[:12]}… verified"
    target = out or reports_dir(config, engine) / f"{safe_name(ref)}.html"
    return Report(write_page(page.render(subtitle), target), page.charts)


def _overview(page: Page, mv) -> None:
    page.heading("Version")
    page.pairs(
        {
            "model": mv.ref,
            "family": mv.family,
            "aliases": ", ".join(mv.aliases) or "-",
            "created (UTC)": mv.created_at,
            "dataset": mv.dataset_ref or "-",
            "features": len(mv.features),
        }
    )


def verdict_section(page: Page, mv) -> None:
    """The promotion gate's verdict and the figures it compared, or the plain statement
    that the version has none."""
    from ..gate import stored_verdict

    verdict = stored_verdict(mv.metrics)
    metric = (verdict or {}).get("metric") or HEADLINE.get(mv.family)
    page.heading("Promotion gate")
    if verdict is None:
        page.text(
            "no baseline verdict: this version was registered without the promotion gate's "
            "comparison (trained before gates recorded one)",
            "fail",
        )
    else:
        passed = bool(verdict.get("passed"))
        page.text(
            f"{'passed' if passed else 'failed'}: {metric} judged over "
            f"{verdict.get('rounds', '?')} bootstrap rounds ({verdict.get('unit', 'row')}s, "
            f"blocks of {verdict.get('block', 1)}), {verdict.get('level', 0.9):.0%} intervals",
            "pass" if passed else "fail",
        )
        for reason in verdict.get("reasons") or []:
            page.warning(reason)
        _comparisons(page, verdict, metric)
    _against_references(page, mv, verdict, metric)


def _comparisons(page: Page, verdict: Mapping, metric: str) -> None:
    rows = []
    for role in ("best", "prod"):
        c = verdict.get(role)
        if isinstance(c, Mapping):
            low, high = c["interval"]
            label = f"vs {c['reference']}" + (" (serving)" if role == "prod" else "")
            rows.append((label, float(c["margin"]), float(low), float(high), c["value"]))
    if not rows:
        page.text("the gate had no reference to compare with")
        return
    page.table(
        ("comparison", f"{metric} of the reference", "margin", "interval low", "interval high"),
        [(r[0], r[4], r[1], r[2], r[3]) for r in rows],
    )
    page.chart(
        "gate_margins",
        charts.margins(
            f"Margin of the model's {metric} with its interval",
            [r[:4] for r in rows],
            f"model minus reference ({metric})",
        ),
        height=200 + 40 * len(rows),
        note="A candidate serves only when its margin's interval lies right of zero against "
        "the best baseline, and is not left of zero against the serving version.",
    )


def _against_references(page: Page, mv, verdict: Mapping | None, metric: str | None) -> None:
    """The model's figure beside each baseline and the oracle (bars), plus every other
    figure the baselines record (grouped bars)."""
    metrics = mv.metrics or {}
    baselines = dict((verdict or {}).get("baselines") or {})
    for name, value in (metrics.get("baselines") or {}).items():
        baselines.setdefault(name, value)
    scalar = {n: float(v) for n, v in baselines.items() if _is_number(v)}
    nested = {n: v for n, v in baselines.items() if isinstance(v, Mapping)}
    model_value = (verdict or {}).get("model", metrics.get(metric or ""))
    oracle = metrics.get(f"oracle_{metric}")
    if metric and _is_number(model_value) and (scalar or _is_number(oracle)):
        names = ["model", *scalar, *(["oracle"] if _is_number(oracle) else [])]
        values = [float(model_value), *scalar.values()]
        values += [float(oracle)] if _is_number(oracle) else []
        page.chart(
            "vs_baselines",
            charts.bars(
                f"{metric}: the model beside its baselines"
                + (" and the oracle" if _is_number(oracle) else ""),
                names,
                values,
                colors=charts.reference_colors(names),
                ytitle=metric,
            ),
        )
    elif not baselines:
        page.text("no baseline figures are recorded for this version")
    if nested:
        keys = sorted({k for v in nested.values() for k, x in v.items() if _is_number(x)})
        keys = [k for k in keys if _is_number(metrics.get(k))]
        if keys:
            series = {"model": [float(metrics[k]) for k in keys]}
            series |= {n: [_number(v.get(k)) for k in keys] for n, v in nested.items()}
            page.chart(
                "baseline_figures",
                charts.grouped("Every figure beside each baseline", keys, series),
            )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number(value: Any) -> float | None:
    return float(value) if _is_number(value) else None


def _all_values(page: Page, mv) -> None:
    metrics = {k: v for k, v in (mv.metrics or {}).items() if k not in ("gate",)}
    page.heading("All recorded metrics")
    page.pairs(flatten(metrics))
    if mv.params:
        page.heading("Parameters")
        page.pairs(flatten(mv.params))
