"""Normalising sheets into records: heads-only dibao, codes, dates, row problems with lineage."""

from __future__ import annotations

import polars as pl
import pytest

from conftest import make_id, sheet
from reconcile.config import Settings
from reconcile.names import name_forms
from reconcile.normalize import normalize_source, observed_names, parse_dates

KID = make_id("433124", "20120305", "123")
HEAD = make_id("433124", "19800101", "011")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2012-03-05", "2012-03-05"),
        ("2012/3/5", "2012-03-05"),
        ("2012年3月5日", "2012-03-05"),
        ("20120305", "2012-03-05"),
        ("2012.03.05", "2012-03-05"),
        ("2012-03-05 00:00:00", "2012-03-05"),
        ("40973", "2012-03-05"),
        ("2012-02-30", None),
        ("不详", None),
        (None, None),
    ],
)
def test_parse_dates(text: str | None, expected: str | None) -> None:
    got = pl.DataFrame({"d": [text]}, schema={"d": pl.String}).select(parse_dates("d")).item()
    assert (got.isoformat() if got else None) == expected


def test_heads_only_dibao_rows_stand_for_the_head(settings: Settings) -> None:
    t = sheet("dibao", [{"head_name": "王建国", "head_id": HEAD, "village": "田上村", "status": "在保"}])
    recs, _ = normalize_source([t], "dibao", settings)
    row = recs.row(0, named=True)
    assert (row["name_norm"], row["id_norm"], row["relation"], row["is_head_row"]) == ("王建国", HEAD, "户主", True)
    assert row["household"] == HEAD


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("0", "未脱贫"), ("1", "已脱贫(享受政策)"), ("3", "返贫"), ("4", "已脱贫(不再享受政策)"),
     ("已脱贫（不再享受政策）", "已脱贫(不再享受政策)"), ("未脱贫", "未脱贫")],
)
def test_poverty_codes(settings: Settings, raw: str, expected: str) -> None:
    t = sheet("filing", [{"name": "王丽", "id_number": KID, "household_no": "H1", "poverty_status": raw}])
    recs, problems = normalize_source([t], "filing", settings)
    assert recs["poverty_status_norm"][0] == expected
    assert problems.is_empty()


def test_row_problems_name_file_sheet_row_and_header(settings: Settings) -> None:
    rows = [
        {"name": "王丽", "id_number": KID, "birth_date": "2012-03-05", "gender": "男", "amount": "1000"},
        {"name": None, "id_number": KID[:17] + ("0" if KID[17] != "0" else "1"), "birth_date": "去年", "gender": "?",
         "amount": "一千"},
    ]
    recs, problems = normalize_source([sheet("roster", rows, file="roster/a.xlsx", sheet_name="秋季")], "roster", settings)
    assert recs.height == 2  # nothing dropped
    got = {(p["row"], p["column"], p["problem"]) for p in problems.iter_rows(named=True)}
    assert got == {
        (3, "hdr_name", "missing_name"),
        (3, "hdr_id_number", "invalid_id:checksum"),
        (3, "hdr_birth_date", "bad_date"),
        (3, "hdr_gender", "unknown_gender"),
        (3, "hdr_amount", "bad_amount"),
    }
    assert set(problems["file"]) == {"roster/a.xlsx"} and set(problems["sheet"]) == {"秋季"}


def test_student_number_supplies_missing_id(settings: Settings) -> None:
    t = sheet("roster", [{"name": "王丽", "student_no": "G" + KID}])
    recs, _ = normalize_source([t], "roster", settings)
    assert (recs["id_norm"][0], recs["id_status"][0]) == (KID, "valid")


def test_empty_source_gives_empty_records(settings: Settings) -> None:
    recs, problems = normalize_source([], "filing", settings)
    assert recs.height == 0 and problems.height == 0
    assert {"name_norm", "id_norm", "household"} <= set(recs.columns)


@pytest.mark.parametrize("source", ["roster", "dibao", "filing"])
def test_every_source_gets_place_keys_and_names(settings: Settings, source: str) -> None:
    rows = [{"name": "王丽", "head_name": "王建国", "town": t, "village": v}
            for t, v in (("茶峒镇", "坝北村"), ("茶洞镇", "坝北村委会"), ("茶峒镇", "坝北"), (None, None))]
    recs, _ = normalize_source([sheet(source, rows)], source, settings)
    assert recs["town_key"].to_list() == ["茶洞"] * 3 + [None]
    assert recs["village_key"].to_list() == ["坝北"] * 3 + [None]
    assert recs["town_name"].to_list() == ["茶峒镇"] * 3 + [None]  # the commonest spelling
    assert recs["village_name"].n_unique() == 2  # one name, and null


@pytest.mark.parametrize("source", ["dibao", "filing"])
def test_a_head_without_id_is_one_household_however_the_village_is_spelt(settings: Settings, source: str) -> None:
    rows = [{"name": n, "head_name": "王建国", "town": "茶峒镇", "village": v, "relation": r}
            for n, v, r in (("王建国", "坝北村", "户主"), ("王丽", "坝北村委会", "之女"), ("王强", "坝北", "之子"))]
    rows.append({"name": "王建国", "head_name": "王建国", "town": "茶峒镇", "village": "坝南村", "relation": "户主"})
    recs, _ = normalize_source([sheet(source, rows)], source, settings)
    hh = recs["household"].to_list()
    assert hh[0] == hh[1] == hh[2] != hh[3]


@pytest.mark.parametrize(("counties", "expected"), [
    # one county: the numbers as they are
    (["花垣县", "花垣县", "花垣县"], ["H1", "H1", "H2"]),
    # a prefecture's merged export: two counties' H1 stay two households; the commonest keeps its numbers
    (["花垣县", "凤凰县", "花垣县"], ["H1", "凤凰县/H1", "H2"]),
    # a tie: the first name in code-point order is the commonest; no county name: the number as it is
    ([None, "凤凰县", "花垣县"], ["H1", "H1", "花垣县/H2"]),
])
def test_filing_household_numbers_are_unique_within_their_county(settings: Settings, counties: list[str | None],
                                                                 expected: list[str]) -> None:
    rows = [{"county_name": c, "household_no": h, "name": n, "head_name": n, "relation": "户主", "town": "茶峒镇"}
            for c, h, n in zip(counties, ["H1", "H1", "H2"], ["王一", "李二", "张三"])]
    recs, _ = normalize_source([sheet("filing", rows)], "filing", settings)
    assert recs["household"].to_list() == expected


@pytest.mark.parametrize(
    ("tables", "expected"),
    [
        # every name and head-name cell of every sheet, in sheet order, as text
        ([sheet("roster", [{"name": "王丽", "head_name": "王建国"}, {"name": "張麗", "head_name": None}]),
          sheet("dibao", [{"head_name": "王建国"}])],
         ["王丽", "張麗", "王建国", None, "王建国"]),
        ([sheet("filing", [{"name": "李明", "household_no": "H1"}])], ["李明"]),
        ([sheet("filing", [{"household_no": "H1"}])], []),
        ([], []),
    ],
)
def test_observed_names(tables, expected) -> None:
    got = observed_names(tables)
    assert got.dtype == pl.String and got.to_list() == expected


@pytest.mark.parametrize("source", ["roster", "dibao", "filing"])
@pytest.mark.parametrize(
    "night",
    [
        ["王丽", "張麗", "欧阳明", "王建国"],  # the night's forms hold every spelling
        ["李明"],  # they lack this source's: those are read here
        [],
    ],
)
def test_night_name_forms_give_the_same_records(settings: Settings, source: str, night: list[str]) -> None:
    rows = [{"name": "張麗", "head_name": "王建国", "id_number": KID, "household_no": "H1"},
            {"name": "欧阳明", "head_name": "王建国", "head_id": HEAD, "household_no": "H1"},
            {"name": None, "head_name": "王 建国", "head_id": HEAD, "household_no": "H1"}]
    t = sheet(source, rows)
    alone, problems = normalize_source([t], source, settings)
    forms = name_forms(pl.Series(night, dtype=pl.String))
    shared, problems2 = normalize_source([t], source, settings, names=forms)
    assert shared.equals(alone) and problems2.equals(problems)
    assert alone["name_norm"].to_list()[:2] == ["张丽", "欧阳明"]
