"""Test helpers for the clerk loop: one night without Prefect, a clerk filling a workbook,
and the generator's truth about who a roster row really is."""

from __future__ import annotations

import hashlib
import shutil
from datetime import date, datetime, timezone
from pathlib import Path

import openpyxl
import polars as pl
import pytest

from reconcile import ingest, pipeline, report, store


@pytest.fixture(scope="module")
def county(generated_county) -> Path:
    """A small generated county (its truth beside the inbox), read-only: tests copy `inbox`."""
    return generated_county(households=250, seed=5)


@pytest.fixture()
def inbox(county: Path, tmp_path: Path) -> Path:
    """This test's own copy of the county's inbox (tests edit roster files)."""
    dst = tmp_path / "inbox"
    shutil.copytree(county / "inbox", dst)
    return dst


# pipeline.reconcile's results by (inbox content, settings, as_of) for nights without clerk
# decisions: many tests start from the same first night, and it is a pure function.
_RECONCILED: dict[tuple, pipeline.Results] = {}


def _content(inbox: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(inbox.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(inbox).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def _reconcile(inbox: Path, settings, decisions: pl.DataFrame, as_of: date | None) -> pipeline.Results:
    key = (_content(inbox), id(settings), as_of) if decisions.is_empty() else None
    if key is not None and key in _RECONCILED:
        return _RECONCILED[key]
    res = pipeline.reconcile(ingest.read_inbox(inbox, settings.header_aliases), settings, decisions=decisions,
                             as_of=as_of)
    if key is not None:
        _RECONCILED[key] = res
    return res


def run_night(inbox: Path, db: Path, reports: Path, night: date, settings, *, run_id: str | None = None,
              as_of: date | None = None) -> tuple[str, pipeline.Results, list[Path]]:
    """One night without Prefect: what the flow does, in order (decisions in, DB, workbooks)."""
    res = _reconcile(inbox, settings, store.read_reviews(db), as_of)
    disc = report.with_row_hashes(res.discrepancies)
    run_id = run_id or f"run-{night.isoformat()}"
    now = datetime(night.year, night.month, night.day, 2, tzinfo=timezone.utc)
    store.begin_run(db, run_id=run_id, started_at=now, night=night, as_of=as_of or night, parameters={})
    store.finish_run(db, run_id=run_id, finished_at=now, counts=res.counts,
                     tables={**pipeline.stored_tables(res), "discrepancies": disc})
    paths = report.write_school_workbooks(disc, reports / run_id, run_id=run_id)
    return run_id, res, paths


def items(db: Path, run_id: str | None = None) -> pl.DataFrame:
    con = store.open_readonly(db)
    try:
        where = f"WHERE run_id = '{run_id}'" if run_id else "WHERE run_id = (SELECT run_id FROM latest_run)"
        return pl.from_arrow(con.sql(f"SELECT * FROM discrepancies {where}").to_arrow_table())
    finally:
        con.close()


def q(db: Path, sql: str, params: list | None = None) -> list[tuple]:
    con = store.open_readonly(db)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def fill(path: Path, decisions: dict[int, tuple], *, edit: dict[int, tuple[str, object]] | None = None,
         out: Path | None = None) -> None:
    """Fill review columns like a clerk: {item_ref: (decision, corrected, note, reviewer)}."""
    wb = openpyxl.load_workbook(path)
    ws = wb[report.SHEET_PROBLEMS]
    col = {c.value: c.column for c in ws[report.HEADER_ROW]}
    for row in ws.iter_rows(min_row=report.HEADER_ROW + 1):
        ref = row[col[report.COL_REF] - 1].value
        if ref in decisions:
            for h, v in zip(report.REVIEW_HEADERS, decisions[ref]):
                ws.cell(row=row[0].row, column=col[h], value=v)
        if edit and ref in edit:
            h, v = edit[ref]
            ws.cell(row=row[0].row, column=col[h], value=v)
    wb.save(out or path)


def book_of(paths: list[Path], ref: int) -> Path:
    for p in paths:
        ws = openpyxl.load_workbook(p)[report.SHEET_PROBLEMS]
        col = [c.value for c in ws[report.HEADER_ROW]].index(report.COL_REF)
        if any(r[col] == ref for r in ws.iter_rows(min_row=report.HEADER_ROW + 1, values_only=True)):
            return p
    raise AssertionError(f"item {ref} in no workbook")


def truth_ids(county: Path) -> pl.DataFrame:
    """Roster rows (file, sheet, row) with the student's true ID and the household head's."""
    persons = pl.read_csv(county / "truth" / "persons.csv", infer_schema_length=0).select("person_id", "id_number")
    recs = pl.read_csv(county / "truth" / "records.csv", infer_schema_length=0).filter(pl.col("source") == "roster")
    return (
        recs.join(persons.rename({"id_number": "true_id"}), on="person_id")
        .join(persons.rename({"person_id": "head_person_id", "id_number": "head_id"}), on="head_person_id", how="left")
        .select("file", "sheet", pl.col("row").cast(pl.Int64), "true_id", "head_id")
    )
