"""Shapes of the policy output tables (issue 7): export_problems, household_changes."""

from __future__ import annotations

import pandera.polars as pa

from reconcile.fields import SYSTEMS as _SYSTEMS

__all__ = ["ExportProblemSchema", "HouseholdChangeSchema"]

SYSTEMS = list(_SYSTEMS)


class ExportProblemSchema(pa.DataFrameModel):
    system: str = pa.Field(isin=SYSTEMS)
    file: str = pa.Field(nullable=True)
    town: str = pa.Field(nullable=True)
    village: str = pa.Field(nullable=True)
    problem: str = pa.Field(isin=["missing", "fewer_than_last_run"])
    expected_rows: int = pa.Field(nullable=True, ge=0)
    expected_from: str = pa.Field(isin=["estimate", "previous_run"])
    found_rows: int = pa.Field(ge=0)
    roster_students: int = pa.Field(nullable=True)
    message: str

    class Config:
        strict = False


class HouseholdChangeSchema(pa.DataFrameModel):
    system: str = pa.Field(isin=SYSTEMS)
    household: str
    change: str = pa.Field(isin=["entered", "left"])
    students: int = pa.Field(ge=0)
    export_incomplete: bool
    message: str

    class Config:
        strict = False
