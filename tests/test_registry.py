"""The model registry on every dialect: versions, verified artifacts, aliases and history."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from mlkit.toolkit import registry
from mlkit.toolkit.errors import MlkitError
from mlkit.toolkit.identity import database_id
from mlkit.toolkit.schema import model_alias_history, model_versions


def unique(prefix: str = "m") -> str:
    """A model name of its own per test: the database is shared by the module."""
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def writer(payload: bytes):
    def write(path: Path) -> None:
        path.write_bytes(payload)

    return write


def register(engine, artifacts: Path, name: str, payload: bytes = b"model-bytes", **kw):
    defaults = {
        "family": "fraud",
        "filename": "model.ubj",
        "metrics": {"auc_pr": 0.5},
        "params": {"max_depth": 4},
        "features": ["amount", "hour"],
        "input_example": [{"amount": 1.0, "hour": 3}],
        "dataset_ref": "fraud/dt=2026-01-01/run_id=x",
    }
    defaults.update(kw)
    return registry.register_model(
        engine, artifacts, name=name, write_artifact=writer(payload), **defaults
    )


def test_register_twice_gives_versions_with_files_and_sha256(engine, tmp_path):
    import hashlib

    import numpy as np

    name = unique()
    first = register(engine, tmp_path, name, b"one")
    second = register(
        engine, tmp_path, name, b"two", metrics={"auc_pr": np.float64(0.7), "bad": float("nan")}
    )
    assert (first.version, second.version) == (1, 2)
    home = database_id(engine)
    for mv, payload in ((first, b"one"), (second, b"two")):
        # Stored relative to the artifacts root, in this database's folder.
        assert mv.artifact_path == Path(home) / name / f"v{mv.version}" / "model.ubj"
        assert registry.resolve(engine, mv.ref).artifact_path == mv.artifact_path
        assert (tmp_path / mv.artifact_path).read_bytes() == payload
        assert registry.read_artifact(mv, tmp_path) == payload
        assert mv.sha256 == hashlib.sha256(payload).hexdigest()
        meta = json.loads((tmp_path / mv.artifact_path.parent / "metadata.json").read_text())
        assert meta["version"] == mv.version and meta["sha256"] == mv.sha256
        assert meta["features"] == ["amount", "hour"]
        assert mv.aliases == []
    assert second.metrics == {"auc_pr": 0.7, "bad": None}
    assert not list((tmp_path / home / name).glob(".staging-*"))
    json.dumps(second.as_dict())  # JSON-safe
    stored = registry.resolve(engine, f"{name}:2")
    assert stored.metrics["auc_pr"] == pytest.approx(0.7)
    assert stored.input_example == [{"amount": 1.0, "hour": 3}]
    assert stored.dataset_ref == "fraud/dt=2026-01-01/run_id=x"
    assert [mv.version for mv in registry.list_versions(engine, name)] == [1, 2]


def test_failure_while_writing_leaves_no_row_and_no_folder(engine, tmp_path):
    name = unique()

    def broken(path: Path) -> None:
        path.write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        registry.register_model(
            engine,
            tmp_path,
            name=name,
            family="fraud",
            write_artifact=broken,
            filename="model.ubj",
        )
    with pytest.raises(MlkitError, match=r"no .*model\.ubj"):
        register(engine, tmp_path, name, b"")  # an empty artifact is no model
    with engine.connect() as conn:
        count = conn.execute(
            sa.select(sa.func.count()).where(model_versions.c.name == name)
        ).scalar()
    assert count == 0
    assert list((tmp_path / database_id(engine) / name).iterdir()) == []


def test_failure_in_the_transaction_removes_the_staging_folder(engine, tmp_path, monkeypatch):
    name = unique()

    def refuse(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(registry.os, "replace", refuse)
    with pytest.raises(OSError):
        register(engine, tmp_path, name)
    monkeypatch.undo()
    assert list((tmp_path / database_id(engine) / name).iterdir()) == []
    assert registry.list_versions(engine, name) == []
    assert register(engine, tmp_path, name).version == 1


def test_resolve_the_three_reference_forms_and_unknown_ones(engine, tmp_path):
    name = unique()
    for payload in (b"a", b"b", b"c"):
        register(engine, tmp_path, name, payload)
    registry.promote(engine, name, 2, "prod", changed_by="test")
    assert registry.resolve(engine, name).version == 3
    assert registry.resolve(engine, f"{name}:1").version == 1
    prod = registry.resolve(engine, f"{name}@prod")
    assert prod.version == 2 and prod.aliases == ["prod"]
    with pytest.raises(MlkitError) as unknown:
        registry.resolve(engine, "nosuchmodel@prod")
    assert "nosuchmodel" in str(unknown.value)
    assert f"{name} v1..v3 [@prod→v2]" in str(unknown.value)
    with pytest.raises(MlkitError, match="version 9"):
        registry.resolve(engine, f"{name}:9")
    with pytest.raises(MlkitError, match="alias 'staging'"):
        registry.resolve(engine, f"{name}@staging")
    with pytest.raises(MlkitError, match="invalid model reference"):
        registry.resolve(engine, f"{name}:x")


@pytest.mark.parametrize("damage", ["tampered", "truncated", "missing"])
def test_damaged_artifacts_are_refused_before_loading(engine, tmp_path, damage):
    mv = register(engine, tmp_path, unique(), b"0123456789" * 100)
    path = registry.artifact_file(mv, tmp_path)
    assert registry.read_artifact(mv, tmp_path) == path.read_bytes()
    data = path.read_bytes()
    if damage == "tampered":
        path.write_bytes(data[:500] + bytes([data[500] ^ 1]) + data[501:])
    elif damage == "truncated":
        path.write_bytes(data[:-1])
    else:
        path.unlink()
    with pytest.raises(MlkitError) as refused:
        registry.read_artifact(registry.resolve(engine, mv.ref), tmp_path)
    assert str(path) in str(refused.value)
    assert ("missing" if damage == "missing" else "sha256") in str(refused.value)


def _point_at(engine, mv, artifact_path: str) -> registry.ModelVersion:
    """The version as the registry reads it once its row names `artifact_path`."""
    with engine.begin() as conn:
        conn.execute(
            model_versions.update()
            .where(model_versions.c.name == mv.name, model_versions.c.version == mv.version)
            .values(artifact_path=artifact_path)
        )
    return registry.resolve(engine, mv.ref)


def test_an_absolute_path_inside_the_root_still_reads(engine, tmp_path):
    mv = register(engine, tmp_path / "artifacts", unique(), b"payload")
    inside = tmp_path / "artifacts" / mv.artifact_path
    assert registry.read_artifact(_point_at(engine, mv, str(inside)), tmp_path / "artifacts") == (
        b"payload"
    )


@pytest.mark.parametrize("escape", ["absolute", "dotdot", "symlink"])
def test_a_path_outside_the_artifacts_root_is_refused(engine, tmp_path, escape):
    root = tmp_path / "artifacts"
    mv = register(engine, root, unique(), b"payload")
    elsewhere = tmp_path / "elsewhere" / "model.ubj"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(b"payload")  # the registered sha256: only the place is wrong
    if escape == "absolute":
        stored = str(elsewhere)
    elif escape == "dotdot":
        stored = "../elsewhere/model.ubj"
    else:
        link = root / mv.artifact_path.parent / "link.ubj"
        link.symlink_to(elsewhere)
        stored = str(link.relative_to(root))
    moved = _point_at(engine, mv, stored)
    with pytest.raises(MlkitError, match="outside the artifacts directory") as refused:
        registry.read_artifact(moved, root)
    assert refused.value.hint and "not loaded" in refused.value.hint
    assert registry.inspect_artifact(moved, root)["check"].startswith("artifact of")


def test_registered_artifacts_are_private(engine, tmp_path):
    mv = register(engine, tmp_path / "artifacts", unique(), b"payload")
    folder = tmp_path / "artifacts" / mv.artifact_path.parent
    assert (folder / mv.artifact_path.name).stat().st_mode & 0o777 == 0o600
    assert (folder / "metadata.json").stat().st_mode & 0o777 == 0o600
    for each in (folder, folder.parent, tmp_path / "artifacts"):
        assert each.stat().st_mode & 0o777 == 0o700, each


def test_artifact_formats_say_which_can_run_code():
    assert registry.artifact_format(b"\x80\x04\x95", "model.bin") == "pickle (can run code)"
    assert registry.artifact_format(b"", "model.joblib") == "pickle (can run code)"
    assert registry.artifact_format(b"CBM1xxxx", "model.cbm") == "catboost cbm"
    assert registry.artifact_format(b"PK\x03\x04", "model.npz") == "npz (plain arrays)"
    assert registry.artifact_format(b"{L", "model.ubj") == "xgboost ubj"
    assert registry.artifact_format(b"{", "logreg.json") == "json"


def test_promote_rollback_and_append_only_history(engine, tmp_path):
    name = unique()
    for payload in (b"a", b"b", b"c"):
        register(engine, tmp_path, name, payload)
    registry.promote(engine, name, 1, "prod", changed_by="alice", reason="first")
    registry.promote(engine, name, 3, "prod", changed_by="bob")
    registry.promote(engine, name, 3, "prod")  # already there: no move, no row
    registry.promote(engine, name, 2, "candidate")
    assert registry.resolve(engine, f"{name}@prod").version == 3

    back = registry.rollback(engine, name, "prod", changed_by="carol")
    assert back.version == 1 and "prod" in back.aliases
    assert registry.resolve(engine, f"{name}@candidate").version == 2

    rows = registry.history(engine, name)
    moves = [(r["alias"], r["action"], r["from_version"], r["to_version"]) for r in rows]
    assert moves == [
        ("prod", "promote", None, 1),
        ("prod", "promote", 1, 3),
        ("candidate", "promote", None, 2),
        ("prod", "rollback", 3, 1),
    ]
    assert [r["changed_by"] for r in rows[:2]] == ["alice", "bob"]
    assert rows[0]["reason"] == "first"
    assert "@" in rows[2]["changed_by"]  # user@host by default
    assert all(r["changed_at"] is not None for r in rows)
    ids = [r["id"] for r in rows]
    assert ids == sorted(ids)

    # Rolling back again undoes the rollback; earlier rows stay as they were.
    assert registry.rollback(engine, name, "prod").version == 3
    again = registry.history(engine, name)
    assert again[: len(rows)] == rows and len(again) == len(rows) + 1

    with pytest.raises(MlkitError, match="nothing to roll back"):
        registry.rollback(engine, name, "candidate")
    with pytest.raises(MlkitError, match="does not exist"):
        registry.rollback(engine, name, "staging")
    with pytest.raises(MlkitError, match="unknown model"):
        registry.rollback(engine, "nosuch", "prod")
    with pytest.raises(MlkitError, match="unknown model"):
        registry.history(engine, "nosuch")
    with pytest.raises(MlkitError, match="version 7"):
        registry.promote(engine, name, 7, "prod")
    with pytest.raises(MlkitError, match="invalid alias"):
        registry.promote(engine, name, 1, "bad alias")


def test_promote_refused_when_validation_fails(engine, tmp_path):
    name = unique()
    register(engine, tmp_path, name, b"a")
    register(engine, tmp_path, name, b"b")
    registry.promote(engine, name, 1, "prod")
    seen = []

    def failing(mv):
        seen.append(mv.ref)
        return ["auc_pr 0.41 < gate 0.60", "features differ"]

    with pytest.raises(MlkitError) as refused:
        registry.promote(engine, name, 2, "prod", validate=failing)
    assert "auc_pr 0.41 < gate 0.60" in str(refused.value)
    assert "features differ" in str(refused.value)
    assert seen == [f"{name}:2"]
    assert registry.resolve(engine, f"{name}@prod").version == 1
    with engine.connect() as conn:
        moves = conn.execute(
            sa.select(sa.func.count()).where(model_alias_history.c.name == name)
        ).scalar()
    assert moves == 1
    assert registry.promote(engine, name, 2, "prod", validate=lambda mv: []).version == 2


def test_concurrent_registrations_get_distinct_versions(engine, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    name = unique()
    with ThreadPoolExecutor(4) as pool:
        versions = list(
            pool.map(lambda i: register(engine, tmp_path, name, b"x%d" % i).version, range(4))
        )
    assert sorted(versions) == [1, 2, 3, 4]


def fake_validation(monkeypatch, failures):
    """Stand in for the checks of mlkit.toolkit.validation: these tests register bytes, not
    models."""
    from mlkit.toolkit import validation

    calls = []

    def validation_failures(mv, config):
        calls.append(mv.ref)
        return failures(mv)

    monkeypatch.setattr(validation, "validation_failures", validation_failures)
    return calls


def test_cli_models_list_show_promote_rollback_history(engine, tmp_path, cli, monkeypatch):
    fake_validation(monkeypatch, lambda mv: [])
    url = engine.url.render_as_string(hide_password=False)
    artifacts = tmp_path / "artifacts"
    name = unique()
    register(engine, artifacts, name, b"a")
    register(engine, artifacts, name, b"b")
    env = {"MLKIT_DATABASE_URL": url, "MLKIT_ARTIFACTS_DIR": str(artifacts)}

    listed = cli("models", "list", name, "--json", env=env)
    assert listed.exit_code == 0, listed.output
    assert [m["version"] for m in json.loads(listed.stdout)] == [1, 2]
    assert cli("models", "list", name, env=env).exit_code == 0

    promoted = cli(
        "models", "promote", name, "2", "--alias", "prod", "--reason", "r", "--json", env=env
    )
    assert promoted.exit_code == 0, promoted.output
    moved = json.loads(promoted.stdout)
    assert (moved["from_version"], moved["to_version"], moved["model"]["aliases"]) == (
        None,
        2,
        ["prod"],
    )

    shown = cli("models", "show", f"{name}@prod", "--json", env=env)
    assert shown.exit_code == 0, shown.output
    document = json.loads(shown.stdout)
    assert document["version"] == 2 and document["artifact_check"] == "ok"
    assert cli("models", "show", f"{name}@prod", env=env).exit_code == 0

    cli("models", "promote", name, "1", "--alias", "prod", env=env)
    rolled = cli("models", "rollback", name, "--alias", "prod", "--json", env=env)
    assert rolled.exit_code == 0, rolled.output
    assert json.loads(rolled.stdout)["to_version"] == 2

    hist = cli("models", "history", name, "--json", env=env)
    assert hist.exit_code == 0, hist.output
    rows = json.loads(hist.stdout)
    assert [(r["action"], r["from_version"], r["to_version"]) for r in rows] == [
        ("promote", None, 2),
        ("promote", 2, 1),
        ("rollback", 1, 2),
    ]
    assert rows[0]["reason"] == "r" and "T" in rows[0]["changed_at"]
    assert cli("models", "history", name, env=env).exit_code == 0

    unknown = cli("models", "show", "nosuch@prod", env=env)
    assert unknown.exit_code == 1
    assert "error: unknown model reference" in unknown.stderr and name in unknown.stderr


def test_cli_promote_runs_validation_when_present(engine, tmp_path, cli, monkeypatch):
    calls = fake_validation(monkeypatch, lambda mv: ["sha256 mismatch"] if mv.version == 1 else [])
    url = engine.url.render_as_string(hide_password=False)
    name = unique()
    register(engine, tmp_path, name, b"a")
    register(engine, tmp_path, name, b"b")
    env = {"MLKIT_DATABASE_URL": url}
    refused = cli("models", "promote", name, "1", "--alias", "prod", env=env)
    assert refused.exit_code == 1
    assert "sha256 mismatch" in refused.stderr
    assert cli("models", "promote", name, "2", "--alias", "prod", env=env).exit_code == 0
    assert calls == [f"{name}:1", f"{name}:2"]
    assert registry.resolve(engine, f"{name}@prod").version == 2


@pytest.mark.parametrize(
    "command",
    [
        ["models", "list"],
        ["models", "show"],
        ["models", "promote"],
        ["models", "rollback"],
        ["models", "history"],
        ["status"],
    ],
)
def test_help_has_examples(cli, command):
    result = cli(*command, "--help")
    assert result.exit_code == 0
    assert "Example" in result.stdout
