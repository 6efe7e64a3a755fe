"""The recommender: export, training with a holdout, serving, cold start and fallback."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from scipy import sparse
from too_little_data import refused_then_skipped

from mlkit.toolkit import schema
from mlkit.toolkit.config import load_config
from mlkit.toolkit.demo.seed import seed_demo
from mlkit.toolkit.identity import database_id, remember_identity
from mlkit.toolkit.recommender.data import load_shop_data
from mlkit.toolkit.recommender.evaluate import (
    BlendSettings,
    evaluate,
    hits,
    time_split,
    top_k,
)
from mlkit.toolkit.recommender.family import baselines
from mlkit.toolkit.recommender.model import (
    RecommenderModel,
    _pattern,
    fit,
    top_n,
    top_neighbours,
)
from mlkit.toolkit.registry import alias_target, list_versions, resolve
from mlkit.toolkit.train_all import train_all

UNREACHABLE = "postgresql+psycopg2://postgres@127.0.0.1:1/nowhere"


@pytest.fixture(scope="module")
def shop(engine):
    # 60 days ending today: all of it inside the 90-day windows that count back from now.
    seed_demo(engine, orders=30000, days=60, seed=9, families=("recommender",))
    return engine


def env_for(engine) -> dict:
    return {"MLKIT_DATABASE_URL": engine.url.render_as_string(hide_password=False)}


def catalogue(n: int = 40) -> pd.DataFrame:
    colors = np.array(["Red", "Blue", "Green", "Black"])[np.arange(n) % 4]
    categories = np.array(["Shirts", "Jeans"])[(np.arange(n) // 4) % 2]
    return pd.DataFrame(
        {
            "product_id": np.arange(1, n + 1),
            "name": [
                f"{c} {k} {i}" for i, (c, k) in enumerate(zip(colors, categories, strict=True))
            ],
            "category": categories,
            "gender": "U",
            "color": colors,
            "material": "Cotton",
            "size": "M",
            "price": 30.0 + np.arange(n),
        }
    )


def test_a_profile_of_red_shirts_recommends_red_shirts(tmp_path):
    products = catalogue()
    red_shirts = products[(products.color == "Red") & (products.category == "Shirts")]
    seen = red_shirts.product_id.to_numpy()[:3]
    interactions = pd.DataFrame(
        {
            "user_id": 1,
            "product_id": seen,
            "interaction_type": ["view", "purchase", "view"],
            "rating": None,
            "created_at": pd.to_datetime(["2026-03-01", "2026-03-02", "2026-03-03"]),
        }
    )
    model = fit(products, interactions, pd.DataFrame(columns=["product_id", "rating"]))
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = RecommenderModel.load(path.read_bytes())
    row = loaded.user_index(1)
    scores = loaded.batch_scores(np.array([row]))[:, 0]
    best = top_n(scores, 2, loaded.bought[row].indices)
    picked = products.set_index("product_id").loc[loaded.product_ids[best]]
    assert (picked.color == "Red").all() and (picked.category == "Shirts").all()
    assert seen[1] not in loaded.product_ids[best]  # bought
    assert np.allclose(scores, model.batch_scores(np.array([row]))[:, 0])
    history = loaded.history[row]
    assert np.allclose(scores, loaded.history_scores(history.indices, history.data))
    assert loaded.window_end.startswith("2026-03-03")


def test_kept_neighbours_are_the_top_of_exact_cooccurrence_and_older_artifacts_find_them(
    tmp_path,
):
    interactions = interactions_of(n_users=80, per_user=15)
    model = fit(catalogue(), interactions, pd.DataFrame(columns=["product_id", "rating"]))
    touched = _pattern(model.history)
    exact = (touched.T @ touched).toarray()
    kept = model.neighbours.toarray()
    for row in range(len(model.product_ids)):  # the 100 largest: here every co-occurring one
        assert np.array_equal(kept[row], exact[row])
    few = top_neighbours(model.history, k=3).toarray()
    for row in range(len(model.product_ids)):
        ranked = np.lexsort((np.arange(exact.shape[1]), -exact[row]))[:3]
        assert set(np.flatnonzero(few[row])) == set(ranked[exact[row, ranked] > 0])
        assert np.array_equal(few[row, ranked], exact[row, ranked])
    # An artifact written before the neighbours were kept finds them again from its history.
    model.mix = np.array([1.0, 1.0, 0.5])
    path = tmp_path / "model.npz"
    model.save(path)
    with np.load(path, allow_pickle=False) as data:
        older = {k: data[k] for k in data.files if not k.startswith("neighbours.")}
    np.savez_compressed(tmp_path / "older.npz", **older)
    loaded = RecommenderModel.load((tmp_path / "older.npz").read_bytes())
    assert (loaded.neighbours != model.neighbours).nnz == 0
    row = loaded.user_index(int(interactions["user_id"].iloc[0]))
    assert np.allclose(loaded.batch_scores(np.array([row])), model.batch_scores(np.array([row])))


def test_top_k_is_a_full_sort_without_the_excluded():
    rng = np.random.default_rng(3)
    for products, users in ((5000, 40), (37, 6), (8, 3)):
        scores = rng.integers(0, 50, (products, users)).astype(np.float32)  # many ties
        exclude = (rng.random((users, products)) < 0.2).astype(np.float32)
        expected = np.argsort(-np.where(exclude.T > 0, -np.inf, scores), axis=0, kind="stable")
        found = top_k(scores.copy(), sparse.csr_matrix(exclude))
        assert np.array_equal(found, expected[: min(10, products)].T)


def test_train_recommend_and_the_holdout_metrics(shop, cli):
    env = env_for(shop)
    out = cli("train", "recommender", "--days", "90", "--json", env=env)
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout)
    metrics = result["metrics"]
    assert {"hit_rate_at_10", "ndcg_at_10", "popular_hit_rate_at_10", "catalog_coverage"} <= set(
        metrics
    )
    assert 0 < metrics["hit_rate_at_10"] <= 1 and 0 < metrics["catalog_coverage"] <= 1
    assert result["alias"] == "prod"

    with shop.connect() as conn:
        i = schema.product_interactions
        buyer, bought = conn.execute(
            sa.select(i.c.user_id, i.c.product_id)
            .where(i.c.interaction_type == "purchase")
            .limit(1)
        ).one()
        purchases = set(
            conn.execute(
                sa.select(i.c.product_id).where(
                    i.c.user_id == buyer, i.c.interaction_type == "purchase"
                )
            ).scalars()
        )
    recs = json.loads(cli("recommend", "user", str(buyer), "-n", "20", "--json", env=env).stdout)
    assert recs["cold_start"] is False and len(recs["items"]) == 20
    assert not purchases & {item["product_id"] for item in recs["items"]}
    assert all({"product_id", "score", "reason"} <= set(item) for item in recs["items"])

    similar = json.loads(
        cli("recommend", "product", str(bought), "-n", "5", "--json", env=env).stdout
    )
    assert len(similar["items"]) == 5 and bought not in [i["product_id"] for i in similar["items"]]
    scores = [i["score"] for i in similar["items"]]
    assert scores == sorted(scores, reverse=True)

    cold = cli("recommend", "user", "987654321", "--json", env=env)
    assert cold.exit_code == 0 and json.loads(cold.stdout)["cold_start"] is True
    assert "no history" in cold.stderr

    category = similar["items"][0]["category"]
    popular = json.loads(
        cli("recommend", "popular", "--category", category, "-n", "3", "--json", env=env).stdout
    )
    assert {i["category"] for i in popular["items"]} == {category}

    for args, message in (
        (["product", "987654321"], "unknown product"),
        (["user", "1", "-n", "0"], "out of range"),
        (["user", "1", "-n", "101"], "out of range"),
        (["popular", "--category", "Mars"], "unknown category"),
    ):
        bad = cli("recommend", *args, env=env)
        assert bad.exit_code == 1 and message in bad.stderr, bad.output

    # A failed retraining leaves the serving version in place.
    failed = cli("train", "recommender", "--days", "-1", env=env)
    assert failed.exit_code == 1 and "--days must be positive" in failed.stderr
    again = json.loads(cli("recommend", "user", str(buyer), "--json", env=env).stdout)
    assert again["model"] == f"recommender:{result['version']}"

    # The database gone (its URL named this database when it last answered, as this
    # machine recorded): the last good artifact serves, and says so.
    remember_identity(load_config().artifacts_dir, UNREACHABLE, database_id(shop))
    down = cli(
        "recommend",
        "user",
        str(buyer),
        "-n",
        "20",
        "--json",
        env={"MLKIT_DATABASE_URL": UNREACHABLE},
    )
    assert down.exit_code == 0, down.output
    assert "database unreachable" in down.stderr and "last good artifact" in down.stderr
    assert json.loads(down.stdout)["items"] == recs["items"]


def test_no_database_and_no_artifact_is_a_clear_error(cli):
    out = cli("recommend", "popular", env={"MLKIT_DATABASE_URL": UNREACHABLE})
    assert out.exit_code == 1
    assert "unreachable" in out.stderr and "no recommender artifact" in out.stderr
    assert "Traceback" not in out.output


def test_export_in_the_shape_of_the_shop_endpoint(shop, cli, tmp_path):
    env = env_for(shop)
    out = cli("export", "training-data", "--days", "30", env=env)
    assert out.exit_code == 0, out.output
    document = json.loads(out.stdout)
    assert set(document) == {"products", "interactions", "metadata"}
    product = document["products"][0]
    assert {
        "id",
        "name",
        "category__name",
        "price",
        "gender",
        "color",
        "material",
        "size",
        "avg_rating",
        "review_count",
        "interaction_count",
    } <= set(product)
    meta = document["metadata"]
    assert meta["total_products"] == len(document["products"])
    assert meta["total_interactions"] == len(document["interactions"]) > 0
    assert meta["date_range_days"] == 30
    assert sum(p["interaction_count"] for p in document["products"]) == meta["total_interactions"]
    times = pd.to_datetime([i["created_at"] for i in document["interactions"]])
    assert (times.max() - times.min()).days <= 30

    target = tmp_path / "export"
    written = cli(
        "export", "training-data", "--days", "30", "--format", "csv", "--out", str(target), env=env
    )
    assert written.exit_code == 0, written.output
    assert len(pd.read_csv(target / "interactions.csv")) == meta["total_interactions"]
    assert json.loads((target / "metadata.json").read_text())["total_products"] == len(
        pd.read_csv(target / "products.csv")
    )
    refused = cli("export", "training-data", "--format", "parquet", env=env)
    assert refused.exit_code == 1 and "--out" in refused.stderr


def test_windows_count_back_from_now_and_too_few_interactions_keep_the_served_model(
    shop, cli, tmp_path
):
    env = env_for(shop)
    i = schema.product_interactions
    with shop.connect() as conn:
        end = conn.execute(sa.select(sa.func.max(schema.demo_worlds.c.end_ts))).scalar()
        last_two_days = conn.execute(
            sa.select(sa.func.count()).where(i.c.created_at > end - timedelta(days=2))
        ).scalar()
    as_of = f"{end:%Y-%m-%dT%H:%M:%S}"
    out = tmp_path / "window.json"
    exported = cli(
        "--as-of", as_of, "export", "training-data", "--days", "2", "--out", str(out), env=env
    )
    assert exported.exit_code == 0, exported.output
    meta = json.loads(out.read_text())["metadata"]
    assert meta["total_interactions"] == last_two_days > 0
    assert (meta["window_end"], meta["generated_at"]) == (f"{as_of}Z", f"{as_of}Z")
    # Ten days later the same two-day window is empty: it counts back from now.
    later = f"{end + timedelta(days=10):%Y-%m-%dT%H:%M:%S}"
    empty = cli("--as-of", later, "export", "training-data", "--days", "2", env=env)
    assert json.loads(empty.stdout)["metadata"]["total_interactions"] == 0

    versions = len(list_versions(shop, "recommender"))
    train = f"--as-of {later} train recommender --days 5"
    refused, skipped = refused_then_skipped(cli, env, train)
    assert "error: 0 interactions between" in refused.stderr
    assert "fewer than recommender.min_interactions (500)" in refused.stderr
    assert "hint: widen --days (it counts back from now" in refused.stderr
    assert skipped == {
        "model": "recommender",
        "status": "skipped",
        "reason": refused.stderr.splitlines()[0].removeprefix("error: "),
    }
    assert len(list_versions(shop, "recommender")) == versions
    with shop.connect() as conn:
        failed = conn.execute(
            sa.select(sa.func.count()).where(
                schema.training_runs.c.model_name == "recommender",
                schema.training_runs.c.status != "ok",
            )
        ).scalar()
    assert failed == 0


def interactions_of(n_users: int = 60, per_user: int = 12, seed: int = 0) -> pd.DataFrame:
    """Users looking at products of one colour each, at random moments of thirty days."""
    rng = np.random.default_rng(seed)
    user = np.repeat(np.arange(1, n_users + 1), per_user)
    colour = user % 4
    return pd.DataFrame(
        {
            "user_id": user,
            "product_id": 1 + colour + 4 * rng.integers(0, 10, len(user)),
            "interaction_type": rng.choice(["view", "add_to_cart", "purchase"], len(user)),
            "rating": np.nan,
            "created_at": pd.Timestamp("2026-03-01")
            + pd.to_timedelta(rng.integers(0, 30 * 86_400, len(user)), unit="s"),
        }
    )


def test_the_holdout_is_one_global_time_cut():
    interactions = interactions_of()
    holdout = time_split(interactions)
    times = pd.to_datetime(interactions["created_at"])
    train_times = pd.to_datetime(holdout.train["created_at"])
    later = interactions[times > holdout.cut]
    assert train_times.max() <= holdout.cut < pd.to_datetime(later["created_at"]).min()
    assert len(holdout.train) + len(later) == len(interactions)
    assert 0.15 <= len(later) / len(interactions) <= 0.25
    assert len(holdout.users) > 0
    for user, targets in zip(holdout.users, holdout.targets, strict=True):
        before = set(holdout.train.loc[holdout.train.user_id == user, "product_id"])
        after = set(later.loc[later.user_id == user, "product_id"])
        assert before and set(targets) == after - before


def test_baselines_never_see_held_out_interactions():
    interactions = interactions_of()
    holdout = time_split(interactions)
    product_ids = np.arange(1, 41)
    before = baselines(holdout.train, product_ids, holdout.users)
    # Everything after the cut rewritten: every held-out row a purchase of one product.
    later = interactions[pd.to_datetime(interactions["created_at"]) > holdout.cut]
    rewritten = interactions.copy()
    rewritten.loc[later.index, ["product_id", "interaction_type"]] = [40, "purchase"]
    again = time_split(rewritten)
    assert again.cut == holdout.cut
    pd.testing.assert_frame_equal(again.train, holdout.train)
    after = baselines(again.train, product_ids, holdout.users)
    for name in ("popularity", "cooccurrence"):
        assert np.array_equal(before[name], after[name])
        assert before[name].shape == (len(holdout.users), 10)
        for user, picks in zip(holdout.users, before[name], strict=True):  # never a seen one
            assert not set(picks) & set(
                holdout.train.loc[holdout.train.user_id == user, "product_id"]
            )
    # Co-occurrence follows the users' colours; popularity cannot.
    found = {n: hits(product_ids, before[n] - 1, holdout.targets).mean() for n in before}
    assert found["cooccurrence"] > found["popularity"]


def test_the_blend_beats_both_baselines_on_the_demo_shop(shop):
    with shop.connect() as conn:
        end = conn.execute(sa.select(sa.func.max(schema.demo_worlds.c.end_ts))).scalar()
    data = load_shop_data(shop, 90, now=end)
    evaluation = evaluate(data, BlendSettings.default())
    found = {name: h.mean() for name, h in evaluation.hits.items()}
    assert found["model"] >= 1.15 * max(found["popularity"], found["cooccurrence"]), found
    assert found["model"] > found["content"]
    # The evaluation's baselines are the family's, fitted on the training part alone.
    holdout = evaluation.holdout
    ids = np.sort(data.products["product_id"].to_numpy())
    for name, picks in baselines(holdout.train, ids, holdout.users).items():
        assert np.array_equal(
            hits(ids, np.searchsorted(ids, picks), holdout.targets), evaluation.hits[name]
        )


def test_shuffled_interactions_stay_candidate_and_prod_keeps_serving(shop, cli):
    """Last in the module: it shuffles the shop's interactions."""
    env = env_for(shop)
    trained = cli("train", "recommender", "--days", "90", "--json", env=env)
    assert trained.exit_code == 0, trained.output
    serving = json.loads(trained.stdout)["version"]
    assert alias_target(shop, "recommender", "prod") == serving
    gate = resolve(shop, f"recommender:{serving}").metrics["gate"]
    assert gate["passed"] and gate["unit"] == "user"
    i = schema.product_interactions
    with shop.begin() as conn:
        rows = pd.DataFrame(conn.execute(sa.select(i)).mappings().all())
        rows["product_id"] = np.random.default_rng(0).permutation(rows["product_id"].to_numpy())
        conn.execute(i.delete())
        conn.execute(i.insert(), rows.astype(object).where(rows.notna(), None).to_dict("records"))

    refused = cli("train", "recommender", "--days", "90", env=env)
    assert refused.exit_code == 3 and "rejected" in refused.stderr, refused.output
    document = train_all(shop, load_config())
    assert [e["status"] for e in document["results"] if e["model"] == "recommender"] == ["rejected"]
    versions = list_versions(shop, "recommender")
    assert alias_target(shop, "recommender", "prod") == serving
    assert alias_target(shop, "recommender", "candidate") == max(v.version for v in versions)
    for mv in versions:
        if mv.version > serving:
            assert not mv.metrics["gate"]["passed"] and "prod" not in mv.aliases
