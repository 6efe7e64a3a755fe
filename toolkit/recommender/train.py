"""`mlkit train recommender`: the blend graded on a global time cut beside popularity, item
co-occurrence and the serving version, then fitted on the whole window, registered as
`candidate` and promoted when its gate passes, and remembered on disk as the last good one.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from sqlalchemy.engine import Engine

from ..errors import MlkitError, TooLittleData
from ..identity import database_home
from .data import ShopData, load_shop_data
from .evaluate import BASELINES, BlendSettings, Evaluation, evaluate, fit_on, prod_hits, time_split
from .model import RecommenderModel
from .serve import remember_last_good

log = logging.getLogger("mlkit.train")

METRIC = "hit_rate_at_10"
FEATURES = ["name", "category", "gender", "color", "material", "size", "price", "rating"]


def check_enough_interactions(data: ShopData, minimum: int) -> None:
    """A model from a near-empty window would replace the serving one with noise: refuse."""
    n = len(data.interactions)
    if data.products.empty:
        why = "and no products"
    elif n < minimum:
        why = f"fewer than recommender.min_interactions ({minimum})"
    elif not len(time_split(data.interactions, max_users=1).users):
        why = "and no user active both before and after the holdout's time cut"
    else:
        return
    raise TooLittleData(
        f"{n:,} interactions between {data.window_start:%Y-%m-%d %H:%M} and "
        f"{data.window_end:%Y-%m-%d %H:%M} UTC, {why}: the recommender is left as it is",
        hint="widen --days (it counts back from now; --as-of moves now), "
        "or load interactions (try: mlkit demo seed)",
    )


def serving_reference(engine: Engine, config, data: ShopData, evaluation: Evaluation, settings):
    """`recommender@prod`'s hit indicators on the holdout's users (see `prod_hits` for how),
    or None with the reason it is left out."""
    from ..registry import read_artifact, resolve

    try:
        mv = resolve(engine, "recommender@prod")
    except MlkitError:
        return None, None
    try:
        prod = RecommenderModel.load(read_artifact(mv, config.artifacts_dir))
        found, how = prod_hits(prod, mv.params or {}, data, evaluation.holdout, settings)
    except Exception as exc:  # a serving model that cannot score is no reference
        return None, f"{mv.ref} not compared: {type(exc).__name__}: {exc}"
    return (mv.ref, found), f"{mv.ref} {how}"


def judge(evaluation: Evaluation, prod):
    """The promotion gate on the holdout's users: the blend against the best baseline and
    the serving version, paired user by user."""
    from ..gate import judge as gate_judge

    found = evaluation.hits
    return gate_judge(
        metric=METRIC,
        score=lambda truth, predictions: float(np.mean(predictions)),
        truth=np.ones(len(found["model"])),
        candidate=found["model"],
        baselines={name: found[name] for name in BASELINES},
        prod=prod,
        unit="user",
    )


def holdout_metrics(evaluation: Evaluation, verdict, compared: str | None) -> dict:
    """What the version is registered with: the blend's figures beside its references."""
    found = {name: float(hits.mean()) for name, hits in evaluation.hits.items()}
    holdout = evaluation.holdout
    return {
        METRIC: found["model"],
        "ndcg_at_10": evaluation.ndcg,
        "popular_hit_rate_at_10": found["popularity"],
        "content_hit_rate_at_10": found["content"],
        "catalog_coverage": evaluation.coverage,
        "eval_users": len(holdout.users),
        "holdout": {
            "cut": str(holdout.cut),
            "train_rows": len(holdout.train),
            "mix": list(evaluation.mix),
            **evaluation.tuning,
        },
        "baselines": {name: found[name] for name in BASELINES},
        "gate": verdict.as_dict(),
        "prod_comparison": compared,
    }


def train_recommender(
    engine: Engine, config, *, days: float = 90, alias: str | None = "prod", force: bool = False
) -> dict:
    """Evaluate, fit and register the recommender on the interactions of the last `days`; too
    few interactions raise TooLittleData before any run is recorded."""
    from ..registry import register_model
    from ..runs import training_run
    from ..validation import promote_trained

    settings = BlendSettings.from_config(config)
    cooldown = int(config.get("training.retry_cooldown_sec"))
    data = load_shop_data(engine, days)
    check_enough_interactions(data, int(config.get("recommender.min_interactions")))
    with training_run(engine, "recommender", cooldown_seconds=cooldown, force=force) as run:
        log.info(
            "[TRAIN] Products: %d, interactions: %d, users: %d (last %g days)",
            len(data.products),
            len(data.interactions),
            data.interactions["user_id"].nunique(),
            days,
        )
        evaluation = evaluate(data, settings)
        prod, compared = serving_reference(engine, config, data, evaluation, settings)
        verdict = judge(evaluation, prod)
        metrics = holdout_metrics(evaluation, verdict, compared)
        log.info("[TRAIN] %s", verdict.summary())
        model = fit_on(data.products, data.interactions, data.reviews, settings, evaluation.mix)
        kinds = data.interactions["interaction_type"].value_counts()
        mv = register_model(
            engine,
            config.artifacts_dir,
            name="recommender",
            family="recommender",
            write_artifact=model.save,
            filename="model.npz",
            metrics=metrics,
            params={
                "weights": list(settings.weights),
                "mix": list(evaluation.mix),
                "recency_half_life_days": settings.recency_half_life_days,
                "days": days,
                "window_end": str(data.window_end),
                "products": len(model.product_ids),
                "users": len(model.user_ids),
            },
            features=FEATURES,
            input_example=_example(model),
        )
        run.finish(
            version=mv.version,
            n_samples=len(data.interactions),
            class_distribution={str(k): int(v) for k, v in kinds.items()},
            metrics={k: v for k, v in metrics.items() if isinstance(v, float)},
        )
        if alias:  # inside the run: a version kept from `alias` makes the run `rejected`
            promote_trained(engine, config, mv, alias, reason=f"trained on {days:g} days")
            if alias == "prod":
                remember_last_good(database_home(config, engine), mv)
    return {
        "model": "recommender",
        "version": mv.version,
        "alias": alias or None,
        "products": len(model.product_ids),
        "users": len(model.user_ids),
        "interactions": len(data.interactions),
        "metrics": metrics,
        "artifact": str(mv.artifact_path),
    }


def _example(model: RecommenderModel) -> list[dict]:
    """A user and a product the version must recommend for (`family.validation_checks`)."""
    busiest = np.diff(model.history.indptr)
    if not len(busiest) or not len(model.product_ids):
        return []
    return [
        {"user_id": int(model.user_ids[int(np.argmax(busiest))])},
        {"product_id": int(model.product_ids[int(np.argmax(model.popularity))])},
    ]


def load_model(path: Path) -> RecommenderModel:
    return RecommenderModel.load(Path(path).read_bytes())
