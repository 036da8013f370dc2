"""Clerk workbooks: masking, layout, sorting, formula safety, reproducibility."""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest
from openpyxl import load_workbook

from openpyxl.cell.rich_text import CellRichText
from openpyxl.utils import column_index_from_string, get_column_letter

from reconcile.config import NoticeSettings
from reconcile.report import (
    HEADER_ROW,
    HEADERS,
    SHEET_HELP,
    SHEET_PROBLEMS,
    write_clerk_workbooks,
    write_public_notices,
    write_school_workbooks,
)
from reconcile.vocabulary import NO_SCHOOL

ID_A = "43312420050123123X"
ID_B = "43312420050123124X"  # differs from ID_A at position 16
ID_C = "430524201003157716"
ID_D = "430524201003517716"  # ID_C with positions 12 and 13 swapped


def _frame(rows: list[dict]) -> pl.DataFrame:
    schema = {
        "kind": pl.String, "severity": pl.String, "source": pl.String, "file": pl.String,
        "sheet": pl.String, "row": pl.Int64, "system": pl.String, "system_file": pl.String,
        "system_sheet": pl.String, "system_row": pl.Int64, "field": pl.String,
        "value": pl.String, "system_value": pl.String, "message": pl.String,
        "school": pl.String, "town": pl.String, "name": pl.String, "id_number": pl.String,
        "village": pl.String,
        "system_name": pl.String, "system_id": pl.String, "diff_positions": pl.List(pl.Int8),
    }
    full = [{k: r.get(k) for k in schema} for r in rows]
    return pl.DataFrame(full, schema=schema)


def _d(**kw) -> dict:
    base = {"source": "roster", "file": "roster/一中.xlsx", "sheet": "Sheet1", "school": "一中",
            "town": "城关镇", "name": "张三", "id_number": ID_A}
    base.update(kw)
    return base


ROWS = [
    _d(kind="not_found", severity="medium", row=5, message="两系统均未找到该学生"),
    _d(kind="id_mismatch", severity="high", row=9, system="filing", system_file="filing/建档.xlsx",
       system_sheet="户", system_row=40, field="id_number", value=ID_A, system_value=ID_B,
       system_name="张三", system_id=ID_B, diff_positions=[16], message="身份证号第17位不同"),
    _d(kind="name_mismatch", severity="high", row=3, system="dibao", system_file="dibao/低保.xls",
       system_sheet="Sheet1", system_row=7, field="name", value="王丽", system_value="王莉",
       name="王丽", id_number=ID_C, system_name="王莉", system_id=ID_C, message="姓名不一致"),
    _d(kind="id_mismatch", severity="high", row=2, system="dibao", system_file="dibao/低保.xls",
       system_sheet="Sheet1", system_row=8, field="id_number", value=ID_C, system_value=ID_D,
       name="李四", id_number=ID_C, system_name="李四", system_id=ID_D, diff_positions=[12, 13],
       message="身份证号两位颠倒"),
    _d(kind="duplicate_claim", severity="low", row=4, school="二中", file="roster/二中.xlsx",
       message="与一中重复申报"),
    _d(kind="id_fact_conflict", severity="low", row=6, school=None, file="roster/无名.csv", sheet="",
       message="新规则"),
    _d(kind="id_invalid", severity="medium", row=11, field="id_number", value="433124200501231000",
       id_number=None, message="身份证号被存成数字，末三位丢失"),
]


@pytest.fixture()
def written(tmp_path: Path) -> tuple[list[Path], Path]:
    paths = write_school_workbooks(_frame(ROWS), tmp_path / "out")
    return paths, tmp_path / "out"


def _rows(path: Path, sheet: str = SHEET_PROBLEMS) -> list[tuple]:
    wb = load_workbook(path)
    return list(wb[sheet].iter_rows(min_row=HEADER_ROW if sheet == SHEET_PROBLEMS else 1, values_only=True))


def test_one_workbook_per_school(written):
    paths, out = written
    assert [p.name for p in paths] == sorted(["一中.xlsx", "二中.xlsx", f"{NO_SCHOOL}.xlsx"])
    assert sorted(out.iterdir()) == sorted(paths)  # no temp files left
    for p in paths:
        wb = load_workbook(p)
        assert wb.sheetnames == [SHEET_PROBLEMS, SHEET_HELP, "_recon"]
        assert wb["_recon"].sheet_state == "veryHidden"


def test_rows_headers_and_sorting(written):
    paths, out = written
    rows = _rows(out / "一中.xlsx")
    assert rows[0] == HEADERS
    body = rows[1:]
    assert len(body) == 5
    col = {h: i for i, h in enumerate(HEADERS)}
    assert [r[col["序号"]] for r in body] == [1, 2, 3, 4, 5]
    # high first; within high, by kind (id_mismatch < name_mismatch) then file/sheet/row
    assert [(r[col["严重程度"]], r[col["问题类型"]], r[col["行号"]]) for r in body] == [
        ("高", "身份证号不一致", "第2行"),
        ("高", "身份证号不一致", "第9行"),
        ("高", "姓名不一致", "第3行"),
        ("中", "身份证号无效或损坏", "第11行"),
        ("中", "两系统均未找到", "第5行"),
    ]
    first = dict(zip(HEADERS, body[0]))
    assert first["核对系统"] == "低保"
    assert first["系统文件"] == "低保"  # the file as the clerk knows it
    assert first["系统行号"] == 8
    assert first["核对项"] == "身份证号"
    assert first["说明"] == "身份证号两位颠倒"
    assert first["名单文件"] == "一中"
    # the two swapped digits are shown on both sides, the rest of the birth date is not
    assert first["身份证号"] == "430524******157716"
    assert first["系统中身份证号"] == "430524******517716"
    assert first["名单值"] is None and first["系统值"] is None  # the ID columns show them already
    filing = dict(zip(HEADERS, body[1]))
    assert filing["核对系统"] == "建档立卡"


def test_unknown_kind_and_missing_school(written):
    _, out = written
    rows = _rows(out / f"{NO_SCHOOL}.xlsx")
    assert len(rows) == 2
    rec = dict(zip(HEADERS, rows[1]))
    assert rec["问题类型"] == "出生日期或性别与身份证不符"
    assert rec["严重程度"] == "低"
    assert rec["工作表"] is None  # '' from CSV stays an empty cell


def test_layout(written):
    _, out = written
    wb = load_workbook(out / "一中.xlsx")
    ws = wb[SHEET_PROBLEMS]
    assert ws.freeze_panes == f"A{HEADER_ROW + 1}"
    assert ws.auto_filter.ref == f"A{HEADER_ROW}:X{ws.max_row}"
    assert ws.max_column == len(HEADERS) == 24
    for cell in ws[HEADER_ROW]:
        assert cell.font.bold
        assert cell.fill.fill_type == "solid"
    help_rows = list(wb[SHEET_HELP].iter_rows(values_only=True))
    labels = [r[0] for r in help_rows]
    for label in ("两系统均未找到", "身份证号不一致", "姓名不一致", "身份证号无效或损坏",
                  "已脱贫不再享受政策", "低保已停保", "重复申报", "出生日期或性别与身份证不符"):
        assert label in labels
    assert "代码" not in help_rows[0]


EVIL = ["=HYPERLINK(\"http://x\",\"点我\")", "+1+2", "-3+4", "@SUM(A1:A2)", "\t=1+1",
        "\r=1", "=cmd|' /C calc'!A0"]
READ_BACK = [v.replace("\r", "\n") for v in EVIL]  # XML reads CR as LF


def test_formula_looking_input_stays_text(tmp_path):
    rows = [
        _d(kind="name_mismatch", severity="high", row=i + 2, field="name", value=v, system_value=v,
           name=v, system_name=v, message=v, file=v, sheet=v, system_file=v)
        for i, v in enumerate(EVIL)
    ]
    paths = write_school_workbooks(_frame(rows), tmp_path)
    wb = load_workbook(paths[0])
    seen = []
    for ws in wb:
        for row in ws.iter_rows():
            for cell in row:
                assert cell.data_type != "f", (ws.title, cell.coordinate, cell.value)
                if ws.title == SHEET_PROBLEMS and cell.row > 1 and cell.value in READ_BACK:
                    assert cell.data_type == "s"
                    assert cell.quotePrefix
                    seen.append(cell.value)
    assert set(seen) == set(READ_BACK)


def test_no_full_id_anywhere(written, tmp_path):
    paths, _ = written
    ids = {ID_A, ID_B, ID_C, ID_D, "433124200501231000"}
    digit_run = re.compile(r"\d{15,}")
    for p in paths:
        for ws in load_workbook(p):
            for row in ws.iter_rows(values_only=True):
                for value in row:
                    if value is None:
                        continue
                    text = unicodedata.normalize("NFKC", str(value))
                    assert not digit_run.search(text), (p.name, ws.title, text)
                    assert not any(i in text for i in ids)
                    assert not any(i[6:14] in text for i in ids), "birth date leaked"


def test_full_width_and_free_text_ids_are_masked(tmp_path):
    fw = "".join(chr(ord(c) + 0xFEE0) if c.isdigit() else c for c in ID_C)
    rows = [_d(kind="id_invalid", severity="high", row=2, field="id_number", value=fw,
               message=f"原值 {ID_C} 校验位错误", name="赵六", id_number=None)]
    paths = write_school_workbooks(_frame(rows), tmp_path)
    values = [v for r in _rows(paths[0]) for v in r if isinstance(v, str)]
    blob = unicodedata.normalize("NFKC", " ".join(values))
    assert ID_C not in blob
    assert "430524********7716" in blob


@pytest.mark.parametrize(
    ("school", "filename"),
    [
        ("一中/高中部", "一中_高中部.xlsx"),
        ('a\\b:c*d?e"f<g>h|i', "a_b_c_d_e_f_g_h_i.xlsx"),
        ("..", f"{NO_SCHOOL}.xlsx"),
        ("CON", "_CON.xlsx"),
        (None, f"{NO_SCHOOL}.xlsx"),
    ],
)
def test_filenames_are_sanitised(tmp_path, school, filename):
    paths = write_school_workbooks(_frame([_d(kind="not_found", severity="low", row=2, school=school)]), tmp_path)
    assert [p.name for p in paths] == [filename]
    assert paths[0].parent == tmp_path


def test_colliding_filenames_get_suffixes(tmp_path):
    rows = [_d(kind="not_found", severity="low", row=2, school="一中/高中部"),
            _d(kind="not_found", severity="low", row=3, school="一中_高中部")]
    paths = write_school_workbooks(_frame(rows), tmp_path)
    assert sorted(p.name for p in paths) == ["一中_高中部(2).xlsx", "一中_高中部.xlsx"]


def test_output_is_reproducible(tmp_path):
    frame = _frame(ROWS)
    a = write_school_workbooks(frame, tmp_path / "a", stamp=datetime(2026, 11, 23, 2, 0))
    b = write_school_workbooks(frame.reverse(), tmp_path / "b", stamp=datetime(2026, 11, 23, 2, 0))
    assert [p.name for p in a] == [p.name for p in b]
    for pa, pb in zip(a, b):
        assert pa.read_bytes() == pb.read_bytes()
    wb = load_workbook(a[0])
    assert wb.properties.created == datetime(2026, 11, 23, 2, 0)
    assert wb.properties.modified == datetime(2026, 11, 23, 2, 0)


def test_empty_frame_writes_nothing(tmp_path):
    assert write_school_workbooks(_frame([]), tmp_path / "o") == []


def test_frame_missing_optional_columns(tmp_path):
    frame = pl.DataFrame({"kind": ["not_found"], "severity": ["high"], "file": ["roster/x.xlsx"],
                          "sheet": ["S"], "row": [2], "school": ["三中"], "message": ["未找到"]})
    paths = write_school_workbooks(frame, tmp_path)
    rows = _rows(paths[0])
    assert dict(zip(HEADERS, rows[1]))["问题类型"] == "两系统均未找到"


# ------------------------------------------------------------------------------ on paper (issue 12)


def _printed_columns(ws) -> list[str]:
    area = ws.print_area.split("!")[-1].replace("$", "")
    first, last = area.split(":")
    lo = column_index_from_string(re.match(r"[A-Z]+", first).group(0))
    hi = column_index_from_string(re.match(r"[A-Z]+", last).group(0))
    return [get_column_letter(i) for i in range(lo, hi + 1)]


def column_width(ws, letter: str) -> float | None:
    """A column's width from the <col> range that covers it (a writer may group equal neighbours)."""
    i = column_index_from_string(letter)
    return next((d.width for d in ws.column_dimensions.values() if d.min and d.max and d.min <= i <= d.max), None)


def paper_checks(ws, *, landscape: bool) -> None:
    """Text at least 9 pt on A4 (font size x print scale), the print area one page wide."""
    setup = ws.page_setup
    assert int(setup.paperSize) == int(ws.PAPERSIZE_A4) and setup.orientation == ("landscape" if landscape else "portrait")
    assert not ws.sheet_properties.pageSetUpPr.fitToPage  # a fitted page shrinks text out of sight
    scale = (setup.scale or 100) / 100
    cols = _printed_columns(ws)
    for row in ws.iter_rows(min_col=column_index_from_string(cols[0]), max_col=column_index_from_string(cols[-1])):
        for cell in row:
            if cell.value is not None:
                assert (cell.font.sz or 11) * scale >= 9, (cell.coordinate, cell.font.sz, scale)
    page_mm = (297 if landscape else 210) - (ws.page_margins.left + ws.page_margins.right) * 25.4
    width_px = sum((column_width(ws, c) or 8.43) * 7 + 5 for c in cols)
    assert width_px * 25.4 / 96 * scale <= page_mm, (width_px, scale, page_mm)


def _needed_lines(text: str, width: float) -> int:
    cjk = sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)
    return max(1, -(-cjk // max(int(width) - 1, 1)))


def test_clerk_sheet_reads_on_paper(written):
    _, out = written
    ws = load_workbook(out / "一中.xlsx")[SHEET_PROBLEMS]
    paper_checks(ws, landscape=True)
    printed = {ws.cell(row=HEADER_ROW, column=column_index_from_string(c)).value for c in _printed_columns(ws)}
    assert {"序号", "问题类型", "行号", "学生姓名", "身份证号", "系统中身份证号", "说明", "核实结论", "更正值", "核实人"} <= printed
    assert not printed & {"名单文件", "系统文件", "问题编号", "校验码"}
    # Wrapped text gets rows tall enough: about 1.3 x the font size per line.
    for row in ws.iter_rows(min_row=1):
        for cell in row:
            if isinstance(cell.value, str) and cell.alignment.wrap_text:
                width = column_width(ws, cell.column_letter)
                if cell.coordinate in ws.merged_cells:
                    width = sum(column_width(ws, c) for c in _printed_columns(ws))
                height = ws.row_dimensions[cell.row].height
                assert height and height >= 1.3 * 11 * _needed_lines(cell.value, width), (cell.coordinate, height)


def test_first_two_lines_say_what_to_fill_in_and_where_to_return_it(tmp_path):
    ns = NoticeSettings(return_to="县学生资助管理中心（教育局三楼）", return_within_days=3,
                        holidays=frozenset({dt.date(2025, 10, d) for d in (1, 2, 3, 6, 7, 8)}))
    path = write_school_workbooks(_frame(ROWS[:2]), tmp_path, night=dt.date(2025, 9, 26), notice=ns)[0]
    ws = load_workbook(path)[SHEET_PROBLEMS]
    what, where = ws["A1"].value, ws["A2"].value
    assert "核实结论" in what and "核实人" in what and "本校" in what
    # 3 working days after Friday 26 September 2025: 29, 30 September, then 9 October (holidays 1-8 October).
    assert "2025年10月9日" in where and "县学生资助管理中心（教育局三楼）" in where


def test_town_workbook_is_for_the_town_and_shows_the_village(tmp_path):
    rows = [_d(kind="not_found", severity="high", row=5, village="田上村", message="两系统均未找到"),
            _d(kind="missed_eligible", severity="medium", row=7, source="filing", file="filing/f.csv", school=None,
               village="岩山村", message="不在名单")]
    [school] = write_clerk_workbooks(_frame(rows), tmp_path / "s", by="school")
    [town] = write_clerk_workbooks(_frame(rows), tmp_path / "t", by="town")
    kinds_in_school = [r[2] for r in _rows(school)[1:]]
    assert kinds_in_school == ["两系统均未找到"]  # missed_eligible is for the towns only
    wb = load_workbook(town)
    header = [c.value for c in wb[SHEET_PROBLEMS][HEADER_ROW]]
    body = [dict(zip(header, r)) for r in _rows(town)[1:]]
    assert {b["学校/村"] for b in body} == {"一中\n田上村", "岩山村"}
    assert "本乡镇" in wb[SHEET_PROBLEMS]["A1"].value
    texts = " ".join(str(c.value) for r in wb[SHEET_HELP].iter_rows() for c in r if c.value)
    assert "本校" not in texts and "本乡镇" in texts


def test_only_formatting_differences_are_not_highlighted(tmp_path):
    rows = [_d(kind="id_fact_conflict", severity="medium", row=4, field="birth_date", value="2019/09/18",
               system_value="2019-09-18", message="日期格式不同"),
            _d(kind="id_fact_conflict", severity="medium", row=5, field="birth_date", value="2019-09-18",
               system_value="2019-09-17", message="日期不同")]
    path = write_school_workbooks(_frame(rows), tmp_path)[0]
    ws = load_workbook(path, rich_text=True)[SHEET_PROBLEMS]
    header = [c.value for c in ws[HEADER_ROW]]
    c = header.index("名单值") + 1
    same, differs = ws.cell(row=HEADER_ROW + 1, column=c), ws.cell(row=HEADER_ROW + 2, column=c)
    assert isinstance(same.value, str) and same.fill.fill_type is None
    assert isinstance(differs.value, CellRichText) and differs.fill.fill_type == "solid"


def test_id_invalid_marks_where_the_id_is_damaged(tmp_path):
    damaged = ID_A[:15] + "000"
    rows = [_d(kind="id_invalid", severity="medium", row=4, field="id_number", value=damaged, id_number=damaged,
               diff_positions=[15, 16, 17], message="后三位丢失")]
    ws = load_workbook(write_school_workbooks(_frame(rows), tmp_path)[0], rich_text=True)[SHEET_PROBLEMS]
    header = [c.value for c in ws[HEADER_ROW]]
    cell = ws.cell(row=HEADER_ROW + 1, column=header.index("身份证号") + 1)
    assert isinstance(cell.value, CellRichText)
    marked = "".join(b.text for b in cell.value if not isinstance(b, str) and b.font.b)
    assert marked == "000"


def test_public_notice_carries_its_period_and_where_to_object(tmp_path):
    ns = NoticeSettings(office="花垣县学生资助管理中心", phone="0743-7221234",
                        holidays=frozenset({dt.date(2025, 10, d) for d in (1, 2, 3, 6, 7, 8)}),
                        workdays=frozenset({dt.date(2025, 10, 11)}))
    rows = pl.DataFrame([{"school": "一中", "name": "张三", "id_number": ID_A, "stage": "初中", "grade": "七年级",
                          "aid_item": None, "amount": "1000"}])
    path = write_public_notices(rows, tmp_path, start=dt.date(2025, 9, 29), notice=ns)[0]
    ws = load_workbook(path).active
    text = " ".join(str(c.value) for r in ws.iter_rows() for c in r if c.value)
    # 29, 30 September, 9 October, 10 October, 11 October (a make-up working day, Saturday).
    assert "2025年9月29日至2025年10月11日（5个工作日）" in text
    assert "花垣县学生资助管理中心" in text and "0743-7221234" in text
    paper_checks(ws, landscape=False)
