"""Typed columns from a CSV's text cells, by the target column's type: integers (ids),
numbers, booleans, timestamps (ISO 8601, epoch seconds or milliseconds) and text, whose
length `check_lengths` checks once derived. A bad cell is a problem naming line and column."""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa

from ..inputs import LineProblems, check_epoch_units

if TYPE_CHECKING:
    import pandas as pd

TRUE = frozenset({"true", "t", "yes", "y", "1", "1.0"})
FALSE = frozenset({"false", "f", "no", "n", "0", "0.0"})
INTEGER = r"[+-]?\d{1,18}(?:\.0+)?"
STRING_ID_HINT = (
    "mlkit keeps this id as an integer: --map it to an integer column of the file, or read the "
    "platform's table where it lives through a `sources:` mapping; wallet addresses are the "
    "exception (buyer_wallet_id, seller_wallet_id and wallet_id accept them)"
)


class Converter:
    """Converts one file's columns, collecting problems across all of them."""

    def __init__(self, problems: LineProblems):
        self.problems = problems
        self.string_ids = False  # a text value met in an integer id column

    def column(self, text: pd.Series, column: sa.Column, *, addresses: bool = False):
        """The typed values (NA where the cell is empty). With `addresses`, a non-integer
        value is kept as text: a wallet address to resolve."""
        kind = column.type
        present = (text != "").to_numpy()
        if isinstance(kind, sa.Boolean):
            return self._booleans(text, present, column.name)
        if isinstance(kind, sa.Integer):
            return self._integers(text, present, column.name, addresses)
        if isinstance(kind, sa.Numeric):
            return self._numbers(text, present, column.name)
        if isinstance(kind, sa.DateTime):
            return self._timestamps(text, present, column.name)
        return text.where(present, None).astype(object)

    def _add(self, mask, text: pd.Series, name: str, why: str) -> None:
        self.problems.add(mask, lambda i: f"column {name}: {text.iloc[i]!r} {why}")

    def _integers(self, text, present, name: str, addresses: bool):
        import pandas as pd

        whole = text.str.fullmatch(INTEGER).to_numpy()
        integers = text.where(whole).str.replace(r"\.0+$", "", regex=True)
        values = integers.astype("string").astype("Int64")
        other = present & ~whole
        if addresses:
            mixed = values.astype(object)
            mixed[other] = text[other]
            return mixed.where(pd.Series(present, index=text.index), None)
        if other.any() and not text[other].str.fullmatch(r"[+-]?[\d.eE+-]+").all():
            self.string_ids = True
        self._add(other, text, name, "is not an integer")
        return values

    def _numbers(self, text, present, name: str):
        import numpy as np
        import pandas as pd

        values = pd.to_numeric(text.where(present), errors="coerce").astype(float)
        self._add(present & ~np.isfinite(values.to_numpy()), text, name, "is not a number")
        return values

    def _booleans(self, text, present, name: str):
        lower = text.str.lower()
        values = lower.isin(TRUE).astype("boolean").where(present)
        bad = present & ~(lower.isin(TRUE) | lower.isin(FALSE)).to_numpy()
        self._add(bad, text, name, "is not a boolean (true/false, yes/no, 1/0)")
        return values

    def _timestamps(self, text, present, name: str):
        import numpy as np

        from ..signal.ingest import parse_timestamps

        # Epoch numbers and written dates may share a column: each part is read as it is.
        numeric = present & text.str.fullmatch(r"[+-]?\d+(?:\.\d*)?").to_numpy()
        values, units = parse_timestamps(text.where(numeric))
        written, _ = parse_timestamps(text.where(present & ~numeric))
        values = values.where(numeric, written)
        check_epoch_units(self.problems, np.where(numeric, units, ""))
        why = "is not a timestamp (ISO 8601, or epoch seconds or milliseconds)"
        self._add(present & values.isna().to_numpy(), text, name, why)
        return values


def check_lengths(problems: LineProblems, table: sa.Table, frame: pd.DataFrame) -> None:
    """Text longer than its column holds (MySQL would cut it or fail on it)."""
    for name in frame.columns:
        length = getattr(table.c[name].type, "length", None)
        if not length or not isinstance(table.c[name].type, sa.String):
            continue
        sizes = frame[name].map(lambda v: len(v) if isinstance(v, str) else 0)
        problems.add(
            (sizes > length).to_numpy(),
            lambda i, n=name, s=sizes, most=length: (
                f"column {n}: {s.iloc[i]} characters, over {most}"
            ),
        )
