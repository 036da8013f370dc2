"""Policy as data (issue 7): policy files, facts from roster text, expected amounts, the
policy rules, incomplete exports, missed eligible children, night-over-night changes."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import tomllib
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from conftest import ingested, make_id, sheet
from reconcile import policy as pol
from reconcile.completeness import Previous, place_counts
from reconcile.config import PACKAGE_CONFIG, Settings, load_settings
from reconcile.errors import ConfigError
from reconcile.pipeline import reconcile

AS_OF = dt.date(2025, 9, 1)
A = PACKAGE_CONFIG / "policy" / "county_a_2025.toml"
B = PACKAGE_CONFIG / "policy" / "county_b_2025.toml"


def _policy(path: Path) -> pol.Policy:
    return pol.parse_policy(tomllib.loads(path.read_text(encoding="utf-8")), source=path.name)


# ------------------------------------------------------------------------------ policy files



def _write_policy(folder: Path, text: str, name: str = "mine.toml") -> Path:
    (folder / "policy").mkdir(parents=True, exist_ok=True)
    path = folder / "policy" / name
    path.write_text(text, encoding="utf-8")
    return path


BAD_TEXT = [
    ("no county", lambda t: t.replace('county = "花垣县"', ""), "'county'"),
    ("unknown stage", lambda t: t.replace('stage = ["学前"]', 'stage = ["幼儿"]'), "stage"),
    ("base not defined", lambda t: t.replace('base = "upper_boarding_primary"', 'base = "nope"'), "amount.base"),
    ("duplicate id", lambda t: t.replace('id = "boarding_junior"', 'id = "boarding_primary"'), "used twice"),
    ("bad per", lambda t: t.replace('per = "once"', 'per = "month"'), ".per"),
    ("unknown category", lambda t: t.replace('category = ["建档立卡"]\namount = 2000', 'category = ["贫困"]\namount = 2000'), "category"),
    ("not TOML", lambda t: t + "\n[[standard]\n", "not valid TOML"),
]


@pytest.mark.parametrize(("case", "edit", "says"), BAD_TEXT, ids=[b[0] for b in BAD_TEXT])
def test_policy_file_validated_on_load(tmp_path: Path, case: str, edit: Any, says: str) -> None:
    text = edit(A.read_text(encoding="utf-8"))
    assert text != A.read_text(encoding="utf-8")
    _write_policy(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_settings(tmp_path)
    assert "mine.toml" in str(err.value) and says in str(err.value)


def test_both_example_counties_load() -> None:
    s = load_settings()
    assert {(p.county, p.school_year) for p in s.policies} >= {("花垣县", 2025), ("凤凰县", 2025)}
    assert pol.choose_policy(s.policies, region="433123", school_year=2026).county == "凤凰县"
    assert pol.choose_policy(s.policies, county="花垣县", school_year=2024).school_year == 2025
    assert pol.choose_policy(s.policies, county="无此县") is None


# ------------------------------------------------------------------------------ facts and amounts

FACTS = [
    # stage, grade, school, boarding → stages, year, boarding
    ("小学", "三年级", "卫民镇中心小学", "是", {"小学"}, 3, True),
    (None, "三年级", None, None, {"小学", "中职"}, 3, None),
    (None, "三年级", "花垣县职业中专", "否", {"中职"}, 3, False),
    (None, "初二", None, None, {"初中"}, 2, None),
    ("初中", "八年级", None, None, {"初中"}, 2, None),
    (None, "高三", "花垣县第一中学", None, {"高中"}, 3, None),
    (None, "大班", None, None, {"学前"}, 3, None),
    (None, "大一", "吉首大学", None, {"本科", "大专"}, 1, None),
    (None, None, "长沙民政职业技术学院", None, {"本科", "大专"}, None, None),
    (None, None, None, None, set(), None, None),
]


@pytest.mark.parametrize(("stage", "grade", "school", "boarding", "stages", "year", "board"), FACTS)
def test_row_facts(stage, grade, school, boarding, stages, year, board) -> None:
    f = pol.row_facts(stage, grade, school, boarding)
    assert (set(f.stages), f.year, f.boarding) == (stages, year, board)


REG = frozenset({"建档立卡"})
DIBAO = frozenset({"低保"})
AMOUNTS = [
    # county, stages, year, boarding, categories, in_province → yearly amount (None: can't tell)
    (A, {"学前"}, 2, None, DIBAO, None, 1000),
    (A, {"小学"}, 3, True, DIBAO, None, 1500),     # upper standard 1000 + 500
    (A, {"初中"}, 1, True, REG, None, 1750),       # 1250 + 500
    (A, {"小学"}, 3, False, REG, None, 800),
    (A, {"小学"}, 3, None, REG, None, None),        # boarding unknown
    (A, {"高中"}, 1, None, REG, None, 2000),
    (A, {"高中"}, 1, None, DIBAO, None, 1500),
    (A, {"中职"}, 1, None, REG, None, 2500),       # waiver + 1500 + 1000
    (A, {"中职"}, 3, None, DIBAO, None, 0),        # waiver only in year 3
    (A, {"本科", "大专"}, 1, None, REG, None, 6000),
    (A, {"本科"}, 2, None, REG, None, 2000),
    (A, {"小学", "中职"}, 3, True, REG, None, None),  # stage ambiguous, amounts differ
    (B, {"小学"}, 2, False, REG, None, 0),         # no day-student standard in county B
    (B, {"初中"}, 2, True, REG, None, 1250),
    (B, {"中职"}, 2, None, REG, None, 5000),
    (B, {"本科"}, 1, None, REG, True, 500),
    (B, {"本科"}, 1, None, REG, False, 1000),
    (B, {"本科"}, 1, None, REG, None, None),        # in or outside the province unknown
]


@pytest.mark.parametrize(("path", "stages", "year", "boarding", "cats", "in_prov", "amount"), AMOUNTS)
def test_expected_amount(path, stages, year, boarding, cats, in_prov, amount) -> None:
    e = pol.expected_amount(_policy(path), pol.Facts(frozenset(stages), year, boarding, cats, in_prov))
    assert (e.amount if e else None) == amount


AGES = [
    (10, {"小学"}, 5, True), (7, {"小学"}, 5, False), (12, {"小学"}, 5, True), (13, {"小学"}, 5, False),
    (16, {"小学", "中职"}, 2, True), (10, {"小学", "中职"}, 2, False), (20, {"本科"}, None, True), (8, set(), 1, None),
]


@pytest.mark.parametrize(("age", "stages", "year", "fits"), AGES)
def test_age_window(settings: Settings, age, stages, year, fits) -> None:
    c = settings.checks
    assert pol.age_window_fits(age, frozenset(stages), year, c.entry_age, c.age_early, c.age_late) is fits


# ------------------------------------------------------------------------------ rules on a small county

KID = make_id("433124", "20150305", "123")  # 10 on 2025-09-01
HEAD = make_id("433124", "19800101", "011")
ROSTER = {"name": "王丽", "id_number": KID, "birth_date": "2015-03-05", "gender": "男", "head_name": "王建国",
          "head_id": HEAD, "town": "卫民镇", "village": "田上村", "school": "卫民镇中心小学", "stage": "小学",
          "grade": "五年级", "boarding": "是", "amount": "1500"}
F_HEAD = {"county": "花垣县", "name": "王建国", "id_number": HEAD, "head_name": "王建国", "household_no": "H1",
          "relation": "户主", "town": "卫民镇", "village": "田上村", "poverty_status": "未脱贫", "exit_year": None,
          "school_status": "非在校生"}
F_KID = {**F_HEAD, "name": "王丽", "id_number": KID, "relation": "之子", "school_status": "小学"}


def _run(settings: Settings, roster: list[dict], filing: list[dict], dibao: list[dict] | None = None,
         as_of: dt.date | None = AS_OF, previous: Previous | None = None):
    tables = [sheet("roster", roster, file="roster/r.xlsx")]
    if filing:
        tables.append(sheet("filing", filing, file="filing/f.csv", sheet_name=""))
    if dibao:
        tables.append(sheet("dibao", dibao, file="dibao/d.xls"))
    return reconcile(ingested(*tables), settings, as_of=as_of, previous=previous)


def _kinds(res) -> set[str]:
    return set(res.discrepancies["kind"].to_list())


RULE_CASES = [
    ("clean", [ROSTER], [F_HEAD, F_KID], set()),
    ("wrong amount", [{**ROSTER, "amount": "1000"}], [F_HEAD, F_KID], {"subsidy_mismatch"}),
    ("per term amount fits", [{**ROSTER, "amount": "750", "aid_item": "每学期生活补助"}], [F_HEAD, F_KID], set()),
    ("boarding unknown: no verdict", [{**ROSTER, "amount": "999", "boarding": None}], [F_HEAD, F_KID], set()),
    ("grade far from age", [{**ROSTER, "grade": "一年级"}], [F_HEAD, F_KID], {"age_stage_mismatch"}),
    ("exited before: no subsidy check", [{**ROSTER, "amount": "1"}],
     [F_HEAD, {**F_KID, "poverty_status": "4", "exit_year": "2021"}], {"household_exited"}),
    ("exits only after the date", [ROSTER], [F_HEAD, {**F_KID, "poverty_status": "4", "exit_year": "2026"}], set()),
    ("child on no roster", [ROSTER],
     [F_HEAD, F_KID, {**F_KID, "name": "王强", "id_number": make_id("433124", "20130601", "135"), "relation": "之子"}],
     {"missed_eligible"}),
    ("exited household's child not missed", [ROSTER],
     [F_HEAD, F_KID, {**F_KID, "name": "王强", "id_number": make_id("433124", "20130601", "135"),
                      "household_no": "H2", "poverty_status": "已脱贫（不再享受政策）", "exit_year": "2019"}], set()),
]


@pytest.mark.parametrize(("case", "roster", "filing", "kinds"), RULE_CASES, ids=[c[0] for c in RULE_CASES])
def test_policy_rules(settings: Settings, case: str, roster: list[dict], filing: list[dict], kinds: set[str]) -> None:
    res = _run(settings, roster, filing)
    assert _kinds(res) == kinds, res.discrepancies.select("kind", "message")
    assert res.policy is not None and res.policy.county == "花垣县"


def test_subsidy_message_names_amount_and_rule(settings: Settings) -> None:
    d = _run(settings, [{**ROSTER, "amount": "1000"}], [F_HEAD, F_KID]).discrepancies.row(0, named=True)
    assert (d["value"], d["system_value"]) == ("1000", "1500")
    assert "义务教育寄宿生生活补助" in d["message"] and "1500 元/年" in d["message"]
    assert not re.search(r"[A-Za-z]{2,}", d["message"]), d["message"]  # no standard ids or base names


def test_missed_eligible_points_at_the_system_record(settings: Settings) -> None:
    other = {**F_KID, "name": "王强", "id_number": make_id("433124", "20130601", "135")}
    d = _run(settings, [ROSTER], [F_HEAD, F_KID, other]).discrepancies.row(0, named=True)
    assert (d["kind"], d["source"], d["file"], d["row"], d["system"], d["system_row"]) == (
        "missed_eligible", "filing", "filing/f.csv", 4, "filing", 4)
    assert "卫民镇田上村" in d["message"] and "12 岁" in d["message"]


def test_changing_a_standard_changes_subsidy_findings(settings: Settings, tmp_path: Path) -> None:
    """Policy is data: the same inbox, a different standard in the file, other findings."""
    before = _run(settings, [ROSTER], [F_HEAD, F_KID])
    assert "subsidy_mismatch" not in _kinds(before)
    text = A.read_text(encoding="utf-8").replace("upper_boarding_primary = 1000", "upper_boarding_primary = 1200")
    _write_policy(tmp_path, text, "county_a_2025.toml")
    after = _run(load_settings(tmp_path), [ROSTER], [F_HEAD, F_KID])
    row = after.discrepancies.filter(pl.col("kind") == "subsidy_mismatch").row(0, named=True)
    assert row["system_value"] == "1700"


def test_county_option_overrides_the_exports(settings: Settings) -> None:
    tables = [sheet("roster", [{**ROSTER, "amount": "1000"}], file="roster/r.xlsx"),
              sheet("filing", [F_HEAD, F_KID], file="filing/f.csv", sheet_name="")]
    res = reconcile(ingested(*tables), settings, as_of=AS_OF, county="433123")
    assert res.policy.county == "凤凰县"
    assert "subsidy_mismatch" not in _kinds(res)  # county B: boarding primary 1000


# ------------------------------------------------------------------------------ incomplete exports, changes

def _village(n: int, village: str, town: str = "卫民镇", start: int = 0) -> tuple[list[dict], list[dict]]:
    """n households with one child each, in filing and dibao."""
    filing, dibao = [], []
    for i in range(start, start + n):
        head = make_id("433124", "19800101", f"{(2 * i + 1) % 1000:03d}")
        kid = make_id("433124", "20150305", f"{(2 * i + 1) % 1000:03d}")
        base = {**F_HEAD, "town": town, "village": village, "household_no": f"H{village}{i}", "head_name": f"户主{i}"}
        filing += [{**base, "name": f"户主{i}", "id_number": head}, {**base, "name": f"孩子{i}", "id_number": kid, "relation": "之子"}]
        dibao.append({"name": f"孩子{i}", "id_number": kid, "head_name": f"户主{i}", "head_id": head, "town": town,
                      "village": village, "status": "在保"})
    return filing, dibao


def test_cut_village_gives_export_problem_and_export_incomplete(settings: Settings) -> None:
    f1, d1 = _village(6, "田上村")
    f2, d2 = _village(6, "岩山村", start=10)
    ghost = {**ROSTER, "name": "赵六", "id_number": make_id("433124", "20150101", "555"), "village": "岩山村",
             "head_name": "赵五", "head_id": None, "amount": None}
    res = _run(settings, [ghost], f1, d1 + d2)  # 岩山村 missing from the filing export
    ep = res.export_problems
    assert ep.select("system", "town", "village", "problem", "found_rows").rows() == [("filing", "卫民镇", "岩山村", "missing", 0)]
    assert ep["expected_rows"][0] == 12 and ep["file"][0] == "filing/f.csv"
    kinds = res.discrepancies.select("kind", "system").rows()
    assert ("export_incomplete", "filing") in kinds and "not_found" not in {k for k, _ in kinds}


def test_previous_run_counts_and_household_changes(settings: Settings) -> None:
    f1, d1 = _village(6, "田上村")
    res1 = _run(settings, [ROSTER], f1 + [F_HEAD, F_KID], d1)
    prev_records = pl.concat([
        res1.records[s].select(pl.lit(s).alias("system"), "household", "town", "village", "head_name", "id_norm",
                               "status" if s == "dibao" else pl.lit(None, pl.String).alias("status"),
                               "poverty_status" if s == "filing" else pl.lit(None, pl.String).alias("poverty_status"),
                               "exit_year" if s == "filing" else pl.lit(None, pl.String).alias("exit_year"),
                               pl.lit(None, pl.String).alias("approved_date"))
        for s in ("dibao", "filing")], how="vertical_relaxed")
    previous = Previous("r1", place_counts({s: res1.records[s] for s in ("dibao", "filing")}), prev_records)
    # tonight: 田上村 filing has 2 of its 6 households, and 王建国's household exited
    exited = {"poverty_status": "已脱贫(不再享受政策)", "exit_year": "2025"}
    f_tonight = f1[:4] + [{**F_HEAD, **exited}, {**F_KID, **exited}]
    res2 = _run(settings, [ROSTER], f_tonight, d1, previous=previous)
    ep = res2.export_problems.row(0, named=True)
    assert (ep["problem"], ep["expected_from"], ep["previous_households"], ep["found_households"]) == (
        "fewer_than_last_run", "previous_run", 7, 3)
    ch = res2.household_changes
    left = ch.filter(pl.col("household") == "H1").row(0, named=True)
    assert (left["system"], left["change"], left["students"]) == ("filing", "left", 1)
    assert "roster/r.xlsx" in left["student_rows"]
    assert set(ch["change"]) == {"left"} and ch.height == 5  # H1 exited, 4 households not in tonight's file
