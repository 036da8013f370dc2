"""Where a big night's time and memory go, phase by phase, in ONE process: `ingest.read_inbox`
then `pipeline.reconcile` (as the nightly flow calls it: fresh database, so no decisions and
no previous run) and the row hashes, on one inbox (a prefecture's merged `inbox_all`).

    nice -n 5 .venv/bin/python benchmarks/pipeline_phases.py DIR [--inbox PATH] [--as-of DATE]
        [--save OUT] [--compare OUT] [--reports] [--limit-gb 12]

DIR is a folder `benchmarks/prefecture.py --generate-only --dir DIR` wrote (its `inbox_all`,
`config` and the truth's reference date, the as-of date `recon run` is given there).

Each phase (and the steps inside it, wrapped from outside, modules unchanged) prints its
wall time, CPU time (all threads) and the peak resident memory during it (this process and
its children, psutil every 0.1 s), and the rows and `estimated_size` of the frames it
returns. `--save OUT` writes the night's tables (discrepancies with row hashes, matches,
eligible, problems, export problems, household changes) as Parquet; `--compare OUT` checks
tonight's against them with `DataFrame.equals` (order included): a change that saves memory
must not change a single cell. `--reports` also writes every workbook (`flows.nightly.write_reports`).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import functools
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import reconcile  # noqa: E402,F401  (before polars: it sets the allocator's options)
import polars as pl  # noqa: E402
import psutil  # noqa: E402

from reconcile import ingest, match, pipeline, report, review, rules, second_process  # noqa: E402
from reconcile.config import load_settings  # noqa: E402
from _saved import compare_frames, save_frames  # noqa: E402

GB = 1024**3
TABLES = ("discrepancies", "matches", "eligible", "problems", "export_problems", "household_changes")


class Phases:
    """Nested phases; a sampler thread raises the peak of every open phase."""

    def __init__(self, limit: int) -> None:
        self.proc = psutil.Process()
        self.limit = limit
        self.open: list[dict[str, Any]] = []
        self.peak = 0
        threading.Thread(target=self._sample, daemon=True).start()

    def rss(self) -> int:
        total = 0
        for p in [self.proc, *self.proc.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total

    def _sample(self) -> None:
        while True:
            r = self.rss()
            self.peak = max(self.peak, r)
            for ph in list(self.open):
                ph["peak"] = max(ph["peak"], r)
            if r > self.limit:
                print(f"ABORTED: {r / GB:.2f} GB passed --limit-gb in {[p['name'] for p in self.open]}", flush=True)
                os._exit(3)
            time.sleep(0.1)

    def run(self, name: str, fn: Callable, *a: Any, **k: Any) -> Any:
        ph = {"name": name, "peak": self.rss()}
        start_rss = ph["peak"]
        self.open.append(ph)
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            out = fn(*a, **k)
        finally:
            self.open.remove(ph)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        depth = "  " * len(self.open)
        print(f"{depth}{name:<{44 - len(depth)}} {wall:7.1f} s wall {cpu:7.1f} s cpu  peak {ph['peak'] / GB:5.2f} GB "
              f"(from {start_rss / GB:.2f}){sizes(out)}", flush=True)
        return out

    def wrap(self, owner: Any, attr: str, name: str | None = None) -> None:
        fn = getattr(owner, attr)

        @functools.wraps(fn)
        def timed(*a: Any, **k: Any) -> Any:
            return self.run(name or attr, fn, *a, **k)

        setattr(owner, attr, timed)


def sizes(out: Any) -> str:
    """Rows and estimated size of the frames a step returned (the largest few)."""
    frames: list[tuple[str, pl.DataFrame]] = []

    def walk(label: str, v: Any, depth: int = 0) -> None:
        if isinstance(v, pl.DataFrame):
            frames.append((label, v))
        elif depth < 2 and isinstance(v, (tuple, list)):
            for i, x in enumerate(v):
                walk(f"{label}[{i}]" if label else f"[{i}]", x, depth + 1)
        elif depth < 2 and isinstance(v, dict):
            for key, x in v.items():
                walk(f"{label}.{key}" if label else str(key), x, depth + 1)
        elif isinstance(v, ingest.IngestResult):
            frames.extend((f"sheet {t.source}", t.frame) for t in v.tables)
        elif depth < 2 and dataclasses.is_dataclass(v) and not isinstance(v, type):
            for f in dataclasses.fields(v):
                walk(f"{label}.{f.name}" if label else f.name, getattr(v, f.name), depth + 1)

    walk("", out)
    if not frames:
        return ""
    total = sum(f.estimated_size() for _, f in frames)
    top = sorted(frames, key=lambda lf: -lf[1].estimated_size())[:3]
    shown = ", ".join(f"{lab or 'out'} {f.height:,}x{f.width} {f.estimated_size() / GB:.2f}" for lab, f in top)
    return f"  [{len(frames)} frames {total / GB:.2f} GB: {shown}]"


def instrument(ph: Phases) -> None:
    """Wrap the chain's steps (module attributes the callers look up at call time)."""
    for attr in ("normalize_corrected", "link_systems", "judge"):
        ph.wrap(pipeline, attr)
    ph.wrap(pipeline, "link_system", "link_system")
    for attr in ("_candidates", "score_pairs", "assign"):
        ph.wrap(match, attr)
    for attr in ("export_problems", "find_discrepancies", "notice_rows", "household_changes", "choose_county_policy",
                 "summarise"):
        ph.wrap(pipeline, attr)
    for attr in ("annotate", "eligible_students"):
        ph.wrap(review, attr)
    for attr in ("_links", "_with_places", "export_incomplete", "subsidy_mismatch", "age_stage_mismatch",
                 "missed_eligible"):
        ph.wrap(rules, attr)
    wrapped = []
    for rule in rules.RULES:
        ph.wrap(rules, rule.__name__)
        wrapped.append(getattr(rules, rule.__name__))
    rules.RULES = tuple(wrapped)
    for schema in ("RowProblemSchema", "MatchSchema", "DiscrepancySchema", "ExportProblemSchema",
                   "HouseholdChangeSchema"):
        ph.wrap(getattr(pipeline, schema), "validate", f"validate {schema}")


def tables(results: pipeline.Results) -> dict[str, pl.DataFrame]:
    return {t: getattr(results, t) for t in TABLES if getattr(results, t) is not None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir", type=Path, help="a folder benchmarks/prefecture.py --generate-only wrote")
    ap.add_argument("--inbox", type=Path, default=None, help="default DIR/inbox_all")
    ap.add_argument("--as-of", default=None, help="default: the truth's reference date")
    ap.add_argument("--save", type=Path, default=None, help="write tonight's tables (Parquet) here")
    ap.add_argument("--compare", type=Path, default=None, help="check tonight's tables against these")
    ap.add_argument("--reports", action="store_true", help="also write every workbook")
    ap.add_argument("--limit-gb", type=float, default=12.0)
    ap.add_argument("--no-aside", action="store_true",
                    help="every step in this process (the flow hands the chain second_process.start)")
    args = ap.parse_args()
    inbox = args.inbox or args.dir / "inbox_all"
    as_of = dt.date.fromisoformat(args.as_of or json.loads(
        (args.dir / "truth" / "notes.json").read_text(encoding="utf-8"))["reference_date"])
    config = args.dir / "config"
    settings = load_settings(config if config.exists() else None)
    ph = Phases(int(args.limit_gb * GB))
    instrument(ph)
    t0, c0 = time.perf_counter(), time.process_time()
    print(f"as of {as_of}; phase, wall, cpu (all threads), peak RSS during it (and at its start), frames returned")
    ingested = ph.run("read_inbox", ingest.read_inbox, inbox, settings.header_aliases)

    def progress(msg: str) -> None:
        print(f"      · {msg[:110]}", flush=True)

    results = ph.run("pipeline.reconcile", pipeline.reconcile, ingested, settings, progress=progress,
                     decisions=review.empty_decisions(), as_of=as_of, previous=None, release_input=True,
                     aside=None if args.no_aside else second_process.start)
    results = ph.run("report.with_row_hashes", lambda r: dataclasses.replace(
        r, discrepancies=report.with_row_hashes(r.discrepancies)), results)
    print(f"to the workbooks: {time.perf_counter() - t0:.1f} s wall, {time.process_time() - c0:.1f} s cpu, "
          f"peak {ph.peak / GB:.2f} GB; roster {results.counts['roster_rows']:,}, systems "
          f"{results.counts['dibao_rows'] + results.counts['filing_rows']:,}, discrepancies "
          f"{results.discrepancies.height:,}, links {results.matches.height:,}", flush=True)
    if args.reports:
        from flows.nightly import write_reports  # noqa: PLC0415  (Prefect's import only when asked)

        out = Path(tempfile.mkdtemp(prefix="recon-phases-"))
        try:
            ph.run("write_reports", write_reports, results, out, "bench", settings, as_of)
        finally:
            shutil.rmtree(out, ignore_errors=True)
    print(f"overall peak {ph.peak / GB:.2f} GB", flush=True)
    got = tables(results)
    if args.save:
        save_frames(args.save, got)
    if args.compare and compare_frames(args.compare, got):
        sys.exit(1)


if __name__ == "__main__":
    main()
