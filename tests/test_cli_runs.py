"""The fraud chain as a user types it: seed, `etl run`, train, `score fraud`, `predict fraud`."""

from __future__ import annotations

import json

import pytest

NOW = "2026-01-21T00:00:00"  # the end of the seeded world
ORDER = {
    "buyer_wallet_id": 12,
    "event_id": 3,
    "price": 80,
    "payment_method": "paypal",
    "created_at": "2026-01-20T12:00:00",
}


@pytest.fixture(scope="module")
def mlkit(tmp_path_factory):
    """`mlkit ...` on a SQLite world of 3,000 orders with no validation gate on AUC-PR."""
    from typer.testing import CliRunner

    from mlkit.commands.main import app

    folder = tmp_path_factory.mktemp("runs")
    config = folder / "config.yaml"
    config.write_text("fraud:\n  min_auc_pr: 0.0\n")  # the gate is not what these tests are about
    runner = CliRunner()
    base = ["--config", str(config), "--database", f"sqlite:///{folder}/runs.db", "--as-of", NOW]
    env = {"MLKIT_HOME": str(folder / "home")}

    def run(*args: str, input: str | None = None):
        return runner.invoke(app, [*base, *args], env=env, input=input)

    seeded = run("demo", "seed", "--orders", "3000", "--days", "20", "--families", "fraud")
    assert seeded.exit_code == 0, seeded.output
    return run


def test_etl_run_features_every_order_then_only_new_ones(mlkit):
    first = mlkit("etl", "run", "--json")
    assert first.exit_code == 0, first.output
    document = json.loads(first.stdout)
    assert document["rows"] == 3000 and document["watermark"]
    again = mlkit("etl", "run", "--since", "last")
    assert again.exit_code == 0, again.output
    assert again.stdout.startswith("etl ") and "no new orders" in again.stdout


def test_score_fraud_scores_every_order_with_the_promoted_model(mlkit):
    # logreg: on 3,000 orders XGBoost is not significantly above it, so its gate keeps it
    # candidate; logreg clears its prior.
    trained = mlkit(
        "train", "fraud", "--dataset", "new", "--model", "logreg", "--alias", "prod", "--json"
    )
    assert trained.exit_code == 0, trained.output
    version = json.loads(trained.stdout)["version"]
    scored = mlkit("score", "fraud", "--json")
    assert scored.exit_code == 0, scored.output
    document = json.loads(scored.stdout)
    assert document["model"] == f"fraud:{version}" and document["rows"] == 3000
    assert sum(document["decisions"].values()) == 3000
    human = mlkit("score", "fraud", "--since", "2d", "--no-etl")
    assert human.exit_code == 0, human.output
    assert human.stdout.startswith(f"fraud:{version}: ") and "orders scored" in human.stdout


def test_predict_fraud_reads_one_order_as_an_argument_or_from_stdin(mlkit):
    argument = mlkit("predict", "fraud", json.dumps(ORDER))
    assert argument.exit_code == 0, argument.output
    answer = json.loads(argument.stdout)
    assert answer["decision"] in ("APPROVED", "REQUIRE_2FA", "MANUAL_REVIEW", "BLOCKED")
    assert 0 <= answer["fraud_score"] <= 1 and answer["model_version"].startswith("fraud:")
    piped = mlkit("predict", "fraud", "-", input=json.dumps(ORDER))
    assert piped.exit_code == 0, piped.output
    assert json.loads(piped.stdout)["fraud_score"] == answer["fraud_score"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"buyer_wallet_id": 12,', "the order is not valid JSON (Expecting"),
        ("[1, 2]", "the order must be a JSON object"),
        ("[" * 100_000, "the order is nested too deeply"),
    ],
)
def test_predict_fraud_refuses_what_is_not_one_json_object(mlkit, text, message):
    result = mlkit("predict", "fraud", text)
    assert result.exit_code == 1 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[1].startswith("hint: "), lines
    assert lines[0].startswith(f"error: {message}"), lines
