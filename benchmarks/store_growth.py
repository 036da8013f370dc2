"""A year of nights through the store: does a night's publish stay as cheap on night 365 as
on night 30, and do the night-over-night views still answer?

    nice -n 10 .venv/bin/python benchmarks/store_growth.py [--households 3000] [--nights 365]

One county is generated and reconciled once (not timed); each night then publishes that
run's tables through ``store.begin_run`` / ``store.finish_run`` with a few rows changed
(some names in ``records``, some discrepancies gone and others back), under the default
retention (30 nights of records, three years of the rest). No Prefect. Prints the store's
size and the publish time of nights 1, 30 and 365 (each the median of the five nights
ending there, against the machine's noise), and a night-over-night query.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from countygen import SynthConfig, generate_county  # noqa: E402
from reconcile import ingest, pipeline, store  # noqa: E402
from reconcile.config import load_settings  # noqa: E402


def _size(db: Path) -> int:
    files = [db, *(db.parent / f"{db.name}.d").rglob("*")]
    return sum(p.stat().st_size for p in files if p.is_file())


def _perturbed(tables: dict, night: int) -> dict:
    """The same county a night later: ~0.1 % of record names changed, ~2 % of the
    discrepancies resolved (left out) and the rest still open."""
    out = dict(tables)
    records = []
    for frame in tables["records"]:
        changed = (pl.int_range(pl.len()) * 7919 + night * 104729) % 1000 == 0
        records.append(frame.with_columns(
            name=pl.when(changed).then(pl.col("name") + "·").otherwise(pl.col("name"))))
    out["records"] = records
    d = tables["discrepancies"]
    out["discrepancies"] = d.filter((pl.int_range(pl.len()) + night) % 50 != 0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--households", type=int, default=3000)
    ap.add_argument("--nights", type=int, default=365)
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="recon-growth-") as tmp:
        county = Path(tmp) / "county"
        t0 = time.perf_counter()
        generate_county(county, SynthConfig(households=args.households, seed=args.seed))
        settings = load_settings(county / "config" if (county / "config").is_dir() else None)
        results = pipeline.reconcile(ingest.read_inbox(county / "inbox", settings.header_aliases), settings)
        tables = pipeline.stored_tables(results)
        n_records = sum(f.height for f in tables["records"])
        print(f"county of {args.households} households generated and reconciled in "
              f"{time.perf_counter() - t0:.0f} s: {n_records} records, "
              f"{tables['discrepancies'].height} discrepancies, {tables['matches'].height} matches a night")
        db = Path(tmp) / "store" / "recon.duckdb"
        first = date(2026, 1, 1)
        publish: list[float] = []
        sizes: dict[int, int] = {}
        t_all = time.perf_counter()
        for i in range(1, args.nights + 1):
            night = first + timedelta(days=i - 1)
            run_id = f"{night:%Y%m%d}-020000-bench"
            started = datetime(night.year, night.month, night.day, 2, tzinfo=timezone(timedelta(hours=8)))
            nightly = _perturbed(tables, i)
            store.begin_run(db, run_id=run_id, started_at=started, night=night, as_of=night, parameters={})
            t = time.perf_counter()
            store.finish_run(db, run_id=run_id, finished_at=started + timedelta(minutes=5),
                             counts=results.counts, tables=nightly)
            publish.append(time.perf_counter() - t)
            if i in (1, 30, args.nights):
                sizes[i] = _size(db)
        total = time.perf_counter() - t_all

        def at(n: int) -> float:
            return statistics.median(publish[max(n - 5, 0):n])

        print(f"{args.nights} nights published in {total:.0f} s (begin + finish, {total / args.nights:.2f} s a night)")
        for n in (1, 30, args.nights):
            print(f"night {n:>3}: publish {at(n):.3f} s (median of nights {max(n - 4, 1)}-{n}), "
                  f"store {sizes[n] / 2**20:.1f} MiB")
        ratio = at(args.nights) / at(30)
        print(f"night {args.nights} / night 30 publish time: {ratio:.2f} (target at most 1.5)")
        con = store.open_readonly(db)
        try:
            t = time.perf_counter()
            rows = con.execute("SELECT night, new, resolved, still_open FROM night_over_night "
                               "ORDER BY night DESC LIMIT 3").fetchall()
            q = time.perf_counter() - t
            kept = con.execute("SELECT count(DISTINCT run_id) FROM records").fetchall()[0][0]
            runs = con.execute("SELECT count(*) FROM runs").fetchall()[0][0]
        finally:
            con.close()
        print(f"night_over_night, newest 3 nights ({q:.2f} s): {rows}")
        print(f"runs kept {runs}, nights of records kept {kept}")
        sys.exit(0 if ratio <= 1.5 else 1)


if __name__ == "__main__":
    main()
