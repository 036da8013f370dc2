"""Keeping a county-wide run's long-lived frames as small as their contents.

A polars string column is a list of views into shared byte buffers: a filter, join or sort
copies the views, not the bytes, so the result keeps every buffer of the frame it came
from alive. The records, matches and discrepancies live for the whole run; built from
filtered and joined intermediates (and, for the records, from the raw sheets) they would
hold several times their own size (measured: discrepancies 4x, records 2x on a 250,000-row
roster), and freeing the raw sheets would free nothing. ``compact`` copies the strings
into buffers of their own (a test checks that it still does).
"""

from __future__ import annotations

import polars as pl

__all__ = ["compact", "fresh", "as_categories"]


def fresh(expr: pl.Expr) -> pl.Expr:
    """A string expression whose values are written into buffers of their own (values and
    nulls unchanged): appending an empty string makes polars write every value anew. For
    a frame's last select, so that it is born compact (no second pass over its columns)."""
    return expr + pl.lit("")


def compact(df: pl.DataFrame) -> pl.DataFrame:
    """The same frame, its string columns rebuilt into fresh buffers (values, nulls, order
    and types unchanged). One column at a time, so the copy never holds a second frame's
    worth at once."""
    for c, t in df.schema.items():
        if t == pl.String and df.height:
            df = df.with_columns(fresh(pl.col(c)))
    return df


def as_categories(df: pl.DataFrame, columns: tuple[str, ...]) -> pl.DataFrame:
    """The same frame with those of ``columns`` it holds as text held as Categorical
    (values, nulls and order unchanged)."""
    return df.with_columns(pl.col(c).cast(pl.Categorical) for c in columns if df.schema.get(c) == pl.String)
