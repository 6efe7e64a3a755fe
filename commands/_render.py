"""Renderings more than one command prints."""

from __future__ import annotations

from collections.abc import Iterable

from ._common import stdout_console


def print_values(
    title: str | None, header: tuple[str, str], rows: Iterable[tuple[str, str]]
) -> None:
    """A table of names and their values, right-aligned, on stdout."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column(header[0])
    table.add_column(header[1], justify="right")
    for name, value in rows:
        table.add_row(name, value)
    stdout_console().print(table)


def print_seed_summary(document: dict) -> None:
    """A seeded world or appended period: its span, rows per table and load speed."""
    console = stdout_console()
    what = "appended period" if document["period"] else "seeded world"
    console.print(
        f"{what} {document['period']} (seed {document['seed']}): "
        f"{document['start']} .. {document['end']}, families {','.join(document['families'])}"
    )
    print_values(
        None, ("table", "rows"), ((n, f"{r:,}") for n, r in sorted(document["rows"].items()))
    )
    rate = document["orders_per_second"]
    console.print(
        f"generated in {document['generate_seconds']} s, loaded in {document['load_seconds']} s"
        + (f" ({rate:,} orders/s)" if rate else "")
    )
