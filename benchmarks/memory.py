"""Peak memory and time of the pipeline at county-wide scale: 1,000,000 roster rows against
3,000,000 system rows (dibao + filing), issue 6's target being a peak under 6 GB.

    .venv/bin/python benchmarks/memory.py [--roster 1000000] [--system 3000000]
        [--households 20000] [--store] [--limit-gb 16]

How the input is built (no files at this scale; reading them is ingest's business and is
bounded per file): a synthetic county of ``--households`` households is generated and read
with ``ingest.read_inbox`` once; its sheet tables are then replicated, copy ``k`` getting

* every ID's region code raised by ``1000*k`` (the check character recomputed when the
  original was valid, so damaged IDs stay damaged in the same way) — in ``id_number``,
  ``head_id`` and ``G`` student numbers,
* every given-name character shifted by ``k`` places in the pool of given-name characters
  of the base county (surnames kept; applied to the string, so the same name in roster and
  system stays the same, and a typo stays a typo),
* ``#k`` appended to town, village, household and person numbers, and the file path put
  under ``c{k}/`` (lineage stays unique),

until the roster reaches ``--roster`` rows and the systems ``--system`` rows (the last copy
is cut). Roster copies beyond the systems' copies have no counterpart (not found). Copies
are independent counties to the matcher apart from shared surnames and birth dates, which
is how a real province-wide run looks.

Memory is the process's resident set (``/proc/self/status`` VmRSS) sampled every 50 ms by a
thread, reported per step and overall, plus ``ru_maxrss``; a watchdog stops the run when
it passes ``--limit-gb`` (so the benchmark cannot take the machine down) and says in which
step.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from datetime import date, datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import reconcile  # noqa: E402,F401  (before polars: it sets the allocator's options)
import polars as pl  # noqa: E402

from reconcile import ingest, pipeline, store  # noqa: E402
from reconcile.config import load_settings  # noqa: E402
from reconcile.idcard import check_char  # noqa: E402
from countygen import SynthConfig, generate_county  # noqa: E402

GB = 1024**3


class Meter:
    """Samples RSS; keeps the peak per step; kills the run past the limit."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit = limit_bytes
        self.step = "start"
        self.peaks: dict[str, int] = {}
        self.times: dict[str, float] = {}
        self._t = time.perf_counter()
        self._stop = False
        threading.Thread(target=self._run, daemon=True).start()

    @staticmethod
    def rss() -> int:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def _run(self) -> None:
        while not self._stop:
            r = self.rss()
            if r > self.peaks.get(self.step, 0):
                self.peaks[self.step] = r
            if r > self.limit:
                print(f"\nABORTED: RSS {r / GB:.2f} GB passed the {self.limit / GB:.0f} GB limit "
                      f"in step '{self.step}'", flush=True)
                self.report()
                os._exit(3)
            time.sleep(0.05)

    def set(self, step: str) -> None:
        now = time.perf_counter()
        self.times[self.step] = self.times.get(self.step, 0.0) + now - self._t
        self._t = now
        self.step = step
        print(f"[{time.strftime('%H:%M:%S')}] {step}  (RSS now {self.rss() / GB:.2f} GB)", flush=True)

    def report(self) -> None:
        self.set("done")
        print("\nstep                               peak RSS     time")
        for step, t in self.times.items():
            if step in ("done",):
                continue
            print(f"  {step:<32} {self.peaks.get(step, 0) / GB:6.2f} GB {t:8.1f} s")
        print(f"overall peak RSS {max(self.peaks.values()) / GB:.2f} GB "
              f"(ru_maxrss {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2:.2f} GB), "
              f"total {sum(self.times.values()):.1f} s", flush=True)


# --------------------------------------------------------------------------- replication


def _id_map(values: list[str], k: int) -> dict[str, str]:
    out = {}
    for v in values:
        if len(v) >= 15 and v[:6].isascii() and v[:6].isdigit():
            region = f"{(int(v[:6]) + 1000 * k) % 1_000_000:06d}"
            new = region + v[6:]
            if len(v) == 18 and v[:17].isascii() and v[:17].isdigit() and check_char(v[:17]) == v[17].upper():
                new = new[:17] + check_char(new[:17])
            out[v] = new
        else:
            out[v] = v
    return out


def _name_map(values: list[str], pool: list[str], k: int) -> dict[str, str]:
    index = {c: i for i, c in enumerate(pool)}
    n = len(pool)
    return {v: v[:1] + "".join(pool[(index[c] + k) % n] if c in index else c for c in v[1:])
            for v in values}


def _perturb(frame: pl.DataFrame, k: int, pool: list[str]) -> pl.DataFrame:
    if k == 0:
        return frame
    cols = []
    for c in ("id_number", "head_id"):
        if c in frame.columns:
            vals = frame[c].drop_nulls().unique().to_list()
            cols.append(pl.col(c).replace(_id_map(vals, k)))
    if "student_no" in frame.columns:
        vals = [v for v in frame["student_no"].drop_nulls().unique().to_list() if v.startswith("G")]
        m = {v: "G" + _id_map([v[1:]], k)[v[1:]] for v in vals}
        cols.append(pl.col("student_no").replace(m))
    for c in ("name", "head_name"):
        if c in frame.columns:
            cols.append(pl.col(c).replace(_name_map(frame[c].drop_nulls().unique().to_list(), pool, k)))
    for c in ("town", "village", "household_no", "person_no"):
        if c in frame.columns:
            cols.append(pl.col(c) + pl.lit(f"#{k}"))
    cols.append(pl.col("file").str.replace(r"^([^/]+)/", f"${{1}}/c{k}/"))
    return frame.with_columns(cols)


def build_input(base: ingest.IngestResult, roster_n: int, system_n: int) -> ingest.IngestResult:
    by_source: dict[str, list[ingest.SheetTable]] = {}
    for t in base.tables:
        by_source.setdefault(t.source, []).append(t)
    rows = {s: sum(t.frame.height for t in ts) for s, ts in by_source.items()}
    sys_rows = rows.get("dibao", 0) + rows.get("filing", 0)
    names = pl.concat([t.frame.select(c) .rename({c: "n"}) for t in base.tables
                       for c in ("name", "head_name") if c in t.frame.columns])["n"].drop_nulls()
    pool = sorted({ch for n in names.unique().to_list() for ch in n[1:]})
    copies = {"roster": math.ceil(roster_n / rows["roster"]),
              "dibao": math.ceil(system_n / sys_rows), "filing": math.ceil(system_n / sys_rows)}
    print(f"base county: {rows}; copies {copies}; given-name pool {len(pool)} characters", flush=True)
    target = {"roster": roster_n, "dibao": round(system_n * rows["dibao"] / sys_rows)}
    target["filing"] = system_n - target["dibao"]
    tables = []
    for source, ts in by_source.items():
        left = target[source]
        for k in range(copies[source]):
            for t in ts:
                if left <= 0:
                    break
                frame = _perturb(t.frame, k, pool).head(left)
                left -= frame.height
                tables.append(ingest.SheetTable(
                    source=source, file=frame["file"][0] if frame.height else t.file, sheet=t.sheet,
                    frame=frame, columns=t.columns, header_row=t.header_row))
    return ingest.IngestResult(tables=tables, problems=base.problems, files_read=len(tables))


# --------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--roster", type=int, default=1_000_000)
    ap.add_argument("--system", type=int, default=3_000_000)
    ap.add_argument("--households", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--county", type=Path, default=None, help="generate into (or reuse) this folder")
    ap.add_argument("--store", action="store_true", help="also publish to a DuckDB file (finish_run)")
    ap.add_argument("--limit-gb", type=float, default=16.0)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="recon-mem-"))
    county = args.county or tmp / "county"
    meter = Meter(int(args.limit_gb * GB))
    try:
        settings = load_settings()
        meter.set("generate base county")
        if not (county / "inbox").is_dir():
            generate_county(county, SynthConfig(households=args.households, seed=args.seed))
        meter.set("read base county")
        base = ingest.read_inbox(county / "inbox", settings.header_aliases)
        meter.set("build 1M x 3M input frames")
        ingested = build_input(base, args.roster, args.system)
        del base
        n = {s: sum(t.frame.height for t in ingested.tables if t.source == s)
             for s in ("roster", "dibao", "filing")}
        print(f"input rows: {n}", flush=True)

        def progress(msg: str) -> None:
            meter.set(msg)

        # Label match.py's own steps too (wrapping, not editing, the module).
        from reconcile import match

        current = {"system": ""}

        def labelled(name, fn):
            def run(*a, **k):
                meter.set(f"  match {current['system']}: {name}")
                out = fn(*a, **k)
                frame = out[0] if isinstance(out, tuple) else out  # score_pairs: (pairs, model)
                if isinstance(frame, pl.DataFrame):
                    print(f"    {name} -> {frame.height:,} rows x {frame.width} cols, "
                          f"{frame.estimated_size() / GB:.2f} GB", flush=True)
                return out
            return run

        orig_link_system = match.link_system

        def link_system(roster, system, name, ms, *rest):
            current["system"] = name
            return orig_link_system(roster, system, name, ms, *rest)

        for name in ("_candidates", "score_pairs", "assign"):
            setattr(match, name, labelled(name, getattr(match, name)))
        pipeline.link_system = link_system

        t0 = time.perf_counter()
        results = pipeline.reconcile(ingested, settings, progress=progress, release_input=True)
        took = time.perf_counter() - t0
        print(f"pipeline.reconcile: {took:.1f} s; counts {results.counts}", flush=True)
        if args.store:
            meter.set("store: records table")
            db = tmp / "recon.duckdb"
            now = datetime.now(timezone.utc)
            store.begin_run(db, run_id="bench", started_at=now, night=date.today(),
                            as_of=date.today(), parameters={})
            tables = pipeline.stored_tables(results)
            meter.set("store: finish_run (DuckDB)")
            store.finish_run(db, run_id="bench", finished_at=now, counts=results.counts, tables=tables)
        meter.report()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
