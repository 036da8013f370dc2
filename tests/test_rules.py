"""Discrepancy rules: each kind from a small constructed county, one case a row."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from typing import Any

import polars as pl
import pytest

from conftest import ingested, make_id, sheet
from reconcile.config import Settings
from reconcile.pipeline import reconcile

KID = make_id("433124", "20120305", "123")
HEAD = make_id("433124", "19800101", "011")
ROSTER = {"name": "王丽", "id_number": KID, "birth_date": "2012-03-05", "gender": "男", "head_name": "王建国",
          "head_id": HEAD, "town": "卫民镇", "village": "田上村", "school": "卫民镇中学"}
F_HEAD = {"name": "王建国", "id_number": HEAD, "head_name": "王建国", "household_no": "H1", "relation": "户主",
          "town": "卫民镇", "village": "田上村", "poverty_status": "未脱贫", "exit_year": None}
F_KID = {**F_HEAD, "name": "王丽", "id_number": KID, "relation": "之子"}
D_KID = {"name": "王丽", "id_number": KID, "head_name": "王建国", "head_id": HEAD, "town": "卫民镇", "village": "田上村",
         "status": "在保"}


def _kinds(settings: Settings, roster: list[dict[str, Any]], filing: list[dict[str, Any]],
           dibao: list[dict[str, Any]]) -> pl.DataFrame:
    tables = [sheet("roster", roster, file="roster/卫民镇中学.xlsx")]
    if filing:
        tables.append(sheet("filing", filing, file="filing/f.csv", sheet_name=""))
    if dibao:
        tables.append(sheet("dibao", dibao, file="dibao/d.xls"))
    return reconcile(ingested(*tables), settings).discrepancies


def _wrong_digit(i: str, pos: int) -> str:
    return i[:pos] + str((int(i[pos]) + 1) % 10) + i[pos + 1:]


CASES: list[tuple[str, list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]], set[str]]] = [
    ("clean", [ROSTER], [F_HEAD, F_KID], [D_KID], set()),
    ("in neither system", [{**ROSTER, "name": "赵六", "id_number": make_id("433124", "20110101", "555"), "birth_date": None, "head_id": None,
                            "head_name": "赵五"}], [F_HEAD, F_KID], [D_KID], {"not_found"}),
    ("ID one digit wrong in roster", [{**ROSTER, "id_number": _wrong_digit(KID, 8)}], [F_HEAD, F_KID], [],
     {"id_mismatch", "id_invalid"}),
    ("name differs, ID agrees", [{**ROSTER, "name": "王莉"}], [F_HEAD, F_KID], [], {"name_mismatch"}),
    ("ID missing", [{**ROSTER, "id_number": None}], [F_HEAD, F_KID], [], {"id_invalid"}),
    ("ID only in student number", [{**ROSTER, "id_number": None, "student_no": "G" + KID}], [F_HEAD, F_KID], [],
     {"id_invalid"}),
    ("exited, no more policy", [ROSTER], [F_HEAD, {**F_KID, "poverty_status": "4", "exit_year": "2021"}], [],
     {"household_exited"}),
    ("exited but dibao still pays", [ROSTER], [{**F_KID, "poverty_status": "已脱贫(不再享受政策)"}], [D_KID], set()),
    ("dibao stopped", [ROSTER], [], [{**D_KID, "status": "停保"}], {"dibao_stopped"}),
    ("dibao stopped, filing qualifies", [ROSTER], [F_HEAD, F_KID], [{**D_KID, "status": "注销"}], set()),
    ("claimed twice", [ROSTER, {**ROSTER, "school": "卫民镇中心小学"}], [F_HEAD, F_KID], [], {"duplicate_claim"}),
    ("birth date contradicts ID", [{**ROSTER, "birth_date": "2012-03-06"}], [F_HEAD, F_KID], [], {"id_fact_conflict"}),
    ("gender contradicts ID", [{**ROSTER, "gender": "女"}], [F_HEAD, F_KID], [], {"id_fact_conflict"}),
]


@pytest.mark.parametrize(("case", "roster", "filing", "dibao", "kinds"), CASES, ids=[c[0] for c in CASES])
def test_kinds(settings: Settings, case: str, roster: list[dict[str, Any]], filing: list[dict[str, Any]],
               dibao: list[dict[str, Any]], kinds: set[str]) -> None:
    found = _kinds(settings, roster, filing, dibao)
    assert set(found["kind"].to_list()) == kinds, found.select("kind", "message")
    assert found.filter(pl.col("message").is_null() | (pl.col("message") == "")).is_empty()


def test_id_mismatch_names_the_digit_and_side(settings: Settings) -> None:
    found = _kinds(settings, [{**ROSTER, "id_number": _wrong_digit(KID, 8)}], [F_HEAD, F_KID], [])
    row = found.filter(pl.col("kind") == "id_mismatch").row(0, named=True)
    assert "第9位" in row["message"] and "名单" in row["message"]
    assert row["diff_positions"] == [8]
    assert row["system_row"] == 3 and row["system"] == "filing"


def test_exit_year_in_message(settings: Settings) -> None:
    found = _kinds(settings, [ROSTER], [F_HEAD, {**F_KID, "poverty_status": "4", "exit_year": "2021"}], [])
    assert "2021" in found.filter(pl.col("kind") == "household_exited")["message"][0]


def test_messages_never_hold_an_id(settings: Settings) -> None:
    found = _kinds(settings, [{**ROSTER, "id_number": _wrong_digit(KID, 8)}, {**ROSTER, "name": "王莉"}],
                   [F_HEAD, F_KID], [{**D_KID, "status": "停保"}])
    assert not found.filter(pl.col("message").str.contains(r"\d{15}")).height


# ------------------------------------------------------------------------------ what a clerk is shown (issue 12)

def _check_wrong(i: str) -> str:
    return i[:17] + ("0" if i[17] != "0" else "1")


def test_id_invalid_shows_nothing_of_the_head_of_household(settings: Settings) -> None:
    """Linked only through a heads-only dibao row: the head's ID is no hint for the student's."""
    heads_only = [{"head_name": "王建国", "head_id": HEAD, "town": "卫民镇", "village": "田上村", "status": "在保"}]
    found = _kinds(settings, [{**ROSTER, "id_number": _check_wrong(KID)}], [], heads_only)
    row = found.filter(pl.col("kind") == "id_invalid").row(0, named=True)
    assert row["system_value"] is None and row["system_id"] is None and row["system_name"] is None
    assert "可供核对" not in row["message"]
    shown = [row[c] for c in ("value", "system_value", "system_id", "system_name", "message")]
    assert not [v for v in shown if v and (HEAD in v or HEAD[-4:] in v)]


ROSTER_IDS = [
    ("check character wrong", _check_wrong(KID), "text", [], "第18位校验码应为「" + KID[17] + "」", [17]),
    ("Excel number", KID[:15] + "000", "number", [], "第16至18位已丢失", [15, 16, 17]),
    ("one digit wrong, own record", _wrong_digit(KID, 8), "text", [F_HEAD, F_KID], "第9位不同", [8]),
]


@pytest.mark.parametrize(("case", "value", "cell", "filing", "says", "positions"), ROSTER_IDS, ids=[c[0] for c in ROSTER_IDS])
def test_id_invalid_says_where_the_id_is_damaged(settings: Settings, case: str, value: str, cell: str,
                                                filing: list[dict[str, Any]], says: str, positions: list[int]) -> None:
    found = _kinds(settings, [{**ROSTER, "id_number": value, "id_number_kind": cell}], filing, [])
    row = found.filter(pl.col("kind") == "id_invalid").row(0, named=True)
    assert says in row["message"], row["message"]
    assert row["diff_positions"] == positions


def _households(village: str, n: int, start: int, status: str = "未脱贫") -> list[dict[str, Any]]:
    out = []
    for i in range(start, start + n):
        head = make_id("433124", "19800101", f"{2 * i + 1:03d}")
        base = {**F_HEAD, "village": village, "household_no": f"H{village}{i}", "head_name": f"户主{i}", "poverty_status": status}
        out += [{**base, "name": f"户主{i}", "id_number": head}]
    return out


def test_no_message_claims_absence_in_an_export_cut_short(settings: Settings) -> None:
    """岩山村 is missing from tonight's dibao export: nobody is told the student has no dibao there."""
    filing = (_households("田上村", 6, 10) + _households("岩山村", 6, 30)
              + [{**F_HEAD, "village": "岩山村", "poverty_status": "4", "exit_year": "2021"},
                 {**F_KID, "village": "岩山村", "poverty_status": "4", "exit_year": "2021"}])
    dibao = [{"name": f"户主{i}", "id_number": make_id("433124", "19800101", f"{2 * i + 1:03d}"), "head_name": f"户主{i}",
              "town": "卫民镇", "village": "田上村", "status": "在保"} for i in range(10, 16)]
    tables = [sheet("roster", [{**ROSTER, "village": "岩山村"}], file="roster/卫民镇中学.xlsx"),
              sheet("filing", filing, file="filing/f.csv", sheet_name=""), sheet("dibao", dibao, file="dibao/d.xls")]
    res = reconcile(ingested(*tables), settings, as_of=dt.date(2025, 9, 1))
    assert res.export_problems.select("system", "village").rows() == [("dibao", "岩山村")]
    found = res.discrepancies
    exited = found.filter(pl.col("kind") == "household_exited")["message"].to_list()
    assert exited and all("导出不完整" in m for m in exited), exited
    assert not [m for m in found["message"].to_list() if re.search("低保系统中(也)?没有|不在低保", m)]


def _university_child(settings: Settings, missed_stages: frozenset[str] = frozenset()) -> pl.DataFrame:
    """A 19-year-old 本科 student of a qualifying household; tonight's roster is one junior-school row."""
    student = {**F_KID, "name": "王大", "id_number": make_id("433124", "20060101", "135"), "school_status": "本科"}
    pupil = {**F_KID, "school_status": "初中"}
    s = dataclasses.replace(settings, checks=dataclasses.replace(settings.checks, missed_stages=missed_stages))
    tables = [sheet("roster", [{**ROSTER, "grade": "初二"}], file="roster/卫民镇中学.xlsx"),
              sheet("filing", [F_HEAD, pupil, student], file="filing/f.csv", sheet_name="")]
    return reconcile(ingested(*tables), s, as_of=dt.date(2025, 9, 1)).discrepancies


def test_missed_eligible_only_for_stages_tonights_rosters_cover(settings: Settings) -> None:
    found = _university_child(settings)
    assert "missed_eligible" not in found["kind"].to_list()
    other = found.filter(pl.col("kind") == "missed_other_stage")
    assert other.select("system_value", "town").rows() == [("本科", "卫民镇")]


def test_missed_eligible_for_a_configured_stage(settings: Settings) -> None:
    found = _university_child(settings, frozenset({"本科"}))
    assert found.filter(pl.col("kind") == "missed_eligible")["system_value"].to_list() == ["本科"]


def test_a_row_without_town_goes_to_its_households_town(settings: Settings) -> None:
    found = _kinds(settings, [{**ROSTER, "name": "王莉", "town": None, "village": None}], [F_HEAD, F_KID], [])
    assert found.select("kind", "town", "village").rows() == [("name_mismatch", "卫民镇", "田上村")]
