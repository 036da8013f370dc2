"""Rows rendered at once hold what cell-by-cell writing holds: values, types, quote prefix,
styles, blanks, rich runs, heights, in streamed and in-memory books alike."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import polars as pl
import pytest
from openpyxl import load_workbook
from openpyxl.cell.rich_text import CellRichText

from reconcile.xlsx_book import STREAM_FROM_ROWS, Book
from reconcile.xlsx_rows import column_letters, needs_quote, quoted, row_height_attrs

STYLES = {"wrap": {"text_wrap": True, "valign": "top"}, "diff": {"pattern": 1, "bg_color": "#FFF2CC"},
          "mark": {"bold": True, "font_color": "#C00000", "underline": 1},
          "open": {"locked": False, "num_format": "@"}}
STAMP = datetime(2026, 11, 23, 2, 0)
TEXTS = ["张三", "=1+1", "  +1", "\t-x", "a & b < c > d \"e\"", " lead", "trail ", "两行\n文字", "_x0041_ 字面",
         "ctl\x01x", "x005F_y", "\ufffe", "@A1", "\u3000=号", None, "李", "王丽", "张三丰", "&<>"]
RICH = {15: {"a": [(0, 1)]}, 16: {"a": [(1, 2)]}, 17: {"a": [(0, 3)], "b": [(0, 1), (2, 3)]}, 18: {"a": [(0, 2)]},
        0: {"b": [(1, 2)]}}


def _frame() -> pl.DataFrame:
    n = len(TEXTS)
    return pl.DataFrame({
        "k": list(range(n)), "h": [15.0, 18.0, 33.0, None] * (n // 4) + [48.0] * (n % 4),
        "n": [i * 7 if i % 3 else None for i in range(n)], "a": TEXTS, "b": list(reversed(TEXTS)),
        "z": pl.Series([None] * n, dtype=pl.Null),
    })


PLAN = [(1, "n", ("wrap",), False), (2, "a", ("wrap",), False), (3, "b", (), True), (4, "z", ("open",), True)]


def _cellwise(book: Book, ws, first: int, frame: pl.DataFrame) -> None:
    for r, row in enumerate(frame.iter_rows(named=True), start=first):
        if row["h"] is not None:
            ws.set_row(r - 1, row["h"])
        for c, src, styles, blank in PLAN:
            spans = RICH.get(row["k"], {}).get(src)
            if spans:
                book.rich(ws, r, c, row[src], spans, "mark", "diff")
            elif blank or row[src] is not None:
                book.value(ws, r, c, row[src], *styles)


def _write(path: Path, streamed: bool, at_once: bool) -> None:
    frame = _frame()
    with Book(path, STYLES, stamp=STAMP, rows=STREAM_FROM_ROWS if streamed else 0) as book:
        ws = book.sheet("表")
        book.merged_text(ws, 1, 1, 4, "标题", "wrap")
        if at_once:
            book.rows(ws, 3, frame, PLAN, height="h", rich=RICH, key="k", mark="mark", rich_styles=("diff",))
        else:
            _cellwise(book, ws, 3, frame)
        book.text(ws, 3 + frame.height + 1, 1, "合计")
        ws.protect()


def _cells(path: Path) -> list:
    ws = load_workbook(path, rich_text=True)["表"]
    def value(v):
        if isinstance(v, CellRichText):
            return [(b, None) if isinstance(b, str) else (b.text, b.font.b, b.font.u) for b in v]
        return v
    cells = [(c.coordinate, value(c.value), c.data_type, c.quotePrefix, c.font.b, c.fill.fgColor.rgb,
              c.protection.locked, c.number_format, c.alignment.wrap_text) for row in ws.iter_rows() for c in row]
    return [cells, ws.dimensions, sorted((r, d.height) for r, d in ws.row_dimensions.items()),
            sorted(map(str, ws.merged_cells.ranges))]


@pytest.mark.parametrize("streamed", [False, True])
def test_rows_at_once_read_back_as_written_cell_by_cell(tmp_path, streamed):
    _write(tmp_path / "cells.xlsx", streamed, at_once=False)
    _write(tmp_path / "rows.xlsx", streamed, at_once=True)
    want, got = _cells(tmp_path / "cells.xlsx"), _cells(tmp_path / "rows.xlsx")
    assert got == want
    assert any(isinstance(v, list) for _c, v, *_ in got[0])  # rich runs came through


def test_rows_at_once_equal_bytes(tmp_path):
    _write(tmp_path / "a.xlsx", False, at_once=True)
    _write(tmp_path / "b.xlsx", False, at_once=True)
    assert (tmp_path / "a.xlsx").read_bytes() == (tmp_path / "b.xlsx").read_bytes()


def test_rows_refuse_what_they_cannot_render(tmp_path):
    with pytest.raises(TypeError), Book(tmp_path / "x.xlsx", STYLES, stamp=STAMP) as book:
        book.rows(book.sheet("表"), 2, pl.DataFrame({"f": [1.5]}), [(1, "f", (), False)])
    assert not (tmp_path / "x.xlsx").exists()


@pytest.mark.parametrize("text", [t for t in TEXTS if t] + ["\x1c=1", " \n", "", "-", "a=1", "\u00a0+1"])
def test_quoted_is_needs_quote(text):
    assert pl.select(quoted(pl.lit(text))).item() is needs_quote(text)


@pytest.mark.parametrize(("col", "letters"), [(1, "A"), (24, "X"), (26, "Z"), (27, "AA"), (703, "AAA")])
def test_column_letters(col, letters):
    assert column_letters(col) == letters


@pytest.mark.parametrize(("points", "attrs"), [(15.0, ""), (18.0, ' ht="18" customHeight="1"'),
                                                (33.0, ' ht="33" customHeight="1"'), (24.1, ' ht="24" customHeight="1"')])
def test_row_height_as_xlsxwriter_rounds_it(points, attrs):
    assert row_height_attrs([points]) == {points: attrs}
