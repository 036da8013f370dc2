"""Where normalising's time and memory go, step by step, in ONE process: `pipeline.normalize_all`
on one inbox (a county's), each step of `normalize_source` wrapped from outside (modules
unchanged), printing its wall and CPU time and the resident memory after it.

    nice -n 10 .venv/bin/python benchmarks/normalise_phases.py INBOX [--config DIR] [--cache FILE]
        [--save OUT] [--compare OUT] [--profile HTML]

The ingested sheets are read once and pickled to ``--cache`` (reading is not measured here).
After normalising, the memory left resident is split into what the live records hold
(``estimated_size``), what Python's small-object allocator holds (its arenas, from
``sys._debugmallocstats``) and the rest (polars' allocator). ``--save`` / ``--compare``
write / check the records and row problems (``DataFrame.equals``, order included).
"""

from __future__ import annotations

import argparse
import gc
import os
import pickle
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import reconcile  # noqa: E402,F401  (before polars: it sets the allocator's options)
import polars as pl  # noqa: E402
import psutil  # noqa: E402

from reconcile import ingest, names, normalize, pipeline, places  # noqa: E402
from reconcile.config import load_settings  # noqa: E402
from _saved import compare_frames, save_frames  # noqa: E402

MB = 1024**2
PROC = psutil.Process()


def rss() -> float:
    return PROC.memory_info().rss / MB


def pymalloc_mb() -> float:
    """MB of arenas Python's small-object allocator holds (used or not)."""
    with tempfile.TemporaryFile("w+") as fh:
        fd = os.dup(2)
        try:  # _debugmallocstats writes to the C stderr
            os.dup2(fh.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(fd, 2)
            os.close(fd)
        fh.seek(0)
        text = fh.read()
    m = re.search(r"# arenas allocated current\s*=\s*([\d,]+)", text)
    size = re.search(r"(\d+) arenas \* (\d+) bytes/arena", text)
    if not m:
        return float("nan")
    per = int(size.group(2)) if size else 1 << 20
    return int(m.group(1).replace(",", "")) * per / MB


def wrap(owner: Any, attr: str, label: str, depth: int) -> None:
    fn = getattr(owner, attr)

    def timed(*a: Any, **k: Any) -> Any:
        t0, c0, r0 = time.perf_counter(), time.process_time(), rss()
        out = fn(*a, **k)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        print(f"{'  ' * depth}{label:<{40 - 2 * depth}} {wall:6.2f} s wall {cpu:6.2f} s cpu  rss {r0:7.0f} -> {rss():7.0f} MB"
              f" (pymalloc {pymalloc_mb():4.0f} MB)", flush=True)
        return out

    setattr(owner, attr, timed)


def instrument() -> None:
    for attr in ("with_schools", "_concat", "_student_no_id", "_source_specific", "_names", "_ids",
                 "with_resolved_keys", "_households", "with_place_names", "_problems"):
        if hasattr(normalize, attr):
            wrap(normalize, attr, attr, 2)
    wrap(pipeline, "normalize_source", "normalize_source", 1)
    for attr in ("resolve_places", "observed_places", "with_place_names", "compact"):
        if hasattr(pipeline, attr):
            wrap(pipeline, attr, f"pipeline.{attr}", 1)


def ingested_tables(inbox: Path, settings: Any, cache: Path | None) -> ingest.IngestResult:
    if cache and cache.exists():
        return pickle.loads(cache.read_bytes())
    got = ingest.read_inbox(inbox, settings.header_aliases)
    if cache:
        cache.write_bytes(pickle.dumps(got))
    return got


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("inbox", type=Path)
    ap.add_argument("--config", type=Path, default=None, help="default: INBOX/../config when it exists")
    ap.add_argument("--cache", type=Path, default=None, help="pickle of the ingested sheets (written once)")
    ap.add_argument("--save", type=Path, default=None)
    ap.add_argument("--compare", type=Path, default=None)
    ap.add_argument("--profile", type=Path, default=None, help="write a pyinstrument HTML profile here")
    args = ap.parse_args()
    config = args.config or args.inbox.parent / "config"
    settings = load_settings(config if config.exists() else None)
    ingested = ingested_tables(args.inbox, settings, args.cache)
    rows = {s: sum(t.frame.height for t in ingested.tables if t.source == s) for s in ("roster", "dibao", "filing")}
    gc.collect()
    r_in, py_in = rss(), pymalloc_mb()
    print(f"sheets {rows}; rss after reading {r_in:.0f} MB (pymalloc arenas {py_in:.0f} MB)", flush=True)
    instrument()
    profiler = None
    if args.profile:
        from pyinstrument import Profiler  # noqa: PLC0415  (only when asked; not a dependency)

        profiler = Profiler(interval=0.005)
        profiler.start()
    t0, c0 = time.perf_counter(), time.process_time()
    records, problems = pipeline.normalize_all(ingested, settings, release=True)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if profiler:
        profiler.stop()
        args.profile.write_text(profiler.output_html())
        print(profiler.output_text(unicode=True, color=False, show_all=False)[:12000])
    gc.collect()
    time.sleep(3)  # the allocator hands freed pages back after a second (reconcile/__init__.py)
    held = sum(f.estimated_size() for f in records.values()) / MB + problems.estimated_size() / MB
    r_out, py_out = rss(), pymalloc_mb()
    print(f"normalize_all {wall:.2f} s wall {cpu:.2f} s cpu; rss {r_out:.0f} MB: records+problems hold {held:.0f} MB, "
          f"pymalloc arenas {py_out:.0f} MB (was {py_in:.0f}); rss over reading {r_out - r_in:.0f} MB", flush=True)
    del records, problems
    gc.collect()
    time.sleep(3)
    print(f"records dropped: rss {rss():.0f} MB, pymalloc arenas {pymalloc_mb():.0f} MB", flush=True)
    if args.save or args.compare:
        again = pickle.loads(args.cache.read_bytes()) if args.cache else ingest.read_inbox(args.inbox, settings.header_aliases)
        records, problems = pipeline.normalize_all(again, settings, release=True)
        got = {**records, "problems": problems}
        if args.save:
            save_frames(args.save, got)
        if args.compare:
            sys.exit(1 if compare_frames(args.compare, got) else 0)


if __name__ == "__main__":
    main()
