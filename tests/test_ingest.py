"""ingest: every format, header detection under titles/merged headers, row numbers, ID kinds,
dropped rows, broken files, inbox layout and the header-alias loader.

Fixtures are built at run time (openpyxl for xlsx, xlwt for xls, encoded strings for text);
only `test_shared_samples` reads files from outside, and skips when they are absent.
"""

from __future__ import annotations

import datetime as dt
import os
import zipfile
from pathlib import Path

import openpyxl
import polars as pl
import pytest
import xlwt

from reconcile import ingest
from reconcile.errors import ConfigError
from reconcile.fields import FIELDS, SOURCES
from reconcile.inbox import list_inbox
from reconcile.ingest import (
    HEADER_ALIASES_FILE,
    PROBLEM_SCHEMA,
    IngestResult,
    SheetTable,
    load_header_aliases,
    read_file,
    read_inbox,
)

ALIASES = load_header_aliases([HEADER_ALIASES_FILE])
SAMPLES = Path(os.environ.get("RECON_SAMPLES", Path(__file__).resolve().parents[2] / "shared" / "samples"))  # ../shared beside the checkout


# ---- fixture writers ---------------------------------------------------------------------


def write_xlsx(path: Path, sheets: dict[str, list[list]],
               merges: dict[str, list[str]] | None = None, start_col: int = 1) -> Path:
    """Rows are written from row 1 (None = empty cell, [] = empty row); merges per sheet."""
    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    for name, rows in sheets.items():
        ws = wb.create_sheet(name)
        for r, row in enumerate(rows, start=1):
            for c, v in enumerate(row, start=start_col):
                if v is not None:
                    ws.cell(r, c, v)
        for rng in (merges or {}).get(name, []):
            ws.merge_cells(rng)
    wb.save(path)
    return path


def write_xls(path: Path, sheets: dict[str, list[list]],
              merges: dict[str, list[tuple[int, int, int, int]]] | None = None) -> Path:
    wb = xlwt.Workbook(encoding="utf-8")
    date_style = xlwt.easyxf(num_format_str="YYYY-MM-DD")
    for name, rows in sheets.items():
        ws = wb.add_sheet(name)
        merged = {(r1, c1): (r1, r2, c1, c2) for r1, r2, c1, c2 in (merges or {}).get(name, [])}
        covered = {(r, c) for r1, r2, c1, c2 in merged.values()
                   for r in range(r1, r2 + 1) for c in range(c1, c2 + 1)}
        for r, row in enumerate(rows):
            for c, v in enumerate(row):
                if (r, c) in merged:
                    ws.write_merge(*merged[(r, c)], v)
                elif (r, c) in covered or v is None:
                    continue
                elif isinstance(v, dt.date):
                    ws.write(r, c, v, date_style)
                else:
                    ws.write(r, c, v)
    wb.save(str(path))
    return path


def write_text(path: Path, rows: list[list], *, encoding: str = "utf-8", sep: str = ",",
               newline: str = "\n") -> Path:
    text = newline.join(sep.join("" if v is None else str(v) for v in row) for row in rows)
    path.write_bytes((text + newline).encode(encoding))
    return path


def html_xls(path: Path, rows: list[list], num_cols: tuple[int, ...] = ()) -> Path:
    out = ["<html><head><meta charset='utf-8'><style>td{}</style></head><body><table>"]
    for row in rows:
        cells = []
        for c, v in enumerate(row):
            if v is None:
                cells.append("<td></td>")
            elif c in num_cols:
                cells.append(f"<td x:num=\"{v}\">{v}</td>")
            else:
                cells.append(f"<td>{v}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table></body></html>")
    path.write_text("\n".join(out), encoding="utf-8")
    return path


def xml_xls(path: Path, rows: list[list]) -> Path:
    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           '<Workbook xmlns="urn:schemas-microsoft-com:office:spreadsheet" '
           'xmlns:ss="urn:schemas-microsoft-com:office:spreadsheet">',
           '<Worksheet ss:Name="花名册"><Table>']
    for r, row in enumerate(rows, start=1):
        if not row:
            continue
        out.append(f'<Row ss:Index="{r}">')
        for c, v in enumerate(row, start=1):
            if v is None:
                continue
            kind = "Number" if isinstance(v, (int, float)) else "String"
            out.append(f'<Cell ss:Index="{c}"><Data ss:Type="{kind}">{v}</Data></Cell>')
        out.append("</Row>")
    out.append("</Table></Worksheet></Workbook>")
    path.write_text("".join(out), encoding="utf-8")
    return path


def only_table(tables: list[SheetTable]) -> SheetTable:
    assert len(tables) == 1, [t.sheet for t in tables]
    return tables[0]


# A roster with a title row, a blank row, data, a blank row inside and a total row.
ROSTER = [
    ["某某小学家庭经济困难学生资助名单"],
    [],
    ["序号", "学生姓名", "身份证号", "出生日期"],
    ["1", "张三", "43312420050123181X", "2005-01-23"],
    [],
    ["2", " 阿依古丽·买买提 ", "433124200501231815", None],
    ["合 计", "2人"],
]
ROSTER_ROWS = [4, 6]
ROSTER_NAMES = ["张三", "阿依古丽·买买提"]


# ---- formats -------------------------------------------------------------------------------

FORMATS = [
    ("xlsx", "r.xlsx", lambda p: write_xlsx(p, {"名单": ROSTER}), "名单"),
    ("xls", "r.xls", lambda p: write_xls(p, {"名单": ROSTER}), "名单"),
    ("csv utf-8", "r.csv", lambda p: write_text(p, ROSTER), ""),
    ("csv utf-8 crlf", "r.csv", lambda p: write_text(p, ROSTER, newline="\r\n"), ""),
    ("csv utf-8-sig", "r.csv", lambda p: write_text(p, ROSTER, encoding="utf-8-sig"), ""),
    ("csv gb18030", "r.csv", lambda p: write_text(p, ROSTER, encoding="gb18030"), ""),
    ("csv tab", "r.csv", lambda p: write_text(p, ROSTER, sep="\t"), ""),
    ("csv semicolon", "r.csv", lambda p: write_text(p, ROSTER, sep=";"), ""),
    ("xls that is tsv gb18030", "r.xls", lambda p: write_text(p, ROSTER, sep="\t",
                                                               encoding="gb18030"), ""),
    ("xls that is utf-16 tsv", "r.xls", lambda p: write_text(p, ROSTER, sep="\t",
                                                             encoding="utf-16"), ""),
    ("xls that is html", "r.xls", lambda p: html_xls(p, ROSTER), ""),
    ("xls that is xml 2003", "r.xls", lambda p: xml_xls(p, ROSTER), "花名册"),
    ("XLSX upper-case", "R.XLSX", lambda p: write_xlsx(p, {"名单": ROSTER}), "名单"),
]


@pytest.mark.parametrize("label,name,make,sheet", FORMATS, ids=[f[0] for f in FORMATS])
def test_formats(tmp_path: Path, label: str, name: str, make, sheet: str) -> None:
    path = make(tmp_path / name)
    tables, problems = read_file(path, source="roster", rel=f"roster/{name}", aliases=ALIASES)
    assert problems == []
    t = only_table(tables)
    assert (t.source, t.file, t.sheet, t.header_row) == ("roster", f"roster/{name}", sheet, 3)
    assert t.frame.columns == ["source", "file", "sheet", "row", "seq", "name", "birth_date",
                               "id_number", "id_number_kind"]
    assert t.frame.schema["row"] == pl.Int64
    assert all(t.frame.schema[c] == pl.String for c in t.frame.columns if c != "row")
    assert t.frame["row"].to_list() == ROSTER_ROWS
    assert t.frame["name"].to_list() == ROSTER_NAMES
    assert t.frame["id_number"].to_list() == ["43312420050123181X", "433124200501231815"]
    assert t.frame["id_number_kind"].to_list() == ["text", "text"]
    assert t.frame["birth_date"].to_list() == ["2005-01-23", None]
    assert (t.dropped_rows, t.dropped_totals) == (2, 1)
    assert t.columns == {"seq": "序号", "name": "学生姓名", "birth_date": "出生日期",
                         "id_number": "身份证号"}


# ---- merged headers and row numbers ---------------------------------------------------------

# Rows 1-2 empty, title at 3, a two-row header at 4-5 (序号/学生姓名/与户主关系 merged down,
# 户主信息 merged across 姓名/身份证号), data at 6, 7, blank 8, data 9, total 10.
MERGED_ROWS = [
    [], [],
    ["学生资助名单"],
    ["序号", "学生姓名", "户主信息", None, "与户主关系"],
    [None, None, "姓名", "身份证号", None],
    [1, "王一", "王大", "433124198001011234", "之子"],
    [2, "王二", "王大", "433124198001011234", "之女"],
    [],
    [3, "李三", "李大", "433124197002021234", "之孙子"],
    ["总计", None, None, None, None],
]
GROUP_ROWS = [
    ["受助学生明细表"],
    ["填报单位：（盖章）    填报日期：2026年11月23日"],
    ["基本信息", None, None, "家庭信息", None],
    ["序号", "姓名", "身份证号码", "户主姓名", "户主身份证号码"],
    [1, "王一", "433124201001011234", "王大", "433124198001011234"],
    [None, None, None, None, None],
    ["小计：1人"],
]

MERGED_CASES = [
    ("xlsx vertical+across", "xlsx", MERGED_ROWS, ["A4:A5", "B4:B5", "C4:D4", "E4:E5"], 5,
     [6, 7, 9], {"seq": "序号", "name": "学生姓名", "head_name": "户主信息/姓名",
                 "head_id": "户主信息/身份证号", "relation": "与户主关系"}, 2),
    ("xls vertical+across", "xls", MERGED_ROWS, [(3, 4, 0, 0), (3, 4, 1, 1), (3, 3, 2, 3),
                                                 (3, 4, 4, 4)], 5,
     [6, 7, 9], {"seq": "序号", "name": "学生姓名", "head_name": "户主信息/姓名",
                 "head_id": "户主信息/身份证号", "relation": "与户主关系"}, 2),
    ("xlsx group row above", "xlsx", GROUP_ROWS, ["A3:C3", "D3:E3"], 4, [5],
     {"seq": "序号", "name": "姓名", "id_number": "身份证号码", "head_name": "户主姓名",
      "head_id": "户主身份证号码"}, 2),
    ("xls group row above", "xls", GROUP_ROWS, [(2, 2, 0, 2), (2, 2, 3, 4)], 4, [5],
     {"seq": "序号", "name": "姓名", "id_number": "身份证号码", "head_name": "户主姓名",
      "head_id": "户主身份证号码"}, 2),
]


@pytest.mark.parametrize("label,fmt,rows,merges,header_row,data_rows,columns,dropped",
                         MERGED_CASES, ids=[c[0] for c in MERGED_CASES])
def test_merged_headers_and_row_numbers(tmp_path, label, fmt, rows, merges, header_row,
                                        data_rows, columns, dropped) -> None:
    if fmt == "xlsx":
        path = write_xlsx(tmp_path / "m.xlsx", {"S": rows}, {"S": merges})
    else:
        path = write_xls(tmp_path / "m.xls", {"S": rows}, {"S": merges})
    tables, problems = read_file(path, source="roster", rel="roster/m", aliases=ALIASES)
    assert problems == []
    t = only_table(tables)
    assert t.header_row == header_row
    assert t.frame["row"].to_list() == data_rows
    assert t.columns == columns
    assert t.dropped_rows == dropped and t.dropped_totals == 1
    # what openpyxl sees at those rows is what we read there (xlsx only)
    if fmt == "xlsx":
        ws = openpyxl.load_workbook(path)["S"]
        name_col = {"学生姓名": 2, "姓名": 2}[columns["name"]]
        assert [ws.cell(r, name_col).value for r in data_rows] == t.frame["name"].to_list()


def test_leading_empty_columns_and_rows_keep_excel_row_numbers(tmp_path: Path) -> None:
    rows = [[], [], [], ["学生姓名", "身份证号"], ["甲", "433124200501231815"]]
    path = write_xlsx(tmp_path / "off.xlsx", {"S": rows}, start_col=4)   # data from column D
    t = only_table(read_file(path, source="roster", rel="roster/off.xlsx", aliases=ALIASES)[0])
    assert (t.header_row, t.frame["row"].to_list(), t.frame["name"].to_list()) == (4, [5], ["甲"])


def test_csv_quoted_line_break_row_is_line_where_record_starts(tmp_path: Path) -> None:
    text = '标题\n姓名,身份证号,备注\n甲,1,"两行\n备注"\n乙,2,\n'
    (tmp_path / "f.csv").write_text(text, encoding="utf-8")
    t = only_table(read_file(tmp_path / "f.csv", source="filing", rel="filing/f.csv",
                             aliases=ALIASES)[0])
    assert t.frame["row"].to_list() == [3, 5]
    assert t.frame["name"].to_list() == ["甲", "乙"]


BODY_CASES = [
    # (label, rows, expected data rows, expected names, dropped, header row)
    ("data row under an unknown header is not a sub-header",
     [["姓名", "证件号码", "备注"], ["甲", "1", "户主"], ["乙", "2", None]],
     [2, 3], ["甲", "乙"], 0, 1),
    ("header far below empty rows",
     [[]] * 40 + [["姓名", "证件号码"], ["甲", "1"]], [42], ["甲"], 0, 41),
    ("repeated header rows (printed pages) dropped",
     [["姓名", "证件号码"], ["甲", "1"], ["姓名", "证件号码"], ["乙", "2"]],
     [2, 4], ["甲", "乙"], 1, 1),
    ("template rows with only a number dropped, footnote too",
     [["序号", "姓名", "证件号码"], [1, "甲", "1"], [2, None, None], [3, None, None],
      ["注：本表一式三份", None, None]],
     [2], ["甲"], 3, 1),
    ("a row with an ID but no name is kept",
     [["姓名", "证件号码"], ["甲", "1"], [None, "2"]], [2, 3], ["甲", None], 0, 1),
    ("totals in any of the first three columns, or a total label in any mapped column",
     [["县", "乡镇", "姓名", "证件号码"], ["花垣县", "卫民镇", "甲", "1"],
      [None, None, "合计：1人", None], [None, "小 计", None, None], [None, None, None, "共计1"],
      [None, None, None, "共计有误"]],
     [2, 6], ["甲", None], 3, 1),
    ("a total row first (a sheet sorted in reverse), its label in the amount's neighbour",
     [["序号", "学校", "姓名", "证件号码", "备注"], [None, None, None, "合 计", "66000"],
      ["2", "一中", "乙", "2", None], ["1", "一中", "甲", "1", None]],
     [3, 4], ["乙", "甲"], 1, 1),
]


@pytest.mark.parametrize("label,rows,data_rows,names,dropped,header_row", BODY_CASES,
                         ids=[c[0] for c in BODY_CASES])
def test_body_rows(tmp_path, label, rows, data_rows, names, dropped, header_row) -> None:
    path = write_xlsx(tmp_path / "f.xlsx", {"S": rows})
    tables, problems = read_file(path, source="filing", rel="filing/f.xlsx", aliases=ALIASES)
    assert problems == []
    t = only_table(tables)
    assert t.header_row == header_row
    assert t.frame.select("row", "name").rows() == list(zip(data_rows, names))
    assert t.dropped_rows == dropped


def test_hidden_sheet_without_header_is_skipped_silently(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "h.xlsx", {"名单": [["学生姓名", "身份证号"], ["甲", "1"]],
                                            "下拉选项": [["男"], ["女"]]})
    wb = openpyxl.load_workbook(path)
    wb["下拉选项"].sheet_state = "hidden"
    wb.save(path)
    tables, problems = read_file(path, source="roster", rel="roster/h.xlsx", aliases=ALIASES)
    assert [t.sheet for t in tables] == ["名单"] and problems == []


# ---- ID kinds, numbers and dates ------------------------------------------------------------

KIND_CASES = [
    # (label, cell written, expected text, expected kind)
    ("int 18 digits", 433124200501231815, "433124200501231000", "number"),
    ("float as Excel stores", 4.33124200501231e17, "433124200501231000", "number"),
    ("15-digit number exact", 433124050123181, "433124050123181", "number"),
    ("sci text", "4.30524E+17", "4.30524E+17", "sci"),
    ("sci text lower", "4.33124e+17", "4.33124e+17", "sci"),
    ("text with X", "43312420050123181X", "43312420050123181X", "text"),
    ("text digits", "433124200501231815", "433124200501231815", "text"),
    ("apostrophe kept", "'433124200501231815", "'433124200501231815", "text"),
    ("spaces around stripped", "  433124200501231815 ", "433124200501231815", "text"),
    ("empty", None, None, None),
    ("blank text", "   ", None, None),
]


@pytest.mark.parametrize("fmt", ["xlsx", "xls"])
def test_id_cell_kinds(tmp_path: Path, fmt: str) -> None:
    rows = [["户主姓名", "户主身份证号", "成员姓名", "成员身份证号", "批准日期", "月保障金额"]]
    for i, (_label, cell, _text, _kind) in enumerate(KIND_CASES):
        rows.append([f"户主{i}", "433124197001011234", f"成员{i}", cell,
                     dt.date(2020, 4, 1) if i == 0 else "2020-04", 520 if i else 520.5])
    if fmt == "xlsx":
        path = write_xlsx(tmp_path / "d.xlsx", {"S": rows})
    else:
        path = write_xls(tmp_path / "d.xls", {"S": rows})
    t = only_table(read_file(path, source="dibao", rel="dibao/d", aliases=ALIASES)[0])
    got = t.frame.select("id_number", "id_number_kind").rows()
    assert got == [(text, kind) for _l, _c, text, kind in KIND_CASES]
    assert set(t.frame["head_id_kind"]) == {"text"}
    assert t.frame["approved_date"].to_list()[:2] == ["2020-04-01", "2020-04"]
    assert t.frame["monthly_amount"].to_list()[:2] == ["520.5", "520"]


def test_html_xls_number_cells(tmp_path: Path) -> None:
    rows = [["姓名", "证件号码"], ["甲", "4.33124200501231E+17"], ["乙", "43312420050123181X"]]
    path = html_xls(tmp_path / "f.xls", rows[:2], num_cols=(1,))
    with path.open("a", encoding="utf-8") as fh:  # a second table, text cells
        fh.write("<table><tr><td>乙</td><td>43312420050123181X</td></tr></table>")
    t = only_table(read_file(path, source="filing", rel="filing/f.xls", aliases=ALIASES)[0])
    assert t.frame.select("row", "id_number", "id_number_kind").rows() == [
        (2, "433124200501231000", "number"), (3, "43312420050123181X", "text")]


# ---- sheets ---------------------------------------------------------------------------------


def test_every_sheet_with_data_is_read(tmp_path: Path) -> None:
    sheets = {
        "说明": [["本表由学校填写，一式三份。"]],
        "一年级": [["班级", "学生姓名"], ["一(1)班", "甲"]],
        "空表": [],
        "二年级": [["标题"], ["班级", "学生姓名"], ["二(1)班", "乙"], ["二(2)班", "丙"]],
    }
    path = write_xlsx(tmp_path / "s.xlsx", sheets)
    tables, problems = read_file(path, source="roster", rel="roster/s.xlsx", aliases=ALIASES)
    assert [(t.sheet, t.frame["row"].to_list()) for t in tables] == [
        ("一年级", [2]), ("二年级", [3, 4])]
    assert [(p["sheet"], p["problem"]) for p in problems] == [("说明", "no_header_found")]


# ---- problems -------------------------------------------------------------------------------

PROBLEM_CASES = [
    ("missing required column", "roster", [["身份证号", "出生日期", "性别"], ["1", "2", "男"]],
     [("missing_required_column", "学生姓名", 1)], 0),
    ("no header", "roster", [["甲", "乙"], ["丙", "丁"]], [("no_header_found", None, None)], 0),
    ("dibao needs the head", "dibao", [["成员姓名", "成员身份证号"], ["甲", "1"]],
     [("missing_required_column", "户主姓名", 1)], 0),
    ("duplicate column keeps the first (not an ID field)", "roster",
     [["学生姓名", "身份证号", "姓名"], ["甲", "1", "乙"]],
     [("duplicate_column", "姓名", 1)], 1),
]


@pytest.mark.parametrize("label,source,rows,expected,n_tables", PROBLEM_CASES,
                         ids=[c[0] for c in PROBLEM_CASES])
def test_sheet_problems(tmp_path, label, source, rows, expected, n_tables) -> None:
    path = write_text(tmp_path / "p.csv", rows)
    tables, problems = read_file(path, source=source, rel=f"{source}/p.csv", aliases=ALIASES)
    assert [(p["problem"], p["column"], p["row"]) for p in problems] == expected
    assert len(tables) == n_tables
    if n_tables:
        assert tables[0].frame["name"].to_list() == ["甲"]


def _truncated_xlsx(p: Path) -> Path:
    good = write_xlsx(p.with_suffix(".tmp.xlsx"), {"S": ROSTER})
    p.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    good.unlink()
    return p


def _encrypted_xlsx(p: Path) -> Path:
    p.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 504
                  + "EncryptedPackage".encode("utf-16-le") + b"\x00" * 512)
    return p


def _xlsx_missing_sheet_xml(p: Path) -> Path:
    good = write_xlsx(p.with_suffix(".tmp.xlsx"), {"S": ROSTER})
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(p, "w") as zout:
        for item in zin.infolist():
            if not item.filename.startswith("xl/worksheets/"):
                zout.writestr(item, zin.read(item))
    good.unlink()
    return p


BROKEN_CASES = [
    ("random bytes .xlsx", "bad.xlsx", lambda p: p.write_bytes(os.urandom(3000)),
     "unreadable_file"),
    ("truncated xlsx", "bad.xlsx", _truncated_xlsx, "unreadable_file"),
    ("zip without sheets", "bad.xlsx", _xlsx_missing_sheet_xml, "unreadable_file"),
    ("random bytes .xls", "bad.xls", lambda p: p.write_bytes(b"\x00\x01\x02" * 1000),
     "unreadable_file"),
    ("password-protected", "bad.xlsx", _encrypted_xlsx, "unreadable_file"),
    ("undecodable csv", "bad.csv", lambda p: p.write_bytes(b"abc,\x80\xff\xfd\n" * 50),
     "encoding_undetected"),
    ("empty csv", "bad.csv", lambda p: p.write_bytes(b""), "empty_file"),
    ("empty workbook", "bad.xlsx", lambda p: write_xlsx(p, {"S": []}), "empty_file"),
]


@pytest.mark.parametrize("label,name,make,problem", BROKEN_CASES, ids=[c[0] for c in BROKEN_CASES])
def test_broken_file_is_a_problem_and_others_are_still_read(tmp_path, label, name, make,
                                                            problem) -> None:
    (tmp_path / "roster").mkdir()
    (tmp_path / "dibao").mkdir()
    (tmp_path / "filing").mkdir()
    make(tmp_path / "roster" / name)
    write_xlsx(tmp_path / "roster" / "good.xlsx", {"S": ROSTER})
    res = read_inbox(tmp_path, ALIASES)
    assert isinstance(res, IngestResult)
    assert res.problems.schema == pl.Schema(PROBLEM_SCHEMA)
    probs = res.problems.to_dicts()
    assert [(p["file"], p["problem"]) for p in probs] == [(f"roster/{name}", problem)]
    if problem == "unreadable_file":
        reason = probs[0]["value"]
        assert reason and len(reason) < 250 and "\\x" not in reason
    assert [t.file for t in res.tables] == ["roster/good.xlsx"]
    assert res.tables[0].frame["name"].to_list() == ROSTER_NAMES


# ---- the inbox ------------------------------------------------------------------------------


def test_inbox_layout(tmp_path: Path) -> None:
    (tmp_path / "roster" / "一中").mkdir(parents=True)
    (tmp_path / "filing").mkdir()
    write_xlsx(tmp_path / "roster" / "一中" / "b.xlsx", {"S": ROSTER})
    write_text(tmp_path / "roster" / "a.CSV", ROSTER)
    write_xlsx(tmp_path / "roster" / "~$a.xlsx", {"S": ROSTER})          # Excel lock file
    write_text(tmp_path / "roster" / ".hidden.csv", ROSTER)      # a dot is no reason to skip
    (tmp_path / "roster" / "Thumbs.db").write_bytes(b"\x00")
    (tmp_path / "roster" / "说明.pdf").write_bytes(b"%PDF")
    write_text(tmp_path / "filing" / "f.csv", [["姓名", "证件号码"], ["甲", "1"]],
               encoding="gb18030")
    calls = []
    res = read_inbox(tmp_path, ALIASES, on_file=lambda rel, i, n: calls.append((rel, i, n)))
    assert calls == [("roster/.hidden.csv", 1, 4), ("roster/a.CSV", 2, 4),
                     ("roster/一中/b.xlsx", 3, 4), ("filing/f.csv", 4, 4)]
    assert [(t.source, t.file) for t in res.tables] == [
        ("roster", "roster/.hidden.csv"), ("roster", "roster/a.CSV"),
        ("roster", "roster/一中/b.xlsx"), ("filing", "filing/f.csv")]
    assert res.files_read == 4
    assert sorted(res.problems.select("source", "file", "sheet", "problem").rows()) == [
        ("dibao", "dibao/", "", "source_folder_missing"),
        ("roster", "roster/Thumbs.db", "", "skipped_system_file"),
        ("roster", "roster/~$a.xlsx", "", "skipped_system_file"),
        ("roster", "roster/说明.pdf", "", "unsupported_file"),
    ]
    assert res.problems["value"].str.starts_with("「").all()


class _DyingProcess:
    """A second process that dies before answering (a reader that aborts it)."""

    def __init__(self, calls) -> None:
        pass

    def results(self):
        raise ChildProcessError("the second process ended (exit status -6) without an answer")

    def __exit__(self, *exc) -> None:
        pass


def _as_values(res: IngestResult) -> tuple:
    tables = [(t.source, t.file, t.sheet, t.columns, t.header_row, t.dropped_rows,
               t.dropped_totals, t.title, t.frame.schema, t.frame.rows()) for t in res.tables]
    return tables, res.problems.schema, res.problems.rows(), res.files_read


@pytest.mark.parametrize("label,second", [("second process", None), ("second process dies", _DyingProcess)])
def test_a_large_inbox_read_in_two_processes_gives_the_same_result(tmp_path, monkeypatch, label,
                                                                   second) -> None:
    for source in SOURCES:
        (tmp_path / source).mkdir()
    for i, (_, name, make, _) in enumerate(BROKEN_CASES):
        make(tmp_path / "roster" / f"{i}{name}")
        write_xlsx(tmp_path / "roster" / f"{i}good.xlsx", {"S": ROSTER, "T": ROSTER})
    write_xls(tmp_path / "dibao" / "d.xls", {"S": [["户主姓名", "成员身份证号"], ["甲", 110101200001011234]]})
    write_text(tmp_path / "filing" / "f.csv", [["姓名", "证件号码"], ["甲", "1"], ["乙", "2"]],
               encoding="gb18030")
    calls: dict[bool, list] = {True: [], False: []}
    alone = read_inbox(tmp_path, ALIASES, on_file=lambda *a: calls[False].append(a), parallel=False)
    monkeypatch.setattr(ingest, "PARALLEL_MIN_BYTES", 0)       # this small inbox split too
    monkeypatch.setattr(ingest, "_CHILD_START_COST", 0.0)
    if second is not None:
        monkeypatch.setattr(ingest, "SecondProcess", second)
    files, _ = list_inbox(tmp_path)
    assert 0 < ingest._split_at(files) < len(files)
    split = read_inbox(tmp_path, ALIASES, on_file=lambda *a: calls[True].append(a))
    assert _as_values(split) == _as_values(alone)
    assert calls[True] == calls[False] and len(calls[True]) == len(files)
    assert {p for p in alone.problems["problem"]} >= {"unreadable_file", "empty_file"}


SPLITS = [  # (inbox bytes needed to split, file sizes, files the second process reads)
    ("small inbox read alone", 10**9, [2000] * 4, 0),
    ("split in the middle", 0, [2000] * 4, 2),
    ("a big first file read here alone", 0, [600_000, 2000, 2000, 2000], 3),
    ("a big last file read there alone", 0, [2000, 2000, 2000, 600_000], 1),
]


@pytest.mark.parametrize("label,min_bytes,sizes,aside", SPLITS, ids=[s[0] for s in SPLITS])
def test_which_files_the_second_process_reads(tmp_path, monkeypatch, label, min_bytes, sizes,
                                              aside) -> None:
    (tmp_path / "filing").mkdir()
    for name, size in zip("abcd", sizes, strict=True):
        (tmp_path / "filing" / f"{name}.csv").write_bytes(b"x" * size)
    monkeypatch.setattr(ingest, "PARALLEL_MIN_BYTES", min_bytes)
    monkeypatch.setattr(ingest, "_CHILD_START_COST", 0.0)
    files, _ = list_inbox(tmp_path)
    assert len(files) - ingest._split_at(files) == aside


# ---- header spellings -----------------------------------------------------------------------

HEADER_CASES = [
    ("roster", "学生\n姓名", "name"),
    ("roster", "  姓 名 ", "name"),
    ("roster", "*学生姓名", "name"),
    ("roster", "身份证号码（18位）", "id_number"),
    ("roster", "资助金额（元）", "amount"),
    ("roster", "户主身份证号：", "head_id"),
    ("roster", "ＩＤ", None),
    ("dibao", "乡镇（街道）", "town"),
    ("dibao", "乡镇(街道)", "town"),
    ("dibao", "【村(社区)】", "village"),
    ("dibao", "村（社区）", "village"),
    ("dibao", "与户主\r\n关系", "relation"),
    ("filing", "证件号码", "id_number"),
    ("filing", "与户主的关系", "relation"),
    ("filing", "name", "name"),
]


FILLERS = {  # (required field's header, another known header, a stand-in for the required)
    "roster": ("学生姓名", "民族", "班级"),
    "dibao": ("户主姓名", "状态", "低保类别"),
    "filing": ("姓名", "性别", "县"),
}


@pytest.mark.parametrize("source,header,field", HEADER_CASES)
def test_header_spellings(tmp_path: Path, source: str, header: str, field: str | None) -> None:
    required, extra, stand_in = FILLERS[source]
    first = stand_in if field == {"dibao": "head_name"}.get(source, "name") else required
    path = write_xlsx(tmp_path / "h.xlsx", {"S": [[first, header, extra], ["甲", "乙", "丙"]]})
    tables, problems = read_file(path, source=source, rel=f"{source}/h.xlsx", aliases=ALIASES)
    t = only_table(tables)
    assert {f for f, h in t.columns.items() if h not in (first, extra)} == (
        {field} if field else set())


# ---- the alias loader -----------------------------------------------------------------------


def test_packaged_aliases_cover_every_field() -> None:
    for source in SOURCES:
        assert set(ALIASES[source]) == set(FIELDS[source])
        for fld, spellings in ALIASES[source].items():
            assert spellings, f"{source}.{fld} has no spelling"
    assert ALIASES["roster"]["name"][0] == "学生姓名"


def test_user_alias_file_adds_spellings(tmp_path: Path) -> None:
    user = tmp_path / "header_aliases.toml"
    user.write_text('[roster]\nname = ["娃娃名"]\nphone = "家长手机"\n', encoding="utf-8")
    merged = load_header_aliases([HEADER_ALIASES_FILE, user])
    assert merged["roster"]["name"][-1] == "娃娃名"
    assert merged["roster"]["name"][:-1] == ALIASES["roster"]["name"]
    assert "家长手机" in merged["roster"]["phone"]
    path = write_xlsx(tmp_path / "r.xlsx", {"S": [["娃娃名", "家长手机"], ["甲", "139"]]})
    t = only_table(read_file(path, source="roster", rel="roster/r.xlsx", aliases=merged)[0])
    assert t.frame.select("name", "phone").rows() == [("甲", "139")]


BAD_ALIAS_FILES = [
    ("unknown source", '[school]\nname = ["姓名"]\n', "school"),
    ("unknown field", '[roster]\nnickname = ["小名"]\n', "roster.nickname"),
    ("not a list", "[roster]\nname = 3\n", "roster.name"),
    ("spelling of another field", '[roster]\nhead_name = ["学生姓名"]\n', "roster.head_name"),
    ("clash after normalising", '[dibao]\nvillage = ["乡镇（街道）"]\n', "dibao.village"),
    ("not toml", "[roster\nname = \n", "header_aliases.toml"),
]


@pytest.mark.parametrize("label,text,key", BAD_ALIAS_FILES, ids=[c[0] for c in BAD_ALIAS_FILES])
def test_alias_file_validation(tmp_path: Path, label: str, text: str, key: str) -> None:
    user = tmp_path / "header_aliases.toml"
    user.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_header_aliases([HEADER_ALIASES_FILE, user])
    assert str(user) in str(err.value) and key in str(err.value)


def test_read_file_rejects_an_unknown_source(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="school"):
        read_file(write_text(tmp_path / "a.csv", ROSTER), source="school", rel="a.csv",
                  aliases=ALIASES)


def test_missing_alias_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nope.toml"):
        load_header_aliases([tmp_path / "nope.toml"])


# ---- the shared samples ---------------------------------------------------------------------


@pytest.mark.skipif(not (SAMPLES / "roster").is_dir(), reason="shared samples not present")
def test_shared_samples() -> None:
    res = read_inbox(SAMPLES, ALIASES)
    assert set(res.problems["problem"]) <= {"file_outside_source_folder"}
    by_source = {s: [t for t in res.tables if t.source == s] for s in SOURCES}
    assert len(by_source["roster"]) == len(list((SAMPLES / "roster").glob("*.xlsx")))
    assert all(t.dropped_totals == 1 for t in by_source["roster"])
    assert all(t.header_row in (3, 4) for t in by_source["roster"])
    first = by_source["roster"][0]
    ws = openpyxl.load_workbook(SAMPLES / first.file).active
    for row, name in first.frame.select("row", "name").rows():
        assert ws.cell(row, 5).value.strip() == name
    dibao = by_source["dibao"][0]
    assert dibao.header_row == 2 and dibao.frame["row"][0] == 3
    assert "number" in set(dibao.frame["id_number_kind"])
    filing = pl.concat([t.frame for t in by_source["filing"]])
    assert "sci" in set(filing["id_number_kind"])
    assert filing["name"].null_count() == 0
