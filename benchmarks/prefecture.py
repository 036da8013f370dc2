"""A prefecture in one night, from files: `recon run` over one inbox holding every county.

    nice -n 10 .venv/bin/python benchmarks/prefecture.py [--scale 0.1] [--counties 8]
        [--households N] [--workers 2] [--dir DIR] [--keep] [--timeout S] [--limit-gb 12]
        [--generate-only]

`--scale 1` is issue 14's prefecture: about 1,000,000 roster rows against 3,000,000 system
rows; `--scale 0.1` a tenth of it (run that first). The generator (`countygen`, as
`recon synth DIR --counties K` writes a province) writes every county's real files — xlsx
rosters, dibao in .xls, filing in GB18030/UTF-8 CSVs — counties generated `--workers` at a
time; they are then moved into ONE inbox (`roster/<county>_<file>`, ...), as a prefecture
bureau would collect them, so blocks grow across counties (shared surnames, given names,
birth dates). Generation is not timed against the targets.

Then, in the same invocation:

* the floor (benchmarks/night_floor.py's, imported): read every file, one hash join on the
  ID, the records and links to DuckDB, the unmatched roster rows to per-school xlsx;
* `recon run` as a user runs it (a new process, Prefect start-up included), with the
  as-of checks on (`--as-of` the school year's reference date) and every workbook, its
  wall time and the peak of the resident memory of it and all its child processes together
  (psutil, sampled every 0.2 s);
* precision and recall of the matched links against the generator's truth, and the
  candidate pairs per roster row and system (mean, maximum, rows cut to the cap) that the
  run stored in `runs.counts`.

Prints every figure and the targets: <= 10 min wall, <= 6 GB peak, <= 5x the floor.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import polars as pl
import psutil

from _truth import evaluate, load_truth
from night_floor import floor
from countygen.province import ProvinceConfig, generate_province

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from reconcile import store  # noqa: E402

# Roster rows a generated household gives, on average (measured on the generator's
# defaults): sizes the counties for --scale.
ROSTER_PER_HOUSEHOLD = 1.42
FULL_ROSTER = 1_000_000
SOURCES = ("roster", "dibao", "filing")
GB = 1024**3


def _role(proc: psutil.Process) -> str:
    """What a process of `recon run`'s tree is, for the memory breakdown."""
    try:
        cmd = " ".join(proc.cmdline())
    except psutil.Error:
        return "?"
    if "uvicorn" in cmd:
        return "Prefect server"
    if "second_process" in cmd:
        return "second process"
    return "recon" if "recon" in cmd else cmd[:40]


class TreeMeter:
    """Peak resident memory of a process and all its descendants together (and when it was);
    past `limit` bytes the whole tree is killed, so that the benchmark cannot take a shared
    machine down."""

    def __init__(self, pid: int, limit: int, every: float = 0.2) -> None:
        self.proc = psutil.Process(pid)
        self.limit = limit
        self.peak = 0
        self.peak_procs = 0
        self.peak_at = 0.0
        self.peak_parts: list[tuple[str, int]] = []  # (role, resident bytes) of each process at the peak
        self.killed = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every,), daemon=True)
        self._thread.start()

    def _run(self, every: float) -> None:
        while not self._stop.is_set():
            try:
                procs = [self.proc, *self.proc.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            parts = []
            for p in procs:
                try:
                    parts.append((p, p.memory_info().rss))
                except psutil.Error:
                    pass
            total = sum(r for _, r in parts)
            if total > self.peak:
                self.peak, self.peak_procs, self.peak_at = total, len(procs), time.time()
                self.peak_parts = [(_role(p), r) for p, r in parts]
            if total > self.limit:
                self.killed = True
                for p in reversed(procs):
                    try:
                        p.kill()
                    except psutil.Error:
                        pass
                return
            self._stop.wait(every)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def merge_inbox(province: Path, inbox: Path) -> None:
    """Every county's files into one inbox: `<county>/<source>/<f>` -> `<source>/<county>_<f>`."""
    for source in SOURCES:
        (inbox / source).mkdir(parents=True, exist_ok=True)
    for county in sorted(p for p in (province / "inbox").iterdir() if p.is_dir()):
        for source in SOURCES:
            for f in sorted((county / source).iterdir()):
                shutil.move(str(f), str(inbox / source / f"{county.name}_{f.name}"))


def merged_truth(truth_dir: Path) -> pl.DataFrame:
    """The province's truth with file paths as `merge_inbox` renamed them."""
    truth = load_truth(truth_dir)
    parts = pl.col("file").str.split("/")
    return truth.with_columns(pl.format("{}/{}_{}", parts.list.get(1), parts.list.get(0), parts.list.get(2)).alias("file"))


def generate(out: Path, counties: int, households: int, seed: int, workers: int) -> Path:
    """The prefecture's files under `out` (merged inbox in `out/inbox_all`), unless there already."""
    if (out / "inbox_all" / "roster").is_dir():
        return out / "inbox_all"
    t0 = time.perf_counter()
    summary = generate_province(out, ProvinceConfig(counties=counties, households=households, seed=seed),
                                overwrite=True, workers=workers)
    merge_inbox(out, out / "inbox_all")
    print(f"generated in {time.perf_counter() - t0:.0f} s ({workers} worker(s)): {summary}", flush=True)
    return out / "inbox_all"


def step_at(log: str, when: float) -> str:
    """The run's last log line before `when` (epoch seconds): the step it was in."""
    t = time.localtime(when)
    at = t.tm_hour * 3600 + t.tm_min * 60 + t.tm_sec + when % 1
    found = "start-up"
    for line in log.splitlines():
        m = _LINE.match(line)
        if m:
            h, mi, s, task, msg = m.groups()
            if int(h) * 3600 + int(mi) * 60 + float(s) > at:
                break
            found = f"{task}: {msg[:80]}"
    return found


def run_recon(inbox: Path, tmp: Path, config: Path, as_of: str, timeout: float | None,
              limit: int) -> tuple[float, TreeMeter, str, float]:
    """`recon run` in a new process; past `timeout` seconds it and its children are stopped
    and what it did until then is printed (the figures of a run too slow to wait for)."""
    cmd = [str(ROOT / ".venv" / "bin" / "recon"), "run", "--inbox", str(inbox), "--db", str(tmp / "recon.duckdb"),
           "--reports", str(tmp / "reports"), "--as-of", as_of, "--config", str(config)]
    t0 = time.perf_counter()
    with open(tmp / "recon.log", "w", encoding="utf-8") as log:
        started = time.time()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True)
        meter = TreeMeter(proc.pid, limit)
        try:
            rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            for child in psutil.Process(proc.pid).children(recursive=True):
                child.kill()
            proc.kill()
            rc = proc.wait()
            meter.stop()
            text = (tmp / "recon.log").read_text(encoding="utf-8", errors="replace")
            print(f"recon run stopped after {time.perf_counter() - t0:.0f} s (--timeout); peak so far "
                  f"{meter.peak / GB:.2f} GB over {meter.peak_procs} process(es) during "
                  f"{step_at(text, meter.peak_at)}; its last lines:")
            print("\n".join(text.splitlines()[-5:]))
            for secs, step in phases(text, started=started):
                print(f"  {secs:7.1f} s  {step}")
            sys.exit(124)
    took = time.perf_counter() - t0
    meter.stop()
    text = (tmp / "recon.log").read_text(encoding="utf-8", errors="replace")
    if meter.killed:
        print(f"recon run killed after {took:.0f} s: its processes passed --limit-gb ({meter.peak / GB:.2f} GB) "
              f"during {step_at(text, meter.peak_at)}")
        sys.exit(137)
    if rc:
        print(text[-4000:], file=sys.stderr)
        sys.exit(rc)
    return took, meter, text, started


_LINE = re.compile(r"^(\d\d):(\d\d):(\d\d\.\d+) \| \w+ +\| (?:Task|Flow) run '([^']+?)(?:-[0-9a-f]{3})?' - (.*)$")


def phases(log: str, top: int = 10, started: float | None = None) -> list[tuple[float, str]]:
    """Where the run's time went, from its log: each line's step (task and message, the
    per-file `reading` lines taken together) until the next line; the longest `top`. After a
    `blocking <system>` line come the comparisons, scoring and the model of that system.
    `started` (epoch seconds the process started): the time to the first line is start-up."""
    steps: dict[str, float] = {}
    last: tuple[float, str] | None = None
    if started is not None:
        t = time.localtime(started)
        last = (t.tm_hour * 3600 + t.tm_min * 60 + t.tm_sec + started % 1, "start-up (Prefect, imports, settings)")
    for line in log.splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        h, mi, s, task, msg = m.groups()
        ts = int(h) * 3600 + int(mi) * 60 + float(s)
        if last is not None:
            # after a task's last line the time is the next task's (tasks log no start line)
            label = task if last[1].endswith("Finished in state Completed()") else last[1]
            steps[label] = steps.get(label, 0.0) + (ts - last[0]) % 86400
        if msg.startswith("reading "):
            step = "reading files"
        elif msg.startswith("blocking "):
            step = f"comparing, scoring, model ({msg.split()[1].rstrip(':')})"
        else:
            step = re.sub(r"\d[\d,.]*", "N", msg)[:90]
        last = (ts, f"{task}: {step}")
    return sorted(((v, k) for k, v in steps.items()), reverse=True)[:top]


def stored_figures(db: Path, truth: pl.DataFrame) -> tuple[dict, dict]:
    """The run's counts and the matched links' precision / recall."""
    con = store.open_readonly(db)
    try:
        [(counts,)] = con.execute("select counts from runs where status = 'succeeded'").fetchall()
        links = pl.from_arrow(con.sql(
            "select roster_file, roster_sheet, roster_row, system, system_file, system_sheet, system_row, status, via "
            "from matches").to_arrow_table())
    finally:
        con.close()
    return json.loads(counts), evaluate(links, truth, ["matched"])  # type: ignore[arg-type]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=1.0, help="share of issue 14's prefecture (1,000,000 roster rows)")
    ap.add_argument("--counties", type=int, default=8)
    ap.add_argument("--households", type=int, default=None, help="households per county (default: from --scale)")
    ap.add_argument("--seed", type=int, default=14)
    ap.add_argument("--workers", type=int, default=2, help="counties generated at a time")
    ap.add_argument("--dir", type=Path, default=None, help="generate into (or reuse) this folder")
    ap.add_argument("--keep", action="store_true", help="keep the run's database, reports and log")
    ap.add_argument("--timeout", type=float, default=None, help="stop `recon run` after this many seconds")
    ap.add_argument("--limit-gb", type=float, default=12.0, help="kill `recon run` when its processes pass this")
    ap.add_argument("--generate-only", action="store_true", help="write the prefecture's files (into --dir) and stop")
    args = ap.parse_args()
    households = args.households or round(args.scale * FULL_ROSTER / ROSTER_PER_HOUSEHOLD / args.counties)
    tmp = Path(tempfile.mkdtemp(prefix="recon-prefecture-"))
    prov = args.dir or tmp / "prefecture"
    work = tmp / "work"
    try:
        inbox = generate(prov, args.counties, households, args.seed, args.workers)
        files = sorted(p.suffix for p in inbox.rglob("*.*"))
        print("inbox files:", {s: files.count(s) for s in sorted(set(files))}, flush=True)
        if args.generate_only:
            return
        work.mkdir()
        t0 = time.perf_counter()
        got = floor(inbox, work)
        t_floor = time.perf_counter() - t0
        print(f"floor: {t_floor:.1f} s ({got['records']} rows read, {got['links']} links, "
              f"{got['unmatched']} unmatched roster rows written per school)", flush=True)
        notes = json.loads((prov / "truth" / "notes.json").read_text(encoding="utf-8"))
        took, meter, log, started = run_recon(inbox, work, prov / "config", notes["reference_date"], args.timeout,
                                              int(args.limit_gb * GB))
        print(log[log.find("recon: run"):].rstrip())
        print("where the time went (from the run's log):")
        for secs, step in phases(log, started=started):
            print(f"  {secs:7.1f} s  {step}")
        counts, quality = stored_figures(work / "recon.duckdb", merged_truth(prov / "truth"))
        for system in ("dibao", "filing"):
            print(f"candidates {system}: {counts[f'candidate_pairs_{system}']} pairs, mean "
                  f"{counts[f'candidates_mean_{system}']} / roster row, max {counts[f'candidates_max_{system}']}, "
                  f"{counts[f'candidates_capped_{system}']} roster rows cut to the cap")
        print(f"matched links: precision {quality['precision']:.4f}, recall {quality['recall']:.4f} "
              f"({quality['links']} links, {quality['true_links']} true)")
        load = os.getloadavg()
        print(f"recon run: {took:.1f} s wall (target <= 600), peak {meter.peak / GB:.2f} GB over "
              f"{meter.peak_procs} process(es) during {step_at(log, meter.peak_at)} (target <= 6); floor {t_floor:.1f} s; ratio {took / t_floor:.1f}x "
              f"(target <= 5x); roster {counts['roster_rows']} rows vs "
              f"{counts['dibao_rows'] + counts['filing_rows']} system rows; load average "
              f"{load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
        print("  at the peak: " + ", ".join(f"{role} {rss / GB:.2f} GB" for role, rss in meter.peak_parts))
        if args.keep:
            print(f"kept: {work}")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
