"""Discrepancy rules: each kind from a small constructed county, one case a row."""

from __future__ import annotations

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


def test_every_spelling_of_a_town_gives_one_town_on_the_items(settings: Settings) -> None:
    ghosts = [{**ROSTER, "name": f"赵{c}", "id_number": make_id("433124", "20120305", f"{n:03d}"), "head_name": None,
               "head_id": None, "town": town} for n, (c, town) in enumerate(
                   [("一", "茶峒镇"), ("二", "茶洞镇"), ("三", "茶峒"), ("四", "茶峒镇")], start=301)]
    d = _kinds(settings, ghosts, [F_HEAD, F_KID], [D_KID])
    assert set(d.filter(pl.col("kind") == "not_found")["town"]) == {"茶峒镇"}
