"""Reports: the fraud and drift pages of a seeded demo world, opened in headless Chromium with
every chart drawn; a tampered artifact refused; a version without a gate; `models diff`."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import unavailable

END = datetime(2026, 2, 15)
# Classes plotly.js gives a drawn trace: scatter and bar traces, a heatmap's image group.
TRACE_CLASSES = {"trace", "hm"}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A 30-day demo world with its pricing, an XGBoost version at prod and a logistic-
    regression one, a copy of the first registered as before gates (no verdict), then a day
    of prices x1.6."""
    from mlkit.toolkit.config import load_config
    from mlkit.toolkit.db import init_schema, make_engine
    from mlkit.toolkit.demo.seed import seed_demo
    from mlkit.toolkit.fraud.etl import run_etl
    from mlkit.toolkit.fraud.pipeline import train_fraud_model
    from mlkit.toolkit.registry import promote, read_artifact, register_model, resolve

    root = tmp_path_factory.mktemp("report")
    url = f"sqlite:///{root}/world.db"
    engine = make_engine(url)
    init_schema(engine)
    env = {"MLKIT_HOME": str(root / "home"), "MLKIT_DATABASE_URL": url}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        patch.setenv("MLKIT_NOW", END.isoformat())
        config = load_config()
        start = END - timedelta(days=30)
        seed_demo(engine, orders=8000, days=30, seed=3, families=("fraud", "pricing"), start=start)
        train_fraud_model(engine, config, kind="xgboost", alias=None)
        promote(engine, "fraud", 1, "prod", reason="report test")
        train_fraud_model(engine, config, dataset="latest", kind="logreg", alias=None)
        first = resolve(engine, "fraud:1")
        data = read_artifact(first, config.artifacts_dir)
        register_model(
            engine,
            config.artifacts_dir,
            name="fraud",
            family="fraud",
            write_artifact=lambda path: path.write_bytes(data),
            filename=first.artifact_path.name,
            metrics={k: v for k, v in first.metrics.items() if k not in ("gate", "baselines")},
            params=first.params,
            features=first.features,
            input_example=first.input_example,
            dataset_ref=first.dataset_ref,
        )
        now = END + timedelta(days=1)
        patch.setenv("MLKIT_NOW", now.isoformat())
        seed_demo(engine, days=1, append=True, shift={"price": 1.6})
        run_etl(engine, END, now)
    yield {"engine": engine, "config": config, "env": env | {"MLKIT_NOW": now.isoformat()}}
    engine.dispose()


@pytest.fixture
def run(world, cli, monkeypatch):
    """`mlkit ...` on the world's database, home and clock."""
    for name, value in world["env"].items():
        monkeypatch.setenv(name, value)
    return cli


def written(result) -> dict:
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert Path(document["path"]).is_file()
    return document


class ChartTree(HTMLParser):
    """Per plotly chart div (by id), the classes of every element inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.charts: dict[str, set[str]] = {}
        self.stack: list[tuple[str, str | None]] = []  # (tag, chart id opened by it)

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        classes = set((attributes.get("class") or "").split())
        opened = attributes.get("id") if "plotly-graph-div" in classes else None
        if opened:
            self.charts[opened] = set()
        for _, chart in self.stack:
            if chart:
                self.charts[chart] |= classes
        if tag not in ("img", "br", "input", "meta", "link", "image", "path", "rect", "line"):
            self.stack.append((tag, opened))

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                return


def browser() -> str:
    found = next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p),
        None,
    )
    if found is None:
        unavailable("Chromium is not installed (apt-get install -y chromium)")
    return found


def drawn_charts(path: Path) -> dict[str, set[str]]:
    """The page opened in headless Chromium, its scripts run: each chart's classes."""
    result = subprocess.run(
        [
            browser(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=10000",
            "--dump-dom",
            path.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    tree = ChartTree()
    tree.feed(result.stdout)
    return tree.charts


def assert_every_chart_drawn(document: dict) -> None:
    page = Path(document["path"]).read_text()
    # Self-contained: no script, stylesheet or image fetched from anywhere.
    assert not re.search(r"""<(script|link|img)\b[^>]*(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert page.count("<script>") >= 1 + len(document["charts"])
    charts = drawn_charts(Path(document["path"]))
    expected = {f"chart-{name}" for name in document["charts"]}
    assert set(charts) == expected
    for chart, classes in charts.items():
        assert "main-svg" in classes, f"{chart} has no svg"
        assert classes & TRACE_CLASSES, f"{chart} drew no trace"


FRAUD_CHARTS = {
    "gate_margins",
    "vs_baselines",
    "pr_curve",
    "roc_curve",
    "calibration",
    "decisions",
    "importances",
    "contributions",
    "missing_share",
}


@pytest.mark.slow
def test_fraud_report_opens_with_every_chart_drawn(run, world, tmp_path):
    document = written(run("report", "model", "fraud@prod", "--json"))
    assert set(document["charts"]) == FRAUD_CHARTS
    assert Path(document["path"]).name == "fraud-prod.html"
    assert "/reports/" in document["path"]
    page = Path(document["path"]).read_text()
    assert "passed: auc_pr" in page or "failed: auc_pr" in page
    assert "oracle (true probability)" in page and "MANUAL_REVIEW" in page
    assert_every_chart_drawn(document)


@pytest.mark.slow
def test_drift_report_opens_with_every_chart_drawn(run, world, tmp_path):
    from mlkit.toolkit.fraud.columns import FEATURES

    out = tmp_path / "drift.html"
    document = written(run("report", "drift", "--window", "1d", "--out", str(out), "--json"))
    assert document["path"] == str(out.resolve())
    assert document["charts"] == [f"drift_{name}" for name in FEATURES]
    page = out.read_text()
    # The day of prices x1.6 shows, with the statistic and threshold in its chart's title.
    assert "drift in" in page and "price_deviation_ratio" in page
    assert re.search(r"price_deviation_ratio: \w+ [\d.e-]+ \(threshold", page)
    assert_every_chart_drawn(document)


def test_a_version_without_a_gate_says_so(run, world, tmp_path):
    out = tmp_path / "old.html"
    written(run("report", "model", "fraud:3", "--out", str(out), "--json"))
    page = out.read_text()
    assert "no baseline verdict" in page
    assert "chart-gate_margins" not in page and "chart-pr_curve" in page


def test_a_tampered_artifact_is_refused(run, world, tmp_path):
    from mlkit.toolkit.registry import resolve

    mv = resolve(world["engine"], "fraud:2")
    artifact = world["config"].artifacts_dir / mv.artifact_path
    original = artifact.read_bytes()
    out = tmp_path / "tampered.html"
    try:
        artifact.write_bytes(original.replace(b"0", b"1", 1))
        result = run("report", "model", "fraud:2", "--out", str(out))
    finally:
        artifact.write_bytes(original)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("error: artifact of fraud:2") and "sha256" in lines[0]
    assert "Traceback" not in result.output and not out.exists()


def test_an_unknown_reference_is_one_error_line(run, world):
    result = run("report", "model", "fraud:99")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: unknown model reference 'fraud:99'")


def test_models_diff_of_two_fraud_versions(run, world):
    document = json.loads(run("models", "diff", "fraud:1", "fraud:2", "--json").stdout)
    assert (document["a"], document["b"]) == ("fraud:1", "fraud:2")
    rows = {(r["section"], r["key"]): r for r in document["rows"]}
    assert (
        rows[("params", "model")]["a"] == "xgboost" and rows[("params", "model")]["b"] == "logreg"
    )
    auc = rows[("metrics", "auc_pr")]
    assert auc["change"] == pytest.approx(auc["b"] - auc["a"])
    assert document["features"] == {"shared": 18, "only_a": [], "only_b": []}
    table = run("models", "diff", "fraud:1", "fraud:2")
    assert table.exit_code == 0 and "auc_pr" in table.stdout and "xgboost" in table.stdout


def test_pricing_report_draws_its_arms(run, world, tmp_path):
    from mlkit.toolkit.pricing.train import train_bandit

    train_bandit(world["engine"], world["config"], since="30d", alias=None)
    out = tmp_path / "pricing.html"
    document = written(run("report", "model", "pricing", "--out", str(out), "--json"))
    assert {"arm_pulls", "arm_means"} <= set(document["charts"])
    assert "Beta posterior 90% interval" in out.read_text()
    assert_every_chart_drawn(document)
