"""The workbook writer: text never a formula, streamed and in-memory books alike, replaced whole."""

from __future__ import annotations

import zipfile
from datetime import datetime
from pathlib import Path

import pytest
from openpyxl import load_workbook
from openpyxl.cell.rich_text import CellRichText

from reconcile.xlsx_book import STREAM_FROM_ROWS, Book, column_pixels, needs_quote

STYLES = {"wrap": {"text_wrap": True, "valign": "top"}, "mark": {"bold": True, "font_color": "#C00000"},
          "open": {"locked": False, "num_format": "@"}}
STAMP = datetime(2026, 11, 23, 2, 0)


@pytest.mark.parametrize(("text", "quoted"), [
    ("=1+1", True), ("+1", True), ("-1", True), ("@A1", True), ("\t=1", True), ("\n=1", True), ("  =1", True),
    ("a=1", False), ("张三", False), ("1-2", False),
])
def test_needs_quote(text, quoted):
    assert needs_quote(text) is quoted


@pytest.mark.parametrize(("width", "px"), [(4.5, 31), (9, 63), (19.5, 136), (26.8, 187)])
def test_column_never_wider_than_asked(width, px):
    assert column_pixels(width) == px and px <= width * 7


def _write(path: Path, rows: int) -> None:
    with Book(path, STYLES, stamp=STAMP, rows=rows) as book:
        ws = book.sheet("表")
        book.widths(ws, [10, 20, 5], hidden=[3])
        book.merged_text(ws, 1, 1, 3, "=说明", "wrap")
        for r in range(2, 6):
            ws.set_row(r - 1, 30)
            book.value(ws, r, 1, r)
            book.value(ws, r, 2, "=HYPERLINK(\"x\")" if r == 2 else f"名{r}", "wrap")
            book.value(ws, r, 3, None, "open")
        book.rich(ws, 6, 1, "王丽", [(1, 2)], "mark", "wrap")
        book.rich(ws, 6, 2, "张三", [(0, 2)], "mark")  # all of it marked
        book.rich(ws, 6, 3, "李", [(0, 1)], "mark")  # one character, all marked


@pytest.mark.parametrize("rows", [0, STREAM_FROM_ROWS])
def test_cells_as_written(tmp_path, rows):
    path = tmp_path / "a.xlsx"
    _write(path, rows)
    assert [p.name for p in tmp_path.iterdir()] == ["a.xlsx"]
    with zipfile.ZipFile(path) as zf:
        assert b"<f>" not in zf.read("xl/worksheets/sheet1.xml")
    ws = load_workbook(path, rich_text=True)["表"]
    assert ws["A1"].value == "=说明" and ws["A1"].data_type == "s" and ws["A1"].quotePrefix
    assert "A1:C1" in ws.merged_cells
    assert ws["B2"].data_type == "s" and ws["B2"].quotePrefix and not ws["B3"].quotePrefix
    assert [ws.cell(row=r, column=1).value for r in range(2, 6)] == [2, 3, 4, 5]
    assert all(not ws.cell(row=r, column=3).protection.locked for r in range(2, 6))
    assert ws.cell(row=2, column=3).number_format == "@" and ws.row_dimensions[2].height == 30
    assert ws.column_dimensions["C"].hidden
    rich = ws["A6"].value
    assert isinstance(rich, CellRichText) and str(rich) == "王丽"
    assert "".join(b.text for b in rich if not isinstance(b, str) and b.font.b) == "丽"
    assert "".join(b.text for b in ws["B6"].value if not isinstance(b, str) and b.font.b) == "张三"
    assert ws["C6"].value == "李" and ws["C6"].font.b


def test_streamed_and_in_memory_books_hold_the_same(tmp_path):
    _write(tmp_path / "m.xlsx", 0)
    _write(tmp_path / "s.xlsx", STREAM_FROM_ROWS)
    a, b = (load_workbook(tmp_path / n, rich_text=True)["表"] for n in ("m.xlsx", "s.xlsx"))
    cells = lambda ws: [(c.coordinate, str(c.value), c.data_type, c.quotePrefix, c.protection.locked, c.font.b)  # noqa: E731
                        for row in ws.iter_rows() for c in row]
    assert cells(a) == cells(b)


def test_equal_input_equal_bytes_and_a_failed_book_leaves_nothing(tmp_path):
    _write(tmp_path / "a.xlsx", 0)
    _write(tmp_path / "b.xlsx", 0)
    assert (tmp_path / "a.xlsx").read_bytes() == (tmp_path / "b.xlsx").read_bytes()
    assert load_workbook(tmp_path / "a.xlsx").properties.created == STAMP
    with pytest.raises(RuntimeError):
        with Book(tmp_path / "a.xlsx", STYLES, stamp=STAMP) as book:
            book.value(book.sheet("表"), 1, 1, "新")
            raise RuntimeError("stop")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.xlsx", "b.xlsx"]
    assert load_workbook(tmp_path / "a.xlsx")["表"]["B3"].value == "名3"  # the old file is untouched


# The cells a Book writes, each as plain xlsxwriter writes it: (row, col, value, styles, rich spans).
_SAME_AS_XLSXWRITER = [
    (1, 1, "张三", ("wrap",), None), (1, 2, 42, ("wrap",), None), (1, 3, 2.5, ("open",), None),
    (1, 4, None, ("open",), None), (1, 5, "=1+1", ("wrap",), None), (1, 6, True, ("wrap",), None),
    (2, 1, "433124200501231234", ("wrap",), [(6, 7), (17, 18)]), (2, 2, "王丽华", ("wrap",), [(0, 3)]),
    (2, 3, "a&b<c>", (), None), (2, 4, 7, (), None), (3, 1, "王莉", ("open",), [(1, 2)]),
]


@pytest.mark.parametrize("rows", [0, STREAM_FROM_ROWS])
def test_sheet_xml_as_xlsxwriter_writes_it(tmp_path, rows):
    import xlsxwriter

    with Book(tmp_path / "book.xlsx", STYLES, stamp=STAMP, rows=rows) as book:
        ws = book.sheet("表")
        for r, c, value, styles, spans in _SAME_AS_XLSXWRITER:
            if spans:
                book.rich(ws, r, c, value, spans, "mark", *styles)
            else:
                book.value(ws, r, c, value, *styles)
    plain = xlsxwriter.Workbook(str(tmp_path / "plain.xlsx"), {
        "constant_memory": rows >= STREAM_FROM_ROWS, "in_memory": rows < STREAM_FROM_ROWS,
        "strings_to_formulas": False, "strings_to_numbers": False, "strings_to_urls": False,
        "nan_inf_to_errors": False})
    plain.set_properties({"author": "recon", "created": STAMP})
    formats: dict = {}

    def fmt(*names, quote=False):
        props = {k: v for n in names for k, v in STYLES[n].items()} | ({"quote_prefix": True} if quote else {})
        key = (names, quote)
        if key not in formats:
            formats[key] = plain.add_format(props) if props else None
        return formats[key]

    pws = plain.add_worksheet("表")
    for r, c, value, styles, spans in _SAME_AS_XLSXWRITER:
        if spans:
            parts, pos = [], 0
            for i, j in spans:
                parts += ([value[pos:i]] if i > pos else []) + [fmt("mark"), value[i:j]]
                pos = j
            parts += [value[pos:]] if pos < len(value) else []
            if len(parts) == 2:
                parts = [fmt("mark"), value[:1], fmt("mark"), value[1:]]
            pws.write_rich_string(r - 1, c - 1, *parts, *([f] if (f := fmt(*styles)) is not None else []))
        elif isinstance(value, str):
            pws.write_string(r - 1, c - 1, value, fmt(*styles, quote=needs_quote(value)))
        elif value is None:
            pws.write_blank(r - 1, c - 1, None, fmt(*styles))
        elif isinstance(value, bool):
            pws.write_boolean(r - 1, c - 1, value, fmt(*styles))
        else:
            pws.write_number(r - 1, c - 1, value, fmt(*styles))
    plain.close()
    with zipfile.ZipFile(tmp_path / "book.xlsx") as a, zipfile.ZipFile(tmp_path / "plain.xlsx") as b:
        for part in ("xl/worksheets/sheet1.xml", "xl/sharedStrings.xml", "xl/styles.xml"):
            if part in b.namelist():
                assert a.read(part) == b.read(part), part
