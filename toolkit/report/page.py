"""One self-contained HTML page: text, tables and Plotly charts, plotly.js inlined once, so a
report opens from a file with no network; written atomically."""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ..datasets import _atomic_write_text
from ..errors import MlkitError

COLORS = ("#3366cc", "#dc3912", "#ff9900", "#109618", "#990099", "#0099c6", "#dd4477")
MODEL_COLOR, BASELINE_COLOR, ORACLE_COLOR, WARN_COLOR = "#3366cc", "#999999", "#109618", "#dc3912"
STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1100px;
color:#222;padding:0 1rem}
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2.2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem}
td,th{border:1px solid #ddd;padding:.25rem .6rem;text-align:right}
td:first-child,th:first-child{text-align:left}th{background:#f4f4f6}
.note{color:#555;font-size:.9rem}.warn{color:#b3261e}.pass{color:#137333;font-weight:600}
.fail{color:#b3261e;font-weight:600}.chart{margin:.8rem 0 1.4rem}
"""


@dataclass
class Page:
    """A report being built: blocks of HTML in order, and the names of its charts."""

    title: str
    blocks: list[str] = field(default_factory=list)
    charts: list[str] = field(default_factory=list)

    def heading(self, text: str) -> None:
        self.blocks.append(f"<h2>{html.escape(text)}</h2>")

    def text(self, text: str, css: str = "") -> None:
        attribute = f' class="{css}"' if css else ""
        self.blocks.append(f"<p{attribute}>{html.escape(text)}</p>")

    def warning(self, text: str) -> None:
        self.text(text, "warn")

    def table(self, header: Iterable[str], rows: Iterable[Iterable[Any]]) -> None:
        head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(cell(v))}</td>" for v in row) + "</tr>"
            for row in rows
        )
        self.blocks.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")

    def pairs(self, values: Mapping[str, Any]) -> None:
        """A two-column table of names and values."""
        self.table(("", "value"), values.items())

    def chart(self, name: str, figure, *, height: int = 420, note: str = "") -> None:
        """A Plotly figure, drawn by the page's inlined plotly.js (no CDN)."""
        import plotly.io as pio

        figure.update_layout(template=_template(), height=height, margin={"t": 60, "b": 50})
        div = pio.to_html(
            figure,
            full_html=False,
            include_plotlyjs=False,
            div_id=f"chart-{name}",
            default_height=f"{height}px",
            config={"displaylogo": False, "responsive": True},
        )
        if note:
            div += f'<p class="note">{html.escape(note)}</p>'
        self.blocks.append(f'<div class="chart">{div}</div>')
        self.charts.append(name)

    def render(self, subtitle: str = "") -> str:
        from plotly.offline import get_plotlyjs

        sub = f'<p class="note">{html.escape(subtitle)}</p>' if subtitle else ""
        return (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(self.title)}</title><style>{STYLE}</style>"
            f"<script>{get_plotlyjs()}</script></head><body>"
            f"<h1>{html.escape(self.title)}</h1>{sub}{''.join(self.blocks)}</body></html>\n"
        )


def cell(value: Any) -> str:
    """A table cell: floats to four significant places, missing as a dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e5 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, datetime):
        return f"{value:%Y-%m-%d %H:%M}"
    if isinstance(value, list | tuple):
        return ", ".join(cell(v) for v in value)
    return str(value)


def _template():
    import plotly.graph_objects as go

    axis = {"gridcolor": "#e5e5e5", "zerolinecolor": "#bbbbbb", "automargin": True}
    return go.layout.Template(
        layout={
            "colorway": list(COLORS),
            "font": {"family": "system-ui, sans-serif", "size": 12},
            "paper_bgcolor": "white",
            "plot_bgcolor": "white",
            "xaxis": axis,
            "yaxis": axis,
            "legend": {"orientation": "h", "y": -0.18},
            "title": {"x": 0.01},
        }
    )


def flatten(values: Mapping[str, Any], prefix: str = "", depth: int = 3) -> dict[str, Any]:
    """Nested scalars as `a.b.c` keys; lists of scalars kept, other lists left out."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and depth > 1:
            out |= flatten(value, f"{name}.", depth - 1)
        elif isinstance(value, str | int | float | bool) or value is None:
            out[name] = value
        elif isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
            out[name] = value if len(value) <= 12 else f"{len(value)} values"
    return out


def safe_name(ref: str) -> str:
    """A file name from a model reference: `fraud@prod` -> `fraud-prod`."""
    cleaned = "".join(c if c.isalnum() or c in "._-" else "-" for c in ref)
    return cleaned.strip(".-") or "report"


def write_page(text: str, out: Path) -> Path:
    """Write the page atomically (a temp file renamed into place); the path written."""
    path = Path(out).expanduser()
    if path.is_dir():
        raise MlkitError(f"{path} is a folder", hint="give --out a file name, e.g. report.html")
    try:
        _atomic_write_text(path, text)
    except OSError as exc:
        raise MlkitError(
            f"cannot write the report to {path}: {exc.strerror}",
            hint="choose another --out, or check the folder's permissions",
        ) from None
    return path.resolve()


def reports_dir(config, engine) -> Path:
    """Where reports go by default: `<home>/reports/<database-id>/`, beside the database's
    artifacts and datasets."""
    from ..identity import database_home

    return Path(config.home).expanduser() / "reports" / database_home(config, engine).database_id
