"""Reading a CSV export for an import: a file or stdin (`-`), its delimiter, its header
names normalised, `--map target=source` renames, and each data row's line number."""

from __future__ import annotations

import io
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import MlkitError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

STDIN = "-"


def normal_name(name: str) -> str:
    """A header as it is matched: lower case, spaces, dashes and slashes as underscores."""
    return re.sub(r"[\s\-/]+", "_", str(name).strip().lower().strip("<>\"'"))


def open_source(csv: str) -> tuple[str, Path | io.StringIO, str]:
    """(where, what pandas reads, the first line) of a path, or of stdin for `-`."""
    if csv == STDIN:
        stream = sys.stdin
        if stream is None or stream.isatty():
            raise MlkitError(
                "--csv - reads the CSV from stdin, but nothing is piped in",
                hint="pipe a file in, e.g. cat orders.csv | mlkit ingest orders --csv -",
            )
        data = stream.buffer.read() if hasattr(stream, "buffer") else stream.read().encode()
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise MlkitError(
                f"stdin: not UTF-8 text (byte {exc.start})", hint="pipe a UTF-8 CSV file"
            ) from None
        return "stdin", io.StringIO(text), text.split("\n", 1)[0]
    path = Path(csv)
    if not path.is_file():
        raise MlkitError(f"{csv}: no such file", hint="check the --csv path, or pass - for stdin")
    with path.open(encoding="utf-8-sig", errors="replace") as handle:
        return csv, path, handle.readline()


def delimiter(first_line: str) -> str:
    """Comma unless the first line is plainly separated by semicolons or tabs."""
    for candidate in (",", ";", "\t"):
        if candidate in first_line:
            return candidate
    return ","


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

    where, handle, first_line = open_source(source)
    options = {"encoding": "utf-8-sig"} if isinstance(handle, Path) else {}
    try:
        raw = pd.read_csv(
            handle,
            dtype=str,
            keep_default_na=False,
            skip_blank_lines=False,
            sep=delimiter(first_line),
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
