"""The store's catalog: a small DuckDB file that lists every run and the Parquet files
holding each run's rows, with views over those files; and how it is changed and published.

Layout beside the published database ``<db>`` (the file analysts open, ``--db``)::

    <db>                      published copy of the catalog (analysts; the writer only replaces it)
    <db>.d/catalog.duckdb     the writer's catalog (runs, reviews, partitions, recon_meta, views)
    <db>.d/nights/<night>/<run_id>/<table>.parquet    a run's rows, written once, never changed
    <db>.lock                 the writer lock (reconcile.run_lock)

Every change copies the writer's catalog (small: no run rows in it), applies the change to
the copy, checkpoints, fsyncs and ``os.replace``-s it over ``catalog.duckdb`` (the commit
point), then copies it over ``<db>``. The writer never opens ``<db>`` itself, so a
connection an analyst holds on it (read-only or not) can neither block nor break a run; one
held read-write is refused before anything changes (its rows would be lost), and a ``<db>``
someone changed since the last publish is kept aside, not overwritten.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb
import polars as pl

from reconcile import atomic_files as af
from reconcile import partitions
from reconcile.errors import ReconError

__all__ = [
    "SCHEMA_VERSION",
    "ForeignDatabaseError",
    "Layout",
    "Schema",
    "commit",
    "connect_readonly",
    "stage_run_files",
    "META_TABLES",
]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2  # 1: today's single file with every run's rows (unmarked); 2: catalog + Parquet
DUCKDB_MEMORY_LIMIT = "256MB"

# Tables only the catalog has: its mark, and the list of Parquet files per run and table.
META_TABLES: dict[str, dict[str, str]] = {
    "recon_meta": {"key": "VARCHAR PRIMARY KEY", "value": "VARCHAR"},
    "partitions": {"run_id": "VARCHAR", "night": "DATE", "table_name": "VARCHAR", "path": "VARCHAR",
                   "rows": "BIGINT", "columns_hash": "VARCHAR"},
}
# What a version-1 file must have to be taken for one of ours (besides only our tables/columns).
_LEGACY_RUNS_COLUMNS = {"run_id", "started_at", "finished_at", "status", "error", "night"}


class ForeignDatabaseError(ReconError):
    """The file at --db is not a recon database; it is left as it is."""


@dataclass(frozen=True)
class Schema:
    """What the store declares: tables kept in the catalog, tables stored per run, views."""

    catalog_tables: Mapping[str, Mapping[str, str]]
    run_tables: Mapping[str, Mapping[str, str]]
    views: Mapping[str, str]


@dataclass(frozen=True)
class Layout:
    db: Path

    @property
    def root(self) -> Path:
        return self.db.parent / f"{self.db.name}.d"

    @property
    def master(self) -> Path:
        return self.root / "catalog.duckdb"

    @property
    def nights(self) -> Path:
        return self.root / "nights"

    @property
    def stamp(self) -> Path:
        return self.root / "published.json"

    @property
    def schema_dir(self) -> Path:
        """Each run table's declared columns, in files of no rows (sorted before any night)."""
        return self.nights / "0000-00-00" / "schema"

    def run_dir(self, night: date, run_id: str) -> Path:
        return self.nights / night.isoformat() / re.sub(r"[^0-9A-Za-z._-]", "_", run_id)

    def rel(self, path: Path) -> str:
        """Paths in the catalog are relative to the database's folder (the folder can move)."""
        return path.relative_to(self.db.parent).as_posix()

    def tmp(self, tag: str) -> Path:
        return self.root / f".{re.sub(r'[^0-9A-Za-z._-]', '_', tag)}.tmp"


def _q(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _ddl(table: str, columns: Mapping[str, str]) -> str:
    cols = ", ".join(f"{_q(c)} {t}" for c, t in columns.items())
    return f"CREATE TABLE IF NOT EXISTS {_q(table)} ({cols})"


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def connect_readonly(db: Path) -> duckdb.DuckDBPyConnection:
    """The catalog (or a not yet migrated version-1 file) attached read-only as ``recon``."""
    lay = Layout(Path(db))
    path = lay.master if lay.master.exists() else lay.db
    if not path.exists():
        raise FileNotFoundError(f"no database at {lay.db}")
    con = duckdb.connect(":memory:")
    try:
        con.execute(f"ATTACH {_sql_str(str(path.resolve()))} AS recon (READ_ONLY)")
        con.execute("USE recon")
    except BaseException:
        con.close()
        raise
    return con


# --------------------------------------------------------------------------- what is at --db


def _inspect(path: Path) -> tuple[dict[str, set[str]], set[str], dict[str, str]]:
    """Tables with their columns, views, and recon_meta of a DuckDB file (read-only)."""
    con = duckdb.connect(":memory:")
    try:
        try:
            con.execute(f"ATTACH {_sql_str(str(path.resolve()))} AS probe (READ_ONLY)")
        except duckdb.Error as exc:
            raise ForeignDatabaseError(
                f"{path} 不是可用的 DuckDB 数据库，未作任何改动 (not a DuckDB database: "
                f"{type(exc).__name__}; choose another --db)") from None
        tables: dict[str, set[str]] = {}
        for t, c in con.execute("SELECT table_name, column_name FROM duckdb_columns() "
                                "WHERE database_name = 'probe' AND NOT internal").fetchall():
            tables.setdefault(t, set()).add(c)
        views = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views() "
                                           "WHERE database_name = 'probe' AND NOT internal").fetchall()}
        for v in views:
            tables.pop(v, None)
        meta: dict[str, str] = {}
        if "recon_meta" in tables:
            meta = dict(con.execute("SELECT key, value FROM probe.recon_meta").fetchall())
    finally:
        con.close()
    return tables, views, meta


def _refuse(path: Path, why: str) -> ForeignDatabaseError:
    return ForeignDatabaseError(
        f"{path} 不是本系统的数据库，未作任何改动 (not a recon database: {why}; recon changes "
        "only databases it created; choose another --db)")


def _check_version(path: Path, meta: Mapping[str, str]) -> None:
    if meta.get("program") != "recon":
        raise _refuse(path, "its recon_meta does not name recon")
    try:
        version = int(meta.get("schema_version", ""))
    except ValueError:
        raise _refuse(path, "its recon_meta has no schema_version") from None
    if version > SCHEMA_VERSION:
        raise ForeignDatabaseError(f"{path}: written by a newer recon (schema version {version}, "
                                   f"this one knows {SCHEMA_VERSION}); not changed")


def _legacy_ok(path: Path, schema: Schema, tables: Mapping[str, set[str]], views: set[str]) -> None:
    """Raise unless the unmarked file is a version-1 recon database: only our tables, each
    with only our columns, a runs table with our bookkeeping columns, only our views."""
    known = {**schema.catalog_tables, **schema.run_tables}
    if "runs" not in tables:
        raise _refuse(path, "no recon_meta mark and no runs table")
    strange = sorted(set(tables) - set(known))
    if strange:
        raise _refuse(path, f"no recon_meta mark, and tables {strange} are not recon's")
    missing = sorted(_LEGACY_RUNS_COLUMNS - tables["runs"])
    if missing:
        raise _refuse(path, f"no recon_meta mark, and its runs table lacks {missing}")
    for t, cols in tables.items():
        odd = sorted(cols - set(known[t]))
        if odd:
            raise _refuse(path, f"no recon_meta mark, and table {t!r} has columns {odd} recon does not write")
    odd_views = sorted(views - set(schema.views) - set(schema.run_tables))
    if odd_views:
        raise _refuse(path, f"no recon_meta mark, and views {odd_views} are not recon's")


# --------------------------------------------------------------------------- the change


def _open_tmp(lay: Layout, tmp: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(tmp), config={"memory_limit": DUCKDB_MEMORY_LIMIT,
                                           "temp_directory": str(tmp.with_name(tmp.name + ".spill"))})
    con.execute(f"SET file_search_path = {_sql_str(str(lay.db.parent.resolve()))}")
    return con


def _declaration_hash(schema: Schema, base: Path) -> str:
    """Changes when a table, column or view is declared differently, or the folder moved."""
    text = json.dumps([META_TABLES, schema.catalog_tables, schema.run_tables, schema.views, str(base)],
                      sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()


def _read_meta(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    have = con.execute("SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
                       "AND table_name = 'recon_meta'").fetchall()[0][0]
    return dict(con.execute("SELECT key, value FROM recon_meta").fetchall()) if have else {}


def _ensure_schema(con: duckdb.DuckDBPyConnection, schema: Schema, declared: str) -> None:
    """Create missing tables and columns, mark the file (only when the declaration changed)."""
    for table, columns in {**META_TABLES, **schema.catalog_tables}.items():
        con.execute(_ddl(table, columns))
        have = {r[0] for r in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE database_name = current_database() "
            "AND schema_name = 'main' AND table_name = ?", [table]).fetchall()}
        for col, typ in columns.items():
            if col not in have:
                con.execute(f"ALTER TABLE {_q(table)} ADD COLUMN {_q(col)} {typ.replace(' PRIMARY KEY', '')}")
    con.execute("INSERT OR REPLACE INTO recon_meta VALUES ('program', 'recon'), ('schema_version', ?), "
                "('declaration', ?)", [str(SCHEMA_VERSION), declared])


def _create_views(con: duckdb.DuckDBPyConnection, schema: Schema, lay: Layout, *, analyst_views: bool) -> None:
    """Run-table views over a glob of every run's file (absolute: analysts' own tools,
    opening the published copy from anywhere, need no search path), then the analyst views.
    Created when the declaration changes, not per run: the catalog stays the same size."""
    base = lay.nights.resolve().as_posix()
    hashes = dict(con.execute("SELECT table_name, list(DISTINCT columns_hash) FROM partitions GROUP BY 1").fetchall())
    for table, columns in schema.run_tables.items():
        mixed = bool(set(hashes.get(table, [])) - {partitions.columns_hash(columns)})
        glob = f"{base}/*/*/{table}.parquet"
        con.execute(f"CREATE OR REPLACE VIEW {_q(table)} AS {partitions.view_sql(table, columns, glob, mixed=mixed)}")
    if analyst_views:
        for name, sql in schema.views.items():
            con.execute(f"CREATE OR REPLACE VIEW {_q(name)} AS {sql}")


def _write_schema_files(lay: Layout, schema: Schema, mode: int) -> None:
    lay.schema_dir.mkdir(parents=True, exist_ok=True)
    for d in (lay.nights, lay.schema_dir.parent, lay.schema_dir):
        os.chmod(d, af.dir_mode(mode))
    for table, columns in schema.run_tables.items():
        partitions.write_schema_file(lay.schema_dir / f"{table}.parquet", columns, mode)


def _run_folder(lay: Layout, night: date, run_id: str, mode: int) -> Path:
    folder = lay.run_dir(night, run_id)
    folder.mkdir(parents=True, exist_ok=True, mode=af.dir_mode(mode))
    for d in (folder, folder.parent, lay.nights):
        os.chmod(d, af.dir_mode(mode))
    return folder


def _write_table_file(folder: Path, schema: Schema, table: str, run_id: str, data: object,
                      mode: int) -> partitions.Written | None:
    """One run table into ``<folder>/<table>.parquet``; None when it had no file to write."""
    path = folder / f"{table}.parquet"
    rows = partitions.write_table(path, table, schema.run_tables[table], run_id, data, mode)  # type: ignore[arg-type]
    return partitions.Written(path, rows) if path.exists() else None


def _write_run_files(con: duckdb.DuckDBPyConnection, lay: Layout, schema: Schema, night: date, run_id: str,
                     frames: Mapping[str, object], mode: int) -> list[Path]:
    """Write the run's tables as Parquet (those not staged already) and list them in
    ``partitions``; returns the files written here."""
    folder = _run_folder(lay, night, run_id, mode)
    written: list[Path] = []
    for table, data in frames.items():
        if data is None:
            continue
        if isinstance(data, partitions.Written):
            if data.path.resolve() != (folder / f"{table}.parquet").resolve() or not data.path.exists():
                raise ReconError(f"table {table}: the file staged for run {run_id!r} ({data.path.name}) is not in "
                                 f"{lay.rel(folder)} any more; run the night again")
            done = data
        else:
            done = _write_table_file(folder, schema, table, run_id, data, mode)
            if done is None:
                continue
            written.append(done.path)
        con.execute("INSERT INTO partitions VALUES (?, ?, ?, ?, ?, ?)",
                    [run_id, night, table, lay.rel(done.path), done.rows,
                     partitions.columns_hash(schema.run_tables[table])])
    return written


def _disk_full(what: str, lay: Layout) -> af.DiskFullError:
    return af.DiskFullError(f"磁盘已满，本次写入已撤销 (disk full while {what} in {lay.root}; nothing was changed; "
                            "free some space and run again)")


def _running_night(con: duckdb.DuckDBPyConnection, run_id: str) -> date:
    found = con.execute("SELECT night, status FROM runs WHERE run_id = ?", [run_id]).fetchall()
    if not found:
        raise ReconError(f"run {run_id!r} was never begun (call begin_run first)")
    if found[0][1] != "running":  # its files, if any, are published: never touch them
        raise ReconError(f"run {run_id!r} is {found[0][1]!r}, not 'running'; cannot finish it")
    return found[0][0]


def stage_run_files(db: Path, schema: Schema, run_id: str, frames: Mapping[str, object],
                    need_bytes: int = 0) -> dict[str, partitions.Written]:
    """Write a running run's tables as Parquet into its folder now, ahead of the ``commit``
    that lists them (give it the result in ``run_files``), so that the caller can let the
    frames go meanwhile. Until that commit nothing reads them; the files of a run that
    fails first are removed by the next ``begin`` (its sweep). Call under the writer lock."""
    lay = Layout(Path(db))
    con = connect_readonly(lay.db)
    try:
        night = _running_night(con, run_id)
    finally:
        con.close()
    mode = af.file_mode(lay.master)
    af.check_free_space(lay.root, need_bytes, f"staging of {run_id}")
    folder = _run_folder(lay, night, run_id, mode)
    try:
        return {table: done for table, data in frames.items() if data is not None
                and (done := _write_table_file(folder, schema, table, run_id, data, mode)) is not None}
    except OSError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        if af.is_disk_full(exc):
            raise _disk_full(f"staging the tables of {run_id}", lay) from None
        raise


def _referenced(con: duckdb.DuckDBPyConnection, lay: Layout) -> set[str]:
    listed = {r[0] for r in con.execute("SELECT path FROM partitions").fetchall()}
    return listed | {lay.rel(p) for p in lay.schema_dir.glob("*.parquet")}


def _remove_unreferenced(lay: Layout, keep: set[str], within: Path | None = None) -> None:
    """Delete Parquet files the catalog no longer lists (a killed or superseded run's)."""
    top = within or lay.nights
    if not top.is_dir():
        return
    for dirpath, _, files in os.walk(top, topdown=False):
        d = Path(dirpath)
        for f in files:
            p = d / f
            if lay.rel(p) not in keep:
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
        if d != lay.nights:
            with contextlib.suppress(OSError):
                d.rmdir()  # only when empty


def _remove_tmp(lay: Layout) -> None:
    if lay.root.is_dir():
        for p in lay.root.glob(".*.tmp*"):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
    for p in lay.db.parent.glob(f".{_glob_escape(lay.db.name)}.*.tmp*"):  # version-1 writers' leftovers
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def _chmod_tree(root: Path, mode: int) -> None:
    os.chmod(root, af.dir_mode(mode))
    for dirpath, dirs, files in os.walk(root):
        for d in dirs:
            os.chmod(Path(dirpath) / d, af.dir_mode(mode))
        for f in files:
            os.chmod(Path(dirpath) / f, mode)


def _glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def _migrate(con: duckdb.DuckDBPyConnection, lay: Layout, schema: Schema, mode: int) -> None:
    """Move a version-1 file's runs, reviews and run rows into the new catalog and Parquet."""
    con.execute(f"ATTACH {_sql_str(str(lay.db.resolve()))} AS legacy (READ_ONLY)")
    try:
        have = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() "
                                          "WHERE database_name = 'legacy'").fetchall()}
        for table in schema.catalog_tables:
            if table in have:
                con.execute(f"INSERT INTO {_q(table)} BY NAME SELECT * FROM legacy.{_q(table)}")
        nights = dict(con.execute("SELECT run_id, coalesce(night, CAST(started_at AS DATE)) FROM legacy.runs").fetchall())
        moved = 0
        for table in schema.run_tables:
            if table not in have:
                continue
            for (run_id,) in con.execute(f"SELECT DISTINCT run_id FROM legacy.{_q(table)} ORDER BY 1").fetchall():
                frame = pl.from_arrow(con.sql(f"SELECT * FROM legacy.{_q(table)} WHERE run_id = ? ORDER BY rowid",
                                              params=[run_id]).to_arrow_table())
                night = nights.get(run_id) or date(1970, 1, 1)
                _write_run_files(con, lay, schema, night, run_id, {table: frame}, mode)
                moved += 1
    finally:
        con.execute("DETACH legacy")
    log.info("store: migrated %s to schema version %d (%d run tables)", lay.db.name, SCHEMA_VERSION, moved)


def _publish_copy(lay: Layout, mode: int) -> None:
    """Copy the committed catalog over ``<db>`` for analysts' own tools (not while someone
    holds ``<db>`` open for writing: their rows would be lost)."""
    holder = af.held_for_writing(lay.db)
    if holder is not None:
        log.warning("store: %s (the published copy was not refreshed)", _held_message(lay, holder))
        return
    _keep_aside_if_changed(lay)
    tmp = lay.tmp("publish")
    try:
        shutil.copyfile(lay.master, tmp)
        os.chmod(tmp, mode)
        af.fsync_path(tmp)
        os.replace(tmp, lay.db)
        af.fsync_path(lay.db.parent, directory=True)
    finally:
        for p in (tmp, Path(f"{tmp}.wal")):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
    st = os.stat(lay.db)
    _write_small(lay.stamp, json.dumps({"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ino": st.st_ino}), mode)


def _held_message(lay: Layout, pid: int) -> str:
    return (f"数据库文件正被另一个程序以读写方式打开，本次未改动任何内容 ({lay.db} is open for writing "
            f"by process {pid}; analysts open it read-only (store.open_readonly, or "
            "duckdb.connect(path, read_only=True)); close that connection and run again)")


def _keep_aside_if_changed(lay: Layout) -> None:
    """A ``<db>`` that differs from what was last published was written by someone else:
    rename it (and its WAL) aside instead of replacing their rows."""
    if not lay.db.exists():
        return
    wal = Path(f"{lay.db}.wal")
    try:
        stamp = json.loads(lay.stamp.read_text())
    except (FileNotFoundError, ValueError):
        stamp = None
    st = os.stat(lay.db)
    same = stamp == {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ino": st.st_ino}
    if same and not wal.exists():
        return
    if stamp is None and not wal.exists():
        return  # first publish (or a migrated version-1 file, already kept as a backup)
    aside = lay.db.with_name(f"{lay.db.name}.edited-{time.strftime('%Y%m%d-%H%M%S')}")
    os.replace(lay.db, aside)
    if wal.exists():
        os.replace(wal, Path(f"{aside}.wal"))
    log.warning("store: %s was changed outside recon since it was published; kept as %s", lay.db.name, aside.name)


def _write_small(path: Path, text: str, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def commit(
    db: Path,
    schema: Schema,
    *,
    op: str,
    tag: str,
    change: Callable[[duckdb.DuckDBPyConnection], None],
    run_files: tuple[date | None, str, Mapping[str, object]] | None = None,  # (night or from runs, run_id, tables)
    need_bytes: int = 0,
    sweep: bool = False,
    strict: bool = True,
    margin: int = af.MIN_FREE_BYTES,
) -> None:
    """Apply ``change`` to a private copy of the catalog (after writing ``run_files``, the
    run's tables as Parquet, listed in ``partitions``), commit it and publish it.

    Call under the writer lock. ``strict``: refuse (raise) when ``<db>`` is held open for
    writing by someone else; otherwise commit and skip the published copy (fail_run).
    ``sweep``: also delete Parquet files the catalog does not list: a killed run's, and
    those dropped (superseded, past retention) by earlier commits. Dropping and deleting
    are a run apart so that a connection opened before a rerun keeps reading its files.
    """
    lay = Layout(Path(db))
    mode = af.file_mode(lay.db) if lay.db.exists() else af.file_mode(lay.master)
    if strict and (holder := af.held_for_writing(lay.db)) is not None:
        raise af.FileHeldError(_held_message(lay, holder))
    migrate = False
    if not lay.master.exists() and lay.db.exists():
        tables, views, meta = _inspect(lay.db)
        if meta:
            _check_version(lay.db, meta)
            raise ForeignDatabaseError(f"{lay.db} is a recon database but its folder {lay.root.name} is missing; "
                                       "restore it (the runs' rows are there) or choose another --db")
        _legacy_ok(lay.db, schema, tables, views)
        migrate = True
    lay.db.parent.mkdir(parents=True, exist_ok=True)
    lay.root.mkdir(exist_ok=True, mode=af.dir_mode(mode))
    if lay.master.exists() and af.file_mode(lay.master) != mode:
        _chmod_tree(lay.root, mode)  # someone changed the database's mode: its files follow
    _remove_tmp(lay)
    master_size = lay.master.stat().st_size if lay.master.exists() else 0
    legacy_size = lay.db.stat().st_size if migrate else 0
    af.check_free_space(lay.root, need_bytes + 2 * master_size + 2 * legacy_size, f"{op} of {tag}", margin)
    tmp = lay.tmp(tag)
    written: list[Path] = []
    new_dir: Path | None = None
    staged: set[Path] = set()
    keep: set[str] = set()
    committed = False
    try:
        if lay.master.exists():
            shutil.copyfile(lay.master, tmp)
        af.pause_point(op, "after_copy")
        con = _open_tmp(lay, tmp)
        try:
            meta = _read_meta(con)
            if meta:
                _check_version(lay.master, meta)
            base = lay.db.parent.resolve()
            declared = _declaration_hash(schema, base)
            redeclared = meta.get("declaration") != declared
            if redeclared:
                _ensure_schema(con, schema, declared)
                _write_schema_files(lay, schema, mode)
            if migrate:
                _migrate(con, lay, schema, mode)
            if run_files is not None:
                night, run_id, frames = run_files
                night = night or _running_night(con, run_id)
                new_dir = lay.run_dir(night, run_id)
                staged = {d.path.resolve() for d in frames.values() if isinstance(d, partitions.Written)}
                written = _write_run_files(con, lay, schema, night, run_id, frames, mode)
            change(con)
            if redeclared or migrate:
                _create_views(con, schema, lay, analyst_views=True)
            af.pause_point(op, "after_change")
            keep = _referenced(con, lay)
            con.execute("CHECKPOINT")
        finally:
            con.close()
        if Path(f"{tmp}.wal").exists():
            raise ReconError(f"DuckDB left a write-ahead log next to {tmp.name}; not publishing")
        os.chmod(tmp, mode)
        af.fsync_path(tmp)
        for p in written:
            af.fsync_path(p)
        af.pause_point(op, "before_replace")
        if migrate:
            backup = lay.db.with_name(f"{lay.db.name}.v1-backup")
            shutil.copyfile(lay.db, backup)
            os.chmod(backup, mode)
        os.replace(tmp, lay.master)
        af.fsync_path(lay.root, directory=True)
        committed = True
        af.pause_point(op, "after_replace")
    except OSError as exc:
        if af.is_disk_full(exc):
            raise _disk_full(f"writing {op} of {tag}", lay) from None
        raise
    finally:
        for p in (tmp, Path(f"{tmp}.wal")):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        shutil.rmtree(tmp.with_name(tmp.name + ".spill"), ignore_errors=True)
        if not committed and new_dir is not None:
            if staged:  # kept for a retry of the publish; the next run's sweep removes them otherwise
                for p in new_dir.glob("*.parquet"):
                    if p.resolve() not in staged:
                        p.unlink(missing_ok=True)
            else:
                shutil.rmtree(new_dir, ignore_errors=True)  # partly written files too
    try:  # past the commit point: a failure here must not make the caller think nothing happened
        _publish_copy(lay, mode)
    except OSError as exc:
        log.error("store: the published copy %s was not refreshed (%s); the next write refreshes it",
                  lay.db.name, type(exc).__name__)
    if sweep:
        _remove_unreferenced(lay, keep)

