"""Writing the workbooks we hand out, through xlsxwriter in constant-memory (streaming) mode.

Why a module of its own: every workbook we produce must keep the same promises, whatever
it lays out. A string is always written as text, never a formula (and one that Excel would
read as a formula when retyped gets the quote prefix); cell styles are named data, one
format per name and workbook; the bytes are reproducible (fixed document time, fixed zip
entry times); and a file is replaced whole (written beside, synced, renamed) or not at all.
openpyxl stays what reads clerks' returned workbooks. Rows are written in order (the
writer keeps only the current row in memory): callers set a row's height before its cells.
Rows and columns here are 1-based, as Excel shows them.
"""

from __future__ import annotations

import io
import math
import operator
import os
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import polars as pl
import xlsxwriter
from xlsxwriter.format import Format
from xlsxwriter.utility import xl_rowcol_to_cell_fast
from xlsxwriter.worksheet import (CellBlankTuple, CellNumberTuple, CellRichStringTuple, CellStringTuple,
                                  Worksheet)
from xlsxwriter.xmlwriter import XMLwriter

from reconcile.xlsx_region import Plan, RowsSheet, write_rows
from reconcile.xlsx_rows import FORMULA_START, needs_quote

__all__ = ["Book", "FORMULA_START", "STREAM_FROM_ROWS", "needs_quote", "column_pixels"]

_OPTIONS = {"constant_memory": True, "strings_to_formulas": False, "strings_to_numbers": False,
            "strings_to_urls": False, "nan_inf_to_errors": False}
STREAM_FROM_ROWS = 20_000  # a workbook this long is streamed (constant memory); shorter ones are built in memory
_PX_PER_CHAR = 7  # Calibri 11's digit width in pixels
_UNSET = object()  # a format not made yet (None is the default format)


# What xlsxwriter's Worksheet._write_font reads of a format: the <rPr> of a rich-string run.
_FONT_KEY = operator.attrgetter("bold", "italic", "font_strikeout", "font_outline", "font_shadow", "underline",
                                "font_script", "font_size", "theme", "color_indexed", "font_color", "font_name",
                                "font_family", "hyperlink", "font_scheme")


class _Sheet(RowsSheet):
    """A worksheet (with blocks of pre-rendered rows: ``RowsSheet``) whose cells written one
    by one go out as the same XML as xlsxwriter's, faster where a night spends
    its time: each distinct rich-string font run is built once (xlsxwriter builds the run's
    ``<rPr>`` anew for every run, about 0.1 ms, most of a rich cell's cost), and the cells
    we write (a shared string, a number or a blank, with a format) go out in one f-string
    each (xlsxwriter's general path escapes each attribute, an int by a caught TypeError).
    Both override xlsxwriter internals (the version is pinned in requirements.lock);
    tests/test_xlsx_book.py holds the XML to plain xlsxwriter's for the same cells."""

    def __init__(self) -> None:
        super().__init__()
        # Keyed by the font's attributes (a colour is an object: the key holds it alive).
        self._fonts: dict[tuple[Any, ...], str] = {}

    def _write_font(self, xf_format: Format) -> None:
        key = _FONT_KEY(xf_format)
        xml = self._fonts.get(key)
        if xml is None:
            target, scratch = self.rstring, XMLwriter()
            scratch._set_filehandle(io.StringIO())
            self.rstring = scratch
            try:
                super()._write_font(xf_format)
            finally:
                self.rstring = target
            xml = self._fonts[key] = scratch.fh.getvalue()
        self.rstring.fh.write(xml)

    def _write_cell(self, row: int, col: int, cell: Any) -> None:
        fmt = cell.format
        kind = type(cell)
        if not fmt or (self.constant_memory and kind is not CellNumberTuple and kind is not CellBlankTuple):
            super()._write_cell(row, col, cell)   # (streamed sheets write their strings inline)
        elif kind is CellStringTuple or kind is CellRichStringTuple:
            self.fh.write(f'<c r="{xl_rowcol_to_cell_fast(row, col)}" s="{fmt._get_xf_index()}" t="s">'
                          f'<v>{cell.string}</v></c>')
        elif kind is CellNumberTuple:
            self.fh.write(f'<c r="{xl_rowcol_to_cell_fast(row, col)}" s="{fmt._get_xf_index()}">'
                          f'<v>{cell.number:.16G}</v></c>')
        elif kind is CellBlankTuple:
            self.fh.write(f'<c r="{xl_rowcol_to_cell_fast(row, col)}" s="{fmt._get_xf_index()}"/>')
        else:
            super()._write_cell(row, col, cell)


def column_pixels(width: float) -> int:
    """Pixels for a column ``width`` characters wide as stored in the file (``<col width>``):
    never wider than asked, so a layout that fits the page still fits."""
    return max(1, math.floor(width * _PX_PER_CHAR + 1e-9))


class Book:
    """One workbook being written to ``path``; ``styles`` maps a style name to xlsxwriter
    format properties; ``rows``, the rows it will have, chooses streaming. Use as a context
    manager: the file appears on a clean exit only."""

    def __init__(self, path: Path, styles: Mapping[str, Mapping[str, Any]], *, stamp: datetime,
                 rows: int = 0, author: str = "recon") -> None:
        streaming = rows >= STREAM_FROM_ROWS
        self.path = Path(path)
        self._tmp = self.path.with_name(f".{self.path.name}.tmp")
        # Streaming writes each sheet through a temporary file (and the package through a
        # temporary folder): memory stays flat, but on a slow disk a small workbook costs
        # more in file operations than in writing; below STREAM_FROM_ROWS it is built in memory.
        self._buf = None if streaming else io.BytesIO()
        target = str(self._tmp) if streaming else self._buf
        self._wb = xlsxwriter.Workbook(target, {**_OPTIONS, "constant_memory": streaming, "in_memory": not streaming})
        self._wb.set_properties({"author": author, "created": stamp})
        self._styles = styles
        self._formats: dict[tuple[tuple[str, ...], bool], Format | None] = {}

    def __enter__(self) -> Book:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            if kind is None:
                self._wb.close()
                with open(self._tmp, "rb+" if self._buf is None else "wb") as fh:
                    if self._buf is not None:
                        fh.write(self._buf.getbuffer())
                        fh.flush()
                    os.fsync(fh.fileno())
                os.replace(self._tmp, self.path)
        finally:
            if self._tmp.exists():
                self._tmp.unlink()

    def sheet(self, name: str) -> Worksheet:
        return self._wb.add_worksheet(name, worksheet_class=_Sheet)

    def style(self, names: Sequence[str], *, quote: bool = False) -> Format | None:
        """The format of the named styles merged in order (None: the default), cached: a
        night asks for one about a million times."""
        key = (tuple(names), quote)
        fmt = self._formats.get(key, _UNSET)
        if fmt is _UNSET:
            props: dict[str, Any] = {}
            for name in names:
                props.update(self._styles[name])
            if quote:
                props["quote_prefix"] = True
            fmt = self._formats[key] = self._wb.add_format(props) if props else None
        return fmt

    def text(self, ws: Worksheet, row: int, col: int, text: str, *styles: str) -> None:
        """A string cell: text, never a formula."""
        ws._write_string(row - 1, col - 1, text, self.style(styles, quote=needs_quote(text)))

    def value(self, ws: Worksheet, row: int, col: int, value: Any, *styles: str) -> None:
        """Text as text, numbers as numbers; None leaves the cell empty (styled, if styles)."""
        # The most frequent first: a night writes about a million cells through here.
        # xlsxwriter's undecorated writers (``_write_string``...: what its public ones call
        # after converting A1 references, which we never pass): two calls less per cell.
        if isinstance(value, str):
            ws._write_string(row - 1, col - 1, value, self.style(styles, quote=needs_quote(value)))
        elif value is None:
            if styles:
                ws._write_blank(row - 1, col - 1, None, self.style(styles))
        elif isinstance(value, bool):
            ws._write_boolean(row - 1, col - 1, value, self.style(styles))
        elif isinstance(value, (int, float)) and math.isfinite(value):
            ws._write_number(row - 1, col - 1, value, self.style(styles))
        else:
            self.text(ws, row, col, str(value), *styles)

    def rich(self, ws: Worksheet, row: int, col: int, text: str, spans: Sequence[tuple[int, int]], mark: str,
             *styles: str) -> None:
        """A text cell whose characters in ``spans`` (start, end) get the ``mark`` style's font."""
        marked = self.style((mark,))
        parts: list[Any] = []
        pos = 0
        for i, j in spans:
            if i > pos:
                parts.append(text[pos:i])
            parts += [marked, text[i:j]]
            pos = j
        if pos < len(text):
            parts.append(text[pos:])
        if len(parts) == 2:  # all of it marked: xlsxwriter wants two runs at least
            if len(text) < 2:
                self.text(ws, row, col, text, *styles, mark)
                return
            parts = [marked, text[:1], marked, text[1:]]
        fmt = self.style(styles, quote=needs_quote(text))
        ws._write_rich_string(row - 1, col - 1, *parts, *([fmt] if fmt is not None else []))

    def merged_text(self, ws: Worksheet, row: int, first_col: int, last_col: int, text: str, *styles: str) -> None:
        """``text`` in one cell merged across a row's columns."""
        fmt = self.style(styles, quote=needs_quote(text))
        ws.merge_range(row - 1, first_col - 1, row - 1, last_col - 1, "", fmt)
        ws.write_string(row - 1, first_col - 1, text, fmt)

    @staticmethod
    def widths(ws: Worksheet, widths: Sequence[float], hidden: Sequence[int] = ()) -> None:
        """Column widths in characters (file units), columns 1.. in order; ``hidden`` by number."""
        for c, w in enumerate(widths, start=1):
            ws.set_column_pixels(c - 1, c - 1, column_pixels(w), None, {"hidden": True} if c in hidden else None)

    def rows(self, ws: Worksheet, first: int, frame: pl.DataFrame, plan: Sequence[Plan], *, height: str | None = None,
             rich: Mapping[Any, Mapping[str, Sequence[tuple[int, int]]]] | None = None, key: str | None = None,
             mark: str = "", rich_styles: Sequence[str] = ()) -> None:
        """``frame``'s rows from sheet row ``first`` at once, each cell as ``value`` writes it
        (``rich`` ones as ``rich`` does): rendered column-wise (``reconcile.xlsx_region``)."""
        write_rows(ws, first, frame, plan, style=lambda names, quote: self.style(names, quote=quote),
                   height=height, rich=rich, key=key, mark=mark, rich_styles=rich_styles)
