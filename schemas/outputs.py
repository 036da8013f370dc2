"""Shapes of the output tables, checked before anything is published."""

from __future__ import annotations

import pandera.polars as pa
import polars as pl

from reconcile.fields import SOURCES
from reconcile.vocabulary import KIND_CODES, SEVERITIES, SYSTEMS

__all__ = ["MatchSchema", "DiscrepancySchema", "RowProblemSchema"]

class RowProblemSchema(pa.DataFrameModel):
    """A whole-file or sheet problem has ``sheet`` ``''`` (never null: a CSV's sheet is ``''``
    too), ``row`` and ``column`` null; an entry outside the three source folders (or the
    inbox itself) has ``source`` null. See ``reconcile.problems``."""

    source: str = pa.Field(isin=list(SOURCES), nullable=True)
    file: str
    sheet: str
    row: int = pa.Field(nullable=True, ge=1)
    column: str = pa.Field(nullable=True)
    problem: str
    value: str = pa.Field(nullable=True)

    class Config:
        strict = False


class MatchSchema(pa.DataFrameModel):
    roster_file: str
    roster_sheet: str
    roster_row: int
    system: str = pa.Field(isin=list(SYSTEMS))
    system_file: str
    system_sheet: str
    system_row: int
    score: float = pa.Field(ge=0, le=1)
    weight: float
    status: str = pa.Field(isin=["matched", "review"])
    via: str
    # few distinct values over many pairs: held as categories in the chain, text in the store
    why: pl.Categorical = pa.Field(coerce=True)

    class Config:
        strict = False


class DiscrepancySchema(pa.DataFrameModel):
    kind: str = pa.Field(isin=list(KIND_CODES))
    severity: str = pa.Field(isin=list(SEVERITIES))
    source: str = pa.Field(isin=list(SOURCES))
    file: str
    sheet: str
    row: int
    system: str = pa.Field(nullable=True, isin=list(SYSTEMS))
    message: str

    class Config:
        strict = False
