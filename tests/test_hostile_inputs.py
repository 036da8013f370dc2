"""Hostile input: every bad file or cell a county may send becomes a row problem naming file,
sheet, row and column, and the rest of the inbox is still read (issue 6).

Table-driven: FILE_CASES are whole files dropped into an inbox beside a good one; CELL_CASES
are single bad cells inside an otherwise good sheet. xlsx fixtures whose XML matters (error
cells, formulas with or without a stored result, control characters) are written by hand.
"""

from __future__ import annotations

import datetime as dt
import io
import struct
import time
import zipfile
from pathlib import Path

import openpyxl
import polars as pl
import pytest

from reconcile import ingest, xlsx_scan
from reconcile.ingest import HEADER_ALIASES_FILE, PROBLEM_SCHEMA, load_header_aliases, read_file, read_inbox
from reconcile.normalize import normalize_source

ALIASES = load_header_aliases([HEADER_ALIASES_FILE])
ID1 = "43312420050123181X"   # synthetic, checksum-valid
ID2 = "433124200501231815"
GOOD = [["学生姓名", "身份证号", "出生日期"], ["张三", ID1, "2005-01-23"], ["李四", ID2, "2005-01-23"]]


# ---- writers -------------------------------------------------------------------------------


def write_xlsx(path: Path, rows: list[list], sheet: str = "名单") -> Path:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = sheet
    for row in rows:
        ws.append(row)
    wb.save(path)
    return path


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def raw_xlsx(path: Path, rows: list[list[str]], sheet: str = "名单") -> Path:
    """A minimal xlsx whose cells are given as raw XML: a plain str is an inline string, a
    cell starting with '<' is used as the inner XML of <c> (plus ` t=".."` when it starts
    with 't=')."""
    cells_xml = []
    for r, row in enumerate(rows, start=1):
        cs = []
        for c, v in enumerate(row):
            ref = f"{chr(65 + c)}{r}"
            if v is None:
                continue
            if v.startswith("t="):
                attr, inner = v.split(" ", 1)
                cs.append(f'<c r="{ref}" {attr}>{inner}</c>')
            elif v.startswith("<"):
                cs.append(f'<c r="{ref}">{v}</c>')
            else:
                cs.append(f'<c r="{ref}" t="inlineStr"><is><t>{_esc(v)}</t></is></c>')
        cells_xml.append(f'<row r="{r}">{"".join(cs)}</row>')
    ns = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
    rel_ns = 'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"'
    files = {
        "[Content_Types].xml": (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
            '<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
            "</Types>"),
        "_rels/.rels": (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/>'
            "</Relationships>"),
        "xl/workbook.xml": (
            f'<?xml version="1.0" encoding="UTF-8"?><workbook {ns} {rel_ns}><sheets>'
            f'<sheet name="{sheet}" sheetId="1" r:id="rId1"/></sheets></workbook>'),
        "xl/_rels/workbook.xml.rels": (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/>'
            "</Relationships>"),
        "xl/worksheets/sheet1.xml": (
            f'<?xml version="1.0" encoding="UTF-8"?><worksheet {ns}><sheetData>'
            f'{"".join(cells_xml)}</sheetData></worksheet>'),
    }
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return path


def write_csv(path: Path, rows: list[list], encoding: str = "utf-8") -> Path:
    text = "\n".join(",".join("" if v is None else str(v) for v in row) for row in rows) + "\n"
    path.write_bytes(text.encode(encoding))
    return path


def truncated_xlsx(p: Path) -> Path:
    data = write_xlsx(p, GOOD).read_bytes()
    p.write_bytes(data[: len(data) // 2])
    return p


def encrypted_xlsx(p: Path) -> Path:
    # What Excel writes for a password-protected workbook: an OLE compound file holding an
    # EncryptedPackage stream (the header is enough for the reader to tell).
    p.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 504
                  + "EncryptedPackage".encode("utf-16-le") + b"\x00" * 2048)
    return p


def ratio_bomb(p: Path, mib: int = 64) -> Path:
    """A valid xlsx whose sheet XML is padded with `mib` MiB of blanks (ratio ~1000:1)."""
    raw_xlsx(p, GOOD)
    with zipfile.ZipFile(p, "a", zipfile.ZIP_DEFLATED) as zf, zf.open("xl/media/pad.xml", "w") as fh:
        block = b" " * (1024 * 1024)
        for _ in range(mib):
            fh.write(block)
    return p


def lying_bomb(p: Path) -> Path:
    """A zip whose directory claims a tiny sheet that really inflates to 32 MiB."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("xl/worksheets/sheet1.xml", b"<x>" + b" " * (32 * 1024 * 1024) + b"</x>")
    data = bytearray(buf.getvalue())
    real = 32 * 1024 * 1024 + 7
    for sig, off in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):   # local header, central dir
        i = data.find(sig)
        assert struct.unpack_from("<I", data, i + off)[0] == real
        struct.pack_into("<I", data, i + off, 1000)
    p.write_bytes(bytes(data))
    return p


def docx_as_xlsx(p: Path) -> Path:
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("word/document.xml", "<w:document/>")
    return p


def html_as_xls(p: Path) -> Path:
    body = "".join("<tr>" + "".join(f"<td>{v}</td>" for v in row) + "</tr>" for row in GOOD)
    p.write_text(f"<html><body><table>{body}</table></body></html>", encoding="utf-8")
    return p


# ---- whole files -----------------------------------------------------------------------------

# label, file name, writer, expected (problem, sheet, row) list, text the value must contain,
# names read from the file (None: no table)
FILE_CASES = [
    ("truncated xlsx", "bad.xlsx", truncated_xlsx,
     [("unreadable_file", "", None)], "corrupt or truncated xlsx", None),
    ("password-protected workbook", "bad.xlsx", encrypted_xlsx,
     [("unreadable_file", "", None)], "password-protected", None),
    ("empty file", "bad.xlsx", lambda p: p.write_bytes(b""),
     [("empty_file", "", None)], None, None),
    ("empty csv (blank lines only)", "bad.csv", lambda p: p.write_bytes(b"\r\n \r\n"),
     [("empty_file", "", None)], None, None),
    ("workbook with an empty sheet", "bad.xlsx", lambda p: write_xlsx(p, []),
     [("empty_file", "", None)], None, None),
    ("header-only xlsx", "bad.xlsx", lambda p: write_xlsx(p, GOOD[:1]),
     [("no_data_rows", "名单", 1)], "no data rows", []),
    ("header-only csv", "bad.csv", lambda p: write_csv(p, GOOD[:1]),
     [("no_data_rows", "", 1)], "no data rows", []),
    ("xlsx named .csv", "wrong.csv", lambda p: write_xlsx(p, GOOD), [], None, ["张三", "李四"]),
    ("csv named .xlsx", "wrong.xlsx", lambda p: write_csv(p, GOOD), [], None, ["张三", "李四"]),
    ("word document named .xlsx", "bad.xlsx", docx_as_xlsx,
     [("unreadable_file", "", None)], "corrupt or truncated xlsx", None),
    ("pdf named .xls", "bad.xls", lambda p: p.write_bytes(b"%PDF-1.4\n\x00\x01\x02\x03" * 500),
     [("unreadable_file", "", None)], "not a workbook or text file", None),
    (".xls that is an HTML table", "web.xls", html_as_xls, [], None, ["张三", "李四"]),
    (".xls that is tab-separated GBK", "tsv.xls",
     lambda p: p.write_bytes("\n".join("\t".join(r) for r in GOOD).encode("gbk")), [], None,
     ["张三", "李四"]),
    ("csv in an undecodable encoding", "bad.csv",
     lambda p: p.write_bytes(b"\xff\xfe\x00\xd8" + b"abc,\x80\xff\n" * 50),
     [("encoding_undetected", "", None)], "neither UTF-8", None),
    ("csv in latin-1 bytes gb18030 rejects", "bad.csv",
     lambda p: p.write_bytes("姓名,身份证号\n".encode("utf-8") + b"M\xfcller,\x80\xff\n"),
     [("encoding_undetected", "", None)], "neither UTF-8", None),
    ("zip bomb: compression ratio", "bomb.xlsx", ratio_bomb,
     [("unreadable_file", "", None)], "zip bomb refused", None),
    ("zip bomb: directory lies about sizes", "bomb.xlsx", lying_bomb,
     [("unreadable_file", "", None)], "xlsx", None),
]


@pytest.mark.parametrize("label,name,make,expected,text,names", FILE_CASES,
                         ids=[c[0] for c in FILE_CASES])
def test_bad_file_is_a_problem_and_the_rest_is_read(tmp_path, label, name, make, expected, text,
                                                    names) -> None:
    for s in ("roster", "dibao", "filing"):
        (tmp_path / s).mkdir()
    make(tmp_path / "roster" / name)
    write_xlsx(tmp_path / "roster" / "good.xlsx", GOOD)
    t0 = time.perf_counter()
    res = read_inbox(tmp_path, ALIASES)
    assert time.perf_counter() - t0 < 20   # bombs are refused, not inflated
    assert res.problems.schema == pl.Schema(PROBLEM_SCHEMA)
    probs = res.problems.to_dicts()
    assert [(p["problem"], p["sheet"], p["row"]) for p in probs] == expected
    assert all(p["file"] == f"roster/{name}" for p in probs)
    if text:
        assert text in probs[0]["value"], probs[0]["value"]
        assert len(probs[0]["value"]) < 250 and "\\x" not in probs[0]["value"]
    by_file = {t.file: t.frame["name"].to_list() for t in res.tables}
    assert by_file["roster/good.xlsx"] == ["张三", "李四"]          # the rest of the run
    assert by_file.get(f"roster/{name}") == names


def test_zip_bomb_limits_on_declared_size(tmp_path, monkeypatch) -> None:
    path = write_xlsx(tmp_path / "big.xlsx", GOOD * 2000)
    monkeypatch.setattr(xlsx_scan, "MAX_XLSX_UNCOMPRESSED", 64 * 1024)
    _, probs = read_file(path, source="roster", rel="roster/big.xlsx", aliases=ALIASES)
    assert [p["problem"] for p in probs] == ["unreadable_file"]
    assert probs[0]["value"].startswith("「文件无法读取」zip bomb refused: declares")


def test_too_large_file_is_refused_before_reading(tmp_path, monkeypatch) -> None:
    path = write_csv(tmp_path / "big.csv", GOOD * 100)
    monkeypatch.setattr(ingest, "MAX_FILE_BYTES", 1000)
    _, probs = read_file(path, source="roster", rel="roster/big.csv", aliases=ALIASES)
    assert [p["problem"] for p in probs] == ["too_large"]
    assert probs[0]["value"].startswith("「文件或工作表超出读取上限，未读取」file too large")


def test_a_text_file_beyond_the_reading_bound_is_refused_unread(tmp_path) -> None:
    path = tmp_path / "huge.csv"
    with path.open("wb") as fh:                  # sparse: 457 MiB on paper, nothing on disk
        fh.write("学生姓名,身份证号\n张三,1\n".encode())
        fh.truncate(457 * 2**20)
    t0 = time.perf_counter()
    _, probs = read_file(path, source="roster", rel="roster/huge.csv", aliases=ALIASES)
    assert time.perf_counter() - t0 < 5
    assert [(p["problem"], p["sheet"], p["row"]) for p in probs] == [("too_large", "", None)]
    assert "457 MiB of text" in probs[0]["value"] and "split the file" in probs[0]["value"]


# ---- single cells ------------------------------------------------------------------------------

LONG = "长" * 5000
# label, rows (header first), expected [(problem, row, column, value)], expected names,
# expected id numbers
CELL_CASES = [
    ("formula with a stored result is read as its value", [
        ["学生姓名", "身份证号"],
        ['t="str" <f>CONCATENATE("张","三")</f><v>张三</v>', ID1],
        ["李四", ID2],
    ], [], ["张三", "李四"], [ID1, ID2]),
    ("formula without a stored result", [
        ["学生姓名", "身份证号"],
        ['<f>CONCATENATE("张","三")</f><v/>', ID1],
        ["李四", ID2],
    ], [("formula_without_value", 2, "学生姓名",
          "「公式没有保存的结果，按空值读取」formula with no stored result, read as empty")],
        [None, "李四"], [ID1, ID2]),
    ("error value #N/A", [
        ["学生姓名", "身份证号"],
        ["张三", 't="e" <f>VLOOKUP(A2,B:B,1,0)</f><v>#N/A</v>'],
        ["李四", ID2],
    ], [("error_value", 2, "身份证号", "#N/A")], ["张三", "李四"], [None, ID2]),
    ("error value #REF! without formula", [
        ["学生姓名", "身份证号"],
        ["张三", ID1],
        ['t="e" <v>#REF!</v>', ID2],
    ], [("error_value", 3, "学生姓名", "#REF!")], ["张三", None], [ID1, ID2]),
    ("error text typed into a cell", [
        ["学生姓名", "身份证号"], ["#DIV/0!", ID1], ["李四", ID2],
    ], [("error_value", 2, "学生姓名", "#DIV/0!")], [None, "李四"], [ID1, ID2]),
    ("very long text", [
        ["学生姓名", "身份证号"], [LONG, ID1], ["李四", ID2],
    ], [("value_too_long", 2, "学生姓名", f"5000 characters, cut to 1000: {'长' * 40}…")],
        ["长" * 1000, "李四"], [ID1, ID2]),
    ("control characters (_x0007_ escapes)", [
        ["学生姓名", "身份证号"], ["王_x0007_五_x001B_", ID1], ["李四", ID2],
    ], [("control_characters", 2, "学生姓名", "王\ufffd五\ufffd")], ["王五", "李四"], [ID1, ID2]),
    ("emoji and characters outside GBK are kept as they are", [
        ["学生姓名", "身份证号"], ["王䶮", ID1], ["𬱖😀", ID2],
    ], [], ["王䶮", "𬱖😀"], [ID1, ID2]),
    ("text that looks like a formula stays text", [
        ["学生姓名", "身份证号"], ["=1+1", "+" + ID1], ["@SUM(A1)", "-" + ID2],
    ], [], ["=1+1", "@SUM(A1)"], ["+" + ID1, "-" + ID2]),
]


@pytest.mark.parametrize("fmt", ["xlsx", "csv"])
@pytest.mark.parametrize("label,rows,expected,names,ids", CELL_CASES, ids=[c[0] for c in CELL_CASES])
def test_bad_cell_is_a_problem_naming_the_cell(tmp_path, fmt, label, rows, expected, names, ids) -> None:
    if fmt == "csv":
        if any(isinstance(v, str) and v.startswith(("<", "t=")) for r in rows for v in r):
            pytest.skip("XML-only cell (a CSV has no formulas or error cells)")
        rows = [[v.replace("_x0007_", "\x07").replace("_x001B_", "\x1b") for v in r] for r in rows]
        path = write_csv(tmp_path / "r.csv", rows, encoding="gb18030")   # GB18030 holds 𬱖 😀
        sheet = ""
    else:
        path = raw_xlsx(tmp_path / "r.xlsx", rows)
        sheet = "名单"
    tables, probs = read_file(path, source="roster", rel=f"roster/r.{fmt}", aliases=ALIASES)
    assert [(p["problem"], p["row"], p["column"], p["value"]) for p in probs] == expected
    assert all((p["file"], p["sheet"]) == (f"roster/r.{fmt}", sheet) for p in probs)
    [t] = tables
    assert t.frame["row"].to_list() == [2, 3]
    assert t.frame["name"].to_list() == names
    assert t.frame["id_number"].to_list() == ids


def test_dates_as_serial_numbers(tmp_path, settings) -> None:
    rows = [["学生姓名", "身份证号", "出生日期"],
            ["张三", ID1, '<v>38375</v>'],          # a number cell: 2005-01-23
            ["李四", ID2, "38375"],                 # the serial typed as text
            ["王五", ID2, '<v>38375.5</v>']]        # with a time of day
    tables, probs = read_file(raw_xlsx(tmp_path / "d.xlsx", rows), source="roster",
                              rel="roster/d.xlsx", aliases=ALIASES)
    assert probs == []
    recs, rp = normalize_source(tables, "roster", settings)
    recs = recs.sort("row")
    assert recs["birth_date"].to_list() == ["38375", "38375", "38375.5"]
    assert recs["birth"].to_list() == [dt.date(2005, 1, 23), dt.date(2005, 1, 23), None]
    assert rp.filter(pl.col("row") == 4)["problem"].to_list() == ["bad_date"]


def test_hostile_cells_survive_to_the_store_and_workbook(tmp_path, settings) -> None:
    """Rare characters and emoji reach the records unchanged (no '?' from a GBK round trip)."""
    rows = [["学生姓名", "身份证号"], ["王䶮", ID1], ["𬱖😀", ID2]]
    tables, _ = read_file(raw_xlsx(tmp_path / "e.xlsx", rows), source="roster",
                          rel="roster/e.xlsx", aliases=ALIASES)
    recs, _ = normalize_source(tables, "roster", settings)
    assert "䶮" in recs["name_norm"][0] and "𬱖" in recs["name_norm"][1]


# ---- property: normalisation never drops or crashes on hostile text --------------------------

from hypothesis import HealthCheck, given, settings as hsettings, strategies as st  # noqa: E402

HOSTILE_TEXT = st.one_of(
    st.none(),
    st.text(alphabet=st.sampled_from(list("0123456789Xx０１２３４５６７８９ｘ.-+=/年月日 \t\x07·•・．"
                                          "张王李阿依古丽䶮𬱖😀?*#N/A")), max_size=25),
    st.text(max_size=12),
)


@hsettings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.fixed_dictionaries({
    f: HOSTILE_TEXT for f in ("name", "id_number", "birth_date", "gender", "head_name", "head_id",
                              "student_no", "amount", "school", "town", "village")}),
    min_size=1, max_size=8))
def test_normalize_keeps_every_row_of_hostile_text(settings, rows) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import sheet

    recs, probs = normalize_source([sheet("roster", rows)], "roster", settings)
    assert recs.height == len(rows)                         # no row lost
    assert sorted(recs["row"].to_list()) == list(range(2, 2 + len(rows)))
    assert probs.schema == pl.Schema(PROBLEM_SCHEMA)
