"""Job locks on every dialect: a waiting kind waits for the holder, a refusing kind is
refused at once, a wait that runs out is refused, and a holder that raises releases."""

from __future__ import annotations

import threading
import uuid

import pytest
from conftest import drop_database, make_database

from mlkit.toolkit.db import make_engine
from mlkit.toolkit.locks import POLICIES, JobBusy, job_lock


def unique() -> str:
    return f"m{uuid.uuid4().hex[:8]}"


def test_the_documented_policies():
    assert POLICIES["train"].wait_seconds == 0
    for kind in ("etl", "scoring", "retention", "alerts"):
        assert POLICIES[kind].wait_seconds >= 600


def test_a_waiting_kind_runs_after_the_holder(engine):
    name = unique()
    waiting = threading.Event()
    events: list[str] = []
    errors: list[BaseException] = []

    def second() -> None:
        try:
            with job_lock(engine, "etl", name, on_wait=waiting.set):
                events.append("second holds")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
            waiting.set()

    with job_lock(engine, "etl", name):
        thread = threading.Thread(target=second)
        thread.start()
        assert waiting.wait(30), "the second run never started waiting"
        assert events == []
        events.append("first releases")
    thread.join(30)
    assert not errors
    assert events == ["first releases", "second holds"]


def test_a_refusing_kind_is_refused_at_once(engine):
    name = unique()
    outcome: dict = {}

    def second(model: str) -> None:
        try:
            with job_lock(engine, "train", model, on_wait=lambda: outcome.setdefault("waited", 1)):
                outcome[model] = "held"
        except JobBusy as exc:
            outcome[model] = exc

    with job_lock(engine, "train", name):
        other = unique()
        for model in (name, other):
            thread = threading.Thread(target=second, args=(model,))
            thread.start()
            thread.join(30)
    refused = outcome[name]
    assert isinstance(refused, JobBusy)
    assert str(refused) == f"another training run of {name} is in progress"
    assert "waited" not in outcome
    assert outcome[other] == "held"  # another model's training is not in the way
    with job_lock(engine, "train", name):  # free again
        pass


def test_a_wait_that_runs_out_is_refused(engine):
    name = unique()
    with job_lock(engine, "alerts", name):
        outcome: dict = {}

        def second() -> None:
            try:
                with job_lock(engine, "alerts", name, wait_seconds=1):
                    outcome["held"] = True  # pragma: no cover
            except JobBusy as exc:
                outcome["error"] = exc

        thread = threading.Thread(target=second)
        thread.start()
        thread.join(30)
    assert "held" not in outcome
    assert str(outcome["error"]) == (
        f"another alerts check run of {name} is in progress (waited 1 s for it)"
    )


@pytest.mark.parametrize("kind", ["train", "retention"])
def test_a_holder_that_raises_releases(engine, kind):
    name = unique()
    with pytest.raises(RuntimeError), job_lock(engine, kind, name):
        raise RuntimeError("the job broke")
    acquired = []

    def second() -> None:
        with job_lock(engine, kind, name, wait_seconds=0):
            acquired.append(True)

    thread = threading.Thread(target=second)
    thread.start()
    thread.join(30)
    assert acquired == [True]


def test_another_database_on_the_same_server_is_not_in_the_way(engine, tmp_path):
    name = unique()
    url = make_database(engine.dialect.name, tmp_path)
    other = make_engine(url)
    try:
        with job_lock(engine, "train", name), job_lock(other, "train", name, wait_seconds=0):
            pass
    finally:
        other.dispose()
        drop_database(url)


def test_an_unknown_kind_is_a_bug(engine):
    with pytest.raises(ValueError, match="unknown job kind"), job_lock(engine, "nightly"):
        pass  # pragma: no cover
