"""The nightly reconciliation as a Prefect flow: it orchestrates, the core computes.

Parameters are paths and dates only; task results are never persisted (they hold
minors' IDs), and no task caches on its inputs.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import uuid
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from reconcile import ingest, pipeline, report, store
from reconcile.config import Settings, load_settings
from reconcile.errors import ReconError, redact

__all__ = ["nightly_reconciliation", "TIMEZONE"]

TIMEZONE = "Asia/Shanghai"
QUIET = dict(cache_policy=NO_CACHE, persist_result=False)
_QUOTED = re.compile(r"'[^'\n]{0,200}'|\"[^\"\n]{0,200}\"|「[^」]{0,200}」")


class StepError(ReconError):
    """A task's failure as Prefect records it: type and message with cell values removed."""


@contextlib.contextmanager
def _no_data_in_errors(step: str):
    """Exceptions leaving a task are what Prefect logs and stores in its database (state
    messages, tracebacks). Library errors quote cell values (an ID, a name): re-raise them
    with quoted text and ID-shaped numbers masked, and without the original chained (whose
    message the traceback would print)."""
    try:
        yield
    except ReconError:
        raise
    except Exception as exc:  # noqa: BLE001
        text = redact(_QUOTED.sub("'…'", str(exc).strip().splitlines()[0] if str(exc).strip() else ""))
        raise StepError(f"{step}: {type(exc).__name__}: {text[:300]}") from None


@task(retries=2, retry_delay_seconds=5, **QUIET)
def read_inbox(inbox: Path, settings: Settings) -> ingest.IngestResult:
    log = get_run_logger()
    if not inbox.is_dir():
        raise FileNotFoundError(f"inbox folder {inbox} does not exist")

    def on_file(rel: str, i: int, n: int) -> None:
        log.info("reading %d/%d: %s", i, n, rel)

    with _no_data_in_errors("reading the inbox"):
        result = ingest.read_inbox(inbox, settings.header_aliases, on_file=on_file)
    log.info("read %d files, %d sheets, %d file/row problems", result.files_read, len(result.tables), result.problems.height)
    # Whole-file problems name the file and the reason (never a cell value); row problems
    # are counted here and listed in the row_problems table.
    for p in result.problems.filter(pl.col("row").is_null()).iter_rows(named=True):
        reason = p["value"] if p["problem"] in _FILE_REASONS else ""
        log.warning("%s%s: %s%s", p["file"], f" [{p['sheet']}]" if p["sheet"] else "", p["problem"],
                    f" ({redact(reason)})" if reason else "")
    by_problem = result.problems.filter(pl.col("row").is_not_null()).group_by("problem").len().sort("problem")
    for problem, n in by_problem.iter_rows():
        log.info("row problems %s: %d (see table row_problems)", problem, n)
    return result


@task(**QUIET)
def reconcile_records(ingested: ingest.IngestResult, settings: Settings) -> pipeline.Results:
    log = get_run_logger()
    with _no_data_in_errors("reconciling"):
        return pipeline.reconcile(ingested, settings, progress=log.info)


@task(retries=1, retry_delay_seconds=2, **QUIET)
def stage_reports(results: pipeline.Results, reports: Path, run_id: str) -> Path:
    """Workbooks go to a staging folder first, so a failed run leaves last night's intact."""
    staging = reports / f".staging-{run_id}"
    staging.mkdir(parents=True, exist_ok=True)
    with _no_data_in_errors("writing workbooks"):
        paths = report.write_school_workbooks(results.discrepancies, staging)
    get_run_logger().info("wrote %d school workbooks", len(paths))
    return staging


@task(retries=2, retry_delay_seconds=5, **QUIET)
def publish(db: Path, run_id: str, results: pipeline.Results) -> None:
    tables = {
        "records": pipeline.records_table(results),
        "row_problems": results.problems,
        "matches": results.matches,
        "discrepancies": results.discrepancies,
    }
    with _no_data_in_errors("publishing"):
        store.finish_run(db, run_id=run_id, finished_at=_now(), counts=results.counts, tables=tables)


_FILE_REASONS = {"unreadable_file", "unreadable_sheet", "encoding_undetected", "no_data_rows",
                 "unsupported_file"}


def _remove_leftovers(reports: Path) -> None:
    """Staging/old report folders a killed run left behind (called under the run lock)."""
    if reports.is_dir():
        for p in reports.iterdir():
            if p.is_dir() and p.name.startswith((".staging-", ".old-")):
                shutil.rmtree(p, ignore_errors=True)


def _now() -> datetime:
    return datetime.now(ZoneInfo(TIMEZONE))


def _swap_reports(staging: Path, final: Path) -> None:
    old = final.with_name(f".old-{final.name}-{uuid.uuid4().hex[:6]}")
    if final.exists():
        final.rename(old)
    staging.rename(final)
    shutil.rmtree(old, ignore_errors=True)


@flow(name="nightly-reconciliation", persist_result=False, log_prints=False)
def nightly_reconciliation(
    inbox: str, db: str, reports: str, as_of: str | None = None, config: str | None = None
) -> dict[str, int]:
    """Reconcile one inbox; publish to DuckDB and write the clerks' workbooks."""
    log = get_run_logger()
    started = _now()
    night = started.date()
    as_of_date = date.fromisoformat(as_of) if as_of else night
    run_id = f"{started:%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:8]}"
    db_path, reports_dir = Path(db), Path(reports)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    params = {"inbox": inbox, "db": db, "reports": reports, "as_of": as_of_date.isoformat(), "config": config}
    with store.RunLock(db_path):
        _remove_leftovers(reports_dir)
        store.begin_run(db_path, run_id=run_id, started_at=started, night=night, as_of=as_of_date, parameters=params)
        staging: Path | None = None
        try:
            settings = load_settings(Path(config) if config else None)
            ingested = read_inbox(Path(inbox), settings)
            results = reconcile_records(ingested, settings)
            staging = stage_reports(results, reports_dir, run_id)
            publish(db_path, run_id, results)
        except BaseException as exc:
            store.fail_run(db_path, run_id=run_id, finished_at=_now(), error=redact(f"{type(exc).__name__}: {exc}"))
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
            raise
        final = reports_dir / night.isoformat()
        _swap_reports(staging, final)
    counts = dict(results.counts)
    create_table_artifact(
        key="nightly-counts",
        table=[{"measure": k, "count": v} for k, v in counts.items()],
        description="Counts of tonight's reconciliation (no names or IDs).",
    )
    log.info("run %s finished: %s", run_id, counts)
    return {**counts, "run_id": run_id, "reports": str(final)}  # type: ignore[dict-item]
