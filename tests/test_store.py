"""The DuckDB store: schema, run bookkeeping, same-night replacement, lock, atomic publish."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import duckdb
import polars as pl
import pytest

from reconcile.errors import ReconError, RunLockedError
from reconcile.fields import FIELDS
from reconcile.store import (
    DATA_TABLES,
    INTERRUPTED_ERROR,
    TABLES,
    RunLock,
    begin_run,
    fail_run,
    finish_run,
    open_readonly,
)

NIGHT = date(2026, 11, 23)
T0 = datetime(2026, 11, 23, 2, 0, tzinfo=timezone(timedelta(hours=8)))


@pytest.fixture()
def db(tmp_path: Path) -> Path:
    return tmp_path / "store" / "recon.duckdb"


def _tables(tag: str, n: int = 2) -> dict[str, pl.DataFrame]:
    """Small frames shaped like the pipeline's, tagged so runs can be told apart."""
    records = pl.DataFrame(
        {
            "source": ["roster"] * n,
            "file": [f"roster/{tag}.xlsx"] * n,
            "sheet": ["Sheet1"] * n,
            "row": pl.Series(range(2, 2 + n), dtype=pl.Int64),
            "rec": pl.Series(range(n), dtype=pl.UInt32),
            "name": [f"{tag}学生{i}" for i in range(n)],
            "id_number": ["43312420050123123X"] * n,
            "id_number_kind": ["text"] * n,
            "name_norm": [f"{tag}学生{i}" for i in range(n)],
            "id_known": pl.Series([18] * n, dtype=pl.UInt8),
            "id_birth": [date(2005, 1, 23)] * n,
            "birth": [None] * n,
            "not_a_column": [1] * n,  # ignored
        }
    )
    problems = pl.DataFrame(
        {"source": ["dibao"], "file": ["dibao/a.xls"], "sheet": ["S"], "row": pl.Series([None], dtype=pl.Int64),
         "column": ["身份证号"], "problem": ["invalid_id"], "value": ["4.30524E+17"]}
    )
    matches = pl.DataFrame(
        {"roster_file": [f"roster/{tag}.xlsx"], "roster_sheet": ["Sheet1"], "roster_row": [2],
         "roster_rec": pl.Series([0], dtype=pl.UInt32), "system": ["filing"],
         "system_file": ["filing/b.xlsx"], "system_sheet": ["户"], "system_row": [9],
         "system_rec": pl.Series([4], dtype=pl.UInt32), "score": [0.98], "weight": [11.5],
         "status": ["matched"], "via": ["id"], "why": [json.dumps({"name": "exact"})]}
    )
    discrepancies = pl.DataFrame(
        {"kind": ["not_found"], "severity": ["high"], "source": ["roster"],
         "file": [f"roster/{tag}.xlsx"], "sheet": ["Sheet1"], "row": [3], "message": ["两系统均未找到"],
         "school": ["一中"], "town": ["城关镇"],
         "diff_positions": pl.Series([[1, 2]], dtype=pl.List(pl.Int8))}  # report-only: ignored
    )
    export_problems = pl.DataFrame(
        {"system": ["filing"], "file": ["filing/b.csv"], "town": ["城关镇"], "village": ["田坪村"], "problem": ["missing"],
         "expected_rows": [40], "expected_from": ["estimate"], "found_rows": [0], "message": ["导出不完整"]}
    )
    household_changes = pl.DataFrame(
        {"system": ["dibao"], "household": [f"{tag}户"], "change": ["left"], "export_incomplete": [False],
         "students": [1], "message": ["停保"]}
    )
    model_parameters = pl.DataFrame(
        {"system": ["filing"], "field": ["id"], "level": ["exact"], "m": [0.95], "u": [1e-6], "bits": [19.9],
         "m_from": ["data"], "u_from": ["configuration"], "prior": [1e-4], "converged": [True]}
    )
    return {"records": records, "row_problems": problems, "matches": matches, "discrepancies": discrepancies,
            "export_problems": export_problems, "household_changes": household_changes,
            "model_parameters": model_parameters}


def _run(db: Path, run_id: str, night: date = NIGHT, tag: str | None = None, n: int = 2) -> None:
    begin_run(db, run_id=run_id, started_at=T0, night=night, as_of=night, parameters={"county": "433124"})
    finish_run(db, run_id=run_id, finished_at=T0 + timedelta(minutes=5),
               counts={"roster_rows": n, "matched": 1, "not_found": 1, "extra": "x"},
               tables=_tables(tag or run_id, n))


def _q(db: Path, sql: str, params: list | None = None) -> list[tuple]:
    con = open_readonly(db)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def _leftovers(db: Path) -> list[str]:
    return sorted(p.name for p in db.parent.iterdir() if p.name not in {db.name, f"{db.name}.lock"})


def test_begin_finish_creates_tables(db):
    _run(db, "r1")
    names = {r[0] for r in _q(db, "SELECT table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE'")}
    assert names == set(TABLES)
    for table, columns in TABLES.items():
        got = [r[0] for r in _q(db, "SELECT column_name FROM information_schema.columns "
                                    "WHERE table_name = ? ORDER BY ordinal_position", [table])]
        assert got == list(columns), table
    (run,) = _q(db, "SELECT status, error, night, as_of, roster_rows, matched, review, counts, "
                    "parameters, finished_at > started_at FROM runs")
    assert run[:7] == ("succeeded", None, NIGHT, NIGHT, 2, 1, None)
    assert json.loads(run[7])["extra"] == "x"
    assert json.loads(run[8]) == {"county": "433124"}
    assert run[9] is True
    rows = _q(db, 'SELECT run_id, source, "row", rec, name, id_known, id_birth, town, id_number_kind '
                  'FROM records ORDER BY rec')
    assert rows == [
        ("r1", "roster", 2, 0, "r1学生0", 18, date(2005, 1, 23), None, "text"),
        ("r1", "roster", 3, 1, "r1学生1", 18, date(2005, 1, 23), None, "text"),
    ]
    assert _q(db, 'SELECT "row", "column", problem FROM row_problems') == [(None, "身份证号", "invalid_id")]
    assert _q(db, "SELECT roster_rec, system_rec, score, why->>'name' FROM matches") == [(0, 4, 0.98, "exact")]
    assert _q(db, "SELECT kind, school, system FROM discrepancies") == [("not_found", "一中", None)]
    assert _leftovers(db) == []  # no temp copies, no WAL


def test_records_columns_follow_fields():
    cols = TABLES["records"]
    for source, fields in FIELDS.items():
        for field in fields:
            assert cols[field] == "VARCHAR", (source, field)
    assert cols["row"] == "BIGINT" and cols["rec"] == "INTEGER" and cols["id_known"] == "SMALLINT"
    assert cols["id_birth"] == cols["birth"] == "DATE"


def test_rerun_of_same_night_replaces_its_data(db):
    _run(db, "prev", night=NIGHT - timedelta(days=1))
    _run(db, "r1", n=3)
    _run(db, "r2", tag="rerun", n=2)
    for table in DATA_TABLES:
        got = {r[0] for r in _q(db, f"SELECT DISTINCT run_id FROM {table}")}
        assert got == {"prev", "r2"}, table
    assert _q(db, "SELECT count(*) FROM records WHERE run_id = 'r2' AND name LIKE 'rerun%'") == [(2,)]
    assert _q(db, "SELECT run_id, status, superseded_by FROM runs ORDER BY run_id") == [
        ("prev", "succeeded", None), ("r1", "superseded", "r2"), ("r2", "succeeded", None)]


def test_begin_after_killed_run_marks_it_failed(db):
    _run(db, "r1")
    begin_run(db, run_id="killed", started_at=T0, night=NIGHT + timedelta(days=1),
              as_of=NIGHT, parameters={})
    # the process died here: no finish_run, no fail_run
    assert _q(db, "SELECT status FROM runs WHERE run_id = 'killed'") == [("running",)]
    begin_run(db, run_id="next", started_at=T0 + timedelta(days=1), night=NIGHT + timedelta(days=1),
              as_of=NIGHT, parameters={})
    assert _q(db, "SELECT run_id, status, error FROM runs ORDER BY run_id") == [
        ("killed", "failed", INTERRUPTED_ERROR), ("next", "running", None), ("r1", "succeeded", None)]
    assert _q(db, "SELECT count(*) FROM records WHERE run_id = 'r1'") == [(2,)]


def test_fail_run_keeps_previous_data(db):
    _run(db, "r1")
    before = _q(db, "SELECT * FROM records ORDER BY rec")
    begin_run(db, run_id="r2", started_at=T0, night=NIGHT, as_of=NIGHT, parameters={})
    fail_run(db, run_id="r2", finished_at=T0, error="读取失败 433124200501231234 (boom)")
    assert _q(db, "SELECT * FROM records ORDER BY rec") == before
    (status, error, finished) = _q(db, "SELECT status, error, finished_at FROM runs WHERE run_id = 'r2'")[0]
    assert status == "failed" and finished is not None
    assert "boom" in error and "433124200501231234" not in error  # IDs never stored in errors
    assert _q(db, "SELECT status FROM runs WHERE run_id = 'r1'") == [("succeeded",)]
    assert _leftovers(db) == []


def test_fail_run_without_begin_records_the_failure(db):
    fail_run(db, run_id="early", finished_at=T0, error="config missing")
    assert _q(db, "SELECT run_id, status, error FROM runs") == [("early", "failed", "config missing")]


def test_finish_rejects_bad_calls(db):
    with pytest.raises(ValueError, match="unknown tables"):
        finish_run(db, run_id="x", finished_at=T0, counts={}, tables={"nope": pl.DataFrame()})
    with pytest.raises(ReconError, match="never begun"):
        finish_run(db, run_id="x", finished_at=T0, counts={}, tables={})
    _run(db, "r1")
    with pytest.raises(ReconError, match="already exists"):
        begin_run(db, run_id="r1", started_at=T0, night=NIGHT, as_of=NIGHT, parameters={})
    with pytest.raises(ReconError, match="not 'running'"):
        finish_run(db, run_id="r1", finished_at=T0, counts={}, tables={})
    assert _leftovers(db) == []


def test_finish_error_leaves_published_file_untouched(db):
    _run(db, "r1")
    before = db.read_bytes()
    begin_run(db, run_id="r2", started_at=T0, night=NIGHT, as_of=NIGHT, parameters={})
    after_begin = db.read_bytes()
    bad = _tables("r2")
    bad["records"] = bad["records"].with_columns(pl.lit("not a date").alias("id_birth"))
    with pytest.raises(duckdb.ConversionException):
        finish_run(db, run_id="r2", finished_at=T0, counts={}, tables=bad)
    assert db.read_bytes() == after_begin != before
    assert _q(db, "SELECT DISTINCT run_id FROM records") == [("r1",)]
    assert _leftovers(db) == []


def test_run_lock_is_exclusive(db):
    with RunLock(db):
        with pytest.raises(RunLockedError, match="another run holds the writer lock"):
            RunLock(db).acquire()
        t = time.monotonic()
        with pytest.raises(RunLockedError):
            RunLock(db, wait_s=0.3).acquire()
        assert time.monotonic() - t >= 0.3
        # writes from the lock holder go through
        _run(db, "r1")
    with RunLock(db):  # released: free again
        pass


def test_lock_held_by_another_process_blocks_writes(db):
    db.parent.mkdir(parents=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import fcntl, sys, time
            f = open({str(db) + '.lock'!r}, 'a+')
            fcntl.flock(f, fcntl.LOCK_EX)
            print('locked', flush=True)
            sys.stdin.readline()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockedError):
            begin_run(db, run_id="r1", started_at=T0, night=NIGHT, as_of=NIGHT, parameters={})
        with pytest.raises(RunLockedError):
            RunLock(db, wait_s=0.2).acquire()
    finally:
        holder.communicate("\n", timeout=10)
    assert not db.exists()
    _run(db, "r1")  # the lock died with its process


READER = textwrap.dedent("""
    import sys, duckdb
    con = duckdb.connect(sys.argv[1], read_only=True)
    def report():
        rows = con.execute("SELECT run_id, count(*) FROM records GROUP BY run_id ORDER BY run_id").fetchall()
        print(repr(rows), flush=True)
    report()
    for line in sys.stdin:
        report()
""")


def test_reader_holding_the_file_does_not_block_the_writer(db):
    _run(db, "r1", n=2)
    reader = subprocess.Popen([sys.executable, "-c", READER, str(db)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline().strip() == "[('r1', 2)]"
        _run(db, "r2", n=5)  # same night: replaces r1, while the reader holds the file open
        reader.stdin.write("again\n")
        reader.stdin.flush()
        assert reader.stdout.readline().strip() == "[('r1', 2)]"  # the old file, still consistent
        # new connections see the new run
        assert _q(db, "SELECT run_id, count(*) FROM records GROUP BY run_id") == [("r2", 5)]
    finally:
        reader.stdin.close()
        reader.wait(timeout=10)
    assert reader.returncode == 0, reader.stderr.read()
    assert _leftovers(db) == []


def test_stale_temp_files_are_cleaned(db):
    _run(db, "r1")
    stale = db.parent / f".{db.name}.dead-run.tmp"
    stale.write_bytes(b"junk")
    Path(f"{stale}.wal").write_bytes(b"junk")
    begin_run(db, run_id="r2", started_at=T0, night=NIGHT, as_of=NIGHT, parameters={})
    assert _leftovers(db) == []


def test_open_readonly_sees_each_new_run_while_older_connections_stay(db):
    _run(db, "r1", n=2)
    old = open_readonly(db)
    try:
        _run(db, "r2", n=4)
        new = open_readonly(db)  # same process, old connection still open
        try:
            assert new.execute("SELECT DISTINCT run_id FROM records").fetchall() == [("r2",)]
        finally:
            new.close()
        assert old.execute("SELECT DISTINCT run_id FROM records").fetchall() == [("r1",)]
    finally:
        old.close()


def test_open_readonly_refuses_writes_and_missing_files(db):
    with pytest.raises(FileNotFoundError):
        open_readonly(db)
    _run(db, "r1")
    con = open_readonly(db)
    try:
        with pytest.raises(duckdb.Error, match="read-only"):
            con.execute("DELETE FROM runs")
    finally:
        con.close()
    assert os.path.getsize(db) > 0
