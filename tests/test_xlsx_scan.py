"""xlsx_scan: far cells, DTDs and zip bombs refused before calamine; the scan is linear."""

from __future__ import annotations

import time
import zipfile
from pathlib import Path

import pytest

from reconcile import xlsx_scan
from reconcile.xlsx_scan import XlsxRefused, scan_xlsx

from test_hostile_inputs import GOOD, raw_xlsx

NS = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'


def _xlsx(tmp: Path, extra: str = "", *, sheet_xml: bytes | None = None, prolog: str = "",
          rows: list[list[str]] = GOOD) -> bytes:
    p = raw_xlsx(tmp / "s.xlsx", rows)
    with zipfile.ZipFile(p) as z:
        files = {n: z.read(n) for n in z.namelist()}
    x = files["xl/worksheets/sheet1.xml"].decode()
    x = x.replace("</sheetData>", extra + "</sheetData>").replace("?>", "?>" + prolog, 1)
    files["xl/worksheets/sheet1.xml"] = sheet_xml if sheet_xml is not None else x.encode()
    with zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as z:
        for n, d in files.items():
            z.writestr(n, d)
    return p.read_bytes()


def _far(ref: str, row: int, cell: str = "<v>1</v>") -> str:
    return f'<row r="{row}"><c r="{ref}">{cell}</c></row>'


# label, extra sheet XML, refused (None: read), GiB in the reason
GRID_CASES = [
    ("one value in XFD1048576 (calamine alone would ask for 512 GiB)", _far("XFD1048576", 1048576), "896.0"),
    ("one value in XFD30000", _far("XFD30000", 30000), "25.6"),
    ("one value in XFD8000", _far("XFD8000", 8000), "6.8"),
    ("a far cell without a value (styled only) is no grid", '<row r="1048576"><c r="XFD1048576" s="1"/></row>', None),
    ("a far empty row is no grid", '<row r="1048576" ht="20" customHeight="1"/>', None),
    ("a value in Z5000 is a small grid", _far("Z5000", 5000), None),
]


@pytest.mark.parametrize("label,extra,gib", GRID_CASES, ids=[c[0] for c in GRID_CASES])
def test_a_grid_beyond_the_bound_is_refused(tmp_path, label, extra, gib) -> None:
    data = _xlsx(tmp_path, extra)
    assert len(data) < 3000
    if gib is None:
        assert scan_xlsx(data).sheets["名单"].cells >= 6
        return
    with pytest.raises(XlsxRefused) as refused:
        scan_xlsx(data)
    assert refused.value.too_large and refused.value.sheet == "名单"
    assert f"{gib} GiB beyond its cells" in str(refused.value)


@pytest.mark.parametrize("body", [b"<c " * 350_000, b'<c r="A1" t="e"><f' * 60_000, b"<c<v>" * 200_000],
                         ids=["'<c ' repeated (1 MiB)", "error-cell starts repeated", "'<c<v>' repeated"])
def test_the_scan_is_linear_on_hostile_xml(tmp_path, body) -> None:
    data = _xlsx(tmp_path, sheet_xml=b"<worksheet " + NS.encode() + b"><sheetData>" + body)
    assert len(data) < 8000                        # a few KB on disk
    t0 = time.perf_counter()
    scan_xlsx(data)                                # not refused by the scan: calamine says it's broken
    assert time.perf_counter() - t0 < 10           # the old regexes took minutes


@pytest.mark.parametrize("where", ["sheet", "workbook"])
def test_a_dtd_is_refused(tmp_path, where) -> None:
    xxe = '<!DOCTYPE w [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
    if where == "sheet":
        data = _xlsx(tmp_path, prolog=xxe)
    else:
        p = raw_xlsx(tmp_path / "w.xlsx", GOOD)
        with zipfile.ZipFile(p) as z:
            files = {n: z.read(n) for n in z.namelist()}
        files["xl/workbook.xml"] = files["xl/workbook.xml"].replace(b"?>", b"?>" + xxe.encode(), 1)
        with zipfile.ZipFile(p, "w") as z:
            for n, d in files.items():
                z.writestr(n, d)
        data = p.read_bytes()
    with pytest.raises(XlsxRefused, match="DTD"):
        scan_xlsx(data)


def test_cells_are_found_across_chunk_boundaries(tmp_path, monkeypatch) -> None:
    rows = [["学生姓名", "身份证号"]] + [
        [f"学生{i}", 't="e" <v>#N/A</v>' if i % 7 == 0 else ("<f>1+1</f><v/>" if i % 11 == 0 else str(i))]
        for i in range(1, 400)]
    data = _xlsx(tmp_path, rows=rows)
    whole = scan_xlsx(data)
    monkeypatch.setattr(xlsx_scan, "_CHUNK", 1000)
    monkeypatch.setattr(xlsx_scan, "_OVERLAP", 600)
    pieces = scan_xlsx(data)
    assert pieces.flagged() == whole.flagged()
    assert len(whole.flagged()["名单"]) == 399 // 7 + 399 // 11 - 399 // 77
    assert (pieces.sheets["名单"].cells, pieces.sheets["名单"].rows) == (whole.sheets["名单"].cells, (1, 400))


# label, extra sheet XML, (value cells added, last row, last column) or None: nothing counted
REF_CASES = [
    ("the reference after other attributes", '<row r="500"><c s="1" t="n" r="C500"><v>1</v></c></row>', (1, 500, None)),
    ("the first well-formed reference of the tag", '<row r="600"><c r="a600" r="Z600"><v>1</v></c></row>', (1, 600, 25)),
    ("a formula with its value", '<row r="650"><c r="B650"><f>1+1</f><v>2</v></c></row>', (1, 650, None)),
    ("start tag beyond the attribute bound", '<row r="700"><c r="Z700" x="' + "a" * 600 + '"><v>1</v></c></row>', None),
    ("a value cell without a reference", '<row r="800"><c s="1"><v>1</v></c></row>', None),
    ("a cell without a value", '<row r="900"><c r="Z900" s="1"></c></row>', None),
]


@pytest.mark.parametrize("label,extra,added", REF_CASES, ids=[c[0] for c in REF_CASES])
def test_each_value_cell_is_located_by_its_reference(tmp_path, label, extra, added) -> None:
    base = scan_xlsx(_xlsx(tmp_path)).sheets["名单"]
    got = scan_xlsx(_xlsx(tmp_path, extra)).sheets["名单"]
    if added is None:
        assert (got.cells, got.rows, got.cols) == (base.cells, base.rows, base.cols)
        return
    n, last_row, last_col = added
    assert got.cells == base.cells + n and got.rows == (base.rows[0], last_row)
    assert got.cols == (base.cols[0], base.cols[1] if last_col is None else last_col)
