"""Matching: one roster row against a small system, one case a row."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

from conftest import ingested, make_id, sheet
from reconcile.config import Settings
from reconcile.model import parameters_frame
from reconcile.pipeline import match_all, normalize_all

STUDENT = make_id("433124", "20120305", "123")      # 男
SIBLING = make_id("433124", "20140611", "244")
HEAD = make_id("433124", "19800101", "011")
OTHER = make_id("433124", "20120305", "246")        # same birth date, another child


def _one_digit_wrong(i: str) -> str:
    d = str((int(i[10]) + 3) % 10)
    return i[:10] + d + i[11:]


def _swapped(i: str) -> str:
    return i[:12] + i[13] + i[12] + i[14:]


BASE_ROSTER = {"name": "王丽", "id_number": STUDENT, "birth_date": "2012-03-05", "gender": "男",
               "head_name": "王建国", "head_id": HEAD, "town": "卫民镇", "village": "田上村", "school": "卫民镇中学"}
FILING = [
    {"name": "王建国", "id_number": HEAD, "head_name": "王建国", "household_no": "H1", "relation": "户主",
     "town": "卫民镇", "village": "田上村", "poverty_status": "未脱贫"},
    {"name": "王丽", "id_number": STUDENT, "head_name": "王建国", "household_no": "H1", "relation": "之子",
     "town": "卫民镇", "village": "田上村", "poverty_status": "未脱贫"},
    {"name": "王小明", "id_number": SIBLING, "head_name": "王建国", "household_no": "H1", "relation": "之子",
     "town": "卫民镇", "village": "田上村", "poverty_status": "未脱贫"},
    {"name": "李娜", "id_number": OTHER, "head_name": "李强", "household_no": "H2", "relation": "之女",
     "town": "卫民镇", "village": "坝溪村", "poverty_status": "未脱贫"},
]


def _link(settings: Settings, roster: list[dict[str, Any]], filing: list[dict[str, Any]] = FILING,
          dibao: list[dict[str, Any]] | None = None) -> pl.DataFrame:
    tables = [sheet("roster", roster), sheet("filing", filing, file="filing/f.csv", sheet_name="")]
    if dibao:
        tables.append(sheet("dibao", dibao, file="dibao/d.xls"))
    records, _ = normalize_all(ingested(*tables), settings)
    return match_all(records, settings)


CASES = [
    # (case, roster changes, expected system row or None, status, id level, name level)
    ("exact", {}, 3, "matched", "exact", "exact"),
    ("homophone name", {"name": "王莉"}, 3, "matched", "exact", "pinyin"),
    ("one character off", {"name": "王丰"}, 3, "matched", "exact", "close"),
    ("look-alike character (shape data)", {"name": "玉丽"}, 3, "matched", "exact", "lookalike"),
    ("dot where the system has none", {"name": "王·丽"}, 3, "matched", "exact", "exact"),
    ("traditional name", {"name": "王麗"}, 3, "matched", "exact", "exact"),
    ("spaces in name", {"name": "王 丽 "}, 3, "matched", "exact", "exact"),
    ("one digit wrong", {"id_number": _one_digit_wrong(STUDENT)}, 3, "matched", "one_digit", "exact"),
    ("two digits swapped", {"id_number": _swapped(STUDENT)}, 3, "matched", "swap", "exact"),
    ("lower-case x, full width, spaces", {"id_number": " ".join(STUDENT).lower().replace("1", "１")}, 3, "matched", "exact", "exact"),
    ("Excel number tail", {"id_number": STUDENT[:15] + "000", "id_number_kind": "number"}, 3, "matched", "prefix", "exact"),
    ("ID missing, name and birth agree", {"id_number": None}, 3, "matched", None, "exact"),
    ("ID in student number only", {"id_number": None, "student_no": "G" + STUDENT}, 3, "matched", "exact", "exact"),
    ("lost check character", {"id_number": STUDENT[:17]}, 3, "matched", "one_digit", "exact"),
    # the household's number, not the person's: the name and birth date find the member
    ("sibling's ID typed into the row", {"id_number": SIBLING}, 3, "matched", None, "exact"),
    ("someone else entirely", {"name": "赵六", "id_number": make_id("433124", "20120305", "358"), "head_name": "赵五",
                               "head_id": None, "village": "远村"}, None, None, None, None),
]


@pytest.mark.parametrize(("case", "change", "row", "status", "lv_id", "lv_name"), CASES, ids=[c[0] for c in CASES])
def test_one_student(settings: Settings, case: str, change: dict[str, Any], row: int | None, status: str | None,
                     lv_id: str | None, lv_name: str | None) -> None:
    links = _link(settings, [{**BASE_ROSTER, **change}]).filter(pl.col("system") == "filing")
    if row is None:
        assert links.filter(pl.col("status") == "matched").is_empty()
        return
    assert links.height == 1, links
    got = links.row(0, named=True)
    assert (got["system_row"], got["status"], got["lv_id"], got["lv_name"]) == (row, status, lv_id, lv_name)
    assert got["score"] >= settings.match.matched
    assert '"id"' in got["why"] and '"name"' in got["why"]


def test_system_row_carrying_the_heads_id_is_found_by_the_other_fields(settings: Settings) -> None:
    filing = [FILING[0], {**FILING[1], "id_number": HEAD}, *FILING[2:]]
    links = _link(settings, [BASE_ROSTER], filing=filing).filter(pl.col("system") == "filing")
    assert links.select("system_row", "status", "lv_id").rows() == [(3, "matched", None)]


@pytest.mark.parametrize("guardian", [{}, {"head_id": HEAD[:15] + "000", "head_id_kind": "number"}, {"head_id": None}],
                         ids=["guardian ID", "guardian ID cut by Excel", "no guardian ID"])
def test_heads_only_dibao_links_through_household(settings: Settings, guardian: dict[str, Any]) -> None:
    dibao = [{"head_name": "王建国", "head_id": HEAD, "town": "卫民镇", "village": "田上村", "status": "在保"}]
    roster = {**BASE_ROSTER, **guardian}
    links = _link(settings, [roster], filing=FILING[3:], dibao=dibao).filter(pl.col("system") == "dibao")
    assert links.height == 1
    assert links["via"][0] == "household_head" and links["status"][0] == "matched"


def test_one_system_record_goes_to_one_student(settings: Settings) -> None:
    # Two different children with similar names both point at the same filing row; only one gets it.
    roster = [BASE_ROSTER, {**BASE_ROSTER, "name": "王莉", "id_number": None, "birth_date": "2012-03-06"}]
    links = _link(settings, roster).filter((pl.col("system") == "filing") & (pl.col("system_row") == 3))
    assert links.height == 1 and links["roster_row"][0] == 2


def test_same_child_claimed_twice_keeps_both_links(settings: Settings) -> None:
    roster = [BASE_ROSTER, {**BASE_ROSTER, "school": "卫民镇中心小学"}]
    links = _link(settings, roster).filter(pl.col("system") == "filing")
    assert sorted(links["roster_row"].to_list()) == [2, 3]
    assert set(links["system_row"].to_list()) == {3}


# ------------------------------------------------------------------ helpers, one case a row
from hypothesis import given, settings as hsettings, strategies as st  # noqa: E402

from reconcile.idcard import check_char  # noqa: E402
from reconcile.match import USABLE, _near_id_pairs, _wildcard_equal  # noqa: E402
from reconcile.names import is_lookalike  # noqa: E402

LOOKALIKE = [("己", "已", True), ("未", "末", True), ("王", "玉", True), ("日", "曰", True), ("侯", "候", True),
             ("张", "章", False), ("丽", "莉", False), ("王", "王", False)]


@pytest.mark.parametrize(("a", "b", "want"), LOOKALIKE, ids=[f"{a}{b}" for a, b, _ in LOOKALIKE])
def test_lookalike_from_shape_data(a: str, b: str, want: bool) -> None:
    assert is_lookalike(a, b) is want


WILD = [("王?", "王䶮", True), ("王口", "王䶮", True), ("王口", "王丽", False), ("王?丽", "王丽", False), ("王丽", "王丽", False)]


@pytest.mark.parametrize(("a", "b", "want"), WILD, ids=[f"{a}-{b}" for a, b, _ in WILD])
def test_wildcards(a: str, b: str, want: bool) -> None:
    assert _wildcard_equal([a], [b]) == [want]


@given(st.sampled_from("一二三王李张丽莉己已末未日曰人入侯候"), st.sampled_from("一二三王李张丽莉己已末未日曰人入侯候"))
def test_lookalike_is_symmetric_and_irreflexive(a: str, b: str) -> None:
    assert is_lookalike(a, b) == is_lookalike(b, a)
    assert not is_lookalike(a, a)


def _frame(ids: list[str]) -> pl.DataFrame:
    from reconcile.idcard import is_valid_id

    return pl.DataFrame({
        "rec": list(range(len(ids))),
        "id_norm": ids,
        "id_status": ["valid" if is_valid_id(i) else "checksum" for i in ids],
    }, schema={"rec": pl.UInt32, "id_norm": pl.String, "id_status": pl.String})


@hsettings(max_examples=60, deadline=None)
@given(st.integers(0, 16), st.integers(1, 9), st.booleans())
def test_near_id_blocking_finds_one_digit_and_swaps(pos: int, delta: int, swap: bool) -> None:
    """Any one-digit typo or adjacent swap of a valid ID is a candidate of the right one,
    with keys built only for the failing side (three part keys, not one per position)."""
    true = STUDENT
    if swap:
        p = min(pos, 15)
        if true[p] == true[p + 1]:
            return
        typo = true[:p] + true[p + 1] + true[p] + true[p + 2:]
    else:
        typo = true[:pos] + str((int(true[pos]) + delta) % 10) + true[pos + 1:]
    assert typo[:17] + check_char(typo[:17]) != typo or typo == true  # fails its checksum
    r = _frame([typo])
    s = _frame([SIBLING, true, HEAD])
    assert r["id_status"][0] not in USABLE
    pairs = _near_id_pairs(r, s)
    assert (0, 1) in set(zip(pairs["r"].to_list(), pairs["s"].to_list()))


def test_chunked_scoring_gives_the_same_links(settings: Settings, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A county-wide run scores its pairs a slice at a time (memory); the slices must not
    change a single link, weight or runner-up margin."""
    from reconcile import ingest, match
    from countygen import SynthConfig, generate_county

    generate_county(tmp_path / "county", SynthConfig(households=120, seed=3))
    records, _ = normalize_all(ingest.read_inbox(tmp_path / "county" / "inbox", settings.header_aliases), settings)
    r = match._prep(records["roster"], match.ROSTER_COLS)
    s = match._prep(records["filing"], match.SYSTEM_COLS)
    pairs = match.candidate_pairs(r, s, settings.match)
    whole, model = match.score_pairs(pairs, r, s, settings.match)
    monkeypatch.setattr(match, "CHUNK_PAIRS", 37)  # a prime: slices cut through roster rows
    sliced, model2 = match.score_pairs(pairs, r, s, settings.match)
    assert model.fitted and parameters_frame(model, "filing").equals(parameters_frame(model2, "filing"))
    assert pairs.height > 10 * 37 and whole["_second"].is_not_null().sum() > 20
    assert sliced.equals(whole)


@pytest.mark.parametrize(("town", "village", "found", "lv_place"), [
    ("卫民镇", "田上村", True, "village"),
    ("卫民", "田上村委会", True, "village"),
    ("卫民镇人民政府", "田上", True, "village"),
    (None, "田上社区", True, "village"),
    ("卫民镇", "远村", False, None),  # no other block holds this pair
])
def test_name_within_the_village_by_place_key(settings: Settings, town: str | None, village: str, found: bool,
                                              lv_place: str | None) -> None:
    roster = [{"name": "王丽", "town": town, "village": village, "school": "卫民镇中学"}]  # no ID, date or guardian
    links = _link(settings, roster).filter(pl.col("system") == "filing")
    assert (links.height == 1) is found
    if found:
        assert (links["system_row"][0], links["lv_place"][0]) == (3, lv_place)

# ------------------------------------------------------------------ a generated county


def _true_pairs(truth: pl.DataFrame) -> set[tuple]:
    """(roster file, sheet, row, system, system file, sheet, row) of every true link."""
    t = truth.with_columns(pl.col("sheet").fill_null(""))
    roster = t.filter(pl.col("source") == "roster").select("person_id", "file", "sheet", "row")
    systems = t.filter(pl.col("source") != "roster").select("person_id", "source", "file", "sheet", "row")
    return set(roster.join(systems, on="person_id").drop("person_id").iter_rows())


def test_generated_county_precision_and_recall_floors(settings: Settings, tmp_path) -> None:
    """A fixed-seed county (~300 households): the links and the model's own parameters."""
    from reconcile import ingest
    from reconcile.pipeline import link_systems
    from countygen import SynthConfig, generate_county

    generate_county(tmp_path / "county", SynthConfig(households=300, seed=11))
    records, _ = normalize_all(ingest.read_inbox(tmp_path / "county" / "inbox", settings.header_aliases), settings)
    linked = link_systems(records, settings)
    links, params = linked.matches, linked.model_parameters
    truth = pl.read_csv(tmp_path / "county" / "truth" / "records.csv", infer_schema_length=0).with_columns(
        pl.col("row").cast(pl.Int64))
    want = _true_pairs(truth)
    key = ["roster_file", "roster_sheet", "roster_row", "system", "system_file", "system_sheet", "system_row"]

    def got(*status: str) -> set[tuple]:
        own = links.filter(pl.col("status").is_in(status) & (pl.col("via") != "household_head"))
        return set(own.with_columns(pl.col(c).fill_null("") for c in ("roster_sheet", "system_sheet")).select(key).iter_rows())

    matched, with_review = got("matched"), got("matched", "review")
    precision = len(matched & want) / len(matched)
    recall = len({k[:4] for k in matched & want}) / len({k[:4] for k in want})
    recall_review = len({k[:4] for k in with_review & want}) / len({k[:4] for k in want})
    assert len(want) > 300
    assert precision >= 0.995, precision
    assert recall >= 0.98, recall
    assert recall_review >= 0.99, recall_review
    # The model was fitted on this county, and says where each value came from.
    assert params["fitted"].all() and params["converged"].all()
    assert set(params["system"]) == {"dibao", "filing"}
    assert params.filter((pl.col("field") == "id") & (pl.col("level") == "exact"))["m_from"].to_list() == ["data", "data"]
    assert set(params["m_from"]) | set(params["u_from"]) <= {"data", "configuration", "bound"}


@pytest.mark.parametrize(("cap", "kept"), [(1, 1), (2, 2), (3, 3), (200, 3)])
def test_max_candidates_bounds_candidates_per_roster_row_without_losing_the_true_one(
        settings: Settings, cap: int, kept: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three system children share the student's name and birth date: with a cap below three
    the roster row keeps `cap` candidates — the one in her own village and with her own
    guardian ranks first and is still linked — and the row is counted as cut."""
    import dataclasses

    from reconcile import match
    from reconcile.pipeline import link_systems

    roster = [{"name": "王丽", "birth_date": "2012-03-05", "gender": "女", "school": "卫民镇中学",
               "head_name": "王二", "town": "卫民镇", "village": "二村"}]
    filing = [{"name": "王丽", "id_number": make_id("433124", "20120305", q), "head_name": f"王{h}",
               "household_no": f"H{h}", "relation": "之女", "town": "卫民镇", "village": f"{h}村", "poverty_status": "未脱贫"}
              for q, h in (("244", "一"), ("246", "二"), ("248", "三"))]
    capped = dataclasses.replace(settings, match=dataclasses.replace(settings.match, max_candidates=cap))
    tables = [sheet("roster", roster), sheet("filing", filing, file="filing/f.csv", sheet_name="")]
    records, _ = normalize_all(ingested(*tables), capped)
    r = match._prep(records["roster"], match.ROSTER_COLS)
    s = match._prep(records["filing"], match.SYSTEM_COLS)
    pairs = match.candidate_pairs(r, s, capped.match)
    assert pairs.group_by("r").len()["len"].to_list() == [kept]
    monkeypatch.setattr(match, "CHUNK_PAIRS", 1)  # the ranking works a slice at a time
    assert match.candidate_pairs(r, s, capped.match).equals(pairs)
    monkeypatch.undo()
    linked = link_systems(records, capped)
    fig = linked.blocking["filing"]
    assert (fig["max"], fig["capped"], fig["mean"]) == (kept, int(cap < 3), float(kept))
    got = linked.matches.filter(pl.col("system") == "filing")
    households = records["filing"].select(pl.col("rec").alias("system_rec"), "household")
    assert got.join(households, on="system_rec")["household"].to_list() == ["H二"]
