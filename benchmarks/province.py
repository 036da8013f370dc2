"""A province on Dask: `recon province` with 1 and 2 local workers on one generated province.

    .venv/bin/python benchmarks/province.py [--counties 8] [--households 5000] [--workers 1,2] [--dir DIR]

Prints the wall time of each run (as a user runs it: Prefect and the Dask cluster start-up
included), each county's seconds (own matching on a worker; rules and workbooks on a
worker), the cross-county look-up's seconds, and precision / recall of the matched links
against the generator's truth, overall and for the students schooled in another county
(targets as for a county: precision >= 0.999, recall >= 0.995; schooled away: >= 0.999 and
>= 0.99). The province is generated first (not timed) unless DIR already holds one.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

from _truth import evaluate, load_truth
from countygen.province import ProvinceConfig, generate_province
from reconcile import store

ROOT = Path(__file__).resolve().parent.parent
ROSTER_KEY = ["roster_file", "roster_sheet", "roster_row"]


def _quality(db: Path, truth_dir: Path) -> tuple[dict, dict]:
    con = store.open_readonly(db)
    try:
        links = pl.from_arrow(con.sql("select * from matches").to_arrow_table())
    finally:
        con.close()
    truth = load_truth(truth_dir)
    away = pl.read_csv(truth_dir / "away.csv", schema_overrides={"sheet": pl.String, "row": pl.Int64,
                                                                 "errors": pl.String}).with_columns(
        pl.col("sheet").fill_null(""), pl.col("errors").fill_null(""))
    away_keys = away.select(pl.col("file").alias("roster_file"), pl.col("sheet").alias("roster_sheet"),
                            pl.col("row").alias("roster_row"))
    away_truth = pl.concat([away.select(truth.columns), truth.filter(pl.col("source") != "roster")])
    return (evaluate(links, truth, ["matched"]),
            evaluate(links.join(away_keys, on=ROSTER_KEY, how="semi"), away_truth, ["matched"]))


def _runs(db: Path) -> dict:
    con = store.open_readonly(db)
    try:
        [(counties,)] = con.execute("select counties from runs where status = 'succeeded'").fetchall()
    finally:
        con.close()
    return json.loads(counties)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--counties", type=int, default=8)
    ap.add_argument("--households", type=int, default=5000, help="households per county")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--away", type=float, default=ProvinceConfig.away_share)
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts to run with")
    ap.add_argument("--dir", type=Path, default=None, help="generate into (or reuse) this folder")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="recon-province-"))
    prov = args.dir or tmp / "province"
    try:
        if not (prov / "truth" / "notes.json").exists():
            t0 = time.perf_counter()
            summary = generate_province(prov, ProvinceConfig(counties=args.counties, households=args.households,
                                                             seed=args.seed, away_share=args.away))
            print(f"generated in {time.perf_counter() - t0:.0f} s: {summary}", flush=True)
        notes = json.loads((prov / "truth" / "notes.json").read_text(encoding="utf-8"))
        for workers in [int(w) for w in args.workers.split(",")]:
            out = tmp / f"w{workers}"
            cmd = [str(ROOT / ".venv" / "bin" / "recon"), "province", "--inbox", str(prov / "inbox"),
                   "--db", str(out / "recon.duckdb"), "--reports", str(out / "reports"),
                   "--as-of", notes["reference_date"], "--config", str(prov / "config"), "--workers", str(workers)]
            (out / ".prefect").mkdir(parents=True)
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, env={**_env(), "PREFECT_HOME": str(out / ".prefect")})
            took = time.perf_counter() - t0
            if proc.returncode:
                print(proc.stderr[-3000:], file=sys.stderr)
                sys.exit(proc.returncode)
            counties = _runs(out / "recon.duckdb")
            overall, away = _quality(out / "recon.duckdb", prov / "truth")
            roster = sum(c["counts"]["roster_rows"] for c in counties.values())
            system = sum(c["counts"]["dibao_rows"] + c["counts"]["filing_rows"] for c in counties.values())
            print(f"\n{workers} worker(s): {took:.1f} s wall for {len(counties)} counties, "
                  f"{roster} roster rows vs {system} system rows")
            for county, c in sorted(counties.items()):
                s = c.get("seconds", {})
                print(f"  {county:<6} roster {c['counts']['roster_rows']:>6}  match {s.get('match', 0):7.1f} s"
                      f"  rules+workbooks {s.get('rules', 0):7.1f} s")
            print(f"  overall   precision {overall['precision']:.4f}  recall {overall['recall']:.4f}  "
                  f"({overall['correct']} of {overall['true_links']} true links, {overall['links']} links)")
            print(f"  schooled away ({notes['away_rows']} roster rows)  precision {away['precision']:.4f}  "
                  f"recall {away['recall']:.4f}  ({away['correct']} of {away['true_links']} true links)")
            print("  " + "\n  ".join(proc.stdout[proc.stdout.find("recon province:"):].splitlines()))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _env() -> dict[str, str]:
    import os

    return {**os.environ, "DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


if __name__ == "__main__":
    main()
