"""Safe output (issue 6): no workbook cell built from input can run as a formula, checked on
the written file itself (the sheet XML and openpyxl's reading of it)."""

from __future__ import annotations

import re
import zipfile

import polars as pl
from openpyxl import load_workbook

from reconcile.report import HEADER_ROW, write_school_workbooks

STARTS = ["=", "+", "-", "@", "\t", "\r", " =", "\t@", "\r\n="]
PAYLOADS = [s + tail for s in STARTS for tail in ("1+1", "HYPERLINK(\"http://x\",\"点我\")", "cmd|' /C calc'!A0")]


def _frame(values: list[str]) -> pl.DataFrame:
    n = len(values)
    return pl.DataFrame({
        "kind": ["name_mismatch"] * n, "severity": ["low"] * n, "source": ["roster"] * n,
        "file": values, "sheet": values, "row": list(range(2, n + 2)), "system": ["filing"] * n,
        "system_file": values, "system_sheet": values, "system_row": list(range(2, n + 2)),
        "field": ["name"] * n, "value": [v + "甲" for v in values], "system_value": [v + "乙" for v in values],
        "message": values,
        "school": ["一中"] * n, "town": values, "name": values, "system_name": values,
    })


def test_no_input_cell_is_a_formula(tmp_path) -> None:
    [path] = write_school_workbooks(_frame(PAYLOADS), tmp_path)
    with zipfile.ZipFile(path) as zf:
        for name in zf.namelist():
            if name.startswith("xl/worksheets/"):
                assert not re.search(rb"<f[ >]", zf.read(name)), name   # no formula element
    wb = load_workbook(path)
    ws = wb.worksheets[0]
    checked = 0
    for row in ws.iter_rows(min_row=HEADER_ROW + 1):
        for cell in row:
            assert cell.data_type != "f"
            v = cell.value
            if isinstance(v, str) and v.lstrip(" ").startswith(("=", "+", "-", "@", "\t", "\n")):
                assert cell.data_type == "s" and cell.quotePrefix, (cell.coordinate, v)
                checked += 1
    assert checked >= len(PAYLOADS) * 8


def test_overlong_text_is_cut_to_excels_limit(tmp_path) -> None:
    [path] = write_school_workbooks(_frame(["长" * 40_000]), tmp_path)
    ws = load_workbook(path).worksheets[0]
    assert max(len(c.value) for r in ws.iter_rows(min_row=HEADER_ROW + 1) for c in r if isinstance(c.value, str)) == 32767


def test_control_characters_and_rare_characters_in_cells(tmp_path) -> None:
    [path] = write_school_workbooks(_frame(["王\x07五\x1b", "𬱖😀䶮"]), tmp_path)
    values = {c.value for r in load_workbook(path).worksheets[0].iter_rows(min_row=HEADER_ROW + 1) for c in r}
    assert "王五" in values and "𬱖😀䶮" in values
