"""Place keys: suffixes, interchangeable characters, aliases and display names."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import respell_county
from reconcile import ingest
from reconcile.config import Settings, load_settings
from reconcile.pipeline import reconcile
from reconcile.report import write_clerk_workbooks
from reconcile.errors import ConfigError
from reconcile.places import (
    SUFFIXES,
    carry_keys,
    observed_places,
    resolve_places,
    with_resolved_keys,
    parse_place_aliases,
    place_key,
    place_keys,
    place_names,
    with_place_keys,
    with_place_names,
)

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize(
    ("level", "spellings"),
    [
        ("village", ["坝北村", "坝北", "坝北村委会", "坝北社区", "坝北村民委员会", " 坝 北 村 ", "坝北村村委会",
                     "坝北社区居委会", "坝北社区居民委员会", "（坝北村）", "壩北村", "坝北村委"]),
        # a 村 that is half the name stays: 新村 is not 新
        ("village", ["新村", "新村村", "新村村委会", "新村委会", "新村社区", "新村村民委员会"]),
        ("village", ["大垭口村", "大丫口", "大桠口村委会"]),
        ("town", ["茶峒镇", "茶洞镇", "茶峒", "茶洞", "茶峒镇人民政府", "茶峒镇(街道)", "茶峒镇街道办事处", "茶硐镇"]),
        ("town", ["排碧乡", "排碧", "排碧乡人民政府", "排碧苗族乡"]),
        ("town", ["花垣镇", "花垣鎮", "花垣 镇", "花垣镇。"]),
    ],
)
def test_spellings_of_one_place_share_a_key(level: str, spellings: list[str]) -> None:
    keys = {place_key(s, level) for s in spellings}
    assert len(keys) == 1 and None not in keys, keys


@pytest.mark.parametrize(
    ("level", "a", "b"),
    [
        ("village", "新村", "新社区"),  # 新社 and 新村: two places
        ("village", "坝北村", "坝南村"),
        ("village", "田上村", "田下村"),
        ("town", "龙潭镇", "龙茶乡"),
        ("town", "卫民镇", "民乐镇"),
        ("village", "上坪村", "下坪村"),
    ],
)
def test_different_places_keep_different_keys(level: str, a: str, b: str) -> None:
    assert place_key(a, level) != place_key(b, level)


@pytest.mark.parametrize("text", [None, "", "  ", "-", "（）", "\u3000"])
def test_no_place_is_null(text: str | None) -> None:
    assert place_key(text, "village") is None and place_key(text, "town") is None


def test_keys_are_vectorised_and_keep_nulls() -> None:
    s = pl.Series("village", ["坝北村", None, "坝北社区", "新村", "坝北村"])
    got = place_keys(s, "village")
    assert got.name == "village" and got.to_list() == ["坝北", None, "坝北", "新村", "坝北"]
    df = with_place_keys(pl.DataFrame({"town": ["茶峒镇", "茶洞镇"], "village": ["坝北村", "坝北"]}))
    assert df["town_key"].to_list() == ["茶洞", "茶洞"] and df["village_key"].to_list() == ["坝北", "坝北"]


def test_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="level"):
        place_key("坝北村", "county")


_HAN = "坝北南新上下大田岭寨平沙龙石马水高黄金溪坪冲岩湾塘坡垭坳桥湖山口峒洞茶排碧花垣村镇乡社区居委会民员街道办事处人政府苗族"
_TEXT = st.text(alphabet=_HAN + " ·-（）()、,.\u3000ＡＢ12", min_size=0, max_size=12)
_ROOT = st.text(alphabet=_HAN, min_size=2, max_size=5)


@SETTINGS
@given(text=_TEXT, level=st.sampled_from(["town", "village"]))
def test_key_is_idempotent(text: str, level: str) -> None:
    k = place_key(text, level)
    assert place_key(k, level) == k


@SETTINGS
@given(text=_TEXT, level=st.sampled_from(["town", "village"]))
def test_never_empty_when_there_is_a_name(text: str, level: str) -> None:
    k = place_key(text, level)
    if any(c in _HAN or c in "ＡＢ12" for c in text):
        assert k  # not None, not ""
    else:
        assert k is None


@SETTINGS
@given(root=_ROOT, level=st.sampled_from(["town", "village"]), data=st.data())
def test_every_suffix_gives_the_root_s_key(root: str, level: str, data: st.DataObject) -> None:
    suffix = data.draw(st.sampled_from(SUFFIXES[level]))
    assert place_key(root + suffix, level) == place_key(root, level)
    assert place_key(f" {root} {suffix}", level) == place_key(root, level)


@SETTINGS
@given(root=_ROOT)
def test_vectorised_equals_scalar(root: str) -> None:
    values = [root, root + "村", None, root + "社区"]
    assert place_keys(pl.Series(values, dtype=pl.String), "village").to_list() == [place_key(v, "village") for v in values]


# ------------------------------------------------------------------------ aliases
def test_aliases_are_normalised_on_both_sides() -> None:
    a = parse_place_aliases({"village": {"新坝村": "坝北村", "老寨村委会": "坝北"}, "town": {"茶洞": "茶峒镇"}}, "x.toml")
    for s in ("新坝村", "新坝", "新坝村委会", "老寨", "老寨社区", "坝北村"):
        assert place_key(s, "village", a) == place_key("坝北村", "village")
    assert place_key("茶洞", "town", a) == place_key("茶峒镇", "town")
    assert a.names["village"][place_key("坝北", "village")] == "坝北"  # the later target as written
    assert a.names["town"][place_key("茶峒镇", "town")] == "茶峒镇"
    assert place_key("新坝村", "village") != place_key("坝北村", "village")  # without aliases


def test_alias_chains_resolve_and_later_files_replace() -> None:
    a = parse_place_aliases({"village": {"甲村": "乙村", "乙村": "丙村"}}, "one.toml")
    assert place_key("甲村", "village", a) == place_key("丙村", "village")
    b = parse_place_aliases({"village": {"甲村": "丁村"}}, "two.toml", a)
    assert place_key("甲村", "village", b) == place_key("丁村", "village")
    assert place_key("乙村", "village", b) == place_key("丙村", "village")


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ({"county": {"a": "b"}}, r"one\.toml: unknown table \[county\]"),
        ({"village": {"新坝村": 3}}, r"one\.toml: village\.新坝村 must be a non-empty string"),
        ({"village": {"新坝村": " "}}, r"village\.新坝村 must be a non-empty string"),
        ({"village": {"--": "坝北村"}}, r"one\.toml: village\.--: no place name left"),
        ({"village": {"甲村": "乙村", "乙村": "甲村委会"}}, r"one\.toml: village aliases go round in a circle"),
        ({"town": "茶峒镇"}, r"one\.toml: \[town\] must be a table"),
    ],
)
def test_bad_alias_files_are_named(raw: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        parse_place_aliases(raw, "one.toml")


def test_config_folder_extends_the_packaged_aliases(tmp_path: Path) -> None:
    packaged = load_settings()
    assert any(p.name == "place_aliases.toml" for p in packaged.sources)
    (tmp_path / "place_aliases.toml").write_text('[village]\n"新坝村" = "坝北村"\n[town]\n"茶洞" = "茶峒镇"\n', encoding="utf-8")
    s = load_settings(tmp_path)
    assert place_key("新坝村委会", "village", s.places) == place_key("坝北", "village")
    assert any(p.name == "place_aliases.toml" and p.parent == tmp_path for p in s.sources)


def test_config_folder_bad_alias_file_names_file_and_key(tmp_path: Path) -> None:
    (tmp_path / "place_aliases.toml").write_text('[village]\n"新坝村" = ""\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"place_aliases\.toml: village\.新坝村"):
        load_settings(tmp_path)


# ------------------------------------------------------------------ display names
def test_display_name_is_the_commonest_spelling_or_the_alias_target() -> None:
    roster = with_place_keys(pl.DataFrame({"town": ["茶峒镇", "茶峒镇", "茶洞镇"], "village": ["坝北村", "坝北", "坝北"]}))
    dibao = with_place_keys(pl.DataFrame({"town": ["茶洞镇"] * 3, "village": ["坝北 村", "坝北村", "新村"]}))
    names = place_names([roster, dibao], "town")
    assert names.to_dicts() == [{"key": place_key("茶峒", "town"), "name": "茶洞镇"}]
    v = dict(place_names([roster, dibao], "village").iter_rows())
    assert v[place_key("坝北", "village")] == "坝北村"  # 3 of 5 once spaces are gone
    aliases = parse_place_aliases({"town": {"茶洞": "茶峒镇"}}, "x.toml")
    out = with_place_names({"roster": roster, "dibao": dibao}, aliases)
    assert set(out["dibao"]["town_name"]) == {"茶峒镇"} and set(out["roster"]["town_name"]) == {"茶峒镇"}
    assert out["dibao"]["village_name"].to_list() == ["坝北村", "坝北村", "新村"]


@pytest.mark.parametrize(("spellings", "name"), [
    (["龙茶"] * 3 + ["龍茶鄉"] * 5 + ["龙茶乡"], "龙茶乡"),  # a full simplified spelling, however rare
    (["龙茶"] * 3 + ["龍茶鄉"] * 5, "龍茶鄉"),             # else the commonest
    (["龙茶乡"] * 2 + ["龙茶乡人民政府"] * 3, "龙茶乡人民政府"),
])
def test_display_name_prefers_a_full_spelling(spellings: list[str], name: str) -> None:
    df = with_place_keys(pl.DataFrame({"town": spellings, "village": [None] * len(spellings)}, schema={"town": pl.String, "village": pl.String}))
    assert dict(place_names([df], "town").iter_rows()) == {"龙茶": name}


def test_ties_prefer_the_longer_spelling() -> None:
    df = with_place_keys(pl.DataFrame({"town": [None, None], "village": ["坝北", "坝北村委会"]}))
    assert dict(place_names([df], "village").iter_rows()) == {"坝北": "坝北村委会"}


# ----------------------------------------------------- the night's spellings together
def _sheet(file: str, rows: list[tuple[str | None, str | None]]) -> pl.DataFrame:
    return pl.DataFrame({"file": [file] * len(rows), "town": [t for t, _ in rows], "village": [v for _, v in rows]},
                        schema={"file": pl.String, "town": pl.String, "village": pl.String})


def _keys(frames: list[pl.DataFrame]) -> dict[tuple[str | None, str | None], tuple[str | None, str | None]]:
    table = resolve_places(observed_places(frames))
    return {(t, v): (tk, vk) for t, v, tk, vk in table.iter_rows()}


@pytest.mark.parametrize(("variant", "why"), [
    ("结卜镇", "homophone 卜/补"), ("结补", "suffix"), ("洁补镇", "look-alike 洁/结"), ("結補鎮", "traditional"),
])
def test_a_town_one_file_spells_its_own_way_is_the_others_town(variant: str, why: str) -> None:
    frames = [_sheet("roster/a.xlsx", [(variant, "大湖村")] * 3),
              _sheet("filing/f.csv", [("结补镇", "大湖村")] * 5 + [("花垣镇", "中口村")] * 4),
              _sheet("dibao/d.xls", [("结补镇", "大湖")] * 4)]
    keys = _keys(frames)
    assert keys[(variant, "大湖村")] == keys[("结补镇", "大湖村")] == keys[("结补镇", "大湖")] == ("结补", "大湖"), why


def test_one_file_listing_both_spellings_keeps_two_places() -> None:
    frames = [_sheet("dibao/d.xls", [("结补镇", "新村")] * 5 + [("结补镇", "辛村")] * 2),  # 新/辛: both xin
              _sheet("roster/a.xlsx", [("结补镇", "辛村")])]
    keys = _keys(frames)
    assert keys[("结补镇", "新村")] != keys[("结补镇", "辛村")]


def test_villages_merge_only_within_their_town() -> None:
    frames = [_sheet("filing/f.csv", [("结补镇", "新村")] * 5 + [("花垣镇", "花坝村")] * 5),
              _sheet("roster/a.xlsx", [("花垣镇", "辛村")] * 2)]
    keys = _keys(frames)
    assert keys[("花垣镇", "辛村")] == ("花垣", "辛村")  # 结补镇's 新村 is not 花垣镇's
    frames.append(_sheet("roster/b.xlsx", [("结补镇", "辛村")] * 2))
    assert _keys(frames)[("结补镇", "辛村")] == ("结补", "新村")


def test_the_commoner_spelling_keeps_its_key() -> None:
    keys = _keys([_sheet("a.csv", [("结卜镇", None)] * 9), _sheet("b.csv", [("结补镇", None)] * 2)])
    assert keys[("结补镇", None)] == keys[("结卜镇", None)] == ("结卜", None)


def test_resolved_keys_join_back_and_carry_to_another_night() -> None:
    frames = [_sheet("roster/a.xlsx", [("结卜镇", "大湖村"), (None, "大湖村")]),
              _sheet("filing/f.csv", [("结补镇", "大湖村")] * 5)]
    table = resolve_places(observed_places(frames))
    tonight = with_resolved_keys(frames[0], table)
    assert tonight.select("town_key", "village_key").rows() == [("结补", "大湖"), (None, "大湖")]
    last_night = pl.DataFrame({"town": ["结卜镇", "结卜", "花垣镇"], "village": ["大湖", "大湖村委会", "中口村"]})
    carried = carry_keys(last_night, [with_resolved_keys(f, table) for f in frames])
    assert carried.select("town_key", "village_key").rows() == [("结补", "大湖"), ("结补", "大湖"), ("花垣", "中口")]


# ------------------------------------------------------- a generated county, respelt
AS_OF = dt.date(2025, 9, 15)
LINK = ["roster_file", "roster_sheet", "roster_row", "system", "system_file", "system_sheet", "system_row", "status", "via"]
ITEM = ["kind", "file", "sheet", "row", "system", "system_file", "system_row", "field", "value", "system_value", "town"]


@pytest.fixture(scope="module")
def two_counties(generated_county, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One generated county (the session's, read-only), and a copy whose exports spell places
    otherwise (conftest.respell_county)."""
    a = generated_county(households=250, seed=5)
    b = tmp_path_factory.mktemp("respelt")
    shutil.copytree(a / "inbox", b / "inbox")
    if (a / "config").is_dir():
        shutil.copytree(a / "config", b / "config")
    respell_county(b / "inbox")
    return a / "inbox", b / "inbox"


def _night(inbox: Path, settings: Settings):
    return reconcile(ingest.read_inbox(inbox, settings.header_aliases), settings, as_of=AS_OF)


def test_respelt_exports_reconcile_as_the_original(two_counties: tuple[Path, Path], tmp_path: Path) -> None:
    config = two_counties[0].parent / "config"  # the generator's aliases (renamed villages) and policy, if any
    settings = load_settings(config if config.is_dir() else None)
    a, b = (_night(inbox, settings) for inbox in two_counties)
    spellings = {v for f in b.records.values() for v in f["village"].drop_nulls()}
    assert any(v.endswith("村委会") for v in spellings) and any(v.endswith("社区居委会") for v in spellings)
    # the same places cut short (the generator cuts one village from one export), no more
    key = ["system", "town_key", "village_key", "problem", "found_rows"]
    assert b.export_problems.select(key).rows() == a.export_problems.select(key).rows()
    assert "export_incomplete" not in {k for k in b.discrepancies["kind"]} - {k for k in a.discrepancies["kind"]}
    # links as good as with the original spellings: the same ones, equally sure
    la, lb = (r.matches.select(*LINK, pl.col("score").round(6)).sort(LINK) for r in (a, b))
    assert la.equals(lb)
    assert a.counts["matched"] == b.counts["matched"] and a.counts["not_found"] == b.counts["not_found"]
    # the same items under the same towns, so the same town workbooks
    da, db = (r.discrepancies.select(ITEM).sort(ITEM, nulls_last=True) for r in (a, b))
    assert da.equals(db)
    names = [sorted(p.name for p in write_clerk_workbooks(r.discrepancies, tmp_path / n, by="town"))
             for n, r in (("a", a), ("b", b))]
    assert names[0] == names[1] and "龙茶乡.xlsx" in names[1] and "卫民镇.xlsx" in names[1]


def test_display_name_counts_files_before_rows() -> None:
    """One big register (the county's dibao) spelling a town its own way does not outvote the schools."""
    register = pl.DataFrame({"file": ["dibao/县.xls"] * 50, "town": ["花桓镇"] * 50, "village": [None] * 50})
    schools = pl.DataFrame({"file": ["roster/a.xlsx", "roster/b.xlsx", "roster/c.xlsx"], "town": ["花垣镇"] * 3,
                            "village": [None] * 3})
    frames = [with_place_keys(register.cast(pl.String)), with_place_keys(schools.cast(pl.String))]
    frames = [f.with_columns(pl.lit("花垣").alias("town_key")) for f in frames]  # as resolve_places merges them
    assert dict(place_names(frames, "town").iter_rows()) == {"花垣": "花垣镇"}


_TOWNS = st.sampled_from(["结补镇", "结卜镇", "结补", "花垣镇", "花桓镇", "龙茶乡", "龍茶鄉", "卫民镇", "为民镇", None])
_VILLAGES = st.sampled_from(["新村", "辛村", "大湖村", "大胡村", "大湖", "岩山村委会", "岩山", "沙坳村", "沙凹", None])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(st.tuples(st.sampled_from(["a.xlsx", "b.csv", "c.xls"]), _TOWNS, _VILLAGES), min_size=1, max_size=30))
def test_resolving_only_merges_spellings_into_keys_the_night_has(rows: list[tuple[str, str | None, str | None]]) -> None:
    frame = pl.DataFrame(rows, schema={"file": pl.String, "town": pl.String, "village": pl.String}, orient="row")
    table = resolve_places(observed_places([frame]))
    base = with_place_keys(frame)
    for lv in ("town", "village"):
        assert set(table[f"{lv}_key"].drop_nulls()) <= set(base[f"{lv}_key"].drop_nulls())
        assert table[f"{lv}_key"].null_count() == table.filter(pl.col(lv).is_null() | pl.col(lv).str.strip_chars().eq(""))[lv].len()
    # two spellings one file writes side by side keep their own keys
    for _, part in frame.group_by("file"):
        keyed = with_resolved_keys(part, table).with_columns(with_place_keys(part).select(pl.col("town_key").alias("_b"))["_b"])
        pairs = keyed.select("_b", "town_key").drop_nulls().unique()
        assert pairs["_b"].n_unique() == pairs["town_key"].n_unique()
    # and the table joins back onto every row
    assert with_resolved_keys(frame, table)["town_key"].null_count() == frame["town"].null_count()
