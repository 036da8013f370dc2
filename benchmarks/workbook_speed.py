"""The clerk workbooks' writer: data rows rendered column-wise vs cell by cell, in one run.

    .venv/bin/python benchmarks/workbook_speed.py RESULTS.pkl [--out DIR] [--compare N]

RESULTS.pkl is a pickled ``reconcile.pipeline.Results`` (discrepancies with row hashes).
Writes the night's three sets (school workbooks, town workbooks, public notices) twice:
"cellwise" replaces ``Book.rows`` with the loop the writer had before (``Book.value`` /
``Book.rich`` per cell, ``set_row`` per row: every cell through xlsxwriter), "rows" is the
writer as it is. Prints CPU and wall seconds per set and their ratio, then reads the first
N workbooks of each set back with openpyxl (rich text on) and checks that every cell's
value, type, rich runs, number format, font, fill, alignment and protection, the row
heights, merged cells, validations, sheet protection, panes, filter and print set-up are
the same; and that writing again gives the same bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import pickle
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from openpyxl import load_workbook
from openpyxl.cell.rich_text import CellRichText

from reconcile import report
from reconcile.xlsx_book import Book

ROWS = Book.rows


def _cellwise(self: Book, ws: Any, first: int, frame: Any, plan: Any, *, height: str | None = None,
              rich: Any = None, key: str | None = None, mark: str = "", rich_styles: Any = ()) -> None:
    """The writer before: each row's height, then each cell through xlsxwriter."""
    for r, row in enumerate(frame.iter_rows(named=True), start=first):
        if height is not None:
            ws.set_row(r - 1, row[height])
        marked = (rich or {}).get(row[key], {}) if key is not None else {}
        for c, src, styles, blank in plan:
            v = row[src]
            if src in marked:
                self.rich(ws, r, c, v, marked[src], mark, *rich_styles)
            elif blank or v is not None:
                self.value(ws, r, c, v, *styles)


def _sets(results: Any, out: Path) -> list[tuple[str, Any]]:
    items = results.discrepancies
    return [("school", lambda: report.write_school_workbooks(items, out / "school")),
            ("town", lambda: report.write_clerk_workbooks(items, out / "town", by="town")),
            ("notice", lambda: report.write_public_notices(results.eligible, out / "notice"))]


def _timed(fn: Any) -> tuple[float, float, list[Path]]:
    c0, t0 = time.process_time(), time.perf_counter()
    paths = fn()
    return time.process_time() - c0, time.perf_counter() - t0, paths


def _font(f: Any) -> tuple:
    return (f.b, f.i, f.u, f.sz, f.name, f.color.rgb if f.color is not None else None) if f is not None else ()


def _value(v: Any) -> Any:
    if isinstance(v, CellRichText):
        return tuple((b, ()) if isinstance(b, str) else (b.text, _font(b.font)) for b in v)
    return v


def _sheet(ws: Any) -> Iterator[Any]:
    yield ws.title, ws.sheet_state, ws.freeze_panes, ws.auto_filter.ref, ws.print_area, ws.print_title_rows
    yield ws.protection.sheet, ws.protection.autoFilter, ws.protection.formatColumns
    yield sorted(str(m) for m in ws.merged_cells.ranges)
    yield [(str(d.sqref), d.type, d.formula1, d.error, d.prompt) for d in ws.data_validations.dataValidation]
    yield [(r, d.height, d.customHeight) for r, d in sorted(ws.row_dimensions.items())]
    yield [(k, d.width, d.hidden) for k, d in sorted(ws.column_dimensions.items())]
    yield ws.page_setup.orientation, ws.page_setup.scale, ws.page_setup.paperSize, ws.oddHeader.center.text
    for row in ws.iter_rows():
        for c in row:
            yield (c.coordinate, _value(c.value), c.data_type, c.number_format, _font(c.font), c.fill.patternType,
                   c.fill.fgColor.rgb, c.alignment.wrap_text, c.alignment.vertical, c.alignment.horizontal,
                   c.protection.locked, c.quotePrefix)


def _differences(a: Path, b: Path) -> int:
    wa, wb = load_workbook(a, rich_text=True), load_workbook(b, rich_text=True)
    if wa.sheetnames != wb.sheetnames:
        return 1
    bad = 0
    for name in wa.sheetnames:
        for x, y in zip(_sheet(wa[name]), _sheet(wb[name]), strict=True):
            if x != y:
                bad += 1
                if bad <= 3:
                    print(f"  differ in {b.name}/{name}: {str(x)[:160]} vs {str(y)[:160]}", file=sys.stderr)
    return bad


def _digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()[:16]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("results", type=Path)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--compare", type=int, default=5, help="workbooks per set read back and compared")
    args = ap.parse_args()
    results = pickle.loads(args.results.read_bytes())
    out = args.out or Path(tempfile.mkdtemp(prefix="workbook_speed_"))
    print(f"items {results.discrepancies.height}, eligible {results.eligible.height}")
    print(f"{'set':8} {'files':>5} {'cellwise cpu':>12} {'wall':>6} {'rows cpu':>9} {'wall':>6} {'cpu ratio':>9}")
    failed = 0
    try:
        for (name, old), (_n, new), (_m, again) in zip(_sets(results, out / "cellwise"), _sets(results, out / "rows"),
                                                      _sets(results, out / "again")):
            Book.rows = _cellwise
            try:
                c_old, w_old, p_old = _timed(old)
            finally:
                Book.rows = ROWS
            c_new, w_new, p_new = _timed(new)
            print(f"{name:8} {len(p_new):5} {c_old:12.1f} {w_old:6.1f} {c_new:9.1f} {w_new:6.1f} {c_old / c_new:9.1f}",
                  flush=True)
            bad = sum(_differences(a, b) for a, b in zip(p_old[:args.compare], p_new[:args.compare], strict=True))
            same = _digest(_timed(again)[2]) == _digest(p_new)
            print(f"         read back: {min(args.compare, len(p_new))} workbooks, {bad} differences; "
                  f"written again: {'same bytes' if same else 'DIFFERENT BYTES'}", flush=True)
            failed += bad + (not same)
    finally:
        if args.out is None:
            shutil.rmtree(out, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
