"""The DuckDB store: schema, run bookkeeping, same-night replacement, lock, atomic publish,
file modes, foreign and version-1 files, analysts' connections, disk space, retention."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import duckdb
import polars as pl
import pytest

from reconcile import store
from reconcile.config import StoreSettings
from reconcile.errors import ReconError, RunLockedError
from reconcile.fields import FIELDS
from reconcile.store import (
    CATALOG_TABLES,
    DATA_TABLES,
    INTERRUPTED_ERROR,
    KEPT_WHEN_SUPERSEDED,
    TABLES,
    DiskFullError,
    FileHeldError,
    ForeignDatabaseError,
    RunLock,
    begin_run,
    fail_run,
    finish_run,
    open_readonly,
    read_item_map,
    stage_tables,
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
    """Temp copies, WALs, stray files: anything but the database, its lock and its folder's
    catalog, stamp and Parquet files."""
    top = [p.name for p in db.parent.iterdir() if p.name not in {db.name, f"{db.name}.lock", f"{db.name}.d"}]
    root = db.parent / f"{db.name}.d"
    inner = [p.name for p in root.iterdir() if p.name not in {"catalog.duckdb", "published.json", "nights"}] \
        if root.is_dir() else []
    stray = [str(p) for p in (root / "nights").rglob("*") if p.is_file() and p.suffix != ".parquet"]
    return sorted(top + inner + stray)


def _parquet_runs(db: Path) -> set[str]:
    return {p.parent.name for p in (db.parent / f"{db.name}.d" / "nights").rglob("*.parquet")} - {"schema"}


def test_begin_finish_creates_tables(db):
    _run(db, "r1")
    names = {r[0] for r in _q(db, "SELECT table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE'")}
    assert names == set(CATALOG_TABLES) | {"recon_meta", "partitions"}  # run tables: views over Parquet
    assert _q(db, "SELECT value FROM recon_meta WHERE key = 'schema_version'") == [("2",)]
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


def test_columns_built_for_matching_alone_are_not_stored():
    from reconcile.match import MATCH_ONLY, ROSTER_COLS

    assert set(MATCH_ONLY) <= set(ROSTER_COLS) and set(MATCH_ONLY).isdisjoint(TABLES["records"])


def test_rerun_of_same_night_replaces_its_data(db):
    _run(db, "prev", night=NIGHT - timedelta(days=1))
    _run(db, "r1", n=3)
    _run(db, "r2", tag="rerun", n=2)
    for table in DATA_TABLES:
        got = {r[0] for r in _q(db, f"SELECT DISTINCT run_id FROM {table}")}
        assert got == ({"prev", "r1", "r2"} if table in KEPT_WHEN_SUPERSEDED else {"prev", "r2"}), table
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


def _table_rows(db: Path) -> dict[str, list[tuple]]:
    return {t: sorted(_q(db, f"SELECT * EXCLUDE (run_id) FROM {t}"), key=repr)
            for t in TABLES if t not in CATALOG_TABLES}


def test_staged_tables_publish_as_the_frames_would(db, tmp_path):
    other = tmp_path / "other" / "recon.duckdb"
    _run(other, "r1")
    begin_run(db, run_id="r1", started_at=T0, night=NIGHT, as_of=NIGHT, parameters={"county": "433124"})
    staged = stage_tables(db, run_id="r1", tables=_tables("r1"))
    assert set(staged) == {t for t in TABLES if t not in CATALOG_TABLES}  # item_refs from discrepancies too
    assert _q(db, "SELECT count(*) FROM partitions") == [(0,)]  # written, not published
    finish_run(db, run_id="r1", finished_at=T0 + timedelta(minutes=5),
               counts={"roster_rows": 2, "matched": 1, "not_found": 1, "extra": "x"}, tables=staged)
    assert _table_rows(db) == _table_rows(other)
    assert _q(db, "SELECT status FROM runs") == [("succeeded",)]
    assert _leftovers(db) == []


def test_staged_tables_of_a_failed_night_are_swept_by_the_next(db):
    _run(db, "r1")
    begin_run(db, run_id="r2", started_at=T0, night=NIGHT, as_of=NIGHT, parameters={})
    stage_tables(db, run_id="r2", tables=_tables("r2"))
    assert _parquet_runs(db) == {"r1", "r2"}
    fail_run(db, run_id="r2", finished_at=T0, error="workbooks failed")
    assert _q(db, "SELECT DISTINCT run_id FROM records") == [("r1",)]
    with pytest.raises(ReconError, match="not 'running'"):
        stage_tables(db, run_id="r2", tables=_tables("r2"))
    begin_run(db, run_id="r3", started_at=T0, night=NIGHT, as_of=NIGHT, parameters={})
    assert _parquet_runs(db) == {"r1"}


def test_a_failed_publish_keeps_the_staged_files_for_its_retry(db, monkeypatch):
    begin_run(db, run_id="r1", started_at=T0, night=NIGHT, as_of=NIGHT, parameters={})
    staged = stage_tables(db, run_id="r1", tables=_tables("r1"))
    calls = []

    def fail_once(*args, **kw):
        calls.append(1)
        if len(calls) == 1:
            raise OSError(5, "input/output error")

    monkeypatch.setattr(store.catalog, "_publish_copy", lambda *a, **k: None)
    monkeypatch.setattr(store.catalog.af, "fsync_path", fail_once)
    with pytest.raises(OSError):
        finish_run(db, run_id="r1", finished_at=T0, counts={}, tables=staged)
    assert all(w.path.exists() for w in staged.values())
    monkeypatch.undo()
    finish_run(db, run_id="r1", finished_at=T0, counts={}, tables=staged)
    assert _q(db, "SELECT count(*) FROM records") == [(2,)]
    begin_run(db, run_id="r2", started_at=T0, night=NIGHT, as_of=NIGHT, parameters={})
    lost = stage_tables(db, run_id="r2", tables=_tables("r2"))
    lost["matches"].path.unlink()
    with pytest.raises(ReconError, match="matches: the file staged for run 'r2'"):
        finish_run(db, run_id="r2", finished_at=T0, counts={}, tables=lost)


def test_finish_error_leaves_published_file_untouched(db):
    _run(db, "r1")
    before = db.read_bytes()
    begin_run(db, run_id="r2", started_at=T0, night=NIGHT, as_of=NIGHT, parameters={})
    after_begin = db.read_bytes()
    bad = _tables("r2")
    bad["records"] = bad["records"].with_columns(pl.lit("not a date").alias("id_birth"))
    with pytest.raises(ReconError, match=r"records columns \['id_birth'\] cannot be stored") as err:
        finish_run(db, run_id="r2", finished_at=T0, counts={}, tables=bad)
    assert "not a date" not in str(err.value)  # never a cell value
    assert db.read_bytes() == after_begin != before
    assert _parquet_runs(db) == {"r1"}
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
    stale = db.parent / f".{db.name}.dead-run.tmp"  # a version-1 writer's
    stale.write_bytes(b"junk")
    Path(f"{stale}.wal").write_bytes(b"junk")
    (db.parent / f"{db.name}.d" / ".dead-run.tmp").write_bytes(b"junk")
    orphan = db.parent / f"{db.name}.d" / "nights" / "2026-11-20" / "dead-run" / "records.parquet"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"junk")  # a killed run's file, never listed in the catalog
    begin_run(db, run_id="r2", started_at=T0, night=NIGHT, as_of=NIGHT, parameters={})
    assert _leftovers(db) == []
    assert not orphan.parent.exists()
    assert _parquet_runs(db) == {"r1"}


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


# ---- file modes ------------------------------------------------------------------------------


def _modes(db: Path) -> set[int]:
    files = [db, *(db.parent / f"{db.name}.d").rglob("*")]
    return {p.stat().st_mode & 0o777 for p in files if p.is_file()}


@pytest.mark.parametrize("start_mode, files, dirs", [
    (None, 0o600, 0o700),      # a new database: owner only
    (0o600, 0o600, 0o700),
    (0o640, 0o640, 0o750),     # a group of analysts may read it: they still can
])
def test_every_write_keeps_the_database_mode(db, start_mode, files, dirs):
    if start_mode is not None:
        _run(db, "r0", night=NIGHT - timedelta(days=1))
        os.chmod(db, start_mode)
    _run(db, "r1")
    _run(db, "r2")  # a rerun: superseding, dropping, republishing
    assert _modes(db) == {files}
    folders = [db.parent / f"{db.name}.d", *(p for p in (db.parent / f"{db.name}.d").rglob("*") if p.is_dir())]
    assert {p.stat().st_mode & 0o777 for p in folders} == {dirs}


# ---- what is at --db ---------------------------------------------------------------------------


def _foreign(path: Path, how: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if how == "text":
        path.write_text("not a database\n")
        return
    con = duckdb.connect(str(path))
    if how == "other_runs":        # another program's runs table
        con.execute("CREATE TABLE runs (run_id VARCHAR, status VARCHAR, pipeline VARCHAR)")
        con.execute("INSERT INTO runs VALUES ('x', 'ok', 'etl')")
    elif how == "extra_table":     # our tables, and one of its own
        con.execute(store.schema_sql())
        con.execute("CREATE TABLE invoices (id INTEGER)")
    elif how == "extra_column":    # our tables, one with a column we never wrote
        con.execute(store.schema_sql())
        con.execute("ALTER TABLE records ADD COLUMN salary DOUBLE")
    elif how == "empty":
        con.execute("CREATE SEQUENCE s")
    con.close()


@pytest.mark.parametrize("how, why", [
    ("text", "not a DuckDB database"),
    ("other_runs", "runs table lacks"),
    ("extra_table", "tables ['invoices'] are not recon's"),
    ("extra_column", "'records' has columns ['salary']"),
    ("empty", "no runs table"),
])
def test_a_database_of_another_program_is_refused_and_left_alone(db, how, why):
    _foreign(db, how)
    before = db.read_bytes()
    with pytest.raises(ForeignDatabaseError, match="not a recon database|not a DuckDB database") as err:
        begin_run(db, run_id="r1", started_at=T0, night=NIGHT, as_of=NIGHT, parameters={})
    assert why in str(err.value)
    assert db.read_bytes() == before
    assert sorted(p.name for p in db.parent.iterdir()) == [db.name, f"{db.name}.lock"]


def _version_one(db: Path) -> None:
    """A database as the previous store wrote it: every table in one unmarked file."""
    db.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(db))
    v1 = {t: c for t, c in TABLES.items() if t != "item_refs"}
    for t, cols in v1.items():
        con.execute(f'CREATE TABLE "{t}" (' + ", ".join(f'"{c}" {ty}' for c, ty in cols.items()) + ")")
    con.execute("INSERT INTO runs (run_id, started_at, finished_at, status, night, as_of) VALUES "
                "('old', ?, ?, 'succeeded', ?, ?), ('older', ?, ?, 'superseded', ?, ?)",
                [T0, T0, NIGHT, NIGHT, T0, T0, NIGHT, NIGHT])
    con.execute("INSERT INTO records (run_id, source, file, sheet, \"row\", rec, name) "
                "SELECT 'old', 'roster', 'roster/a.xlsx', 'S', i + 2, i, '学生' || i FROM range(5) t(i)")
    con.execute("INSERT INTO discrepancies (run_id, kind, item_key, school) VALUES ('old', 'not_found', 'k1', '一中')")
    con.execute("INSERT INTO reviews (review_id, item_key, decision_code) VALUES ('rv1', 'k1', 'confirm')")
    con.execute("CREATE VIEW latest_run AS SELECT * FROM runs")
    con.close()
    os.chmod(db, 0o640)


def test_a_version_one_database_is_migrated_on_its_first_run(db):
    _version_one(db)
    old_bytes = db.read_bytes()
    _run(db, "new", night=NIGHT + timedelta(days=1))
    assert _q(db, "SELECT run_id, status FROM runs ORDER BY run_id") == [
        ("new", "succeeded"), ("old", "succeeded"), ("older", "superseded")]
    assert _q(db, "SELECT run_id, count(*) FROM records GROUP BY ALL ORDER BY 1") == [("new", 2), ("old", 5)]
    assert _q(db, "SELECT name FROM records WHERE run_id = 'old' ORDER BY rec LIMIT 2") == [("学生0",), ("学生1",)]
    assert _q(db, "SELECT item_key FROM discrepancies WHERE run_id = 'old'") == [("k1",)]
    assert _q(db, "SELECT review_id FROM reviews") == [("rv1",)]
    assert _q(db, "SELECT count(*) FROM night_over_night") == [(2,)]
    assert _q(db, "SELECT value FROM recon_meta WHERE key = 'schema_version'") == [("2",)]
    backup = db.with_name(f"{db.name}.v1-backup")
    assert backup.read_bytes() == old_bytes                     # the original, kept
    assert _modes(db) == {0o640}


# ---- analysts' connections ------------------------------------------------------------------

ANALYST_RW = textwrap.dedent("""
    import sys, duckdb
    con = duckdb.connect(sys.argv[1])          # read-write, as someone's notebook might
    con.execute("CREATE TABLE my_notes (note VARCHAR)")
    con.execute("INSERT INTO my_notes VALUES ('checked 城关镇')")
    print('written', flush=True)
    sys.stdin.readline()
    con.close()
""")


def test_an_analysts_read_write_connection_is_refused_before_anything_changes(db):
    _run(db, "r1", night=NIGHT - timedelta(days=1))
    analyst = subprocess.Popen([sys.executable, "-c", ANALYST_RW, str(db)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert analyst.stdout.readline().strip() == "written"
        catalog_before = (db.parent / f"{db.name}.d" / "catalog.duckdb").read_bytes()
        with pytest.raises(FileHeldError, match=f"open for writing by process {analyst.pid}"):
            begin_run(db, run_id="r2", started_at=T0, night=NIGHT, as_of=NIGHT, parameters={})
        assert (db.parent / f"{db.name}.d" / "catalog.duckdb").read_bytes() == catalog_before
        # a failing run can still be recorded: the catalog is changed, the analyst's file is not
        fail_run(db, run_id="r2", finished_at=T0, error="boom")
        assert _q(db, "SELECT status FROM runs WHERE run_id = 'r2'") == [("failed",)]
    finally:
        analyst.communicate("\n", timeout=30)
    assert analyst.returncode == 0
    # Their rows were committed into the published copy: the next run keeps that file aside.
    _run(db, "r3")
    [aside] = db.parent.glob(f"{db.name}.edited-*")
    con = duckdb.connect(str(aside), read_only=True)
    try:
        assert con.execute("SELECT note FROM my_notes").fetchall() == [("checked 城关镇",)]
    finally:
        con.close()
    assert _q(db, "SELECT status FROM runs WHERE run_id = 'r3'") == [("succeeded",)]
    assert _leftovers(db) == [aside.name]


# ---- disk space ------------------------------------------------------------------------------


def _fake_free(monkeypatch, free: int) -> None:
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage",
                        lambda p: real(p)._replace(free=free))


@pytest.mark.parametrize("free_mib, recorded", [(2, False), (6, True)])
def test_too_little_free_space_is_refused_before_writing(db, monkeypatch, capsys, free_mib, recorded):
    """Free space faked through shutil.disk_usage (the real ENOSPC is the next test)."""
    _run(db, "r1", night=NIGHT - timedelta(days=1))
    catalog_before = (db.parent / f"{db.name}.d" / "catalog.duckdb").read_bytes()
    _fake_free(monkeypatch, free_mib * 2**20)
    with pytest.raises(DiskFullError, match="not enough free space"):
        begin_run(db, run_id="r2", started_at=T0, night=NIGHT, as_of=NIGHT, parameters={})
    assert (db.parent / f"{db.name}.d" / "catalog.duckdb").read_bytes() == catalog_before
    error = "读取失败 433124200501231234 (inbox gone)"
    if recorded:   # a failure is small: recorded while a run would be refused
        fail_run(db, run_id="r2", finished_at=T0, error=error)
        [(status, text)] = _q(db, "SELECT status, error FROM runs WHERE run_id = 'r2'")
        assert status == "failed" and "(inbox gone)" in text
    else:          # not even that: the reason goes to stderr and the log
        with pytest.raises(DiskFullError):
            fail_run(db, run_id="r2", finished_at=T0, error=error)
        err = capsys.readouterr().err
        assert "run r2 failed: 读取失败 433124" in err and "(inbox gone)" in err and "not recorded" in err
        assert "433124200501231234" not in err
        assert (db.parent / f"{db.name}.d" / "catalog.duckdb").read_bytes() == catalog_before
    assert _leftovers(db) == []


ENOSPC_WRITER = textwrap.dedent("""
    import base64, os, sys
    from datetime import date, datetime, timezone
    from pathlib import Path
    import polars as pl
    from reconcile import store
    db = Path(sys.argv[1])
    now = datetime.now(timezone.utc)
    store.begin_run(db, run_id="big", started_at=now, night=date(2026, 11, 23), as_of=date(2026, 11, 23), parameters={})
    n = 1_100_000   # random text: about 60 MiB in memory, more than the tmpfs once in Parquet
    names = [base64.b64encode(os.urandom(36)).decode() for _ in range(n)]
    frame = pl.DataFrame({"source": ["roster"] * n, "name": names})
    try:
        store.finish_run(db, run_id="big", finished_at=now, counts={}, tables={"records": frame})
    except store.DiskFullError as exc:
        print("finish:", exc, flush=True)
        store.fail_run(db, run_id="big", finished_at=now, error=str(exc))
        print("recorded", flush=True)
""")


def _unshare_ok() -> bool:
    try:
        return subprocess.run(["unshare", "-r", "-m", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.skipif(not _unshare_ok(), reason="needs unshare -r -m to mount a small tmpfs")
def test_a_real_disk_full_write_is_undone_and_the_failure_recorded(tmp_path):
    """A real ENOSPC on a 32 MiB tmpfs (mounted in a private user+mount namespace): the
    check lets the write start, the Parquet write fills the disk, the run's files are
    removed, and fail_run then has the room to record why."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    writer = tmp_path / "writer.py"
    writer.write_text(ENOSPC_WRITER)
    reader = tmp_path / "reader.py"
    reader.write_text("import sys\nfrom reconcile import store\n"
                      "print(store.read_runs(sys.argv[1]).select('run_id', 'status', 'error').rows())\n")
    root = Path(__file__).resolve().parent.parent
    db = f"{mnt}/recon.duckdb"
    script = (f"mount -t tmpfs -o size=32m tmpfs {mnt} && cd {root} && {sys.executable} {writer} {db} && "
              f"{sys.executable} {reader} {db} && ls -a {mnt} {mnt}/recon.duckdb.d && df -k {mnt} | tail -1")
    out = subprocess.run(["unshare", "-r", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "finish: 磁盘已满" in out.stdout and "disk full while writing finish of big" in out.stdout
    assert "recorded" in out.stdout
    assert "('big', 'failed', '磁盘已满" in out.stdout
    assert "nights" in out.stdout and ".tmp" not in out.stdout   # no temp copy left
    free_kib = int(out.stdout.strip().splitlines()[-1].split()[3])
    assert free_kib > 28 * 1024                                   # the half-written Parquet is gone


# ---- growth: retention, item maps, declared tables -------------------------------------------


def test_retention_keeps_n_nights_of_records_and_years_of_history(db):
    keep = StoreSettings(records_nights=2, history_days=4)
    nights = [NIGHT + timedelta(days=i) for i in range(7)]
    for i, night in enumerate(nights):
        rid = f"n{i}"
        begin_run(db, run_id=rid, started_at=T0 + timedelta(days=i), night=night, as_of=night, parameters={})
        finish_run(db, run_id=rid, finished_at=T0 + timedelta(days=i, minutes=5), counts={},
                   tables=_tables(rid), retention=keep)
    assert [r[0] for r in _q(db, "SELECT DISTINCT run_id FROM records ORDER BY 1")] == ["n5", "n6"]
    assert [r[0] for r in _q(db, "SELECT DISTINCT run_id FROM row_problems ORDER BY 1")] == ["n5", "n6"]
    for table in ("discrepancies", "matches", "item_refs", "household_changes"):
        assert [r[0] for r in _q(db, f"SELECT DISTINCT run_id FROM {table} ORDER BY 1")] == \
            ["n2", "n3", "n4", "n5", "n6"], table
    assert [r[0] for r in _q(db, "SELECT run_id FROM runs ORDER BY 1")] == ["n2", "n3", "n4", "n5", "n6"]
    # night over night still answers across the history kept
    assert _q(db, "SELECT count(*) FROM night_over_night") == [(5,)]
    assert _q(db, "SELECT count(*) FROM run_pairs WHERE prev_run_id IS NOT NULL") == [(4,)]
    # dropped files are deleted at the next run's start (a reader opened before keeps its files)
    begin_run(db, run_id="n7", started_at=T0 + timedelta(days=7), night=NIGHT + timedelta(days=7),
              as_of=NIGHT, parameters={})
    assert _parquet_runs(db) == {"n2", "n3", "n4", "n5", "n6"}


def test_item_map_is_kept_for_a_superseded_run(db):
    tables = _tables("r1")
    tables["discrepancies"] = tables["discrepancies"].with_columns(
        item_ref=pl.lit(7), item_key=pl.lit("k-7"), fingerprint=pl.lit("fp"))
    begin_run(db, run_id="r1", started_at=T0, night=NIGHT, as_of=NIGHT, parameters={})
    finish_run(db, run_id="r1", finished_at=T0, counts={}, tables=tables)
    _run(db, "r2")  # same night: supersedes r1
    got = read_item_map(db, "r1")
    assert got.to_dicts() == [{"item_ref": 7, "item_key": "k-7", "fingerprint": "fp", "kind": "not_found",
                               "school": "一中", "town": "城关镇", "row_hash": None}]
    assert got.schema["item_ref"] == pl.Int64
    assert _q(db, "SELECT count(*) FROM discrepancies WHERE run_id = 'r1'") == [(0,)]
    empty = read_item_map(db, "nobody")
    assert empty.height == 0 and empty.columns == list(got.columns)
    assert read_item_map(db.with_name("missing.duckdb"), "r1").height == 0


def test_adding_a_table_is_a_declaration(db, monkeypatch):
    monkeypatch.setitem(TABLES, "model_parameters", {"run_id": "VARCHAR", "comparison": "VARCHAR",
                                                      "level": "VARCHAR", "m": "DOUBLE", "u": "DOUBLE"})
    begin_run(db, run_id="r1", started_at=T0, night=NIGHT, as_of=NIGHT, parameters={})
    finish_run(db, run_id="r1", finished_at=T0, counts={}, tables={
        "model_parameters": pl.DataFrame({"comparison": ["name"], "level": ["exact"], "m": [0.9], "u": [0.001]})})
    assert _q(db, "SELECT run_id, comparison, m FROM model_parameters") == [("r1", "name", 0.9)]


def test_a_column_declared_later_reads_null_in_older_nights(db, monkeypatch):
    _run(db, "r1", night=NIGHT - timedelta(days=1))
    monkeypatch.setitem(TABLES, "discrepancies", {**TABLES["discrepancies"], "advice": "VARCHAR"})
    tables = _tables("r2")
    tables["discrepancies"] = tables["discrepancies"].with_columns(advice=pl.lit("核对户口本"))
    begin_run(db, run_id="r2", started_at=T0, night=NIGHT, as_of=NIGHT, parameters={})
    finish_run(db, run_id="r2", finished_at=T0, counts={}, tables=tables)
    assert _q(db, "SELECT run_id, advice FROM discrepancies ORDER BY run_id") == [("r1", None), ("r2", "核对户口本")]
    assert _q(db, "SELECT count(*) FROM night_over_night") == [(2,)]
