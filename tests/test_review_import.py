"""Returned workbooks as clerks really send them, through ``recon review import`` and the
next night: corrections of every correctable kind (and refusals that say why), IDs that
are someone else's, an ID typed into a number cell, decisions in other words, .xls files,
rows copied into a new workbook, a workbook of empty styled cells beside good ones, the
workbooks of a run that a same-night rerun superseded, notes carried to the next night,
and one reviewer saying two things."""

from __future__ import annotations

import re
import zipfile
from datetime import date, datetime, timedelta
from pathlib import Path

import openpyxl
import polars as pl
import xlwt

from reconcile import report, store
from reconcile.cli import main as cli_main
from reconcile.idcard import check_char

from clerks import book_of, county, fill, inbox, items, q, run_night, truth_ids  # noqa: F401 (fixtures)

NIGHT = date(2026, 11, 23)

def import_cli(paths: list[Path], db: Path, capsys) -> tuple[int, str, str]:
    code = cli_main(["review", "import", *map(str, paths), "--db", str(db)])
    out = capsys.readouterr()
    return code, out.out, out.err


def line_of(text: str, book: Path, row: int) -> str:
    """The message about one workbook row."""
    found = [ln for ln in text.splitlines() if f"{book.name} 第{row}行" in ln]
    assert found, (book.name, row, text)
    return found[0]


def sheet_row(book: Path, ref: int) -> int:
    ws = openpyxl.load_workbook(book)[report.SHEET_PROBLEMS]
    col = [c.value for c in ws[report.HEADER_ROW]].index(report.COL_REF)
    return next(r[0].row for r in ws.iter_rows(min_row=report.HEADER_ROW + 1) if r[col].value == ref)


def pick(d: pl.DataFrame, kind: str, n: int = 0, where: pl.Expr | None = None) -> dict:
    sel = d.filter(pl.col("kind") == kind)
    if where is not None:
        sel = sel.filter(where)
    return sel.sort("item_ref").row(n, named=True)


def roster_record(db: Path, run_id: str, it: dict) -> dict:
    [(name, id_norm, amount)] = q(db, "select name, id_norm, amount from records where run_id = ? and source = 'roster' "
                                      "and file = ? and sheet = ? and row = ?", [run_id, it["file"], it["sheet"], it["row"]])
    return {"name": name, "id_norm": id_norm, "amount": amount}


def shifted(id18: str, days: int = 1) -> str:
    """The same ID with its birth date moved by ``days`` (a valid ID of nobody)."""
    birth = (datetime.strptime(id18[6:14], "%Y%m%d") + timedelta(days=days)).strftime("%Y%m%d")
    first17 = id18[:6] + birth + id18[14:17]
    return first17 + check_char(first17)


# --------------------------------------------------------------------------- corrections


def test_corrections_are_applied_or_refused_with_the_reason(county: Path, inbox: Path, tmp_path: Path, settings,
                                                            capsys) -> None:
    db, reports = tmp_path / "r.duckdb", tmp_path / "reports"
    run1, _, books = run_night(inbox, db, reports, NIGHT, settings)
    d = items(db, run1)
    truth = truth_ids(county).rename({"row": "_row"})
    inv = d.filter(pl.col("kind") == "id_invalid").join(
        truth, left_on=["file", "sheet", "row"], right_on=["file", "sheet", "_row"]).sort("item_ref")
    # A parent whose ID the database knows (as a system's or the roster's head of household).
    known = {r[0] for r in q(db, "select id_norm from records where run_id = ? and id_norm is not null union "
                                 "select head_id_norm from records where run_id = ? and head_id_norm is not null", [run1, run1])}
    parent_of = inv.filter(pl.col("head_id").is_in(list(known))).row(0, named=True)
    rest = inv.filter(pl.col("item_ref") != parent_of["item_ref"])
    right, adult, other_birth, empty = (rest.row(i, named=True) for i in range(4))
    amount = pick(d, "subsidy_mismatch")
    name = pick(d, "name_mismatch", 0, pl.col("system_value").is_not_null())
    nf = pick(d, "not_found")
    nf_ack = pick(d, "not_found", 1)
    number = pick(d, "id_mismatch")
    plan = {
        parent_of["item_ref"]: ("已更正", parent_of["head_id"], None, "王老师"),
        right["item_ref"]: ("已更正", right["true_id"], None, "王老师"),
        adult["item_ref"]: ("已更正", "43312419800101123" + check_char("43312419800101123"), None, "王老师"),
        other_birth["item_ref"]: ("已更正", shifted(other_birth["true_id"]), None, "王老师"),
        empty["item_ref"]: ("已更正", None, None, "王老师"),
        amount["item_ref"]: ("已更正", amount["system_value"], None, "王老师"),
        name["item_ref"]: (None, name["system_value"], None, "王老师"),
        nf["item_ref"]: ("已更正", "刘永怡", None, "王老师"),
        nf_ack["item_ref"]: ("已更正", None, "名单已改", "王老师"),
        number["item_ref"]: ("已更正", 4.33124201604214e17, None, "王老师"),
    }
    for ref, dec in plan.items():
        fill(book_of(books, ref), {ref: dec})
    code, out, err = import_cli(books, db, capsys)
    at = lambda it: (book_of(books, it["item_ref"]), sheet_row(book_of(books, it["item_ref"]), it["item_ref"]))  # noqa: E731

    assert code == 1
    assert "户主" in line_of(err, *at(parent_of)) and "不是这名学生的" in line_of(err, *at(parent_of))
    assert re.search(r"时 4\d 岁，与学段「[^」]+」不符", line_of(err, *at(adult)))
    assert "出生日期" in line_of(out, *at(other_birth)) and "已接受" in line_of(out, *at(other_birth))
    assert "填写正确的18位身份证号" in line_of(err, *at(empty))
    assert "「两系统均未找到」这类问题不能用“更正值”更正" in line_of(err, *at(nf))
    lost = line_of(err, *at(number))
    assert "当成了数字" in lost and "只保留了前15位" in lost and "后3位已经丢失" in lost and "文本格式" in lost
    assert "433124201604214" not in err and parent_of["head_id"] not in err + out
    stored = dict(q(db, "select item_ref, decision_code from reviews"))
    assert set(stored) == {right["item_ref"], other_birth["item_ref"], amount["item_ref"], name["item_ref"],
                           nf_ack["item_ref"]}

    run2, _, _ = run_night(inbox, db, reports, date(2026, 11, 24), settings)
    d2 = items(db, run2)
    keys2 = dict(zip(d2["item_key"], d2["review_state"]))
    # Applied: the student's own ID, the amount, the name; those items are gone.
    assert roster_record(db, run2, right)["id_norm"] == right["true_id"]
    assert roster_record(db, run2, other_birth)["id_norm"] == shifted(other_birth["true_id"])
    assert float(roster_record(db, run2, amount)["amount"]) == float(amount["system_value"])
    assert roster_record(db, run2, name)["name"] == name["system_value"]
    for it in (right, amount, name):
        assert it["item_key"] not in keys2, it["kind"]
    # Refused ones changed nothing: the parent's ID never reaches the student.
    assert roster_record(db, run2, parent_of)["id_norm"] != parent_of["head_id"]
    for it in (parent_of, adult, empty, nf, number):
        assert it["item_key"] in keys2 and keys2[it["item_key"]] is None, it["kind"]
    # 已更正 without a value on an unchanged record hides nothing.
    assert keys2[nf_ack["item_key"]] == "reopened"


# --------------------------------------------------------------------------- what comes back


def _as_xls(src: Path, dst: Path) -> Path:
    """The workbook as Excel 97 would save it: values and the hidden run sheet kept."""
    wb = openpyxl.load_workbook(src)
    out = xlwt.Workbook(encoding="utf-8")
    for ws in wb.worksheets:
        sheet = out.add_sheet(ws.title)
        if ws.sheet_state != "visible":
            sheet.visibility = 2
        for row in ws.iter_rows():
            for c in row:
                if c.value is not None:
                    sheet.write(c.row - 1, c.column - 1, c.value if isinstance(c.value, (int, float)) else str(c.value))
    out.save(str(dst))
    return dst


def _styled_empty(src: Path, dst: Path, rows: int = 40_000, cols: int = 20) -> Path:
    """The workbook with a block of empty styled cells below its rows (as a clerk's
    formatting of whole rows leaves it): a small file, far more cells than it has data."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename == "xl/worksheets/sheet1.xml":
                letters = [openpyxl.utils.get_column_letter(c) for c in range(1, cols + 1)]
                block = "".join(
                    f'<row r="{r}">' + "".join(f'<c r="{x}{r}" s="1"/>' for x in letters) + "</row>"
                    for r in range(1000, 1000 + rows)
                ).encode()
                data = data.replace(b"</sheetData>", block + b"</sheetData>")
            zout.writestr(info, data)
    return dst


def test_what_clerks_send_back(inbox: Path, tmp_path: Path, settings, capsys) -> None:
    db, reports = tmp_path / "r.duckdb", tmp_path / "reports"
    run1, _, books = run_night(inbox, db, reports, NIGHT, settings)
    d = items(db, run1)
    same, other, vague = (pick(d, "name_mismatch", i) for i in range(3))
    in_xls = pick(d, "name_mismatch", 3)
    in_bomb = pick(d, "name_mismatch", 4)
    fill(book_of(books, same["item_ref"]), {same["item_ref"]: ("是同一人", None, None, "王老师")})
    fill(book_of(books, other["item_ref"]), {other["item_ref"]: ("不是同一人。", None, None, "王老师")})
    fill(book_of(books, vague["item_ref"]), {vague["item_ref"]: ("同意", None, None, "王老师")})
    xls_src = book_of(books, in_xls["item_ref"])
    fill(xls_src, {in_xls["item_ref"]: ("确认是同一人", None, None, "李老师")}, out=tmp_path / "x.xlsx")
    xls = _as_xls(tmp_path / "x.xlsx", tmp_path / "returned.xls")
    fill(book_of(books, in_bomb["item_ref"]), {in_bomb["item_ref"]: ("确认是同一人", None, None, "张老师")},
         out=tmp_path / "b.xlsx")
    bomb = _styled_empty(tmp_path / "b.xlsx", tmp_path / "styled.xlsx")
    assert bomb.stat().st_size < 2 * 1024**2
    # Rows copied into a new workbook (no hidden run sheet, no hidden columns).
    src = openpyxl.load_workbook(book_of(books, same["item_ref"]))[report.SHEET_PROBLEMS]
    copied = openpyxl.Workbook()
    for row in src.iter_rows(max_row=report.HEADER_ROW + 2, values_only=True):
        copied.active.append(row)
    copied.save(tmp_path / "copied.xlsx")
    originals = sorted({book_of(books, it["item_ref"]) for it in (same, other, vague)})

    code, out, err = import_cli([*originals, xls, bomb, tmp_path / "copied.xlsx"], db, capsys)
    assert code == 1
    assert "styled.xlsx：工作表中有超过" in err and "未导入" in err
    assert "copied.xlsx：不是下发的原表" in err and "请在下发的原表上填写" in err
    assert "核实结论「同意」无效：意思不明确" in err and "确认是同一人 / 不是同一人 / 已更正 / 待核实" in err
    rows = dict(q(db, "select item_ref, decision_code from reviews"))
    assert rows == {same["item_ref"]: "confirm", other["item_ref"]: "reject", in_xls["item_ref"]: "confirm"}


# --------------------------------------------------------------------------- across nights and reruns


def test_superseded_workbooks_carried_notes_and_one_reviewer_twice(inbox: Path, tmp_path: Path, settings,
                                                                     capsys) -> None:
    db, reports = tmp_path / "r.duckdb", tmp_path / "reports"
    first, _, books = run_night(inbox, db, reports, NIGHT, settings, run_id="run-a")
    d1 = items(db, first)
    keep, vanish, pending = (pick(d1, "name_mismatch", i) for i in range(3))
    twice = pick(d1, "needs_review") if d1.filter(pl.col("kind") == "needs_review").height else pick(d1, "name_mismatch", 3)
    # Between the run and its rerun, a clerk fixes one name in the roster: that item goes.
    [(file, sheet, row, sys_name)] = [(vanish["file"], vanish["sheet"], vanish["row"], vanish["system_value"])]
    wb = openpyxl.load_workbook(inbox / file)
    ws = wb[sheet]
    [cell] = [c for c in ws[row] if c.value == vanish["value"]]
    cell.value = sys_name
    wb.save(inbox / file)
    second, res2, books2 = run_night(inbox, db, reports, NIGHT, settings, run_id="run-b")
    assert q(db, "select status from runs where run_id = 'run-a'") == [("superseded",)]
    assert store.read_item_map(db, first).height == d1.height

    fill(book_of(books, keep["item_ref"]), {keep["item_ref"]: ("确认是同一人", None, None, "王老师")})
    fill(book_of(books, vanish["item_ref"]), {vanish["item_ref"]: ("确认是同一人", None, None, "王老师")})
    fill(book_of(books, pending["item_ref"]), {pending["item_ref"]: ("待核实", None, "等家长带户口簿来", "王老师")})
    # One reviewer, two answers: in the school workbook and in the town workbook of run b.
    d2 = items(db, second)
    ref_b = d2.filter(pl.col("item_key") == twice["item_key"])["item_ref"][0]
    towns = report.write_clerk_workbooks(report.with_row_hashes(res2.discrepancies), tmp_path / "towns", by="town",
                                         run_id=second)
    fill(book_of(books2, ref_b), {ref_b: ("确认是同一人", None, None, "赵干事")})
    fill(book_of(towns, ref_b), {ref_b: ("不是同一人", None, None, "赵干事")})
    sent = sorted({book_of(books, it["item_ref"]) for it in (keep, vanish, pending)})
    code, out, err = import_cli([*sent, book_of(books2, ref_b), book_of(towns, ref_b)], db, capsys)
    assert code == 0, err
    assert "状态为" not in err and "已按问题编号对应到最新的运行导入" in out
    assert "有 1 行填写的问题在这份表下发后的重新运行中已不存在" in out
    name = q(db, "select name from records where run_id = ? and source = 'roster' and file = ? and sheet = ? and row = ?",
             [second, twice["file"], twice["sheet"], twice["row"]])[0][0]
    said = [ln for ln in out.splitlines() if "核实结论不一致" in ln]
    assert len(said) == 1 and f"学生「{name}」" in said[0] and "赵干事" in said[0]
    assert "确认是同一人" in said[0] and "不是同一人" in said[0]
    stored = {r[0]: r[1] for r in q(db, "select item_key, run_id from reviews where reviewer = '王老师'")}
    assert stored == {keep["item_key"]: "run-a", pending["item_key"]: "run-a"}

    run3, _, books3 = run_night(inbox, db, reports, date(2026, 11, 24), settings)
    d3 = items(db, run3)
    state = dict(zip(d3["item_key"], d3["review_state"]))
    assert keep["item_key"] not in state
    assert state[twice["item_key"]] == "conflict"
    # The 待核实 and the note are in tonight's editable cells of the same item ...
    ref3 = d3.filter(pl.col("item_key") == pending["item_key"])["item_ref"][0]
    book3 = book_of(books3, ref3)
    ws = openpyxl.load_workbook(book3)[report.SHEET_PROBLEMS]
    col = {c.value: c.column - 1 for c in ws[report.HEADER_ROW]}
    [cells] = [r for r in ws.iter_rows(min_row=report.HEADER_ROW + 1, values_only=True) if r[col[report.COL_REF]] == ref3]
    assert (cells[col[report.COL_DECISION]], cells[col[report.COL_NOTE]], cells[col[report.COL_REVIEWER]]) == (
        "待核实", "等家长带户口簿来", "王老师")
    # ... and sending it back untouched stores nothing new.
    before = q(db, "select count(*) from reviews")[0][0]
    code, out, err = import_cli([book3], db, capsys)
    assert code == 0 and "0 decision(s) imported" in out and "1 unchanged" in out
    assert q(db, "select count(*) from reviews")[0][0] == before
