"""A province in one night: counties are the shards, on Dask through prefect-dask.

Each county is read, normalised and matched on a worker; the cross-county look-up runs
once over every county's staged records; each county's rules and workbooks run on a worker
again; the flow publishes every county that succeeded into one DuckDB file. Tasks pass
paths (Parquet files in a staging folder beside the database), never frames.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import polars as pl
from prefect import flow, get_run_logger, task, unmapped
from prefect.artifacts import create_table_artifact
from prefect_dask import DaskTaskRunner

from reconcile import crosscounty, ingest, night_reports, pipeline, report, review, staging, store
from reconcile.completeness import Previous
from reconcile.config import load_settings
from reconcile.errors import redact
from flows.nightly import QUIET, new_run, no_data_in_errors, now, record_failure, write_reports

__all__ = ["province_reconciliation", "province_night", "task_runner", "one_prefect_server"]


@contextlib.contextmanager
def one_prefect_server() -> Iterator[None]:
    """Local workers report to one Prefect API: PREFECT_API_URL's, else a temporary server
    started here for the run. Without it every worker process starts an ephemeral server
    of its own (about 10 s each; on a loaded machine they time out and the county fails),
    and the nanny's kill at shutdown leaves them running."""
    if os.environ.get("PREFECT_API_URL"):
        yield
        return
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, temporary_settings

    server = SubprocessASGIServer()
    server.start(timeout=int(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")))
    os.environ["PREFECT_API_URL"] = server.api_url  # inherited by the worker processes
    try:
        with temporary_settings({PREFECT_API_URL: server.api_url}):
            yield
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        with contextlib.suppress(Exception):  # the run's last log lines, before the server goes
            from prefect.logging.handlers import APILogHandler

            APILogHandler.flush()
        server.stop()


def task_runner(workers: int = 2, scheduler: str | None = None) -> DaskTaskRunner:
    """An existing Dask scheduler, or a local cluster of ``workers`` single-threaded processes."""
    if scheduler:
        return DaskTaskRunner(address=scheduler)
    return DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "dashboard_address": None})


@task(retries=1, retry_delay_seconds=5, **QUIET)
def match_county(county: str, inbox: str, folder: str, config: str | None) -> float:
    """One county read, normalised and matched against its own exports (on a worker); its seconds."""
    t0 = time.perf_counter()
    settings = load_settings(Path(config) if config else None)
    if not (Path(inbox) / county).is_dir():
        raise FileNotFoundError(f"{county}: inbox folder {Path(inbox) / county} cannot be read")
    with no_data_in_errors(f"{county}: matching"):
        decisions = staging.read_frame(Path(folder).parent / "reviews.parquet")
        ingested = ingest.read_inbox(Path(inbox) / county, settings.header_aliases)
        # clerks' corrected IDs go into the sheets first (lineage still the county's own, as in the sheets)
        records, problems, counts = pipeline.normalize_corrected(ingested, settings, decisions, release=True)
        records = {s: crosscounty.in_province(f, county) for s, f in records.items()}
        found = pipeline.link_systems(records, settings)
        matches, linked = review.apply_links(found.matches, records, decisions)
        staging.write_shard(Path(folder), records, crosscounty.in_province(problems, county), matches,
                            found.model_parameters)
        clerks = {**counts, **linked} if decisions is not None and decisions.height else {}
        # the candidates per roster row, as a county run reports them
        staging.write_counts(Path(folder), {**clerks, **pipeline.blocking_counts(found.blocking)})
    get_run_logger().info("%s: %d roster rows matched against its own exports", county, records["roster"].height)
    return time.perf_counter() - t0


@task(**QUIET)
def look_across(folders: dict[str, str], config: str | None, as_of: date) -> float:
    """Students not found at home, looked for in the other counties' exports; its seconds."""
    t0 = time.perf_counter()
    settings = load_settings(Path(config) if config else None)
    with no_data_in_errors("cross-county look-up"):
        shards = {c: staging.read_shard(Path(f), c) for c, f in folders.items()}
        decisions = staging.read_frame(Path(next(iter(folders.values()))).parent / "reviews.parquet")
        lent = crosscounty.look_across(shards, settings, as_of, decisions)
        for county, borrowed in lent.items():
            staging.write_borrowed(Path(folders[county]), borrowed)
            if borrowed.clerks:  # the clerks' pairs applied across county lines count as at home
                counts = staging.read_counts(Path(folders[county]))
                staging.write_counts(Path(folders[county]),
                                     {**counts, **{k: counts.get(k, 0) + v for k, v in borrowed.clerks.items()}})
    get_run_logger().info("cross-county links: %s", {c: b.links.height for c, b in lent.items()})
    return time.perf_counter() - t0


# A county's clerk items are numbered from its place in the run times this (``item_ref``
# is the workbook's 问题编号: one number for one item of the province's run).
ITEM_REFS_PER_COUNTY = 1_000_000


@task(**QUIET)
def judge_county(county: str, folder: str, reports: str, run_id: str, config: str | None, as_of: date,
                 night: date | None = None, first_ref: int = 0) -> dict:
    """One county's rules, clerk items and workbooks (on a worker): its counts and seconds.
    ``first_ref``: its items' numbers start after this one, so that `recon review import`
    finds each returned row's item among every county's."""
    t0 = time.perf_counter()
    settings = load_settings(Path(config) if config else None)
    path = Path(folder)
    with no_data_in_errors(f"{county}: rules"):
        shard = staging.read_shard(path, county)
        results = pipeline.judge(
            dict(shard.records), staging.read_problems(path), shard.matches, settings,
            decisions=staging.read_frame(path.parent / "reviews.parquet"), as_of=as_of, county=county,
            previous=staging.read_previous(path), borrowed=staging.read_borrowed(path, county),
            model_parameters=staging.read_model_parameters(path), counts=staging.read_counts(path))
        items = results.discrepancies.with_columns(pl.col("item_ref") + first_ref)
        results = dataclasses.replace(results, discrepancies=report.with_row_hashes(items))
        staging.write_results(path, results)
    write_reports(results, Path(reports), run_id, settings, night)
    return {"counts": results.counts, "seconds": time.perf_counter() - t0}


def _settle(futures: dict, log) -> tuple[dict, dict[str, str]]:
    """Each county's result, or why it failed (a county's failure is not the province's)."""
    done, failed = {}, {}
    for county, future in futures.items():
        try:
            done[county] = future.result()
        except Exception as exc:  # noqa: BLE001 - reported per county, the others go on
            failed[county] = redact(f"{type(exc).__name__}: {exc}")[:500]
            log.error("county %s failed: %s", county, failed[county])
    return done, failed


@flow(name="province-reconciliation", persist_result=False, log_prints=False)
def province_reconciliation(inbox: str, db: str, reports: str, as_of: str | None = None,
                            config: str | None = None) -> dict:
    """Reconcile every county of a province inbox; publish to one DuckDB; workbooks per county."""
    log = get_run_logger()
    started, night, as_of_date, run_id = new_run(as_of)
    db_path, reports_dir = Path(db), Path(reports)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    work = db_path.parent / f".province-{run_id}"
    params = {"inbox": inbox, "db": db, "reports": reports, "as_of": as_of_date.isoformat(), "config": config}
    counties = staging.county_inboxes(Path(inbox))
    with store.RunLock(db_path):
        for line in night_reports.repair(reports_dir, lambda rid: store.run_state(db_path, rid)):
            log.warning("reports: %s (left by a killed run)", line)
        for stale in db_path.parent.glob(".province-*"):  # a killed run's staging (it holds IDs)
            shutil.rmtree(stale, ignore_errors=True)
        store.begin_run(db_path, run_id=run_id, started_at=started, night=night, as_of=as_of_date, parameters=params)
        try:
            staging.write_frame(store.read_reviews(db_path), work / "reviews.parquet")
            previous = store.read_previous(db_path)
            for c in counties:
                staging.write_previous(work / c, None if previous is None else Previous(*previous), c)
            folders = {c: str(work / c) for c in counties}
            matched, failed = _settle({c: match_county.submit(c, inbox, folders[c], config) for c in counties}, log)
            across = look_across.submit({c: folders[c] for c in matched}, config, as_of_date).result() if matched else 0.0
            out = night_reports.staging_dir(reports_dir, run_id)
            judged, more = _settle({c: judge_county.submit(c, folders[c], str(out / c), run_id, config, as_of_date, night,
                                                           counties.index(c) * ITEM_REFS_PER_COUNTY)
                                    for c in sorted(matched)}, log)
            failed.update(more)
            if not judged:
                raise RuntimeError(f"every county failed: {failed}")
            tables: dict[str, list] = {}
            for c in sorted(judged):
                county_tables, _ = staging.read_results(Path(folders[c]), c)
                for name, frames in county_tables.items():
                    tables.setdefault(name, []).extend(frames)
            seconds = {c: {"match": round(matched[c], 2), "rules": round(judged[c]["seconds"], 2)} for c in judged}
            per_county = {c: judged[c]["counts"] for c in sorted(judged)}
            totals = {k: sum(int(n.get(k, 0)) for n in per_county.values())
                      for k in sorted({k for n in per_county.values() for k in n})}
            totals.update(counties=len(counties), counties_failed=len(failed))
            status = {c: {"status": "succeeded", "counts": per_county[c], "seconds": seconds[c]} for c in judged}
            status.update({c: {"status": "failed", "error": e} for c, e in failed.items()})
            error = "；".join(f"{c} failed: {e}" for c, e in sorted(failed.items())) or None
            store.finish_run(db_path, run_id=run_id, finished_at=now(), counts=totals, tables=tables,
                             retention=load_settings(Path(config) if config else None).store, counties=status,
                             error=error)
        except BaseException as exc:
            record_failure(db_path, run_id, exc)
            shutil.rmtree(night_reports.staging_dir(reports_dir, run_id), ignore_errors=True)
            raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
        final = reports_dir / night.isoformat()
        final.mkdir(parents=True, exist_ok=True)
        for c in sorted(judged):
            night_reports.swap_into_place(out / c, final / c, run_id)
        shutil.rmtree(out, ignore_errors=True)
    create_table_artifact(key="province-counts", description="Counts per county (no names or IDs).",
                          table=[{"county": c, "status": s["status"], **{k: v for k, v in s.get("counts", {}).items()
                                                                         if k in store.COUNT_COLUMNS}}
                                 for c, s in sorted(status.items())])
    log.info("province run %s finished: %d counties, %d failed", run_id, len(counties), len(failed))
    return {**totals, "run_id": run_id, "reports": str(final), "failed": failed, "per_county": per_county,
            "seconds": seconds, "cross_county_seconds": round(across, 2)}


@flow(name="province-night", persist_result=False, log_prints=False)
def province_night(inbox: str, db: str, reports: str, as_of: str | None = None, config: str | None = None,
                   workers: int = 2, scheduler: str | None = None) -> dict:
    """The province run as ``recon serve --province`` schedules it. A served deployment
    loads its flow from this module, so the Dask cluster (``workers`` local processes or an
    existing ``scheduler``) is a parameter here and the province run a subflow on it."""
    runner = task_runner(workers, scheduler)
    return province_reconciliation.with_options(task_runner=runner)(inbox=inbox, db=db, reports=reports, as_of=as_of,
                                                                    config=config)
