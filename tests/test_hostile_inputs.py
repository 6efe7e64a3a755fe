"""No input reaches the `unexpected` handler: hostile arguments through the CLI, property-based.

Each command is driven with generated strings (unicode, empty, very long, SQL fragments,
paths), huge and negative numbers, NaN/inf text, odd durations, malformed JSON and references.
Every run must exit 0, 1 or 2 (3 where documented), print neither `unexpected` nor a
traceback, and leave the database as it was when it failed.

Profiles: `ci` (the default: a fixed seed, 25 examples per command) and `long` (500 examples,
random), picked with `HYPOTHESIS_PROFILE=long pytest -n 0 tests/test_hostile_inputs.py`.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from datetime import datetime

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from serving import serve_candidate_if_kept

settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=25,
    deadline=None,
    # The world is module-scoped; conftest's autouse environment fixture is function-scoped
    # and only resets variables every example passes explicitly anyway.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.register_profile(
    "long",
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

NOW = "2026-02-16T00:00:00"

# Tables whose every row is compared before and after a failed command; the rest by count.
CHECKSUMMED = (
    "model_versions",
    "model_aliases",
    "model_alias_history",
    "training_runs",
    "bandit_arms",
    "bandit_generations",
    "market_data",
    "etl_watermarks",
    "drift_checks",
    "demo_worlds",
)

HOSTILE_TEXT = [
    "",
    " ",
    "0",
    "-1",
    "1; DROP TABLE orders--",
    "' OR '1'='1",
    "../../etc/passwd",
    "/etc/passwd",
    "/",
    ".",
    "NaN",
    "nan",
    "inf",
    "-inf",
    "Infinity",
    "1e308",
    "-1e308",
    "99999999999999999999",
    "-99999999999999999999",
    "ünïcødé",
    "😀💥",
    "%s%n",
    "{}",
    "[]",
    "null",
    "\t\n",
    "a" * 5000,
    "\u202e",
    "--help",
    "-",
    "🚀" * 300,
]
HOSTILE_DURATIONS = [
    "99999999d",
    "-5d",
    "1e9h",
    "0d",
    "0",
    "1.5d",
    "d",
    "9" * 400 + "d",
    "NaNd",
    "infd",
    "-0d",
    "1e308d",
    "99999999999999999999h",
    "5x",
    "2026-13-45",
    "0001-01-01",
    "9999-12-31",
    "1970-01-01",
    "2026-02-30",
    "2026-01-01T25:00:00",
    "last",
    "2026-01-01T00:00:00+99:00",
]
HOSTILE_REFS = [
    "fraud@",
    "fraud:-1",
    "fraud:99999999999999999999",
    "fraud:0",
    "@prod",
    ":",
    "fraud:abc",
    "fraud@prod",
    "fraud:1",
    "fraud",
    "recommender@prod",
    "nosuch@prod",
    "fraud:1.5",
    "fraud:1e3",
    "fraud@@prod",
    "fraud:1:2",
    "fraud:nan",
    "fraud: 1",
]

text = st.one_of(st.sampled_from(HOSTILE_TEXT), st.text(max_size=40))
number_text = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["nan", "inf", "-inf", "1e400", "0x10", "1_000", ""]),
)
duration = st.one_of(
    st.sampled_from(HOSTILE_DURATIONS),
    st.builds(
        "{}{}".format,
        st.one_of(st.integers(min_value=-(10**12), max_value=10**12), st.floats()),
        st.sampled_from(["d", "h", "m", "s", "w", ""]),
    ),
    text,
)
reference = st.one_of(st.sampled_from(HOSTILE_REFS), text)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """SQLite with a seeded demo world, the fraud logreg as prod, a recommender and a bandit."""
    from typer.testing import CliRunner

    from mlkit.commands.main import app
    from mlkit.toolkit.db import init_schema, make_engine
    from mlkit.toolkit.demo.seed import seed_demo

    root = tmp_path_factory.mktemp("hostile")
    url = f"sqlite:///{root}/world.db"
    config = root / "config.yaml"
    config.write_text("redis:\n  enabled: false\n")
    env = {
        "MLKIT_DATABASE_URL": url,
        "MLKIT_HOME": str(root / "home"),
        "MLKIT_CONFIG": str(config),
        "MLKIT_NOW": NOW,
    }
    engine = make_engine(url)
    init_schema(engine)
    seed_demo(engine, orders=3000, days=45, seed=3, start=datetime(2026, 1, 1))
    runner = CliRunner()
    for args in (
        ["train", "fraud", "--model", "logreg", "--alias", "prod"],
        ["train", "recommender", "--days", "60"],
        ["train", "mab", "--since", "60d"],
    ):
        result = runner.invoke(app, args, env=env)
        # These tests need a serving version, not a good one.
        serve_candidate_if_kept(result, engine, args[1].replace("mab", "pricing"))
    yield World(runner, app, env, engine, root)
    engine.dispose()


class World:
    def __init__(self, runner, app, env, engine, root):
        self.runner, self.app, self.env, self.engine, self.root = runner, app, env, engine, root

    def fingerprint(self) -> dict:
        """Row counts of every table and a checksum of the rows of the key ones."""
        from mlkit.toolkit import schema

        found = {}
        with self.engine.connect() as conn:
            for name, table in schema.metadata.tables.items():
                found[name] = conn.execute(sa.select(sa.func.count()).select_from(table)).scalar()
            for name in CHECKSUMMED:
                rows = sorted(
                    repr(tuple(row))
                    for row in conn.execute(sa.select(schema.metadata.tables[name]))
                )
                found[f"{name}#sha256"] = hashlib.sha256("\n".join(rows).encode()).hexdigest()
        return found

    def file(self, content: bytes | str, suffix: str = "") -> str:
        path = self.root / f"input-{uuid.uuid4().hex[:8]}{suffix}"
        path.write_bytes(
            content.encode("utf-8", "surrogatepass") if isinstance(content, str) else content
        )
        return str(path)

    def run(self, *args: str, codes=(0, 1, 2), stdin: str | None = None):
        """Run `mlkit args`; assert the property; return the result."""
        before = self.fingerprint()
        result = self.runner.invoke(self.app, list(args), env=self.env, input=stdin)
        shown = f"mlkit {' '.join(map(repr, args))}\n{result.output}"
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            f"{shown}\nraised {result.exception!r}"
        )
        assert result.exit_code in codes, shown
        assert "unexpected" not in result.output, shown
        assert "Traceback" not in result.output, shown
        if result.exit_code != 0:
            assert self.fingerprint() == before, f"{shown}\nchanged the database"
        return result


# -- fraud: predict, score, etl, drift -------------------------------------------------------

ORDER_FIELDS = {
    "buyer_wallet_id": st.one_of(st.integers(min_value=-(10**25), max_value=10**25), text),
    "event_id": st.one_of(st.integers(min_value=-(10**25), max_value=10**25), text),
    "price": st.one_of(st.floats(), st.integers(min_value=-(10**400), max_value=10**400), text),
    "payment_method": st.one_of(st.sampled_from(["paypal", "credit_card", "crypto"]), text),
    "created_at": st.one_of(st.sampled_from(HOSTILE_DURATIONS), text, st.integers(), st.floats()),
    "is_resale": st.one_of(st.booleans(), text, st.integers()),
    "geo_lat": st.one_of(st.floats(), text),
    "geo_lon": st.one_of(st.floats(), text),
}
VALID_ORDER = {
    "buyer_wallet_id": 12,
    "event_id": 3,
    "price": 80,
    "payment_method": "paypal",
    "created_at": "2026-02-10T12:00:00",
}
any_json = st.recursive(
    st.one_of(st.none(), st.booleans(), st.floats(), st.integers(), st.text(max_size=10)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def order_json(draw) -> str:
    kind = draw(st.sampled_from(["fields", "fields", "malformed", "any"]))
    if kind == "malformed":
        return draw(
            st.one_of(
                st.sampled_from(
                    [
                        "",
                        "{",
                        "}",
                        "[1,2",
                        '{"price": }',
                        "{'price': 1}",
                        "NaN",
                        "null",
                        "[]",
                        '"x"',
                        '{"price": NaN}',
                        '{"price": Infinity}',
                        "\x00",
                        json.dumps(VALID_ORDER)[:-1],
                    ]
                ),
                text,
            )
        )
    if kind == "any":
        return json.dumps(draw(any_json))
    order = dict(VALID_ORDER)
    for field in draw(st.lists(st.sampled_from(sorted(ORDER_FIELDS)), min_size=1, max_size=3)):
        order[field] = draw(ORDER_FIELDS[field])
    for field in draw(st.lists(st.sampled_from(sorted(VALID_ORDER)), max_size=1)):
        order.pop(field, None)
    return json.dumps(order)  # NaN and Infinity come out as such: not JSON, on purpose


@pytest.mark.slow
@given(order=order_json(), model=st.one_of(st.just("fraud@prod"), reference))
@example(order='{"price": "eighty"}', model="fraud@prod")
@example(order=json.dumps({**VALID_ORDER, "buyer_wallet_id": "abc"}), model="fraud@prod")
@example(order=json.dumps({**VALID_ORDER, "buyer_wallet_id": 10**30}), model="fraud@prod")
@example(order=json.dumps(VALID_ORDER), model="recommender@prod")
@example(order=json.dumps({**VALID_ORDER, "price": -(10**400)}), model="fraud@prod")
def test_predict_fraud(world, order, model):
    world.run("predict", "fraud", order, "--model", model)


@given(order=order_json())
def test_predict_fraud_from_stdin(world, order):
    world.run("predict", "fraud", "-", stdin=order)


@given(since=duration, model=st.one_of(st.just("fraud@prod"), reference))
@example(since="99999999d", model="fraud@prod")
@example(since="1d", model="recommender@prod")
def test_score_fraud(world, since, model):
    world.run("score", "fraud", "--since", since, "--model", model, "--json")


@given(since=duration, until=duration)
@example(since="99999999d", until="1d")
def test_etl_run(world, since, until):
    world.run("etl", "run", "--since", since, "--until", until)


@given(window=duration, model=st.one_of(st.just("fraud@prod"), reference))
@example(window="99999999d", model="fraud@prod")
@example(window="30d", model="recommender@prod")
def test_drift_check(world, window, model):
    world.run("drift", "check", "--window", window, "--model", model, "--json", codes=(0, 1, 2, 3))


# -- the registry ----------------------------------------------------------------------------

name = st.one_of(st.sampled_from(["fraud", "recommender", "pricing", "nosuch"]), text)
version = st.one_of(
    st.sampled_from(["1", "2", "0", "-1", "99999999999999999999"]), number_text, text
)
alias = st.one_of(st.sampled_from(["candidate", "staging", "nosuch"]), text)


@given(ref=reference)
@example(ref="fraud:99999999999999999999")
@example(ref="fraud:²")
def test_models_show(world, ref):
    world.run("models", "show", ref, "--json")


@given(model_name=name, model_version=version, model_alias=alias, reason=text)
def test_models_promote(world, model_name, model_version, model_alias, reason):
    world.run(
        "models", "promote", model_name, model_version, "--alias", model_alias, "--reason", reason
    )


@given(model_name=name, model_alias=alias)
def test_models_rollback(world, model_name, model_alias):
    world.run("models", "rollback", model_name, "--alias", model_alias)


@given(model_name=name)
def test_models_history(world, model_name):
    world.run("models", "history", model_name, "--json")


@given(ref=reference, gate=st.one_of(st.none(), number_text))
def test_validate_model(world, ref, gate):
    world.run("validate", "model", ref, *(["--min-auc-pr", gate] if gate is not None else []))


# -- recommender and bandit ------------------------------------------------------------------

count = st.one_of(st.sampled_from(["10", "0", "-5", "101", "99999999999999999999"]), number_text)
an_id = st.one_of(
    st.sampled_from(["1", "0", "-1", "987654321", "99999999999999999999"]), number_text, text
)


@given(user=an_id, n=count)
def test_recommend_user(world, user, n):
    world.run("recommend", "user", user, "-n", n, "--json")


@given(product=an_id, n=count)
def test_recommend_product(world, product, n):
    world.run("recommend", "product", product, "-n", n, "--json")


@given(n=count, category=text)
def test_recommend_popular(world, n, category):
    world.run("recommend", "popular", "-n", n, "--category", category, "--json")


arm = st.one_of(st.sampled_from(["baseline", "surge_pricing", "early_bird", "ml_pricing"]), text)


@given(event=an_id, policy=st.one_of(st.sampled_from(["thompson", "ucb1", "egreedy"]), text))
@example(event="99999999999999999999", policy="thompson")
def test_mab_recommend(world, event, policy):
    world.run("mab", "recommend", "--event", event, "--policy", policy, "--json")


@given(event=an_id, chosen=arm, reward=number_text)
def test_mab_reward(world, event, chosen, reward):
    world.run("mab", "reward", "--event", event, "--arm", chosen, "--reward", reward, "--json")


# -- files: market CSVs, datasets, exports ---------------------------------------------------

cell = st.one_of(number_text, text, st.sampled_from(["2026-01-01", "1700000000", "1700000000000"]))


@st.composite
def market_csv(draw) -> str:
    columns = draw(
        st.one_of(
            st.just(["date", "open", "high", "low", "close", "volume"]),
            st.lists(
                st.sampled_from(
                    [
                        "date",
                        "timestamp",
                        "open",
                        "high",
                        "low",
                        "close",
                        "volume",
                        "Date",
                        "",
                        "x",
                        "close",
                    ]
                ),
                max_size=7,
            ),
        )
    )
    rows = draw(st.lists(st.lists(cell, min_size=len(columns), max_size=len(columns)), max_size=5))
    quote = lambda value: '"' + value.replace('"', '""') + '"'  # noqa: E731
    return "\n".join(",".join(map(quote, line)) for line in [columns, *rows]) + "\n"


@given(content=st.one_of(market_csv(), text), symbol=st.one_of(st.just("BTCUSDT"), text))
@example(
    content="date,open,high,low,close,volume\n1700000000,1,2,1,1,5\n1700000000000,1,2,1,1,5\n",
    symbol="BTCUSDT",
)
def test_ingest_market(world, content, symbol):
    world.run(
        "ingest", "market", "--csv", world.file(content, ".csv"), "--symbol", symbol, "--json"
    )


@given(days=number_text)
@example(days="99999999")
def test_export_training_data(world, days):
    world.run("export", "training-data", "--days", days, "--out", str(world.root / "export.json"))


@given(older_than=duration, batch=st.one_of(st.none(), number_text))
@example(older_than="99999999d", batch=None)
def test_retention_run_dry(world, older_than, batch):
    extra = ["--batch-size", batch] if batch is not None else []
    world.run("retention", "run", "--older-than", older_than, *extra, "--dry-run", "--json")


@given(since=duration, cutoff=duration)
@example(since="99999999d", cutoff="1d")
def test_dataset_build_fraud(world, since, cutoff):
    world.run("dataset", "build", "fraud", "--since", since, "--label-cutoff", cutoff, "--json")


not_parquet = st.one_of(
    st.binary(max_size=200), st.text(max_size=200), st.just(b"PAR1" + b"\0" * 20 + b"PAR1")
)


@given(content=not_parquet, suffix=st.sampled_from(["", ".parquet", ".csv", "/"]))
def test_inspect_dataset(world, content, suffix):
    if suffix == "/":  # a directory holding a broken data.parquet
        folder = world.root / f"snapshot-{uuid.uuid4().hex[:8]}"
        folder.mkdir()
        (folder / "data.parquet").write_bytes(
            content if isinstance(content, bytes) else content.encode()
        )
        path = str(folder)
    else:
        path = world.file(content, suffix)
    world.run("inspect", "dataset", path, "--json")


@given(path=text)
def test_inspect_dataset_path(world, path):
    world.run("inspect", "dataset", path, "--json")


@given(content=not_parquet, suffix=st.sampled_from(["", ".parquet", ".txt"]))
@example(content=b"not a parquet file", suffix=".parquet")
def test_train_fraud_on_a_bad_dataset_is_not_a_failed_training(world, content, suffix):
    world.run("train", "fraud", "--dataset", world.file(content, suffix), "--model", "logreg")


def test_a_bad_dataset_starts_no_cooldown(world):
    world.run("train", "fraud", "--dataset", world.file(b"not parquet", ".parquet"))
    retrained = world.run("train", "fraud", "--model", "logreg", "--alias", "", "--json")
    assert retrained.exit_code == 0, retrained.output


# -- the rest --------------------------------------------------------------------------------


@given(flag=st.sampled_from([[], ["--json"]]))
def test_config_show_and_db_status(world, flag):
    world.run("config", "show", *flag)
    world.run("db", "status", *flag)


@given(database=text)
def test_a_hostile_database_url(world, database):
    world.run("--database", database, "db", "status")
