"""Reading the inbox beside the floor's reading, on the same generated county, in one invocation.

    .venv/bin/python benchmarks/read_speed.py [--households 3000] [--dir DIR] [--repeat 2]
        [--against CHECKOUT] [--save FILE | --compare FILE]

The floor's reading is the read part of ``benchmarks/night_floor.py``'s floor (its
``_records``: every file with calamine or polars, the header row found, ID and school
taken). Against it, ``reconcile.ingest.read_inbox`` with the packaged header aliases: the
tables, lineage, problems and cell checks a night works from, with the
county's own config when it has one. Prints both in wall and CPU
seconds (all threads and worker processes) and their ratios; with ``--repeat`` the two take
turns, so that a busy spell on a shared machine falls on both.

``--against CHECKOUT`` also times another checkout's ``read_inbox`` (its own ``.venv``, its
``reconcile`` first on the path) in each round, for old beside new in one invocation.
``--save FILE`` keeps what ``read_inbox`` returned (every table's frame, columns, header
row, counts, title; the problems; files read) and ``--compare FILE`` checks that this
checkout returns the same (exit status 1 and the differences if not): save with one
checkout (``PYTHONPATH=CHECKOUT``), compare with another.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import polars as pl
from _truth import add_county_args, county_dir
from night_floor import _records

from reconcile import ingest
from reconcile.config import load_settings


def _cpu() -> float:
    """CPU seconds of this process (all threads) and of its reaped children (worker processes)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _timed(fn: Callable[[], int]) -> tuple[float, float, int]:
    t0, c0 = time.perf_counter(), _cpu()
    rows = fn()
    return time.perf_counter() - t0, _cpu() - c0, rows


def _dump(got: ingest.IngestResult) -> dict:
    """What read_inbox returned, as plain values and frames (comparable, picklable)."""
    tables = [{"source": t.source, "file": t.file, "sheet": t.sheet, "columns": t.columns,
               "header_row": t.header_row, "dropped_rows": t.dropped_rows,
               "dropped_totals": t.dropped_totals, "title": t.title, "frame": t.frame}
              for t in got.tables]
    return {"tables": tables, "problems": got.problems, "files_read": got.files_read}


def _differences(old: dict, new: dict) -> list[str]:
    out = []
    if old["files_read"] != new["files_read"]:
        out.append(f"files_read {old['files_read']} vs {new['files_read']}")
    if not _same(old["problems"], new["problems"]):
        out.append(f"problems differ ({old['problems'].height} vs {new['problems'].height} rows)")
    if len(old["tables"]) != len(new["tables"]):
        out.append(f"{len(old['tables'])} vs {len(new['tables'])} tables")
    for a, b in zip(old["tables"], new["tables"]):
        where = f"{a['file']}[{a['sheet']}]"
        for key in a:
            same = _same(a[key], b[key]) if key == "frame" else a[key] == b[key]
            if not same:
                out.append(f"{where}: {key} differs")
    return out


def _same(a: pl.DataFrame, b: pl.DataFrame) -> bool:
    return a.schema == b.schema and a.equals(b, null_equal=True)


def _time_other(checkout: Path, county: Path) -> tuple[float, float, int]:
    """Another checkout's read_inbox, timed inside its own interpreter (imports not counted)."""
    env = {**os.environ, "PYTHONPATH": str(checkout), "PYTHONDONTWRITEBYTECODE": "1"}
    out = subprocess.run([str(checkout / ".venv" / "bin" / "python"), __file__, "--dir", str(county),
                          "--time-only"], env=env, cwd=checkout, check=True, capture_output=True, text=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    return got["wall"], got["cpu"], got["rows"]


def main() -> None:
    ap = argparse.ArgumentParser()
    add_county_args(ap)
    ap.add_argument("--repeat", type=int, default=1, help="rounds of floor, then read_inbox")
    ap.add_argument("--against", type=Path, help="another checkout whose read_inbox is timed too")
    ap.add_argument("--save", type=Path, help="keep read_inbox's result in this file")
    ap.add_argument("--compare", type=Path, help="check read_inbox's result against a saved one")
    ap.add_argument("--time-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    with county_dir(args) as county:
        inbox = county / "inbox"
        config = county / "config"   # as `recon run --config` is given it (night_floor.py)
        aliases = load_settings(config if config.is_dir() else None).header_aliases
        if args.time_only:
            wall, cpu, rows = _timed(lambda: sum(t.frame.height for t in ingest.read_inbox(inbox, aliases).tables))
            print(json.dumps({"wall": wall, "cpu": cpu, "rows": rows}))
            return
        if args.save or args.compare:
            dump = _dump(ingest.read_inbox(inbox, aliases))
            if args.save:
                args.save.write_bytes(pickle.dumps(dump))
                print(f"saved {len(dump['tables'])} tables, {dump['problems'].height} problems "
                      f"from {Path(ingest.__file__).parent.parent}")
            if args.compare:
                diffs = _differences(pickle.loads(args.compare.read_bytes()), dump)
                print("\n".join(diffs[:40]) if diffs else
                      f"identical: {len(dump['tables'])} tables, {dump['problems'].height} problems")
                sys.exit(1 if diffs else 0)
            return

        def ours() -> int:
            got = ingest.read_inbox(inbox, aliases)
            return sum(t.frame.height for t in got.tables)

        def floor() -> int:
            return _records(Path(inbox)).height

        runs: list[tuple[str, Callable[[], tuple[float, float, int]]]] = [
            ("floor read", lambda: _timed(floor)), ("read_inbox", lambda: _timed(ours))]
        if args.against:
            runs.append((f"read_inbox of {args.against}", lambda: _time_other(args.against.resolve(), county)))
        best: dict[str, tuple[float, float]] = {}
        for _ in range(args.repeat):
            for name, fn in runs:
                wall, cpu, rows = fn()
                print(f"{name}: {wall:.2f} s wall, {cpu:.2f} s cpu ({rows} rows)", flush=True)
                w, c = best.get(name, (wall, cpu))
                best[name] = (min(w, wall), min(c, cpu))
        (fw, fc), (ow, oc) = best["floor read"], best["read_inbox"]
        print(f"read_inbox {ow:.2f} s, floor read {fw:.2f} s: ratio {ow / fw:.1f}x wall; "
              f"cpu {oc:.2f} s vs {fc:.2f} s: ratio {oc / fc:.1f}x"
              + (f" (best of {args.repeat})" if args.repeat > 1 else ""))
        if args.against:
            aw, ac = best[runs[-1][0]]
            print(f"{args.against}: {aw:.2f} s wall, ratio {aw / fw:.1f}x; cpu {ac:.2f} s, ratio {ac / fc:.1f}x")


if __name__ == "__main__":
    main()
