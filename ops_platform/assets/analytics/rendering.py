"""Report rendering: the Markdown report with chart placeholders, the figures' formatting
and the charts (matplotlib, Agg: no display), each drawn to PNG bytes."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure


@dataclass
class Report:
    """A Markdown report whose charts are referenced as `{chart:<name>}` placeholders."""

    kind: str
    period_key: str
    template: str
    charts: dict[str, bytes]
    metrics: dict

    def render(self, sources: dict[str, str]) -> str:
        markdown = self.template
        for name, source in sources.items():
            markdown = markdown.replace(f"{{chart:{name}}}", source)
        return markdown


def png_bytes(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def fmt(value) -> str:
    """A KPI for a Markdown cell: thousands separators, two decimals, '–' for none."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.2f}"
    return f"{value:,}"


def percent_change(current, previous) -> float | None:
    if current is None or previous in (None, 0):
        return None
    return round((current - previous) / previous * 100.0, 1)


def arrow(change: float | None) -> str:
    if change is None:
        return "–"
    return f"{'▲' if change > 0 else '▼' if change < 0 else '='} {change:+.1f}%"


def comparison_row(name: str, current, previous) -> tuple[str, str, str, str]:
    """(name, this period, previous period, change) of a KPI, formatted for a table."""
    return name, fmt(current), fmt(previous), arrow(percent_change(current, previous))


def _line_panel(ax, labels: list[str], lines: list[tuple[pd.Series, dict]], title: str) -> None:
    """Lines (values and their matplotlib style) on `ax`, from zero, with a grid and legend."""
    for values, style in lines:
        ax.plot(labels, values.to_numpy(), **style)
    ax.set_title(title, fontsize=10)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def weekly_chart(this_week: pd.DataFrame, last_week: pd.DataFrame) -> bytes:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 3.4), dpi=90)
    axes = figure.subplots(1, 2)
    labels = [d.strftime("%a") for d in this_week.index]
    for ax, column, title in zip(
        axes,
        ("active_students", "lessons_completed"),
        ("Active students per day", "Lessons completed per day"),
    ):
        previous = dict(marker="o", linestyle="--", color="#9aa5b1", label="previous week")
        current = dict(marker="o", color="#2b6cb0", label="this week")
        lines = [(last_week[column], previous), (this_week[column], current)]
        _line_panel(ax, labels, lines, title)
    return png_bytes(figure)


def monthly_charts(series: pd.DataFrame) -> dict[str, bytes]:
    from matplotlib.figure import Figure

    labels = [day[-2:] for day in series.index]
    money = Figure(figsize=(9, 3.2), dpi=90)
    ax = money.subplots()
    ax.bar(labels, series.revenue_cents.to_numpy() / 100.0, color="#2f855a", label="revenue")
    ax.set_ylabel("revenue")
    ax.set_title("Revenue and signups per day", fontsize=10)
    twin = ax.twinx()
    twin.plot(labels, series.signups.to_numpy(), color="#2b6cb0", marker=".", label="signups")
    twin.set_ylabel("signups")
    twin.set_ylim(bottom=0)
    ax.tick_params(axis="x", labelsize=7)

    activity = Figure(figsize=(9, 3.2), dpi=90)
    ax = activity.subplots()
    lines = [
        (series[column], dict(marker=".", color=color, label=column.replace("_", " ")))
        for column, color in (
            ("stream_events", "#c05621"),
            ("learning_events", "#2b6cb0"),
            ("games_played", "#6b46c1"),
        )
    ]
    _line_panel(ax, labels, lines, "Activity per day")
    ax.tick_params(axis="x", labelsize=7)
    return {"revenue_signups": png_bytes(money), "activity": png_bytes(activity)}
