"""Effective configuration: flag > environment > config.yaml > built-in defaults.

The file is an explicit path, else `$MLKIT_CONFIG`, else `./config.yaml`; string values may use
`${VAR}` and `${VAR:-default}`.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, NoReturn, Self
from urllib.parse import urlsplit

from .errors import MlkitError

log = logging.getLogger(__name__)

DEFAULT_HOME = "~/.local/share/mlkit"

# The shape and types of every accepted key; the shipped config.yaml mirrors it.
DEFAULTS: dict[str, Any] = {
    "database": {
        # One SQLAlchemy URL. Empty: built from host/port/name/user/password when
        # `host` is set (the platform's DB_* variables), else the embedded SQLite file.
        "url": "",
        "driver": "postgresql+psycopg2",
        "host": "",
        "port": 5432,
        "name": "ticketing",
        "user": "postgres",
        "password": "",
        "sqlite_path": "",  # empty: <paths.home>/mlkit.db
        # Where mlkit keeps its own tables and the views of `sources:` (PostgreSQL: a schema
        # of the database, MySQL: a database of the server). Empty: the default schema.
        "state_schema": "",
    },
    # Platform tables (or SELECTs) standing for the inputs mlkit reads, by mlkit's table
    # name: {orders: {table: transactions, columns: {order_id: transaction_id, ...}}}.
    "sources": {},
    # Platform tables mlkit also writes (toolkit/outputs.py): fraud_predictions in the
    # platform's shape, the archive tables retention moves the platform's rows into.
    "outputs": {},
    "redis": {
        "url": "",  # empty: built from host/port/password/db
        "enabled": True,
        "host": "localhost",
        "port": 6379,
        "password": "",
        "db": 0,
    },
    "paths": {
        "home": DEFAULT_HOME,
        "artifacts": "",  # empty: <home>/artifacts
        "datasets": "",  # empty: <home>/datasets
        "logs": "",  # empty: <home>/logs
    },
    "fraud": {
        # score >= block: BLOCKED; >= review: MANUAL_REVIEW; >= require_2fa: REQUIRE_2FA.
        "threshold_block": 0.85,
        "threshold_review": 0.65,
        "threshold_2fa": 0.35,
        "label_delay_days": 7.0,
        "online_ttl_seconds": 300,
        "min_auc_pr": 0.2,  # the gate `mlkit validate` and `promote` apply
    },
    "etl": {
        # `etl run --since last` also recomputes the featured orders this far before the
        # watermark when new orders arrive: late rows can change their history.
        "lookback": "2d",
    },
    # The engine of the heavy fraud steps (etl run, dataset build): local (pandas in this
    # process), spark (toolkit/spark) or auto (spark above auto_rows orders).
    "engine": {
        "name": "local",
        "auto_rows": 20_000_000,
        "spark": {
            # local[N], spark://host:7077, yarn, k8s://...; empty: spark-submit's --master
            "master": "local[*]",
            "conf": {},  # any Spark setting: spark.executor.memory, spark.sql.shuffle.partitions
            "jars": "",  # JDBC driver jars, comma-separated; empty: Debian's when installed
            "partitions": 8,  # parallel JDBC range reads per large table
        },
    },
    "pricing": {
        "policy": "thompson",
        "surge_ratio": 1.1,
        "early_bird_ratio": 0.95,
        "surge_multiplier": 1.25,
        "early_bird_multiplier": 0.85,
        "epsilon": 0.05,
        "context": "event_type",  # none: one bandit; event_type: one per event type too
        "min_offers": 100,  # fewer priced orders in the window: no new bandit
        # A new bandit replaces prod only with at least this share of prod's offers.
        "min_offers_share_of_prod": 0.5,
    },
    "recommender": {
        "text_weight": 0.7,
        "price_weight": 0.2,
        "rating_weight": 0.1,
        # The blend: the content score above, item co-occurrence and popularity, each
        # standardised per user; the mix is tuned on an inner time cut unless tune_mix is off.
        "content_weight": 1.0,
        "collaborative_weight": 1.0,
        "popularity_weight": 0.5,
        "tune_mix": True,
        "recency_half_life_days": 30,
        "min_interactions": 500,  # fewer in the window: no new recommender
    },
    "training": {
        "retry_cooldown_sec": 600,  # after a failed training of any family
    },
    "signal": {
        # Labels: forward log return over the horizon, cut at the sell/buy quantiles of
        # the training period (below sell: SELL, above buy: BUY, else HOLD). The horizon is
        # a duration counted in bars on the symbol's bars; horizon_bars > 0 gives the count.
        "horizon": "1d",
        "horizon_bars": 0,
        "sell_quantile": 0.33,
        "buy_quantile": 0.67,
        "walk_forward_folds": 6,
        "test_fraction": 0.5,
        "max_missing_share": 0.5,
        "feature_set": "compact",  # compact (about 36, period-agnostic) or wide (about 440, RFE)
        "trade_cost_bps": 5.0,
        "min_initial_train_samples": 400,  # fewer bars: no training attempted
        # After a candidate its gate kept from serving, `signal run` trains again only once
        # this long has passed: new bars have to arrive before a retraining can differ.
        "retrain_after_rejection": "1d",
        "allow_fallback_execution": False,  # the SMA/RSI fallback signal may execute
        "iterations": 300,
        "learning_rate": 0.03,
        "depth": 3,
        "l2_leaf_reg": 20.0,
        "early_stopping_rounds": 50,  # on an inner time split; 0: always `iterations` trees
        "border_count": 32,
        "bootstrap_type": "Bernoulli",
        "subsample": 0.8,
        "bagging_temperature": 1.0,  # with the Bayesian bootstrap only
        "random_seed": 0,
        "thread_count": 2,
        "rfe_algorithm": "RecursiveByLossFunctionChange",
        "rfe_features": 40,
        "rfe_steps": 3,
        "selection_iterations": 60,
        "selection_learning_rate": 0.15,
        # Fewer selection rows: the max_baseline_features most important of one fit.
        "min_rfe_samples": 150,
        "max_baseline_features": 120,
    },
    "drift": {
        "model": "fraud@prod",
        "window": "1d",  # back from now: the hourly job watches the last day
        "reference": "recent",  # the snapshot's last window-length of orders, or "all"
        "calibration_windows": 14,  # earlier snapshot windows that set each feature's natural level
        "kl_threshold": 0.15,  # the platform's model_drift rule
        "psi_threshold": 0.2,
        "bins": 10,  # quantile bins of the training snapshot, shared by both sides
        "large_sample": 5000,  # from this many rows on the smaller side: Wasserstein, not KS
        "p_value": 0.01,  # small samples: KS (chi-square for categories) p-value below this
        "wasserstein_threshold": 0.1,  # in training standard deviations
    },
    "retention": {
        "older_than": "365d",  # back from now
        "batch_size": 10000,  # orders per transaction
    },
    # `mlkit cron show`: a schedule per job; "" leaves the job out.
    "cron": {
        "etl": "0 2 * * *",
        "features": "*/2 * * * *",  # below fraud.online_ttl_seconds (300 s)
        "kpi_refresh": "*/5 * * * *",
        "retention": "0 3 * * 0",
        "train_fraud": "0 4 1,15 * *",  # every two weeks
        "train_pricing": "30 3 * * 0",
        "train_recommender": "30 2 * * *",
        "signals": "1 * * * *",
        "drift": "10 * * * *",
        "alerts": "15 * * * *",
    },
    # The trading system's MySQL (MYSQL_* variables): `mlkit migrate`'s default target
    # when enabled.
    "mysql": {
        "enabled": False,
        "host": "",
        "port": 3306,
        "user": "",
        "password": "",
        "db": "",
        "charset": "utf8mb4",
    },
    "migrate": {
        "batch_size": 1000,  # rows per insert batch and per commit
    },
    "alerts": {
        "webhook_url": "",
        # The platform's own rules; each is recorded when it fires and when it resolves.
        "rules": [
            {
                "name": "fraud_rate_spike",
                "condition": "fraud_rate > 0.03",
                "duration": "10m",
                "severity": "high",
            },
            {
                "name": "model_drift",
                "condition": "kl_divergence > 0.15",
                "duration": "1h",
                "severity": "medium",
            },
            {
                "name": "failed_login_attempts",
                "condition": "failed_logins > 5",
                "duration": "5m",
                "severity": "high",
            },
            {
                "name": "training_failed",
                "condition": "training_failed > 0",
                "duration": "1h",
                "severity": "medium",
            },
        ],
    },
}

# Keys that moved: a file setting the old place is read as the new one, with a warning.
MOVED_KEYS = {
    f"training.{key}": f"signal.{key}"
    for key in (
        "min_initial_train_samples",
        "min_rfe_samples",
        "max_baseline_features",
        "allow_fallback_execution",
    )
}

ALERT_RULE_KEYS = {"name", "condition", "duration", "severity", "action", "enabled"}
SECRET_KEYS = {"password", "webhook_url"}
SUPPORTED_BACKENDS = ("sqlite", "postgresql", "mysql", "mariadb")

# Environment variables that override a setting whatever the file says.
ENV_OVERRIDES = {
    "MLKIT_DATABASE_URL": ("database", "url"),
    "MLKIT_REDIS_URL": ("redis", "url"),
    "MLKIT_HOME": ("paths", "home"),
    "MLKIT_ARTIFACTS_DIR": ("paths", "artifacts"),
    "MLKIT_DATASETS_DIR": ("paths", "datasets"),
    "MLKIT_LOGS_DIR": ("paths", "logs"),
}

_VAR = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Expand `${VAR}` and `${VAR:-default}`; a default may itself hold `${...}`."""
    out: list[str] = []
    i = 0
    while i < len(text):
        start = text.find("${", i)
        if start < 0:
            out.append(text[i:])
            break
        out.append(text[i:start])
        depth, j = 1, start + 2
        while j < len(text) and depth:
            if text.startswith("${", j):
                depth += 1
                j += 2
                continue
            if text[j] == "}":
                depth -= 1
            j += 1
        if depth:
            raise ValueError(f"unclosed '${{' in {text!r}")
        body = text[start + 2 : j - 1]
        name, sep, default = body.partition(":-")
        if not _VAR.fullmatch(name):
            raise ValueError(f"bad variable name {name!r} in {text!r}")
        value = env.get(name, "")
        out.append(value if value != "" or not sep else interpolate(default, env))
        i = j
    return "".join(out)


@dataclass
class Config:
    data: dict[str, Any]
    source: Path | None = None  # the file read, if any
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ), repr=False)
    database_origin: str = "defaults"  # where the database URL came from, for its errors

    def check_database_url(self) -> None:
        """The database URL read as every engine reads it (SQLAlchemy's parser, the
        supported dialects), its error naming where the URL came from."""
        from .db import dialect_name, parse_url  # the one reading of a database URL
        from .sources.mapping import check_state_schema

        try:
            url = parse_url(self.database_url)
        except MlkitError as exc:
            raise MlkitError(f"{self.database_origin}: {exc.message}", hint=exc.hint) from None
        try:
            check_state_schema(self.data["database"]["state_schema"], dialect_name(url))
        except MlkitError as exc:
            raise MlkitError(f"{origin_of(self.source)}: {exc.message}", hint=exc.hint) from None

    def get(self, dotted: str) -> Any:
        node: Any = self.data
        for part in dotted.split("."):
            node = node[part]
        return node

    @property
    def home(self) -> Path:
        return _expand(self.data["paths"]["home"])

    def _path(self, key: str) -> Path:
        value = self.data["paths"][key]
        return _expand(value) if value else self.home / key

    @property
    def artifacts_dir(self) -> Path:
        """The artifacts root; each database's files are under `<root>/<database-id>/`
        (toolkit.identity.database_home)."""
        return self._path("artifacts")

    @property
    def datasets_dir(self) -> Path:
        """The datasets root; each database's snapshots are under `<root>/<database-id>/`."""
        return self._path("datasets")

    @property
    def logs_dir(self) -> Path:
        return self._path("logs")

    @property
    def database_url(self) -> str:
        db = self.data["database"]
        if db["url"]:
            return db["url"]
        if db["host"]:
            from sqlalchemy.engine import URL

            return URL.create(
                db["driver"],
                username=db["user"] or None,
                password=db["password"] or None,
                host=db["host"],
                port=int(db["port"]) if db["port"] else None,
                database=db["name"] or None,
            ).render_as_string(hide_password=False)
        path = _expand(db["sqlite_path"]) if db["sqlite_path"] else self.home / "mlkit.db"
        return f"sqlite:///{path}"

    @property
    def redis_url(self) -> str | None:
        r = self.data["redis"]
        if not r["enabled"]:
            return None
        if r["url"]:
            return r["url"]
        auth = f":{r['password']}@" if r["password"] else ""
        return f"redis://{auth}{r['host']}:{int(r['port'])}/{int(r['db'])}"

    def masked(self) -> dict[str, Any]:
        """The configuration with every password and secret replaced, plus resolved values."""
        data = _mask(copy.deepcopy(self.data))
        data["effective"] = {
            "config_file": str(self.source) if self.source else None,
            "database_url": mask_url(self.database_url),
            "redis_url": mask_url(self.redis_url) if self.redis_url else None,
            "artifacts_dir": str(self.artifacts_dir),
            "datasets_dir": str(self.datasets_dir),
            "logs_dir": str(self.logs_dir),
        }
        return data


def config_key(name: str) -> Any:
    """A settings field read from the section key `name` rather than the field's own name."""
    return field(metadata={"key": name})


class Settings:
    """A typed config section: a frozen dataclass whose fields are keys of `section`, values
    from the config, or from DEFAULTS where code needs them without one; a field that is
    itself Settings reads the same section."""

    section: ClassVar[str]

    @classmethod
    def from_section(cls, values: Mapping[str, Any], **overrides: Any) -> Self:
        types = typing.get_type_hints(cls)
        given = {}
        for f in dataclasses.fields(cls):
            kind = types[f.name]
            if f.name in overrides:
                given[f.name] = overrides[f.name]
            elif isinstance(kind, type) and issubclass(kind, Settings):
                given[f.name] = kind.from_section(values)
            else:
                given[f.name] = kind(values[f.metadata.get("key", f.name)])
        settings = cls(**given)
        settings.check()
        return settings

    @classmethod
    def from_config(cls, config: Config) -> Self:
        return cls.from_section(config.get(cls.section))

    @classmethod
    def default(cls, **overrides: Any) -> Self:
        """The built-in defaults, with `overrides` by field name."""
        return cls.from_section(DEFAULTS[cls.section], **overrides)

    def check(self) -> None:
        """Raise MlkitError naming the keys whose values cannot work together."""


def _expand(value: str) -> Path:
    return Path(os.path.expanduser(value))


def mask_url(url: str) -> str:
    """The URL with its password replaced by ***; safe to print or log."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    userinfo = netloc[0].split(":", 1)[0]
    return url.replace(parts.netloc, f"{userinfo}:***@{netloc[1]}", 1)


WEBHOOK_SCHEMES = ("http", "https")
WEBHOOK_MAX_LENGTH = 2048
# A path segment this long is taken for a token (Slack, Discord and Teams put theirs there).
WEBHOOK_TOKEN_SEGMENT_LENGTH = 16
_WEBHOOK_HOST = re.compile(r"[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\]")


def mask_webhook_url(url: str) -> str:
    """The webhook URL safe to print or log: user info, query values and long path
    segments (tokens) become ***, the fragment is dropped."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "***"
    host_port = parts.netloc.rsplit("@", 1)[-1]
    userinfo = "***@" if "@" in parts.netloc else ""
    path = "/".join(
        "***" if len(segment) >= WEBHOOK_TOKEN_SEGMENT_LENGTH else segment
        for segment in parts.path.split("/")
    )
    query = "&".join(
        f"{item.split('=', 1)[0]}=***" if "=" in item else "***"
        for item in parts.query.split("&")
        if item
    )
    origin = f"//{userinfo}{host_port}" if parts.netloc else ""
    scheme = f"{parts.scheme}:" if parts.scheme else ""
    return f"{scheme}{origin}{path}" + (f"?{query}" if query else "")


def webhook_secrets(url: str) -> list[str]:
    """The pieces of a webhook URL that mask_webhook_url hides, longest first, so that an
    error text quoting them can be scrubbed too; the whole URL when it cannot be read."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return [url]
    pieces = [parts.netloc.rsplit("@", 1)[0] if "@" in parts.netloc else ""]
    pieces += [parts.username or "", parts.password or "", parts.fragment]
    pieces += [s for s in parts.path.split("/") if len(s) >= WEBHOOK_TOKEN_SEGMENT_LENGTH]
    pieces += [item.split("=", 1)[-1] for item in parts.query.split("&")]
    # Very short pieces would mangle ordinary words of an error text.
    return sorted({p for p in pieces if len(p) >= 4}, key=len, reverse=True)


def check_webhook_url(url: str, where: str = "alerts.webhook_url") -> None:
    """Refuse a webhook URL mlkit could not POST to: http(s), a host, a valid port, ASCII
    without whitespace; the error shows the URL masked."""
    hint = (
        "use http(s)://host[:port]/path with no spaces (percent-encode other characters), "
        "or leave alerts.webhook_url empty to turn the webhook off"
    )

    def refuse(problem: str) -> NoReturn:
        raise MlkitError(f"{where}: {problem} in {mask_webhook_url(url)!r}", hint=hint)

    if len(url) > WEBHOOK_MAX_LENGTH:
        refuse(f"longer than {WEBHOOK_MAX_LENGTH} characters")
    if not url.isascii() or any(c.isspace() or not c.isprintable() for c in url):
        refuse("whitespace, a control or a non-ASCII character")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        refuse("an unreadable host or port")
    if parts.scheme.lower() not in WEBHOOK_SCHEMES:
        refuse("not an http or https URL")
    host = parts.netloc.rsplit("@", 1)[-1]
    host = host.rsplit(":", 1)[0] if port is not None or host.endswith(":") else host
    if not parts.hostname or not _WEBHOOK_HOST.fullmatch(host):
        refuse("no valid host")
    if port == 0:
        refuse("port 0")


def _mask(node: Any) -> Any:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in SECRET_KEYS and value:
                node[key] = "***"
            elif key == "url" and isinstance(value, str):
                node[key] = mask_url(value)
            else:
                _mask(value)
    elif isinstance(node, list):
        for item in node:
            _mask(item)
    return node


def find_config_file(explicit: str | os.PathLike | None, env: Mapping[str, str]) -> Path | None:
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise MlkitError(f"config file {path} not found", hint="check the --config path")
        return path
    if env.get("MLKIT_CONFIG"):
        path = Path(env["MLKIT_CONFIG"])
        if not path.is_file():
            raise MlkitError(
                f"config file {path} (from MLKIT_CONFIG) not found",
                hint="unset MLKIT_CONFIG or point it at an existing file",
            )
        return path
    local = Path("config.yaml")
    return local if local.is_file() else None


def load_config(
    path: str | os.PathLike | None = None,
    *,
    database_url: str | None = None,
    redis_url: str | None = None,
    env: Mapping[str, str] | None = None,
    check_database: bool = True,
) -> Config:
    """Load the effective configuration; flags (database_url, redis_url) win over everything.
    `check_database=False` leaves the database URL's check (and SQLAlchemy's import) to the
    caller's `config.check_database_url()`: the dashboard's first paint comes before it."""
    env = dict(os.environ if env is None else env)
    source = find_config_file(path, env)
    data = copy.deepcopy(DEFAULTS)
    if source is not None:
        _merge_file(data, source, env)
    for var, (section, key) in ENV_OVERRIDES.items():
        if env.get(var):
            data[section][key] = env[var]
    origin = {"database": origin_of(source), "redis": origin_of(source)}
    for var, section in (("MLKIT_DATABASE_URL", "database"), ("MLKIT_REDIS_URL", "redis")):
        if env.get(var):
            origin[section] = var
    if database_url:
        data["database"]["url"] = database_url
        origin["database"] = "--database"
    if redis_url:
        data["redis"]["url"] = redis_url
        data["redis"]["enabled"] = True
        origin["redis"] = "--redis"
    config = Config(data=data, source=source, env=env, database_origin=origin["database"])
    if check_database:
        config.check_database_url()
    _check_urls(config, origin)
    return config


def origin_of(source: Path | None) -> str:
    return str(source) if source else "defaults"


def _merge_file(data: dict[str, Any], source: Path, env: Mapping[str, str]) -> None:
    import yaml

    try:
        raw = yaml.safe_load(source.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise MlkitError(
            f"{source}: invalid YAML{where}: {problem}", hint="fix the file or pass --config"
        ) from None
    except OSError as exc:
        raise MlkitError(f"{source}: cannot read: {exc.strerror}") from None
    if raw is None:
        return
    if not isinstance(raw, dict):
        raise MlkitError(f"{source}: expected a mapping of sections at the top level")
    _move_old_keys(raw, source)
    try:
        _merge(data, raw, DEFAULTS, env, prefix="")
    except ValueError as exc:
        raise MlkitError(f"{source}: {exc}", hint="see `mlkit config show` for every key") from None


def _move_old_keys(raw: dict, source: Path) -> None:
    """Read each MOVED_KEYS key the file sets at its old place as its new one, unless the
    file sets that too; one warning names them."""
    moved = {}
    for old, new in MOVED_KEYS.items():
        (old_section, old_key), (new_section, new_key) = old.split("."), new.split(".")
        section = raw.get(old_section)
        if not isinstance(section, dict) or old_key not in section:
            continue
        value = section.pop(old_key)
        if raw.get(new_section) is None:
            raw[new_section] = {}
        if isinstance(raw[new_section], dict):
            raw[new_section].setdefault(new_key, value)
        moved[old] = new
    if moved:
        log.warning(
            "warning: %s: %s read as %s (the keys moved); update the file",
            source,
            ", ".join(moved),
            ", ".join(moved.values()),
        )


def _merge(target: dict, given: dict, shape: dict, env: Mapping[str, str], prefix: str) -> None:
    for key, value in given.items():
        where = f"{prefix}{key}"
        if key not in shape:
            known = ", ".join(shape)
            raise ValueError(f"unknown key '{where}' (known here: {known})")
        default = shape[key]
        if where in ("sources", "outputs", "engine.spark.conf"):
            target[key] = _interpolated(value, env)
        elif isinstance(default, dict):
            if value is None:
                continue
            if not isinstance(value, dict):
                raise ValueError(f"'{where}' must be a section of keys, got {value!r}")
            _merge(target[key], value, default, env, prefix=f"{where}.")
        elif key == "rules":
            target[key] = _alert_rules(value, where, env)
        else:
            target[key] = _coerce(value, default, where, env)


def _interpolated(value: Any, env: Mapping[str, str]) -> Any:
    """Free-form sections (`sources:`): every string interpolated, the shape kept."""
    if isinstance(value, str):
        return interpolate(value, env)
    if isinstance(value, dict):
        return {k: _interpolated(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolated(v, env) for v in value]
    return value


def _coerce(value: Any, default: Any, where: str, env: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        value = interpolate(value, env)
    if value is None:
        return default
    kind = type(default)
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in {"true", "yes", "on", "1"}:
                return True
            if text in {"false", "no", "off", "0", ""}:
                return False
            raise ValueError
        if kind is int:
            if isinstance(value, bool):
                raise ValueError
            return int(str(value).strip())
        if kind is float:
            return float(str(value).strip())
        if isinstance(value, (dict, list)):
            raise ValueError
        return str(value)
    except ValueError:
        raise ValueError(f"'{where}' expects {kind.__name__}, got {value!r}") from None


def _alert_rules(value: Any, where: str, env: Mapping[str, str]) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise ValueError(f"'{where}' must be a list of rules")
    rules = []
    for i, rule in enumerate(value):
        if not isinstance(rule, dict) or "name" not in rule or "condition" not in rule:
            raise ValueError(f"'{where}[{i}]' must be a mapping with 'name' and 'condition'")
        unknown = set(rule) - ALERT_RULE_KEYS
        if unknown:
            raise ValueError(f"unknown key '{where}[{i}].{sorted(unknown)[0]}'")
        rules.append({k: interpolate(v, env) if isinstance(v, str) else v for k, v in rule.items()})
    return rules


def _check_urls(config: Config, origin: dict[str, str]) -> None:
    where = f"{origin['redis']}: "
    if config.redis_url:
        parts = urlsplit(config.redis_url)
        if parts.scheme not in {"redis", "rediss", "unix"}:
            raise MlkitError(
                f"{where}invalid Redis URL {mask_url(config.redis_url)!r}",
                hint="use redis://[:password@]host:port/db",
            )
    _check_sources(config)
    webhook = config.data["alerts"]["webhook_url"]
    if webhook:
        check_webhook_url(webhook, f"{origin_of(config.source)}: alerts.webhook_url")


def _check_sources(config: Config) -> None:
    """`sources:` checked (aliases resolved) as the file loads; `database.state_schema` with
    the database URL (Config.check_database_url)."""
    from .sources.mapping import parse_sources

    where = origin_of(config.source)
    try:
        config.data["sources"] = parse_sources(config.data["sources"])
        if config.data["outputs"]:  # (nothing to check costs no import of SQLAlchemy)
            from .outputs import parse_outputs

            parse_outputs(config.data["outputs"], config.data["sources"])
    except MlkitError as exc:
        raise MlkitError(f"{where}: {exc.message}", hint=exc.hint) from None
