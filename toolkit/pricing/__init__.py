"""The pricing family: a multi-armed bandit over pricing strategies."""
