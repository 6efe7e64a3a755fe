"""Alert rules on every dialect: each metric, firing once, resolving, the webhook (validated,
retried, queued until delivered, masked), the CLI."""

from __future__ import annotations

import base64
import json
import logging
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import pytest
import sqlalchemy as sa
import yaml

from mlkit.toolkit import alerts as alerts_module
from mlkit.toolkit import schema
from mlkit.toolkit.alerts import check_alerts, firing_alerts, parse_rules
from mlkit.toolkit.clock import utcnow
from mlkit.toolkit.config import load_config
from mlkit.toolkit.errors import MlkitError
from mlkit.toolkit.schema import alerts

RULES = {
    "fraud": {
        "name": "fraud_rate_spike",
        "condition": "fraud_rate > 0.03",
        "duration": "10m",
        "severity": "high",
    },
    "drift": {
        "name": "model_drift",
        "condition": "kl_divergence > 0.15",
        "duration": "1h",
        "severity": "medium",
    },
    "logins": {
        "name": "failed_login_attempts",
        "condition": "failed_logins > 5",
        "duration": "5m",
        "severity": "high",
    },
    "training": {
        "name": "training_failed",
        "condition": "training_failed > 0",
        "duration": "1h",
        "severity": "medium",
    },
}


def config_with(*rules: str, webhook: str = ""):
    config = load_config()
    config.data["alerts"]["rules"] = [RULES[r] for r in rules]
    config.data["alerts"]["webhook_url"] = webhook
    return config


@pytest.fixture(autouse=True)
def empty_tables(engine):
    with engine.begin() as conn:
        for table in (
            alerts,
            schema.alert_notifications,
            schema.drift_results,
            schema.drift_checks,
            schema.fraud_predictions,
            schema.security_events,
            schema.training_runs,
        ):
            conn.execute(table.delete())


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch):
    """The retry schedule's pauses shortened; the tries and their order stay."""
    monkeypatch.setattr(alerts_module, "WEBHOOK_BACKOFF_SECONDS", (0.01, 0.02))


def alert_rows(engine) -> list:
    with engine.connect() as conn:
        return conn.execute(sa.select(alerts).order_by(alerts.c.alert_id)).all()


def add_predictions(engine, decisions: list[str], at) -> None:
    with engine.begin() as conn:
        conn.execute(
            schema.fraud_predictions.insert(),
            [
                {
                    "order_id": i + 1,
                    "fraud_score": 0.9 if d == "BLOCKED" else 0.1,
                    "decision": d,
                    "model_version": "fraud:1",
                    "created_at": at,
                }
                for i, d in enumerate(decisions)
            ],
        )


def test_fraud_rate_fires_once_keeps_firing_and_resolves(engine):
    config = config_with("fraud")
    now = utcnow()
    # 2 of 20 flagged = 10 % > 3 %; REQUIRE_2FA does not count as flagged.
    add_predictions(
        engine,
        ["BLOCKED", "MANUAL_REVIEW"] + ["REQUIRE_2FA"] * 3 + ["APPROVED"] * 15,
        now - timedelta(minutes=2),
    )
    # Outside the 10-minute window: ignored.
    add_predictions(engine, ["BLOCKED"] * 50, now - timedelta(minutes=30))
    first = check_alerts(engine, config, now=now)
    (rule,) = first["rules"]
    assert rule["value"] == pytest.approx(0.1) and rule["firing"]
    assert first["firing"] == first["fired"] == ["fraud_rate_spike"]
    (row,) = alert_rows(engine)
    assert row.status == "firing" and row.fired_at == now and row.resolved_at is None
    assert row.threshold == 0.03 and row.severity == "high" and "2 of 20" in row.message

    later = now + timedelta(minutes=1)
    second = check_alerts(engine, config, now=later)
    assert second["firing"] == ["fraud_rate_spike"] and second["fired"] == []
    (row,) = alert_rows(engine)  # still one row, refreshed
    assert row.status == "firing" and row.fired_at == now and row.last_seen_at == later

    quiet = now + timedelta(minutes=20)  # nothing scored in the window: no data
    third = check_alerts(engine, config, now=quiet)
    assert third["firing"] == [] and third["resolved"] == ["fraud_rate_spike"]
    assert third["rules"][0]["value"] is None
    (row,) = alert_rows(engine)
    assert row.status == "resolved" and row.resolved_at == quiet

    fourth = check_alerts(engine, config, now=now + timedelta(minutes=1, seconds=30))
    assert fourth["fired"] == ["fraud_rate_spike"]
    assert [r.status for r in alert_rows(engine)] == ["resolved", "firing"]


def test_failed_logins_count_per_source_in_the_window(engine):
    config = config_with("logins")
    now = utcnow()

    def events(ip: str, n: int, minutes_ago: float = 1, kind: str = "failed_login"):
        return [
            {
                "event_type": kind,
                "severity": "high",
                "source_ip": ip,
                "user_id": "0xabc",
                "created_at": now - timedelta(minutes=minutes_ago, seconds=i),
            }
            for i in range(n)
        ]

    rows = events("10.0.0.1", 5) + events("10.0.0.2", 5) + events("10.0.0.3", 9, 30)
    rows += events("10.0.0.4", 9, kind="password_reset")
    with engine.begin() as conn:
        conn.execute(schema.security_events.insert(), rows)
    result = check_alerts(engine, config, now=now)
    assert result["rules"][0]["value"] == 5 and not result["firing"]
    with engine.begin() as conn:
        conn.execute(schema.security_events.insert(), events("10.0.0.2", 1, minutes_ago=0.1))
    result = check_alerts(engine, config, now=now)
    assert result["rules"][0]["value"] == 6 and result["firing"] == ["failed_login_attempts"]
    assert "10.0.0.2" in result["rules"][0]["message"]


def test_model_drift_reads_the_latest_drift_check(engine):
    config = config_with("drift")
    assert check_alerts(engine, config)["rules"][0]["value"] is None  # no check yet

    def add_check(max_kl: float) -> None:
        now = utcnow()
        with engine.begin() as conn:
            check_id = conn.execute(
                schema.drift_checks.insert().values(
                    model_ref="fraud:1",
                    reference="/x",
                    window_text="7d",
                    window_start=now,
                    window_end=now,
                    reference_rows=10,
                    current_rows=10,
                    features_checked=1,
                    features_drifted=int(max_kl > 0.15),
                    drifted=max_kl > 0.15,
                    max_kl=max_kl,
                    max_psi=max_kl,
                    kl_threshold=0.15,
                    checked_at=now,
                )
            ).inserted_primary_key[0]
            conn.execute(
                schema.drift_results.insert().values(
                    check_id=check_id,
                    feature="wallet_age_days",
                    kind="numeric",
                    psi=max_kl,
                    kl=max_kl,
                    test="ks",
                    threshold=0.01,
                    drifted=max_kl > 0.15,
                )
            )

    add_check(0.4)
    fired = check_alerts(engine, config)
    assert fired["firing"] == ["model_drift"] and "wallet_age_days" in fired["rules"][0]["message"]
    add_check(0.05)
    assert check_alerts(engine, config)["resolved"] == ["model_drift"]


def test_training_failed_counts_models_whose_latest_run_failed(engine):
    config = config_with("training")
    now = utcnow()

    def run(name: str, status: str, minutes_ago: int) -> None:
        with engine.begin() as conn:
            conn.execute(
                schema.training_runs.insert().values(
                    model_name=name,
                    status=status,
                    started_at=now - timedelta(minutes=minutes_ago),
                    last_error="boom" if status == "failed" else None,
                )
            )

    run("fraud", "failed", 30)
    run("fraud", "ok", 20)  # fixed since: does not count
    run("pricing", "failed", 10)
    result = check_alerts(engine, config)
    assert result["rules"][0]["value"] == 1 and result["firing"] == ["training_failed"]
    assert "pricing" in result["rules"][0]["message"]
    run("pricing", "ok", 5)
    assert check_alerts(engine, config)["resolved"] == ["training_failed"]


def test_a_rejected_run_is_no_failure_but_its_own_metric_as_of_the_clock(engine, monkeypatch):
    """A version its gate kept from prod leaves the previous one serving: `training_failed`
    stays quiet, `training_rejected` counts it."""
    config = config_with("training")
    config.data["alerts"]["rules"].append(
        {"name": "stuck_candidate", "condition": "training_rejected > 0", "severity": "low"}
    )
    now = utcnow()

    def run(status: str, minutes_ago: int, error: str | None = None) -> None:
        with engine.begin() as conn:
            conn.execute(
                schema.training_runs.insert().values(
                    model_name="fraud",
                    status=status,
                    last_error=error,
                    started_at=now - timedelta(minutes=minutes_ago),
                )
            )

    run("ok", 60)
    run("rejected", 30, "auc_pr: test AUC-PR 0.41 < gate 0.99")
    run("running", 5)  # a retraining under way clears nothing yet
    result = check_alerts(engine, config, now=now)
    assert result["fired"] == ["stuck_candidate"]
    failed, rejected = result["rules"]
    assert failed["value"] == 0 and "no model's latest training run failed" in failed["message"]
    assert "fraud (rejected)" in rejected["message"] and "< gate 0.99" in rejected["message"]
    # As of a moment before the rejection (MLKIT_NOW), only the good run counts.
    monkeypatch.setenv("MLKIT_NOW", (now - timedelta(minutes=45)).isoformat())
    earlier = check_alerts(engine, config)
    assert earlier["checked_at"] == now - timedelta(minutes=45)
    assert earlier["resolved"] == ["stuck_candidate"] and earlier["firing"] == []


def test_firing_alerts_newest_first_and_a_removed_rule_resolves(engine):
    now = utcnow()
    add_predictions(engine, ["BLOCKED"] * 3, now - timedelta(minutes=1))
    with engine.begin() as conn:
        conn.execute(
            schema.training_runs.insert().values(
                model_name="fraud", status="failed", started_at=now - timedelta(minutes=1)
            )
        )
    check_alerts(engine, config_with("training"), now=now - timedelta(seconds=30))
    check_alerts(engine, config_with("training", "fraud"), now=now)
    firing = firing_alerts(engine)
    assert [a["rule"] for a in firing] == ["fraud_rate_spike", "training_failed"]
    assert set(firing[0]) == {"rule", "severity", "value", "threshold", "message", "fired_at"}
    assert firing[0]["fired_at"] == now and firing[0]["value"] == 1.0
    assert [a["rule"] for a in firing_alerts(engine, limit=1)] == ["fraud_rate_spike"]
    result = check_alerts(engine, config_with("fraud"), now=now)
    assert result["resolved"] == ["training_failed"]
    assert [a["rule"] for a in firing_alerts(engine)] == ["fraud_rate_spike"]


def test_firing_alerts_is_empty_before_the_table_exists(tmp_path):
    from mlkit.toolkit.db import make_engine

    assert firing_alerts(make_engine(f"sqlite:///{tmp_path}/empty.db")) == []


def test_two_checks_at_once_open_one_alert(engine):
    config = config_with("fraud")
    now = utcnow()
    add_predictions(engine, ["BLOCKED"] * 4, now - timedelta(minutes=1))
    with ThreadPoolExecutor(4) as pool:
        checks = [pool.submit(check_alerts, engine, config, now=now) for _ in range(4)]
    for check in checks:
        check.result()  # raises what the check raised
    assert len(alert_rows(engine)) == 1


class _Hook(BaseHTTPRequestHandler):
    received: ClassVar[list] = []

    def do_POST(self):  # the http.server API names it
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_webhook_hears_fired_and_resolved_and_a_dead_one_only_warns(engine):
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Hook.received.clear()
    try:
        url = f"http://127.0.0.1:{server.server_port}/hook"
        now = utcnow()
        add_predictions(engine, ["BLOCKED"] * 2, now - timedelta(minutes=1))
        fired = check_alerts(engine, config_with("fraud", webhook=url), now=now)
        assert fired["webhook_notified"]
        check_alerts(engine, config_with("fraud", webhook=url), now=now)  # no change: silent
        check_alerts(engine, config_with("fraud", webhook=url), now=now + timedelta(hours=1))
    finally:
        server.shutdown()
        server.server_close()
    assert [(len(p["fired"]), len(p["resolved"])) for p in _Hook.received] == [(1, 0), (0, 1)]
    assert _Hook.received[0]["fired"][0]["rule"] == "fraud_rate_spike"
    add_predictions(engine, ["BLOCKED"], now + timedelta(hours=2))
    dead = check_alerts(
        engine,
        config_with("fraud", webhook="http://127.0.0.1:9/"),
        now=now + timedelta(hours=2, minutes=1),
    )
    assert dead["firing"] and not dead["webhook_notified"]
    assert dead["warnings"] and "webhook" in dead["warnings"][0]


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"name": "x", "condition": "fraud_rate >> 3"}, "cannot read condition"),
        ({"name": "x", "condition": "fraud_rate > 1.2.3"}, "cannot read condition"),
        ({"name": "x", "condition": "p95_latency > 100"}, "unknown metric 'p95_latency'"),
        ({"name": "x", "condition": "fraud_rate > 0.1", "duration": "soon"}, "duration"),
        ({"name": "", "condition": "fraud_rate > 0.1"}, "needs a name"),
    ],
)
def test_bad_rules_are_named(rule, message):
    with pytest.raises(MlkitError, match=message):
        parse_rules([rule])


def test_disabled_rules_are_skipped_and_duplicates_refused():
    rules = parse_rules([{**RULES["fraud"], "enabled": False}, RULES["drift"]])
    assert [r.name for r in rules] == ["model_drift"]
    assert rules[0].threshold == 0.15 and rules[0].duration == timedelta(hours=1)
    with pytest.raises(MlkitError, match="also called"):
        parse_rules([RULES["drift"], RULES["drift"]])


def test_cli_exit_codes_json_and_list(engine, cli, database_url, tmp_path):
    result = cli("--database", database_url, "alerts", "check", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert {r["rule"] for r in document["rules"]} == {r["name"] for r in RULES.values()}
    assert document["firing"] == []

    add_predictions(engine, ["BLOCKED"] * 2, utcnow() - timedelta(minutes=1))
    result = cli("--database", database_url, "alerts", "check")
    assert result.exit_code == 3, result.output
    assert "fraud_rate_spike" in result.stdout and "FIRING" in result.stdout
    listed = cli("--database", database_url, "alerts", "list", "--json")
    assert [a["rule"] for a in json.loads(listed.stdout)["alerts"]] == ["fraud_rate_spike"]
    history = cli("--database", database_url, "alerts", "list", "--all")
    assert history.exit_code == 0 and "fraud_rate_spike" in history.stdout

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"alerts": {"rules": [{"name": "x", "condition": "cpu > 1"}]}}))
    result = cli("--config", str(bad), "--database", database_url, "alerts", "check")
    assert result.exit_code == 1 and "unknown metric 'cpu'" in result.stderr


# ---------------------------------------------------------------- the webhook's delivery


@contextmanager
def webhook_server(port: int = 0, fail_first: int = 0) -> Iterator[tuple[str, list, list]]:
    """A webhook on 127.0.0.1 answering HTTP 500 to its first `fail_first` POSTs, then 204;
    yields its URL, the bodies it accepted (with their Authorization header under
    `_authorization`) and the status of every POST."""
    accepted: list[dict] = []
    answers: list[int] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):  # the http.server API names it
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            status = 500 if len(answers) < fail_first else 204
            answers.append(status)
            if status == 204:
                accepted.append({**body, "_authorization": self.headers["Authorization"]})
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", port), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/hook", accepted, answers
    finally:
        server.shutdown()
        server.server_close()


def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on (a webhook that is down)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def queue_rows(engine) -> list:
    with engine.connect() as conn:
        n = schema.alert_notifications
        return conn.execute(sa.select(n).order_by(n.c.notification_id)).all()


def write_config(tmp_path, webhook: str) -> str:
    path = tmp_path / "alerts.yaml"
    path.write_text(yaml.safe_dump({"alerts": {"webhook_url": webhook, "rules": [RULES["fraud"]]}}))
    return str(path)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://hooks.example.com/alerts",
        "hooks.example.com/alerts",
        "https:///alerts",
        "http://hooks example.com/alerts",
        "http://hooks.example.com/al\terts",
        "http://hooks.example.com:notaport/alerts",
        "http://hooks.example.com:99999/alerts",
        "http://hooks.exämple.com/alerts",
        "http://hooks!example.com/alerts",
    ],
)
def test_bad_webhook_urls_are_refused_at_config_load(tmp_path, url):
    with pytest.raises(MlkitError, match=r"alerts\.webhook_url") as refused:
        load_config(write_config(tmp_path, url))
    assert refused.value.hint and "http" in refused.value.hint


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/services/x",
        "http://127.0.0.1:8080/hook",
        "http://[::1]:9000/",
        "https://user:pw@hooks.example.com/?a=1",
        "",
    ],
)
def test_good_webhook_urls_load(tmp_path, url):
    assert load_config(write_config(tmp_path, url)).get("alerts.webhook_url") == url


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:notaport/hook", "ftp://alice:s3cr3t-pass@hooks.example.com/"]
)
def test_a_bad_webhook_url_is_one_error_line_not_unexpected(
    engine, cli, database_url, tmp_path, url
):
    add_predictions(engine, ["BLOCKED"] * 2, utcnow() - timedelta(minutes=1))
    config = write_config(tmp_path, url)
    result = cli("--config", config, "--database", database_url, "alerts", "check")
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    assert [line for line in lines if line.startswith("error:")] == [lines[0]]
    assert "alerts.webhook_url" in lines[0] and lines[1].startswith("hint:")
    assert "unexpected" not in result.stderr and "Traceback" not in result.stderr
    assert "s3cr3t-pass" not in result.stderr
    assert alert_rows(engine) == []  # refused before anything was recorded
    # Every command that loads the config refuses it alike.
    shown = cli("--config", config, "config", "show")
    assert shown.exit_code == 1 and shown.stderr.startswith("error:")


def test_a_webhook_failing_twice_then_answering_hears_the_notification_once(engine):
    now = utcnow()
    add_predictions(engine, ["BLOCKED"] * 2, now - timedelta(minutes=1))
    with webhook_server(fail_first=2) as (url, accepted, answers):
        # User info in the URL goes as Basic auth (urllib alone would take it for the host).
        url = url.replace("http://", "http://alerts:p%40ss@")
        result = check_alerts(engine, config_with("fraud", webhook=url), now=now)
    assert answers == [500, 500, 204]
    assert len(accepted) == 1 and accepted[0]["fired"][0]["rule"] == "fraud_rate_spike"
    assert accepted[0]["_authorization"] == "Basic " + base64.b64encode(b"alerts:p@ss").decode()
    assert result["webhook_notified"] and result["webhook"]["queued"] == 0
    assert result["warnings"] == []
    (row,) = queue_rows(engine)
    assert accepted[0]["notification_id"] == row.notification_id
    assert row.attempts == 3 and row.delivered_at is not None and row.last_error is None


def test_a_down_webhook_keeps_notifications_queued_until_a_check_delivers_them_in_order(
    engine, cli, database_url, tmp_path
):
    port = closed_port()
    config = write_config(tmp_path, f"http://127.0.0.1:{port}/hook")
    now = utcnow().replace(microsecond=0)
    add_predictions(engine, ["BLOCKED"] * 2, now - timedelta(minutes=1))

    def check(at, *extra: str):
        return cli(
            "--config",
            config,
            "--database",
            database_url,
            "alerts",
            "check",
            *extra,
            env={"MLKIT_NOW": at.isoformat()},
        )

    fired = check(now)
    assert fired.exit_code == 3, fired.output  # the webhook never changes the exit code
    assert "webhook: 1 queued, last error:" in fired.stderr
    resolved = check(now + timedelta(hours=1))
    assert resolved.exit_code == 0, resolved.output
    assert "webhook: 2 queued, last error:" in resolved.stderr
    rows = queue_rows(engine)
    assert [r.delivered_at for r in rows] == [None, None]
    assert rows[0].attempts == 6 and rows[0].last_error  # 3 tries in each check
    assert rows[1].attempts == 0  # behind the first one, in order

    with webhook_server(port=port) as (_, accepted, answers):
        delivered = check(now + timedelta(hours=1, minutes=1), "--json")
        again = check(now + timedelta(hours=1, minutes=2), "--json")
    assert delivered.exit_code == 0, delivered.output
    webhook = json.loads(delivered.stdout)["webhook"]
    assert webhook["queued"] == 0 and webhook["delivered"] == [r.notification_id for r in rows]
    assert [(len(p["fired"]), len(p["resolved"])) for p in accepted] == [(1, 0), (0, 1)]
    assert [p["notification_id"] for p in accepted] == [r.notification_id for r in rows]
    assert answers == [204, 204]  # the later check sent nothing twice
    assert json.loads(again.stdout)["webhook"] == {**webhook, "delivered": []}
    assert all(r.delivered_at is not None for r in queue_rows(engine))


def test_secrets_in_the_webhook_url_never_reach_output_logs_or_the_database(
    engine, cli, database_url, tmp_path, caplog
):
    port = closed_port()
    secrets = ("alice", "s3cr3t-pass", "T0KEN0123456789ABCDEF", "abcdef123")
    url = f"http://alice:s3cr3t-pass@127.0.0.1:{port}/services/{secrets[2]}?token=abcdef123"
    masked = f"http://***@127.0.0.1:{port}/services/***?token=***"
    config = write_config(tmp_path, url)
    add_predictions(engine, ["BLOCKED"] * 2, utcnow() - timedelta(minutes=1))
    caplog.set_level(logging.INFO, logger="mlkit")
    human = cli("--config", config, "--database", database_url, "alerts", "check")
    as_json = cli("--config", config, "--database", database_url, "alerts", "check", "--json")
    shown = cli("--config", config, "--database", database_url, "config", "show")
    assert human.exit_code == as_json.exit_code == 3, human.output
    assert masked in human.stderr
    assert json.loads(as_json.stdout)["webhook"]["url"] == masked
    stored = " ".join(str(r.last_error) for r in queue_rows(engine))
    logged = " ".join(record.getMessage() for record in caplog.records)
    for text in (
        human.stdout,
        human.stderr,
        as_json.stdout,
        as_json.stderr,
        shown.stdout,
        shown.stderr,
        stored,
        logged,
    ):
        for secret in secrets:
            assert secret not in text


def test_db_init_adds_the_notification_queue_to_an_existing_database(engine):
    from mlkit.toolkit.db import init_schema

    with engine.begin() as conn:
        schema.alert_notifications.drop(conn)
    with pytest.raises(MlkitError, match="alert_notifications table is missing"):
        check_alerts(engine, config_with("fraud", webhook="http://127.0.0.1:9/"))
    assert check_alerts(engine, config_with("fraud"))["webhook"]["queued"] == 0
    assert "alert_notifications" in init_schema(engine)
    assert queue_rows(engine) == []
