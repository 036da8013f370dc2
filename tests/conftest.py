"""Shared builders: small in-memory sheets and valid synthetic ID numbers."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

from reconcile.config import Settings, load_settings
from reconcile.idcard import check_char
from reconcile.ingest import IngestResult, PROBLEM_SCHEMA, SheetTable


def make_id(region: str = "433124", birth: str = "20120305", seq: str = "123") -> str:
    """A valid 18-character ID (synthetic)."""
    first17 = f"{region}{birth}{seq}"
    return first17 + check_char(first17)


def sheet(source: str, rows: list[dict[str, Any]], *, file: str | None = None, sheet_name: str = "Sheet1",
          first_row: int = 2) -> SheetTable:
    """A SheetTable as ingest would give it: lineage + canonical fields as text."""
    file = file or f"{source}/{source}.xlsx"
    fields = sorted({k for r in rows for k in r})
    data = {f: [None if r.get(f) is None else str(r[f]) for r in rows] for f in fields}
    frame = pl.DataFrame(
        {
            "source": [source] * len(rows),
            "file": [file] * len(rows),
            "sheet": [sheet_name] * len(rows),
            "row": list(range(first_row, first_row + len(rows))),
            **data,
        },
        schema_overrides={f: pl.String for f in fields} | {"row": pl.Int64},
    )
    for f in ("id_number", "head_id"):
        if f in fields and f"{f}_kind" not in fields:
            frame = frame.with_columns(pl.when(pl.col(f).is_not_null()).then(pl.lit("text")).alias(f"{f}_kind"))
    columns = {f: f"hdr_{f}" for f in fields if not f.endswith("_kind")}
    return SheetTable(source=source, file=file, sheet=sheet_name, frame=frame, columns=columns, header_row=first_row - 1)


def ingested(*tables: SheetTable) -> IngestResult:
    return IngestResult(tables=list(tables), problems=pl.DataFrame(schema=PROBLEM_SCHEMA), files_read=len(tables))


@pytest.fixture(scope="session")
def settings() -> Settings:
    return load_settings()
