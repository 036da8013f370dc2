"""The nightly reconciliation as a Prefect flow: it orchestrates, the core computes.

Parameters are paths and dates only; task results are never persisted (they hold
minors' IDs), and no task caches on its inputs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import shutil
import uuid
from dataclasses import dataclass
from typing import Any
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from reconcile import ingest, night_reports, notify, partitions, pipeline, report, store
from reconcile.completeness import Previous
from reconcile.config import Settings, StoreSettings, load_settings
from reconcile.errors import ReconError, redact, scrub
from reconcile import second_process
from flows import read_ahead
from reconcile.second_process import SecondProcess

__all__ = ["nightly_reconciliation", "Reconciled", "TIMEZONE", "TOWN_DIR", "NOTICE_DIR", "write_reports", "no_data_in_errors",
           "now", "new_run", "record_failure", "StepError"]

TIMEZONE = "Asia/Shanghai"
TOWN_DIR = "乡镇"  # <reports>/<night>/乡镇/<town>.xlsx: the town clerks' workbooks
NOTICE_DIR = "公示名单"  # <reports>/<night>/公示名单/<school>.xlsx
QUIET = dict(cache_policy=NO_CACHE, persist_result=False)
PARALLEL_REPORTS_FROM = 5000  # items; below this a second process costs more than it saves


class StepError(ReconError):
    """A task's failure as Prefect records it: type and message with cell values removed."""


@contextlib.contextmanager
def no_data_in_errors(step: str):
    """Exceptions leaving a task are what Prefect logs and stores in its database (state
    messages, tracebacks). Library errors quote cell values (an ID, a name): re-raise them
    with quoted text and ID-shaped numbers masked, and without the original chained (whose
    message the traceback would print)."""
    try:
        yield
    except ReconError:
        raise
    except Exception as exc:  # noqa: BLE001
        text = scrub(str(exc).strip().splitlines()[0] if str(exc).strip() else "")
        raise StepError(f"{step}: {type(exc).__name__}: {text[:300]}") from None


_NOT_TRANSIENT = (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError, FileExistsError)
_TRANSIENT_ERRNOS = {errno.EIO, errno.EAGAIN, errno.EBUSY, errno.EINTR, errno.ETIMEDOUT, errno.ESTALE,
                     errno.ENOLCK, errno.ECONNRESET, errno.ECONNABORTED, errno.ENETDOWN, errno.ENETUNREACH,
                     errno.EHOSTUNREACH, errno.EHOSTDOWN}


def _transient_io(_task, _task_run, state) -> bool:
    """Retry only what may pass by itself: a timed-out or interrupted read, a busy or stale
    network share. A missing inbox, a permission or any other error fails at once."""
    exc = state.data if isinstance(getattr(state, "data", None), BaseException) else None
    if exc is None:
        with contextlib.suppress(Exception):
            exc = state.result(raise_on_failure=False)
    if not isinstance(exc, OSError) or isinstance(exc, _NOT_TRANSIENT):
        return False
    return isinstance(exc, (TimeoutError, ConnectionError, BlockingIOError, InterruptedError)) or (
        exc.errno in _TRANSIENT_ERRNOS)


TRANSIENT_RETRIES = dict(retries=2, retry_delay_seconds=5, retry_condition_fn=_transient_io)


@task(**TRANSIENT_RETRIES, **QUIET)
def read_inbox(inbox: Path, settings: Settings, ahead: read_ahead.ReadAhead | None = None) -> ingest.IngestResult:
    """``ahead``: the inbox as ``recon run`` read it while Prefect's server started (taken
    on the first try only; a retry reads afresh)."""
    log = get_run_logger()
    if not inbox.is_dir():
        raise FileNotFoundError(f"inbox folder {redact(str(inbox))} does not exist")

    def on_file(rel: str, i: int, n: int) -> None:
        log.info("reading %d/%d: %s", i, n, redact(rel))   # a file named after a student holds the ID

    with no_data_in_errors("reading the inbox"):
        result = ahead.take() if ahead is not None else None
        if result is not None:
            log.info("the inbox was read while Prefect's server started")
        else:
            result = ingest.read_inbox(inbox, settings.header_aliases, on_file=on_file)
    log.info("read %d files, %d sheets, %d file/row problems", result.files_read, len(result.tables), result.problems.height)
    # Whole-file problems name the file and the reason (their value is 「reason」 and a technical
    # detail, never a cell value); row problems are counted here and listed in row_problems.
    for p in result.problems.filter(pl.col("row").is_null()).iter_rows(named=True):
        log.warning("%s%s: %s %s", redact(p["file"]), f" [{redact(p['sheet'])}]" if p["sheet"] else "", p["problem"],
                    redact(p["value"] or ""))
    by_problem = result.problems.filter(pl.col("row").is_not_null()).group_by("problem").len().sort("problem")
    for problem, n in by_problem.iter_rows():
        log.info("row problems %s: %d (see table row_problems)", problem, n)
    return result


@task(retries=2, retry_delay_seconds=5, **QUIET)
def load_decisions(db: Path) -> pl.DataFrame:
    """The clerks' decisions imported so far (``recon review import``)."""
    decisions = store.read_reviews(db)
    get_run_logger().info("%d stored clerk decisions", decisions.height)
    return decisions


@task(retries=2, retry_delay_seconds=5, **QUIET)
def read_previous_run(db: Path) -> Previous | None:
    """The previous succeeded run's per-village counts and system records (night over night)."""
    found = store.read_previous(db)
    if found is None:
        get_run_logger().info("no previous run to compare with")
        return None
    run_id, counts, records = found
    get_run_logger().info("comparing with run %s (%d places)", run_id, counts.height)
    return Previous(run_id, counts, records)


@dataclass(frozen=True)
class Reconciled:
    """What the night keeps of its ``pipeline.Results`` once their tables are staged: the
    workbooks' frames, the counts, and the staged files ``publish`` lists."""

    discrepancies: pl.DataFrame
    eligible: pl.DataFrame | None
    counts: dict[str, int]
    staged: dict[str, partitions.Written]


@task(**QUIET)
def reconcile_records(ingested: ingest.IngestResult, settings: Settings, db: Path, run_id: str,
                      decisions: pl.DataFrame | None = None, as_of: date | None = None, county: str | None = None,
                      previous: Previous | None = None) -> Reconciled:
    """Also writes the run's tables to its Parquet files (unpublished): Prefect keeps a
    task's result until the flow ends, so the records and links must not be part of it
    while the workbooks are written (on a prefecture, gigabytes)."""
    log = get_run_logger()
    with no_data_in_errors("reconciling"):
        results = pipeline.reconcile(ingested, settings, progress=log.info, decisions=decisions, as_of=as_of,
                                     county=county, previous=previous, release_input=True,
                                     aside=second_process.start)
        # The hash of each item's locked workbook cells, stored so the import can tell edits.
        results = dataclasses.replace(results, discrepancies=report.with_row_hashes(results.discrepancies))
    log.info("policy: %s", results.policy.title if results.policy else "none found for this county (no subsidy check)")
    with no_data_in_errors("staging the tables"):
        staged = store.stage_tables(db, run_id=run_id, tables=pipeline.stored_tables(results, county))
    return Reconciled(results.discrepancies, results.eligible, results.counts, staged)


def write_reports(results: pipeline.Results | Reconciled, folder: Path, run_id: str, settings: Settings | None = None,
                  night: date | None = None) -> tuple[int, int, int]:
    """Every workbook of one county's night into ``folder``: school, town and notice sets."""
    items = report.workbook_columns(results.discrepancies)
    eligible = results.eligible if results.eligible is not None else pl.DataFrame()
    ns = settings.notice if settings is not None else None
    when: dict[str, Any] = {"night": night, "notice": ns}
    jobs: list[tuple[Any, tuple[Any, ...], dict[str, Any]]] = [
        (report.write_school_workbooks, (items, folder), {"run_id": run_id, **when}),
        (report.write_clerk_workbooks, (items, folder / TOWN_DIR), {"by": "town", "run_id": run_id, **when}),
        (report.write_public_notices, (eligible, folder / NOTICE_DIR), {"start": night, "notice": ns}),
    ]
    with no_data_in_errors("writing workbooks"):
        if items.height < PARALLEL_REPORTS_FROM:
            return tuple(len(fn(*args, **kw)) for fn, args, kw in jobs)  # type: ignore[return-value]
        # The writer is pure Python: a large county's sets are each split in two shares of
        # about equal rows, one written here and one in a second process (a new interpreter,
        # not a fork beside Prefect's threads, that imports only the writer).
        with SecondProcess([(fn, args, {**kw, "part": (1, 2)}) for fn, args, kw in jobs]) as there:
            here = [fn(*args, **kw, part=(0, 2)) for fn, args, kw in jobs]
            return tuple(len(a) + len(b) for a, b in zip(here, there.results()))  # type: ignore[return-value]


@task(retries=1, retry_delay_seconds=2, **QUIET)
def stage_reports(results: Reconciled, reports: Path, run_id: str, settings: Settings | None = None,
                  night: date | None = None) -> Path:
    """Workbooks go to a staging folder first, so a failed run leaves last night's intact."""
    staging = night_reports.staging_dir(reports, run_id)
    staging.mkdir(parents=True, exist_ok=True)
    written = write_reports(results, staging, run_id, settings, night)
    get_run_logger().info("wrote %d school workbooks, %d town workbooks, %d public-notice lists", *written)
    return staging


@task(retries=2, retry_delay_seconds=5, **QUIET)
def publish(db: Path, run_id: str, results: Reconciled, retention: StoreSettings) -> None:
    """A write either commits whole or leaves nothing (the staged files stay for a retry),
    so a retry is safe; the store's refusals (DiskFullError, FileHeldError,
    ForeignDatabaseError) are ReconErrors, not transient I/O."""
    with no_data_in_errors("publishing"):
        store.finish_run(db, run_id=run_id, finished_at=now(), counts=results.counts, tables=results.staged,
                         retention=retention)


def now() -> datetime:
    return datetime.now(ZoneInfo(TIMEZONE))


def new_run(as_of: str | None) -> tuple[datetime, date, date, str]:
    """A run's start, night (its local date: reruns of a night replace each other), as-of
    date (default the night) and id."""
    started = now()
    night = started.date()
    return started, night, date.fromisoformat(as_of) if as_of else night, f"{started:%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:8]}"


def record_failure(db: Path, run_id: str, exc: BaseException) -> None:
    """fail_run, whose own failure (a full disk) must not hide the night's reason."""
    try:
        store.fail_run(db, run_id=run_id, finished_at=now(), error=redact(f"{type(exc).__name__}: {exc}"))
    except ReconError as second:
        get_run_logger().error("the failure could not be recorded in the database: %s", second)


def _on_failure(flow: object, flow_run: object, state: object) -> None:
    """Prefect's on_failure hook: whatever failed (a task, the lock, a foreign --db), a
    person is told without opening Prefect."""
    params = getattr(flow_run, "parameters", {}) or {}
    started = getattr(flow_run, "start_time", None) or now()
    night = started.astimezone(ZoneInfo(TIMEZONE)).date()
    try:
        last = store.read_runs(params["db"]).filter(pl.col("night") == night).sort("started_at").tail(1)
        run_id = last.get_column("run_id")[0] if last.height else None
    except Exception:  # noqa: BLE001 - a foreign or broken --db: the note goes out without a run id
        run_id = None
    reason = redact(str(getattr(state, "message", "") or ""))
    notify.tell(db=params.get("db", ""), reports=params.get("reports", ""), config=params.get("config"),
                night=night, kind="failed", reason=reason, run_id=run_id, when=now())


@flow(name="nightly-reconciliation", persist_result=False, log_prints=False, on_failure=[_on_failure])
def nightly_reconciliation(
    inbox: str, db: str, reports: str, as_of: str | None = None, config: str | None = None,
    county: str | None = None,
) -> dict[str, int]:
    """Reconcile one inbox; publish to DuckDB and write the clerks' workbooks."""
    log = get_run_logger()
    started, night, as_of_date, run_id = new_run(as_of)
    db_path, reports_dir = Path(db), Path(reports)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    params = {"inbox": inbox, "db": db, "reports": reports, "as_of": as_of_date.isoformat(), "config": config,
              "county": county}
    with store.RunLock(db_path):
        for line in night_reports.repair(reports_dir, lambda rid: store.run_state(db_path, rid)):
            log.warning("reports: %s (left by a killed run)", line)
        store.begin_run(db_path, run_id=run_id, started_at=started, night=night, as_of=as_of_date, parameters=params)
        notify.tell_missed(db=db_path, reports=reports, config=config, until=night - timedelta(days=1), when=started)
        staging: Path | None = None
        try:
            ahead = read_ahead.take(inbox, config)
            settings = ahead.settings if ahead is not None else load_settings(Path(config) if config else None)
            ingested = read_inbox(Path(inbox), settings, ahead)
            decisions = load_decisions(db_path)
            previous = read_previous_run(db_path)  # the last succeeded run, before computing
            results = reconcile_records(ingested, settings, db_path, run_id, decisions, as_of_date, county, previous)
            staging = stage_reports(results, reports_dir, run_id, settings, night)
            publish(db_path, run_id, results, settings.store)
        except BaseException as exc:
            record_failure(db_path, run_id, exc)
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
            raise
        final = reports_dir / night.isoformat()
        night_reports.swap_into_place(staging, final, run_id)
    counts = dict(results.counts)
    create_table_artifact(
        key="nightly-counts",
        # Counts only: measure names are fixed codes, values integers; never a name or an ID.
        table=[{"measure": k, "count": int(v)} for k, v in counts.items() if isinstance(v, int)],
        description="Counts of tonight's reconciliation (no names or IDs).",
    )
    log.info("run %s finished: %s", run_id, counts)
    return {**counts, "run_id": run_id, "reports": str(final)}  # type: ignore[dict-item]
