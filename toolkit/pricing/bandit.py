"""A trained pricing bandit: the global arms and, with `pricing.context: event_type`, one set
of arms per event type, learned from logged offers and replayed on later ones.

An event type's arms start from the global means worth PRIOR_PULLS pulls (empirical Bayes
shrinkage), so a type with few offers prices like the global bandit until its own evidence
outweighs that prior.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from ..errors import MlkitError
from .history import ARMS
from .policies import EPSILON, check_policy, choose_rows

CONTEXTS = ("none", "event_type")
PRIOR_PULLS = 10.0


def check_context(context: str | None) -> str:
    context = context or "none"
    if context not in CONTEXTS:
        raise MlkitError(
            f"unknown pricing.context {context!r}", hint=f"choose one of {', '.join(CONTEXTS)}"
        )
    return context


@dataclass
class Bandit:
    """Arm totals: row 0 the global bandit, row 1 + i the event type `types[i]`."""

    policy: str
    context: str = "none"
    epsilon: float = EPSILON
    scale: float = 1.0  # combined reward / scale, clipped to [0, 1], is what it learns
    types: list[str] = field(default_factory=list)
    totals: np.ndarray = field(default_factory=lambda: np.zeros((1, 3, len(ARMS))))

    def __post_init__(self) -> None:
        check_policy(self.policy)
        self.context = check_context(self.context)

    # pulls, sums and squares per row: totals[:, 0], totals[:, 1], totals[:, 2]

    def rows(self, event_types) -> np.ndarray:
        """The row of each offer's event type, adding rows for types not seen before."""
        for name in dict.fromkeys(event_types):
            if name not in self.types:
                self.types.append(name)
                self.totals = np.concatenate([self.totals, np.zeros((1, 3, len(ARMS)))])
        index = {name: i + 1 for i, name in enumerate(self.types)}
        return np.array([index[name] for name in event_types], dtype=np.int64)

    def reward(self, combined: np.ndarray) -> np.ndarray:
        return np.clip(np.asarray(combined, float) / self.scale, 0.0, 1.0)

    def learn(self, arms: np.ndarray, combined: np.ndarray, rows: np.ndarray) -> None:
        """Add logged offers (arm, combined reward, event-type row) to the global arms and
        their event types' arms."""
        reward = self.reward(combined)
        values = np.stack([np.ones_like(reward), reward, reward**2], axis=1)
        for where in (np.zeros_like(rows), rows):
            np.add.at(self.totals, (where, slice(None), arms), values)

    def pick(self, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The arm the policy plays for each offer (decided before any of their outcomes)."""
        pulls, sums, squares = (self.totals[0, i][None, :] for i in range(3))
        if self.context == "event_type":
            mean = (1.0 + sums) / (2.0 + pulls)  # the global posterior mean, the types' prior
            own = self.totals[rows]
            pulls = own[:, 0] + PRIOR_PULLS
            sums = own[:, 1] + PRIOR_PULLS * mean
            squares = own[:, 2] + PRIOR_PULLS * mean
        shape = (len(rows), len(ARMS))
        pulls, sums, squares = (np.broadcast_to(a, shape) for a in (pulls, sums, squares))
        return choose_rows(self.policy, pulls, sums, rng, epsilon=self.epsilon, squares=squares)

    def replay(self, frame, rng: np.random.Generator) -> np.ndarray:
        """Play the offers of `frame` day by day as it would have online: each day's picks
        come from what was learned before that day, then every logged offer of the day is
        learned (the log is the platform's exploration). The arm picked per offer."""
        arms = frame["arm"].to_numpy()
        combined = frame["combined"].to_numpy(dtype=float)
        rows = self.rows(frame["event_type"].tolist())
        days = frame["created_at"].dt.floor("D").to_numpy()
        bounds = np.flatnonzero(np.r_[True, days[1:] != days[:-1], True])
        picks = np.empty(len(frame), dtype=np.int64)
        for start, end in itertools.pairwise(bounds):
            picks[start:end] = self.pick(rows[start:end], rng)
            self.learn(arms[start:end], combined[start:end], rows[start:end])
        return picks

    # ------------------------------------------------------------ the artifact

    def arm_table(self, row: int = 0) -> dict[str, dict]:
        pulls, sums, squares = self.totals[row]
        return {
            arm: {"pulls": int(pulls[i]), "reward_sum": float(sums[i]), "reward_sq_sum": float(q)}
            for i, (arm, q) in enumerate(zip(ARMS, squares, strict=True))
        }

    def snapshot(self) -> dict:
        """The registered state.json: global arms under `arms` (as before contexts existed),
        each event type's under `contexts`."""
        return {
            "bandit": "pricing",
            "policy": self.policy,
            "context": self.context,
            "epsilon": self.epsilon,
            "reward_scale": self.scale,
            "arms": self.arm_table(),
            "contexts": {name: self.arm_table(i + 1) for i, name in enumerate(self.types)},
        }

    @classmethod
    def from_snapshot(cls, document: dict) -> Bandit:
        """A bandit from its state.json (one without contexts is a global bandit)."""
        if not isinstance(document, dict) or not isinstance(document.get("arms"), dict):
            raise MlkitError("not a pricing bandit state: no arms")
        if set(document["arms"]) != set(ARMS):
            raise MlkitError(
                f"its arms {sorted(document['arms'])} are not the strategies {list(ARMS)}"
            )
        contexts = document.get("contexts") or {}
        tables = [document["arms"], *contexts.values()]
        totals = np.array(
            [
                [[float(t[a][k]) for a in ARMS] for k in ("pulls", "reward_sum", "reward_sq_sum")]
                for t in tables
            ]
        )
        if not np.isfinite(totals).all() or (totals < 0).any():
            raise MlkitError("a negative or non-finite arm total")
        return cls(
            policy=str(document.get("policy", "thompson")),
            context=document.get("context") or "none",
            epsilon=float(document.get("epsilon", EPSILON)),
            scale=float(document.get("reward_scale") or 1.0),
            types=[str(name) for name in contexts],
            totals=totals,
        )

    @property
    def offers(self) -> int:
        return int(self.totals[0, 0].sum())

    def unpulled(self) -> list[str]:
        return [arm for arm, n in zip(ARMS, self.totals[0, 0], strict=True) if n == 0]
