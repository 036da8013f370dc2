"""Excel 2007+ (.xlsx) files the way the exports are appended: a row at a time, merges
after the rows they cover. Written with xlsxwriter (several times faster than openpyxl, which
matters for a prefecture of a million roster rows); numbers, text and real Excel dates."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import xlsxwriter

__all__ = ["XlsxBook", "XlsxSheet"]


class XlsxSheet:
    """One worksheet: `append` writes the next row (None cells stay empty), `merge` merges a
    range of rows already written (1-based, inclusive, as Excel numbers them)."""

    def __init__(self, ws: Any, date_format: Any) -> None:
        self._ws = ws
        self._date = date_format
        self._rows: dict[int, list[Any]] = {}
        self.row = 0  # the last row written, 1-based (0: none yet)

    def append(self, values: list[Any]) -> int:
        r = self.row
        ws = self._ws
        for c, v in enumerate(values):
            if v is None:
                continue
            if isinstance(v, str):
                ws.write_string(r, c, v)
            elif isinstance(v, bool):
                ws.write_boolean(r, c, v)
            elif isinstance(v, (int, float)):
                ws.write_number(r, c, v)
            elif isinstance(v, (dt.date, dt.datetime)):
                ws.write_datetime(r, c, v, self._date)
            else:
                ws.write_string(r, c, str(v))
        self.row += 1
        self._rows = {k: x for k, x in self._rows.items() if k >= self.row - 2}
        self._rows[self.row] = values
        return self.row

    def merge(self, first_row: int, first_col: int, last_row: int, last_col: int) -> None:
        """Merge a range among the last three rows written, keeping its first cell's value."""
        if (first_row, first_col) == (last_row, last_col):
            return
        top = self._rows[first_row]
        value = top[first_col - 1] if first_col - 1 < len(top) else None
        self._ws.merge_range(first_row - 1, first_col - 1, last_row - 1, last_col - 1, "" if value is None else value)


class XlsxBook:
    """A workbook written to `path` on `close`, its document properties fixed (author, created)."""

    def __init__(self, path: Path, author: str, created: dt.datetime) -> None:
        self._wb = xlsxwriter.Workbook(str(path), {"strings_to_numbers": False, "strings_to_formulas": False,
                                                   "strings_to_urls": False})
        self._wb.set_properties({"author": author, "created": created})
        self._date = self._wb.add_format({"num_format": "yyyy-mm-dd"})

    def sheet(self, name: str) -> XlsxSheet:
        return XlsxSheet(self._wb.add_worksheet(name), self._date)

    def close(self) -> None:
        self._wb.close()
