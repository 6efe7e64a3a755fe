"""Reading a CSV export for an import: a file or stdin (`-`), its delimiter, its header
names normalised, `--map target=source` renames, and each data row's line number."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import MlkitError
from ..signal.ingest import _delimiter, _normal, _source

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

# The file or stdin, its delimiter and the header normalisation are `ingest market`'s.
normal_name = _normal


@dataclass
class CsvCells:
    """A file's non-blank data rows as stripped text, with the line each came from."""

    where: str
    headers: list[str]
    cells: pd.DataFrame
    line_numbers: np.ndarray


def read_cells(source: str) -> CsvCells:
    """Every cell as stripped text (blank lines dropped); errors name the file."""
    import numpy as np
    import pandas as pd

    where, handle, first_line = _source(source)
    options = {"encoding": "utf-8-sig"} if isinstance(handle, Path) else {}
    try:
        raw = pd.read_csv(
            handle,
            dtype=str,
            keep_default_na=False,
            skip_blank_lines=False,
            sep=_delimiter(first_line),
            **options,
        )
    except pd.errors.EmptyDataError:
        raise MlkitError(f"{where}: the file is empty", hint="expect a header line") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        detail = " ".join(str(exc).split())
        raise MlkitError(f"{where}: not a readable CSV file: {detail}") from None
    line_numbers = np.arange(len(raw)) + 2  # the header is line 1
    cells = raw.apply(lambda column: column.str.strip())
    blank = (cells == "").all(axis=1).to_numpy()
    cells, line_numbers = cells.loc[~blank].reset_index(drop=True), line_numbers[~blank]
    if cells.empty:
        raise MlkitError(f"{where}: no data rows after the header")
    return CsvCells(where, [str(h) for h in raw.columns], cells, line_numbers)


def parse_renames(pairs: list[str] | None) -> dict[str, str]:
    """`--map target=source` options as {target: source}."""
    renames: dict[str, str] = {}
    for pair in pairs or []:
        target, sep, source = pair.partition("=")
        if not sep or not target.strip() or not source.strip():
            raise MlkitError(
                f"--map {pair!r} is not target=source",
                hint="for example --map order_id=transaction_id",
            )
        renames[normal_name(target)] = source.strip()
    return renames


def match_columns(
    headers: list[str],
    accepted: dict[str, tuple[str, ...]],
    renames: dict[str, str],
    where: str,
) -> dict[str, str]:
    """Our column -> the file's header: `renames` first, then each column's accepted names
    (any case); a header serves one column at most."""
    by_normal: dict[str, str] = {}
    for header in headers:
        by_normal.setdefault(normal_name(header), header)
    unknown = [t for t in renames if t not in accepted]
    if unknown:
        raise MlkitError(
            f"--map {unknown[0]}=...: {unknown[0]!r} is not a column this import fills",
            hint=f"targets: {', '.join(accepted)}",
        )
    mapping: dict[str, str] = {}
    for target, source in renames.items():
        header = source if source in headers else by_normal.get(normal_name(source))
        if header is None:
            shown = ", ".join(repr(h) for h in headers)
            raise MlkitError(
                f"{where}: --map {target}={source}: no column {source!r} (header has {shown})"
            )
        mapping[target] = header
    for column, names in accepted.items():
        if column in mapping:
            continue
        for name in names:
            header = by_normal.get(name)
            if header is not None and header not in mapping.values():
                mapping[column] = header
                break
    return mapping
