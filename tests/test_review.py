"""Clerk round trip: workbooks out, decisions back in, applied on the next night.

The end-to-end test runs the real Prefect flow twice on a generated county with clerk
decisions imported in between (filled in through openpyxl, as a clerk's Excel would);
the other tests drive the same steps without Prefect.
"""

from __future__ import annotations

import re
import shutil
from datetime import date, datetime, timezone
from pathlib import Path

import openpyxl
import polars as pl
import pytest

from reconcile import ingest, pipeline, report, review, review_import, store, vocabulary
from reconcile.cli import main as cli_main
from reconcile.config import load_settings
from reconcile.errors import ConfigError

from conftest import make_id
from clerks import book_of, county, fill, inbox, items, q, run_night, truth_ids  # noqa: F401 (fixtures)

# --------------------------------------------------------------------------- the workbook


def test_clerk_workbook_layout(inbox: Path, tmp_path: Path, settings) -> None:
    db, reports = tmp_path / "r.duckdb", tmp_path / "reports"
    run_id, res, paths = run_night(inbox, db, reports, date(2026, 11, 23), settings)
    wb = openpyxl.load_workbook(paths[0])
    assert report.read_meta(wb)["run_id"] == run_id
    assert wb[report.SHEET_META].sheet_state == "veryHidden"
    ws = wb[report.SHEET_PROBLEMS]
    header = [c.value for c in ws[report.HEADER_ROW]]
    assert header == list(report.HEADERS)
    col = {h: i + 1 for i, h in enumerate(header)}
    assert ws.freeze_panes == f"A{report.HEADER_ROW + 1}" and ws.auto_filter.ref
    assert ws.protection.sheet and not ws.protection.autoFilter
    last = ws.max_row
    for r in range(report.HEADER_ROW + 1, last + 1):
        for h in header:
            locked = ws.cell(row=r, column=col[h]).protection.locked
            assert locked == (h not in report.REVIEW_HEADERS), (r, h)
    [dv] = ws.data_validations.dataValidation
    assert dv.type == "list" and all(label in dv.formula1 for label in vocabulary.DECISION_LABELS)
    letter = openpyxl.utils.get_column_letter(col[report.COL_DECISION])
    assert str(dv.sqref) == f"{letter}{report.HEADER_ROW + 1}:{letter}{last}"
    for h in (report.COL_REF, report.COL_HASH):
        assert ws.column_dimensions[openpyxl.utils.get_column_letter(col[h])].hidden
    assert ws.page_setup.orientation == "landscape" and int(ws.page_setup.paperSize) == 9  # A4
    hr = report.HEADER_ROW
    assert ws.print_title_rows == f"${hr}:${hr}" and not ws.sheet_properties.pageSetUpPr.fitToPage
    # importance first: severities never go back up
    rank = {"高": 0, "中": 1, "低": 2}
    sev = [rank[r[col["严重程度"] - 1]] for r in ws.iter_rows(min_row=report.HEADER_ROW + 1, values_only=True)]
    assert sev == sorted(sev)
    # differing characters highlighted as rich text
    rich = openpyxl.load_workbook(paths[0], rich_text=True)
    found = False
    for p in paths:
        wsr = openpyxl.load_workbook(p, rich_text=True)[report.SHEET_PROBLEMS]
        for row in wsr.iter_rows(min_row=report.HEADER_ROW + 1):
            cell = row[col["系统中姓名"] - 1]
            if isinstance(cell.value, openpyxl.cell.rich_text.CellRichText):
                # marked runs are bold red; the others are plain text or runs in the default font
                blocks = [b for b in cell.value if not isinstance(b, str) and b.font.b]
                assert blocks and all(b.font.color.rgb == "FFC00000" for b in blocks)
                assert all(not b.font.b and (b.font.color is None or b.font.color.rgb != "FFC00000")
                           for b in cell.value if not isinstance(b, str) and b not in blocks)
                found = True
    assert found
    del rich


def test_public_notice_lists_confirmed_students(inbox: Path, tmp_path: Path, settings) -> None:
    res = pipeline.reconcile(ingest.read_inbox(inbox, settings.header_aliases), settings)
    assert 0 < res.eligible.height < res.records["roster"].height
    bad = res.discrepancies.filter(pl.col("kind").is_in(["not_found", "household_exited", "dibao_stopped"]))
    assert not res.eligible.join(bad.select("file", "sheet", "row"), on=["file", "sheet", "row"]).height
    paths = report.write_public_notices(res.eligible, tmp_path / "g")
    ws = openpyxl.load_workbook(paths[0])[report.SHEET_NOTICE]
    assert [c.value for c in ws[2]] == list(report.NOTICE_HEADERS)
    ids = [r[2] for r in ws.iter_rows(min_row=3, values_only=True) if isinstance(r[0], int) and r[2]]
    assert ids and all(re.fullmatch(r"\d{6}\*{8}\d{3}[\dX]", i) for i in ids)


def test_item_keys_are_stable_when_rows_move(inbox: Path, settings) -> None:
    ing = ingest.read_inbox(inbox, settings.header_aliases)
    a = pipeline.reconcile(ing, settings).discrepancies
    # The same sheets with every roster row number shifted: keys must not change.
    moved = ingest.IngestResult(
        tables=[t if t.source != "roster" else type(t)(**{**t.__dict__, "frame": t.frame.with_columns(pl.col("row") + 7)})
                for t in ing.tables],
        problems=ing.problems, files_read=ing.files_read,
    )
    b = pipeline.reconcile(moved, settings).discrepancies
    assert sorted(a["item_key"]) == sorted(b["item_key"])
    assert a["item_key"].n_unique() == a.height


# --------------------------------------------------------------------------- the import


def test_import_refuses_bad_rows_and_files_with_clear_messages(inbox: Path, tmp_path: Path, settings, capsys) -> None:
    db, reports = tmp_path / "r.duckdb", tmp_path / "reports"
    run_id, _, paths = run_night(inbox, db, reports, date(2026, 11, 23), settings)
    d = items(db, run_id)
    pick = lambda kind, n=0: d.filter(pl.col("kind") == kind).sort("item_ref")["item_ref"][n]  # noqa: E731
    good, edited, invalid, badid, noname = (pick("name_mismatch", i) for i in range(5))
    idinv = pick("id_invalid")
    nf = pick("not_found")
    for ref, decision in [(good, ("确认是同一人", None, "户口簿核对", "王老师")),
                          (edited, ("确认是同一人", None, None, "王老师")),
                          (invalid, ("同意", None, None, "王老师")),
                          (noname, ("不是同一人", None, None, None)),
                          (idinv, ("已更正", "43312420050123123", None, "王老师")),
                          (nf, ("确认是同一人", None, None, "王老师"))]:
        fill(book_of(paths, ref), {ref: decision}, edit={edited: ("学生姓名", "李四")} if ref == edited else None)
    # A workbook from another database's run, and a file that is no clerk workbook.
    alien = tmp_path / "alien.xlsx"
    shutil.copy(paths[0], alien)
    wb = openpyxl.load_workbook(alien)
    wb[report.SHEET_META]["B2"] = "run-somewhere-else"
    wb.save(alien)
    plain = tmp_path / "plain.xlsx"
    openpyxl.Workbook().save(plain)
    # An extra row a clerk typed in.
    fill(paths[0], {})
    wb = openpyxl.load_workbook(paths[0])
    ws = wb[report.SHEET_PROBLEMS]
    ws.cell(row=ws.max_row + 1, column=[c.value for c in ws[report.HEADER_ROW]].index(report.COL_DECISION) + 1,
            value="待核实")
    wb.save(paths[0])

    code = cli_main(["review", "import", *map(str, paths), str(alien), str(plain), "--db", str(db)])
    out = capsys.readouterr()
    assert code == 1
    err = out.err
    assert "1 decision(s) imported" in out.out
    assert re.search(r"第\d+行：锁定的内容.*被改动", err)
    assert "核实结论「同意」无效" in err
    assert "没有填写核实人" in err
    assert "更正后的身份证号" in err and "43312420050123123" not in err
    assert "不涉及系统中的某条记录" in err
    assert "alien.xlsx：这份表来自另一次运行（run-somewhere-else）" in err
    assert "plain.xlsx：不是本系统下发的核实表" in err
    assert "找不到这一行对应的问题" in err
    rows = q(db, "select reviewer, decision, decision_code, note, workbook, item_ref, run_id from reviews")
    assert len(rows) == 1
    assert rows[0][:4] == ("王老师", "确认是同一人", "confirm", "户口簿核对") and rows[0][5:] == (good, run_id)


# --------------------------------------------------------------------------- end to end


def test_round_trip_two_nights_with_clerk_decisions(harness, county: Path, inbox: Path, tmp_path: Path) -> None:
    from flows.nightly import TOWN_DIR, nightly_reconciliation

    db, reports = tmp_path / "recon.duckdb", tmp_path / "reports"
    first = nightly_reconciliation(inbox=str(inbox), db=str(db), reports=str(reports))
    run1 = first["run_id"]
    d1 = items(db, run1)
    assert d1["item_key"].n_unique() == d1.height and d1["row_hash"].null_count() == 0
    books = sorted(Path(first["reports"]).glob("*.xlsx"))
    towns = sorted((Path(first["reports"]) / TOWN_DIR).glob("*.xlsx"))
    assert books and towns

    def ref(kind: str, n: int = 0, where: pl.Expr | None = None) -> dict:
        sel = d1.filter(pl.col("kind") == kind)
        if where is not None:
            sel = sel.filter(where)
        return sel.sort("item_ref").row(n, named=True)

    confirm = ref("name_mismatch", 0)
    conflict = ref("name_mismatch", 1)
    reject = ref("household_exited", 0)
    truth = truth_ids(county)
    fixed = ref("id_invalid", 0, pl.col("system_identity").str.starts_with("id:"))
    ack = ref("not_found", 0, pl.col("roster_identity").str.starts_with("id:"))
    ack_changed = ref("name_mismatch", 2)
    true_id = truth.filter((pl.col("file") == fixed["file"]) & (pl.col("sheet") == fixed["sheet"])
                           & (pl.col("row") == fixed["row"]))["true_id"][0]

    plan = {
        confirm["item_ref"]: ("确认是同一人", None, "对照户口簿", "王老师"),
        conflict["item_ref"]: ("确认是同一人", None, None, "王老师"),
        reject["item_ref"]: ("不是同一人", None, "不是本校学生的家庭", "王老师"),
        fixed["item_ref"]: ("已更正", true_id, None, "王老师"),
        ack["item_ref"]: ("已更正", None, "名单已改", "王老师"),
        ack_changed["item_ref"]: ("确认是同一人", None, None, "王老师"),
    }
    for r, dec in plan.items():
        fill(book_of(books, r), {r: dec})
    # A town clerk sees the same item and decides otherwise: reported, not applied.
    fill(book_of(towns, conflict["item_ref"]), {conflict["item_ref"]: ("不是同一人", None, None, "乡镇赵干事")})
    rep = review_import.import_workbooks([*books, *towns], db)
    assert rep.ok, rep.errors
    assert rep.imported == len(plan) + 1
    assert any("不一致" in n for n in rep.notes)

    # Between the nights a clerk edits one student's row in the roster file.
    [(file, sheet, row, name)] = q(db, "select file, sheet, row, name from records where run_id = ? and source = 'roster' "
                                       "and file = ? and sheet = ? and row = ?",
                                   [run1, ack_changed["file"], ack_changed["sheet"], ack_changed["row"]])
    wb = openpyxl.load_workbook(inbox / file)
    ws = wb[sheet]
    hits = [c for r in ws.iter_rows() for c in r if c.value == name and c.row == row]
    assert hits
    hits[0].value = name + "某"
    wb.save(inbox / file)

    second = nightly_reconciliation(inbox=str(inbox), db=str(db), reports=str(reports))
    run2 = second["run_id"]
    d2 = items(db, run2)
    keys2 = dict(zip(d2["item_key"], d2["kind"]))
    state2 = dict(zip(d2["item_key"], d2["review_state"]))

    # Judged items are gone, and so is the item whose ID the clerk corrected.
    for it in (confirm, reject, fixed):
        assert it["item_key"] not in keys2, it["kind"]
    # Still produced tonight and hidden by its decision: the confirmed pair's name_mismatch (the
    # corrected ID and the rejected link stop producing theirs; 已更正 without a value hides nothing).
    assert second["review_suppressed"] >= 1
    # 已更正 without a value hides nothing while the record is unchanged: it comes back, saying so.
    assert state2[ack["item_key"]] == "reopened"
    assert d2.filter(pl.col("item_key") == ack["item_key"])["message"][0].startswith("【已填写“已更正”，但问题仍在】")
    # Disagreement comes back as such.
    assert state2[conflict["item_key"]] == "conflict"
    msg = d2.filter(pl.col("item_key") == conflict["item_key"])["message"][0]
    assert "核实结论不一致" in msg and "王老师" in msg and "乡镇赵干事" in msg
    # The changed record comes back, saying so.
    assert state2[ack_changed["item_key"]] == "reopened"
    msg = d2.filter(pl.col("item_key") == ack_changed["item_key"])["message"][0]
    assert msg.startswith("【记录已变化，请重新核实】") and "确认是同一人" in msg
    # The rest is unchanged.
    touched = {it["roster_identity"] for it in (confirm, conflict, reject, fixed, ack, ack_changed)}
    rest = d1.filter(~pl.col("roster_identity").is_in(list(touched)))
    assert rest.height > 50
    assert {k: keys2.get(k) for k in rest["item_key"]} == dict(zip(rest["item_key"], rest["kind"]))
    assert not any(state2[k] for k in rest["item_key"])

    # The confirmed pair is matched with the clerk as the reason; the rejected pair is not proposed.
    [(via, status, why)] = q(db, "select m.via, m.status, m.why from matches m join records s on s.run_id = m.run_id "
                                 "and s.source = m.system and s.rec = m.system_rec join records r on r.run_id = m.run_id "
                                 "and r.source = 'roster' and r.rec = m.roster_rec where m.run_id = ? "
                                 "and r.file = ? and r.row = ? and m.system = ?",
                             [run2, confirm["file"], confirm["row"], confirm["system"]])
    assert (via, status) == ("clerk", "matched") and "王老师" in why
    assert not q(db, "select 1 from matches m join records r on r.run_id = m.run_id and r.source = 'roster' "
                     "and r.rec = m.roster_rec where m.run_id = ? and r.file = ? and r.row = ? and m.system = ? "
                     "and m.system_row = ?", [run2, reject["file"], reject["row"], reject["system"], reject["system_row"]])
    # The corrected ID is used.
    [(id_norm, status)] = q(db, "select id_norm, id_status from records where run_id = ? and source = 'roster' "
                                "and file = ? and sheet = ? and row = ?", [run2, fixed["file"], fixed["sheet"], fixed["row"]])
    assert (id_norm, status) == (true_id, "valid")

    # Analysts: the views answer the questions.
    nights = q(db, "select count(*) from night_over_night")
    assert nights == [(1,)]  # same night: the rerun superseded the first run
    thr = dict(q(db, "select reviewer, sum(decisions)::int from clerk_throughput group by reviewer"))
    assert thr == {"王老师": len(plan), "乡镇赵干事": 1}
    assert q(db, "select count(*) from review_conflicts") == [(1,)]
    assert q(db, "select count(*) from open_discrepancies")[0][0] == d2.height
    assert q(db, "select sum(n) from discrepancy_totals")[0][0] == d2.height
    # Coverage: school-age children of system households that no roster row lists or links to.
    [(gaps, ids, young, old)] = q(db, "select count(*), count(distinct id_norm), min(age), max(age) from coverage_gaps")
    assert gaps > 0 and ids == gaps and 6 <= young <= old <= 17
    assert q(db, "select count(*) from coverage_gaps g join records r on r.run_id = g.run_id and r.source = 'roster' "
                 "and r.id_norm = g.id_norm") == [(0,)]
    assert q(db, "select count(*) from coverage_gaps g join records s on s.run_id = g.run_id and s.id_norm = g.id_norm "
                 "join matches m on m.run_id = s.run_id and m.system = s.source and m.system_rec = s.rec") == [(0,)]
    assert q(db, "select sum(children) from coverage_by_town")[0][0] == gaps


def test_cli_review_import_needs_files(capsys) -> None:
    with pytest.raises(SystemExit):
        cli_main(["review", "import"])
    assert "FILE" in capsys.readouterr().err


def test_clean_id() -> None:
    good = make_id()
    assert review.clean_id(" " + good.lower().replace("x", "x") + " ") == good
    assert review.clean_id("".join(chr(ord(c) + 0xFEE0) for c in good)) == good
    assert review.clean_id(good[:-1] + ("0" if good[-1] != "0" else "1")) is None
    assert review.clean_id(None) is None


# --------------------------------------------------------------------------- analysts


def test_monday_notebook_runs_against_a_generated_county(inbox: Path, tmp_path: Path, settings, monkeypatch) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    db, reports = tmp_path / "recon.duckdb", tmp_path / "reports"
    run1, _, paths = run_night(inbox, db, reports, date(2026, 11, 23), settings)
    d = items(db, run1)
    ref = d.filter(pl.col("kind") == "name_mismatch")["item_ref"][0]
    fill(book_of(paths, ref), {ref: ("确认是同一人", None, None, "王老师")})
    assert review_import.import_workbooks(paths, db).imported == 1
    run_night(inbox, db, reports, date(2026, 11, 24), settings)
    [(new, resolved, still)] = q(db, "select new, resolved, still_open from night_over_night where night = '2026-11-24'")
    assert resolved == 1 and new == 0 and still == d.height - 1

    root = Path(__file__).resolve().parents[1]
    nb = nbformat.read(root / "notebooks" / "monday.ipynb", as_version=4)
    monkeypatch.setenv("RECON_DB", str(db))
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(root)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 3  # problems by town, trend, match weights
    text = " ".join(str(o.get("data", {}).get("text/plain", "")) + str(o.get("text", "")) for o in outputs)
    assert "王老师" in text
    assert "bits (sum of the rows below:" in text  # one link explained field by field


# --------------------------------------------------------------------------- reading a clerk's row


@pytest.mark.parametrize("text, code", [
    ("确认是同一人", "confirm"), ("是同一人", "confirm"), (" 确认 是同一人 ", "confirm"), ("确认是同一人（户口簿）", "confirm"),
    ("不是同一人。", "reject"), ("不是同一个人", "reject"), ("非同一人", "reject"),
    ("已更正", "corrected"), ("已改正", "corrected"), ("已更正为1500", "corrected"),
    ("待核实", "pending"), ("核实中", "pending"),
    ("同意", None), ("已核实", None), ("OK", None), ("随便", None), ("不是同一人，待核实", None),
])
def test_parse_decision(settings, text: str, code: str | None) -> None:
    got, why = review.parse_decision(text, settings.review)
    assert got == code
    if code is None:
        assert f"核实结论「{text}」无效" in why and " / ".join(vocabulary.DECISION_LABELS) in why


@pytest.mark.parametrize("field, value, number_cell, clean, says", [
    ("id_number", make_id(), False, make_id(), None),
    ("id_number", " " + make_id().lower() + " ", False, make_id(), None),
    ("id_number", make_id()[:17], False, None, "无效"),
    ("id_number", "4.33124201604214E+17", False, None, "只保留了前15位"),
    ("id_number", "433124201604214016", True, None, "后3位已经丢失"),
    ("amount", "1500", False, "1500", None),
    ("amount", "1,500元", False, "1500", None),
    ("amount", "1500.50", False, "1500.5", None),
    ("amount", "一千五", False, None, "不是数字"),
    ("amount", "0", False, None, "之间"),
    ("name", "刘永怡", False, "刘永怡", None),
    ("name", "阿依古丽•买买提", False, "阿依古丽·买买提", None),
    ("name", "刘永怡123", False, None, "不像一个姓名"),
    ("name", "   ", False, None, "没有填写"),
])
def test_clean_correction(field: str, value: str, number_cell: bool, clean: str | None, says: str | None) -> None:
    got, why = review.clean_correction(field, value, number_cell=number_cell)
    assert got == clean
    assert (why is None) if says is None else (says in why)
    assert why is None or make_id() not in why


DAY = date(2025, 9, 1)
CHILD = make_id(birth="20150305", seq="123")  # 10 on DAY: 小学四年级


@pytest.mark.parametrize("corrected, student, owners, ok, says", [
    (CHILD, {"name_norm": "张三", "stage": "小学", "grade": "四年级"}, [], True, None),
    (CHILD, {"name_norm": "张三", "stage": "小学", "grade": "四年级"},
     [review.Owner("filing", "member", "张三")], True, None),
    (CHILD, {"name_norm": "张三", "stage": "小学", "grade": "四年级"},
     [review.Owner("dibao", "member", "张山")], True, None),  # one character off: the roster's typo
    (CHILD, {"name_norm": "张三", "stage": "小学"}, [review.Owner("dibao", "head", "张大山")], False, "低保系统中户主"),
    (CHILD, {"name_norm": "张三", "stage": "小学"}, [review.Owner("roster", "guardian", "张大山")], False, "监护人"),
    (CHILD, {"name_norm": "张三", "stage": "小学"}, [review.Owner("filing", "member", "李四妹")], False, "另一个人"),
    (make_id(birth="19690101"), {"name_norm": "张三", "stage": "小学"}, [], False, "56 岁"),
    (make_id(birth="19690101"), {"name_norm": "张三"}, [], False, "在校学生"),
    (CHILD, {"name_norm": "张三", "stage": "高中", "grade": "高一"}, [], False, "10 岁"),
    (CHILD, {"name_norm": "张三", "stage": "小学", "birth": date(2015, 3, 6)}, [], True, "出生日期"),
    (CHILD, {"name_norm": "张三", "stage": "小学", "gender_norm": "女"}, [], True, "性别"),
])
def test_judge_corrected_id(settings, corrected: str, student: dict, owners: list, ok: bool, says: str | None) -> None:
    got, why = review.judge_corrected_id(corrected, student, owners, DAY, settings.checks)
    assert got is ok
    assert (why is None) if says is None else (says in why)


def _decision(reviewer: str, code: str, *, key: str = "k1", at: int = 1, corrected: str | None = None,
              note: str | None = None, workbook: str = "a.xlsx") -> dict:
    return {"reviewer": reviewer, "decision": vocabulary.DECISION_LABEL_OF[code], "decision_code": code, "item_key": key,
            "imported_at": datetime(2026, 11, at, tzinfo=timezone.utc), "corrected_value": corrected, "note": note,
            "kind": "subsidy_mismatch", "workbook": workbook}


@pytest.mark.parametrize("rows, conflict, says", [
    ([_decision("王", "confirm"), _decision("王", "confirm", workbook="b.xlsx")], False, None),
    ([_decision("王", "confirm"), _decision("王", "reject", workbook="b.xlsx")], True, "王（a.xlsx）"),
    ([_decision("王", "confirm"), _decision("王", "reject", at=2)], False, None),  # a later import replaces
    ([_decision("王", "corrected", corrected="1500"), _decision("赵", "corrected", corrected="1300")], True, "更正为 1300"),
    ([_decision("王", "corrected", corrected="1500"), _decision("赵", "pending")], False, None),
])
def test_effective_decisions(rows: list[dict], conflict: bool, says: str | None) -> None:
    eff = review.effective_decisions(pl.DataFrame(rows))
    assert eff["conflict"].to_list() == [conflict]
    if says:
        assert says in eff["detail"][0]


def test_carried_forward_is_the_latest_pending_and_note() -> None:
    rows = [_decision("王", "pending", note="等户口簿", at=1), _decision("赵", "confirm", key="k2", note="已核", at=1),
            _decision("王", "pending", key="k3", at=1), _decision("王", "confirm", key="k3", at=2)]
    got = {r["item_key"]: r for r in review.carried_forward(pl.DataFrame(rows)).iter_rows(named=True)}
    assert (got["k1"]["carried_decision"], got["k1"]["carried_note"], got["k1"]["carried_reviewer"]) == ("待核实", "等户口簿", "王")
    assert (got["k2"]["carried_decision"], got["k2"]["carried_note"]) == (None, "已核")
    assert "k3" not in got


def test_review_columns_are_the_reviews_table() -> None:
    assert store.REVIEWS_SCHEMA == review.REVIEW_COLUMNS


@pytest.mark.parametrize("text, says", [
    ('[decisions]\n"确认" = ["是"]\n', "not one of"),
    ('[decisions]\n"确认是同一人" = ["对"]\n"不是同一人" = ["对"]\n', "two decisions"),
    ('[decisions]\n"确认是同一人" = ["同一人"]\nambiguous = ["同一人"]\n', "also listed"),
])
def test_review_toml_is_validated(tmp_path: Path, text: str, says: str) -> None:
    (tmp_path / "review.toml").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=says):
        load_settings(tmp_path)
