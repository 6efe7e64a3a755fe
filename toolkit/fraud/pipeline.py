"""`mlkit train fraud` end to end: dataset, training run, registry, alias."""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy.engine import Engine

from ..datasets import resolve_pointer
from ..errors import MlkitError
from ..identity import database_home
from .columns import FEATURES

log = logging.getLogger("mlkit.train")


def dataset_path(
    engine: Engine, config, dataset: str, *, catch_up: bool = True, engine_name: str | None = None
) -> Path:
    """The snapshot to train on. `new`: catch the features up (unless `catch_up` is off)
    and build a fresh snapshot now, on `engine_name`; `latest`, `current` or a PATH: reuse
    that snapshot (built fresh when there is none yet)."""
    if dataset not in ("new", "latest", "current"):
        return Path(dataset)
    if dataset != "new":
        datasets_dir = database_home(config, engine).datasets_dir
        try:
            return resolve_pointer(datasets_dir, "fraud", dataset)
        except MlkitError:
            if dataset == "current" and (datasets_dir / "fraud" / "_LATEST").is_file():
                raise
        log.info("[TRAIN] No fraud dataset yet: building one")
    from ..spark.dataset import build_configured
    from ..spark.features import run_configured

    if catch_up:
        etl, _ = run_configured(engine, config, "last", None, engine_name)
        log.info(
            "[TRAIN] Features caught up: %d new order(s), %d row(s) written, watermark %s",
            etl.new_orders,
            etl.rows,
            etl.watermark,
        )
    built, _ = build_configured(engine, config, requested=engine_name, set_current=dataset != "new")
    return built.path


def train_fraud_model(
    engine: Engine,
    config,
    *,
    dataset: str = "new",
    kind: str = "xgboost",
    alias: str | None = "prod",
    force: bool = False,
    catch_up: bool = True,
    engine_name: str | None = None,
) -> dict:
    """Fit on the snapshot's time split, judge the test scores against the baselines and
    `fraud@prod` on the same rows, register the version with its verdict, then promote it:
    `candidate` once it loads, `alias` once its gate passes too. A candidate that fails
    while nothing serves `alias` yet leaves the logreg baseline serving when that one
    beats the prior (`validation.with_fallback`). `engine_name` (local, spark, auto; default
    `engine.name`) says who fits: this process or Spark (`spark/train.py`)."""
    from ..runs import training_run
    from ..validation import CandidateRejected, promote_trained, with_fallback
    from .family import judge
    from .train import fit_fraud, fit_split, load_dataset

    # A snapshot PATH the user named is read before the run: a bad argument is not a failed
    # training, so it starts no retry cooldown.
    reuse = dataset in ("new", "latest", "current") or engine_name == "spark"
    named = None if reuse else load_dataset(Path(dataset))
    cooldown = int(config.get("training.retry_cooldown_sec"))
    with training_run(engine, "fraud", cooldown_seconds=cooldown, force=force) as run:
        path = dataset_path(engine, config, dataset, catch_up=catch_up, engine_name=engine_name)
        chosen, engine_reason = _engine(engine, config, engine_name)
        if chosen == "spark":
            from ..spark.train import fit_fraud_spark

            result, rows, counts, manifest = fit_fraud_spark(
                config, path, kind, config.get("fraud.label_delay_days")
            )
        else:
            frame, manifest = named or load_dataset(path)
            result = fit_fraud(frame, kind, config.get("fraud.label_delay_days"))
            rows, counts = len(frame), frame["label"].value_counts()
        logreg = fit_split(result.split, "logreg") if kind != "logreg" else None
        oracle = _oracle(engine, result.split.test)
        verdict = judge(engine, config, result.split, kind, result.test_scores, logreg=logreg)
        mv = _register(engine, config, result, verdict, oracle, path)
        run.finish(
            version=mv.version,
            n_samples=rows,
            n_features=len(FEATURES),
            class_distribution={"fraud": int(counts.get(1, 0)), "legit": int(counts.get(0, 0))},
            metrics={k: v for k, v in mv.metrics.items() if isinstance(v, float)},
        )
        promoted = None
        if alias:  # inside the run: a version failing its gate makes the run `rejected`
            reason = f"trained on {manifest.get('run_id', path.name)}"
            try:
                promote_trained(engine, config, mv, alias, reason=reason)
            except CandidateRejected as rejected:

                def fallback() -> tuple | None:
                    if logreg is None:  # the candidate is the baseline itself
                        return None
                    base_verdict = judge(engine, config, logreg.split, "logreg", logreg.test_scores)
                    base = _register(engine, config, logreg, base_verdict, oracle, path)
                    beats = "beats the no-skill prior: " if base_verdict.passed else ""
                    return base, f"logreg baseline, {beats}{base_verdict.summary()}"

                raise with_fallback(
                    engine, config, rejected, mv, alias, fallback, label=kind, reason=reason
                ) from None
            promoted = alias
    return {
        "model": "fraud",
        "version": mv.version,
        "kind": kind,
        "metrics": mv.metrics,
        "alias": promoted,
        "artifact": str(mv.artifact_path),
        "dataset": str(path),
        "engine": engine_reason,
    }


def _engine(engine: Engine, config, requested: str | None) -> tuple[str, str]:
    """The engine that fits, and why: `requested` or `engine.name`; `auto` counts orders
    against engine.auto_rows, as etl run and dataset build do."""
    from ..spark.features import order_count
    from ..spark.session import choose_engine

    chosen, reason = choose_engine(config, requested, lambda: order_count(engine))
    log.info("[TRAIN] %s", reason)
    return chosen, reason


def _oracle(engine: Engine, test) -> dict:
    """The oracle's figures on the test orders of a demo world; empty elsewhere."""
    from ..demo.truth import fraud_probabilities
    from .train import oracle_metrics

    truth = fraud_probabilities(engine, test["order_id"])
    if truth is None:
        return {}
    metrics = oracle_metrics(truth, test)
    log.info(
        "[TRAIN] Oracle (true probabilities) test AUC-PR %.4f",
        metrics.get("oracle_auc_pr", float("nan")),
    )
    return metrics


def _register(engine: Engine, config, training, verdict, oracle: dict, path: Path):
    """`training`'s model as the next fraud version: its test metrics beside the oracle's,
    its split, baselines and gate verdict, its parameters and five test rows to check it by."""
    from ..registry import register_model

    metrics = dict(training.metrics) | oracle
    metrics["split"] = training.split.describe()
    metrics["baselines"] = dict(verdict.baselines)
    metrics["gate"] = verdict.as_dict()
    example = training.split.test.head(5)[list(FEATURES)]
    example = example.astype(object).where(example.notna(), None).to_dict("records")
    return register_model(
        engine,
        config.artifacts_dir,
        name="fraud",
        family="fraud",
        write_artifact=training.model.save,
        filename=training.model.filename,
        metrics=metrics,
        params=training.model.params(),
        features=list(FEATURES),
        input_example=example,
        dataset_ref=str(path),
    )
