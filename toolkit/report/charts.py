"""The few chart shapes reports use, as Plotly figures (imported inside, it is heavy)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .page import BASELINE_COLOR, COLORS, MODEL_COLOR, ORACLE_COLOR


def bars(
    title: str,
    names: Sequence[str],
    values: Sequence[float],
    *,
    colors: Sequence[str] | None = None,
    errors: tuple[Sequence[float], Sequence[float]] | None = None,
    ytitle: str = "",
    horizontal: bool = False,
    text: Sequence[str] | None = None,
):
    """One bar per name; `errors` are (below, above) distances for error bars."""
    import plotly.graph_objects as go

    error = None
    if errors is not None:
        error = {"type": "data", "symmetric": False, "array": list(errors[1])}
        error["arrayminus"] = list(errors[0])
    labels = list(text) if text is not None else [f"{v:.4g}" for v in values]
    bar = go.Bar(
        x=list(values) if horizontal else list(names),
        y=list(names) if horizontal else list(values),
        orientation="h" if horizontal else "v",
        marker_color=list(colors) if colors else MODEL_COLOR,
        text=labels,
        textposition="auto",
        **({"error_x" if horizontal else "error_y": error} if error else {}),
    )
    figure = go.Figure(bar)
    figure.update_layout(title=title, showlegend=False)
    if horizontal:
        figure.update_layout(xaxis_title=ytitle, yaxis={"autorange": "reversed"})
    else:
        figure.update_layout(yaxis_title=ytitle)
    return figure


def grouped(
    title: str, categories: Sequence[str], series: Mapping[str, Sequence[float]], ytitle: str = ""
):
    """Bars of several series side by side over the same categories."""
    import plotly.graph_objects as go

    figure = go.Figure(
        [
            go.Bar(name=name, x=list(categories), y=list(values), marker_color=_color(name, i))
            for i, (name, values) in enumerate(series.items())
        ]
    )
    figure.update_layout(title=title, barmode="group", yaxis_title=ytitle)
    return figure


def _color(name: str, index: int) -> str:
    if name == "model":
        return MODEL_COLOR
    if name.startswith("oracle"):
        return ORACLE_COLOR
    return COLORS[(index + 1) % len(COLORS)]


def reference_colors(names: Sequence[str]) -> list[str]:
    """The model blue, the oracle green, baselines grey."""
    return [
        MODEL_COLOR if n == "model" else ORACLE_COLOR if n.startswith("oracle") else BASELINE_COLOR
        for n in names
    ]


def heatmap(
    title: str,
    z: Sequence[Sequence[float]],
    x: Sequence[str],
    y: Sequence[str],
    *,
    text: Sequence[Sequence[str]] | None = None,
    xtitle: str = "",
    ytitle: str = "",
):
    """A matrix of counts or values with each cell's text written in it."""
    import plotly.graph_objects as go

    cells = text if text is not None else [[f"{v:,}" for v in row] for row in z]
    figure = go.Figure(
        go.Heatmap(
            z=[list(row) for row in z],
            x=list(x),
            y=list(y),
            text=[list(row) for row in cells],
            texttemplate="%{text}",
            colorscale="Blues",
            showscale=False,
        )
    )
    figure.update_layout(title=title, xaxis_title=xtitle, yaxis_title=ytitle)
    figure.update_yaxes(autorange="reversed", type="category")
    figure.update_xaxes(type="category")
    return figure


def margins(title: str, rows: Sequence[tuple[str, float, float, float]], xtitle: str):
    """Each comparison's point margin with its interval, beside a line at zero: a margin
    counts only when the whole interval is on the right of the line."""
    import plotly.graph_objects as go

    names = [r[0] for r in rows]
    points = [r[1] for r in rows]
    figure = go.Figure(
        go.Scatter(
            x=points,
            y=names,
            mode="markers",
            marker={"size": 12, "color": [MODEL_COLOR if r[2] > 0 else "#dc3912" for r in rows]},
            error_x={
                "type": "data",
                "symmetric": False,
                "array": [r[3] - r[1] for r in rows],
                "arrayminus": [r[1] - r[2] for r in rows],
            },
        )
    )
    figure.add_vline(x=0, line_dash="dash", line_color="#555")
    figure.update_layout(title=title, xaxis_title=xtitle, showlegend=False)
    figure.update_yaxes(type="category")
    return figure


def lines(title: str, curves: Mapping[str, tuple[Sequence[float], Sequence[float]]], **axes):
    """Curves by name (x, y), e.g. PR or ROC; `axes` are xtitle, ytitle and a `diagonal`."""
    import plotly.graph_objects as go

    figure = go.Figure()
    for i, (name, (x, y)) in enumerate(curves.items()):
        figure.add_trace(
            go.Scatter(x=list(x), y=list(y), mode="lines", name=name, line_color=_color(name, i))
        )
    if axes.get("diagonal"):
        figure.add_trace(
            go.Scatter(
                x=[0, 1],
                y=[0, 1],
                mode="lines",
                name="chance",
                line={"dash": "dot", "color": "#999"},
            )
        )
    figure.update_layout(
        title=title, xaxis_title=axes.get("xtitle", ""), yaxis_title=axes.get("ytitle", "")
    )
    return figure
