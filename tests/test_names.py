"""Name normalisation and pinyin keys: table-driven cases plus property tests."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconcile.names import fuzzy_pinyin, name_forms, normalize_name, normalize_names, pinyin_key, pinyin_keys

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("王丽", "王丽"),
        (" 王 丽 ", "王丽"),
        ("王\u3000丽", "王丽"),
        ("王\t丽\n", "王丽"),
        ("王\u200b丽", "王丽"),
        ("张麗", "张丽"),
        ("張麗", "张丽"),
        ("陳國華", "陈国华"),
        ("薴", "苎"),  # followed to the fixpoint (薴 -> 苧 -> 苎)
        ("买买提·艾力", "买买提·艾力"),
        ("买买提•艾力", "买买提·艾力"),
        ("买买提・艾力", "买买提·艾力"),  # gb2312 decoding of ·
        ("买买提･艾力", "买买提·艾力"),
        ("买买提．艾力", "买买提·艾力"),
        ("买买提.艾力", "买买提·艾力"),
        ("买买提‧艾力", "买买提·艾力"),
        ("买买提∙艾力", "买买提·艾力"),
        ("买买提⋅艾力", "买买提·艾力"),
        ("买买提 · 艾力", "买买提·艾力"),
        ("买买提··艾力", "买买提·艾力"),
        ("·买买提.艾力.", "买买提·艾力"),
        ("阿依古丽·买买提·艾力", "阿依古丽·买买提·艾力"),
        ("王?", "王?"),
        ("王？", "王?"),
        ("王*", "王?"),
        ("王＊", "王?"),
        ("王□", "王?"),
        ("王■明", "王?明"),
        ("王口", "王口"),  # a real character, not a wildcard
        ("王〇", "王〇"),
        ("李䶮", "李䶮"),  # rare characters are kept
        ("张𬱖", "张𬱖"),
        ("王yan", "王yan"),
        ("王ＹＡＮ", "王YAN"),  # NFKC; case is kept here (the pinyin key lower-cases)
        ("⽊子", "木子"),  # Kangxi radical -> unified ideograph (NFKC)
        ("", None),
        ("  ", None),
        ("·", None),
        (None, None),
    ],
)
def test_normalize_name_table(raw, expected):
    assert normalize_name(raw) == expected


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("王丽", "wangli"),
        ("王莉", "wangli"),
        ("张丽", "zhangli"),
        ("章丽", "zhangli"),
        ("單麗", "shanli"),  # traditional, surname reading
        ("单丽", "shanli"),
        ("曾小明", "zengxiaoming"),
        ("仇军", "qiujun"),
        ("解放", "xiefang"),
        ("区华", "ouhua"),
        ("朴正", "piaozheng"),
        ("查理", "zhali"),
        ("乐乐", "yuele"),  # surname yue, given name le
        ("欧阳娜娜", "ouyangnana"),
        ("尉迟敬德", "yuchijingde"),
        ("万俟卨", "moqixie"),
        ("长孙无忌", "zhangsunwuji"),
        ("长江", "changjiang"),
        ("吕绿", "lvlv"),
        ("买买提·艾力", "maimaitiaili"),
        ("买买提・艾力", "maimaitiaili"),
        ("王?", "wang?"),
        ("王＊", "wang?"),
        ("王yan", "wangyan"),
        ("王YAN", "wangyan"),
        ("王 丽", "wangli"),
        ("李䶮", "liyan"),
        ("", None),
        (None, None),
    ],
)
def test_pinyin_key_table(raw, expected):
    assert pinyin_key(raw) == expected


def test_series_api_keeps_name_length_and_nulls():
    s = pl.Series("xm", ["張麗", None, " ", "王・丽"])
    n = normalize_names(s)
    assert n.name == "xm" and n.dtype == pl.String
    assert n.to_list() == ["张丽", None, None, "王·丽"]
    p = pinyin_keys(n)
    assert p.name == "xm"
    assert p.to_list() == ["zhangli", None, None, "wangli"]
    assert pinyin_keys(s, normalized=False).to_list() == ["zhangli", None, None, "wangli"]


def test_empty_series():
    s = pl.Series("n", [], dtype=pl.String)
    assert normalize_names(s).len() == 0
    assert pinyin_keys(s).len() == 0


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        # one row per distinct spelling, nulls left out; (value, norm, py, fz)
        (["張麗", "张丽", "張麗", None], {("張麗", "张丽", "zhangli", "zalli"), ("张丽", "张丽", "zhangli", "zalli")}),
        ([" ", "王・丽"], {(" ", None, None, None), ("王・丽", "王·丽", "wangli", "walli")}),
        (["曾宁", "单林"], {("曾宁", "曾宁", "zengning", "zellil"), ("单林", "单林", "shanlin", "sallil")}),
        ([None], set()),
        ([], set()),
    ],
)
def test_name_forms_table(values, expected):
    got = name_forms(pl.Series("xm", values, dtype=pl.String))
    assert got.columns == ["value", "norm", "py", "fz"]
    assert all(dt == pl.String for dt in got.dtypes)
    assert set(got.iter_rows()) == expected


# ------------------------------------------------------------------ property tests
HAN = "王李张刘陈杨黄赵吴周單麗張陳國華鄭曾解仇区朴欧阳尉迟万俟长孙丽莉明䶮𬱖口〇薴"
DOTS = "·•・．.‧∙⋅･"
SPACES = " \u3000\t\n\u200b"
OTHER = "?？*＊□■yanYANü1"
name_text = st.text(alphabet=HAN + DOTS + SPACES + OTHER, max_size=8)


@SETTINGS
@given(st.lists(name_text, min_size=1, max_size=30))
def test_normalising_is_idempotent(names):
    once = normalize_names(pl.Series(names))
    twice = normalize_names(once)
    assert once.to_list() == twice.to_list()
    assert pinyin_keys(once).to_list() == pinyin_keys(twice).to_list()


@SETTINGS
@given(st.lists(name_text, min_size=1, max_size=30), st.data())
def test_whitespace_never_matters(names, data):
    spaced = []
    for n in names:
        k = data.draw(st.integers(0, 3))
        for _ in range(k):
            pos = data.draw(st.integers(0, len(n)))
            n = n[:pos] + data.draw(st.sampled_from(SPACES)) + n[pos:]
        spaced.append(n)
    assert normalize_names(pl.Series(spaced)).to_list() == normalize_names(pl.Series(names)).to_list()
    assert (
        pinyin_keys(pl.Series(spaced), normalized=False).to_list()
        == pinyin_keys(pl.Series(names), normalized=False).to_list()
    )


@SETTINGS
@given(name_text)
def test_output_shape(name):
    n = normalize_name(name)
    if n is None:
        return
    assert n  # never empty
    assert not any(c.isspace() for c in n)
    assert not n.startswith("·") and not n.endswith("·") and "··" not in n
    assert not set(n) & set("•・．.‧∙⋅･？＊*□■")
    k = pinyin_key(n, normalized=True)
    if k is not None:
        assert k == k.lower() and "·" not in k and not any(c.isspace() for c in k)


@SETTINGS
@given(st.lists(st.sampled_from(["张", "張", "丽", "麗", "国", "國", "华", "華", "陈", "陳"]), min_size=1, max_size=4))
def test_traditional_and_simplified_agree(chars):
    trad = "".join(chars)
    simp = trad.translate(str.maketrans("張麗國華陳", "张丽国华陈"))
    assert normalize_name(trad) == normalize_name(simp)
    assert pinyin_key(trad) == pinyin_key(simp)


@SETTINGS
@given(st.sampled_from(list(DOTS)), st.sampled_from(list(DOTS)))
def test_dot_variants_agree(d1, d2):
    assert normalize_name(f"阿依古丽{d1}买买提") == normalize_name(f"阿依古丽{d2}买买提") == "阿依古丽·买买提"


FUZZY = [
    # (a, b, same key after folding the accent pairs)
    ("zhanglin", "zanning", True),   # zh/z, n/l, in/ing
    ("chenfang", "cenhan", True),    # ch/c, f/h, an/ang
    ("shiwen", "siweng", True),      # sh/s, en/eng
    ("wangli", "wangmei", False),
    ("liuyang", "liuying", False),   # a vowel is not an accent pair
]


@pytest.mark.parametrize(("a", "b", "same"), FUZZY, ids=[f"{a}-{b}" for a, b, _ in FUZZY])
def test_fuzzy_pinyin_folds_accent_pairs_only(a: str, b: str, same: bool) -> None:
    got = pl.DataFrame({"a": [a], "b": [b]}).select(fuzzy_pinyin(pl.col("a")) == fuzzy_pinyin(pl.col("b"))).item()
    assert got is same


@SETTINGS
@given(st.lists(name_text, max_size=30))
def test_name_forms_joined_back_equal_the_row_by_row_forms(names):
    s = pl.Series("n", names, dtype=pl.String)
    joined = s.to_frame("value").join(name_forms(s), on="value", how="left", maintain_order="left")
    norm = normalize_names(s)
    assert joined["norm"].to_list() == norm.to_list()
    assert joined["py"].to_list() == pinyin_keys(norm).to_list()
    assert joined["fz"].to_list() == pinyin_keys(norm).to_frame().select(fuzzy_pinyin(pl.col("n"))).to_series().to_list()
