"""Excel 97 (.xls) files for the exports that come as .xls."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["write_xls"]


_XlsSheet = tuple[str, str, tuple[str, ...], list[list[Any]], list[Any] | None]


def write_xls(path: Path, sheets: list[_XlsSheet]) -> None:
    """Write sheets (name, title, header, rows, total row) as Excel 97: the title merged across
    row 1, the header in row 2, data from row 3 (so calamine, which skips leading empty rows and
    columns, still numbers rows as Excel does: A1 is never empty)."""
    import xlwt

    wb = xlwt.Workbook(encoding="utf-8")
    for name, title, header, rows, total in sheets:
        ws = wb.add_sheet(name)
        ws.write_merge(0, 0, 0, len(header) - 1, title)
        for c, h in enumerate(header):
            ws.write(1, c, h)
        r = 2
        for row in rows:
            write = ws.row(r).write
            for c, val in enumerate(row):
                if val is not None:
                    write(c, val)
            r += 1
        if total is not None:
            for c, val in enumerate(total):
                if val is not None:
                    ws.write(r, c, val)
    wb.save(str(path))
