"""Reading the inbox beside the floor's reading, on the same generated county, in one invocation.

    .venv/bin/python benchmarks/read_speed.py [--households 3000] [--dir DIR] [--repeat 2]

The floor's reading is the read part of ``benchmarks/night_floor.py``'s floor (its
``_records``: every file with calamine or polars, the header row found, ID and school
taken). Against it, ``reconcile.ingest.read_inbox`` with the packaged header aliases: the
tables, lineage, problems and cell checks a night works from, with the
county's own config when it has one. Prints both in wall and CPU
seconds (all threads and worker processes) and their ratios; with ``--repeat`` the two take
turns, so that a busy spell on a shared machine falls on both.
"""

from __future__ import annotations

import argparse
import resource
import time
from collections.abc import Callable
from pathlib import Path

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


def main() -> None:
    ap = argparse.ArgumentParser()
    add_county_args(ap)
    ap.add_argument("--repeat", type=int, default=1, help="rounds of floor, then read_inbox")
    args = ap.parse_args()
    with county_dir(args) as county:
        inbox = county / "inbox"
        config = county / "config"   # as `recon run --config` is given it (night_floor.py)
        aliases = load_settings(config if config.is_dir() else None).header_aliases

        def ours() -> int:
            got = ingest.read_inbox(inbox, aliases)
            return sum(t.frame.height for t in got.tables)

        def floor() -> int:
            return _records(Path(inbox)).height

        best: dict[str, tuple[float, float]] = {}
        for _ in range(args.repeat):
            for name, fn in (("floor read", floor), ("read_inbox", ours)):
                wall, cpu, rows = _timed(fn)
                print(f"{name}: {wall:.2f} s wall, {cpu:.2f} s cpu ({rows} rows)", flush=True)
                w, c = best.get(name, (wall, cpu))
                best[name] = (min(w, wall), min(c, cpu))
        (fw, fc), (ow, oc) = best["floor read"], best["read_inbox"]
        print(f"read_inbox {ow:.2f} s, floor read {fw:.2f} s: ratio {ow / fw:.1f}x wall; "
              f"cpu {oc:.2f} s vs {fc:.2f} s: ratio {oc / fc:.1f}x"
              + (f" (best of {args.repeat})" if args.repeat > 1 else ""))


if __name__ == "__main__":
    main()
