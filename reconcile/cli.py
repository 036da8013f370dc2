"""`recon`: run, serve, synth, review import. The CLI does the I/O and prints; the core stays pure."""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import os
import sys
import time
from datetime import date
from pathlib import Path

from countygen import SynthConfig, SynthError, generate_county
from countygen.province import COUNTIES, ProvinceConfig, generate_province

from .config import DEFAULT_DB, DEFAULT_REPORTS, SAMPLE_DIR, DATA_DIR, load_settings
from .errors import ReconError, redact
from .fields import SYSTEMS
from .review_import import import_workbooks

__all__ = ["main"]

SAMPLE_HOUSEHOLDS = 3000
SAMPLE_SEED = 20260901
STOP_GRACE_S = 30.0  # recon serve: how long a SIGTERM may take


def _quiet_prefect() -> None:
    """No telemetry (there is no network), and the ephemeral Prefect database inside data/."""
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_HOME", str(DATA_DIR / ".prefect"))
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


def _date(text: str) -> str:
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--inbox", type=Path, default=None,
                   help="folder with roster/, dibao/, filing/ (default: the sample county, generated if missing)")
    p.add_argument("--db", type=Path, default=DEFAULT_DB, help=f"DuckDB file (default {DEFAULT_DB.relative_to(DATA_DIR.parent)})")
    p.add_argument("--reports", type=Path, default=DEFAULT_REPORTS, help="folder for the clerks' workbooks")
    p.add_argument("--as-of", type=_date, default=None, help="reference date of the check (default today)")
    p.add_argument("--config", type=Path, default=None,
                   help="folder with settings.toml / header_aliases.toml / codes.toml / checks.toml / policy/*.toml overrides "
                        "(default for the sample county: its generated config/)")
    p.add_argument("--county", default=None,
                   help="county name or 6-digit region code whose policy applies (default: from the exports' 县 column or the IDs)")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="recon", description="Reconcile student-aid rosters with the dibao and filing-card systems.")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="reconcile an inbox now (no Prefect server needed)")
    _run_options(run)
    serve = sub.add_parser("serve", help="run every night on a schedule (needs a Prefect server)")
    _run_options(serve)
    serve.add_argument("--cron", default="0 2 * * *", help='cron schedule in Asia/Shanghai time (default "0 2 * * *")')
    serve.add_argument("--stop-grace", type=float, default=STOP_GRACE_S, metavar="SECONDS",
                       help="on SIGTERM, how long Prefect may take to cancel runs and pause the schedule before recon "
                            f"stops anyway (default {STOP_GRACE_S:.0f})")
    serve.add_argument("--province", action="store_true",
                       help="schedule the province run instead: --inbox holds one inbox per county (as for recon province)")
    serve_on = serve.add_mutually_exclusive_group()
    serve_on.add_argument("--workers", type=int, default=2, help="with --province: local Dask worker processes (default 2)")
    serve_on.add_argument("--scheduler", default=None, help="with --province: address of an existing Dask scheduler")
    province = sub.add_parser("province", help="reconcile a province inbox (one folder per county) on Dask")
    province.add_argument("--inbox", type=Path, required=True, help="folder with one inbox per county: DIR/<county>/{roster,dibao,filing}")
    province.add_argument("--db", type=Path, default=DEFAULT_DB, help="DuckDB file (one for the province)")
    province.add_argument("--reports", type=Path, default=DEFAULT_REPORTS, help="folder for the workbooks: <reports>/<night>/<county>/")
    province.add_argument("--as-of", type=_date, default=None, help="reference date of the check (default today)")
    province.add_argument("--config", type=Path, default=None, help="folder with configuration overrides (as for run)")
    where = province.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, default=2, help="worker processes of a local Dask cluster (default 2)")
    where.add_argument("--scheduler", default=None, help="address of an existing Dask scheduler (tcp://host:8786)")
    synth = sub.add_parser("synth", help="generate a synthetic county (DIR/inbox, DIR/truth), or a province with --counties")
    synth.add_argument("dir", type=Path)
    synth.add_argument("--counties", type=int, default=0,
                       help=f"write a province of this many counties (1-{len(COUNTIES)}): DIR/inbox/<county>/...")
    synth.add_argument("--away", type=float, default=ProvinceConfig.away_share,
                       help="with --counties: share of senior-secondary students schooled in a neighbouring county")
    synth.add_argument("--households", type=int, default=SAMPLE_HOUSEHOLDS)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--errors", type=float, default=1.0, help="multiplies every error rate (default 1)")
    status = sub.add_parser("status", help="the last nights' runs; a night that failed or never ran is told "
                                           "(its 运行失败说明.txt, notify.toml); exit 1 when one did")
    status.add_argument("--db", type=Path, default=DEFAULT_DB, help="DuckDB file")
    status.add_argument("--reports", type=Path, default=DEFAULT_REPORTS, help="folder for the clerks' workbooks")
    status.add_argument("--config", type=Path, default=None, help="folder with notify.toml")
    status.add_argument("--due", default="08:00",
                        help="Asia/Shanghai time by which tonight's run should have finished (default 08:00): "
                             "before it, nights through yesterday are checked; after it, through today")
    review = sub.add_parser("review", help="clerks' returned workbooks")
    rsub = review.add_subparsers(dest="review_command", required=True)
    imp = rsub.add_parser("import", help="read returned clerk workbooks into the reviews table")
    imp.add_argument("files", nargs="+", type=Path, metavar="FILE", help="returned workbooks (.xlsx or .xls)")
    imp.add_argument("--db", type=Path, default=DEFAULT_DB, help="DuckDB file the workbooks came from")
    imp.add_argument("--config", type=Path, default=None, help="folder with review.toml etc. (see README)")
    return p


def _review(args: argparse.Namespace) -> int:
    rep = import_workbooks(args.files, args.db, settings=load_settings(args.config))
    for line in rep.errors:
        print(f"  ✗ {line}", file=sys.stderr)
    for line in rep.notes:
        print(f"  ! {line}")
    print(
        f"recon review import: {rep.files} file(s), {rep.imported} decision(s) imported, "
        f"{len(rep.errors)} refused, {rep.skipped_blank} row(s) left blank, {rep.unchanged} unchanged since last night"
    )
    if rep.imported:
        print("  decisions apply from the next run on")
    return 0 if rep.ok else 1


def _sample_inbox() -> Path:
    inbox = SAMPLE_DIR / "inbox"
    if not inbox.is_dir():
        print(f"generating the sample county ({SAMPLE_HOUSEHOLDS} households) into {SAMPLE_DIR} …", flush=True)
        generate_county(SAMPLE_DIR, SynthConfig(households=SAMPLE_HOUSEHOLDS, seed=SAMPLE_SEED))
    return inbox


def _flow_params(args: argparse.Namespace) -> dict[str, str | None]:
    if args.config is not None:
        load_settings(args.config)  # fail fast, before Prefect starts, on a bad config folder
    inbox = args.inbox if args.inbox is not None else _sample_inbox()
    if args.inbox is None:
        # The sample county comes with its own policy file and describes one school year:
        # check it as of that year's reference date unless told otherwise.
        if args.config is None and (SAMPLE_DIR / "config").is_dir():
            args.config = SAMPLE_DIR / "config"
        notes = SAMPLE_DIR / "truth" / "notes.json"
        if args.as_of is None and notes.exists():
            import json

            args.as_of = json.loads(notes.read_text(encoding="utf-8")).get("reference_date")
    if not inbox.is_dir():
        raise ReconError(f"inbox folder {inbox} does not exist")
    return {
        "inbox": str(inbox.resolve()),
        "db": str(args.db.resolve()),
        "reports": str(args.reports.resolve()),
        "as_of": args.as_of,
        "config": str(args.config.resolve()) if args.config else None,
        "county": args.county,
    }


def _print_summary(counts: dict[str, object], seconds: float) -> None:
    kinds = {k[5:]: v for k, v in counts.items() if k.startswith("kind_")}
    print()
    print(f"recon: run {counts.get('run_id')} finished in {seconds:.1f} s")
    print(f"  rows read      roster {counts['roster_rows']}, dibao {counts['dibao_rows']}, filing {counts['filing_rows']}")
    print(f"  row problems   {counts['problem_rows']} (table row_problems)")
    print(f"  roster rows    matched {counts['matched']}, for review {counts['review']}, not found {counts['not_found']}")
    for system in SYSTEMS:
        if f"candidates_max_{system}" in counts:
            print(f"  candidates     {system}: {counts[f'candidates_mean_{system}']} a roster row on average, "
                  f"{counts[f'candidates_max_{system}']} at most, {counts[f'candidates_capped_{system}']} row(s) cut to the cap")
    print(f"  discrepancies  {counts['discrepancies']}" + ("".join(f"\n    {k:<18} {v}" for k, v in sorted(kinds.items()))))
    print(f"  export         {counts.get('export_problems', 0)} place(s) probably cut from an export (table export_problems)")
    print(f"  night/night    {counts.get('household_changes', 0)} household(s) entered or left a system (table household_changes)")
    print(f"  reports        {counts.get('reports')}")


def _print_reading(rel: str, i: int, n: int) -> None:
    """A file read ahead of the flow, shown as the flow's own log lines are (no Prefect logger yet)."""
    stamp = time.strftime("%H:%M:%S") + f".{int(time.time() * 1000) % 1000:03d}"
    print(f"{stamp} | INFO    | recon - reading {i}/{n}: {redact(rel)}", file=sys.stderr, flush=True)


def _run(args: argparse.Namespace) -> int:
    params = _flow_params(args)
    _quiet_prefect()
    from .prefect_server import ephemeral_server

    t0 = time.perf_counter()
    # Our own ephemeral server, killed by the kernel with this process (Prefect's own one
    # outlives a kill -9); a configured PREFECT_API_URL is used as it is. The flow (and
    # Prefect) is imported while the server starts.
    load_flow = functools.partial(importlib.import_module, "flows.nightly")

    def meanwhile() -> None:
        """Import the flow, then read the inbox for it (``flows.read_ahead``) until the server answers."""
        load_flow()
        importlib.import_module("flows.read_ahead").read_ahead(params["inbox"], params["config"],
                                                               on_file=_print_reading)

    with contextlib.nullcontext() if os.environ.get("PREFECT_API_URL") else ephemeral_server(meanwhile=meanwhile):
        counts = load_flow().nightly_reconciliation(**params)
    _print_summary(counts, time.perf_counter() - t0)
    print(f"  database       {params['db']}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    if args.province and args.inbox is None:
        raise ReconError("recon serve --province needs --inbox (one folder per county)")
    if args.province and args.scheduler is None and args.workers < 1:
        raise ReconError("--workers must be at least 1")
    params = _flow_params(args)
    _quiet_prefect()
    api = os.environ.get("PREFECT_API_URL")
    if not api:
        print(
            "recon serve needs a running Prefect server (the ephemeral mode cannot schedule).\n"
            "Start one in another terminal:\n"
            "    .venv/bin/prefect server start\n"
            "then point recon at it and serve:\n"
            "    PREFECT_API_URL=http://127.0.0.1:4200/api .venv/bin/recon serve "
            + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in params.items() if v)
            + (f" --province --workers {args.workers}" if args.province and not args.scheduler else "")
            + (f" --province --scheduler {args.scheduler}" if args.province and args.scheduler else "")
            + f' --cron "{args.cron}"',
            file=sys.stderr,
        )
        return 2
    from prefect.schedules import Cron

    from flows.nightly import TIMEZONE, nightly_reconciliation
    from flows.province import province_night
    from flows.serving import serve

    schedule = Cron(args.cron, timezone=TIMEZONE)
    if args.province:
        province = {k: v for k, v in params.items() if k != "county"}
        province.update(workers=args.workers, scheduler=args.scheduler)
        serve(province_night, name="province", schedule=schedule, parameters=province, grace_s=args.stop_grace,
              description="Nightly reconciliation of every county of a province inbox, on Dask")
    else:
        serve(nightly_reconciliation, name="nightly", schedule=schedule, parameters=params, grace_s=args.stop_grace,
              description="Nightly reconciliation of the student-aid rosters")
    return 0


def _province(args: argparse.Namespace) -> int:
    if args.config is not None:
        load_settings(args.config)  # fail fast, before Prefect starts, on a bad config folder
    if not args.inbox.is_dir():
        raise ReconError(f"inbox folder {args.inbox} does not exist")
    if args.scheduler is None and args.workers < 1:
        raise ReconError("--workers must be at least 1")
    _quiet_prefect()
    # Prefect (and Dask) load after _quiet_prefect's settings, as in _run (no cycle: flows
    # import reconcile, never this module); `recon synth` and `review import` stay light.
    from flows.province import one_prefect_server, province_reconciliation, task_runner

    t0 = time.perf_counter()
    flow = province_reconciliation.with_options(task_runner=task_runner(args.workers, args.scheduler))
    # A remote cluster's workers need a Prefect server they can reach: PREFECT_API_URL.
    with one_prefect_server() if args.scheduler is None else contextlib.nullcontext():
        counts = flow(inbox=str(args.inbox.resolve()), db=str(args.db.resolve()), reports=str(args.reports.resolve()),
                      as_of=args.as_of, config=str(args.config.resolve()) if args.config else None)
    print(f"\nrecon province: run {counts['run_id']} finished in {time.perf_counter() - t0:.1f} s, "
          f"{counts['counties']} counties")
    for county, n in counts["per_county"].items():
        s = counts["seconds"][county]
        print(f"  {county:<8} roster {n['roster_rows']}, matched {n['matched']}, review {n['review']}, "
              f"not found {n['not_found']}, items {n['discrepancies']} ({s['match']:.1f} s matching, "
              f"{s['rules']:.1f} s rules and workbooks)")
    print(f"  across counties  {counts['cross_county_seconds']:.1f} s")
    for county, error in sorted(counts["failed"].items()):
        print(f"  {county:<8} FAILED: {error}", file=sys.stderr)
    print(f"  reports        {counts['reports']}/<county>/")
    print(f"  database       {args.db.resolve()}")
    return 1 if counts["failed"] else 0


def _status(args: argparse.Namespace) -> int:
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    from . import night_reports, notify, store
    from .night_alerts import LOOKBACK_NIGHTS, missed_nights
    from .run_lock import RunLock

    now = datetime.now(ZoneInfo("Asia/Shanghai"))
    try:
        hour, minute = (int(x) for x in args.due.split(":"))
        due = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    except ValueError:
        raise ReconError(f"--due must be HH:MM, not {args.due!r}") from None
    until = now.date() if now >= due else now.date() - timedelta(days=1)
    try:
        with RunLock(args.db):  # a run in progress is not a missed night: answer later
            for line in night_reports.repair(args.reports, lambda rid: store.run_state(args.db, rid)):
                print(f"  repaired: {line}")
    except ReconError as exc:
        print(f"recon status: a run is in progress ({exc})")
        return 0
    runs = store.read_runs(args.db)
    for row in runs.tail(LOOKBACK_NIGHTS).iter_rows(named=True):
        print(f"  {row['night']}  {row['run_id']:<28} {row['status']:<10} {row['error'] or ''}")
    told = notify.tell_missed(db=args.db, reports=str(args.reports),
                              config=str(args.config) if args.config else None, until=until, when=now)
    for night in told:
        print(f"  ! {night}: no succeeded run; wrote {args.reports / night.isoformat() / night_reports.FAILURE_NOTE}")
    missed = [n for n, _, _ in missed_nights(runs, until)]
    print(f"recon status: {len(missed)} night(s) through {until} without a succeeded run")
    return 1 if missed else 0


def _synth(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    if args.counties:
        province = generate_province(args.dir, ProvinceConfig(counties=args.counties, households=args.households,
                                                              seed=args.seed, errors=args.errors, away_share=args.away))
        print(f"generated {args.dir} in {time.perf_counter() - t0:.1f} s: {province}")
        return 0
    summary = generate_county(args.dir, SynthConfig(households=args.households, seed=args.seed, errors=args.errors))
    print(f"generated {args.dir} in {time.perf_counter() - t0:.1f} s: {summary}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return {"run": _run, "serve": _serve, "synth": _synth, "review": _review,
                "status": _status, "province": _province}[args.command](args)
    except (ReconError, SynthError) as exc:
        print(f"recon: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
