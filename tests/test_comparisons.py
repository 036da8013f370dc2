"""Comparison levels: each field's first level that holds, one case a row."""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl
import pytest

from conftest import make_id
from reconcile.comparisons import COMPARISONS, Context, level_labels
from reconcile.names import fuzzy_pinyin

A = make_id("433124", "20120305", "123")
B = make_id("433124", "20140611", "244")
ONE_OFF = A[:10] + str((int(A[10]) + 3) % 10) + A[11:]
SWAPPED = A[:12] + A[13] + A[12] + A[14:]
D1, D2 = dt.date(2012, 3, 5), dt.date(2012, 3, 6)

# Every column a condition may read, with a neutral value; each case changes a few.
BASE: dict[str, Any] = {
    "r_id_norm": A, "s_id_norm": A, "r_id_status": "valid", "s_id_status": "valid", "r_id_known": 18, "s_id_known": 18,
    "_id_dist": 0, "_id_ham": 0, "_id_swap": False, "r_name_norm": "王丽", "s_name_norm": "王丽", "r_name_py": "wang li", "s_name_py": "wang li",
    "_wild": False, "_look": False, "_dist": 0, "r_birth": D1, "r_id_birth": D1, "s_id_birth": D1,
    "r_gender_norm": "女", "r_id_gender": "女", "s_gender_norm": "女", "s_id_gender": "女",
    "r_head_name_norm": "王建国", "s_head_name_norm": "王建国", "r_head_id_norm": None, "s_head_id_norm": None,
    "r_head_py": "wang jian guo", "s_head_py": "wang jian guo", "r_village_key": "田上", "s_village_key": "田上",
    "r_town_key": "卫民", "s_town_key": "卫民", "_r_id_family": None, "_r_name_other": None, "s_id_shared": None,
    "_head_member": None, "r_stage": "小学", "s_school_status": "小学",
}

TYPES = {bool: pl.Boolean, int: pl.Int64, str: pl.String, dt.date: pl.Date}
SCHEMA = {c: TYPES[type(v)] if v is not None else pl.String for c, v in BASE.items()} | {
    "lv_id": pl.String, "_r_id_family": pl.Boolean, "_r_name_other": pl.Boolean, "s_id_shared": pl.Boolean,
    "_head_member": pl.Boolean}
TWO_OFF = A[:8] + str((int(A[8]) + 1) % 10) + A[9:14] + str((int(A[14]) + 1) % 10) + A[15:]

CASES: list[tuple[str, str, dict[str, Any], str | None]] = [
    # (case, field, changes, expected level; None: no evidence)
    ("same ID", "id", {}, "exact"),
    ("ID one digit off", "id", {"r_id_norm": ONE_OFF, "r_id_status": "checksum", "_id_ham": 1}, "one_digit"),
    ("ID swapped digits", "id", {"r_id_norm": SWAPPED, "r_id_status": "checksum", "_id_ham": 2, "_id_swap": True},
     "swap"),
    ("ID two digits off, one failing", "id", {"r_id_norm": TWO_OFF, "r_id_status": "checksum", "_id_ham": 2}, "two_digit"),
    ("ID one digit lost", "id", {"r_id_norm": A[:17], "r_id_status": "bad_length", "_id_dist": 1}, "one_digit"),
    ("ID cut by Excel", "id", {"r_id_norm": A[:15] + "000", "r_id_status": "number_damaged", "r_id_known": 15}, "prefix"),
    ("ID missing", "id", {"r_id_norm": None, "r_id_status": "missing"}, None),
    ("damaged ID, other prefix", "id", {"r_id_norm": B[:15] + "000", "r_id_status": "number_damaged", "r_id_known": 15}, None),
    ("other ID, one failing", "id", {"r_id_norm": B[:17] + "0", "r_id_status": "checksum", "_id_ham": 6}, "bad_else"),
    ("other valid ID", "id", {"r_id_norm": B, "_id_ham": 6}, "else"),
    ("roster ID is another member's", "id", {"r_id_norm": B, "_id_ham": 6, "_r_id_family": True}, None),
    ("system ID also on another row of its household", "id", {"r_id_norm": B, "_id_ham": 6, "s_id_shared": True}, None),
    ("shared system ID, same name: settles it", "id", {"s_id_shared": True}, "exact"),
    ("same ID, roster name another member's", "id", {"s_name_norm": "王强", "_r_name_other": True}, None),
    ("birth from another member's roster ID", "birth", {"r_birth": None, "lv_id": None, "r_id_norm": B, "_r_id_family": True}, None),
    ("birth from a shared system ID", "birth", {"r_birth": D2, "s_id_shared": True}, None),
    ("gender from a shared system ID", "gender", {"s_gender_norm": None, "s_id_gender": "男", "s_id_shared": True}, None),
    ("same name", "name", {}, "exact"),
    ("name dot ignored", "name", {"r_name_norm": "王·丽"}, "exact"),
    ("homophone", "name", {"s_name_norm": "王莉", "_dist": 1}, "pinyin"),
    ("accent pair (n/l, in/ing)", "name", {"r_name_norm": "王林", "r_name_py": "wang lin", "s_name_norm": "王宁",
                                           "s_name_py": "wang ning", "_dist": 1}, "fuzzy"),
    ("retroflex vs flat initial", "name", {"r_name_py": "zhang li", "s_name_norm": "臧丽", "s_name_py": "zang li",
                                           "_dist": 1}, "fuzzy"),
    ("rare character as ?", "name", {"s_name_norm": "王?", "s_name_py": "wang ?", "_wild": True, "_dist": 1}, "wildcard"),
    ("given name transposed", "name", {"r_name_norm": "吴芳晨", "s_name_norm": "吴晨芳", "r_name_py": "wu fang chen",
                                        "s_name_py": "wu chen fang", "_dist": 2}, "transposed"),
    ("look-alike", "name", {"s_name_norm": "玉丽", "s_name_py": "yu li", "_look": True, "_dist": 1}, "lookalike"),
    ("one edit", "name", {"s_name_norm": "王丽丽", "s_name_py": "wang li li", "_dist": 1}, "close"),
    ("other name", "name", {"s_name_norm": "赵六", "s_name_py": "zhao liu", "_dist": 2}, "else"),
    ("no name", "name", {"s_name_norm": None}, None),
    ("birth column agrees", "birth", {}, "exact"),
    ("birth column disagrees (an ID typed into a sibling's row)", "birth", {"r_birth": D2}, "else"),
    ("birth only from IDs already compared", "birth", {"r_birth": None}, None),
    ("birth from the roster ID, IDs not compared", "birth", {"r_birth": None, "lv_id": None}, "exact"),
    ("disagreeing birth from a failing system ID", "birth", {"r_birth": D2, "s_id_status": "checksum"}, None),
    ("gender columns agree", "gender", {}, "agree"),
    ("gender columns disagree", "gender", {"s_gender_norm": "男"}, "disagree"),
    ("gender only from IDs already compared", "gender", {"r_gender_norm": None, "s_gender_norm": None}, None),
    ("gender from IDs, IDs not compared", "gender", {"r_gender_norm": None, "s_gender_norm": None, "lv_id": None}, "agree"),
    ("roster column vs system ID", "gender", {"s_gender_norm": None, "s_id_gender": "男"}, "disagree"),
    ("same head", "head", {}, "exact"),
    ("head by ID", "head", {"s_head_name_norm": "王建", "r_head_id_norm": A, "s_head_id_norm": A}, "exact"),
    ("head homophone", "head", {"s_head_name_norm": "王建郭"}, "pinyin"),
    ("guardian a member, not the head", "head", {"s_head_name_norm": "李强", "s_head_py": "li qiang", "_head_member": True},
     "member"),
    ("other head", "head", {"s_head_name_norm": "李强", "s_head_py": "li qiang"}, "else"),
    ("no head", "head", {"s_head_name_norm": None}, None),
    ("same village", "place", {}, "village"),
    ("same village, no town", "place", {"s_town_key": None}, "village"),
    ("same town", "place", {"s_village_key": "坝溪"}, "town"),
    ("elsewhere", "place", {"s_village_key": "远", "s_town_key": "别"}, "else"),
    ("same stage", "stage", {}, "agree"),
    ("system a school year behind", "stage", {"s_school_status": "学前"}, "adjacent"),
    ("not at school", "stage", {"s_school_status": "非在校生"}, "else"),
    ("no school status (dibao)", "stage", {"s_school_status": None}, None),
]


@pytest.mark.parametrize(("case", "field", "change", "want"), CASES, ids=[c[0] for c in CASES])
def test_first_level_that_holds(case: str, field: str, change: dict[str, Any], want: str | None) -> None:
    row = {**BASE, "lv_id": "exact", **change}
    frame = pl.DataFrame([row], schema=SCHEMA).with_columns(
        fuzzy_pinyin(pl.col(f"{side}_name_py")).alias(f"{side}_name_fz") for side in "rs")
    got = frame.select(COMPARISONS[field].expr(Context(min_known_prefix=10))).item()
    assert got == want


def test_every_level_is_reached_by_a_case() -> None:
    reached = {(f, want) for _, f, _, want in CASES if want}
    declared = {(f, n) for f, c in COMPARISONS.items() for n in c.names}
    assert declared <= reached


def test_labels_are_chinese_and_distinct() -> None:
    for f in COMPARISONS:
        labels = level_labels(f)
        assert len(set(labels.values())) == len(labels)
        assert all(any("\u4e00" <= ch <= "\u9fff" for ch in text) for text in labels.values())
