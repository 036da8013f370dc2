"""ID number normalisation: table-driven cases plus property tests."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconcile.idcard import (
    STATUSES,
    check_char,
    check_char_expr,
    digit_diff_positions,
    is_adjacent_swap,
    is_valid_id,
    normalize_ids,
    upgrade15,
)
from reconcile.idcard import _KIND, _RAW, _all_facts, _id_facts  # the two ways, checked against each other

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def make_id(region: int, birth: dt.date, seq: int) -> str:
    first17 = f"{region:06d}{birth:%Y%m%d}{seq:03d}"
    return first17 + check_char(first17)


V1 = make_id(110105, dt.date(1949, 12, 31), 2)  # 11010519491231002X, female
V2 = make_id(433124, dt.date(2005, 1, 23), 123)  # male
assert V1 == "11010519491231002X"


def norm1(value: str | None, kind: str | None = None) -> dict:
    df = pl.DataFrame({"v": [value], "k": [kind]}, schema={"v": pl.String, "k": pl.String})
    return normalize_ids(df, "v", "k", "id").row(0, named=True)


def norm_many(values: list[str], kind: str | None = None) -> pl.DataFrame:
    df = pl.DataFrame({"v": values, "k": [kind] * len(values)}, schema={"v": pl.String, "k": pl.String})
    return normalize_ids(df, "v", "k", "id")


# ------------------------------------------------------------------- scalar helpers
def test_check_char_known_values():
    assert check_char("11010519491231002") == "X"
    assert check_char("44052418800101001") == "4"
    with pytest.raises(ValueError):
        check_char("123")


def test_upgrade15():
    assert upgrade15("110105491231002") == "11010519491231002X"
    assert is_valid_id(upgrade15("110105491231002"))


@pytest.mark.parametrize(
    "value, ok",
    [
        (V1, True),
        (V2, True),
        (V1.lower(), False),  # scalar check is strict: normalise first
        (V1[:17] + "1", False),
        ("11010519491231002", False),
        ("110105190002290011", False),  # 1900 is not a leap year
        (None, False),
    ],
)
def test_is_valid_id(value, ok):
    assert is_valid_id(value) is ok


# --------------------------------------------------------------------- table cases
# raw, kind, norm, status, known, birth, gender, region
CASES = [
    (V1, "text", V1, "valid", 18, dt.date(1949, 12, 31), "女", "110105"),
    (V2, None, V2, "valid", 18, dt.date(2005, 1, 23), "男", "433124"),
    (V1.lower(), "text", V1, "valid", 18, dt.date(1949, 12, 31), "女", "110105"),
    ("'" + V1, "text", V1, "valid", 18, dt.date(1949, 12, 31), "女", "110105"),
    ("‘" + V1 + "’", "text", V1, "valid", 18, dt.date(1949, 12, 31), "女", "110105"),
    ("１１０１０５１９４９１２３１００２Ｘ", "text", V1, "valid", 18, dt.date(1949, 12, 31), "女", "110105"),
    ("110105 1949\u30001231 002x", "text", V1, "valid", 18, dt.date(1949, 12, 31), "女", "110105"),
    ("110105-19491231-002X\t", "text", V1, "valid", 18, dt.date(1949, 12, 31), "女", "110105"),
    ("110105491231002", "text", V1, "legacy15", 18, dt.date(1949, 12, 31), "女", "110105"),
    ("110105491231002", "number", V1, "legacy15", 18, dt.date(1949, 12, 31), "女", "110105"),
    (V1[:17] + "5", "text", V1[:17] + "5", "checksum", 17, dt.date(1949, 12, 31), "女", "110105"),
    # a bad date keeps all 18 characters as known when the check character agrees
    ("110105194913310021", "text", "110105194913310021", "bad_date", 18, None, "女", "110105"),
    ("110105194913310022", "text", "110105194913310022", "bad_date", 17, None, "女", "110105"),
    ("110105203112310021", "text", "110105203112310021", "bad_date", 17, None, "女", "110105"),
    ("110105189912310021", "text", "110105189912310021", "bad_date", 17, None, "女", "110105"),
    ("11010519491231002", "text", "11010519491231002", "bad_length", 0, None, None, None),
    ("1101051949123100211", "text", "1101051949123100211", "bad_length", 0, None, None, None),
    ("11010519491231002A", "text", "11010519491231002A", "bad_chars", 0, None, None, None),
    ("1101051949X231002X", "text", "1101051949X231002X", "bad_chars", 0, None, None, None),
    ("433124200501231000", "number", "433124200501231", "number_damaged", 15, dt.date(2005, 1, 23), None, "433124"),
    # a reader that printed the exact float: rounded back to 15 significant digits
    ("433124200501230976", "number", "433124200501231", "number_damaged", 15, dt.date(2005, 1, 23), None, "433124"),
    ("433124200501231000.0", "number", "433124200501231", "number_damaged", 15, dt.date(2005, 1, 23), None, "433124"),
    # the same digits in a text cell: only a checksum problem (conservative)
    ("433124200501231000", "text", "433124200501231000", "checksum", 17, dt.date(2005, 1, 23), "女", "433124"),
    ("4.30524E+17", "sci", "430524", "sci_damaged", 6, None, None, "430524"),
    ("4.30524E+17", "text", "430524", "sci_damaged", 6, None, None, "430524"),
    ("4.30524e17", None, "430524", "sci_damaged", 6, None, None, "430524"),
    ("4.33124200501231E+17", "sci", "433124200501231", "sci_damaged", 15, dt.date(2005, 1, 23), None, "433124"),
    ("4.3E+17", "sci", "43", "sci_damaged", 2, None, None, None),
    ("4.30524E+14", "sci", "430524", "sci_damaged", 6, None, None, "430524"),
    ("4.305244912E+14", "sci", "430524194912", "sci_damaged", 12, None, None, "430524"),
    ("4.3E+16", "sci", "4.3E+16", "bad_length", 0, None, None, None),
    (None, None, None, "missing", 0, None, None, None),
    ("", "text", None, "missing", 0, None, None, None),
    ("  '  ", "text", None, "missing", 0, None, None, None),
]


@pytest.mark.parametrize("raw, kind, norm, status, known, birth, gender, region", CASES)
def test_normalize_ids_table(raw, kind, norm, status, known, birth, gender, region):
    r = norm1(raw, kind)
    assert (r["id_norm"], r["id_status"], r["id_known"]) == (norm, status, known)
    assert (r["id_birth"], r["id_gender"], r["id_region"]) == (birth, gender, region)


def test_output_schema_and_passthrough():
    df = pl.DataFrame({"row": [1, 2], "sfz": [V1, None]})
    out = normalize_ids(df, "sfz", None, "head_id")
    assert out.columns == [
        "row", "sfz", "head_id_norm", "head_id_status", "head_id_known",
        "head_id_birth", "head_id_gender", "head_id_region",
    ]
    assert out.schema["head_id_known"] == pl.Int8
    assert out.schema["head_id_birth"] == pl.Date
    assert out["row"].to_list() == [1, 2]
    assert set(out["head_id_status"].to_list()) <= set(STATUSES)


def test_kind_column_absent_means_text():
    out = normalize_ids(pl.DataFrame({"v": ["433124200501231000"]}), "v", "no_such_col", "id")
    assert out["id_status"][0] == "checksum"


def test_repeated_cells_read_as_each_alone():
    # Every case three times over (so normalize_ids reads the distinct cells and joins them back),
    # among other columns and an old output column: each row as the case alone, the columns in order.
    cases = [(raw, kind) for raw, kind, *_ in CASES] * 3
    df = pl.DataFrame(
        {"a": list(range(len(cases))), "v": [r for r, _ in cases], "id_status": ["old"] * len(cases),
         "k": [k for _, k in cases], "z": ["z"] * len(cases)},
        schema={"a": pl.Int64, "v": pl.String, "id_status": pl.String, "k": pl.String, "z": pl.String},
    )
    out = normalize_ids(df, "v", "k", "id")
    assert out.columns == ["a", "v", "k", "z", "id_norm", "id_status", "id_known", "id_birth", "id_gender", "id_region"]
    assert out.select("a", "v", "k", "z").equals(df.select("a", "v", "k", "z"))
    alone = [norm1(raw, kind) for raw, kind in cases]
    for c in ("id_norm", "id_status", "id_known", "id_birth", "id_gender", "id_region"):
        assert out[c].to_list() == [r[c] for r in alone]


def test_empty_frame():
    out = normalize_ids(pl.DataFrame({"v": []}, schema={"v": pl.String}), "v", None, "id")
    assert out.height == 0 and "id_norm" in out.columns


def test_check_char_expr_matches_scalar():
    vals = ["11010519491231002", "44052418800101001", "12345", None]
    got = pl.DataFrame({"v": vals}).select(check_char_expr(pl.col("v")))["v"].to_list()
    assert got == ["X", "4", None, None]


# ------------------------------------------------------------------ property tests
regions = st.integers(min_value=110000, max_value=829999)
births = st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2030, 12, 31))
seqs = st.integers(min_value=0, max_value=999)
ids = st.builds(make_id, regions, births, seqs)


@SETTINGS
@given(st.lists(st.tuples(regions, births, seqs), min_size=1, max_size=20))
def test_generated_ids_are_valid_with_facts(parts):
    values = [make_id(*p) for p in parts]
    out = norm_many(values, "text")
    assert out["id_status"].to_list() == ["valid"] * len(values)
    assert out["id_norm"].to_list() == values
    assert out["id_birth"].to_list() == [b for _, b, _ in parts]
    assert out["id_gender"].to_list() == ["男" if s % 2 else "女" for _, _, s in parts]
    assert out["id_region"].to_list() == [f"{r:06d}" for r, _, _ in parts]
    assert all(is_valid_id(v) for v in values)


BATCH = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def batch(*strategies):
    """Several examples per call: each normalize_ids call costs ~8 ms of planning."""
    return st.lists(st.tuples(*strategies), min_size=1, max_size=8)


def rows_of(values: list[str], kind: str | None = "text") -> list[dict]:
    return norm_many(values, kind).to_dicts()


@BATCH
@given(batch(ids, st.integers(min_value=0, max_value=17), st.integers(min_value=1, max_value=10)))
def test_one_changed_character_is_never_valid(cases):
    bads = []
    for value, pos, shift in cases:
        chars = "0123456789X" if pos == 17 else "0123456789"
        old = value[pos]
        new = chars[(chars.index(old) + shift) % len(chars)]
        if new != old:
            bads.append((value[:pos] + new + value[pos + 1 :], pos))
    if not bads:
        return
    for (bad, pos), r in zip(bads, rows_of([b for b, _ in bads])):
        assert r["id_status"] != "valid"
        assert not is_valid_id(bad)
        if 6 <= pos < 14 and r["id_status"] == "bad_date":
            continue  # the change broke the birth date
        assert r["id_status"] == "checksum"
        assert r["id_norm"] == bad and r["id_known"] == 17


@BATCH
@given(
    batch(
        st.integers(min_value=110000, max_value=829999),
        st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(1999, 12, 31)),
        seqs,
    )
)
def test_legacy15_upgrade(cases):
    s15s = [f"{region:06d}{birth:%y%m%d}{seq:03d}" for region, birth, seq in cases]
    for s15, (region, birth, seq), r in zip(s15s, cases, rows_of(s15s)):
        s18 = upgrade15(s15)
        assert is_valid_id(s18)
        assert r["id_status"] == "legacy15"
        assert r["id_norm"] == s18 and r["id_known"] == 18
        assert r["id_birth"] == birth
        assert r["id_gender"] == ("男" if seq % 2 else "女")


FULLWIDTH = str.maketrans("0123456789X", "０１２３４５６７８９Ｘ")
typing_noise = st.lists(
    st.tuples(st.integers(0, 18), st.sampled_from([" ", "\u3000", "\t", "-", "'", "’"])),
    max_size=4,
)


@BATCH
@given(batch(ids, typing_noise, st.booleans(), st.booleans(), st.booleans()))
def test_typing_variants_normalise_to_the_same_id(cases):
    typed = []
    for value, inserts, fullwidth, lower, apostrophe in cases:
        v = value
        if lower:
            v = v.lower()
        if fullwidth:
            v = v.translate(FULLWIDTH)
        for pos, ch in sorted(inserts, reverse=True):
            v = v[:pos] + ch + v[pos:]
        if apostrophe:
            v = "'" + v
        typed.append(v)
    for (value, *_), r in zip(cases, rows_of(typed)):
        assert r["id_status"] == "valid"
        assert r["id_norm"] == value


@BATCH
@given(batch(ids, st.booleans()))
def test_number_cell_loses_the_tail(cases):
    # Excel turns every digit past the 15th into 0; a reader may then print the float
    # exactly (...231000 -> ...230976): both read back as the first 15 digits.
    shown = []
    for value, exact_float in cases:
        v = value[:15] + "000"
        shown.append(str(int(float(v))) if exact_float else v)
    for (value, _), r in zip(cases, rows_of(shown, "number")):
        assert r["id_status"] == "number_damaged"
        assert (r["id_norm"], r["id_known"]) == (value[:15], 15)
        assert r["id_region"] == value[:6]
        assert r["id_birth"] == dt.date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
        assert r["id_gender"] is None


@BATCH
@given(batch(ids, st.integers(min_value=1, max_value=15)))
def test_sci_keeps_the_mantissa_digits(cases):
    texts = []
    for value, ndigits in cases:
        mantissa = value[:ndigits]
        texts.append(mantissa[0] + ("." + mantissa[1:] if ndigits > 1 else "") + "E+17")
    for (value, ndigits), r in zip(cases, rows_of(texts, "sci")):
        assert r["id_status"] == "sci_damaged"
        assert r["id_norm"] == value[:ndigits] and r["id_known"] == ndigits
        assert r["id_region"] == (value[:6] if ndigits >= 6 else None)


@BATCH
@given(st.lists(st.text(alphabet="0123456789Xx \u3000'-４Ｘ.E+", max_size=22), min_size=1, max_size=8))
def test_statuses_closed_and_renormalising_is_stable(values):
    for r in rows_of(values):
        assert r["id_status"] in STATUSES
        if r["id_status"] == "valid":
            assert is_valid_id(r["id_norm"])
        elif r["id_norm"] is not None and len(r["id_norm"]) == 18 and r["id_status"] != "legacy15":
            assert not is_valid_id(r["id_norm"])
        # normalising a full ID again changes nothing
        if r["id_status"] in ("valid", "legacy15", "checksum"):
            again = norm1(r["id_norm"], "text")
            assert again["id_norm"] == r["id_norm"]
            assert again["id_status"] == ("valid" if r["id_status"] == "legacy15" else r["id_status"])


# ------------------------------------------------------------------ matcher helpers
@pytest.mark.parametrize(
    "a, b, diff, swap",
    [
        (V1, V1, [], False),
        (V1, V1[:17] + "1", [17], False),
        ("110105194912310021", "110105194912310012", [16, 17], True),
        ("12345", "21345", [0, 1], True),
        ("12345", "13245", [1, 2], True),
        ("12345", "32145", [0, 2], False),  # not adjacent
        ("12345", "12354", [3, 4], True),
        ("12345", "21354", [0, 1, 3, 4], False),  # two swaps
        ("1122", "1122", [], False),  # swapping equal characters is no change
        ("12345", "1234", None, False),
        ("", "", [], False),
        (None, "1", None, None),
        ("1", None, None, None),
    ],
)
def test_diff_and_swap_table(a, b, diff, swap):
    df = pl.DataFrame({"a": [a], "b": [b]}, schema={"a": pl.String, "b": pl.String})
    out = df.select(d=digit_diff_positions("a", "b"), s=is_adjacent_swap(pl.col("a"), pl.col("b")))
    assert out.schema["d"] == pl.List(pl.Int8)
    assert out["d"][0] is None if diff is None else out["d"][0].to_list() == diff
    assert out["s"][0] is swap


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(ids, st.integers(0, 16), st.integers(0, 17), st.integers(1, 9)), min_size=1, max_size=60))
def test_diff_and_swap_properties(rows):
    a, b_swap, b_one, exp_swap, exp_one = [], [], [], [], []
    for value, i, j, shift in rows:
        a.append(value)
        sw = value[:i] + value[i + 1] + value[i] + value[i + 2 :]
        b_swap.append(sw)
        exp_swap.append([i, i + 1] if value[i] != value[i + 1] else [])
        d = (int(value[j]) + shift) % 10 if value[j] != "X" else shift
        one = value[:j] + str(d) + value[j + 1 :]
        b_one.append(one)
        exp_one.append([j])
    df = pl.DataFrame({"a": a, "s": b_swap, "o": b_one})
    out = df.select(
        ds=digit_diff_positions("a", "s"),
        ss=is_adjacent_swap("a", "s"),
        do=digit_diff_positions("a", "o"),
        so=is_adjacent_swap("a", "o"),
        rev=is_adjacent_swap("s", "a"),
    )
    assert out["ds"].to_list() == exp_swap
    assert out["ss"].to_list() == [bool(e) for e in exp_swap]
    assert out["rev"].to_list() == [bool(e) for e in exp_swap]
    assert out["do"].to_list() == exp_one
    assert out["so"].to_list() == [False] * len(rows)


# The short way for plain cells (17 digits and a check character, typed as text) against the full rules.
plain_like = st.one_of(
    ids,
    st.text(alphabet="0123456789", min_size=17, max_size=17).map(lambda s: s + "X"),
    st.text(alphabet="0123456789X", min_size=18, max_size=18),
    st.text(alphabet="0123456789Xx .E+", min_size=0, max_size=20),
    st.none(),
)
kinds = st.sampled_from([None, "text", "Text", "number", "NUMBER", "sci"])


@SETTINGS
@given(st.lists(st.tuples(plain_like, kinds), min_size=1, max_size=30))
def test_plain_cells_short_way_equals_the_full_rules(rows):
    cells = pl.DataFrame({_RAW: [r for r, _ in rows], _KIND: [k for _, k in rows]}, schema={_RAW: pl.String, _KIND: pl.String})
    assert _id_facts(cells, "id").equals(_all_facts(cells, "id"))
