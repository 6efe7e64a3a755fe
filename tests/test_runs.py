"""Training runs on every dialect: the record, the cooldown, the lock, and `mlkit status`."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa

from mlkit.toolkit import registry
from mlkit.toolkit.errors import MlkitError
from mlkit.toolkit.runs import training_run, training_status
from mlkit.toolkit.schema import training_runs
from mlkit.toolkit.validation import CandidateRejected


def unique() -> str:
    return f"r{uuid.uuid4().hex[:8]}"


def runs_of(engine, name: str) -> list:
    with engine.connect() as conn:
        return conn.execute(
            sa.select(training_runs)
            .where(training_runs.c.model_name == name)
            .order_by(training_runs.c.run_id)
        ).fetchall()


def test_a_run_is_visible_while_running_and_ok_afterwards(engine):
    name = unique()
    with training_run(engine, name, cooldown_seconds=600) as run:
        (row,) = runs_of(engine, name)
        assert row.status == "running" and row.run_id == run.run_id
        assert row.finished_at is None and row.host
        run.finish(n_samples=1000, n_features=12)
        run.finish(version=3, class_distribution={"0": 990, "1": 10}, metrics={"auc_pr": 0.8})
    (row,) = runs_of(engine, name)
    assert row.status == "ok" and row.version == 3
    assert (row.n_samples, row.n_features) == (1000, 12)
    assert row.class_distribution == {"0": 990, "1": 10}
    assert row.metrics == {"auc_pr": 0.8}
    assert row.finished_at >= row.started_at.replace(microsecond=0)
    assert row.duration_seconds >= 0 and row.last_error is None and row.next_retry_at is None


def test_failure_records_error_and_cooldown_which_force_overrides(engine):
    name = unique()
    with pytest.raises(MlkitError), training_run(engine, name, cooldown_seconds=600) as run:
        run.finish(n_samples=5)
        raise MlkitError("the dataset has one class only\n(all 0)")
    (row,) = runs_of(engine, name)
    assert row.status == "failed" and row.n_samples == 5
    assert row.last_error == "the dataset has one class only (all 0)"
    assert row.next_retry_at - row.finished_at > timedelta(seconds=590)

    with (
        pytest.raises(MlkitError, match=r"cooling down.*next retry at") as refused,
        training_run(engine, name, cooldown_seconds=600),
    ):
        pass  # pragma: no cover
    assert "--force" in refused.value.hint
    assert len(runs_of(engine, name)) == 1  # a refused run leaves no row

    with training_run(engine, name, cooldown_seconds=600, force=True):
        pass
    assert [r.status for r in runs_of(engine, name)] == ["failed", "ok"]
    # After a success there is no cooldown any more.
    with training_run(engine, name, cooldown_seconds=600):
        pass


def test_other_errors_are_recorded_by_type_without_their_text(engine):
    name = unique()
    with (
        pytest.raises(ValueError),
        training_run(engine, name, cooldown_seconds=0),
    ):
        raise ValueError("postgresql://user:secret@host/db")
    (row,) = runs_of(engine, name)
    assert row.last_error == "ValueError" and row.next_retry_at is None
    with training_run(engine, name, cooldown_seconds=0):  # no cooldown configured
        pass


def test_a_second_concurrent_run_is_refused(engine):
    name = unique()
    started, release = threading.Event(), threading.Event()
    outcome: dict = {}

    def first() -> None:
        try:
            with training_run(engine, name, cooldown_seconds=60) as run:
                outcome["run_id"] = run.run_id
                started.set()
                release.wait(10)
        except BaseException as exc:  # pragma: no cover - surfaced by the asserts
            outcome["error"] = exc
            started.set()

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert started.wait(10)
        with (
            pytest.raises(
                MlkitError, match=rf"another training run of {name} is in progress"
            ) as refused,
            training_run(engine, name, cooldown_seconds=60),
        ):
            pass  # pragma: no cover
        assert f"run {outcome['run_id']}, started at" in str(refused.value)
        # Another model trains meanwhile.
        with training_run(engine, unique(), cooldown_seconds=60):
            pass
    finally:
        release.set()
        thread.join(10)
    assert "error" not in outcome
    assert [r.status for r in runs_of(engine, name)] == ["ok"]
    with training_run(engine, name, cooldown_seconds=60):  # the lock was released
        pass


def test_a_rejected_candidate_is_recorded_rejected_without_cooldown(engine):
    name = unique()
    gates = ["auc_pr: test AUC-PR 0.41 < gate 0.99", "features: differ"]
    with (
        pytest.raises(CandidateRejected),
        training_run(engine, name, cooldown_seconds=600) as run,
    ):
        run.finish(version=4, n_samples=10)
        raise CandidateRejected(f"{name}:4 rejected", gates)
    (row,) = runs_of(engine, name)
    assert (row.status, row.version, row.n_samples) == ("rejected", 4, 10)
    assert row.last_error == "; ".join(gates) and row.next_retry_at is None
    info = training_status(engine, families=(name,))[name]
    assert info["last_training"]["status"] == "rejected" and info["cooldown"] is False
    assert info["last_success"] is None
    with training_run(engine, name, cooldown_seconds=600):  # no cooldown to wait out
        pass


def test_a_run_left_running_by_a_dead_process_is_closed(engine):
    name = unique()
    with engine.begin() as conn:
        conn.execute(
            training_runs.insert().values(
                model_name=name, status="running", started_at=registry.utcnow()
            )
        )
    with training_run(engine, name, cooldown_seconds=600):
        pass
    stale, current = runs_of(engine, name)
    assert stale.status == "failed" and "interrupted" in stale.last_error
    assert current.status == "ok"


def _status_fixture(engine, tmp_path, name: str) -> None:
    for payload in (b"a", b"b"):
        registry.register_model(
            engine,
            tmp_path,
            name=name,
            family=name,
            write_artifact=lambda p, b=payload: p.write_bytes(b),
            filename="model.joblib",
        )
    registry.promote(engine, name, 1, "prod")
    registry.promote(engine, name, 2, "candidate")
    with training_run(engine, name, cooldown_seconds=600) as run:
        run.finish(version=2, n_samples=100, metrics={"auc_pr": 0.9})
    with pytest.raises(MlkitError), training_run(engine, name, cooldown_seconds=600):
        raise MlkitError("boom")


def test_training_status_shape(engine, tmp_path):
    name, idle = unique(), unique()
    _status_fixture(engine, tmp_path, name)
    status = training_status(engine, families=(name, idle))
    assert set(status) == {name, idle}
    info = status[name]
    assert info["is_trained"] and info["latest_version"] == 2
    assert (info["prod"], info["candidate"]) == (1, 2)
    last = info["last_training"]
    assert last["status"] == "failed" and last["last_error"] == "boom"
    assert set(last) >= {
        "run_id",
        "status",
        "started_at",
        "finished_at",
        "duration_seconds",
        "n_samples",
        "metrics",
        "last_error",
    }
    assert info["last_success"]["metrics"] == {"auc_pr": 0.9}
    assert info["last_success"]["n_samples"] == 100
    assert info["cooldown"] is True and info["next_retry_at"] > registry.utcnow()
    assert status[idle] == {
        "is_trained": False,
        "latest_version": None,
        "prod": None,
        "candidate": None,
        "last_training": None,
        "last_success": None,
        "cooldown": False,
        "next_retry_at": None,
    }
    assert set(training_status(engine)) == {"fraud", "pricing", "signal", "recommender"}


def test_cli_status(engine, cli):
    url = engine.url.render_as_string(hide_password=False)
    result = cli("status", "--json", env={"MLKIT_DATABASE_URL": url})
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert list(document) == ["fraud", "pricing", "signal", "recommender"]
    for info in document.values():
        assert set(info) >= {
            "is_trained",
            "prod",
            "candidate",
            "latest_version",
            "last_training",
            "cooldown",
            "next_retry_at",
        }
    human = cli("status", env={"MLKIT_DATABASE_URL": url})
    assert human.exit_code == 0, human.output
    assert "fraud" in human.stdout and "recommender" in human.stdout


def test_cli_status_with_runs(engine, tmp_path, cli, monkeypatch):
    import mlkit.toolkit.runs as runs

    name = unique()
    _status_fixture(engine, tmp_path, name)
    monkeypatch.setattr(runs, "FAMILIES", (name,))
    url = engine.url.render_as_string(hide_password=False)
    result = cli("status", "--json", env={"MLKIT_DATABASE_URL": url})
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)[name]
    assert info["cooldown"] is True and "T" in info["next_retry_at"]
    human = cli("status", env={"MLKIT_DATABASE_URL": url})
    assert human.exit_code == 0, human.output
    assert "boom" in human.stdout and "cooldown" in human.stdout


def test_status_without_schema_says_db_init(tmp_path, cli):
    result = cli("status", env={"MLKIT_DATABASE_URL": f"sqlite:///{tmp_path}/empty.db"})
    assert result.exit_code == 1
    assert "mlkit db init" in result.stderr


@pytest.mark.slow
def test_fraud_failing_its_gate_is_rejected_alerted_and_shown(engine, cli, tmp_path):
    from mlkit.toolkit.demo.seed import seed_demo

    seed_demo(engine, orders=6_000, days=45, seed=5, families=("fraud",))
    with engine.begin() as conn:  # only this test's runs count for the alert
        conn.execute(training_runs.delete())
    env = {"MLKIT_DATABASE_URL": engine.url.render_as_string(hide_password=False)}
    config = tmp_path / "config.yaml"

    def gate(min_auc_pr: float) -> None:
        config.write_text(
            f"fraud:\n  min_auc_pr: {min_auc_pr}\nalerts:\n  rules:\n"
            "    - {name: training_failed, condition: training_failed > 0}\n"
            "    - {name: stuck_candidate, condition: training_rejected > 0}\n"
        )

    # The logreg Pipeline: on 6,000 orders XGBoost cannot show it beats it (the fallback
    # test below), and this one is about the floor.
    train = ("train", "fraud", "--model", "logreg", "--alias", "prod")
    gate(0.0)
    etl = cli("etl", "run", env=env)
    assert etl.exit_code == 0, etl.output
    first = cli(*train, env=env)
    assert first.exit_code == 0, first.output
    assert registry.resolve(engine, "fraud@prod").version == 1

    gate(0.99)
    rejected = cli(*train, env=env)
    assert rejected.exit_code == 3, rejected.output  # a notice: fraud:1 serves on
    (line,) = [x for x in rejected.stderr.splitlines() if x.startswith("warning:")]
    assert "fraud:2 rejected" in line and "auc_pr" in line and "< gate 0.99" in line
    assert "fraud@prod still points at fraud:1" in line
    assert registry.resolve(engine, "fraud@prod").version == 1
    assert registry.resolve(engine, "fraud:2").version == 2  # kept for inspection
    last = runs_of(engine, "fraud")[-1]
    assert (last.status, last.version, last.next_retry_at) == ("rejected", 2, None)
    assert last.last_error.startswith("auc_pr: test AUC-PR")

    check = cli("alerts", "check", "--json", env=env)
    assert check.exit_code == 3, check.output
    assert json.loads(check.stdout)["fired"] == ["stuck_candidate"]  # no training failed
    status = json.loads(cli("status", "--json", env=env).stdout)["fraud"]
    assert status["prod"] == 1 and status["latest_version"] == 2
    assert status["last_training"]["status"] == "rejected"
    assert "< gate 0.99" in status["last_training"]["last_error"]
    assert status["last_success"]["version"] == 1 and status["cooldown"] is False
    human = cli("status", env=env)
    assert "rejected" in human.stdout and "prod v1 serves" in human.stdout

    gate(0.0)  # a rejection starts no cooldown: the next run goes ahead without --force
    fixed = cli(*train, env=env)
    assert fixed.exit_code == 0, fixed.output
    assert registry.resolve(engine, "fraud@prod").version == 3
    resolved = cli("alerts", "check", "--json", env=env)
    assert resolved.exit_code == 0, resolved.output
    assert json.loads(resolved.stdout)["resolved"] == ["stuck_candidate"]


@pytest.mark.slow
def test_a_rejected_fraud_candidate_leaves_the_logreg_fallback_serving_only_when_none_did(
    engine, cli
):
    from mlkit.toolkit.demo.seed import seed_demo
    from mlkit.toolkit.schema import model_alias_history, model_aliases, model_versions

    seed_demo(engine, orders=6_000, days=45, seed=5, families=("fraud",), replace=True)
    with engine.begin() as conn:  # a model nothing serves yet
        for table in (training_runs, model_alias_history, model_aliases, model_versions):
            conn.execute(table.delete())
    env = {"MLKIT_DATABASE_URL": engine.url.render_as_string(hide_password=False)}
    assert cli("etl", "run", env=env).exit_code == 0

    # XGBoost cannot show on 6,000 orders that it beats logreg: it stays candidate, and with
    # nothing serving yet the logreg baseline, judged against the prior alone, serves.
    first = cli("train", "fraud", "--alias", "prod", env=env)
    assert first.exit_code == 3, first.output  # a notice: the fallback serves
    (line,) = [x for x in first.stderr.splitlines() if x.startswith("warning:")]
    assert "fraud:1 (xgboost) stays candidate: gate:" in line and "not above the logreg" in line
    assert "no version served yet, so fraud:2 (logreg baseline, beats the no-skill prior:" in line
    candidate, fallback = registry.resolve(engine, "fraud:1"), registry.resolve(engine, "fraud:2")
    assert (candidate.aliases, candidate.params["model"]) == (["candidate"], "xgboost")
    assert (fallback.aliases, fallback.params["model"]) == (["prod"], "logreg")
    assert set(fallback.metrics["gate"]["baselines"]) == {"prior"}
    assert fallback.metrics["gate"]["passed"] is True
    assert fallback.metrics["split"] == candidate.metrics["split"]  # the same rows
    assert fallback.metrics["auc_pr"] == candidate.metrics["baselines"]["logreg"]
    assert fallback.input_example and fallback.features == candidate.features
    (run,) = runs_of(engine, "fraud")
    assert (run.status, run.version) == ("rejected", 1)
    assert "fallback fraud:2" in run.last_error and "promoted to prod" in run.last_error
    waiting = json.loads(cli("status", "--json", env=env).stdout)["fraud"]["waiting"]
    assert waiting["version"] == 1 and "not above the logreg" in waiting["reasons"][0]
    scored = cli("score", "fraud", "--json", env=env)
    assert scored.exit_code == 0, scored.output
    assert json.loads(scored.stdout)["model"].startswith("fraud:2")

    # Once a version serves, a rejected candidate leaves it serving: no fallback.
    again = cli("train", "fraud", "--alias", "prod", "--dataset", "latest", env=env)
    assert again.exit_code == 3, again.output
    assert "fraud@prod still points at fraud:2" in again.stderr
    assert "fallback" not in again.stderr
    assert registry.resolve(engine, "fraud").version == 3  # no baseline version registered
    assert registry.resolve(engine, "fraud@candidate").version == 3
    assert registry.resolve(engine, "fraud@prod").version == 2
