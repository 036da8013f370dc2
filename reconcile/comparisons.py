"""The comparison levels: for each compared field, an ordered list of small objects.

A pair falls, per field, into the first level whose condition holds (as Splink's comparison
levels: name, condition, label, m and u, term-frequency adjustment). Everything else — the
level enums of `match`, the expression that finds a pair's level, the clerks' labels, the
`why` texts, the keys `settings.toml` must give m/u for — is generated from `COMPARISONS`,
so adding a level is one entry here (and its starting m/u in `settings.toml`).

Conditions are expression builders over the comparison frame of `match.compare_pairs`:
the roster's columns as `r_<col>`, the system's as `s_<col>` (`<side>_name_fz` is the
name's reading with the accent pairs folded, made by `normalize`), the helper columns `_dist`
(name edit distance), `_id_dist` (ID edit distance), `_id_ham` (positions that differ),
`_id_swap` (two adjacent characters swapped), `_wild`, `_look`, `_r_id_family` (the
roster's ID is carried by another member of the system row's household, of another name),
`s_id_shared` (the system row's ID is carried by another row of its household too),
`_r_name_other` (the roster's name is another row's of the system row's household),
`_head_member` (the roster's guardian's ID is a member's of the system row's household), and
the levels of fields compared before (`lv_id`, ...).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

import polars as pl

from .names import DOT

__all__ = ["Context", "Level", "Comparison", "COMPARISONS", "USABLE", "DAMAGED", "level_labels"]

USABLE = ("valid", "legacy15")
DAMAGED = ("number_damaged", "sci_damaged")
_UNUSABLE = ("missing", "bad_length", "bad_chars", "sci_damaged", "number_damaged")


@dataclass(frozen=True)
class Context:
    """What conditions may depend on besides the pair (from `MatchSettings`)."""

    min_known_prefix: int = 10


Condition = Callable[[Context], pl.Expr]


@dataclass(frozen=True)
class Level:
    """One comparison level. `when` None: the level holds for any pair that reaches it.
    `evidence` False: a pair here tells nothing about the field (null level, not weighed).
    `m` = P(level | same person), `u` = P(level | different persons): the starting values,
    filled in from `settings.toml` (`MatchSettings.levels`)."""

    name: str
    label: str
    when: Condition | None = None
    tf: bool = False
    evidence: bool = True
    m: float = float("nan")
    u: float = float("nan")

    def with_mu(self, m: float, u: float) -> "Level":
        return replace(self, m=m, u=u)


@dataclass(frozen=True)
class Comparison:
    """One field's levels, in the order they are tried. `tf_column`: the roster/system
    column whose value frequency adjusts the levels marked `tf`."""

    field: str
    label: str
    levels: tuple[Level, ...]
    tf_column: str | None = None
    names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        names = tuple(lv.name for lv in self.levels if lv.evidence)
        if len(set(names)) != len(names) or self.levels[-1].when is not None:
            raise ValueError(f"comparison {self.field}: level names must be unique and the last level unconditional")
        object.__setattr__(self, "names", names)

    def level(self, name: str) -> Level:
        return next(lv for lv in self.levels if lv.evidence and lv.name == name)

    def expr(self, ctx: Context) -> pl.Expr:
        """The pair's level name (null: no evidence), the first level that holds."""
        out: pl.Expr | None = None
        for lv in self.levels:
            value = pl.lit(lv.name if lv.evidence else None, dtype=pl.String)
            if lv.when is None:
                return value if out is None else out.otherwise(value)
            cond = lv.when(ctx)
            out = pl.when(cond).then(value) if out is None else out.when(cond).then(value)
        raise AssertionError("unreachable: the last level is unconditional")


def _c(name: str) -> pl.Expr:
    return pl.col(name)


# ------------------------------------------------------------------------------ ID
_rid, _sid = _c("r_id_norm"), _c("s_id_norm")
_both18 = (_rid.str.len_chars() == 18) & (_sid.str.len_chars() == 18)
# (lengths are unsigned: subtract as signed)
_len_off_one = (_rid.str.len_chars().cast(pl.Int32) - _sid.str.len_chars().cast(pl.Int32)).abs() == 1
_usable_both = _c("r_id_status").is_in(USABLE) & _c("s_id_status").is_in(USABLE)
# The roster's ID belongs to another member of this household (with another name); or it is
# this row's but the roster's name is another member's (the roster row is about that one);
# or the system row's ID is carried by another row of its household too and does not
# settle this pair (the IDs or the names differ).
_r_family = (_c("_r_id_family").fill_null(False) & (_rid != _sid)) | (_c("_r_name_other").fill_null(False) & (_rid == _sid))
_s_shared = _c("s_id_shared").fill_null(False)
_id_family = _r_family | (_s_shared & ((_rid != _sid) | (_c("r_name_norm") != _c("s_name_norm"))))


def _prefix(ctx: Context) -> pl.Expr:
    k = ctx.min_known_prefix

    def side(a: str, b: str) -> pl.Expr:
        known = _c(f"{a}_id_known")
        damaged = _c(f"{a}_id_status").is_in(DAMAGED) & (known >= k)
        return damaged & (_c(f"{b}_id_norm").str.slice(0, known) == _c(f"{a}_id_norm").str.slice(0, known))

    return side("r", "s") | side("s", "r")


_ID = Comparison("id", "身份证号", (
    Level("null", "缺少身份证号", lambda c: _rid.is_null() | _sid.is_null(), evidence=False),
    # A family member's ID typed into the row (a clerk copying the sibling's or the
    # guardian's): the number is the household's, not the person's; which member the row
    # is about, the other fields tell.
    Level("family", "身份证号是同户另一成员的，只说明是这一户", lambda c: _id_family, evidence=False),
    Level("exact", "身份证号相同", lambda c: _both18 & (_rid == _sid)),
    Level("one_digit", "身份证号有一位不同（或多、少一位）",
          lambda c: (_both18 & (_c("_id_ham") == 1)) | (_len_off_one & (_c("_id_dist") == 1))),
    Level("swap", "身份证号有相邻两位顺序颠倒", lambda c: _both18 & _c("_id_swap")),
    Level("two_digit", "身份证号有两位不同（其中一个校验不通过）",
          lambda c: _both18 & (_c("_id_ham") == 2) & ~_usable_both),
    Level("prefix", "身份证号被 Excel 损坏，保留下来的前几位相同", _prefix),
    # a damaged, cut or missing number differing from the other says nothing more
    Level("unusable", "身份证号无法比较", lambda c: ~_len_off_one & (
        _c("r_id_status").is_in(_UNUSABLE) | _c("s_id_status").is_in(_UNUSABLE)), evidence=False),
    Level("bad_else", "身份证号不同（其中一个校验不通过）", lambda c: ~_len_off_one & ~_usable_both),
    Level("else", "身份证号不同"),
))

# ------------------------------------------------------------------------------ name
_rn, _sn = _c("r_name_norm"), _c("s_name_norm")
_NAME = Comparison("name", "姓名", (
    Level("null", "缺少姓名", lambda c: _rn.is_null() | _sn.is_null(), evidence=False),
    Level("exact", "姓名相同", lambda c: (_rn == _sn) | (
        _rn.str.replace_all(DOT, "", literal=True) == _sn.str.replace_all(DOT, "", literal=True)), tf=True),
    Level("pinyin", "读音相同，可能是同音字录入错误", lambda c: _c("r_name_py") == _c("s_name_py")),
    Level("fuzzy", "读音相近（平翘舌、前后鼻音、鼻音边音等口音不分的音），可能是录入错误",
          lambda c: _c("r_name_fz") == _c("s_name_fz")),
    Level("transposed", "名字中两个字顺序颠倒", lambda c: (_rn.str.len_chars() == 3) & (_sn.str.len_chars() == 3)
          & (_rn.str.slice(0, 1) == _sn.str.slice(0, 1)) & (_rn.str.slice(1).str.reverse() == _sn.str.slice(1))
          & (_rn.str.slice(1, 1) != _rn.str.slice(2, 1))),
    Level("wildcard", "系统中含有无法显示的生僻字（显示为?）", lambda c: _c("_wild")),
    Level("lookalike", "有一个字字形相近，可能是形近字录入错误", lambda c: _c("_look")),
    Level("close", "只差一个字，可能是录入错误", lambda c: _c("_dist") <= 1),
    Level("else", "姓名差别较大，请核实是否为同一人"),
), tf_column="name_norm")

# ------------------------------------------------------------------------------ birth, gender
# No field counted twice on the same evidence: the systems' birth dates (and dibao's gender)
# are read from their IDs. When the roster's value is read from its ID too and the two IDs
# were compared (`lv_id` not null), the ID level already scored those digits: the field
# gives no evidence. The roster's own birth/gender columns (typed apart from its ID: they
# tell an ID typed into a sibling's row) and a system's own gender column are evidence of
# their own.
_ids_compared = _c("lv_id").is_not_null()
# A date or gender read from a family member's ID (see the ID's `family` level) is not the
# person's.
_sb = pl.when(~_s_shared).then(_c("s_id_birth"))
_rb = pl.when(_c("r_birth").is_not_null()).then(_c("r_birth")).when(~_ids_compared & ~_r_family).then(_c("r_id_birth"))
_rb_from_id = _c("r_birth").is_null()
_BIRTH = Comparison("birth", "出生日期", (
    Level("null", "缺少出生日期（或只有已比较过的身份证号中的日期）", lambda c: _sb.is_null() | _rb.is_null(), evidence=False),
    Level("exact", "出生日期相同", lambda c: _sb == _rb),
    # a disagreeing date read from an ID that fails its checksum is no evidence (the typo may sit in the date)
    Level("unchecked", "出生日期来自校验不通过的身份证号", lambda c: ~_c("s_id_status").is_in(USABLE) | (
        _rb_from_id & ~_c("r_id_status").is_in(USABLE)), evidence=False),
    Level("else", "出生日期不同"),
))

_rg_col, _sg_col = _c("r_gender_norm"), _c("s_gender_norm")
_rg = pl.coalesce(_rg_col, pl.when(~_r_family).then(_c("r_id_gender")))
_sg = pl.coalesce(_sg_col, pl.when(~_s_shared).then(_c("s_id_gender")))
_GENDER = Comparison("gender", "性别", (
    Level("null", "缺少性别（或两边都只有已比较过的身份证号中的性别）", lambda c: _rg.is_null() | _sg.is_null() | (
        _rg_col.is_null() & _sg_col.is_null() & _ids_compared), evidence=False),
    Level("agree", "性别相同", lambda c: _rg == _sg),
    Level("disagree", "性别不同"),
))

# ------------------------------------------------------------------------------ head, place
_rh, _sh = _c("r_head_name_norm"), _c("s_head_name_norm")
_HEAD = Comparison("head", "户主", (
    Level("exact", "户主相同", lambda c: (_c("r_head_id_norm") == _c("s_head_id_norm")) | (_rh == _sh)),
    # the roster's guardian is not the system's head but a member of its household
    Level("member", "监护人是该户成员", lambda c: _c("_head_member").fill_null(False)),
    Level("null", "缺少户主", lambda c: _rh.is_null() | _sh.is_null(), evidence=False),
    Level("pinyin", "户主姓名读音相同", lambda c: _c("r_head_py") == _c("s_head_py")),
    Level("else", "户主不同"),
))

# place keys (reconcile.places): 坝北村 and 坝北村委会 are one village
_rv, _sv, _rt, _st = _c("r_village_key"), _c("s_village_key"), _c("r_town_key"), _c("s_town_key")
_PLACE = Comparison("place", "住址", (
    Level("null", "缺少村", lambda c: _rv.is_null() | _sv.is_null(), evidence=False),
    Level("village", "同一个村", lambda c: (_rv == _sv) & (_rt.is_null() | _st.is_null() | (_rt == _st))),
    Level("town", "同一乡镇、不同村", lambda c: _rt == _st),
    Level("else", "不同乡镇"),
))

# ------------------------------------------------------------------------------ stage
# The roster's 学段 against the filing card's 在校生状况 (学前 ... 本科, 非在校生): a namesake who
# is not at school, or at another stage, is someone else; one stage apart is an export a
# school year behind (a child moved up in September).
_STAGE_RANK = {"学前": 0, "小学": 1, "初中": 2, "高中": 3, "中职": 3, "本科": 4, "大专": 4}
_rs, _ss = _c("r_stage").cast(pl.String), _c("s_school_status").cast(pl.String)


def _rank(e: pl.Expr) -> pl.Expr:
    return e.replace_strict(_STAGE_RANK, default=None, return_dtype=pl.Int32)


_STAGE = Comparison("stage", "学段", (
    Level("null", "缺少学段或系统的在校生状况", lambda c: _rs.is_null() | _ss.is_null(), evidence=False),
    Level("agree", "学段与系统的在校生状况相同", lambda c: _rs == _ss),
    Level("adjacent", "学段与系统的在校生状况差一个学段（系统可能还是上一学年的）",
          lambda c: (_rank(_rs) - _rank(_ss)).abs() == 1),
    Level("else", "学段与系统的在校生状况不符"),
))

# The compared fields, in the order their levels are computed (birth and gender read `lv_id`).
COMPARISONS: Mapping[str, Comparison] = MappingProxyType(
    {c.field: c for c in (_ID, _NAME, _BIRTH, _GENDER, _HEAD, _PLACE, _STAGE)}
)


def level_labels(field_name: str) -> dict[str, str]:
    """Level name -> the clerks' label, for one field (e.g. the name-mismatch messages)."""
    return {lv.name: lv.label for lv in COMPARISONS[field_name].levels if lv.evidence}
