"""The workbook writer beside plain xlsxwriter, on the same cells, in one invocation.

    .venv/bin/python benchmarks/book_speed.py [--rows 20000] [--cols 20] [--rich-every 8]

Writes one sheet of ``rows`` x ``cols`` clerk-like cells (text with a format, numbers,
styled blanks, every ``rich-every``-th row an ID with marked characters) twice: through
``reconcile.xlsx_book.Book`` and through xlsxwriter's public writers with the same formats.
Prints both in CPU seconds, their ratio, and whether the two files' sheet XML is equal
(it must be: Book writes the same bytes, faster).
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
import zipfile
from datetime import datetime
from pathlib import Path

import xlsxwriter

from reconcile.xlsx_book import Book, needs_quote

STYLES = {"body": {"valign": "top"}, "wrap": {"valign": "top", "text_wrap": True},
          "diff": {"valign": "top", "text_wrap": True, "pattern": 1, "bg_color": "#FFF2CC"},
          "mark": {"bold": True, "font_color": "#C00000", "underline": 1},
          "review": {"valign": "top", "pattern": 1, "bg_color": "#E2EFDA", "locked": False, "num_format": "@"}}
STAMP = datetime(2026, 9, 1, 2, 0)
SPANS = [(6, 7), (14, 16)]


def _cells(rows: int, cols: int, rich_every: int):
    """(row, col, value, style, spans) in row order, 1-based."""
    for r in range(1, rows + 1):
        for c in range(1, cols + 1):
            if c == 1:
                yield r, c, r, "body", None
            elif c == 2 and r % rich_every == 0:
                yield r, c, f"4331242005{r:08d}", "diff", SPANS
            elif c == cols:
                yield r, c, None, "review", None
            elif c % 5 == 0:
                yield r, c, float(r * c), "body", None
            else:
                yield r, c, f"第{r}行 列{c} 张三丽华" if c % 2 else f"row {r % 97} text", "wrap", None


def _book(path: Path, rows: int, cols: int, rich_every: int) -> bytes:
    with Book(path, STYLES, stamp=STAMP) as book:
        ws = book.sheet("表")
        for r, c, value, style, spans in _cells(rows, cols, rich_every):
            if spans:
                book.rich(ws, r, c, value, spans, "mark", style)
            else:
                book.value(ws, r, c, value, style)
    return path.read_bytes()


def _plain(path: Path, rows: int, cols: int, rich_every: int) -> bytes:
    wb = xlsxwriter.Workbook(str(path), {"in_memory": True, "strings_to_formulas": False, "strings_to_numbers": False,
                                   "strings_to_urls": False, "nan_inf_to_errors": False})
    wb.set_properties({"author": "recon", "created": STAMP})
    fmts = {name: wb.add_format(dict(props)) for name, props in STYLES.items()}
    ws = wb.add_worksheet("表")
    for r, c, value, style, spans in _cells(rows, cols, rich_every):
        if spans:
            parts, pos = [], 0
            for i, j in spans:
                parts += [value[pos:i], fmts["mark"], value[i:j]]
                pos = j
            ws.write_rich_string(r - 1, c - 1, *parts, value[pos:], fmts[style])
        elif isinstance(value, str):
            assert not needs_quote(value)
            ws.write_string(r - 1, c - 1, value, fmts[style])
        elif value is None:
            ws.write_blank(r - 1, c - 1, None, fmts[style])
        else:
            ws.write_number(r - 1, c - 1, value, fmts[style])
    wb.close()
    return path.read_bytes()


def _sheet_xml(data: bytes) -> tuple[bytes, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return z.read("xl/worksheets/sheet1.xml"), z.read("xl/sharedStrings.xml")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--cols", type=int, default=20)
    ap.add_argument("--rich-every", type=int, default=8)
    args = ap.parse_args()
    figures: dict[str, list[float]] = {}
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, fn in (("plain xlsxwriter", _plain), ("Book", _book)) * 2:
            c0 = time.process_time()
            out[name] = fn(Path(tmp) / f"{name}.xlsx", args.rows, args.cols, args.rich_every)
            figures.setdefault(name, []).append(time.process_time() - c0)
    plain, book = min(figures["plain xlsxwriter"]), min(figures["Book"])
    print(f"{args.rows} rows x {args.cols} columns, every {args.rich_every}th row rich: "
          f"plain xlsxwriter {plain:.2f} s cpu, Book {book:.2f} s cpu (best of 2 each); ratio {book / plain:.2f}")
    print("same sheet and shared-strings XML:", _sheet_xml(out["Book"]) == _sheet_xml(out["plain xlsxwriter"]))


if __name__ == "__main__":
    main()
