"""`recon review import` on a returned workbook full of empty styled cells, beside openpyxl.

    .venv/bin/python benchmarks/review_import.py [--cells N] [--peer-cells M]

A clerk who formats whole rows sends back a small xlsx (tens to hundreds of KB) holding a
million empty styled cells; openpyxl (what the import used) loads every one of them. This
builds such a workbook from a generated school workbook, then measures, each in its own
process: the import refusing it (N cells) beside a good workbook, and openpyxl's
``load_workbook`` on a smaller one (M cells: the peer, kept under a few GB) — wall time
and peak RSS.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import zipfile
from datetime import date, datetime, timezone
from pathlib import Path

from countygen import SynthConfig, generate_county
from openpyxl.utils import get_column_letter
from reconcile import ingest, pipeline, report, store
from reconcile.config import load_settings

COLUMNS = 20


def _styled(src: Path, dst: Path, cells: int) -> Path:
    rows = cells // COLUMNS
    letters = [get_column_letter(c) for c in range(1, COLUMNS + 1)]
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename == "xl/worksheets/sheet1.xml":
                block = "".join(f'<row r="{r}">' + "".join(f'<c r="{x}{r}" s="1"/>' for x in letters) + "</row>"
                                for r in range(1000, 1000 + rows)).encode()
                data = data.replace(b"</sheetData>", block + b"</sheetData>")
            zout.writestr(info, data)
    return dst


def _measure(code: str) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MiB) and output of a child Python running ``code``."""
    t0 = time.perf_counter()
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across exec.
    tail = "; print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')))"
    proc = subprocess.run([sys.executable, "-c", code + tail], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    peak = int(lines[-1]) / 1024 if lines and lines[-1].isdigit() else float("nan")
    return wall, peak, " ".join(lines[:-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cells", type=int, default=1_000_000)
    ap.add_argument("--peer-cells", type=int, default=100_000)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="recon-import-"))
    county = work / "county"
    generate_county(county, SynthConfig(households=60, seed=3))
    settings = load_settings()
    res = pipeline.reconcile(ingest.read_inbox(county / "inbox", settings.header_aliases), settings)
    disc = report.with_row_hashes(res.discrepancies)
    db, night = work / "r.duckdb", date(2026, 11, 23)
    now = datetime(2026, 11, 23, 2, tzinfo=timezone.utc)
    store.begin_run(db, run_id="run-1", started_at=now, night=night, as_of=night, parameters={})
    store.finish_run(db, run_id="run-1", finished_at=now, counts=res.counts, tables={"discrepancies": disc})
    books = report.write_school_workbooks(disc, work / "reports", run_id="run-1")
    good = books[0]
    bad = _styled(good, work / "styled.xlsx", args.cells)
    peer = _styled(good, work / "peer.xlsx", args.peer_cells)
    print(f"styled workbook: {args.cells:,} empty styled cells, {bad.stat().st_size / 1024:.0f} KB; "
          f"peer workbook: {args.peer_cells:,} cells, {peer.stat().st_size / 1024:.0f} KB")
    wall, rss, out = _measure(
        "from reconcile.review_import import import_workbooks as f; "
        f"r = f([{str(good)!r}, {str(bad)!r}], {str(db)!r}); print(r.files, 'files,', len(r.errors), 'refused:', r.errors[0][-60:])")
    print(f"recon import (good + styled, {args.cells:,} cells): {wall:.1f} s, peak RSS {rss:.0f} MiB — {out}")
    wall, rss, out = _measure(f"import openpyxl; wb = openpyxl.load_workbook({str(peer)!r}); print(wb.active.max_row, 'rows')")
    print(f"openpyxl load_workbook ({args.peer_cells:,} cells): {wall:.1f} s, peak RSS {rss:.0f} MiB — {out}")


if __name__ == "__main__":
    main()
