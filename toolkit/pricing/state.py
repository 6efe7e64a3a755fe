"""The bandit's arm statistics: durable in the database, served from Redis.

The database is the record: every reward is one transaction that increments the arm's row
(pulls + 1, sums + r) and reads the row back, so concurrent updates add up exactly
however they interleave. Redis then receives that row through a Lua compare-and-set that
only ever replaces a value with one of more pulls, so its copy converges to the
database's whatever order the writers reach it in, and a flushed or missing key is simply
written again. Without Redis everything reads and writes the database (with a warning).

Redis keys `mab:<arm>` hold JSON: arm, pulls, reward_sum, reward_sq_sum, mean, variance,
alpha, beta, updated_at (`redis-cli GET mab:baseline`).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from .. import schema
from ..clock import utcnow
from ..db import explain_db_error
from ..errors import MlkitError
from .history import ARMS

log = logging.getLogger("mlkit.mab")

BANDIT = "pricing"
KEY_PREFIX = "mab:"

# KEYS[1] the arm's key; ARGV[1] the new JSON, ARGV[2] its pulls. Replaces a missing,
# unreadable or older value; returns 1 when it wrote.
SET_IF_NEWER_SCRIPT = """
local current = redis.call('GET', KEYS[1])
if current then
  local ok, value = pcall(cjson.decode, current)
  if ok and type(value) == 'table' and tonumber(value['pulls'])
     and tonumber(value['pulls']) >= tonumber(ARGV[2]) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1])
return 1
"""


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
        return {
            "arm": self.arm,
            "pulls": self.pulls,
            "reward_sum": self.reward_sum,
            "reward_sq_sum": self.reward_sq_sum,
            "mean": self.mean,
            "variance": self.variance,
            "alpha": self.alpha,
            "beta": self.beta,
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, arm: str, raw: bytes) -> ArmState:
        try:
            value = json.loads(raw)
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
        return state

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
        """The state and where it came from ("redis" or "database"). Keys missing from
        Redis (flushed, expired, never written) are filled from the database."""
        if self.redis is None:
            return self.read_database(), "database"
        import redis as redis_lib

        keys = [KEY_PREFIX + arm for arm in ARMS]
        try:
            raw = self.redis.mget(keys)
        except redis_lib.RedisError as exc:
            log.warning("Redis unavailable (%s): reading the bandit from the database", exc)
            return self.read_database(), "database"
        cached = {
            arm: ArmState.from_json(arm, value)  # a corrupt value stops here, untouched
            for arm, value in zip(ARMS, raw, strict=True)
            if value is not None
        }
        if len(cached) < len(ARMS):
            states = self.read_database()
            self._mirror(states.values())
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
        with self._db("record the reward") as engine:
            for _ in range(2):
                with engine.begin() as conn:
                    result = conn.execute(increment)
                    row = result.first() if returning else None
                    if row is None and not returning and result.rowcount:
                        # Our row lock holds until commit: this is the row after our update.
                        row = conn.execute(sa.select(t).where(where)).one()
                if row is not None:
                    state = ArmState.from_row(row)
                    break
                self._ensure_rows()
            else:  # pragma: no cover - the rows exist after _ensure_rows
                raise MlkitError(f"the bandit has no row for {arm}")
        self._mirror([state])
        return state

    def save(self, states: dict[str, ArmState]) -> None:
        """Replace the whole state (training): one database transaction, then Redis."""
        t = schema.bandit_arms
        now = utcnow()
        with self._db("save the bandit state") as engine, engine.begin() as conn:
            conn.execute(t.delete().where(t.c.bandit == BANDIT))
            conn.execute(
                t.insert(),
                [{**_row(s), "updated_at": s.updated_at or now} for s in states.values()],
            )
        self._write_redis(states.values(), overwrite=True)

    def reset(self) -> None:
        t = schema.bandit_arms
        with self._db("reset the bandit") as engine, engine.begin() as conn:
            conn.execute(t.delete().where(t.c.bandit == BANDIT))
        if self.redis is not None:
            import redis as redis_lib

            try:
                self.redis.delete(*[KEY_PREFIX + arm for arm in ARMS])
            except redis_lib.RedisError as exc:
                log.warning("Redis unavailable (%s): its bandit keys were not deleted", exc)

    # ------------------------------------------------------------ helpers

    def _check_redis_value(self, arm: str) -> None:
        """Refuse to go on over a corrupt Redis value, before anything is written."""
        if self.redis is None:
            return
        import redis as redis_lib

        try:
            raw = self.redis.get(KEY_PREFIX + arm)
        except redis_lib.RedisError:
            return  # _mirror warns
        if raw is not None:
            ArmState.from_json(arm, raw)

    def _mirror(self, states) -> None:
        self._write_redis(states, overwrite=False)

    def _write_redis(self, states, *, overwrite: bool) -> None:
        if self.redis is None:
            return
        import redis as redis_lib

        try:
            pipe = self.redis.pipeline(transaction=True)
            for s in states:
                if overwrite:
                    pipe.set(KEY_PREFIX + s.arm, s.to_json())
                else:
                    self._script(
                        keys=[KEY_PREFIX + s.arm], args=[s.to_json(), s.pulls], client=pipe
                    )
            pipe.execute()
        except redis_lib.RedisError as exc:
            log.warning(
                "Redis unavailable (%s): the bandit state is in the database; Redis is "
                "written again on the next update or read",
                exc,
            )

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
