"""Alert rules from config `alerts.rules`, evaluated and recorded as they fire and resolve.

A rule reads `<metric> <op> <number>` with one of these metrics:

- `fraud_rate`: the share of scored orders in the last `duration` whose decision is
  BLOCKED or MANUAL_REVIEW, i.e. among the `fraud_predictions` rows created in the window;
  no data (nothing scored) is not firing.
- `failed_logins`: the most `security_events` of type failed_login from one source
  (address, else user) in the last `duration`: a brute force is one source trying.
- `kl_divergence`: the largest per-feature KL of the latest `mlkit drift check`.
- `training_failed`: how many models' latest finished training run failed (crashed) or
  was rejected (its version failed the validation gate and was not promoted).

Every rule is measured as of the clock (`toolkit.clock.utcnow()`, so `MLKIT_NOW` too):
`duration` is the window of the rate and count rules, counted back from it; the two state
rules ignore `duration` and read the latest drift check or finished training run at or
before it, holding until a newer one says otherwise. A rule that fires while it is already
firing updates that alert (value, last_seen_at) instead of adding one; one that stops
firing is resolved with its time. A webhook (off by default) hears of both transitions.
"""

from __future__ import annotations

import json
import logging
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .clock import utcnow
from .errors import MlkitError
from .fraud.columns import FLAGGED
from .locks import job_lock
from .schema import (
    alerts,
    drift_checks,
    drift_results,
    fraud_predictions,
    security_events,
    training_runs,
)

log = logging.getLogger(__name__)

FAILED_LOGIN_TYPES = ("failed_login", "login_failed")
OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}
_CONDITION = re.compile(
    r"\s*([A-Za-z_]\w*)\s*(>=|<=|==|!=|>|<)\s*(-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*"
)
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
WEBHOOK_TIMEOUT_SECONDS = 5
FINISHED_RUN_STATUSES = ("ok", "failed", "rejected")
UNSUCCESSFUL_RUN_STATUSES = ("failed", "rejected")


@dataclass(frozen=True)
class Rule:
    name: str
    condition: str
    metric: str
    op: str
    threshold: float
    duration: timedelta
    duration_text: str
    severity: str


@dataclass
class Measurement:
    value: float | None  # None: no data, never firing
    detail: str


def parse_duration(text: str, where: str) -> timedelta:
    match = _DURATION.fullmatch(str(text))
    if not match:
        raise MlkitError(f"{where}: cannot read duration {text!r}", hint="use 30s, 10m, 1h or 2d")
    amount = float(match.group(1))
    if amount <= 0:
        raise MlkitError(f"{where}: the duration must be positive (got {text!r})")
    return timedelta(**{_UNITS[match.group(2)]: amount})


def parse_rules(raw: list[dict[str, Any]]) -> list[Rule]:
    """The enabled rules, checked; a malformed or unknown one is an error naming it."""
    rules, names = [], set()
    for i, item in enumerate(raw or []):
        name = str(item.get("name", "")).strip()
        where = f"alerts.rules[{i}] ({name or 'unnamed'})"
        if not name or len(name) > 64:
            raise MlkitError(f"{where}: a rule needs a name of 1 to 64 characters")
        if name in names:
            raise MlkitError(f"{where}: another rule is also called {name!r}")
        names.add(name)
        enabled = item.get("enabled", True)
        if enabled is False or str(enabled).strip().lower() in ("false", "no", "off", "0"):
            continue
        condition = str(item.get("condition", ""))
        match = _CONDITION.fullmatch(condition)
        if not match:
            raise MlkitError(
                f"{where}: cannot read condition {condition!r}",
                hint="write `<metric> <op> <number>`, e.g. fraud_rate > 0.03",
            )
        metric, op, number = match.groups()
        if metric not in METRICS:
            raise MlkitError(
                f"{where}: unknown metric {metric!r}",
                hint=f"known metrics: {', '.join(METRICS)}; or set `enabled: false` on it",
            )
        duration_text = str(item.get("duration") or "1h")
        rules.append(
            Rule(
                name=name,
                condition=" ".join(condition.split()),
                metric=metric,
                op=op,
                threshold=float(number),
                duration=parse_duration(duration_text, where),
                duration_text=duration_text,
                severity=str(item.get("severity") or "medium")[:16],
            )
        )
    return rules


# ---------------------------------------------------------------- metrics


def _fraud_rate(conn: sa.Connection, rule: Rule, now: datetime) -> Measurement:
    p = fraud_predictions
    flagged = sa.func.sum(sa.case((p.c.decision.in_(FLAGGED), 1), else_=0))
    scored, hits = conn.execute(
        sa.select(sa.func.count(), flagged).where(
            p.c.created_at > now - rule.duration, p.c.created_at <= now
        )
    ).one()
    if not scored:
        return Measurement(None, f"no orders scored in the last {rule.duration_text}")
    rate = float(hits or 0) / scored
    return Measurement(
        rate,
        f"{int(hits or 0):,} of {scored:,} orders scored in the last {rule.duration_text} "
        f"BLOCKED or MANUAL_REVIEW ({rate:.2%})",
    )


def _failed_logins(conn: sa.Connection, rule: Rule, now: datetime) -> Measurement:
    e = security_events
    source = sa.func.coalesce(e.c.source_ip, e.c.user_id, "unknown").label("source")
    row = conn.execute(
        sa.select(source, sa.func.count().label("n"))
        .where(
            e.c.event_type.in_(FAILED_LOGIN_TYPES),
            e.c.created_at > now - rule.duration,
            e.c.created_at <= now,
        )
        .group_by(source)
        .order_by(sa.desc("n"))
        .limit(1)
    ).first()
    if row is None:
        return Measurement(0.0, f"no failed logins in the last {rule.duration_text}")
    return Measurement(
        float(row.n), f"{row.n} failed logins from {row.source} in the last {rule.duration_text}"
    )


def _kl_divergence(conn: sa.Connection, rule: Rule, now: datetime) -> Measurement:
    check = conn.execute(
        sa.select(drift_checks)
        .where(drift_checks.c.checked_at <= now)
        .order_by(drift_checks.c.check_id.desc())
        .limit(1)
    ).first()
    if check is None or check.max_kl is None:
        return Measurement(None, "no drift check yet (mlkit drift check)")
    feature = conn.execute(
        sa.select(drift_results.c.feature)
        .where(drift_results.c.check_id == check.check_id)
        .order_by(drift_results.c.drifted.desc(), drift_results.c.kl.desc())
        .limit(1)
    ).scalar()
    return Measurement(
        float(check.max_kl),
        f"KL {check.max_kl:.3f} on {feature} ({check.model_ref}, drift check "
        f"{check.check_id} at {check.checked_at:%Y-%m-%d %H:%M} UTC)",
    )


def _training_failed(conn: sa.Connection, rule: Rule, now: datetime) -> Measurement:
    t = training_runs
    # A run still going neither raises nor clears the alert: its predecessor decides.
    latest = (
        sa.select(t.c.model_name, sa.func.max(t.c.run_id).label("run_id"))
        .where(t.c.status.in_(FINISHED_RUN_STATUSES), t.c.started_at <= now)
        .group_by(t.c.model_name)
        .subquery()
    )
    failed = conn.execute(
        sa.select(t.c.model_name, t.c.status, t.c.last_error)
        .join(latest, t.c.run_id == latest.c.run_id)
        .where(t.c.status.in_(UNSUCCESSFUL_RUN_STATUSES))
        .order_by(t.c.model_name)
    ).all()
    if not failed:
        return Measurement(0.0, "every model's latest training run succeeded")
    first = failed[0]
    return Measurement(
        float(len(failed)),
        f"latest training failed or was rejected for "
        f"{', '.join(f'{r.model_name} ({r.status})' for r in failed)} "
        f"({first.model_name}: {first.last_error or 'no error recorded'})",
    )


# metric -> (the tables it reads, how it is measured)
METRICS: dict[str, tuple[tuple[str, ...], Callable[..., Measurement]]] = {
    "fraud_rate": (("fraud_predictions",), _fraud_rate),
    "failed_logins": (("security_events",), _failed_logins),
    "kl_divergence": (("drift_checks", "drift_results"), _kl_divergence),
    "training_failed": (("training_runs",), _training_failed),
}


def evaluate(engine: Engine, rules: list[Rule], now: datetime) -> list[dict[str, Any]]:
    """Each rule's value now and whether it fires; reads only, records nothing."""
    results = []
    with engine.connect() as conn:
        existing = set(sa.inspect(conn).get_table_names())
        for rule in rules:
            tables, measure = METRICS[rule.metric]
            missing = [t for t in tables if t not in existing]
            if missing:
                m = Measurement(None, f"no data: table {missing[0]} is missing (mlkit db init)")
            else:
                m = measure(conn, rule, now)
            firing = m.value is not None and OPERATORS[rule.op](m.value, rule.threshold)
            results.append(
                {
                    "rule": rule.name,
                    "condition": rule.condition,
                    "metric": rule.metric,
                    "severity": rule.severity,
                    "duration": rule.duration_text,
                    "value": m.value,
                    "threshold": rule.threshold,
                    "firing": firing,
                    "message": m.detail,
                }
            )
    return results


# ---------------------------------------------------------------- recording


def _record(engine: Engine, results: list[dict[str, Any]], now: datetime) -> dict[str, list]:
    """Open, refresh and resolve alert rows in one transaction; returns the transitions."""
    fired, resolved, ongoing = [], [], []
    by_rule = {r["rule"]: r for r in results}
    # One evaluation records at a time, so two checks at once never open the same alert twice.
    with job_lock(engine, "alerts"), engine.begin() as conn:
        open_rows = {
            row.rule: row
            for row in conn.execute(
                sa.select(alerts).where(alerts.c.status == "firing").order_by(alerts.c.alert_id)
            )
        }
        for result in results:
            row = open_rows.get(result["rule"])
            message = result["message"][:512]
            if result["firing"] and row is None:
                alert_id = conn.execute(
                    alerts.insert().values(
                        rule=result["rule"],
                        severity=result["severity"],
                        status="firing",
                        expression=result["condition"][:128],
                        value=result["value"],
                        threshold=result["threshold"],
                        message=message,
                        fired_at=now,
                        last_seen_at=now,
                    )
                ).inserted_primary_key[0]
                result["alert_id"], result["fired_at"] = int(alert_id), now
                fired.append(result)
            elif result["firing"]:
                conn.execute(
                    alerts.update()
                    .where(alerts.c.alert_id == row.alert_id)
                    .values(value=result["value"], message=message, last_seen_at=now,
                            severity=result["severity"], threshold=result["threshold"])
                )  # fmt: skip
                result["alert_id"], result["fired_at"] = int(row.alert_id), row.fired_at
                ongoing.append(result)
        # A rule that stopped firing, or left the config, resolves its open alert.
        for rule, row in open_rows.items():
            current = by_rule.get(rule)
            if current is not None and current["firing"]:
                continue
            conn.execute(
                alerts.update()
                .where(alerts.c.alert_id == row.alert_id)
                .values(status="resolved", resolved_at=now)
            )
            resolved.append(
                {
                    "alert_id": int(row.alert_id),
                    "rule": rule,
                    "severity": row.severity,
                    "value": current["value"] if current else None,
                    "threshold": row.threshold,
                    "message": current["message"] if current else "the rule is no longer set",
                    "fired_at": row.fired_at,
                    "resolved_at": now,
                }
            )
    return {"fired": fired, "ongoing": ongoing, "resolved": resolved}


def _post_webhook(url: str, payload: dict[str, Any]) -> str | None:
    """POST the transitions as JSON; returns a warning instead of raising."""
    import urllib.error
    import urllib.request

    body = json.dumps(payload, default=str).encode()
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_SECONDS) as response:
            if response.status >= 300:
                return f"webhook answered HTTP {response.status}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"webhook failed: {reason}"
    return None


def check_alerts(engine: Engine, config, *, now: datetime | None = None) -> dict[str, Any]:
    """Evaluate the configured rules, record what fired and resolved, notify the webhook."""
    rules = parse_rules(config.get("alerts.rules"))
    now = now or utcnow()
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table(alerts.name):
            raise MlkitError(
                "the alerts table is missing in this database",
                hint="create it with `mlkit db init`",
            )
    results = evaluate(engine, rules, now)
    transitions = _record(engine, results, now)
    warnings = []
    url = str(config.get("alerts.webhook_url") or "")
    notified = False
    if url and (transitions["fired"] or transitions["resolved"]):
        payload = {
            "source": "mlkit",
            "checked_at": now,
            "fired": [_public(r) for r in transitions["fired"]],
            "resolved": [_public(r) for r in transitions["resolved"]],
        }
        problem = _post_webhook(url, payload)
        if problem:
            warnings.append(problem)
            log.warning("alerts: %s", problem)
        notified = problem is None
    return {
        "checked_at": now,
        "rules": results,
        "firing": [r["rule"] for r in results if r["firing"]],
        "fired": [r["rule"] for r in transitions["fired"]],
        "resolved": [r["rule"] for r in transitions["resolved"]],
        "webhook_notified": notified,
        "warnings": warnings,
    }


def _public(result: dict[str, Any]) -> dict[str, Any]:
    keys = ("alert_id", "rule", "severity", "value", "threshold", "message", "fired_at",
            "resolved_at")  # fmt: skip
    return {k: result.get(k) for k in keys}


# ---------------------------------------------------------------- queries


def firing_alerts(engine: Engine, limit: int = 10) -> list[dict[str, Any]]:
    """The alerts firing now, newest first: rule, severity, value, threshold, message,
    fired_at (a naive UTC datetime). [] while the alerts table does not exist."""
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table(alerts.name):
            return []
        rows = conn.execute(
            sa.select(
                alerts.c.rule,
                alerts.c.severity,
                alerts.c.value,
                alerts.c.threshold,
                alerts.c.message,
                alerts.c.fired_at,
            )
            .where(alerts.c.status == "firing")
            .order_by(alerts.c.fired_at.desc(), alerts.c.alert_id.desc())
            .limit(max(int(limit), 0))
        ).all()
    return [row._asdict() for row in rows]


def alert_history(engine: Engine, limit: int = 50) -> list[dict[str, Any]]:
    """Recorded alerts, firing and resolved, newest first."""
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table(alerts.name):
            return []
        rows = conn.execute(
            sa.select(alerts).order_by(alerts.c.alert_id.desc()).limit(max(int(limit), 0))
        ).all()
    return [row._asdict() for row in rows]
