"""The DuckDB store analysts query: run bookkeeping, atomic publish, a single writer.

Tables (all keyed by ``run_id``; a night's rerun replaces that night's data)
---------------------------------------------------------------------------

``runs`` — one row per nightly run.
    ``run_id`` VARCHAR primary key; ``started_at`` / ``finished_at`` TIMESTAMPTZ;
    ``status`` VARCHAR: ``running`` (in progress, or killed before it could say otherwise),
    ``succeeded``, ``failed``, ``superseded`` (a later run of the same night replaced it);
    ``error`` VARCHAR (why it failed; never cell values); ``night`` DATE (the run's local
    date: reruns of one night replace each other); ``as_of`` DATE (the date the data
    describes); ``parameters`` JSON (settings the run used); ``counts`` JSON (all counts
    the pipeline reported); ``roster_rows``, ``dibao_rows``, ``filing_rows``,
    ``problem_rows``, ``matched``, ``review``, ``not_found``, ``discrepancies`` INTEGER
    (the same-named keys of ``counts``, null when absent); ``superseded_by`` VARCHAR (the
    run that replaced this one).

``records`` — every input row after normalisation, one per source row.
    ``run_id``; lineage ``source`` (roster/dibao/filing), ``file`` (relative to the inbox),
    ``sheet`` ('' for CSV), ``row`` BIGINT (the row number Excel shows); ``rec`` INTEGER
    (position within its source in that run); every canonical field of every source
    (``reconcile.fields.FIELDS``, union, VARCHAR, null where the source lacks it);
    ``id_number_kind`` / ``head_id_kind`` (text/number/sci: how the ID cell was typed);
    normalised columns ``name_norm``, ``name_py``, ``id_norm``, ``id_status``,
    ``id_known`` SMALLINT, ``id_birth`` DATE, ``id_gender``, ``id_region``,
    ``head_name_norm``, ``head_id_norm``, ``household``, ``birth`` DATE, ``gender_norm``.

``row_problems`` — rows, sheets or files that could not be used as they stand.
    ``run_id``, ``source``, ``file``, ``sheet``, ``row`` BIGINT (null: whole sheet/file),
    ``"column"`` (header text as in the file), ``problem`` (code, e.g. ``invalid_id``),
    ``value`` (the offending cell).

``matches`` — links from roster rows to system rows.
    ``run_id``, ``roster_file``, ``roster_sheet``, ``roster_row`` BIGINT, ``roster_rec``
    INTEGER, ``system`` (dibao/filing), ``system_file``, ``system_sheet``, ``system_row``
    BIGINT, ``system_rec`` INTEGER, ``score`` DOUBLE (match probability 0–1), ``weight``
    DOUBLE (log2 Bayes factor), ``status`` (matched/review), ``via`` (id, name_birth,
    household, ...), ``why`` JSON (each field's comparison level and contribution).

``discrepancies`` — what the clerks are told.
    ``run_id``, ``kind`` (not_found, id_mismatch, name_mismatch, ...), ``severity``
    (high/medium/low), ``source``, ``file``, ``sheet``, ``row`` BIGINT, ``system``,
    ``system_file``, ``system_sheet``, ``system_row`` BIGINT, ``field``, ``value``,
    ``system_value``, ``message`` (Chinese), ``school``, ``town``.

Join records to matches on ``(run_id, source='roster', rec=roster_rec)`` and
``(run_id, source=system, rec=system_rec)``, or on the lineage columns.
Only succeeded runs have rows in the data tables: a run stores its data at
``finish_run`` in one step, a failed run stores none and leaves earlier data untouched,
and a later run of the same ``night`` deletes the earlier run's data (its ``runs`` row
stays, status ``superseded``).

Publishing
----------
Analysts keep the published file open read-only, and DuckDB lets only one process hold a
file while someone writes it. So the published file is never written in place: every
change (``begin_run``, ``finish_run``, ``fail_run``) copies it to
``.{name}.{run_id}.tmp`` in the same directory, applies the change there, checkpoints,
closes, fsyncs and ``os.replace``-s the copy over the published path. Open connections
keep reading the file they opened (the old data); new connections see the new file.
Writers are serialised by :class:`RunLock` (an ``flock`` on ``{db_path}.lock``); hold it
for the whole run. Each call takes it briefly itself when this process does not hold it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from reconcile.errors import ReconError, RunLockedError
from reconcile.fields import FIELDS, ID_FIELDS, LINEAGE, SOURCES

__all__ = [
    "RunLock",
    "begin_run",
    "finish_run",
    "fail_run",
    "open_readonly",
    "TABLES",
    "DATA_TABLES",
    "COUNT_COLUMNS",
    "INTERRUPTED_ERROR",
    "schema_sql",
    "VIEWS",
    "add_reviews",
    "read_reviews",
    "read_previous",
]

log = logging.getLogger(__name__)

INTERRUPTED_ERROR = "运行中断：进程在完成前结束 (run interrupted: the process ended before finishing)"

# Count columns of `runs`, filled from the same-named keys of finish_run's `counts`.
COUNT_COLUMNS: tuple[str, ...] = (
    "roster_rows", "dibao_rows", "filing_rows", "problem_rows",
    "matched", "review", "not_found", "discrepancies",
)


def _canonical_fields() -> list[str]:
    seen: dict[str, None] = {}
    for source in SOURCES:
        for field in FIELDS[source]:
            seen.setdefault(field, None)
    return [f for f in seen if f not in LINEAGE]


# Column name -> DuckDB type, in table order. Built from fields.py so it stays in step.
TABLES: dict[str, dict[str, str]] = {
    "runs": {
        "run_id": "VARCHAR PRIMARY KEY",
        "started_at": "TIMESTAMPTZ",
        "finished_at": "TIMESTAMPTZ",
        "status": "VARCHAR",
        "error": "VARCHAR",
        "night": "DATE",
        "as_of": "DATE",
        "parameters": "JSON",
        "counts": "JSON",
        **{c: "INTEGER" for c in COUNT_COLUMNS},
        "superseded_by": "VARCHAR",
        "county": "VARCHAR",
        "counties": "JSON",
    },
    "records": {
        "run_id": "VARCHAR",
        "county": "VARCHAR",
        "source": "VARCHAR",
        "file": "VARCHAR",
        "sheet": "VARCHAR",
        "row": "BIGINT",
        "rec": "INTEGER",
        **{f: "VARCHAR" for f in _canonical_fields()},
        **{f"{f}_kind": "VARCHAR" for f in ID_FIELDS},
        "name_norm": "VARCHAR",
        "name_py": "VARCHAR",
        "id_norm": "VARCHAR",
        "id_status": "VARCHAR",
        "id_known": "SMALLINT",
        "id_birth": "DATE",
        "id_gender": "VARCHAR",
        "id_region": "VARCHAR",
        "head_name_norm": "VARCHAR",
        "head_id_norm": "VARCHAR",
        "household": "VARCHAR",
        "birth": "DATE",
        "gender_norm": "VARCHAR",
    },
    "row_problems": {
        "run_id": "VARCHAR",
        "county": "VARCHAR",
        "source": "VARCHAR",
        "file": "VARCHAR",
        "sheet": "VARCHAR",
        "row": "BIGINT",
        "column": "VARCHAR",
        "problem": "VARCHAR",
        "value": "VARCHAR",
    },
    "matches": {
        "run_id": "VARCHAR",
        "county": "VARCHAR",
        "roster_file": "VARCHAR",
        "roster_sheet": "VARCHAR",
        "roster_row": "BIGINT",
        "roster_rec": "INTEGER",
        "system": "VARCHAR",
        "system_file": "VARCHAR",
        "system_sheet": "VARCHAR",
        "system_row": "BIGINT",
        "system_rec": "INTEGER",
        "system_county": "VARCHAR",
        "score": "DOUBLE",
        "weight": "DOUBLE",
        "status": "VARCHAR",
        "via": "VARCHAR",
        "why": "JSON",
    },
    "discrepancies": {
        "run_id": "VARCHAR",
        "county": "VARCHAR",
        "kind": "VARCHAR",
        "severity": "VARCHAR",
        "source": "VARCHAR",
        "file": "VARCHAR",
        "sheet": "VARCHAR",
        "row": "BIGINT",
        "system": "VARCHAR",
        "system_file": "VARCHAR",
        "system_sheet": "VARCHAR",
        "system_row": "BIGINT",
        "system_county": "VARCHAR",
        "field": "VARCHAR",
        "value": "VARCHAR",
        "system_value": "VARCHAR",
        "message": "VARCHAR",
        "school": "VARCHAR",
        "town": "VARCHAR",
        # clerk review (reconcile.review): stable key, workbook reference, record fingerprint
        "item_key": "VARCHAR",
        "item_ref": "BIGINT",
        "fingerprint": "VARCHAR",
        "roster_identity": "VARCHAR",
        "system_identity": "VARCHAR",
        "review_state": "VARCHAR",
        "row_hash": "VARCHAR",
    },
    # Clerks' decisions imported from returned workbooks; kept across runs (not run data).
    "reviews": {
        "review_id": "VARCHAR",
        "imported_at": "TIMESTAMPTZ",
        "reviewer": "VARCHAR",
        "decision": "VARCHAR",
        "decision_code": "VARCHAR",
        "corrected_value": "VARCHAR",
        "note": "VARCHAR",
        "item_key": "VARCHAR",
        "item_ref": "BIGINT",
        "fingerprint": "VARCHAR",
        "kind": "VARCHAR",
        "system": "VARCHAR",
        "field": "VARCHAR",
        "school": "VARCHAR",
        "town": "VARCHAR",
        "roster_identity": "VARCHAR",
        "system_identity": "VARCHAR",
        "run_id": "VARCHAR",
        "workbook": "VARCHAR",
        "sheet": "VARCHAR",
        "row": "BIGINT",
    },
    # issue 7: a town/village whose export looks cut short, and households that entered or
    # left a system since the previous run (see reconcile/completeness.py).
    "export_problems": {
        "run_id": "VARCHAR", "county": "VARCHAR", "system": "VARCHAR", "file": "VARCHAR", "town": "VARCHAR", "village": "VARCHAR",
        "problem": "VARCHAR", "expected_rows": "BIGINT", "expected_from": "VARCHAR", "found_rows": "BIGINT",
        "previous_households": "BIGINT", "found_households": "BIGINT", "other_system_households": "BIGINT",
        "roster_students": "BIGINT", "message": "VARCHAR",
    },
    "household_changes": {
        "run_id": "VARCHAR", "county": "VARCHAR", "system": "VARCHAR", "household": "VARCHAR", "change": "VARCHAR", "town": "VARCHAR",
        "village": "VARCHAR", "head_name": "VARCHAR", "status_before": "VARCHAR", "status_now": "VARCHAR",
        "export_incomplete": "BOOLEAN", "students": "BIGINT", "student_rows": "VARCHAR", "message": "VARCHAR",
    },
}

# The tables finish_run fills from frames (everything but `runs` and `reviews`).
DATA_TABLES: tuple[str, ...] = tuple(t for t in TABLES if t not in ("runs", "reviews"))


def _q(identifier: str) -> str:
    """Quote an identifier (row, column ... are keywords)."""
    return '"' + identifier.replace('"', '""') + '"'


def _ddl(table: str) -> str:
    cols = ",\n    ".join(f"{_q(c)} {t}" for c, t in TABLES[table].items())
    return f"CREATE TABLE IF NOT EXISTS {_q(table)} (\n    {cols}\n)"


def schema_sql() -> str:
    """The DDL of every table, for the README or a notebook."""
    return ";\n\n".join(_ddl(t) for t in TABLES) + ";\n"


# --------------------------------------------------------------------------- locking

# Lock files this process holds (resolved path -> lock), so the write functions know
# whether they run under the caller's lock or must take it themselves.
_HELD: dict[str, "RunLock"] = {}


def _lock_path(db_path: Path) -> Path:
    return Path(f"{Path(db_path)}.lock")


class RunLock:
    """Exclusive writer lock: an ``fcntl.flock`` on ``{db_path}.lock``.

    Waits up to ``wait_s`` seconds (default: not at all), then raises
    :class:`~reconcile.errors.RunLockedError`. The lock dies with the process, so a killed
    run never leaves a stale lock behind. Not re-entrant: a second ``RunLock`` on the same
    database, even in the same process, fails while the first is held.
    """

    def __init__(self, db_path: Path | str, *, wait_s: float = 0.0) -> None:
        self.db_path = Path(db_path)
        self.path = _lock_path(self.db_path)
        self.wait_s = float(wait_s)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> "RunLock":
        if self._fd is not None:
            raise RuntimeError("RunLock is not re-entrant")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + max(self.wait_s, 0.0)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as e:
                    if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                        raise
                    if time.monotonic() >= deadline:
                        holder = _read_holder(fd)
                        raise RunLockedError(
                            f"另一个运行正在写入数据库，请等它结束后再试 "
                            f"(another run holds the writer lock {str(self.path)!r}"
                            f"{', pid ' + holder if holder else ''}; "
                            f"waited {self.wait_s:g} s)"
                        ) from None
                    time.sleep(min(0.1, max(deadline - time.monotonic(), 0.01)))
        except BaseException:
            os.close(fd)
            raise
        # Record who holds it, for the message another process may show.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        _HELD[_key(self.db_path)] = self
        return self

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        if _HELD.get(_key(self.db_path)) is self:
            del _HELD[_key(self.db_path)]
        try:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return ""
    return text if text.isdigit() else ""


def _key(db_path: Path) -> str:
    return str(Path(db_path).resolve())


@contextlib.contextmanager
def _writer(db_path: Path) -> Iterator[None]:
    """Run under this process's RunLock for db_path, taking it briefly if not held."""
    if _key(db_path) in _HELD:
        yield
        return
    with RunLock(db_path):
        yield


# --------------------------------------------------------------------------- publishing

_WRITE_SUFFIXES = ("", ".wal")

# DuckDB's own memory, per write: by default it may take 80 % of the machine, on top of
# the frames the run holds. Large inserts spill to its temp folder beside the file.
DUCKDB_MEMORY_LIMIT = "256MB"
INSERT_SLICE_ROWS = 100_000


def _tmp_path(db_path: Path, run_id: str) -> Path:
    safe = re.sub(r"[^0-9A-Za-z._-]", "_", run_id)
    return db_path.parent / f".{db_path.name}.{safe}.tmp"


def _spill_dir(tmp: Path) -> Path:
    """DuckDB's temp folder for one write (matched by ``_remove_stale``'s pattern)."""
    return tmp.with_name(f"{tmp.name}.spill")


def _remove_stale(db_path: Path) -> None:
    """Remove temp files (and spill folders) a killed writer left (only ever called under the lock)."""
    for p in db_path.parent.glob(f".{_glob_escape(db_path.name)}.*.tmp*"):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()


def _glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def _fsync_path(path: Path, *, directory: bool = False) -> None:
    flags = os.O_RDONLY | (os.O_DIRECTORY if directory else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _pause_point(op: str, point: str) -> None:
    """Test hook for kill -9 tests: with RECON_TEST_PAUSE_AT='{op}:{point}' (e.g.
    'finish:before_replace'), touch RECON_TEST_PAUSE_FILE and sleep, so a test can kill
    the process exactly there. Does nothing unless the variable is set."""
    if os.environ.get("RECON_TEST_PAUSE_AT") != f"{op}:{point}":
        return
    marker = os.environ.get("RECON_TEST_PAUSE_FILE")
    if marker:
        Path(marker).write_text(str(os.getpid()))
    time.sleep(float(os.environ.get("RECON_TEST_PAUSE_S", "60")))


def _publish(db_path: Path, run_id: str, change: Callable[[duckdb.DuckDBPyConnection], None],
             op: str = "write") -> None:
    """Copy the published file, apply `change` to the copy, swap it in atomically."""
    db_path = Path(db_path)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    with _writer(db_path):
        _remove_stale(db_path)
        tmp = _tmp_path(db_path, run_id)
        try:
            if db_path.exists():
                shutil.copyfile(db_path, tmp)
            _pause_point(op, "after_copy")
            con = duckdb.connect(str(tmp), config={"memory_limit": DUCKDB_MEMORY_LIMIT,
                                                  "temp_directory": str(_spill_dir(tmp))})
            try:
                _ensure_schema(con)
                # No transaction around the change: the private copy is the unit of
                # atomicity (on any failure it is deleted, unpublished), and statements
                # that commit one by one let DuckDB write each inserted slice out instead
                # of holding the whole night in transaction-local memory.
                change(con)
                _pause_point(op, "after_change")
                con.execute("CHECKPOINT")
            finally:
                con.close()
            wal = Path(f"{tmp}.wal")
            if wal.exists():  # a checkpointed, closed database leaves none; be safe
                raise ReconError(f"DuckDB left a write-ahead log next to {tmp.name}; not publishing")
            _fsync_path(tmp)
            _pause_point(op, "before_replace")
            os.replace(tmp, db_path)
            _pause_point(op, "after_replace")
            _fsync_path(db_path.parent, directory=True)
        finally:
            for suffix in _WRITE_SUFFIXES:
                with contextlib.suppress(FileNotFoundError):
                    Path(f"{tmp}{suffix}").unlink()
            shutil.rmtree(_spill_dir(tmp), ignore_errors=True)


def _ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create missing tables; add columns a newer fields.py introduced."""
    for table, columns in TABLES.items():
        con.execute(_ddl(table))
        have = {
            r[0]
            for r in con.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = 'main' AND table_name = ?",
                [table],
            ).fetchall()
        }
        for col, typ in columns.items():
            if col not in have:
                typ = typ.replace(" PRIMARY KEY", "")
                con.execute(f"ALTER TABLE {_q(table)} ADD COLUMN {_q(col)} {typ}")
    for name, sql in VIEWS.items():
        con.execute(f"CREATE OR REPLACE VIEW {_q(name)} AS {sql}")


# --------------------------------------------------------------------------- helpers

_ID_RUN = re.compile(r"(?<![0-9])[0-9]{14,17}[0-9Xx](?![0-9])")


def _scrub(text: str, limit: int = 4000) -> str:
    """Keep ID-like digit runs out of stored error text (privacy), cap the length."""
    text = _ID_RUN.sub(lambda m: m.group(0)[:6] + "*" * (len(m.group(0)) - 6), text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo is not None else ts.astimezone()


def _json(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, default=str)


def _count(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _run_status(con: duckdb.DuckDBPyConnection, run_id: str) -> str | None:
    rows = con.execute("SELECT status FROM runs WHERE run_id = ?", [run_id]).fetchall()
    return rows[0][0] if rows else None


def _insert_frame(con: duckdb.DuckDBPyConnection, table: str, run_id: str,
                  frames: pl.DataFrame | Sequence[pl.DataFrame]) -> int:
    """Insert one frame, or several with different columns, a slice at a time: only one
    slice is ever converted to Arrow, so a county-wide insert stays within DuckDB's
    memory limit instead of doubling the frame in memory."""
    columns = TABLES[table]
    total = 0
    for frame in [frames] if isinstance(frames, pl.DataFrame) else frames:
        keep = [c for c in frame.columns if c in columns and c != "run_id"]
        extra = [c for c in frame.columns if c not in columns and c != "run_id"]
        if extra:
            log.debug("store: %s ignores columns %s", table, extra)  # names only, never values
        if frame.height == 0 or not keep:
            continue
        view = f"_recon_in_{table}"
        cols = ", ".join(_q(c) for c in keep)
        for start in range(0, frame.height, INSERT_SLICE_ROWS):
            con.register(view, frame.slice(start, INSERT_SLICE_ROWS).select(keep).to_arrow())
            # On failure the private copy and its connection are discarded: no
            # unregister there (it would raise and hide the real error).
            con.execute(
                f"INSERT INTO {_q(table)} BY NAME SELECT ?::VARCHAR AS run_id, {cols} FROM {_q(view)}",
                [run_id],
            )
            con.unregister(view)
        total += frame.height
    return total


# --------------------------------------------------------------------------- API


def begin_run(
    db_path: Path,
    *,
    run_id: str,
    started_at: datetime,
    night: date,
    as_of: date,
    parameters: dict,
) -> None:
    """Record a new 'running' run; runs still 'running' from a killed process become 'failed'."""

    def change(con: duckdb.DuckDBPyConnection) -> None:
        if _run_status(con, run_id) is not None:
            raise ReconError(f"run {run_id!r} already exists in {Path(db_path).name}")
        con.execute(
            "UPDATE runs SET status = 'failed', error = ? WHERE status = 'running'",
            [INTERRUPTED_ERROR],
        )
        con.execute(
            "INSERT INTO runs (run_id, started_at, status, night, as_of, parameters) "
            "VALUES (?, ?, 'running', ?, ?, ?)",
            [run_id, _aware(started_at), night, as_of, _json(parameters)],
        )

    _publish(Path(db_path), run_id, change, "begin")


def finish_run(
    db_path: Path,
    *,
    run_id: str,
    finished_at: datetime,
    counts: dict,
    tables: dict[str, pl.DataFrame | Sequence[pl.DataFrame] | None],
    county: str | None = None,
    counties: dict | None = None,
    error: str | None = None,
) -> None:
    """Store the run's tables and mark it 'succeeded', replacing earlier runs of its night.

    ``county``: the county a county run is about (null for a province run); ``counties``
    (a province run): each county's status, error and counts; ``error``: why some counties
    failed while the others were published.

    ``tables`` maps table names (records, row_problems, matches, discrepancies) to frames,
    or to lists of frames (e.g. one per source: no need to concatenate them first); missing
    columns are stored as NULL, columns the table doesn't know are ignored, a ``run_id``
    column in a frame is overwritten. A table not given gets no rows.
    """
    unknown = sorted(set(tables) - set(DATA_TABLES))
    if unknown:
        raise ValueError(f"unknown tables {unknown}; expected some of {list(DATA_TABLES)}")

    def change(con: duckdb.DuckDBPyConnection) -> None:
        rows = con.execute("SELECT status, night FROM runs WHERE run_id = ?", [run_id]).fetchall()
        if not rows:
            raise ReconError(f"run {run_id!r} was never begun (call begin_run first)")
        status, night = rows[0]
        if status != "running":
            raise ReconError(f"run {run_id!r} is {status!r}, not 'running'; cannot finish it")
        earlier = [
            r[0]
            for r in con.execute(
                "SELECT run_id FROM runs WHERE night = ? AND run_id <> ? AND status = 'succeeded'",
                [night, run_id],
            ).fetchall()
        ]
        if earlier:
            for table in DATA_TABLES:
                con.execute(
                    f"DELETE FROM {_q(table)} WHERE run_id IN (SELECT UNNEST(?::VARCHAR[]))",
                    [earlier],
                )
            con.execute(
                "UPDATE runs SET status = 'superseded', superseded_by = ? "
                "WHERE run_id IN (SELECT UNNEST(?::VARCHAR[]))",
                [run_id, earlier],
            )
        for table in DATA_TABLES:
            if table in tables and tables[table] is not None:
                _insert_frame(con, table, run_id, tables[table])
        sets = ", ".join(f"{_q(c)} = ?" for c in COUNT_COLUMNS)
        con.execute(
            f"UPDATE runs SET status = 'succeeded', error = ?, finished_at = ?, counts = ?, county = ?, counties = ?, "
            f"{sets} WHERE run_id = ?",
            [_scrub(error) if error else None, _aware(finished_at), _json(counts), county,
             _json(counties) if counties is not None else None, *(_count(counts.get(c)) for c in COUNT_COLUMNS), run_id],
        )

    _publish(Path(db_path), run_id, change, "finish")


def fail_run(db_path: Path, *, run_id: str, finished_at: datetime, error: str) -> None:
    """Mark the run 'failed' with ``error``; earlier runs' data stays as it was.

    A run that was never begun (begin_run itself failed) gets a 'failed' row of its own.
    ID-shaped digit runs in ``error`` are masked before storing.
    """
    text = _scrub(str(error))

    def change(con: duckdb.DuckDBPyConnection) -> None:
        if _run_status(con, run_id) is None:
            con.execute(
                "INSERT INTO runs (run_id, status, finished_at, error) VALUES (?, 'failed', ?, ?)",
                [run_id, _aware(finished_at), text],
            )
        else:
            con.execute(
                "UPDATE runs SET status = 'failed', finished_at = ?, error = ? WHERE run_id = ?",
                [_aware(finished_at), text, run_id],
            )

    _publish(Path(db_path), run_id, change, "fail")


# --------------------------------------------------------------------------- analyst views

# Views over the tables above, recreated on every publish (documented in the README).
VIEWS: dict[str, str] = {
    # The newest succeeded run.
    "latest_run": """
        SELECT * FROM runs WHERE status = 'succeeded'
        ORDER BY night DESC, finished_at DESC LIMIT 1""",
    # What the clerks are being asked tonight, with the student's stage and grade.
    "open_discrepancies": """
        SELECT d.*, lr.night, rec.stage, rec.grade
        FROM discrepancies d JOIN latest_run lr USING (run_id)
        LEFT JOIN records rec ON rec.run_id = d.run_id AND rec.source = 'roster'
             AND rec.file = d.file AND rec.sheet = d.sheet AND rec.row = d.row""",
    # Counts by town, school, stage, kind (and severity) for the newest run.
    "discrepancy_totals": """
        SELECT night, town, school, stage, kind, severity, count(*) AS n
        FROM open_discrepancies GROUP BY ALL""",
    # Each succeeded run with the succeeded run before it.
    "run_pairs": """
        SELECT run_id, night, lag(run_id) OVER (ORDER BY night, finished_at) AS prev_run_id
        FROM runs WHERE status = 'succeeded'""",
    # Items night over night: new (not in the previous run), resolved (gone), still_open.
    "discrepancy_changes": """
        WITH cur AS (SELECT p.run_id, p.night, d.item_key, d.kind, d.school, d.town
                     FROM run_pairs p JOIN discrepancies d ON d.run_id = p.run_id),
             prev AS (SELECT p.run_id, p.night, d.item_key, d.kind, d.school, d.town
                      FROM run_pairs p JOIN discrepancies d ON d.run_id = p.prev_run_id)
        SELECT coalesce(c.run_id, p.run_id) AS run_id, coalesce(c.night, p.night) AS night,
               coalesce(c.item_key, p.item_key) AS item_key, coalesce(c.kind, p.kind) AS kind,
               coalesce(c.school, p.school) AS school, coalesce(c.town, p.town) AS town,
               CASE WHEN p.item_key IS NULL THEN 'new' WHEN c.item_key IS NULL THEN 'resolved'
                    ELSE 'still_open' END AS change
        FROM cur c FULL OUTER JOIN prev p ON c.run_id = p.run_id AND c.item_key = p.item_key""",
    "night_over_night": """
        SELECT night, run_id, count_if(change = 'new') AS new, count_if(change = 'resolved') AS resolved,
               count_if(change = 'still_open') AS still_open
        FROM discrepancy_changes GROUP BY night, run_id ORDER BY night""",
    # School-age children (6-17 on the run's as-of date) of households in either system
    # whom no roster lists and no roster row was linked to: possible drop-outs.
    "coverage_gaps": """
        WITH lr AS (SELECT run_id, coalesce(as_of, night) AS as_of FROM latest_run),
        seen AS (
            SELECT s.id_norm FROM matches m JOIN records s ON s.run_id = m.run_id
                   AND s.source = m.system AND s.rec = m.system_rec JOIN lr ON lr.run_id = m.run_id
            UNION SELECT r.id_norm FROM records r JOIN lr USING (run_id) WHERE r.source = 'roster'),
        kids AS (
            SELECT rec.run_id, rec.source AS system, rec.town, rec.village, rec.household,
                   rec.name, rec.id_norm, rec.id_birth, date_sub('year', rec.id_birth, lr.as_of) AS age,
                   rec.school_status, rec.poverty_status, rec.status AS dibao_status,
                   rec.file, rec.sheet, rec.row
            FROM records rec JOIN lr USING (run_id)
            WHERE rec.source IN ('dibao', 'filing') AND rec.id_status IN ('valid', 'legacy15'))
        SELECT * FROM kids
        WHERE age BETWEEN 6 AND 17 AND id_norm NOT IN (SELECT id_norm FROM seen WHERE id_norm IS NOT NULL)
        QUALIFY row_number() OVER (PARTITION BY id_norm ORDER BY system, file, sheet, row) = 1""",
    "coverage_by_town": """
        SELECT town, count(*) AS children, count_if(age BETWEEN 6 AND 15) AS compulsory_age
        FROM coverage_gaps GROUP BY town ORDER BY children DESC""",
    # Each reviewer's latest word per item (待核实 included).
    "review_decisions": """
        SELECT * FROM reviews
        QUALIFY row_number() OVER (PARTITION BY item_key, reviewer ORDER BY imported_at DESC, review_id DESC) = 1""",
    # Items on which reviewers disagree.
    "review_conflicts": """
        SELECT item_key, any_value(kind) AS kind, any_value(school) AS school,
               count(DISTINCT reviewer) AS reviewers,
               string_agg(reviewer || '：' || decision, '；' ORDER BY reviewer) AS decisions
        FROM review_decisions WHERE decision_code <> 'pending'
        GROUP BY item_key
        HAVING count(DISTINCT decision_code || '=' || coalesce(corrected_value, '')) > 1""",
    # Clerk throughput: rows imported per reviewer and day, by decision.
    "clerk_throughput": """
        SELECT reviewer, school, CAST(imported_at AS DATE) AS day, count(*) AS decisions,
               count(DISTINCT item_key) AS items, count(DISTINCT workbook) AS workbooks,
               count_if(decision_code = 'confirm') AS confirmed, count_if(decision_code = 'reject') AS rejected,
               count_if(decision_code = 'corrected') AS corrected, count_if(decision_code = 'pending') AS pending
        FROM reviews GROUP BY ALL ORDER BY day, reviewer""",
}


def add_reviews(db_path: Path, reviews: pl.DataFrame) -> int:
    """Append clerks' decisions (columns of the ``reviews`` table) in one atomic publish."""
    import uuid

    if reviews.height == 0:
        return 0

    def change(con: duckdb.DuckDBPyConnection) -> None:
        keep = [c for c in reviews.columns if c in TABLES["reviews"]]
        con.register("_recon_in_reviews", reviews.select(keep).to_arrow())
        cols = ", ".join(_q(c) for c in keep)
        con.execute(f"INSERT INTO reviews ({cols}) SELECT {cols} FROM _recon_in_reviews")
        con.unregister("_recon_in_reviews")

    _publish(Path(db_path), f"review-{uuid.uuid4().hex[:8]}", change)
    return reviews.height


def read_reviews(db_path: Path | str) -> pl.DataFrame:
    """Every stored decision (empty frame when there is no database or no table yet)."""
    from reconcile.review import REVIEW_COLUMNS

    path = Path(db_path)
    if not path.exists():
        return pl.DataFrame(schema=REVIEW_COLUMNS)
    con = open_readonly(path)
    try:
        have = con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'reviews'"
        ).fetchall()[0][0]
        if not have:
            return pl.DataFrame(schema=REVIEW_COLUMNS)
        cols = ", ".join(_q(c) for c in REVIEW_COLUMNS)
        frame = pl.from_arrow(con.sql(f"SELECT {cols} FROM reviews ORDER BY imported_at, review_id").to_arrow_table())
    finally:
        con.close()
    return frame.cast({c: t for c, t in REVIEW_COLUMNS.items()}, strict=False)


def open_readonly(db_path: Path | str) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the published database (for notebooks and tests).

    It keeps seeing the file as it was when opened; call again to see a newer run. The file
    is ATTACHed (as ``recon``, made the default) to a fresh in-memory database: a plain
    ``duckdb.connect(path, read_only=True)`` in a process that still holds a connection to
    the path reuses DuckDB's cached instance and so keeps showing the replaced file.
    """
    path = Path(db_path)
    if not path.exists():
        raise FileNotFoundError(f"no database at {path}")
    con = duckdb.connect(":memory:")
    try:
        literal = str(path.resolve()).replace("'", "''")
        con.execute(f"ATTACH '{literal}' AS recon (READ_ONLY)")
        con.execute("USE recon")
    except BaseException:
        con.close()
        raise
    return con


def read_previous(db_path: Path | str) -> tuple[str, pl.DataFrame, pl.DataFrame] | None:
    """The latest succeeded run's id, its per-place system counts (system, file, town,
    village, rows, households) and its system records (what the night-over-night checks
    compare with); None when there is no database or no succeeded run yet."""
    path = Path(db_path)
    if not path.exists():
        return None
    con = open_readonly(path)
    try:
        rows = con.execute(
            "SELECT run_id FROM runs WHERE status = 'succeeded' ORDER BY finished_at DESC NULLS LAST, started_at DESC LIMIT 1"
        ).fetchall()
        if not rows:
            return None
        run_id = rows[0][0]
        counts = con.sql(
            "SELECT county, source AS system, file, regexp_replace(town, '\\s+', '', 'g') AS town, "
            "regexp_replace(village, '\\s+', '', 'g') AS village, count(*)::BIGINT AS rows, "
            "count(DISTINCT household)::BIGINT AS households FROM records "
            "WHERE run_id = ? AND source IN ('dibao', 'filing') GROUP BY ALL ORDER BY ALL",
            params=[run_id],
        ).to_arrow_table()
        records = con.sql(
            "SELECT county, source AS system, household, town, village, head_name, id_norm, status, poverty_status, "
            "exit_year, approved_date FROM records WHERE run_id = ? AND source IN ('dibao', 'filing') "
            "ORDER BY source, file, sheet, row",
            params=[run_id],
        ).to_arrow_table()
    finally:
        con.close()
    return run_id, pl.from_arrow(counts), pl.from_arrow(records)  # type: ignore[return-value]
