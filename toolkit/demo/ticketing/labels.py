"""The true fraud probability of each order, the late and partial labels it gets, and the
security noise around them (failed logins, blacklists, the admin log)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ...geo import JET_SPEED_KMH, haversine_km
from .facts import (
    _FRAUD_LOGIT,
    _HOSTING_OCTETS,
    _KIND_LOGIT,
    _POPCOUNT,
    _QUICK_RESALE_SECONDS,
    _RESIDENTIAL_OCTETS,
    BOT,
    DAY,
    FAILED,
    HOUR,
    NORMAL,
    STOLEN,
)
from .world import _Clock, _concat, _ips, _join_text, _random_octets, _text, _Wallets

# ---------------------------------------------------------------- fraud truth and labels


def _fraud_features(wallets: _Wallets, orders: dict, transfers: dict) -> dict:
    """What each order's features could see before it: the buyer's last hour, age, payment methods
    and travel speed; a resale's markup and the actor's quick flips.

    Earlier periods' history comes from the state, except the hour before an append's first order.
    """
    n = len(orders["t"])
    position = np.arange(n)
    order = np.lexsort((position, orders["t"], orders["buyer"]))
    buyer, t = orders["buyer"][order], orders["t"][order]
    starts_group = np.r_[True, buyer[1:] != buyer[:-1]] if n else np.zeros(0, bool)
    group_start = np.maximum.accumulate(np.where(starts_group, position, 0))
    key = buyer.astype(np.int64) * 2**34 + t
    velocity = position - np.searchsorted(key, key - HOUR, side="left")

    age_days = (t - wallets.created[buyer]) / DAY

    method = orders["method"][order]
    known = (wallets.method_mask[buyer] >> method) & 1
    pair = buyer.astype(np.int64) * 8 + method
    by_pair = np.lexsort((position, pair))
    first_of_pair = by_pair[np.r_[True, pair[by_pair][1:] != pair[by_pair][:-1]]] if n else by_pair
    fresh = np.zeros(n, dtype=np.int64)
    fresh[first_of_pair] = 1
    fresh &= 1 - known
    running = np.cumsum(fresh)
    new_before = running - fresh - (running[group_start] - fresh[group_start])
    methods_before = _POPCOUNT[wallets.method_mask[buyer] & 63] + new_before

    lat, lon = orders["lat"][order], orders["lon"][order]
    prev_t = np.r_[np.nan, t[:-1].astype(float)]
    prev_lat, prev_lon = np.r_[np.nan, lat[:-1]], np.r_[np.nan, lon[:-1]]
    prev_t[starts_group] = wallets.last_t[buyer[starts_group]]
    prev_lat[starts_group] = wallets.last_lat[buyer[starts_group]]
    prev_lon[starts_group] = wallets.last_lon[buyer[starts_group]]
    hours = np.maximum(t - prev_t, 60.0) / HOUR
    speed = np.nan_to_num(haversine_km(prev_lat, prev_lon, lat, lon) / hours)

    unsort = np.empty_like(order)
    unsort[order] = position
    features = {
        "velocity_1h": velocity[unsort],
        "age_days": age_days[unsort],
        "methods_before": methods_before[unsort],
        "speed_kmh": speed[unsort],
    }
    actor = np.where(orders["resale"], orders["seller"], orders["buyer"])
    quick = transfers["resale"] & (transfers["t"] - transfers["minted"] < _QUICK_RESALE_SECONDS)
    flips = np.sort(
        transfers["from"][quick].astype(np.int64) * 2**34 + transfers["t"][quick].astype(np.int64)
    )
    features["quick_resales"] = (
        np.searchsorted(flips, actor.astype(np.int64) * 2**34 + orders["t"], side="left")
        - np.searchsorted(flips, actor.astype(np.int64) * 2**34, side="left")
        + wallets.quick_resales[actor]
    )
    face = np.full(n, np.nan)
    resale = orders["resale"]
    face[resale] = orders["face"][resale]
    features["markup"] = np.where(resale, orders["price"] / face, 1.0)
    features["resale"] = resale
    features["actor"] = actor
    features["actor_kind"] = wallets.kind[actor]
    return features


def _fraud_truth(rng: np.random.Generator, features: dict) -> dict:
    c = _FRAUD_LOGIT
    n = len(features["resale"])
    logit = (
        c["intercept"]
        + c["log_velocity_1h"] * np.log1p(features["velocity_1h"])
        + c["youth"] * np.clip(np.log(30.0 / np.maximum(features["age_days"], 0.01)), 0, None)
        + c["extra_payment_methods"] * np.clip(features["methods_before"] - 1, 0, None)
        + c["jet_speed"] * (features["speed_kmh"] > JET_SPEED_KMH)
        + c["resale_markup"] * np.clip(features["markup"] - 1.3, 0, None)
        + c["log_quick_resales"] * np.log1p(features["quick_resales"])
        + _KIND_LOGIT[features["actor_kind"]]
    )
    probability = 1 / (1 + np.exp(-logit))
    return {"probability": probability, "is_fraud": rng.random(n) < probability}


def _labels(
    rng: np.random.Generator, wallets: _Wallets, orders: dict, truth: dict, actor: np.ndarray
) -> dict:
    """Most frauds get a label days later: bot detections for scalper bots, security alerts
    (chargebacks, stolen payments) for the rest; plus false alarms that were not fraud."""
    n = len(orders["t"])
    kind = wallets.kind[actor]
    fraud = truth["is_fraud"]
    labelled = fraud & (rng.random(n) < 0.9)
    bot_rows = np.flatnonzero(labelled & (kind == BOT))
    false_bot = np.flatnonzero(~fraud & (kind == NORMAL) & (rng.random(n) < 0.003))
    detections = np.concatenate([bot_rows, false_bot])
    is_bot = np.r_[np.ones(len(bot_rows), bool), np.zeros(len(false_bot), bool)]
    score = np.where(
        is_bot, rng.beta(12, 1.5, len(detections)), rng.uniform(0.2, 0.7, len(detections))
    )
    bot_delay = rng.uniform(0.5, 7.0, len(detections)) * DAY

    alert_rows = np.flatnonzero(labelled & (kind != BOT))
    false_alerts = np.flatnonzero(~fraud & (rng.random(n) < 0.004))
    alerts = np.concatenate([alert_rows, false_alerts])
    confirmed = np.r_[np.ones(len(alert_rows), bool), np.zeros(len(false_alerts), bool)]
    alert_delay = np.exp(rng.normal(np.log(7.0), 0.6, len(alerts))).clip(2.0, 30.0) * DAY
    completed = orders["status"][alerts] != FAILED
    alert_kind = kind[alerts]
    pick = rng.random(len(alerts))
    confirmed_type = np.where(
        alert_kind == STOLEN,
        np.where(completed, np.where(pick < 0.6, "stolen_payment", "chargeback"), "card_testing"),
        np.where(
            orders["resale"][alerts],
            "resale_dispute",
            np.where(pick < 0.7, "chargeback", "account_takeover"),
        ),
    )
    false_type = np.array(["suspicious_velocity", "geo_mismatch", "chargeback"], dtype=object)[
        np.floor(pick * 3).astype(np.int64)
    ]
    severity_confirmed = np.where(rng.random(len(alerts)) < 0.3, "critical", "high")
    severity_false = np.where(rng.random(len(alerts)) < 0.6, "low", "medium")
    details_confirmed = np.array(
        [
            "issuer confirmed the card was stolen",
            "cardholder disputed the charge",
            "payment reversed after investigation",
            "fraud confirmed by the trust & safety team",
        ],
        dtype=object,
    )[rng.integers(0, 4, len(alerts))]
    details_false = np.array(
        [
            "reviewed: legitimate customer",
            "dispute withdrawn by the cardholder",
            "travel confirmed by the customer",
        ],
        dtype=object,
    )[rng.integers(0, 3, len(alerts))]
    return {
        "detection_order": detections,
        "detection_is_bot": is_bot,
        "detection_score": score,
        "detection_detector": np.array(
            ["velocity_rules", "behavioral_ml", "captcha_farm_check"], dtype=object
        )[rng.integers(0, 3, len(detections))],
        "detection_at": orders["t"][detections] + np.floor(bot_delay),
        "alert_order": alerts,
        "alert_confirmed": confirmed,
        "alert_type": np.where(confirmed, confirmed_type, false_type).astype(object),
        "alert_severity": np.where(confirmed, severity_confirmed, severity_false).astype(object),
        "alert_details": np.where(confirmed, details_confirmed, details_false).astype(object),
        "alert_at": orders["t"][alerts] + np.floor(alert_delay),
    }


# The label tables and their id columns.
LABEL_TABLES = {"bot_detection": "detection_id", "security_alerts": "alert_id"}


def label_columns(labels: dict, table: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """One label table's rows (positions among the orders), the seconds each becomes
    available, and its own columns, as `_labels` drew them."""
    if table == "bot_detection":
        return (
            labels["detection_order"],
            labels["detection_at"],
            {
                "bot_score": np.round(labels["detection_score"], 4),
                "is_bot": labels["detection_is_bot"],
                "detector": labels["detection_detector"],
            },
        )
    return (
        labels["alert_order"],
        labels["alert_at"],
        {
            "alert_type": labels["alert_type"],
            "severity": labels["alert_severity"],
            "confirmed_fraud": labels["alert_confirmed"],
            "details": labels["alert_details"],
        },
    )


# ---------------------------------------------------------------- security noise


def _security_events(
    rng: np.random.Generator,
    clock: _Clock,
    wallets: _Wallets,
    orders: dict,
    n_orders: int,
    first_id: int,
) -> pd.DataFrame:
    """Failed logins (with a few brute-force bursts from one address), password resets and
    rate limits that bots hit while camping on a sale."""
    horizon = clock.horizon
    active = np.unique(orders["buyer"]) if len(orders["buyer"]) else np.arange(len(wallets))
    reasons = np.array(["invalid_signature", "expired_nonce", "wrong_network"], dtype=object)
    fails = _account_events(rng, "failed_login", reasons, max(5, n_orders // 80), active, horizon)
    # Brute force: 6-14 failed logins within five minutes from one hosting address.
    sizes = rng.integers(6, 15, max(2, n_orders // 15_000))
    burst = np.repeat(np.arange(len(sizes)), sizes)
    gaps = 1 + np.floor(rng.exponential(12, len(burst)))
    elapsed = np.cumsum(gaps)
    elapsed -= elapsed[np.repeat(np.cumsum(sizes) - sizes, sizes)]
    start = rng.integers(0, max(horizon - 300, 1), len(sizes))
    targets = active[rng.integers(0, len(active), (len(sizes), 3))]
    single = rng.random(len(sizes)) < 0.7
    target = np.where(
        single[burst], targets[burst, 0], targets[burst, rng.integers(0, 3, len(burst))]
    )
    octets = _random_octets(rng, len(sizes), _HOSTING_OCTETS)[burst]
    t = np.minimum(start[burst] + np.minimum(elapsed, 280), horizon - 1).astype(np.int64)
    brute_force = _security_part("failed_login", "high", octets, target, t, "invalid_signature")
    channels = np.array(["email", "sms"], dtype=object)
    resets = _account_events(
        rng, "password_reset", channels, max(3, n_orders // 250), active, horizon
    )
    # Bots hammering the order endpoint: about half of their sessions trip the rate limit.
    sessions, first_of_session = np.unique(orders["session"], return_index=True)
    first_of_session = first_of_session[sessions >= 0]
    rows = first_of_session[rng.random(len(first_of_session)) < 0.5]
    octets, buyer, t = orders["octets"][rows], orders["buyer"][rows], orders["t"][rows]
    limited = _security_part("rate_limited", "medium", octets, buyer, t, "/api/v1/orders")
    parts = [fails, brute_force, resets, limited]
    events = _concat(parts)
    rank = np.lexsort((np.arange(len(events["t"])), events["t"]))
    events = {k: v[rank] for k, v in events.items()}
    kind = events["type"]
    minute_rate = rng.integers(120, 900, len(kind))
    # One small dict per security event (not per order): the JSON metadata column.
    metadata = [
        {"reason": d}
        if k == "failed_login"
        else {"channel": d}
        if k == "password_reset"
        else {"endpoint": d, "requests_per_minute": int(r)}
        for k, d, r in zip(kind, events["detail"], minute_rate, strict=True)
    ]
    return pd.DataFrame(
        {
            "id": first_id + np.arange(len(kind)),
            "event_type": _text(kind),
            "severity": _text(events["severity"]),
            "source_ip": _ips(events["octets"]),
            "user_id": _text(wallets.address[events["wallet"]]),
            "metadata": pd.Series(metadata, dtype=object),
            "created_at": clock.stamp(events["t"]),
        }
    )


def _security_part(kind: str, severity: str, octets, wallet, t, detail) -> dict:
    """Security events of one kind and severity; `detail` is one string or one per event."""
    n = len(t)
    return {
        "type": np.full(n, kind, dtype=object),
        "severity": np.full(n, severity, dtype=object),
        "octets": octets,
        "wallet": wallet,
        "t": t,
        "detail": np.full(n, detail, dtype=object) if isinstance(detail, str) else detail,
    }


def _account_events(rng: np.random.Generator, kind: str, details, n: int, active, horizon: int):
    """`n` low-severity events of `kind` for random active wallets at random times, from
    residential addresses, each with one of `details`."""
    return _security_part(
        kind,
        "low",
        _random_octets(rng, n, _RESIDENTIAL_OCTETS),
        active[rng.integers(0, len(active), n)],
        rng.integers(0, horizon, n),
        details[rng.integers(0, len(details), n)],
    )


def _blacklist(
    rng: np.random.Generator,
    clock: _Clock,
    wallets: _Wallets,
    labels: dict,
    actor: np.ndarray,
    already: frozenset[str],
) -> pd.DataFrame:
    """Trust & safety blacklists a wallet hours to days after its first confirmed bot
    detection or stolen-payment alert, when that still falls inside the period."""
    bot = labels["detection_is_bot"]
    stolen = labels["alert_confirmed"] & (labels["alert_type"] == "stolen_payment")
    wallet = np.concatenate(
        [actor[labels["detection_order"][bot]], actor[labels["alert_order"][stolen]]]
    )
    at = np.concatenate([labels["detection_at"][bot], labels["alert_at"][stolen]])
    at = at + np.floor(rng.uniform(HOUR, 3 * DAY, len(at)))
    reason = np.concatenate(
        [
            _join_text(
                "scalper bot confirmed by ",
                labels["detection_detector"][bot],
                " (bot score ",
                np.round(labels["detection_score"][bot], 2),
                ")",
            ).to_numpy(dtype=object),
            _join_text("stolen payment methods: ", labels["alert_details"][stolen]).to_numpy(
                dtype=object
            ),
        ]
    )
    rank = np.lexsort((np.arange(len(at)), at))
    wallet, at, reason = wallet[rank], at[rank], reason[rank]
    first = np.zeros(len(wallet), dtype=bool)
    first[np.unique(wallet, return_index=True)[1]] = True
    address = wallets.address[wallet]
    keep = first & (at < clock.horizon) & ~np.isin(address, np.array(sorted(already), dtype=object))
    return pd.DataFrame(
        {
            "wallet_address": _text(address[keep]),
            "reason": _text(reason[keep]),
            "created_at": clock.stamp(at[keep]),
        }
    )


def _admin_audit_log(rng: np.random.Generator, clock: _Clock, first_id: int) -> pd.DataFrame:
    n = int(rng.integers(5, 10))
    users = np.array(["alice.ops", "bob.fraud", "carol.pricing"], dtype=object)
    actions = np.array(
        [
            "review_alert",
            "blacklist_wallet",
            "export_orders",
            "update_event_capacity",
            "adjust_pricing_strategy",
            "rotate_api_key",
        ],
        dtype=object,
    )
    action = actions[rng.integers(0, len(actions), n)]
    t = np.sort(rng.integers(0, clock.horizon, n))
    metadata = [{"ticket": f"OPS-{int(k)}"} for k in rng.integers(1000, 9999, n)]
    return pd.DataFrame(
        {
            "id": first_id + np.arange(n),
            "admin_user": _text(users, rng.integers(0, len(users), n)),
            "action": _text(action),
            "ip_address": _join_text("10.20.", rng.integers(0, 4, n), ".", rng.integers(2, 250, n)),
            "metadata": pd.Series(metadata, dtype=object),
            "created_at": clock.stamp(t),
        }
    )
