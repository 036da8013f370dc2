"""The DuckDB store analysts query: run bookkeeping, retention, atomic publish, one writer.

Tables (declared in :data:`TABLES`; every table but ``runs`` and ``reviews`` is keyed by ``run_id``)
----------------------------------------------------------------------------------------------

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
    ``head_name_norm``, ``head_id_norm``, ``household``, ``birth`` DATE, ``gender_norm``;
    place keys ``town_key``, ``village_key`` and the night's names for them ``town_name``,
    ``village_name`` (``reconcile.places``).

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

``item_refs`` — each run's item map (``item_ref`` → ``item_key``, ``fingerprint``, ``kind``,
    ``school``, ``town``); kept when a rerun supersedes the run (``read_item_map``).

Join records to matches on ``(run_id, county, source='roster', rec=roster_rec)`` and
``(run_id, county=system_county, source=system, rec=system_rec)`` (``rec`` counts within a
county; in a province run a roster row may link to another county's record), or on the
lineage columns.
Only succeeded runs have rows in the run tables: a run stores its rows at ``finish_run`` in
one step, a failed run stores none and leaves earlier rows untouched, and a later run of
the same ``night`` drops the earlier run's rows (its ``runs`` row stays, status
``superseded``; its ``item_refs`` stay).

Storage and retention
---------------------
``runs`` and ``reviews`` live in a small catalog file; every other table is one Parquet
file per run, written once, that the catalog lists and reads through views of the same
names (:mod:`reconcile.catalog`, :mod:`reconcile.partitions`). A night's publish writes its
own files and a copy of the catalog, whatever the number of nights stored. ``records`` and
``row_problems`` are kept for the newest ``records_nights`` nights; everything else (and
``runs``, ``reviews``) for ``history_days`` (``store.toml``, :class:`~reconcile.config.StoreSettings`).
Adding a table is a declaration in :data:`TABLES` (a run table by default; name it in
:data:`SHORT_LIVED` to keep it as briefly as ``records``).

Writers are serialised by :class:`RunLock` (an ``flock`` on ``{db_path}.lock``); hold it
for the whole run. Each call takes it briefly itself when this process does not hold it.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from reconcile import atomic_files, catalog, partitions
from reconcile.config import StoreSettings
from reconcile.errors import ReconError
from reconcile.fields import FIELDS, ID_FIELDS, LINEAGE, PLACE_FIELDS, SOURCES
from reconcile.run_lock import RunLock, writer
from reconcile.vocabulary import mask_text

__all__ = [
    "RunLock",
    "begin_run",
    "finish_run",
    "stage_tables",
    "fail_run",
    "open_readonly",
    "TABLES",
    "CATALOG_TABLES",
    "DATA_TABLES",
    "SHORT_LIVED",
    "KEPT_WHEN_SUPERSEDED",
    "COUNT_COLUMNS",
    "INTERRUPTED_ERROR",
    "ITEM_REF_COLUMNS",
    "schema_sql",
    "VIEWS",
    "add_reviews",
    "read_reviews",
    "REVIEWS_SCHEMA",
    "read_item_map",
    "read_previous",
    "read_runs",
    "run_state",
    "DiskFullError",
    "FileHeldError",
    "ForeignDatabaseError",
]

log = logging.getLogger(__name__)

DiskFullError = atomic_files.DiskFullError
FileHeldError = atomic_files.FileHeldError
ForeignDatabaseError = catalog.ForeignDatabaseError

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
        **{f: "VARCHAR" for f in PLACE_FIELDS},
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
        "village": "VARCHAR",
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
    # Each run's workbook references (item_ref -> item_key, fingerprint): small, and kept
    # when a same-night rerun supersedes the run, so workbooks already sent still import.
    "item_refs": {
        "run_id": "VARCHAR", "item_ref": "BIGINT", "item_key": "VARCHAR", "fingerprint": "VARCHAR",
        "kind": "VARCHAR", "school": "VARCHAR", "town": "VARCHAR", "row_hash": "VARCHAR",
    },
    # issue 7: a town/village whose export looks cut short, and households that entered or
    # left a system since the previous run (see reconcile/completeness.py).
    "export_problems": {
        "run_id": "VARCHAR", "county": "VARCHAR", "system": "VARCHAR", "file": "VARCHAR", "town": "VARCHAR",
        "village": "VARCHAR", "town_key": "VARCHAR", "village_key": "VARCHAR", "problem": "VARCHAR",
        "expected_rows": "BIGINT", "expected_from": "VARCHAR", "found_rows": "BIGINT",
        "previous_households": "BIGINT", "found_households": "BIGINT", "other_system_households": "BIGINT",
        "roster_students": "BIGINT", "message": "VARCHAR",
    },
    "household_changes": {
        "run_id": "VARCHAR", "county": "VARCHAR", "system": "VARCHAR", "household": "VARCHAR", "change": "VARCHAR", "town": "VARCHAR",
        "village": "VARCHAR", "head_name": "VARCHAR", "status_before": "VARCHAR", "status_now": "VARCHAR",
        "export_incomplete": "BOOLEAN", "students": "BIGINT", "student_rows": "VARCHAR", "message": "VARCHAR",
    },
    # The matching model fitted tonight, per system, field and level (reconcile/model.py):
    # m, u, the level's weight in bits, and where m and u came from (`data`, `configuration`,
    # or `bound`: the configured value capped at what the data allows). `system_county`: whose
    # exports the model was fitted on — the county's own; in a province run also the
    # cross-county look-up's models of the county's roster, by the county a routed pass
    # searched (NULL: the pass over every other county's exports).
    "model_parameters": {
        "run_id": "VARCHAR", "county": "VARCHAR", "system_county": "VARCHAR", "system": "VARCHAR",
        "field": "VARCHAR", "level": "VARCHAR",
        "label": "VARCHAR",
        "m": "DOUBLE", "u": "DOUBLE", "bits": "DOUBLE", "m_from": "VARCHAR", "u_from": "VARCHAR",
        "u_seen": "BIGINT", "random_pairs": "BIGINT", "prior": "DOUBLE", "prior_bits": "DOUBLE",
        "em_iterations": "BIGINT", "converged": "BOOLEAN", "fitted": "BOOLEAN",
    },
}

# Tables kept in the catalog itself (not per run); every other table is a run table.
CATALOG_TABLES: tuple[str, ...] = ("runs", "reviews")
# The tables finish_run fills from frames.
DATA_TABLES: tuple[str, ...] = tuple(t for t in TABLES if t not in CATALOG_TABLES)
# Run tables kept only for the newest `records_nights` nights (the bulk of every night).
SHORT_LIVED: tuple[str, ...] = ("records", "row_problems")
# Run tables a same-night rerun does not drop.
KEPT_WHEN_SUPERSEDED: tuple[str, ...] = ("item_refs",)
ITEM_REF_COLUMNS: tuple[str, ...] = tuple(c for c in TABLES["item_refs"] if c != "run_id")
# The ``reviews`` table as a polars schema (what read_reviews returns).
REVIEWS_SCHEMA: dict[str, pl.DataType] = {c: partitions.POLARS_TYPES[t] for c, t in TABLES["reviews"].items()}


def _q(identifier: str) -> str:
    """Quote an identifier (row, column ... are keywords)."""
    return '"' + identifier.replace('"', '""') + '"'


def schema_sql() -> str:
    """The DDL of every table, for the README or a notebook (run tables are views over
    Parquet in the store, with these columns)."""
    return ";\n\n".join(
        f"CREATE TABLE {_q(t)} (\n    " + ",\n    ".join(f"{_q(c)} {ty}" for c, ty in cols.items()) + "\n)"
        for t, cols in TABLES.items()) + ";\n"


def _schema() -> catalog.Schema:
    """Read at each call, so that tables declared after import are included."""
    return catalog.Schema(
        catalog_tables={t: TABLES[t] for t in CATALOG_TABLES},
        run_tables={t: c for t, c in TABLES.items() if t not in CATALOG_TABLES},
        views=VIEWS,
    )


def _commit(db_path: Path, *, op: str, tag: str, change, **kw: Any) -> None:
    with writer(Path(db_path)):
        catalog.commit(Path(db_path), _schema(), op=op, tag=tag, change=change, **kw)


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
    """Record a new 'running' run; runs still 'running' from a killed process become 'failed'.

    Refuses (ForeignDatabaseError) a --db file recon did not create, migrates a version-1
    recon file, and refuses (FileHeldError) while someone holds the published file open
    for writing. Files a killed run left are removed.
    """

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

    _commit(Path(db_path), op="begin", tag=run_id, change=change, sweep=True)


def _item_refs(discrepancies: pl.DataFrame | Sequence[pl.DataFrame] | None) -> list[pl.DataFrame] | None:
    if discrepancies is None:
        return None
    frames = [discrepancies] if isinstance(discrepancies, pl.DataFrame) else list(discrepancies)
    return [f.select([c for c in ITEM_REF_COLUMNS if c in f.columns]) for f in frames]


RunTables = Mapping[str, pl.DataFrame | Sequence[pl.DataFrame] | partitions.Written | None]


def _run_frames(tables: RunTables) -> dict[str, Any]:
    """``tables`` checked against the run tables, with ``item_refs`` from ``discrepancies``
    unless given (or staged)."""
    run_tables = [t for t in TABLES if t not in CATALOG_TABLES]  # read now: tables may be declared later
    unknown = sorted(set(tables) - set(run_tables))
    if unknown:
        raise ValueError(f"unknown tables {unknown}; expected some of {run_tables}")
    given = dict(tables)
    if "item_refs" not in given and not isinstance(given.get("discrepancies"), partitions.Written):
        given["item_refs"] = _item_refs(given.get("discrepancies"))
    return {t: given[t] for t in run_tables if given.get(t) is not None}


def stage_tables(db_path: Path, *, run_id: str, tables: RunTables) -> dict[str, partitions.Written]:
    """``finish_run``'s tables written to the run's Parquet files now, before the night's
    workbooks, so its largest frames (records, matches) need not stay in memory meanwhile;
    pass the result to ``finish_run`` as its ``tables``. Nothing is published until then."""
    frames = _run_frames(tables)
    need = sum(partitions.estimate_bytes(f) for f in frames.values()) // 4
    with writer(Path(db_path)):
        return catalog.stage_run_files(Path(db_path), _schema(), run_id, frames, need_bytes=need)


def finish_run(
    db_path: Path,
    *,
    run_id: str,
    finished_at: datetime,
    counts: dict,
    tables: RunTables,
    retention: StoreSettings | None = None,
    county: str | None = None,
    counties: dict | None = None,
    error: str | None = None,
) -> None:
    """Store the run's tables and mark it 'succeeded', replacing earlier runs of its night,
    and drop what is past ``retention`` (default: :class:`StoreSettings`'s defaults).

    ``tables`` maps table names (records, row_problems, matches, discrepancies, ...) to
    frames, or to lists of frames (e.g. one per source: no need to concatenate them first),
    or to what ``stage_tables`` wrote of them already;
    missing columns are stored as NULL, columns the table doesn't know are ignored, a
    ``run_id`` column in a frame is overwritten. A table not given gets no rows;
    ``item_refs`` is taken from ``discrepancies`` unless given.

    ``county``: the county a county run is about (null for a province run); ``counties``
    (a province run): each county's status, error, counts and seconds; ``error``: why some
    counties failed while the others were published.
    """
    frames = _run_frames(tables)
    keep = retention or StoreSettings()

    def change(con: duckdb.DuckDBPyConnection) -> None:
        status = _run_status(con, run_id)
        if status != "running":
            raise ReconError(f"run {run_id!r} is {status!r}, not 'running'; cannot finish it")
        earlier = [r[0] for r in con.execute(
            "SELECT run_id FROM runs WHERE night = (SELECT night FROM runs WHERE run_id = ?) "
            "AND run_id <> ? AND status = 'succeeded'", [run_id, run_id]).fetchall()]
        if earlier:
            con.execute(
                "DELETE FROM partitions WHERE run_id IN (SELECT UNNEST(?::VARCHAR[])) "
                "AND table_name NOT IN (SELECT UNNEST(?::VARCHAR[]))",
                [earlier, list(KEPT_WHEN_SUPERSEDED)])
            con.execute(
                "UPDATE runs SET status = 'superseded', superseded_by = ? "
                "WHERE run_id IN (SELECT UNNEST(?::VARCHAR[]))",
                [run_id, earlier])
        sets = ", ".join(f"{_q(c)} = ?" for c in COUNT_COLUMNS)
        con.execute(
            f"UPDATE runs SET status = 'succeeded', error = ?, finished_at = ?, counts = ?, county = ?, counties = ?, "
            f"{sets} WHERE run_id = ?",
            [_scrub(error) if error else None, _aware(finished_at), _json(counts), county,
             _json(counties) if counties is not None else None, *(_count(counts.get(c)) for c in COUNT_COLUMNS), run_id])
        _apply_retention(con, keep)

    need = sum(partitions.estimate_bytes(f) for f in frames.values()) // 4  # type: ignore[arg-type]
    _commit(Path(db_path), op="finish", tag=run_id, change=change, run_files=(None, run_id, frames), need_bytes=need)


def _apply_retention(con: duckdb.DuckDBPyConnection, keep: StoreSettings) -> None:
    """records-like tables: the newest N nights with a succeeded run; the rest: history_days."""
    con.execute(
        "DELETE FROM partitions WHERE table_name IN (SELECT UNNEST(?::VARCHAR[])) AND night NOT IN ("
        "SELECT DISTINCT night FROM runs WHERE status = 'succeeded' ORDER BY night DESC LIMIT ?)",
        [list(SHORT_LIVED), keep.records_nights])
    (newest,) = con.execute("SELECT max(night) FROM runs WHERE status = 'succeeded'").fetchall()[0]
    if newest is None:
        return
    cutoff = newest - timedelta(days=keep.history_days)
    con.execute("DELETE FROM partitions WHERE night < ?", [cutoff])
    con.execute("DELETE FROM runs WHERE night < ?", [cutoff])
    con.execute("DELETE FROM reviews WHERE CAST(imported_at AS DATE) < ?", [cutoff])


def fail_run(db_path: Path, *, run_id: str, finished_at: datetime, error: str) -> None:
    """Mark the run 'failed' with ``error``; earlier runs' data stays as it was.

    A run that was never begun (begin_run itself failed) gets a 'failed' row of its own.
    ID-shaped digit runs in ``error`` are masked before storing. When the disk is too full
    to record it, the reason goes to the log and stderr (which need no space) and
    DiskFullError is raised.
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

    try:
        # a failure is small to record: it may use what a run's margin keeps free
        _commit(Path(db_path), op="fail", tag=run_id, change=change, strict=False,
                margin=atomic_files.MIN_FREE_BYTES // 4)
    except DiskFullError as exc:
        atomic_files.say_without_space(f"run {run_id} failed: {text} — not recorded in the database: {exc}")
        raise



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
    # Counts by county, town, school, stage, kind (and severity) for the newest run (town
    # and school names repeat across the counties of a province).
    "discrepancy_totals": """
        SELECT night, county, town, school, stage, kind, severity, count(*) AS n
        FROM open_discrepancies GROUP BY ALL""",
    # Children of qualifying households at a stage no roster covered that night (本科/大专 …):
    # not put to the towns as possible drop-outs, counted per town and stage instead.
    "missed_by_stage": """
        SELECT night, county, town, system_value AS stage, count(*) AS n
        FROM open_discrepancies WHERE kind = 'missed_other_stage' GROUP BY ALL ORDER BY county, town, stage""",
    # Each succeeded run with the succeeded run before it.
    "run_pairs": """
        SELECT run_id, night, lag(run_id) OVER (ORDER BY night, finished_at) AS prev_run_id
        FROM runs WHERE status = 'succeeded'""",
    # Items night over night: new (not in the previous run), resolved (gone), still_open.
    "discrepancy_changes": """
        WITH cur AS (SELECT p.run_id, p.night, d.item_key, d.kind, d.county, d.school, d.town
                     FROM run_pairs p JOIN discrepancies d ON d.run_id = p.run_id),
             prev AS (SELECT p.run_id, p.night, d.item_key, d.kind, d.county, d.school, d.town
                      FROM run_pairs p JOIN discrepancies d ON d.run_id = p.prev_run_id)
        SELECT coalesce(c.run_id, p.run_id) AS run_id, coalesce(c.night, p.night) AS night,
               coalesce(c.item_key, p.item_key) AS item_key, coalesce(c.kind, p.kind) AS kind,
               coalesce(c.county, p.county) AS county, coalesce(c.school, p.school) AS school,
               coalesce(c.town, p.town) AS town,
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
                   AND s.source = m.system AND s.rec = m.system_rec
                   AND s.county IS NOT DISTINCT FROM coalesce(m.system_county, m.county) JOIN lr ON lr.run_id = m.run_id
            UNION SELECT r.id_norm FROM records r JOIN lr USING (run_id) WHERE r.source = 'roster'),
        kids AS (
            SELECT rec.run_id, rec.county, rec.source AS system, rec.town, rec.village, rec.household,
                   rec.name, rec.id_norm, rec.id_birth, date_sub('year', rec.id_birth, lr.as_of) AS age,
                   rec.school_status, rec.poverty_status, rec.status AS dibao_status,
                   rec.file, rec.sheet, rec.row
            FROM records rec JOIN lr USING (run_id)
            WHERE rec.source IN ('dibao', 'filing') AND rec.id_status IN ('valid', 'legacy15'))
        SELECT * FROM kids
        WHERE age BETWEEN 6 AND 17 AND id_norm NOT IN (SELECT id_norm FROM seen WHERE id_norm IS NOT NULL)
        QUALIFY row_number() OVER (PARTITION BY id_norm ORDER BY system, file, sheet, row) = 1""",
    "coverage_by_town": """
        SELECT county, town, count(*) AS children, count_if(age BETWEEN 6 AND 15) AS compulsory_age
        FROM coverage_gaps GROUP BY county, town ORDER BY children DESC, county, town""",
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
    if reviews.height == 0:
        return 0

    def change(con: duckdb.DuckDBPyConnection) -> None:
        keep = [c for c in reviews.columns if c in TABLES["reviews"]]
        con.register("_recon_in_reviews", reviews.select(keep).to_arrow())
        cols = ", ".join(_q(c) for c in keep)
        con.execute(f"INSERT INTO reviews ({cols}) SELECT {cols} FROM _recon_in_reviews")
        con.unregister("_recon_in_reviews")

    _commit(Path(db_path), op="review", tag=f"review-{uuid.uuid4().hex[:8]}", change=change,
            need_bytes=int(reviews.estimated_size()))
    return reviews.height


def _query_frame(db_path: Path | str, table: str, sql: str, params: list, schema: Mapping[str, pl.DataType],
                 *, strict: bool = True) -> pl.DataFrame:
    """``sql`` over ``table`` as a frame of ``schema``; empty when there is no database or
    no such table yet."""
    path = Path(db_path)
    if not _exists(path):
        return pl.DataFrame(schema=dict(schema))
    con = open_readonly(path)
    try:
        if not _has(con, table):
            return pl.DataFrame(schema=dict(schema))
        frame = pl.from_arrow(con.sql(sql, params=params).to_arrow_table())
    finally:
        con.close()
    return frame.cast(dict(schema), strict=strict)  # type: ignore[union-attr]


def read_reviews(db_path: Path | str) -> pl.DataFrame:
    """Every stored decision (empty frame when there is no database or no table yet)."""
    cols = ", ".join(_q(c) for c in REVIEWS_SCHEMA)
    return _query_frame(db_path, "reviews", f"SELECT {cols} FROM reviews ORDER BY imported_at, review_id", [],
                        REVIEWS_SCHEMA, strict=False)


def read_item_map(db_path: Path | str, run_id: str) -> pl.DataFrame:
    """A run's item map (item_ref, item_key, fingerprint, kind, school, town, row_hash), also
    for a superseded run; an empty frame when the run or the database is unknown."""
    types = {c: partitions.POLARS_TYPES[TABLES["item_refs"][c]] for c in ITEM_REF_COLUMNS}
    cols = ", ".join(_q(c) for c in ITEM_REF_COLUMNS)
    return _query_frame(db_path, "item_refs", f"SELECT {cols} FROM item_refs WHERE run_id = ? "
                        "ORDER BY item_ref, item_key", [run_id], types)


def read_runs(db_path: Path | str) -> pl.DataFrame:
    """Every run's bookkeeping row (run_id, status, night, started_at, finished_at, error);
    empty when there is no database."""
    cols = ("run_id", "status", "night", "started_at", "finished_at", "error")
    types = {c: partitions.POLARS_TYPES[TABLES["runs"][c].replace(" PRIMARY KEY", "")] for c in cols}
    return _query_frame(db_path, "runs", f"SELECT {', '.join(cols)} FROM runs ORDER BY night, started_at", [], types)


def run_state(db_path: Path | str, run_id: str) -> tuple[str, date] | None:
    """A run's status and night, or None when the database does not know it."""
    path = Path(db_path)
    if not _exists(path):
        return None
    con = open_readonly(path)
    try:
        rows = con.execute("SELECT status, night FROM runs WHERE run_id = ?", [run_id]).fetchall()
    finally:
        con.close()
    return (rows[0][0], rows[0][1]) if rows else None


def open_readonly(db_path: Path | str) -> duckdb.DuckDBPyConnection:
    """A read-only connection where every table and view answers across nights.

    It keeps seeing the store as it was when opened; call again to see a newer run. The
    writer's catalog is ATTACHed (as ``recon``, made the default) to a fresh in-memory
    database, so that a process that still holds a connection to it does not reuse
    DuckDB's cached instance and keep showing a replaced file.
    """
    return catalog.connect_readonly(Path(db_path))


def _exists(db_path: Path) -> bool:
    return db_path.exists() or catalog.Layout(db_path).master.exists()


def _has(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    return bool(con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?",
                            [name]).fetchall()[0][0])


def read_previous(db_path: Path | str) -> tuple[str, pl.DataFrame, pl.DataFrame] | None:
    """The latest succeeded run's id, its per-place system counts (system, file, town,
    village, rows, households) and its system records (what the night-over-night checks
    compare with); None when there is no database or no succeeded run yet."""
    path = Path(db_path)
    if not _exists(path):
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


# --------------------------------------------------------------------------- helpers

def _scrub(text: str, limit: int = 4000) -> str:
    """Keep ID-like digit runs out of stored error text (privacy), cap the length."""
    text = mask_text(text)
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
