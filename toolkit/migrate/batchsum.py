"""The source side of the server checksum (digest.py), computed from each batch as the copy
reads and writes it: the source is read once, and the canonical texts of most columns come
from the texts the bulk load already built for the batch instead of being made again.

Where a column's load text is its canonical text, or turns into it by a cheap change of the
whole column (microseconds added, trailing zeros cut, the length put in front), that text is
used; other columns (doubles, times, JSON bound for jsonb) are made from the source's values
by verify.py's functions, exactly as a separate pass over the source would make them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from . import digest
from .reflect import ColumnSpec
from .values import _normal_decimals, _with_microseconds
from .verify import column_texts

# Present values' load texts -> their canonical texts, or None when they do not have the
# form the rule covers (the column then goes by its values).
Derive = Callable[[Sequence[str]], list[str] | None]


def _same(texts: Sequence[str]) -> list[str]:
    return texts if isinstance(texts, list) else list(texts)


def _dates(texts: Sequence[str]) -> list[str] | None:
    return _same(texts) if set(map(len, texts)) <= {10} else None


def _datetimes(texts: Sequence[str]) -> list[str] | None:
    # 'YYYY-MM-DD HH:MM:SS' and the same with six fraction digits, as the load writes them.
    return _with_microseconds(_same(texts)) if set(map(len, texts)) <= {19, 26} else None


def _decimals(texts: Sequence[str]) -> list[str] | None:
    joined = "".join(texts)
    if "e" in joined or "E" in joined:
        return None
    return _normal_decimals(_same(texts))


def _derivation(c: ColumnSpec, target: str) -> Derive | None:
    kind = c.kind
    if kind in ("int", "bool", "blob"):
        return _same  # digits; '1' and '0'; lowercase hex
    if kind == "text" or (kind == "json" and target == "mysql"):
        return digest.counted
    if kind == "date":
        return _dates
    if kind == "datetime" and not c.timezone:
        return _datetimes
    if kind == "decimal":
        return _decimals
    return None  # doubles, times, jsonb: from the values


class BatchChecksum:
    """One table's source checksum, summed over the batches the copy wrote."""

    def __init__(self, columns: Sequence[ColumnSpec], source: str, target: str):
        self.derive = [_derivation(c, target) for c in columns]
        self.from_values = [column_texts(c, source, target, digest.METHOD) for c in columns]
        self.rows = 0
        self.total = 0

    def column(self, i: int, values: Sequence[Any], texts: Sequence[str]) -> list[str]:
        """Canonical texts of one column of a batch: `values` as the source stored them,
        `texts` the load's texts of the values that are not NULL, before escaping."""
        derive = self.derive[i]
        derived = derive(texts) if derive is not None else None
        if derived is None:
            return self.from_values[i](values)
        if len(derived) == len(values):
            return derived
        following = iter(derived).__next__
        return [digest.NULL_TEXT if v is None else following() for v in values]

    def of_rows(self, rows: Sequence[Sequence[Any]]) -> int:
        """The checksum of rows as the source stored them (a batch some rows left)."""
        if not rows:
            return 0
        columns = zip(*rows, strict=True)
        return digest.sum_md5_rows(
            [fn(col) for fn, col in zip(self.from_values, columns, strict=True)]
        )

    def add(self, rows_read: int, checksum: int) -> None:
        self.rows += rows_read
        self.total = (self.total + checksum) & digest.MASK64
