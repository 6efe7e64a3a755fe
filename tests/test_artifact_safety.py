"""Artifacts cannot run code: a pickle placed in the registry, pointed at from outside the
artifacts root, or swapped in after the sha256 check is never unpickled; the logistic
baseline is JSON; what mlkit writes in its home is private."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from mlkit.toolkit import registry, schema
from mlkit.toolkit.config import load_config
from mlkit.toolkit.db import init_schema, make_engine
from mlkit.toolkit.fraud.columns import FEATURES, NUMERIC_FEATURES
from mlkit.toolkit.fraud.model import LogRegFraud, load_model
from mlkit.toolkit.schema import model_versions

ORDER = json.dumps(
    {
        "buyer_wallet_id": 1,
        "event_id": 1,
        "price": 80,
        "payment_method": "paypal",
        "created_at": "2026-03-01T12:00:00",
    }
)


class Exploit:
    """Unpickling this creates `marker`: proof that loading ran code of the file's choosing."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def synthetic_frame(rows: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({c: rng.normal(size=rows) * rng.uniform(1, 50) for c in NUMERIC_FEATURES})
    frame.loc[rng.random(rows) < 0.2, NUMERIC_FEATURES[0]] = np.nan
    frame[NUMERIC_FEATURES[1]] = np.nan  # never observed: the imputer drops it
    frame["is_resale"] = rng.random(rows) < 0.3
    frame["payment_method"] = rng.choice(["paypal", "credit_card", None], rows)
    frame["label"] = (frame[NUMERIC_FEATURES[2]] + rng.normal(size=rows) > 1).astype(int)
    return frame


@pytest.fixture
def world(tmp_path):
    """A SQLite database with mlkit's schema, the CLI's config and a marker path."""
    url = f"sqlite:///{tmp_path / 'ops.db'}"
    engine = make_engine(url)
    init_schema(engine)
    yield engine, url, load_config(), tmp_path / "PWNED"
    engine.dispose()


def register_bytes(engine, config, payload: bytes, *, params: dict, filename: str):
    frame = synthetic_frame(3)
    return registry.register_model(
        engine,
        config.artifacts_dir,
        name="fraud",
        family="fraud",
        write_artifact=lambda path: path.write_bytes(payload),
        filename=filename,
        metrics={"auc_pr": 1.0},
        params=params,
        features=list(FEATURES),
        input_example=frame[list(FEATURES)].to_dict("records"),
    )


def register_logreg(engine, config) -> tuple[registry.ModelVersion, LogRegFraud]:
    frame = synthetic_frame()
    model = LogRegFraud().fit(frame.iloc[:300], frame.iloc[300:])
    mv = registry.register_model(
        engine,
        config.artifacts_dir,
        name="fraud",
        family="fraud",
        write_artifact=model.save,
        filename=model.filename,
        metrics={"auc_pr": 1.0},
        params=model.params(),
        features=list(FEATURES),
        input_example=frame[list(FEATURES)].head(3).to_dict("records"),
    )
    return mv, model


def run_both(cli, url: str, ref: str):
    """`validate model` and `predict fraud` on one reference, through the CLI."""
    return {
        "validate": cli("--database", url, "validate", "model", ref),
        "predict": cli("--database", url, "predict", "fraud", "--model", ref, ORDER),
    }


def assert_refused(results: dict, marker: Path, *, says: str) -> None:
    assert not marker.exists(), "the pickle ran"
    for command, result in results.items():
        assert result.exit_code == 1, (command, result.output)
        assert result.stderr.startswith("error:"), (command, result.stderr)
        assert says in result.stderr, (command, result.stderr)
        assert "Traceback" not in result.output


def test_a_pickle_registered_as_the_logreg_baseline_never_runs(world, cli):
    engine, url, config, marker = world
    payload = pickle.dumps(Exploit(marker))
    mv = register_bytes(
        engine, config, payload, params={"model": "logreg", "C": 1.0}, filename="model.joblib"
    )
    assert_refused(run_both(cli, url, mv.ref), marker, says="mlkit-logreg-v1")
    shown = cli("--database", url, "models", "show", mv.ref, "--json")
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["format"] == "pickle (can run code)"
    assert not marker.exists()


def test_a_row_pointing_outside_the_artifacts_root_is_never_read(world, cli):
    engine, url, config, marker = world
    payload = pickle.dumps(Exploit(marker))
    mv = register_bytes(
        engine, config, payload, params={"model": "logreg", "C": 1.0}, filename="model.joblib"
    )
    # Whoever can write the database points the row at a file of theirs, sha256 and all.
    outside = marker.parent / "attacker" / "model.joblib"
    outside.parent.mkdir()
    outside.write_bytes(payload)
    (config.artifacts_dir / mv.artifact_path).unlink()
    with engine.begin() as conn:
        conn.execute(
            model_versions.update()
            .where(model_versions.c.name == "fraud")
            .values(artifact_path=str(outside))
        )
    assert_refused(run_both(cli, url, mv.ref), marker, says="outside the artifacts directory")


def test_a_pickle_swapped_in_after_the_sha256_check_is_never_loaded(world, cli, monkeypatch):
    """The race, made deterministic: the moment the registered digest is computed (the
    artifact's bytes have been read and hashed), the file is replaced by a pickle. Only a
    loader that reopens the path after checking it can see the swap; these commands load
    the bytes they checked, so they serve the registered model."""
    engine, url, config, marker = world
    mv, _ = register_logreg(engine, config)
    with engine.begin() as conn:  # the event the order is for
        moment = datetime(2026, 1, 1)
        conn.execute(
            schema.events.insert().values(
                event_id=1,
                name="gig",
                event_type="concert",
                base_price=80,
                capacity=100,
                sale_start=moment,
                event_date=datetime(2026, 6, 1),
                created_at=moment,
            )
        )
    path = config.artifacts_dir / mv.artifact_path
    genuine, exploit = path.read_bytes(), pickle.dumps(Exploit(marker))
    real_sha256, swaps = hashlib.sha256, []

    class SwappingSha256:
        def __init__(self, *args, **kwargs):
            self._digest = real_sha256(*args, **kwargs)

        def update(self, data):
            self._digest.update(data)

        def hexdigest(self):
            value = self._digest.hexdigest()
            if value == mv.sha256:
                path.write_bytes(exploit)
                swaps.append(value)
            return value

        def __getattr__(self, name):
            return getattr(self._digest, name)

    monkeypatch.setattr(hashlib, "sha256", SwappingSha256)
    commands = {
        "validate": ("validate", "model", mv.ref),
        "predict": ("predict", "fraud", "--model", mv.ref, ORDER),
    }
    for command, args in commands.items():
        path.write_bytes(genuine)
        swaps.clear()
        result = cli("--database", url, *args)
        assert not marker.exists(), f"{command} unpickled the swapped-in file"
        assert swaps, f"{command} never checked the artifact"
        assert result.exit_code == 0, (command, result.output)
    assert json.loads(result.stdout)["model_version"] == mv.ref


def test_the_logreg_baseline_is_json_and_predicts_like_the_fitted_pipeline(tmp_path):
    frame = synthetic_frame(seed=4)
    model = LogRegFraud().fit(frame.iloc[:300], frame.iloc[300:])
    path = tmp_path / model.filename
    model.save(path)
    document = json.loads(path.read_text())  # plain JSON: nothing in it can run
    assert document["format"] == "mlkit-logreg-v1"
    again = load_model(path.read_bytes(), model.params())
    probe = synthetic_frame(seed=5)
    probe.loc[:9, "payment_method"] = "never_seen"
    difference = np.abs(again.predict_proba(probe) - model.predict_proba(probe))
    assert difference.max() <= 1e-12
    assert type(again.pipeline_).__name__ == "Pipeline"


def test_files_written_by_training_are_private(world):
    from mlkit.toolkit.datasets import write_snapshot
    from mlkit.toolkit.identity import database_home
    from mlkit.toolkit.recommender.train import remember_last_good

    engine, _, config, _ = world
    os.umask(0o022)  # the usual umask, which would make them world-readable
    snapshot = write_snapshot(config.datasets_dir, "fraud", synthetic_frame(), {})
    mv, _ = register_logreg(engine, config)
    remember_last_good(database_home(config, engine), mv)
    written = [*config.datasets_dir.rglob("*"), *config.artifacts_dir.rglob("*")]
    assert snapshot / "data.parquet" in written and config.artifacts_dir / mv.artifact_path in (
        written
    )
    for each in [config.datasets_dir, config.artifacts_dir, *written]:
        mode = each.stat().st_mode & 0o777
        assert mode == (0o700 if each.is_dir() else 0o600), (each, oct(mode))
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(model_versions)).scalar() == 1


def test_a_sqlite_database_mlkit_creates_is_private(tmp_path):
    from mlkit.toolkit.db import make_engine

    os.umask(0o022)
    path = tmp_path / "new" / "home" / "mlkit.db"
    engine = make_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    engine.dispose()
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
