"""Wall time of `recon run` end to end (Prefect start-up, ingest, match, rules, DuckDB,
workbooks, printed summary) on a large generated county.

    .venv/bin/python benchmarks/run_speed.py [--households N] [--keep DIR]

The county is generated first (not timed): xlsx rosters, xls and CSV system exports.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from countygen import SynthConfig, generate_county

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--households", type=int, default=70000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--keep", type=Path, default=None, help="generate into (or reuse) this folder")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="recon-speed-"))
    county = args.keep or tmp / "county"
    try:
        if not (county / "inbox").is_dir():
            t0 = time.perf_counter()
            summary = generate_county(county, SynthConfig(households=args.households, seed=args.seed))
            print(f"generated in {time.perf_counter() - t0:.0f} s: {summary}", flush=True)
        files = sorted(p.suffix for p in (county / "inbox").rglob("*.*"))
        print("inbox files:", {s: files.count(s) for s in set(files)})
        cmd = [str(ROOT / ".venv" / "bin" / "recon"), "run", "--inbox", str(county / "inbox"),
               "--db", str(tmp / "recon.duckdb"), "--reports", str(tmp / "reports")]
        # The county's own policy file and school-year reference date, as a bureau would run it.
        notes = json.loads((county / "truth" / "notes.json").read_text(encoding="utf-8"))
        cmd += ["--as-of", notes["reference_date"]]
        if (county / "config").is_dir():
            cmd += ["--config", str(county / "config")]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        took = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        summary = proc.stdout[proc.stdout.find("recon: run"):]
        print(summary)
        if proc.returncode:
            print(proc.stderr[-3000:], file=sys.stderr)
            sys.exit(proc.returncode)
        rows = re.search(r"roster (\d+), dibao (\d+), filing (\d+)", summary)
        print(f"recon run: {took:.1f} s wall, peak RSS {peak:.0f} MiB, "
              f"roster {rows.group(1)} rows vs {int(rows.group(2)) + int(rows.group(3))} system rows")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
