"""The one Markdown-table renderer: asset and op metadata previews, reports and alerts.

GitHub-style tables, which the Dagster UI renders in `MetadataValue.md`. Cells: none or
NaN is "–", floats have two decimals and thousands separators, anything else is its text on
one line with `|` escaped. Integers stay plain (they are often identifiers); a report that
wants separators formats its figures before it renders them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

NO_ROWS = "_none_"


def markdown_cell(value) -> str:
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()  # numpy / pandas scalars
    if value is None or (isinstance(value, float) and value != value):
        return "–"
    if isinstance(value, float):
        return f"{value:,.2f}"
    return " ".join(str(value).split()).replace("|", "\\|")


def markdown_table(
    headers: Sequence[str] | None,
    rows: Iterable[Sequence] | Iterable[Mapping],
    empty: str = NO_ROWS,
) -> str:
    """A Markdown table of `rows` under `headers`; with `headers=None` the rows are mappings
    and the first row's keys are the headers. `empty` is shown instead of a table without rows."""
    rows = list(rows)
    if headers is None:
        headers = list(rows[0]) if rows else []
        rows = [[row[name] for name in headers] for row in rows]
    if not rows:
        return empty
    lines = ["| " + " | ".join(map(str, headers)) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(markdown_cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def frame_table(frame, empty: str = NO_ROWS) -> str:
    """A pandas DataFrame as a Markdown table (its columns as headers, no index)."""
    return markdown_table(list(frame.columns), frame.itertuples(index=False), empty)
