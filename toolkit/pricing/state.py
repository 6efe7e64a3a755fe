"""The bandit's arm statistics: durable in the database, served from Redis.

Each reward is one database transaction incrementing the arm's row (and the same arm's row of
the event type's bandit, when the reward names one), so concurrent updates add up exactly. The
global bandit lives at `mab:<arm>` (what the platform reads), one bandit per event type at
`mab:event_type=<type>:<arm>`. Redis is a cache never ahead of it: it is served only when every
arm's value carries the database's current stamp (generation and identity), and a compare-and-set
write lets Redis converge whatever order writers reach it in. Without Redis everything uses the
database, with a warning.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from dataclasses import asdict, dataclass, replace
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from .. import schema
from ..clock import utcnow
from ..db import explain_db_error
from ..errors import MlkitError
from ..identity import IDENTITY_ROW, database_id

log = logging.getLogger("mlkit.mab")

ARMS = ("baseline", "surge_pricing", "early_bird", "ml_pricing")  # the pricing strategies

BANDIT = IDENTITY_ROW  # the row of this bandit carries the database's identity
KEY_PREFIX = "mab:"  # mab:<arm> holds the arm's state and stamp as JSON
CONTEXT_KEY = "event_type="  # mab:event_type=<type>:<arm>, row pricing:event_type=<type>

# KEYS[1] the arm's key; ARGV[1] the new JSON, ARGV[2] its pulls, ARGV[3] its generation,
# ARGV[4] its database id. Replaces a missing or unreadable value, a value of another
# stamp, or one of the same stamp and fewer pulls; returns 1 when it wrote.
SET_IF_NEWER_SCRIPT = """
local current = redis.call('GET', KEYS[1])
if current then
  local ok, value = pcall(cjson.decode, current)
  if ok and type(value) == 'table' and value['database_id'] == ARGV[4]
     and tonumber(value['generation']) == tonumber(ARGV[3])
     and tonumber(value['pulls']) and tonumber(value['pulls']) >= tonumber(ARGV[2]) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1])
return 1
"""

REDIS_UNREACHABLE = "Redis unreachable, it will be rewritten on the next read"


def bandit_row(context: str | None = None) -> str:
    """The bandit_arms.bandit of the global bandit (None) or of one event type's."""
    return BANDIT if context is None else f"{BANDIT}:{CONTEXT_KEY}{context}"[:64]


def key_prefix(context: str | None = None) -> str:
    return KEY_PREFIX if context is None else f"{KEY_PREFIX}{CONTEXT_KEY}{context}:"


@dataclass(frozen=True)
class Stamp:
    """The database's current bandit generation and its id: what Redis values must carry."""

    generation: int
    database_id: str

    @classmethod
    def of(cls, value: dict) -> Stamp | None:
        generation, database_id = value.get("generation"), value.get("database_id")
        if isinstance(generation, int) and isinstance(database_id, str):
            return cls(generation, database_id)
        return None


@dataclass
class ArmState:
    arm: str
    pulls: int = 0
    reward_sum: float = 0.0
    reward_sq_sum: float = 0.0
    alpha: float = 1.0
    beta: float = 1.0
    updated_at: datetime | None = None

    @property
    def mean(self) -> float:
        return self.reward_sum / self.pulls if self.pulls else 0.0

    @property
    def variance(self) -> float:
        if not self.pulls:
            return 0.0
        return max(self.reward_sq_sum / self.pulls - self.mean**2, 0.0)

    def as_dict(self) -> dict:
        """The fields as JSON values, the mean and variance right after the sums they summarise."""
        state = asdict(self)
        priors = {name: state.pop(name) for name in ("alpha", "beta", "updated_at")}
        priors["updated_at"] = self.updated_at.isoformat() if self.updated_at else None
        return state | {"mean": self.mean, "variance": self.variance} | priors

    def to_json(self, stamp: Stamp) -> str:
        value = self.as_dict() | {"generation": stamp.generation, "database_id": stamp.database_id}
        return json.dumps(value, separators=(",", ":"))

    @classmethod
    def from_json(
        cls, arm: str, raw: bytes, key: str | None = None
    ) -> tuple[ArmState | None, Stamp | None]:
        """The state and the stamp a Redis value carries; (None, None) for a JSON object
        of no stamp (older or foreign, rewritten by the reader). Anything else that is not
        a bandit state is refused: mlkit does not overwrite what it cannot read."""
        try:
            value = json.loads(raw)
        except ValueError as exc:
            raise corrupt(key or KEY_PREFIX + arm, f"{type(exc).__name__}: {exc}") from None
        if not isinstance(value, dict):
            raise corrupt(key or KEY_PREFIX + arm, "not a JSON object")
        stamp = Stamp.of(value)
        if stamp is None:
            return None, None
        try:
            state = cls(
                arm=arm,
                pulls=int(value["pulls"]),
                reward_sum=float(value["reward_sum"]),
                reward_sq_sum=float(value["reward_sq_sum"]),
                alpha=float(value["alpha"]),
                beta=float(value["beta"]),
                updated_at=datetime.fromisoformat(value["updated_at"])
                if value.get("updated_at")
                else None,
            )
        except (ValueError, TypeError, KeyError) as exc:
            raise corrupt(key or KEY_PREFIX + arm, f"{type(exc).__name__}: {exc}") from None
        numbers = (state.reward_sum, state.reward_sq_sum, state.alpha, state.beta)
        if state.pulls < 0 or not all(math.isfinite(x) for x in numbers):
            raise corrupt(key or KEY_PREFIX + arm, "negative pulls or a non-finite sum")
        return state, stamp

    @classmethod
    def from_row(cls, row) -> ArmState:
        return cls(
            arm=row.arm,
            pulls=int(row.pulls),
            reward_sum=float(row.reward_sum),
            reward_sq_sum=float(row.reward_sq_sum),
            alpha=float(row.alpha),
            beta=float(row.beta),
            updated_at=row.updated_at,
        )


def corrupt(key: str, why: str) -> MlkitError:
    return MlkitError(
        f"the Redis value at {key} is not a bandit state ({why})",
        hint=f"delete it (redis-cli DEL {key}); mlkit writes it again from the "
        "database, which keeps the record",
    )


def check_arm(arm: str) -> str:
    if arm not in ARMS:
        raise MlkitError(f"unknown arm {arm!r}", hint=f"arms: {', '.join(ARMS)}")
    return arm


def check_reward(reward: float) -> float:
    if not math.isfinite(reward) or not 0.0 <= reward <= 1.0:
        raise MlkitError(
            f"reward {reward} is outside [0, 1]",
            hint="rewards are normalised: 1 for a conversion, or the combined reward / scale",
        )
    return float(reward)


class BanditStore:
    """Arm states of the pricing bandit in the database and (when given) Redis."""

    def __init__(self, engine: Engine, redis=None):
        self.engine = engine
        self.redis = redis
        self._script = redis.register_script(SET_IF_NEWER_SCRIPT) if redis is not None else None

    # ------------------------------------------------------------ database

    def read_database(self, context: str | None = None) -> dict[str, ArmState]:
        t = schema.bandit_arms
        with self._db("read the bandit state") as engine, engine.connect() as conn:
            rows = conn.execute(sa.select(t).where(t.c.bandit == bandit_row(context))).all()
        found = {row.arm: ArmState.from_row(row) for row in rows if row.arm in ARMS}
        return {arm: found.get(arm, ArmState(arm)) for arm in ARMS}

    def is_trained(self) -> bool:
        t = schema.bandit_arms
        with self._db("read the bandit state") as engine, engine.connect() as conn:
            count = conn.execute(
                sa.select(sa.func.count()).select_from(t).where(t.c.bandit == BANDIT)
            ).scalar_one()
        return count > 0

    def stamp(self) -> Stamp:
        """The database's current stamp, created (generation 1, the database's identity)
        if absent; one read when it exists (every recommendation asks)."""
        try:
            with self.engine.connect() as conn:
                found = _read_stamp(conn)
        except sa.exc.DBAPIError:
            found = None  # an older database without the table: database_id adds it
        if found is not None:
            return found
        database_id(self.engine)  # creates the row: the identity lives on it
        with self._db("read the bandit generation") as engine, engine.connect() as conn:
            return _read_stamp(conn)

    def _ensure_rows(self, bandit: str) -> None:
        """Rows for every arm (an untrained bandit starts from the uniform prior)."""
        t = schema.bandit_arms
        with self.engine.connect() as conn:
            present = set(conn.execute(sa.select(t.c.arm).where(t.c.bandit == bandit)).scalars())
        missing = [arm for arm in ARMS if arm not in present]
        if not missing:
            return
        now = utcnow()
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    t.insert(),
                    [{**_row(ArmState(arm), bandit), "updated_at": now} for arm in missing],
                )
        except IntegrityError:
            pass  # another writer created them first

    # ------------------------------------------------------------ operations

    def read(self, context: str | None = None) -> tuple[dict[str, ArmState], str]:
        """The state (of the global bandit, or of one event type's) and where it came from
        ("redis" or "database"). Redis is served only when every arm's value carries the
        database's current stamp; otherwise (flushed, older generation, another database's)
        it is rewritten from the database."""
        found = self.read_many([context])[context]
        if isinstance(found, MlkitError):
            raise found
        return found

    def read_many(
        self, contexts: list[str | None], stamp: Stamp | None = None
    ) -> dict[str | None, tuple[dict[str, ArmState], str] | MlkitError]:
        """`read` of each of `contexts` (None: the global bandit) at once: one stamp read
        (or `stamp`, read by the caller just before) and one MGET for all their arms. A
        context whose Redis value is corrupt gets the MlkitError `read` would raise."""
        contexts = list(dict.fromkeys(contexts))
        if self.redis is None:
            return {c: (self.read_database(c), "database") for c in contexts}
        import redis as redis_lib

        # The stamp before the arms: a reset in between labels what we write as the older
        # generation, which the next reader replaces; never new arms under an old stamp.
        stamp = stamp or self.stamp()
        keys = [key_prefix(c) + arm for c in contexts for arm in ARMS]
        try:
            raw = self.redis.mget(keys)
        except redis_lib.RedisError as exc:
            log.warning("Redis unavailable (%s): reading the bandit from the database", exc)
            return {c: (self.read_database(c), "database") for c in contexts}
        found = {}
        for n, context in enumerate(contexts):
            prefix, cached = key_prefix(context), {}
            values = raw[n * len(ARMS) : (n + 1) * len(ARMS)]
            try:
                for arm, value in zip(ARMS, values, strict=True):
                    if value is not None:  # corrupt: stops, untouched
                        state, carried = ArmState.from_json(arm, value, prefix + arm)
                        if carried == stamp:
                            cached[arm] = state
            except MlkitError as exc:
                found[context] = exc
                continue
            if len(cached) < len(ARMS):
                states = self.read_database(context)
                self._write_redis(states.values(), stamp, prefix)
                found[context] = (states, "database")
            else:
                found[context] = (cached, "redis")
        return found

    def record(self, arm: str, reward: float, context: str | None = None) -> ArmState:
        """One reward for one arm (of the global bandit and, when `context` names an event
        type, of that type's too): one database transaction, then the rows mirrored to Redis.
        Returns the global arm's state."""
        check_arm(arm)
        check_reward(reward)
        contexts = [None] if context is None else [None, context]
        for c in contexts:
            self._check_redis_value(key_prefix(c) + arm)
        if self.redis is None:
            self.stamp()  # the row the bump below moves
        with self._db("record the reward") as engine:
            for _ in range(2):
                with engine.connect() as conn, conn.begin() as transaction:
                    if self.redis is None:
                        # Redis will not hear of this reward: the next reader must rewrite it.
                        # Generation before arm, the lock order of save and reset.
                        _bump(conn)
                    rows = [_increment(conn, bandit_row(c), arm, reward) for c in contexts]
                    # Read in the increment's transaction: a reset committed before it has
                    # moved the generation, one after it finds our value of the old one.
                    stamp = _read_stamp(conn)
                    if any(r is None for r in rows):
                        transaction.rollback()  # all of the reward or none of it
                if all(r is not None for r in rows):
                    states = [ArmState.from_row(r) for r in rows]
                    break
                for c in contexts:
                    self._ensure_rows(bandit_row(c))
            else:  # pragma: no cover - the rows exist after _ensure_rows
                raise MlkitError(f"the bandit has no row for {arm}")
        if self.redis is not None:
            stamp = stamp or self.stamp()
            written = [
                self._write_redis([s], stamp, key_prefix(c))
                for c, s in zip(contexts, states, strict=True)
            ]
            if not all(written):
                self._bump_generation()  # Redis missed this reward: the next reader rewrites it
        return states[0]

    def save(
        self, states: dict[str, ArmState], contexts: dict[str, dict[str, ArmState]] | None = None
    ) -> bool:
        """Replace the whole state (training): the global arms and each event type's, under a
        new generation in one database transaction, then Redis. False when Redis did not
        receive it."""
        t = schema.bandit_arms
        now = utcnow()
        bandits = {None: states, **(contexts or {})}
        stamped = {
            c: {a: replace(s, updated_at=s.updated_at or now) for a, s in arms.items()}
            for c, arms in bandits.items()
        }
        self.stamp()
        with self._db("save the bandit state") as engine, engine.begin() as conn:
            _bump(conn)
            conn.execute(t.delete().where(_every_bandit(t)))
            conn.execute(
                t.insert(),
                [
                    {**_row(s, bandit_row(c)), "updated_at": s.updated_at}
                    for c, arms in stamped.items()
                    for s in arms.values()
                ],
            )
            stamp = _read_stamp(conn)
        return all(
            self._write_redis(arms.values(), stamp, key_prefix(c)) for c, arms in stamped.items()
        )

    def contexts(self) -> list[str]:
        """The event types that have a bandit of their own in the database."""
        t = schema.bandit_arms
        head = bandit_row("")
        with self._db("read the bandit state") as engine, engine.connect() as conn:
            rows = conn.execute(sa.select(t.c.bandit).where(_every_bandit(t)).distinct()).scalars()
            return sorted(r[len(head) :] for r in rows if r.startswith(head))

    def reset(self) -> bool:
        """Forget every arm (global and per event type) under a new generation; then delete
        the Redis keys. False when Redis did not answer (its values are then of the old
        generation, never served)."""
        t = schema.bandit_arms
        self.stamp()
        with self._db("reset the bandit") as engine, engine.begin() as conn:
            _bump(conn)
            conn.execute(t.delete().where(_every_bandit(t)))
        if self.redis is None:
            return False
        import redis as redis_lib

        try:
            context_keys = list(self.redis.scan_iter(match=key_prefix("*") + "*"))
            self.redis.delete(*[KEY_PREFIX + arm for arm in ARMS], *context_keys)
        except redis_lib.RedisError as exc:
            log.warning("cannot delete the bandit keys (%s): %s", exc, REDIS_UNREACHABLE)
            return False
        return True

    # ------------------------------------------------------------ helpers

    def _check_redis_value(self, key: str) -> None:
        """Refuse to go on over a corrupt Redis value, before anything is written."""
        if self.redis is None:
            return
        import redis as redis_lib

        try:
            raw = self.redis.get(key)
        except redis_lib.RedisError:
            return  # _write_redis warns
        if raw is not None:
            ArmState.from_json(key.rsplit(":", 1)[-1], raw, key)

    def _write_redis(self, states, stamp: Stamp, prefix: str = KEY_PREFIX) -> bool:
        """Each state through the compare-and-set; False when Redis did not answer."""
        if self.redis is None:
            return False
        import redis as redis_lib

        try:
            pipe = self.redis.pipeline(transaction=True)
            for s in states:
                self._script(
                    keys=[prefix + s.arm],
                    args=[s.to_json(stamp), s.pulls, stamp.generation, stamp.database_id],
                    client=pipe,
                )
            pipe.execute()
        except redis_lib.RedisError as exc:
            log.warning("the bandit state is in the database (%s): %s", exc, REDIS_UNREACHABLE)
            return False
        return True

    def _bump_generation(self) -> None:
        with self._db("move the bandit generation") as engine, engine.begin() as conn:
            _bump(conn)

    def _db(self, action: str):
        return _DatabaseErrors(self.engine, action)


class _DatabaseErrors:
    """`with` block that turns a database failure into one clear MlkitError."""

    def __init__(self, engine: Engine, action: str):
        self.engine, self.action = engine, action

    def __enter__(self) -> Engine:
        return self.engine

    def __exit__(self, kind, exc, tb) -> bool:
        if isinstance(exc, sa.exc.DBAPIError):
            error = explain_db_error(exc, self.engine.url)
            raise MlkitError(f"cannot {self.action}: {error.message}", hint=error.hint) from None
        return False


@functools.cache
def _stamp_query() -> sa.Select:
    """Built once: every recommendation reads the stamp."""
    g = schema.bandit_generations
    return sa.select(g.c.generation, g.c.database_id).where(g.c.bandit == BANDIT)


def _read_stamp(conn: sa.Connection) -> Stamp | None:
    row = conn.execute(_stamp_query()).first()
    return Stamp(int(row.generation), row.database_id) if row is not None else None


def _bump(conn: sa.Connection) -> None:
    """A new generation: no Redis value written before it is served again."""
    g = schema.bandit_generations
    conn.execute(
        g.update()
        .where(g.c.bandit == BANDIT)
        .values(generation=g.c.generation + 1, updated_at=utcnow())
    )


def _increment(conn: sa.Connection, bandit: str, arm: str, reward: float):
    """Add one reward to one arm's row; the row after it, None when there is no such row."""
    t = schema.bandit_arms
    where = (t.c.bandit == bandit) & (t.c.arm == arm)
    increment = (
        t.update()
        .where(where)
        .values(
            pulls=t.c.pulls + 1,
            reward_sum=t.c.reward_sum + reward,
            reward_sq_sum=t.c.reward_sq_sum + reward * reward,
            alpha=t.c.alpha + reward,
            beta=t.c.beta + (1.0 - reward),
            updated_at=utcnow(),
        )
    )
    if conn.dialect.update_returning:
        return conn.execute(increment.returning(*t.c)).first()
    if not conn.execute(increment).rowcount:
        return None
    # Our row lock holds until commit: this is the row after our update.
    return conn.execute(sa.select(t).where(where)).one()


def _every_bandit(t: sa.Table):
    """The global bandit's rows and every event type's."""
    return (t.c.bandit == BANDIT) | t.c.bandit.startswith(bandit_row(""), autoescape=True)


def _row(state: ArmState, bandit: str = BANDIT) -> dict:
    return {
        "bandit": bandit,
        "arm": state.arm,
        "pulls": state.pulls,
        "reward_sum": state.reward_sum,
        "reward_sq_sum": state.reward_sq_sum,
        "alpha": state.alpha,
        "beta": state.beta,
    }
