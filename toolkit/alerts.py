"""Alert rules from config `alerts.rules` (`<metric> <op> <number>`), measured as of the clock and
recorded as they fire and resolve.

A rule that keeps firing updates its open alert rather than adding one. Each change queues a webhook
notification in the same transaction, delivered oldest first, so the webhook hears every transition
in order and never fails a check.
"""

from __future__ import annotations

import json
import logging
import operator
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .clock import utcnow
from .config import check_webhook_url, mask_webhook_url, webhook_secrets
from .errors import MlkitError
from .fraud.columns import FLAGGED
from .locks import job_lock
from .schema import (
    alert_notifications,
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
WEBHOOK_TRIES = 3  # per notification and run
WEBHOOK_BACKOFF_SECONDS = (0.5, 1.5)  # the pause before the 2nd and the 3rd try
WEBHOOK_TRY_TIMEOUT_SECONDS = 2.0
WEBHOOK_BUDGET_SECONDS = 5.0  # all the webhook's tries of one run together
FINISHED_RUN_STATUSES = ("ok", "failed", "rejected")


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


# The share of orders scored in the window flagged BLOCKED or MANUAL_REVIEW; none scored: no value.
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


# The most failed logins from one source (address, else user): a brute force is one source trying.
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


# The largest per-feature KL of the latest drift check; a state rule: `duration` is ignored.
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


# Models whose latest finished run failed; a state rule: `duration` is ignored.
def _training_failed(conn: sa.Connection, rule: Rule, now: datetime) -> Measurement:
    return _latest_runs_with(conn, now, ("failed",), "failed")


# Models whose latest finished run trained a version its gate kept from serving (the previous
# version serves on): worth a look when it lasts, not a failure, so no default rule uses it.
def _training_rejected(conn: sa.Connection, rule: Rule, now: datetime) -> Measurement:
    return _latest_runs_with(conn, now, ("rejected",), "was rejected")


def _latest_runs_with(
    conn: sa.Connection, now: datetime, statuses: tuple[str, ...], verb: str
) -> Measurement:
    """How many models' latest finished run (as of `now`) ended in one of `statuses`."""
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
        .where(t.c.status.in_(statuses))
        .order_by(t.c.model_name)
    ).all()
    if not failed:
        return Measurement(0.0, f"no model's latest training run {verb}")
    first = failed[0]
    return Measurement(
        float(len(failed)),
        f"latest training {verb} for "
        f"{', '.join(f'{r.model_name} ({r.status})' for r in failed)} "
        f"({first.model_name}: {first.last_error or 'no error recorded'})",
    )


# metric -> (the tables it reads, how it is measured)
METRICS: dict[str, tuple[tuple[str, ...], Callable[..., Measurement]]] = {
    "fraud_rate": (("fraud_predictions",), _fraud_rate),
    "failed_logins": (("security_events",), _failed_logins),
    "kl_divergence": (("drift_checks", "drift_results"), _kl_divergence),
    "training_failed": (("training_runs",), _training_failed),
    "training_rejected": (("training_runs",), _training_rejected),
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


def _record(
    engine: Engine, results: list[dict[str, Any]], now: datetime, *, notify: bool
) -> tuple[dict[str, list], int | None]:
    """Open, refresh and resolve alert rows in one transaction, with the webhook's
    notification of them when `notify`; returns the transitions and the notification id."""
    fired, resolved, ongoing = [], [], []
    by_rule = {r["rule"]: r for r in results}
    with engine.begin() as conn:
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
                    .values(
                        value=result["value"],
                        message=message,
                        last_seen_at=now,
                        severity=result["severity"],
                        threshold=result["threshold"],
                    )
                )
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
        notification_id = None
        if notify and (fired or resolved):
            payload = {
                "source": "mlkit",
                "checked_at": now,
                "fired": [_public(r) for r in fired],
                "resolved": [_public(r) for r in resolved],
            }
            notification_id = conn.execute(
                alert_notifications.insert().values(
                    payload=json.dumps(payload, default=str), queued_at=now, attempts=0
                )
            ).inserted_primary_key[0]
    transitions = {"fired": fired, "ongoing": ongoing, "resolved": resolved}
    return transitions, None if notification_id is None else int(notification_id)


def _post(url: str, body: bytes, timeout: float) -> tuple[str | None, bool]:
    """POST the body once: (None, False) when a 2xx took it, else (what went wrong,
    whether another try may help)."""
    import base64
    import http.client
    import urllib.error
    import urllib.request
    from urllib.parse import unquote, urlsplit, urlunsplit

    class StayOnTarget(urllib.request.HTTPRedirectHandler):
        # A redirect is an answer, not a delivery: the body never goes anywhere else.
        def redirect_request(self, *args, **kwargs):
            return None

    headers = {"Content-Type": "application/json", "User-Agent": "mlkit-alerts"}
    parts = urlsplit(url)
    if "@" in parts.netloc:
        # urllib would take the user info for part of the host: it goes as Basic auth.
        credentials = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode()
        url = urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.build_opener(StayOnTarget).open(request, timeout=timeout) as reply:
            status = reply.status
    except urllib.error.HTTPError as exc:
        status = exc.code
        exc.close()
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        return str(getattr(exc, "reason", exc)) or type(exc).__name__, True
    if 200 <= status < 300:
        return None, False
    return f"HTTP {status}", status >= 500 or status in (408, 429)


def _send(url: str, body: bytes, deadline: float) -> tuple[bool, str | None, int]:
    """Try one notification with backoff until delivered, out of tries or past the
    deadline: (delivered, the last error, tries made)."""
    error, tries = None, 0
    for attempt in range(WEBHOOK_TRIES):
        if attempt:
            pause = WEBHOOK_BACKOFF_SECONDS[min(attempt, len(WEBHOOK_BACKOFF_SECONDS)) - 1]
            if time.monotonic() + pause >= deadline:
                break
            time.sleep(pause)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        error, retryable = _post(url, body, min(WEBHOOK_TRY_TIMEOUT_SECONDS, remaining))
        tries += 1
        if error is None:
            return True, None, tries
        log.debug("alerts: webhook try %d failed: %s", tries, _scrub(error, url))
        if not retryable:
            break
    return False, error, tries


def _scrub(text: str, url: str) -> str:
    """The text with the webhook URL masked and its secrets hidden wherever they appear."""
    text = text.replace(url, mask_webhook_url(url))
    for secret in webhook_secrets(url):
        text = text.replace(secret, "***")
    return text


def _deliver_queued(engine: Engine, url: str) -> dict[str, Any]:
    """Deliver the queued notifications oldest first within the run's budget; stop at the
    first that fails, so the webhook always hears them in order."""
    n = alert_notifications
    deadline = time.monotonic() + WEBHOOK_BUDGET_SECONDS
    with engine.connect() as conn:
        pending = conn.execute(
            sa.select(n.c.notification_id, n.c.payload, n.c.last_error)
            .where(n.c.delivered_at.is_(None))
            .order_by(n.c.notification_id)
        ).all()
    delivered: list[int] = []
    last_error = pending[0].last_error if pending else None
    for row in pending:
        body = json.dumps({"notification_id": int(row.notification_id), **json.loads(row.payload)})
        ok, error, tries = _send(url, body.encode(), deadline)
        if tries:
            error = None if ok else _scrub(error or "failed", url)[:512]
            with engine.begin() as conn:
                conn.execute(
                    n.update()
                    .where(n.c.notification_id == row.notification_id)
                    .values(
                        attempts=n.c.attempts + tries,
                        last_attempt_at=utcnow(),
                        last_error=error,
                        delivered_at=utcnow() if ok else None,
                    )
                )
        if not ok:
            last_error = error or last_error
            break
        delivered.append(int(row.notification_id))
        last_error = None
    return {
        "url": mask_webhook_url(url),
        "delivered": delivered,
        "queued": len(pending) - len(delivered),
        "last_error": last_error,
    }


def _queued_without_url(engine: Engine) -> dict[str, Any]:
    """What waits in the queue while no webhook is set (it left the config)."""
    n = alert_notifications
    with engine.connect() as conn:
        queued = 0
        if sa.inspect(conn).has_table(n.name):
            queued = conn.execute(
                sa.select(sa.func.count()).where(n.c.delivered_at.is_(None))
            ).scalar_one()
    return {"url": None, "delivered": [], "queued": int(queued), "last_error": None}


def check_alerts(engine: Engine, config, *, now: datetime | None = None) -> dict[str, Any]:
    """Evaluate the configured rules, record what fired and resolved, notify the webhook."""
    rules = parse_rules(config.get("alerts.rules"))
    url = str(config.get("alerts.webhook_url") or "")
    if url:
        check_webhook_url(url)
    now = now or utcnow()
    needed = [alerts.name] + ([alert_notifications.name] if url else [])
    with engine.connect() as conn:
        existing = set(sa.inspect(conn).get_table_names())
    missing = [name for name in needed if name not in existing]
    if missing:
        raise MlkitError(
            f"the {missing[0]} table is missing in this database",
            hint="create it with `mlkit db init` (it adds missing tables, keeps the rest)",
        )
    results = evaluate(engine, rules, now)
    # One check records and delivers at a time: two at once never open the same alert twice
    # nor send one notification twice.
    with job_lock(engine, "alerts"):
        transitions, notification_id = _record(engine, results, now, notify=bool(url))
        webhook = _deliver_queued(engine, url) if url else _queued_without_url(engine)
    warnings = []
    if webhook["queued"]:
        if not url:
            problem = f"webhook: {webhook['queued']} queued, alerts.webhook_url is not set"
        elif webhook["last_error"]:
            problem = (
                f"webhook: {webhook['queued']} queued, last error: {webhook['last_error']} "
                f"({webhook['url']}); the next alerts check retries"
            )
        else:
            problem = (
                f"webhook: {webhook['queued']} queued, no time left in this run "
                f"({webhook['url']}); the next alerts check retries"
            )
        warnings.append(problem)
        log.warning("alerts: %s", problem)
    return {
        "checked_at": now,
        "rules": results,
        "firing": [r["rule"] for r in results if r["firing"]],
        "fired": [r["rule"] for r in transitions["fired"]],
        "resolved": [r["rule"] for r in transitions["resolved"]],
        "webhook_notified": notification_id in webhook["delivered"],
        "webhook": webhook,
        "warnings": warnings,
    }


def _public(result: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "alert_id",
        "rule",
        "severity",
        "value",
        "threshold",
        "message",
        "fired_at",
        "resolved_at",
    )
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


def list_alerts(engine: Engine, limit: int, *, include_resolved: bool = False) -> list[dict]:
    """`mlkit alerts list`: the firing alerts, or with `include_resolved` the history."""
    return alert_history(engine, limit) if include_resolved else firing_alerts(engine, limit)
