"""Renderings more than one command prints."""

from __future__ import annotations

from ._common import stdout_console


def print_seed_summary(document: dict) -> None:
    """A seeded world or appended period: its span, rows per table and load speed."""
    from rich.table import Table

    console = stdout_console()
    what = "appended period" if document["period"] else "seeded world"
    console.print(
        f"{what} {document['period']} (seed {document['seed']}): "
        f"{document['start']} .. {document['end']}, families {','.join(document['families'])}"
    )
    table = Table()
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, rows in sorted(document["rows"].items()):
        table.add_row(name, f"{rows:,}")
    console.print(table)
    rate = document["orders_per_second"]
    console.print(
        f"generated in {document['generate_seconds']} s, loaded in {document['load_seconds']} s"
        + (f" ({rate:,} orders/s)" if rate else "")
    )
