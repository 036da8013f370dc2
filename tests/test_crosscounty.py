"""Students schooled across county lines, from two small constructed counties: a 花垣县
school's roster, a 凤凰县 household."""

from __future__ import annotations

import datetime as dt
from datetime import datetime, timezone
from typing import Any

import polars as pl
import pytest

from conftest import ingested, make_id, sheet
from reconcile.config import Settings
from reconcile.ingest import PROBLEM_SCHEMA
from reconcile.crosscounty import Shard, in_province, look_across
from reconcile.pipeline import Results, judge, match_all, normalize_all
from reconcile.review import REVIEW_COLUMNS
from reconcile.vocabulary import DECISION_LABEL_OF

AS_OF = dt.date(2025, 9, 1)
HOME, SCHOOL = "凤凰县", "花垣县"
KID = make_id("433123", "20120305", "123")  # 凤凰县's region code
HEAD = make_id("433123", "19800101", "011")
LOCAL = make_id("433124", "20110607", "245")
LOCAL_HEAD = make_id("433124", "19790202", "013")


def _filing(kid: str, head: str, name: str, head_name: str, town: str, no: str) -> list[dict[str, Any]]:
    base = {"head_name": head_name, "household_no": no, "town": town, "village": "田上村", "poverty_status": "未脱贫",
            "school_status": "初中"}
    return [{**base, "name": head_name, "id_number": head, "relation": "户主"},
            {**base, "name": name, "id_number": kid, "relation": "之子"}]


def _row(name: str, kid: str | None, head_name: str, head: str, town: str, school: str) -> dict[str, Any]:
    return {"name": name, "id_number": kid, "birth_date": "2012-03-05" if kid != LOCAL else "2011-06-07", "gender": "男",
            "head_name": head_name, "head_id": head, "town": town, "village": "田上村", "school": school, "stage": "初中"}


AWAY = _row("王丽", KID, "王建国", HEAD, "山江镇", "花垣县第一中学")
AT_HOME = _row("王丽", KID, "王建国", HEAD, "山江镇", "山江镇中学")
LOCAL_ROW = _row("张强", LOCAL, "张国华", LOCAL_HEAD, "卫民镇", "卫民镇中学")


def _shard(county: str, roster: list[dict[str, Any]], filing: list[dict[str, Any]], settings: Settings) -> Shard:
    records, _ = normalize_all(ingested(sheet("roster", roster, file="roster/r.xlsx"),
                                        sheet("filing", filing, file="filing/f.csv", sheet_name="")), settings)
    records = {s: in_province(f, county) for s, f in records.items()}
    return Shard(county, records, match_all(records, settings))


def _night(settings: Settings, school_roster: list[dict[str, Any]], home_roster: list[dict[str, Any]],
           decisions: pl.DataFrame | None = None) -> dict[str, Results]:
    shards = {
        SCHOOL: _shard(SCHOOL, [LOCAL_ROW, *school_roster], _filing(LOCAL, LOCAL_HEAD, "张强", "张国华", "卫民镇", "H1"), settings),
        HOME: _shard(HOME, home_roster or [_row("李明", make_id("433123", "20100101", "017"), "李华", make_id("433123", "19750101", "019"),
                                                 "山江镇", "山江镇中学")],
                     _filing(KID, HEAD, "王丽", "王建国", "山江镇", "H7"), settings),
    }
    lent = look_across(shards, settings, AS_OF, decisions)
    return {c: judge(dict(s.records), pl.DataFrame(schema=PROBLEM_SCHEMA), s.matches, settings, as_of=AS_OF,
                     decisions=decisions, borrowed=lent[c], counts=dict(lent[c].clerks)) for c, s in shards.items()}


@pytest.mark.parametrize("case, row", [
    ("routed by the ID's region code (a homophone in the name)", {**AWAY, "name": "王莉"}),
    ("no ID: by name, birth date and guardian across the province", {**AWAY, "id_number": None}),
])
def test_found_in_the_home_county_and_not_missed_there(settings: Settings, case: str, row: dict[str, Any]) -> None:
    night = _night(settings, [row], [])
    links = night[SCHOOL].matches.filter(pl.col("roster_file") == f"{SCHOOL}/roster/r.xlsx")
    away = links.filter(pl.col("system_county") == HOME)
    assert away.height == 1 and away["status"].to_list() == ["matched"], case
    assert away["system_file"].to_list() == [f"{HOME}/filing/f.csv"]
    items = night[SCHOOL].discrepancies
    assert "not_found" not in items["kind"].to_list(), case
    theirs = items.filter(pl.col("system_county") == HOME)
    assert theirs.height >= 1 and theirs["message"].str.contains(f"在{HOME}的建档立卡导出中找到").all(), case
    # his household's county does not ask after him: he is on another county's roster
    home = night[HOME].discrepancies
    assert home.filter((pl.col("kind") == "missed_eligible") & (pl.col("system_name") == "王丽")).is_empty(), case


def test_without_the_look_across_he_would_be_missed_at_home(settings: Settings) -> None:
    night = _night(settings, [], [])
    home = night[HOME].discrepancies
    assert home.filter((pl.col("kind") == "missed_eligible") & (pl.col("system_name") == "王丽")).height == 1


def test_the_same_student_on_two_counties_rosters_is_claimed_twice_in_both(settings: Settings) -> None:
    night = _night(settings, [AWAY], [AT_HOME])
    for county, other in ((SCHOOL, HOME), (HOME, SCHOOL)):
        items = night[county].discrepancies
        dup = items.filter((pl.col("kind") == "duplicate_claim") & (pl.col("name") == "王丽"))
        assert dup.height == 1, county
        assert f"{other}/roster/r.xlsx" in dup["message"][0]


def test_a_student_found_at_home_is_not_looked_for_elsewhere(settings: Settings) -> None:
    night = _night(settings, [], [])
    assert night[SCHOOL].matches["system_county"].to_list() == [SCHOOL]
    assert night[SCHOOL].discrepancies.filter(pl.col("kind") == "not_found").is_empty()


def _decided(item: dict[str, Any], code: str) -> pl.DataFrame:
    """The reviews row `recon review import` stores for a clerk's decision on this item."""
    keep = ("item_key", "item_ref", "fingerprint", "kind", "system", "roster_identity", "system_identity")
    row = {**{k: item[k] for k in keep}, "reviewer": "王老师", "decision": DECISION_LABEL_OF[code],
           "decision_code": code, "imported_at": datetime(2025, 9, 2, tzinfo=timezone.utc)}
    return pl.DataFrame([{c: row.get(c) for c in REVIEW_COLUMNS}], schema=REVIEW_COLUMNS)


@pytest.mark.parametrize("code, linked, counted", [
    ("reject", False, {"clerk_rejections": 1}),
    ("confirm", True, {"clerk_links": 1}),
])
def test_a_clerks_decision_on_a_pair_found_in_another_county_holds_the_next_night(
        settings: Settings, code: str, linked: bool, counted: dict[str, int]) -> None:
    row = {**AWAY, "name": "王莉"}
    first = _night(settings, [row], [])
    [item] = first[SCHOOL].discrepancies.filter(
        (pl.col("system_county") == HOME) & pl.col("kind").is_in(["name_mismatch", "needs_review"])).to_dicts()
    night = _night(settings, [row], [], _decided(item, code))
    away = night[SCHOOL].matches.filter(pl.col("system_county") == HOME)
    assert (away.height == 1) is linked
    if linked:
        assert away["via"].to_list() == ["clerk"] and away["status"].to_list() == ["matched"]
    items = night[SCHOOL].discrepancies
    assert item["item_key"] not in items["item_key"].to_list()  # decided: not asked again
    assert ("not_found" in items["kind"].to_list()) is not linked
    for key, n in counted.items():
        assert night[SCHOOL].counts.get(key) == n, key
    # rejected, his household's county asks after the child again
    home = night[HOME].discrepancies.filter((pl.col("kind") == "missed_eligible") & (pl.col("system_name") == "王丽"))
    assert home.height == (0 if linked else 1)
