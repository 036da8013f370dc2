"""What a clerk holds after a real night (issue 12): the flow on a generated county with
rosters of our own beside it (a school named only by its title row, one name in two towns)."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import openpyxl
import pytest

from conftest import make_id
from countygen import SynthConfig, generate_county
from reconcile.config import load_settings
from reconcile.report import HEADER_ROW, SHEET_PROBLEMS
from reconcile.vocabulary import KINDS, NOTICE_BLOCKING, NO_SCHOOL, SCHOOL_KINDS, mask_id
from test_report import paper_checks

ASCII_WORD = re.compile(r"[A-Za-z]{2,}")
PROPER_NAMES = {"Excel"}  # the program's name is what clerks call it
HEADER = ["序号", "学生姓名", "性别", "出生日期", "身份证号", "乡镇", "村", "年级", "资助金额"]


def _roster(path: Path, rows: list[list], *, title: str | None = None, school: str | None = None) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "七年级"
    header = HEADER + (["学校"] if school else [])
    if title:
        ws.append([title])
    ws.append(header)
    for i, r in enumerate(rows, start=1):
        ws.append([i, *r] + ([school] if school else []))
    for row in ws.iter_rows():
        for c in row:
            c.number_format = "@"
    path.parent.mkdir(parents=True, exist_ok=True)
    wb.save(path)


def _kids(town: str, village: str, start: int, n: int = 3) -> list[list]:
    return [[f"{town[:1]}测{i}", "男", "2012-03-05", make_id("433124", "20120305", f"{start + 2 * i:03d}"), town, village,
             "七年级", "1000"] for i in range(n)]


@pytest.fixture(scope="module")
def night(harness, tmp_path_factory: pytest.TempPathFactory) -> dict:
    from flows.nightly import nightly_reconciliation

    root = tmp_path_factory.mktemp("clerk")
    generate_county(root, SynthConfig(households=250, seed=7))
    roster = root / "inbox" / "roster"
    _roster(roster / "资助名单.xlsx", _kids("龙潭镇", "新村", 501), title="龙潭镇示范学校家庭经济困难学生资助名单")
    _roster(roster / "甲" / "名单.xlsx", _kids("卫民镇", "田上村", 601), school="希望小学")
    _roster(roster / "乙" / "名单.xlsx", _kids("结补镇", "岩山村", 701), school="希望小学")
    db, reports = root / "recon.duckdb", root / "reports"
    counts = nightly_reconciliation(inbox=str(root / "inbox"), db=str(db), reports=str(reports),
                                    as_of="2025-10-15", config=str(root / "config"))
    sheets = set()
    for p in (root / "inbox").rglob("*.xls*"):
        if p.suffix == ".xlsx":
            sheets |= set(openpyxl.load_workbook(p, read_only=True).sheetnames)
    return {"counts": counts, "db": db, "dir": Path(counts["reports"]), "input_sheets": sheets}


def _q(db: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _items(path: Path) -> list[dict]:
    ws = openpyxl.load_workbook(path)[SHEET_PROBLEMS]
    header = [c.value for c in ws[HEADER_ROW]]
    return [dict(zip(header, r)) for r in ws.iter_rows(min_row=HEADER_ROW + 1, values_only=True)]


def test_every_school_gets_its_own_workbook(night: dict) -> None:
    names = {p.stem for p in night["dir"].glob("*.xlsx")}
    assert NO_SCHOOL not in names
    assert {"龙潭镇示范学校", "卫民镇希望小学", "结补镇希望小学"} <= names
    # Every item for a school is in that school's workbook: no roster row is left without one
    # (the generator's rosters without a 学校 column name the school in title and file name).
    kinds = ", ".join(f"'{k}'" for k in SCHOOL_KINDS)
    schools = {s for (s,) in _q(night["db"], f"select distinct school from discrepancies where kind in ({kinds})")}
    assert None not in schools and schools <= names


def test_missed_eligible_only_in_town_workbooks(night: dict) -> None:
    label = KINDS["missed_eligible"].label
    for p in night["dir"].glob("*.xlsx"):
        assert label not in {i["问题类型"] for i in _items(p)}, p.name
    [(n,)] = _q(night["db"], "select count(*) from discrepancies where kind = 'missed_eligible'")
    in_towns = sum(i["问题类型"] == label for p in (night["dir"] / "乡镇").glob("*.xlsx") for i in _items(p))
    assert in_towns == n
    assert _q(night["db"], "select count(*) from missed_by_stage")  # the analyst view answers


def test_public_notice_lists_only_what_is_not_in_doubt(night: dict) -> None:
    blocking = ", ".join(f"'{k}'" for k in NOTICE_BLOCKING)
    doubtful = {(name, mask_id(i)) for name, i in _q(night["db"], f"""
        select r.name, r.id_norm from discrepancies d join records r on r.run_id = d.run_id and r.source = 'roster'
        and r.file = d.file and r.sheet = d.sheet and r.row = d.row where d.kind in ({blocking})""")}
    settings = load_settings()
    listed = 0
    for p in (night["dir"] / "公示名单").glob("*.xlsx"):
        ws = openpyxl.load_workbook(p).active
        header = [c.value for c in ws[2]]
        rows = [dict(zip(header, r)) for r in ws.iter_rows(min_row=3, values_only=True) if isinstance(r[0], int)]
        for r in rows:
            assert (r["姓名"], r["身份证号"]) not in doubtful, p.name
            assert re.fullmatch(r"\d{6}\*{8}\d{3}[\dX]", r["身份证号"]), r["身份证号"]
            assert r["学段"] and r["资助金额（元）"], (p.name, r)
        listed += len(rows)
        text = " ".join(str(c.value) for row in ws.iter_rows() for c in row if c.value)
        assert re.search(r"公示时间：\d{4}年\d+月\d+日至\d{4}年\d+月\d+日（5个工作日）", text)
        assert settings.notice.office in text and settings.notice.phone in text
        paper_checks(ws, landscape=False)
    assert listed > 50


def test_no_message_says_absent_where_the_export_is_cut(night: dict) -> None:
    cut = _q(night["db"], "select system, town, village from export_problems")
    assert cut, "the generated county cuts one village from an export"
    absent = {"dibao": "低保系统中也没有在保记录", "filing": "建档立卡系统中也没有仍享受政策的记录"}
    for system, town, village in cut:
        said = _q(night["db"], f"select message from discrepancies where village = '{village}' "
                               f"and coalesce(town, '{town}') = '{town}'")
        assert not [m for (m,) in said if absent[system] in m]


def _visible_text(path: Path) -> list[tuple[str, str, str]]:
    wb = openpyxl.load_workbook(path)
    out = []
    for ws in wb.worksheets:
        if ws.sheet_state != "visible":
            continue
        hidden = {k for k, d in ws.column_dimensions.items() if d.hidden}
        for row in ws.iter_rows():
            for c in row:
                if isinstance(c.value, str) and c.column_letter not in hidden:
                    out.append((ws.title, c.coordinate, c.value))
        for part in (ws.oddHeader.center.text, ws.oddFooter.center.text):
            if part:
                out.append((ws.title, "header/footer", part.replace("&P", "").replace("&N", "")))
    return out


def test_no_english_reaches_a_clerk(night: dict) -> None:
    books = [*night["dir"].glob("*.xlsx"), *(night["dir"] / "乡镇").glob("*.xlsx"), *(night["dir"] / "公示名单").glob("*.xlsx")]
    assert len(books) > 10
    allowed = night["input_sheets"]  # the rosters' own sheet names (Sheet1) are the clerk's words
    words = [(p.name, where, cell, w) for p in books for sheet, where, cell in _visible_text(p)
             for w in ASCII_WORD.findall(cell) if w not in PROPER_NAMES and not any(w in s for s in allowed)]
    assert not words, words[:10]


def test_workbooks_read_on_paper(night: dict) -> None:
    for p in [*night["dir"].glob("*.xlsx"), *(night["dir"] / "乡镇").glob("*.xlsx")]:
        ws = openpyxl.load_workbook(p)[SHEET_PROBLEMS]
        paper_checks(ws, landscape=True)
        where = [i["行号"] for i in _items(p)]
        assert all(isinstance(w, str) and w.endswith("行") for w in where if w is not None)
