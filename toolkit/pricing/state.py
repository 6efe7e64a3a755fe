"""The bandit's arm statistics: durable in the database, served from Redis.

Each reward is one database transaction incrementing the arm's row, so concurrent updates add up
exactly. Redis is a cache never ahead of it: it is served only when every arm's value carries the
database's current stamp (generation and identity), and a compare-and-set write lets Redis converge
whatever order writers reach it in. Without Redis everything uses the database, with a warning.
"""

from __future__ import annotations

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
from .history import ARMS

log = logging.getLogger("mlkit.mab")

BANDIT = IDENTITY_ROW  # the row of this bandit carries the database's identity
KEY_PREFIX = "mab:"  # mab:<arm> holds the arm's state and stamp as JSON

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
    def from_json(cls, arm: str, raw: bytes) -> tuple[ArmState | None, Stamp | None]:
        """The state and the stamp a Redis value carries; (None, None) for a JSON object
        of no stamp (older or foreign, rewritten by the reader). Anything else that is not
        a bandit state is refused: mlkit does not overwrite what it cannot read."""
        try:
            value = json.loads(raw)
        except ValueError as exc:
            raise corrupt(arm, f"{type(exc).__name__}: {exc}") from None
        if not isinstance(value, dict):
            raise corrupt(arm, "not a JSON object")
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
            raise corrupt(arm, f"{type(exc).__name__}: {exc}") from None
        numbers = (state.reward_sum, state.reward_sq_sum, state.alpha, state.beta)
        if state.pulls < 0 or not all(math.isfinite(x) for x in numbers):
            raise corrupt(arm, "negative pulls or a non-finite sum")
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


def corrupt(arm: str, why: str) -> MlkitError:
    return MlkitError(
        f"the Redis value at {KEY_PREFIX}{arm} is not a bandit state ({why})",
        hint=f"delete it (redis-cli DEL {KEY_PREFIX}{arm}); mlkit writes it again from the "
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

    def read_database(self) -> dict[str, ArmState]:
        t = schema.bandit_arms
        with self._db("read the bandit state") as engine, engine.connect() as conn:
            rows = conn.execute(sa.select(t).where(t.c.bandit == BANDIT)).all()
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
        if absent."""
        database_id(self.engine)  # creates the row: the identity lives on it
        with self._db("read the bandit generation") as engine, engine.connect() as conn:
            return _read_stamp(conn)

    def _ensure_rows(self) -> None:
        """Rows for every arm (an untrained bandit starts from the uniform prior)."""
        t = schema.bandit_arms
        with self.engine.connect() as conn:
            present = set(conn.execute(sa.select(t.c.arm).where(t.c.bandit == BANDIT)).scalars())
        missing = [arm for arm in ARMS if arm not in present]
        if not missing:
            return
        now = utcnow()
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    t.insert(), [{**_row(ArmState(arm)), "updated_at": now} for arm in missing]
                )
        except IntegrityError:
            pass  # another writer created them first

    # ------------------------------------------------------------ operations

    def read(self) -> tuple[dict[str, ArmState], str]:
        """The state and where it came from ("redis" or "database"). Redis is served only
        when every arm's value carries the database's current stamp; otherwise (flushed,
        older generation, another database's) it is rewritten from the database."""
        if self.redis is None:
            return self.read_database(), "database"
        import redis as redis_lib

        # The stamp before the arms: a reset in between labels what we write as the older
        # generation, which the next reader replaces; never new arms under an old stamp.
        stamp = self.stamp()
        try:
            raw = self.redis.mget([KEY_PREFIX + arm for arm in ARMS])
        except redis_lib.RedisError as exc:
            log.warning("Redis unavailable (%s): reading the bandit from the database", exc)
            return self.read_database(), "database"
        cached = {}
        for arm, value in zip(ARMS, raw, strict=True):
            if value is not None:
                state, carried = ArmState.from_json(arm, value)  # corrupt: stops, untouched
                if carried == stamp:
                    cached[arm] = state
        if len(cached) < len(ARMS):
            states = self.read_database()
            self._write_redis(states.values(), stamp)
            return states, "database"
        return cached, "redis"

    def record(self, arm: str, reward: float) -> ArmState:
        """One reward for one arm: a database increment, then the row mirrored to Redis."""
        check_arm(arm)
        check_reward(reward)
        self._check_redis_value(arm)
        t = schema.bandit_arms
        where = (t.c.bandit == BANDIT) & (t.c.arm == arm)
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
        returning = self.engine.dialect.update_returning
        if returning:
            increment = increment.returning(*t.c)
        if self.redis is None:
            self.stamp()  # the row the bump below moves
        with self._db("record the reward") as engine:
            for _ in range(2):
                with engine.begin() as conn:
                    if self.redis is None:
                        # Redis will not hear of this reward: the next reader must rewrite it.
                        # Generation before arm, the lock order of save and reset.
                        _bump(conn)
                    result = conn.execute(increment)
                    row = result.first() if returning else None
                    if row is None and not returning and result.rowcount:
                        # Our row lock holds until commit: this is the row after our update.
                        row = conn.execute(sa.select(t).where(where)).one()
                    # Read in the increment's transaction: a reset committed before it has
                    # moved the generation, one after it finds our value of the old one.
                    stamp = _read_stamp(conn) if row is not None else None
                if row is not None:
                    state = ArmState.from_row(row)
                    break
                self._ensure_rows()
            else:  # pragma: no cover - the rows exist after _ensure_rows
                raise MlkitError(f"the bandit has no row for {arm}")
        if self.redis is not None and not self._write_redis([state], stamp or self.stamp()):
            self._bump_generation()  # Redis missed this reward: the next reader rewrites it
        return state

    def save(self, states: dict[str, ArmState]) -> bool:
        """Replace the whole state (training) under a new generation: one database
        transaction, then Redis. False when Redis did not receive it."""
        t = schema.bandit_arms
        now = utcnow()
        states = {a: replace(s, updated_at=s.updated_at or now) for a, s in states.items()}
        self.stamp()
        with self._db("save the bandit state") as engine, engine.begin() as conn:
            _bump(conn)
            conn.execute(t.delete().where(t.c.bandit == BANDIT))
            conn.execute(
                t.insert(), [{**_row(s), "updated_at": s.updated_at} for s in states.values()]
            )
            stamp = _read_stamp(conn)
        return self._write_redis(states.values(), stamp)

    def reset(self) -> bool:
        """Forget every arm under a new generation; then delete the Redis keys. False when
        Redis did not answer (its values are then of the old generation, never served)."""
        t = schema.bandit_arms
        self.stamp()
        with self._db("reset the bandit") as engine, engine.begin() as conn:
            _bump(conn)
            conn.execute(t.delete().where(t.c.bandit == BANDIT))
        if self.redis is None:
            return False
        import redis as redis_lib

        try:
            self.redis.delete(*[KEY_PREFIX + arm for arm in ARMS])
        except redis_lib.RedisError as exc:
            log.warning("cannot delete the bandit keys (%s): %s", exc, REDIS_UNREACHABLE)
            return False
        return True

    # ------------------------------------------------------------ helpers

    def _check_redis_value(self, arm: str) -> None:
        """Refuse to go on over a corrupt Redis value, before anything is written."""
        if self.redis is None:
            return
        import redis as redis_lib

        try:
            raw = self.redis.get(KEY_PREFIX + arm)
        except redis_lib.RedisError:
            return  # _write_redis warns
        if raw is not None:
            ArmState.from_json(arm, raw)

    def _write_redis(self, states, stamp: Stamp) -> bool:
        """Each state through the compare-and-set; False when Redis did not answer."""
        if self.redis is None:
            return False
        import redis as redis_lib

        try:
            pipe = self.redis.pipeline(transaction=True)
            for s in states:
                self._script(
                    keys=[KEY_PREFIX + s.arm],
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


def _read_stamp(conn: sa.Connection) -> Stamp | None:
    g = schema.bandit_generations
    row = conn.execute(
        sa.select(g.c.generation, g.c.database_id).where(g.c.bandit == BANDIT)
    ).first()
    return Stamp(int(row.generation), row.database_id) if row is not None else None


def _bump(conn: sa.Connection) -> None:
    """A new generation: no Redis value written before it is served again."""
    g = schema.bandit_generations
    conn.execute(
        g.update()
        .where(g.c.bandit == BANDIT)
        .values(generation=g.c.generation + 1, updated_at=utcnow())
    )


def _row(state: ArmState) -> dict:
    return {
        "bandit": BANDIT,
        "arm": state.arm,
        "pulls": state.pulls,
        "reward_sum": state.reward_sum,
        "reward_sq_sum": state.reward_sq_sum,
        "alpha": state.alpha,
        "beta": state.beta,
    }
