"""Two databases sharing one MLKIT_HOME: each trains, serves and falls back only to its own
models, and neither moves the other's files."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import sqlalchemy as sa
from serving import serve_candidate_if_kept

from mlkit.toolkit import schema
from mlkit.toolkit.config import load_config
from mlkit.toolkit.db import init_schema, make_engine
from mlkit.toolkit.demo.seed import seed_demo
from mlkit.toolkit.identity import database_id, known_database_id


def files_under(root: Path) -> dict[str, str]:
    """Every file under the root with the sha256 of its bytes."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }


class World:
    def __init__(self, folder: Path, seed: int) -> None:
        self.path = folder / f"shop{seed}.db"
        self.url = f"sqlite:///{self.path}"
        self.engine = make_engine(self.url)
        init_schema(self.engine)
        seed_demo(self.engine, orders=3000, days=30, seed=seed, families=("fraud", "recommender"))
        with self.engine.connect() as conn:
            o = schema.orders
            row = conn.execute(sa.select(o).limit(1)).mappings().one()
            i = schema.product_interactions
            self.user = conn.execute(
                sa.select(i.c.user_id).where(i.c.interaction_type == "purchase").limit(1)
            ).scalar_one()
        self.order = json.dumps(
            {
                "buyer_wallet_id": int(row["buyer_wallet_id"]),
                "event_id": int(row["event_id"]),
                "price": 80,
                "payment_method": "paypal",
                "created_at": "2026-01-25T12:00:00",
            }
        )

    def train(self, cli) -> None:
        from mlkit.toolkit.fraud.pipeline import train_fraud_model

        config = load_config(database_url=self.url)
        config.data["fraud"]["min_auc_pr"] = 0.0  # the gate is not what this test is about
        train_fraud_model(self.engine, config, kind="logreg", alias="prod", force=True)
        out = cli("--database", self.url, "train", "recommender", "--days", "90")
        serve_candidate_if_kept(out, self.engine, "recommender")
        self.recommend(cli)  # serving prod once records it as this database's LAST_GOOD

    def recommend(self, cli) -> dict:
        out = cli("--database", self.url, "recommend", "user", str(self.user), "--json")
        assert out.exit_code == 0, out.output
        return json.loads(out.stdout)

    def recommend_while_down(self, cli):
        """The same URL with the database unreachable: its file replaced by a folder."""
        aside = self.path.with_suffix(".aside")
        self.engine.dispose()
        os.replace(self.path, aside)
        self.path.mkdir()
        try:
            return cli("--database", self.url, "recommend", "user", str(self.user), "--json")
        finally:
            self.path.rmdir()
            os.replace(aside, self.path)


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    folder = tmp_path_factory.mktemp("worlds")
    a, b = World(folder, 3), World(folder, 4)
    yield a, b
    a.engine.dispose()
    b.engine.dispose()


def test_two_databases_keep_to_their_own_files(worlds, cli):
    a, b = worlds
    root = load_config().artifacts_dir
    a.train(cli)
    a_files = files_under(root / database_id(a.engine))
    assert any(name.endswith("LAST_GOOD.json") for name in a_files)
    b.train(cli)  # the same versions (v1) and names as A's

    ids = database_id(a.engine), database_id(b.engine)
    assert ids[0] != ids[1]
    assert files_under(root / ids[0]) == a_files, "training B touched A's files"
    assert not [p for p in root.rglob("*") if ".orphan-" in p.name]
    for world, identity in zip((a, b), ids, strict=True):
        with world.engine.connect() as conn:
            paths = conn.execute(sa.select(schema.model_versions.c.artifact_path)).scalars().all()
        assert paths and all(Path(p).parts[0] == identity for p in paths)
        datasets = load_config().datasets_dir / identity / "fraud"
        assert (datasets / "_LATEST").is_file()

    online = {}
    for world in (a, b):
        online[world.url] = world.recommend(cli)
        assert online[world.url]["model"] == "recommender:1"
        scored = cli("--database", world.url, "predict", "fraud", world.order)
        assert scored.exit_code == 0, scored.output
        assert json.loads(scored.stdout)["model_version"] == "fraud:1"
    assert online[a.url]["items"] != online[b.url]["items"]  # two different models

    # The database down: each falls back to its own LAST_GOOD, never the other's.
    for world in (a, b):
        assert known_database_id(root, world.url) == database_id(world.engine)
        down = world.recommend_while_down(cli)
        assert down.exit_code == 0, down.output
        assert "database unreachable" in down.stderr
        assert json.loads(down.stdout)["items"] == online[world.url]["items"]


def test_a_database_trained_before_identities_keeps_its_models(tmp_path, cli):
    world = World(tmp_path, 3)
    world.train(cli)
    root = load_config().artifacts_dir
    identity = database_id(world.engine)
    # Rewrite it as it was: files directly under the shared root, rows naming them there
    # (relative, and one absolute as the oldest rows did), no identity, no pointer of its own.
    os.replace(root / identity / "recommender", root / "recommender")
    os.replace(root / identity / "fraud", root / "fraud")
    (root / "recommender" / "LAST_GOOD.json").unlink()
    v = schema.model_versions
    with world.engine.begin() as conn:
        conn.execute(
            v.update()
            .where(v.c.name == "recommender")
            .values(artifact_path=sa.func.substr(v.c.artifact_path, len(identity) + 2))
        )
        conn.execute(
            v.update()
            .where(v.c.name == "fraud")
            .values(
                artifact_path=str(root) + "/" + sa.func.substr(v.c.artifact_path, len(identity) + 2)
            )
        )
    schema.bandit_generations.drop(world.engine)
    for file in (root / "databases").iterdir():
        file.unlink()

    down = world.recommend_while_down(cli)  # no pointer of its own yet: no fallback
    assert down.exit_code == 1 and "no recommender artifact of this database" in down.stderr

    served = world.recommend(cli)  # the old rows still load, and now have a pointer
    assert served["model"] == "recommender:1"
    assert cli("--database", world.url, "predict", "fraud", world.order).exit_code == 0
    assert database_id(world.engine) != identity  # a new identity, written once
    down = world.recommend_while_down(cli)
    assert down.exit_code == 0, down.output
    assert json.loads(down.stdout)["items"] == served["items"]

    # Its next version goes to its own folder; the old files stay where they were.
    before = files_under(root / "recommender")
    out = cli(
        "--database",
        world.url,
        "train",
        "recommender",
        "--days",
        "90",
        "--alias",
        "candidate",
        "--json",
    )
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["artifact"].startswith(database_id(world.engine) + "/")
    assert files_under(root / "recommender") == before
