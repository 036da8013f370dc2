"""The synthetic county: rosters, dibao and filing exports with known truth and known errors.

``generate_county(out_dir, config)`` writes

* ``out_dir/inbox/roster/*.xlsx``  one school-aid roster per school (some with two sheets),
* ``out_dir/inbox/dibao/*.xls|csv`` the dibao register (Excel 97; one heads-only file; one CSV),
* ``out_dir/inbox/filing/*.csv|xlsx`` the filing-card export per town (GB18030 or UTF-8 BOM),
* ``out_dir/truth/`` beside (never inside) the inbox: ``persons.csv``, ``households.csv``,
  ``records.csv`` (every data row of every inbox file, the person it is about and the errors
  injected into it), ``expected.csv`` (what a perfect tool reports for roster rows),
  ``places.csv`` (how each file spells each place) and ``notes.json`` (the export that was cut
  short, the reference date, the codes used, the stages the rosters cover),
* ``out_dir/config/policy/<county>_<year>.toml`` the county's standards (``policy``) and
  ``out_dir/config/place_aliases.toml`` its renamed and merged villages (``places``).

Its errors come from sources the matcher does not use (``confusions``, ``name_errors``), and
it imports nothing from the product.

Everything is drawn from ``random.Random`` streams seeded with text derived from
``config.seed`` (string seeds hash with SHA-512, independent of ``PYTHONHASHSEED``), and no
set or hash-ordered dict is iterated, so the same config gives the same files.
All error rates are multiplied by ``config.errors``; ``errors=0`` injects no error at all.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .draws import Rng
from .ids import ROSTER_HEAD_ID_DAMAGE, ROSTER_ID_DAMAGE, SYSTEM_ID_DAMAGE, damage_id, id_check_char
from .name_errors import NAME_KINDS, replace_rare, typo_name
from .name_pool import FEMALE, MALE, NEUTRAL, RARE, SURNAMES, UY_FEMALE, UY_MALE
from .places import PLACE_KINDS, PlaceSpeller, pick_old_names, write_aliases, write_places
from .policy import policy_toml, stage_has_boarding_rule, stage_has_year_rule, yearly_amount



class SynthError(Exception):
    """Base of the generator's own errors (it shares nothing with the product)."""


def in_charset(c: str, codec: str) -> bool:
    """Whether an old system in `codec` (gb2312, gbk) could store `c`."""
    try:
        c.encode(codec)
    except UnicodeEncodeError:
        return False
    return True

__all__ = [
    "SynthConfig",
    "SynthSummary",
    "SynthOutputExists",
    "SynthError",
    "generate_county",
    "id_check_char",
    "ROSTER_HEADER_VARIANTS",
    "ROSTER_GROUP_HEADERS",
    "DIBAO_HEADERS",
    "DIBAO_HEADS_ONLY_HEADERS",
    "FILING_HEADERS",
    "FILING_STATUS_CODES",
    "EXPECTED_KINDS",
    "ERROR_CODES",
]

# --------------------------------------------------------------------------------------
# public configuration and result
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SynthConfig:
    """What to generate. ``errors`` multiplies every error rate (0 = a clean county)."""

    households: int = 3000
    seed: int = 0
    errors: float = 1.0
    county: str = "花垣县"
    region: str = "433124"
    school_year: int = 2025  # the autumn term of this year; ages are taken on Sept 1
    towns: tuple[str, ...] = ()  # town names (default: the generator's own list)
    # Schooled away: this share of senior-secondary students (高中/中职) attend a school of
    # one of these neighbouring counties, named "<county>第一中学" / "<county>职业中专".
    away_share: float = 0.0
    away_counties: tuple[str, ...] = ()


@dataclass(frozen=True)
class SynthSummary:
    """Counts of what ``generate_county`` wrote."""

    out_dir: Path
    households: int
    persons: int
    rows: dict[str, int]  # data rows per source (roster / dibao / filing)
    files: dict[str, int]  # files per source
    expected: int  # rows of truth/expected.csv
    expected_by_kind: dict[str, int] = field(default_factory=dict)

    @property
    def roster_rows(self) -> int:
        return self.rows.get("roster", 0)

    @property
    def system_rows(self) -> int:
        return self.rows.get("dibao", 0) + self.rows.get("filing", 0)

    def __str__(self) -> str:
        rows = ", ".join(f"{k} {v}" for k, v in self.rows.items())
        files = ", ".join(f"{k} {v}" for k, v in self.files.items())
        return (
            f"{self.households} households, {self.persons} persons; rows: {rows}; "
            f"files: {files}; expected discrepancies: {self.expected}"
        )


class SynthOutputExists(SynthError, FileExistsError):
    """The output folder already holds an inbox or truth (pass overwrite=True to replace them)."""


# --------------------------------------------------------------------------------------
# ID numbers (GB 11643)
# --------------------------------------------------------------------------------------

# --------------------------------------------------------------------------------------
# vocabulary: headers, labels, error codes
# --------------------------------------------------------------------------------------

ROSTER_COLUMNS: tuple[str, ...] = (
    "seq", "school", "stage", "grade", "class_name", "name", "gender", "ethnicity",
    "birth_date", "id_number", "student_no", "boarding", "head_name", "head_id",
    "relation", "town", "village", "aid_item", "amount", "phone",
)

# Header spellings used in roster files (canonical field -> the spellings that occur).
# The guardian word (户主/监护人/家长) is chosen once per file for head_name/head_id/relation.
ROSTER_HEADER_VARIANTS: dict[str, tuple[str, ...]] = {
    "seq": ("序号", "编号"),
    "school": ("学校名称", "学校", "就读学校"),
    "stage": ("学段", "学习阶段"),
    "grade": ("年级", "就读年级"),
    "class_name": ("班级", "班别"),
    "name": ("学生姓名", "姓名", "受助学生姓名"),
    "gender": ("性别",),
    "ethnicity": ("民族",),
    "birth_date": ("出生日期", "出生年月日"),
    "id_number": ("身份证号", "身份证件号码", "公民身份号码", "学生身份证号"),
    "student_no": ("学籍号", "全国学籍号"),
    "boarding": ("是否寄宿", "寄宿生"),
    "head_name": ("户主姓名", "监护人姓名", "家长姓名"),
    "head_id": ("户主身份证号", "户主身份证件号码", "监护人身份证号", "家长身份证号"),
    "relation": ("与户主关系", "与监护人关系"),
    "town": ("乡镇", "所在乡镇", "乡镇(街道)"),
    "village": ("村", "村(社区)", "所在村"),
    "aid_item": ("资助项目", "资助类别"),
    "amount": ("资助金额", "资助金额(元)", "金额"),
    "phone": ("联系电话", "手机号码"),
}

# Two-row header with a group cell: the group text (merged across the guardian columns) and
# the sub-headers below it. Only head_name/head_id/relation are grouped; the student's own
# name and ID headers in such files are never the bare 姓名/身份证号.
ROSTER_GROUP_HEADERS: dict[str, Any] = {
    "groups": ("户主信息", "监护人信息", "家长信息"),
    "sub": {"head_name": ("姓名",), "head_id": ("身份证号", "身份证件号码"), "relation": ("与户主关系", "关系")},
    "bands": ("基本信息", "学生信息", "家庭信息", "资助信息"),
}

DIBAO_HEADERS: tuple[str, ...] = (
    "乡镇(街道)", "村(社区)", "户主姓名", "户主身份证号", "保障人数", "成员姓名", "成员身份证号",
    "与户主关系", "低保类别", "月保障金额", "批准日期", "状态",
)
DIBAO_HEADS_ONLY_HEADERS: tuple[str, ...] = (
    "乡镇(街道)", "村(社区)", "户主姓名", "户主身份证号", "保障人数", "低保类别", "月保障金额",
    "批准日期", "状态",
)
FILING_HEADERS: tuple[str, ...] = (
    "县", "乡镇", "行政村", "户编号", "户主姓名", "人编号", "姓名", "证件号码", "与户主关系", "性别",
    "在校生状况", "贫困户属性", "脱贫状态", "脱贫年度",
)
FILING_STATUS_CODES: dict[str, str] = {
    "0": "未脱贫", "1": "已脱贫(享受政策)", "3": "返贫", "4": "已脱贫(不再享受政策)",
}
_STATUS_TO_CODE = {v: k for k, v in FILING_STATUS_CODES.items()}

EXPECTED_KINDS: dict[str, str] = {
    "not_found": "student's household is in no system export",
    "export_incomplete": "student's household is registered, but only in the part of an export "
    "that was cut short (truth/notes.json); reported instead of not_found",
    "id_invalid": "roster student ID cell invalid or damaged (checksum, length, number 000-tail, "
    "sci text, missing); cosmetic faults (spaces, full-width, apostrophe, lower x) are not",
    "duplicate_claim": "same student on two roster rows (both rows)",
    "id_fact_conflict": "roster birth date or gender column contradicts the row's ID (the true one, or a "
    "family member's typed into the row: id_family)",
    "household_exited": "found in filing as 已脱贫(不再享受政策) and not 在保 in dibao",
    "dibao_stopped": "found in dibao as 停保/注销 and not qualifying in filing",
    "subsidy_mismatch": "roster amount differs from the county policy (DIR/config/policy) for the row's "
    "stage, year, boarding and household category, where the row tells them all",
    "age_stage_mismatch": "roster grade 3+ years away from the age of the row's ID: a 小学 grade moved (the row's "
    "own usable ID), or a family member's ID typed into the row (id_family)",
    "missed_eligible": "school-age child (age on Sept 1, 在校生状况) of a qualifying household, visible with a "
    "usable ID in a system export, on no roster; the row is one of the child's system records",
}

# errors column codes: <field>_<kind>; field in name, id, head_name, head_id
_ID_KINDS = ("digit", "swap", "lower_x", "fullwidth", "space", "apostrophe", "legacy15",
             "number", "sci", "missing", "drop", "family")
ERROR_CODES: tuple[str, ...] = (
    *(f"name_{k}" for k in NAME_KINDS),
    *(f"id_{k}" for k in _ID_KINDS),
    *(f"head_name_{k}" for k in NAME_KINDS),
    *(f"head_id_{k}" for k in _ID_KINDS),
    "birth_conflict", "gender_conflict", "duplicate", "amount_wrong", "grade_age",
    *PLACE_KINDS,
)
_INVALID_ID_KINDS = ("id_digit", "id_swap", "id_number", "id_sci", "id_missing", "id_drop")

# --------------------------------------------------------------------------------------
# names
# --------------------------------------------------------------------------------------

_TOWNS = (
    "卫民镇", "结补镇", "龙茶乡", "花垣镇", "龙潭镇", "边城镇", "双龙镇", "石栏镇", "吉卫镇",
    "麻栗场镇", "雅酉镇", "民乐镇", "长乐乡", "补抽乡", "道二乡", "董马库乡", "猫儿乡", "排碧乡",
    "团结镇", "窝勺乡", "排料乡", "两河乡", "大龙乡", "茶洞镇", "排吾乡", "金龙乡", "寨阳乡",
    "水田乡", "高岩乡", "岩坪乡", "白岩乡", "清水乡", "麻阳镇", "腊尔镇", "落潮井乡", "阳孟乡",
    "禾库镇", "山江镇", "都里乡", "木江坪镇",
)
_V1 = "坝田岭寨平沙北南新上下大和龙石马水高黄金白青双桥东西中老长花茶竹杉枫岩"
_V2 = "溪坪冲岩湾坝塘寨坡垭坳桥湖山口"
_UNIVERSITIES = (
    ("吉首大学", "本科"), ("湖南师范大学", "本科"), ("湘潭大学", "本科"), ("湖南农业大学", "本科"),
    ("长沙民政职业技术学院", "大专"), ("怀化职业技术学院", "大专"), ("湘西民族职业技术学院", "大专"),
)

_GRADES: dict[str, tuple[str, ...]] = {
    "学前": ("小班", "中班", "大班"),
    "小学": ("一年级", "二年级", "三年级", "四年级", "五年级", "六年级"),
    "初中": ("七年级", "八年级", "九年级"),
    "高中": ("高一", "高二", "高三"),
    "中职": ("一年级", "二年级", "三年级"),
    "本科": ("大一", "大二", "大三", "大四"),
    "大专": ("大一", "大二", "大三"),
}
_JUNIOR_ALT = ("初一", "初二", "初三")
_AID_ITEM = {
    "学前": "学前教育资助", "小学": "义务教育生活补助", "初中": "义务教育生活补助",
    "高中": "普通高中国家助学金", "中职": "中职国家助学金", "本科": "雨露计划", "大专": "雨露计划",
}


# --------------------------------------------------------------------------------------
# internal model
# --------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Person:
    pid: int
    hh: int
    name: str
    sur_len: int  # 0 for dotted minority names
    gender: str
    birth: dt.date
    id18: str
    relation: str  # to the system head ("" for a person not listed)
    listed: bool
    ethnicity: str
    school_status: str = "非在校生"
    grade_idx: int = -1
    father: int = -1
    mother: int = -1

    @property
    def person_id(self) -> str:
        return f"PP{self.pid:07d}"


@dataclass(slots=True)
class _Household:
    hid: int
    town: int
    village: str
    head: int
    members: list[int]  # listed members, head first
    others: list[int]  # related people not listed (a parent working elsewhere)
    kind: str  # A nuclear, B grandparent head, C elderly
    phone: str
    in_filing: bool = False
    in_dibao: bool = False
    household_type: str = ""
    poverty_status: str = ""
    exit_year: str = ""
    filing_no: str = ""
    dibao_category: str = ""
    dibao_status: str = ""
    dibao_since: str = ""
    heads_only: bool = False
    cut: bool = False

    @property
    def household_id(self) -> str:
        return f"HH{self.hid:06d}"


@dataclass(slots=True)
class _Claim:
    student: int
    school: str
    stage: str
    grade_idx: int
    guardian: int
    boarding: bool
    class_no: int
    university: bool = False
    duplicate: bool = False


@dataclass(slots=True)
class _Rec:
    source: str
    file: str
    sheet: str
    row: int
    person: int
    errors: list[str]
    kinds: list[str] = field(default_factory=list)
    head: int = -1  # roster: the guardian named on the row; systems: the household head


def _year_month(rng: Rng, y0: int, y1: int) -> str:
    """A 'YYYY-MM' between January of y0 and August of y1 (before the term starts)."""
    y = rng.randrange(y0, y1 + 1)
    m = rng.randrange(1, 9 if y == y1 else 13)
    return f"{y}-{m:02d}"


def _stream(cfg: SynthConfig, name: str) -> Rng:
    return Rng(f"recon-synth:{cfg.seed}:{name}")


def _rate(cfg: SynthConfig, base: float) -> float:
    return min(1.0, max(0.0, base * cfg.errors))


# --------------------------------------------------------------------------------------
# character tables (built once; iteration over sorted/ordered sequences only)
# --------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------
# error injection
# --------------------------------------------------------------------------------------


def _roster_id(rng: Rng, cfg: SynthConfig, numeric_prone: bool, person: Any, rate: float,
               damage: tuple[tuple[str, float], ...], code: str, errs: list[str]) -> Any:
    """An ID cell as a school types it: Excel-damaged in numeric-prone files, else typos."""
    r = rng.random()
    if numeric_prone and r < _rate(cfg, 0.07):
        kind = "number" if r < _rate(cfg, 0.06) else "sci"
        value, k = damage_id(rng, person.id18, person.birth, ((kind, 1.0),))
    elif rng.p(_rate(cfg, rate)):
        value, k = damage_id(rng, person.id18, person.birth, damage)
    else:
        return person.id18
    if k:
        errs.append(code + k)
    return value
# --------------------------------------------------------------------------------------
# geography and population
# --------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Geo:
    towns: list[str]
    villages: list[list[str]]
    town_weights: list[float]
    neighbours: list[str]


def _neighbours(region: str) -> list[str]:
    if region == "433124":
        return ["433122", "433123", "433125", "433126", "433101"]
    out = [region[:4] + s for s in ("01", "21", "22", "23", "25", "26", "27") if region[:4] + s != region]
    return out[:5]


def _village_names() -> list[str]:
    return [a + b + "村" for a in _V1 for b in _V2 if a != b]


def _build_geo(cfg: SynthConfig, rng: Rng) -> _Geo:
    names = cfg.towns or _TOWNS
    n_towns = max(min(5, len(names)), min(len(names), round(cfg.households ** 0.5 / 6)))
    towns = list(names[:n_towns])
    per_town = cfg.households / n_towns
    n_vill = max(2, min(25, round(per_town / 60)))
    villages: list[list[str]] = []
    combos = _village_names()
    for t in towns:
        vs: list[str] = []
        picked = rng.sample(combos, n_vill + rng.randrange(0, 3))
        if rng.p(0.3):
            picked[0] = t[:-1] + "社区"
        for v in picked:
            if v not in vs:
                vs.append(v)
        villages.append(vs)
    weights = [0.6 + 0.8 * rng.random() for _ in towns]
    return _Geo(towns, villages, weights, _neighbours(cfg.region))


class _PopBuilder:
    def __init__(self, cfg: SynthConfig, geo: _Geo, rng: Rng) -> None:
        self.cfg = cfg
        self.geo = geo
        self.rng = rng
        self.ref = dt.date(cfg.school_year, 9, 1)
        self.ref_ord = self.ref.toordinal()
        self.persons: list[_Person] = []
        self.households: list[_Household] = []
        self.used17: set[str] = set()
        self.sur_cum: list[tuple[str, float]] = list(SURNAMES)

    # -- small helpers
    def surname(self) -> str:
        return self.rng.pick(self.sur_cum)

    def given(self, gender: str) -> str:
        rng = self.rng
        pool = MALE if gender == "男" else FEMALE
        n = 2 if rng.p(0.72) else 1
        chars = [rng.choice(pool) if rng.p(0.85) else rng.choice(NEUTRAL) for _ in range(n)]
        if rng.p(0.004):
            chars[rng.randrange(n)] = rng.choice(RARE)
        return "".join(chars)

    def birth(self, age: int) -> dt.date:
        return dt.date.fromordinal(self.ref_ord - int(age * 365.2425) - self.rng.randrange(0, 365))

    def age(self, b: dt.date) -> int:
        return self.ref.year - b.year - ((self.ref.month, self.ref.day) < (b.month, b.day))

    def make_id(self, region: str, b: dt.date, gender: str) -> str:
        rng = self.rng
        ymd = f"{b.year:04d}{b.month:02d}{b.day:02d}"
        while True:
            seq = rng.randrange(0, 1000)
            seq = seq | 1 if gender == "男" else seq & ~1
            first17 = f"{region}{ymd}{seq:03d}"
            if first17 not in self.used17:
                self.used17.add(first17)
                return first17 + id_check_char(first17)

    def region(self, p_away: float) -> str:
        if self.rng.p(p_away):
            return self.rng.choice(self.geo.neighbours)
        return self.cfg.region

    def person(self, hh: int, name: str, sur_len: int, gender: str, age: int, relation: str,
               listed: bool, ethnicity: str, p_away: float = 0.02, kid: bool = False) -> int:
        b = self.birth(age)
        p = _Person(
            pid=len(self.persons) + 1, hh=hh, name=name, sur_len=sur_len, gender=gender, birth=b,
            id18=self.make_id(self.region(p_away), b, gender), relation=relation if listed else "",
            listed=listed, ethnicity=ethnicity,
        )
        if kid:
            self.school(p)
        self.persons.append(p)
        return p.pid - 1

    def school(self, p: _Person) -> None:
        rng = self.rng
        a = self.age(p.birth)
        st, g = "非在校生", -1
        if 3 <= a <= 5:
            if rng.p(0.88):
                st, g = "学前", a - 3
        elif 6 <= a <= 14:
            if rng.p(0.985):
                st, g = ("小学", a - 6) if a <= 11 else ("初中", a - 12)
        elif 15 <= a <= 17:
            st = rng.pick((("高中", 0.55), ("中职", 0.30), ("非在校生", 0.15)))
            g = a - 15 if st != "非在校生" else -1
        elif 18 <= a <= 21:
            st = rng.pick((("本科", 0.22), ("大专", 0.20), ("非在校生", 0.58)))
            g = a - 18 if st != "非在校生" else -1
            if st == "大专" and g > 2:
                st, g = "非在校生", -1
        if g > 0 and rng.p(0.03):
            g -= 1  # started late or repeated a year
        p.school_status, p.grade_idx = st, g

    def child_name(self, family_surname: str, gender: str) -> tuple[str, int]:
        return family_surname + self.given(gender), len(family_surname)

    # -- households
    def household(self, town: int, village: str) -> None:
        rng = self.rng
        hid = len(self.households) + 1
        hx = hid - 1  # index of this household in self.households
        eth = rng.pick((("苗族", 0.5), ("汉族", 0.35), ("土家族", 0.15)))
        kind = rng.pick((("A", 0.62), ("B", 0.30), ("C", 0.08)))
        minority = rng.p(0.008)
        if minority:
            kind, eth = "A", "维吾尔族"
        members: list[int] = []
        others: list[int] = []
        phone = f"1{rng.choice('3456789')}{rng.randrange(10 ** 9):09d}"
        if kind == "A":
            head_age = rng.randrange(26, 52)
            head_male = minority or rng.p(0.8)
            if minority:
                father_name = rng.choice(UY_MALE)
                own = rng.choice([n for n in UY_MALE if n != father_name])
                h = self.person(hx, f"{own}·{father_name}", 0, "男", head_age, "户主", True, eth)
                members.append(h)
                if rng.p(0.85):
                    members.append(self.person(hx, f"{rng.choice(UY_FEMALE)}·{rng.choice(UY_MALE)}",
                                               0, "女", max(20, head_age + rng.randrange(-5, 3)),
                                               "配偶", True, eth))
                fam, father, mother = own, h, (members[1] if len(members) > 1 else -1)
            else:
                hs = self.surname()
                hg = "男" if head_male else "女"
                h = self.person(hx, hs + self.given(hg), len(hs), hg, head_age, "户主", True, eth)
                members.append(h)
                spouse = -1
                if rng.p(0.85 if head_male else 0.35):
                    ss = self.surname()
                    sg = "女" if head_male else "男"
                    s_age = max(20, head_age + (rng.randrange(-6, 3) if head_male else rng.randrange(-2, 6)))
                    spouse = self.person(hx, ss + self.given(sg), len(ss), sg, s_age, "配偶", True, eth,
                                         p_away=0.12)
                    members.append(spouse)
                if head_male:
                    fam, father, mother = hs, h, spouse
                elif spouse >= 0:
                    fam, father, mother = self.persons[spouse].name[:self.persons[spouse].sur_len], spouse, h
                else:
                    fam, father, mother = (self.surname() if rng.p(0.7) else hs), -1, h
            n_kids = rng.pick(((1, 0.15), (2, 0.40), (3, 0.30), (4, 0.15)))
            age = rng.randrange(2, max(3, min(head_age - 19, 20)))
            for _ in range(n_kids):
                if age < 0:
                    break
                g = "男" if rng.p(0.53) else "女"
                if minority:
                    nm, sl = f"{rng.choice(UY_MALE if g == '男' else UY_FEMALE)}·{fam}", 0
                else:
                    nm, sl = self.child_name(fam, g)
                rel = "之子" if g == "男" else "之女"
                k = self.person(hx, nm, sl, g, age, rel, True, eth, kid=True)
                self.persons[k].father, self.persons[k].mother = father, mother
                members.append(k)
                age -= rng.randrange(1, 6)
        elif kind == "B":
            head_age = rng.randrange(50, 80)
            head_male = rng.p(0.65)
            hs = self.surname()
            hg = "男" if head_male else "女"
            h = self.person(hx, hs + self.given(hg), len(hs), hg, head_age, "户主", True, eth)
            members.append(h)
            if rng.p(0.7 if head_male else 0.3):
                ss = self.surname()
                sg = "女" if head_male else "男"
                members.append(self.person(hx, ss + self.given(sg), len(ss), sg,
                                           max(45, head_age + rng.randrange(-6, 6)), "配偶", True, eth,
                                           p_away=0.12))
            fam = hs if head_male else (self.persons[members[1]].name[:self.persons[members[1]].sur_len]
                                        if len(members) > 1 else self.surname())
            for _ in range(rng.pick(((1, 0.7), (2, 0.3)))):
                p_age = head_age - rng.randrange(21, 31)
                if p_age < 22:
                    continue
                son = rng.p(0.78)
                listed = rng.p(0.6)
                if son:
                    parent = self.person(hx, fam + self.given("男"), len(fam), "男", p_age, "之子",
                                         listed, eth)
                    ws = self.surname()
                    wife = self.person(hx, ws + self.given("女"), len(ws), "女",
                                       max(20, p_age + rng.randrange(-5, 3)), "之儿媳",
                                       listed and rng.p(0.5), eth, p_away=0.15)
                    father, mother, kfam, kids_rel = parent, wife, fam, ("之孙子", "之孙女")
                else:
                    parent = self.person(hx, fam + self.given("女"), len(fam), "女", p_age, "之女",
                                         listed, eth)
                    hs2 = self.surname()
                    husband = self.person(hx, hs2 + self.given("男"), len(hs2), "男",
                                          p_age + rng.randrange(-2, 6), "之女婿", False, eth, p_away=0.2)
                    father, mother, kfam, kids_rel = husband, parent, hs2, ("之外孙子", "之外孙女")
                for q in (father, mother):
                    (members if self.persons[q].listed else others).append(q)
                age = rng.randrange(2, max(3, min(p_age - 19, 19)))
                for _ in range(rng.pick(((1, 0.25), (2, 0.45), (3, 0.30)))):
                    if age < 0:
                        break
                    g = "男" if rng.p(0.53) else "女"
                    nm, sl = self.child_name(kfam, g)
                    k = self.person(hx, nm, sl, g, age, kids_rel[0] if g == "男" else kids_rel[1], True, eth,
                                    kid=True)
                    self.persons[k].father, self.persons[k].mother = father, mother
                    members.append(k)
                    age -= rng.randrange(1, 6)
        else:
            head_age = rng.randrange(60, 90)
            hg = "男" if rng.p(0.55) else "女"
            hs = self.surname()
            h = self.person(hx, hs + self.given(hg), len(hs), hg, head_age, "户主", True, eth)
            members.append(h)
            if rng.p(0.45):
                ss = self.surname()
                sg = "女" if hg == "男" else "男"
                members.append(self.person(hx, ss + self.given(sg), len(ss), sg,
                                           max(55, head_age + rng.randrange(-5, 5)), "配偶", True, eth))
        self.households.append(_Household(hid=hid, town=town, village=village, head=members[0],
                                          members=members, others=others, kind=kind, phone=phone))


def _build_population(cfg: SynthConfig, geo: _Geo) -> _PopBuilder:
    rng = _stream(cfg, "population")
    pb = _PopBuilder(cfg, geo, rng)
    town_pairs = [(i, w) for i, w in enumerate(geo.town_weights)]
    vill_w = [[(v, 0.5 + rng.random()) for v in vs] for vs in geo.villages]
    for _ in range(cfg.households):
        t = rng.pick(town_pairs)
        pb.household(t, rng.pick(vill_w[t]))
    # export order: by town, village (in geo order), household number
    return pb


# --------------------------------------------------------------------------------------
# system membership and statuses
# --------------------------------------------------------------------------------------


def _assign_systems(cfg: SynthConfig, geo: _Geo, pb: _PopBuilder) -> None:
    rng = _stream(cfg, "systems")
    n = len(geo.towns)
    heads_only_town = 1
    for h in pb.households:
        if h.kind == "C":
            cat = rng.pick((("both", 0.35), ("dibao", 0.45), ("filing", 0.12), ("neither", 0.08)))
        else:
            cat = rng.pick((("both", 0.42), ("filing", 0.33), ("dibao", 0.17), ("neither", 0.08)))
        h.in_filing = cat in ("both", "filing")
        h.in_dibao = cat in ("both", "dibao")
        if h.in_dibao:
            if h.kind == "C":
                h.dibao_category = rng.pick((("特困供养", 0.7), ("农村低保", 0.25), ("城市低保", 0.05)))
            else:
                h.dibao_category = rng.pick((("农村低保", 0.72), ("城市低保", 0.18), ("特困供养", 0.10)))
            h.dibao_status = rng.pick((("在保", 0.85), ("停保", 0.10), ("注销", 0.05)))
            h.dibao_since = _year_month(rng, 2012, cfg.school_year)
            h.heads_only = h.town == heads_only_town and n > 1
        if h.in_filing:
            if h.in_dibao:
                h.household_type = ("特困供养贫困户" if h.dibao_category == "特困供养"
                                    else rng.pick((("低保贫困户", 0.8), ("一般贫困户", 0.2))))
            else:
                h.household_type = rng.pick((("一般贫困户", 0.93), ("低保贫困户", 0.07)))
            if h.town == 2:  # this town's export uses the older labels
                h.household_type = {"低保贫困户": "低保户", "特困供养贫困户": "五保户"}.get(
                    h.household_type, h.household_type)
            h.poverty_status = rng.pick((("未脱贫", 0.15), ("已脱贫(享受政策)", 0.62),
                                         ("已脱贫(不再享受政策)", 0.13), ("返贫", 0.10)))
            if h.poverty_status.startswith("已脱贫"):
                h.exit_year = str(rng.randrange(2016, 2021))


# --------------------------------------------------------------------------------------
# rosters
# --------------------------------------------------------------------------------------

_STAGE_RANK = {"学前": 0, "小学": 1, "初中": 2, "高中": 3, "中职": 4, "本科": 5, "大专": 6}


@dataclass(slots=True)
class _School:
    name: str
    stages: tuple[str, ...]
    claims: list[_Claim] = field(default_factory=list)


def _school_name_for(p: _Person, hh: _Household, geo: _Geo, rng: Rng, cfg: SynthConfig) -> str:
    town = geo.towns[hh.town]
    if rng.p(0.03):
        town = rng.choice(geo.towns)
    st = p.school_status
    if st in ("高中", "中职") and cfg.away_share and cfg.away_counties and rng.p(cfg.away_share):
        away = rng.choice(cfg.away_counties)
        return f"{away}第一中学" if st == "高中" else f"{away}职业中专"
    if st == "学前":
        return f"{town}中心幼儿园"
    if st == "小学":
        return f"{town}中心小学"
    if st == "初中":
        return f"{town}中学"
    if st == "高中":
        return f"{cfg.county}第一中学" if rng.p(0.6) else f"{cfg.county}民族中学"
    if st == "中职":
        return f"{cfg.county}职业中专"
    return f"{cfg.county}学生资助管理中心"


def _choose_guardian(p: _Person, hh: _Household, pb: _PopBuilder, rng: Rng) -> int:
    head = hh.head
    if not (hh.in_filing or hh.in_dibao):
        return head
    if hh.heads_only and not hh.in_filing:
        return head  # the only way to find the student in a heads-only dibao file
    parents = [q for q in (p.father, p.mother) if q >= 0]
    if head in parents:
        others = [q for q in parents if q != head]
        if others and rng.p(0.15):
            return others[0]
        return head
    if parents and rng.p(0.5):
        return parents[0] if rng.p(0.7) or len(parents) == 1 else parents[1]
    return head


def _build_claims(cfg: SynthConfig, geo: _Geo, pb: _PopBuilder) -> dict[str, _School]:
    rng = _stream(cfg, "claims")
    schools: dict[str, _School] = {}
    for t in geo.towns:
        for suffix, stages in (("中心幼儿园", ("学前",)), ("中心小学", ("小学",)), ("中学", ("初中",))):
            schools[t + suffix] = _School(t + suffix, stages)
    for nm, stages in ((f"{cfg.county}第一中学", ("高中",)), (f"{cfg.county}民族中学", ("高中",)),
                       (f"{cfg.county}职业中专", ("中职",)),
                       (f"{cfg.county}学生资助管理中心", ("本科", "大专"))):
        schools[nm] = _School(nm, stages)
    coverage = {"学前": 0.88, "小学": 0.94, "初中": 0.94, "高中": 0.92, "中职": 0.92, "本科": 0.6, "大专": 0.6}
    for hh in pb.households:
        members = hh.members
        for k in members:
            p = pb.persons[k]
            st = p.school_status
            if st == "非在校生" or not rng.p(coverage[st]):
                continue
            school = _school_name_for(p, hh, geo, rng, cfg)
            boarding = st in ("小学", "初中", "高中", "中职") and rng.p(0.25 if st == "小学" else 0.55)
            c = _Claim(student=k, school=school, stage=st, grade_idx=p.grade_idx,
                       guardian=_choose_guardian(p, hh, pb, rng), boarding=boarding,
                       class_no=1 + rng.randrange(3), university=school.endswith("学生资助管理中心"))
            schools.setdefault(school, _School(school, (st,))).claims.append(c)  # a school away: new
    # duplicate claims: same school (a second application) or another school of the same stage
    dup_rate = _rate(cfg, 0.006)
    for name in list(schools):
        for c in list(schools[name].claims):
            if not rng.p(dup_rate) or c.duplicate:
                continue
            c.duplicate = True
            target = name
            if rng.p(0.5):
                alts = [s.name for s in schools.values() if s.stages == schools[name].stages and s.name != name]
                if alts:
                    target = rng.choice(alts)
            d = _Claim(student=c.student, school=target, stage=c.stage, grade_idx=c.grade_idx,
                       guardian=c.guardian, boarding=c.boarding, class_no=1 + rng.randrange(3),
                       university=c.university, duplicate=True)
            schools[target].claims.append(d)
    return schools


@dataclass(slots=True)
class _Layout:
    columns: list[str]
    headers: dict[str, str]
    header_style: str  # single | band | merged_head
    group: str
    sub: dict[str, str]
    title_rows: int
    blank_after_title: bool
    date_style: str
    numeric_prone: bool
    blank_rows: int
    total_row: bool
    footer: bool
    relation_style: str
    junior_alt: bool


def _forced_features(rng: Rng, schools: list[_School]) -> dict[str, dict[str, Any]]:
    """Make sure every file shape occurs at least once, whatever the county's size."""
    out: dict[str, dict[str, Any]] = {}
    order = list(range(len(schools)))
    rng.shuffle(order)
    wants: list[tuple[str, Any]] = [("style", "merged_head"), ("style", "band"), ("numeric_prone", True),
                                    ("numeric_prone", True), ("blank_rows", 2), ("footer", True),
                                    ("date_style", "excel"), ("title_rows", 1), ("title_rows", 2),
                                    ("blank_after_title", True)]
    for j, (key, val) in enumerate(wants):
        if not order:
            break
        out.setdefault(schools[order[j % len(order)]].name, {})[key] = val
    multi = [s for s in schools if len({(c.stage, c.grade_idx) for c in s.claims}) >= 2]
    if multi:
        out.setdefault(rng.choice(multi).name, {})["two_sheets"] = True
    return out


def _roster_layout(rng: Rng, school: _School, cfg: SynthConfig, force: dict[str, Any]) -> _Layout:
    uni = school.stages == ("本科", "大专")
    kg = school.stages == ("学前",)
    keep = {
        "seq": 1.0, "school": 0.9, "stage": 0.8, "grade": 0.95, "class_name": 0.0 if uni else 0.5,
        "name": 1.0, "gender": 0.95, "ethnicity": 0.6, "birth_date": 0.9, "id_number": 1.0,
        "student_no": 0.1 if kg else (0.0 if uni else 0.6), "boarding": 0.0 if uni or kg else 0.6,
        "head_name": 1.0, "head_id": 0.97, "relation": 0.75, "town": 0.85, "village": 0.9,
        "aid_item": 0.5, "amount": 0.97, "phone": 0.4,
    }
    columns = [c for c in ROSTER_COLUMNS if rng.p(keep[c])]
    style = rng.pick((("single", 0.65), ("band", 0.15), ("merged_head", 0.20)))
    style = force.get("style", style)
    if style == "merged_head" and "head_name" not in columns:
        columns.insert(columns.index("id_number") + 1 if "id_number" in columns else len(columns), "head_name")
        columns.sort(key=ROSTER_COLUMNS.index)
    word = rng.pick((("户主", 0.65), ("监护人", 0.25), ("家长", 0.10)))
    headers: dict[str, str] = {}
    for c in columns:
        opts = ROSTER_HEADER_VARIANTS[c]
        if c == "head_name":
            h = f"{word}姓名"
        elif c == "head_id":
            h = "户主身份证件号码" if word == "户主" and rng.p(0.25) else f"{word}身份证号"
        elif c == "relation":
            h = "与户主关系" if word == "户主" else "与监护人关系"
        elif c == "name" and style == "merged_head":
            h = rng.choice(("学生姓名", "受助学生姓名"))
        elif c == "id_number" and style == "merged_head":
            h = rng.choice(("学生身份证号", "身份证件号码", "公民身份号码"))
        else:
            h = opts[0] if rng.p(0.55) else rng.choice(opts)
        headers[c] = h
    group = f"{word}信息"
    sub = {"head_name": "姓名", "head_id": rng.choice(ROSTER_GROUP_HEADERS["sub"]["head_id"]),
           "relation": rng.choice(ROSTER_GROUP_HEADERS["sub"]["relation"])}
    lay = _Layout(
        columns=columns, headers=headers, header_style=style, group=group, sub=sub,
        title_rows=1 if rng.p(0.4) else 2, blank_after_title=rng.p(0.1),
        date_style=rng.pick((("iso", 0.35), ("cn", 0.15), ("compact", 0.15), ("dot", 0.1),
                             ("slash", 0.1), ("excel", 0.15))),
        numeric_prone=rng.p(0.2), blank_rows=rng.pick(((0, 0.75), (1, 0.18), (2, 0.07))),
        total_row=rng.p(0.9), footer=rng.p(0.3), relation_style="zhi" if rng.p(0.75) else "plain",
        junior_alt=rng.p(0.3),
    )
    for key, val in force.items():
        if key in ("numeric_prone", "blank_rows", "footer", "date_style", "title_rows", "blank_after_title"):
            setattr(lay, key, val)
    if lay.date_style == "excel" and "birth_date" not in lay.columns:
        lay.columns.insert(0, "birth_date")
        lay.columns.sort(key=ROSTER_COLUMNS.index)
        lay.headers["birth_date"] = "出生日期"
    return lay


def _fmt_date(d: dt.date, style: str) -> Any:
    if style == "iso":
        return d.isoformat()
    if style == "cn":
        return f"{d.year}年{d.month}月{d.day}日"
    if style == "compact":
        return f"{d.year:04d}{d.month:02d}{d.day:02d}"
    if style == "dot":
        return f"{d.year:04d}.{d.month:02d}.{d.day:02d}"
    if style == "slash":
        return f"{d.year:04d}/{d.month:02d}/{d.day:02d}"
    return d  # a real Excel date


def _conflicting_birth(rng: Rng, b: dt.date) -> dt.date:
    for _ in range(10):
        how = rng.randrange(3)
        try:
            if how == 0:
                nb = b + dt.timedelta(days=rng.choice((-3, -2, -1, 1, 2, 3, 10)))
            elif how == 1:
                nb = dt.date(b.year, b.day, b.month) if b.day <= 12 else dt.date(b.year + rng.choice((-1, 1)), b.month, b.day)
            else:
                nb = dt.date(b.year + rng.choice((-1, 1)), b.month, min(b.day, 28))
        except ValueError:
            continue
        if nb != b:
            return nb
    return b + dt.timedelta(days=1)


def _relation_text(student: _Person, guardian: _Person | None, style: str) -> str:
    if guardian is None:
        return ""
    male = student.gender == "男"
    if guardian.pid - 1 in (student.father, student.mother):
        rel = "之子" if male else "之女"
    elif student.relation.startswith("之外孙"):
        rel = "之外孙子" if male else "之外孙女"
    elif student.relation.startswith("之孙"):
        rel = "之孙子" if male else "之孙女"
    elif guardian.relation == "户主" and student.relation:
        rel = student.relation
    else:
        rel = "其他"
    if style == "plain":
        rel = {"之子": "儿子", "之女": "女儿", "之孙子": "孙子", "之孙女": "孙女",
               "之外孙子": "外孙", "之外孙女": "外孙女"}.get(rel, rel)
    return rel


def _student_no(rng: Rng, p: _Person, region: str) -> str | None:
    r = rng.random()
    if r < 0.8:
        return "G" + p.id18
    if r < 0.9:
        first17 = f"{region}{p.birth:%Y%m%d}{rng.randrange(1000):03d}"
        return "J" + first17 + id_check_char(first17)
    return f"L{region}{p.birth:%Y%m%d}{rng.randrange(10000):04d}"


class _RosterWriter:
    def __init__(self, cfg: SynthConfig, geo: _Geo, pb: _PopBuilder, inbox: Path, speller: PlaceSpeller) -> None:
        self.cfg, self.geo, self.pb, self.inbox, self.speller = cfg, geo, pb, inbox, speller
        self.file = ""
        self.rng = _stream(cfg, "roster")
        self.recs: list[_Rec] = []
        self.files = 0

    def write_all(self, schools: dict[str, _School]) -> None:
        active = [s for s in schools.values() if s.claims]
        force = _forced_features(_stream(self.cfg, "roster-force"), active)
        for school in active:
            self.write_school(school, force.get(school.name, {}))

    def _grade_text(self, c: _Claim, lay: _Layout) -> str:
        if c.stage == "初中" and lay.junior_alt:
            return _JUNIOR_ALT[c.grade_idx]
        return _GRADES[c.stage][c.grade_idx]

    def write_school(self, school: _School, force: dict[str, Any]) -> None:
        from openpyxl import Workbook
        from openpyxl.worksheet.cell_range import CellRange

        rng = self.rng
        lay = _roster_layout(rng, school, self.cfg, force)
        order = _STAGE_RANK
        firsts = list(school.claims)
        rng.shuffle(firsts)
        # sort by stage, grade, class; late duplicates (second applications) stay at the end
        firsts.sort(key=lambda c: (order[c.stage], c.grade_idx, c.class_no))
        seen: dict[int, None] = {}
        main: list[_Claim] = []
        late: list[_Claim] = []
        for c in firsts:
            if c.student in seen:
                late.append(c)
            else:
                seen[c.student] = None
                main.append(c)
        claims = main + late
        sheets: list[tuple[str, list[_Claim]]]
        grades = sorted({(order[c.stage], c.grade_idx) for c in claims})
        split = len(grades) >= 2 and len(claims) >= 20 and rng.p(0.12)
        if len(grades) >= 2 and force.get("two_sheets"):
            split = True
        if split:
            cut = grades[len(grades) // 2]
            a = [c for c in claims if (order[c.stage], c.grade_idx) < cut]
            b = [c for c in claims if (order[c.stage], c.grade_idx) >= cut]

            def label(part: list[_Claim]) -> str:
                lo = min(part, key=lambda c: (order[c.stage], c.grade_idx))
                hi = max(part, key=lambda c: (order[c.stage], c.grade_idx))
                g0, g1 = self._grade_text(lo, lay), self._grade_text(hi, lay)
                return g0 if g0 == g1 else f"{g0}-{g1}"

            sheets = [(label(a), a), (label(b), b)]
        else:
            nm = rng.pick((("Sheet1", 0.6), ("资助名单", 0.2), (f"{self.cfg.school_year}年秋季", 0.2)))
            sheets = [(nm, claims)]
        fname = f"{school.name}_资助名单.xlsx"
        rel = f"roster/{fname}"
        self.file = rel
        wb = Workbook(write_only=True)
        ncol = len(lay.columns)
        last_col = _col_letter(ncol)
        fill_day = 5 + rng.randrange(20)
        for sheet_name, part in sheets:
            ws = wb.create_sheet(sheet_name)
            r = 0

            def put(values: list[Any]) -> int:
                nonlocal r
                ws.append(values)
                r += 1
                return r

            put([f"{school.name}{self.cfg.school_year}年秋季学期家庭经济困难学生资助名单"])
            ws.merged_cells.add(CellRange(f"A{r}:{last_col}{r}"))
            if lay.title_rows == 2:
                put([f"填报单位：{school.name}（盖章）    填报日期：{self.cfg.school_year}年9月{fill_day}日"])
                ws.merged_cells.add(CellRange(f"A{r}:{last_col}{r}"))
            if lay.blank_after_title:
                put([])
            self._header(ws, put, lay, lambda: r)
            blank_at = sorted(rng.sample(range(1, len(part)), min(lay.blank_rows, max(0, len(part) - 1))))
            total = 0
            for i, c in enumerate(part):
                if blank_at and i == blank_at[0]:
                    blank_at.pop(0)
                    put([])
                values, rec_errors, facts_conflict = self.render(c, lay, i + 1)
                amt = values[lay.columns.index("amount")] if "amount" in lay.columns else 0
                total += amt if isinstance(amt, int) else 0
                row_no = put(values)
                self.recs.append(_Rec("roster", rel, sheet_name, row_no, c.student, rec_errors,
                                      self.kinds(c, lay, rec_errors, facts_conflict), c.guardian))
            if lay.total_row:
                tot: list[Any] = [None] * ncol
                tot[0] = "合计"
                if ncol > 1:
                    tot[1] = f"{len(part)}人"
                if "amount" in lay.columns:
                    tot[lay.columns.index("amount")] = total
                put(tot)
            if lay.footer:
                put([f"制表人：{self.pb.persons[rng.randrange(len(self.pb.persons))].name}    "
                     f"审核人：{self.pb.persons[rng.randrange(len(self.pb.persons))].name}"])
        wb.properties.creator = "recon-synth"
        wb.properties.created = dt.datetime(self.cfg.school_year, 9, 1)
        wb.save(self.inbox / "roster" / fname)
        self.files += 1

    def _header(self, ws: Any, put: Any, lay: _Layout, row: Any) -> None:
        from openpyxl.worksheet.cell_range import CellRange

        cols = lay.columns
        if lay.header_style == "single":
            put([lay.headers[c] for c in cols])
            return
        if lay.header_style == "band":
            bands: list[tuple[str, int, int]] = []
            for i, c in enumerate(cols):
                if c in ("head_name", "head_id", "relation", "town", "village", "phone"):
                    b = "家庭信息"
                elif c in ("aid_item", "amount"):
                    b = "资助信息"
                else:
                    b = "基本信息" if c in ("seq", "school", "stage", "grade", "class_name") else "学生信息"
                if bands and bands[-1][0] == b:
                    bands[-1] = (b, bands[-1][1], i)
                else:
                    bands.append((b, i, i))
            top: list[Any] = [None] * len(cols)
            for b, i0, _ in bands:
                top[i0] = b
            put(top)
            r = row()
            for _, i0, i1 in bands:
                if i1 > i0:
                    ws.merged_cells.add(CellRange(f"{_col_letter(i0 + 1)}{r}:{_col_letter(i1 + 1)}{r}"))
            put([lay.headers[c] for c in cols])
            return
        grouped = [i for i, c in enumerate(cols) if c in ("head_name", "head_id", "relation")]
        top = [None] * len(cols)
        bottom: list[Any] = [None] * len(cols)
        for i, c in enumerate(cols):
            if i in grouped:
                bottom[i] = lay.sub[c]
            else:
                top[i] = lay.headers[c]
        top[grouped[0]] = lay.group
        put(top)
        r = row()
        put(bottom)
        for i, c in enumerate(cols):
            if i not in grouped:
                ws.merged_cells.add(CellRange(f"{_col_letter(i + 1)}{r}:{_col_letter(i + 1)}{r + 1}"))
        if len(grouped) > 1:
            ws.merged_cells.add(CellRange(f"{_col_letter(grouped[0] + 1)}{r}:{_col_letter(grouped[-1] + 1)}{r}"))

    def render(self, c: _Claim, lay: _Layout, seq: int) -> tuple[list[Any], list[str], bool]:
        """The row's cells, its error classes, and whether its birth date or gender column
        contradicts the ID in its ID cell."""
        rng, cfg, pb = self.rng, self.cfg, self.pb
        p = pb.persons[c.student]
        hh = pb.households[p.hh]
        g = pb.persons[c.guardian] if c.guardian >= 0 else None
        errs: list[str] = []
        facts_conflict = False
        cols = lay.columns
        v: dict[str, Any] = {}
        # student name
        name = p.name
        extra = 0.0
        if any(ch in RARE for ch in name):
            extra = 0.5
        elif "·" in name:
            extra = 0.4
        if rng.p(_rate(cfg, 0.04 + extra)):
            name, k = typo_name(rng, name, p.sur_len, "roster")
            if k:
                errs.append("name_" + k)
        v["name"] = name
        # student ID
        v["id_number"] = _roster_id(rng, cfg, lay.numeric_prone, p, 0.05, ROSTER_ID_DAMAGE, "id_", errs)
        tells_grade = "grade" in cols and ("stage" in cols or "school" in cols)
        family = _family_member(pb, c, rng) if tells_grade and rng.p(_rate(cfg, 0.004)) else None
        if family is not None and not any(e.startswith("id_") for e in errs):
            v["id_number"] = family.id18  # a brother's, a sister's or the guardian's ID on the student's row
            errs.append("id_family")
        # facts
        gender = p.gender
        if "gender" in cols and rng.p(_rate(cfg, 0.005)):
            gender = "女" if gender == "男" else "男"
            errs.append("gender_conflict")
        v["gender"] = gender
        birth = p.birth
        if "birth_date" in cols and rng.p(_rate(cfg, 0.006)):
            birth = _conflicting_birth(rng, birth)
            errs.append("birth_conflict")
        style = lay.date_style if rng.p(0.9) else rng.choice(("iso", "cn", "compact", "dot", "slash", "excel"))
        v["birth_date"] = _fmt_date(birth, style)
        # guardian
        if g is not None:
            gname = g.name
            if rng.p(_rate(cfg, 0.04)):
                gname, k = typo_name(rng, gname, g.sur_len, "roster")
                if k and "head_name" in cols:
                    errs.append("head_name_" + k)
            v["head_name"] = gname
            head_errs: list[str] = []
            v["head_id"] = _roster_id(rng, cfg, lay.numeric_prone, g, 0.08, ROSTER_HEAD_ID_DAMAGE, "head_id_", head_errs)
            if "head_id" in cols:  # an error is recorded only where the row shows the cell
                errs += head_errs
        v["relation"] = _relation_text(p, g, lay.relation_style)
        if c.duplicate:
            errs.append("duplicate")
        if "seq" in cols:
            v["seq"] = seq
        v["school"] = rng.choice(_UNIVERSITIES)[0] if c.university else c.school
        v["stage"] = c.stage
        v["grade"] = self._grade_text(c, lay)
        v["class_name"] = f"{c.class_no}班"
        v["ethnicity"] = p.ethnicity
        v["student_no"] = _student_no(rng, p, cfg.region) if c.stage not in ("学前",) or rng.p(0.2) else None
        v["boarding"] = "是" if c.boarding else "否"
        v["town"], v["village"] = self.speller.spell(self.file, self.geo.towns[hh.town], hh.village, hh.hid, errs,
                                                     "town" in cols, "village" in cols)
        v["aid_item"] = _AID_ITEM[c.stage] if not (c.stage == "本科" and c.grade_idx == 0) else "大学新生入学资助"
        _policy_cells(self, c, lay, v, errs)  # issue 7: amounts by the county's policy, a few wrong
        v["phone"] = hh.phone
        if family is not None and "id_family" in errs:
            shown_birth = birth if "birth_date" in cols else family.birth
            shown_gender = gender if "gender" in cols else family.gender
            if (shown_birth, shown_gender) != (family.birth, family.gender):
                facts_conflict = True  # the row's own facts contradict the ID it carries
        return [v.get(col) for col in cols], errs, facts_conflict

    def kinds(self, c: _Claim, lay: _Layout, errs: list[str], facts_conflict: bool) -> list[str]:
        hh = self.pb.households[self.pb.persons[c.student].hh]
        out: list[str] = []
        if any(e in _INVALID_ID_KINDS for e in errs):
            out.append("id_invalid")
        if c.duplicate:
            out.append("duplicate_claim")
        if "birth_conflict" in errs or "gender_conflict" in errs or facts_conflict:
            out.append("id_fact_conflict")
        dibao_visible = _dibao_visible(hh, c)
        visible = "village" in lay.columns or dibao_visible
        out += _eligibility_kinds(hh, visible and _in_cut_place(self, hh), dibao_visible)
        if "amount_wrong" in errs:
            out.append("subsidy_mismatch")
        if "grade_age" in errs or "id_family" in errs:
            out.append("age_stage_mismatch")
        return out


_ENTRY_AGE = {"学前": 3, "小学": 6, "初中": 12, "高中": 15, "中职": 15, "本科": 18, "大专": 18}


def _family_member(pb: _PopBuilder, c: _Claim, rng: Rng) -> _Person | None:
    """Another member of the student's household whose ID a clerk might copy into the row (a
    brother or sister, else the guardian), 3+ years from the usual age of the row's grade, so
    the row's grade contradicts the ID it carries (age_stage_mismatch)."""
    p = pb.persons[c.student]
    hh = pb.households[p.hh]
    usual = _ENTRY_AGE[c.stage] + c.grade_idx
    far = [k for k in (*hh.members, c.guardian) if k >= 0 and k != c.student and abs(pb.age(pb.persons[k].birth) - usual) >= 3]
    kin = [k for k in far if pb.persons[k].school_status != "非在校生"]
    pool = kin if kin and rng.p(0.6) else far
    return pb.persons[rng.choice(sorted(set(pool)))] if pool else None


def _eligibility_kinds(hh: _Household, cut_place: bool | None = None, dibao_visible: bool | None = None) -> list[str]:
    """Kinds a perfect tool reports about eligibility. ``cut_place``: the household lives in the
    village cut from an export and the row shows it (the roster's village column, or a dibao
    record): a student found qualifying nowhere there gets export_incomplete (instead of
    not_found), whether or not the household itself was in the export that was cut.
    ``dibao_visible``: the student can be found in the dibao export (a heads-only export shows
    only the head: the roster must name the head as guardian)."""
    if cut_place is None:
        cut_place = hh.cut
    in_dibao = hh.in_dibao if dibao_visible is None else dibao_visible
    filing_seen = hh.in_filing and not hh.cut
    qual_f = filing_seen and hh.poverty_status != "已脱贫(不再享受政策)"
    qual_d = in_dibao and hh.dibao_status == "在保"
    if qual_f or qual_d:
        return []
    out: list[str] = []
    if not filing_seen and not in_dibao:
        return ["export_incomplete"] if cut_place else ["not_found"]
    if filing_seen:
        out.append("household_exited")
    if in_dibao:
        out.append("dibao_stopped")
    if cut_place and not filing_seen:
        out.append("export_incomplete")
    return out


def _col_letter(n: int) -> str:
    s = ""
    while n:
        n, rem = divmod(n - 1, 26)
        s = chr(65 + rem) + s
    return s


# --------------------------------------------------------------------------------------
# system exports
# --------------------------------------------------------------------------------------


class _SystemRender:
    """Typed values of system rows with the side's error rates; per-household head typing."""

    def __init__(self, cfg: SynthConfig, pb: _PopBuilder, rng: Rng) -> None:
        self.cfg, self.pb, self.rng = cfg, pb, rng

    def head_cell(self, hh: _Household, head_name: str, errs: list[str]) -> str:
        """The 户主姓名 cell of one member's row: the household's spelling, now and then its own typo."""
        head = self.pb.persons[hh.head]
        if self.rng.p(_rate(self.cfg, 0.01)):
            own, k = typo_name(self.rng, head.name, head.sur_len, "system")
            if k:
                errs[:] = [e for e in errs if not e.startswith("head_name_")] + ["head_name_" + k]
                return own
        return head_name

    def name(self, p: _Person, errs: list[str], prefix: str) -> str:
        rng = self.rng
        nm = p.name
        non_gbk = any(not in_charset(ch, "gbk") for ch in nm)
        if non_gbk and rng.p(_rate(self.cfg, 0.8)):
            rare = [i for i, ch in enumerate(nm) if not in_charset(ch, "gbk")]
            i = rare[0]
            if rng.p(0.75):
                nm, k = nm[:i] + "?" + nm[i + 1:], "rare_q"
            else:
                nm, k = replace_rare(rng, "rare_common", nm, rare), "rare_common"
            if nm != p.name:
                errs.append(prefix + k)
            return nm
        if rng.p(_rate(self.cfg, 0.02)):
            nm, k = typo_name(rng, nm, p.sur_len, "system")
            if k:
                errs.append(prefix + k)
        return nm

    def ident(self, p: _Person, errs: list[str], prefix: str, family: _Person | None = None) -> str | None:
        """The ID cell; now and then another family member's ID (``family``: the head's)."""
        rng = self.rng
        if family is not None and family is not p and rng.p(_rate(self.cfg, 0.003)):
            errs.append(prefix + "family")
            return family.id18
        if rng.p(_rate(self.cfg, 0.02)):
            v, k = damage_id(rng, p.id18, p.birth, SYSTEM_ID_DAMAGE)
            if k:
                errs.append(prefix + k)
            return v
        return p.id18


def _dibao_rows(cfg: SynthConfig, geo: _Geo, pb: _PopBuilder, households: list[_Household],
                rng: Rng, heads_only: bool, file: str, speller: PlaceSpeller) -> list[tuple[list[Any], int, list[str]]]:
    sr = _SystemRender(cfg, pb, rng)
    out: list[tuple[list[Any], int, list[str]]] = []
    for hh in households:
        head = pb.persons[hh.head]
        head_errs: list[str] = []
        prefix = "" if heads_only else "head_"
        head_name = sr.name(head, head_errs, prefix + "name_")
        head_id = sr.ident(head, head_errs, prefix + "id_")
        n = len(hh.members)
        town, vil = speller.spell(file, geo.towns[hh.town], hh.village, hh.hid, head_errs)
        amounts = [rng.choice((320, 410, 520, 600)) for _ in hh.members]
        if heads_only:
            out.append(([town, vil, head_name, head_id, n, hh.dibao_category, sum(amounts),
                         hh.dibao_since, _dibao_spelling(hh)], hh.head, head_errs))
            continue
        for k, amt in zip(hh.members, amounts, strict=True):
            p = pb.persons[k]
            errs = list(head_errs)
            hn = sr.head_cell(hh, head_name, errs) if k != hh.head else head_name
            nm = sr.name(p, errs, "name_")
            idv = sr.ident(p, errs, "id_", head)
            since = hh.dibao_since
            if k != hh.head and rng.p(0.4):
                since = _year_month(rng, int(since[:4]), min(int(since[:4]) + 2, cfg.school_year))
            out.append(([town, vil, hn, head_id, n, nm, idv, p.relation, hh.dibao_category, amt,
                         since, _dibao_spelling(hh)], k, errs))
    return out


_XlsSheet = tuple[str, str, tuple[str, ...], list[list[Any]], list[Any] | None]


def _write_xls(path: Path, sheets: list[_XlsSheet]) -> None:
    """Write sheets (name, title, header, rows, total row) as Excel 97: the title merged across
    row 1, the header in row 2, data from row 3 (so calamine, which skips leading empty rows and
    columns, still numbers rows as Excel does: A1 is never empty)."""
    import xlwt

    wb = xlwt.Workbook(encoding="utf-8")
    for name, title, header, rows, total in sheets:
        ws = wb.add_sheet(name)
        ws.write_merge(0, 0, 0, len(header) - 1, title)
        for c, h in enumerate(header):
            ws.write(1, c, h)
        r = 2
        for row in rows:
            write = ws.row(r).write
            for c, val in enumerate(row):
                if val is not None:
                    write(c, val)
            r += 1
        if total is not None:
            for c, val in enumerate(total):
                if val is not None:
                    ws.write(r, c, val)
    wb.save(str(path))


_XLS_MAX_DATA = 65000


def _write_dibao(cfg: SynthConfig, geo: _Geo, pb: _PopBuilder, inbox: Path,
                 speller: PlaceSpeller) -> tuple[list[_Rec], int]:
    rng = _stream(cfg, "dibao")
    recs: list[_Rec] = []
    files = 0
    heads_only_town, csv_town = 1, 2
    by_town: list[list[_Household]] = [[] for _ in geo.towns]
    for hh in _export_order(geo, pb):
        if hh.in_dibao:
            by_town[hh.town].append(hh)
    # main register (Excel 97), all towns but the heads-only and the CSV town
    main_hh = [hh for t, hs in enumerate(by_town) if t not in (heads_only_town, csv_town) for hh in hs]
    fname = "县城乡低保花名册.xls"
    rows = _dibao_rows(cfg, geo, pb, main_hh, rng, False, f"dibao/{fname}", speller)
    # Excel 97 holds 65,536 rows a sheet: continue on further sheets, never splitting a household
    chunks: list[list[tuple[list[Any], int, list[str]]]] = [[]]
    i = 0
    while i < len(rows):
        j = i + 1
        while j < len(rows) and pb.persons[rows[j][1]].hh == pb.persons[rows[i][1]].hh:
            j += 1
        if len(chunks[-1]) + (j - i) > _XLS_MAX_DATA:
            chunks.append([])
        chunks[-1].extend(rows[i:j])
        i = j
    sheets = []
    names = []
    for i, chunk in enumerate(chunks):
        nm = "低保对象花名册" if i == 0 else f"低保对象花名册({i + 1})"
        names.append(nm)
        total = None
        if i == len(chunks) - 1:
            total = [f"合计：{len(main_hh)}户{len(rows)}人"] + [None] * (len(DIBAO_HEADERS) - 1)
        sheets.append((nm, f"{cfg.county}城乡低保对象花名册", DIBAO_HEADERS, [r[0] for r in chunk], total))
    _write_xls(inbox / "dibao" / fname, sheets)
    files += 1
    for nm, chunk in zip(names, chunks, strict=True):
        for j, (_, person, errs) in enumerate(chunk):
            recs.append(_Rec("dibao", f"dibao/{fname}", nm, 3 + j, person, errs))
    # heads-only register for one town
    if len(geo.towns) > heads_only_town and by_town[heads_only_town]:
        town = geo.towns[heads_only_town]
        fname = f"{town}低保户主名册.xls"
        rows = _dibao_rows(cfg, geo, pb, by_town[heads_only_town], rng, True, f"dibao/{fname}", speller)
        nm = "户主名册"
        _write_xls(inbox / "dibao" / fname,
                   [(nm, f"{town}城乡低保户花名册（户主）", DIBAO_HEADS_ONLY_HEADERS, [r[0] for r in rows], None)])
        files += 1
        for j, (_, person, errs) in enumerate(rows):
            recs.append(_Rec("dibao", f"dibao/{fname}", nm, 3 + j, person, errs))
    # one town as CSV (GB18030, CRLF) with a title line above the header
    if len(geo.towns) > csv_town and by_town[csv_town]:
        town = geo.towns[csv_town]
        fname = f"{town}_低保花名册.csv"
        rows = _dibao_rows(cfg, geo, pb, by_town[csv_town], rng, False, f"dibao/{fname}", speller)
        with open(inbox / "dibao" / fname, "w", encoding="gb18030", newline="") as fh:
            w = csv.writer(fh, lineterminator="\r\n")
            w.writerow([f"{town}城乡低保对象花名册"])
            w.writerow(DIBAO_HEADERS)
            for vals, _, _ in rows:
                w.writerow(["" if x is None else x for x in vals])
        files += 1
        for j, (_, person, errs) in enumerate(rows):
            recs.append(_Rec("dibao", f"dibao/{fname}", "", 3 + j, person, errs))
    return recs, files


def _export_order(geo: _Geo, pb: _PopBuilder) -> list[_Household]:
    vindex = [{v: i for i, v in enumerate(vs)} for vs in geo.villages]
    return sorted(pb.households, key=lambda h: (h.town, vindex[h.town][h.village], h.hid))


def _write_filing(cfg: SynthConfig, geo: _Geo, pb: _PopBuilder, inbox: Path,
                  speller: PlaceSpeller) -> tuple[list[_Rec], int, dict[str, Any]]:
    rng = _stream(cfg, "filing")
    sr = _SystemRender(cfg, pb, rng)
    recs: list[_Rec] = []
    files = 0
    code_town, xlsx_town = 0, 4
    by_town: list[list[_Household]] = [[] for _ in geo.towns]
    for hh in _export_order(geo, pb):
        if hh.in_filing:
            by_town[hh.town].append(hh)
    # filing numbers in export order
    hno = pno = 0
    person_no: dict[int, str] = {}
    for hs in by_town:
        for hh in hs:
            hno += 1
            hh.filing_no = f"H{hno:08d}"
            for k in hh.members:
                pno += 1
                person_no[k] = f"P{pno:09d}"
    # the cut: the last village of one town's CSV export is missing (export stopped early)
    cut_note: dict[str, Any] = {}
    csv_towns = [t for t in range(len(geo.towns)) if t != xlsx_town and len({h.village for h in by_town[t]}) >= 2]
    if cfg.errors > 0 and csv_towns:
        t = rng.choice(csv_towns)
        last_v = by_town[t][-1].village
        cut_hh = [h for h in by_town[t] if h.village == last_v]
        for h in cut_hh:
            h.cut = True
        cut_note = {
            "source": "filing", "file": f"filing/{geo.towns[t]}_建档立卡人口.csv", "town": geo.towns[t],
            "village": last_v, "households": len(cut_hh),
            "persons": sum(len(h.members) for h in cut_hh),
            "household_ids": [h.household_id for h in cut_hh],
        }
    for t, hs in enumerate(by_town):
        if not hs:
            continue
        town = geo.towns[t]
        fname = f"{town}_建档立卡人口.xlsx" if t == xlsx_town else f"{town}_建档立卡人口.csv"
        rows: list[tuple[list[Any], int, list[str]]] = []
        for hh in hs:
            if hh.cut:
                continue
            head = pb.persons[hh.head]
            head_errs: list[str] = []
            town_w, village_w = speller.spell(f"filing/{fname}", town, hh.village, hh.hid, head_errs)
            head_name = sr.name(head, head_errs, "head_name_")
            status = _STATUS_TO_CODE[hh.poverty_status] if t == code_town else _poverty_spelling(hh)
            htype = _HOUSEHOLD_TYPE_CODES.get(hh.household_type, hh.household_type) if t == code_town else hh.household_type
            for k in hh.members:
                p = pb.persons[k]
                errs = list(head_errs)
                hn = sr.head_cell(hh, head_name, errs) if k != hh.head else head_name
                nm = sr.name(p, errs, "name_")
                idv = sr.ident(p, errs, "id_", head)
                rows.append(([cfg.county, town_w, village_w, hh.filing_no, hn, person_no[k], nm, idv,
                              p.relation, p.gender, p.school_status, htype, status,
                              hh.exit_year], k, errs))
        if t == xlsx_town:
            from openpyxl import Workbook
            from openpyxl.worksheet.cell_range import CellRange

            wb = Workbook(write_only=True)
            ws = wb.create_sheet("建档立卡人口")
            ws.append([f"{cfg.county}{town}建档立卡贫困人口信息表"])
            ws.merged_cells.add(CellRange(f"A1:{_col_letter(len(FILING_HEADERS))}1"))
            ws.append(list(FILING_HEADERS))
            for vals, _, _ in rows:
                ws.append(vals)
            wb.properties.creator = "recon-synth"
            wb.properties.created = dt.datetime(cfg.school_year, 9, 1)
            wb.save(inbox / "filing" / fname)
            for j, (_, person, errs) in enumerate(rows):
                recs.append(_Rec("filing", f"filing/{fname}", "建档立卡人口", 3 + j, person, errs))
        else:
            utf8 = t % 4 == 1 or t == 3
            with open(inbox / "filing" / fname, "w", encoding="utf-8-sig" if utf8 else "gb18030",
                      newline="") as fh:
                w = csv.writer(fh, lineterminator="\n" if utf8 else "\r\n")
                w.writerow(FILING_HEADERS)
                for vals, _, _ in rows:
                    w.writerow(["" if x is None else x for x in vals])
            for j, (_, person, errs) in enumerate(rows):
                recs.append(_Rec("filing", f"filing/{fname}", "", 2 + j, person, errs))
        files += 1
    return recs, files, cut_note


# --------------------------------------------------------------------------------------
# truth
# --------------------------------------------------------------------------------------


def _write_truth(cfg: SynthConfig, geo: _Geo, pb: _PopBuilder, truth: Path, recs: list[_Rec],
                 cut_note: dict[str, Any], roster_stages: list[str]) -> dict[str, int]:
    def b(x: bool) -> str:
        return "true" if x else "false"

    with open(truth / "persons.csv", "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["person_id", "household_id", "name", "id_number", "birth_date", "gender", "town",
                    "village", "school_status", "relation", "listed", "ethnicity"])
        for p in pb.persons:
            h = pb.households[p.hh]
            w.writerow([p.person_id, h.household_id, p.name, p.id18, p.birth.isoformat(), p.gender,
                        geo.towns[h.town], h.village, p.school_status, p.relation, b(p.listed), p.ethnicity])
    with open(truth / "households.csv", "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["household_id", "town", "village", "head_person_id", "in_filing", "poverty_status",
                    "in_dibao", "dibao_status", "dibao_heads_only", "household_type", "dibao_category",
                    "filing_no", "cut_from_export", "members"])
        for h in pb.households:
            w.writerow([h.household_id, geo.towns[h.town], h.village, pb.persons[h.head].person_id,
                        b(h.in_filing), h.poverty_status, b(h.in_dibao), h.dibao_status,
                        b(h.in_dibao and h.heads_only), h.household_type, h.dibao_category, h.filing_no,
                        b(h.cut), len(h.members)])
    kinds: dict[str, int] = {}
    with open(truth / "records.csv", "w", encoding="utf-8", newline="") as fh, \
            open(truth / "expected.csv", "w", encoding="utf-8", newline="") as fe:
        w = csv.writer(fh, lineterminator="\n")
        we = csv.writer(fe, lineterminator="\n")
        w.writerow(["source", "file", "sheet", "row", "person_id", "errors", "head_person_id"])
        we.writerow(["source", "file", "sheet", "row", "kind"])
        for r in recs:
            head = r.head if r.head >= 0 else pb.households[pb.persons[r.person].hh].head
            w.writerow([r.source, r.file, r.sheet, r.row, pb.persons[r.person].person_id, ";".join(r.errors),
                        pb.persons[head].person_id])
            for k in r.kinds:
                we.writerow([r.source, r.file, r.sheet, r.row, k])
                kinds[k] = kinds.get(k, 0) + 1
    notes = {
        "county": cfg.county, "region": cfg.region, "seed": cfg.seed, "households": cfg.households,
        "errors": cfg.errors, "reference_date": dt.date(cfg.school_year, 9, 1).isoformat(),
        "neighbour_regions": geo.neighbours, "towns": geo.towns,
        "cut": cut_note or None,
        "filing_status_codes": {"town": geo.towns[0], "codes": FILING_STATUS_CODES},
        "filing_old_labels_town": geo.towns[2] if len(geo.towns) > 2 else None,
        "dibao_heads_only_town": geo.towns[1] if len(geo.towns) > 1 else None,
        "expected_kinds": EXPECTED_KINDS,
        "error_codes": list(ERROR_CODES),
        "expected_by_kind": dict(sorted(kinds.items())),
        "roster_stages": roster_stages,
        "place_aliases": "config/place_aliases.toml (renamed and merged villages); truth/places.csv: how each file spells each place",
    }
    (truth / "notes.json").write_text(json.dumps(notes, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return kinds


# --------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------


def generate_county(out_dir: Path, config: SynthConfig, *, overwrite: bool = False) -> SynthSummary:
    """Write a synthetic county's inbox and its truth under ``out_dir``.

    Refuses (SynthOutputExists, a SynthError and a FileExistsError) when ``out_dir/inbox`` or
    ``out_dir/truth`` already holds files, unless ``overwrite`` is true, in which case those two
    folders (and nothing else) are removed first.
    """
    cfg = config
    if cfg.households < 1:
        raise ValueError("households must be at least 1")
    if cfg.errors < 0:
        raise ValueError("errors must not be negative")
    if len(cfg.region) != 6 or not cfg.region.isdigit():
        raise ValueError("region must be 6 digits")
    out_dir = Path(out_dir)
    inbox, truth = out_dir / "inbox", out_dir / "truth"
    for d in (inbox, truth):
        if d.exists() and any(d.iterdir()):
            if not overwrite:
                raise SynthOutputExists(f"{d} is not empty (remove it, or overwrite)")
            shutil.rmtree(d)
    for sub in ("roster", "dibao", "filing"):
        (inbox / sub).mkdir(parents=True, exist_ok=True)
    truth.mkdir(parents=True, exist_ok=True)

    geo = _build_geo(cfg, _stream(cfg, "geo"))
    old_names = pick_old_names(_stream(cfg, "places"), geo.towns, geo.villages, _village_names())
    speller = PlaceSpeller(_stream(cfg, "spelling"), _rate(cfg, 0.25), _rate(cfg, 0.5), old_names)
    pb = _build_population(cfg, geo)
    _assign_systems(cfg, geo, pb)
    schools = _build_claims(cfg, geo, pb)
    # systems first: the filing writer decides the cut, which the roster's expectations need
    filing_recs, filing_files, cut_note = _write_filing(cfg, geo, pb, inbox, speller)
    dibao_recs, dibao_files = _write_dibao(cfg, geo, pb, inbox, speller)
    rw = _RosterWriter(cfg, geo, pb, inbox, speller)
    _prepare_policy(rw, out_dir, cut_note)
    rw.write_all(schools)
    _mark_missed_eligible(cfg, pb, schools, filing_recs, dibao_recs)
    recs = rw.recs + dibao_recs + filing_recs
    kinds = _write_truth(cfg, geo, pb, truth, recs, cut_note, _roster_stages(schools))
    write_places(truth / "places.csv", speller)
    write_aliases(out_dir / "config" / "place_aliases.toml", old_names)
    return SynthSummary(
        out_dir=out_dir,
        households=len(pb.households),
        persons=len(pb.persons),
        rows={"roster": len(rw.recs), "dibao": len(dibao_recs), "filing": len(filing_recs)},
        files={"roster": rw.files, "dibao": dibao_files, "filing": filing_files},
        expected=sum(kinds.values()),
        expected_by_kind=dict(sorted(kinds.items())),
    )


# --------------------------------------------------------------------------------------
# policy (issue 7): the county's subsidy standards, amounts that follow them, a few wrong;
# wrong grades; spellings of statuses; eligible children on no roster
# --------------------------------------------------------------------------------------

_HOUSEHOLD_TYPE_CODES = {"一般贫困户": "01", "低保贫困户": "02", "特困供养贫困户": "03", "低保户": "04", "五保户": "05"}
_POVERTY_SPELLINGS = {
    "已脱贫(不再享受政策)": ("已脱贫(不再享受政策)", "已脱贫（不再享受政策）", "已脱贫不再享受政策", "脱贫不享受政策"),
    "已脱贫(享受政策)": ("已脱贫(享受政策)", "已脱贫（享受政策）", "已脱贫享受政策"),
}
_DIBAO_SPELLINGS = {"在保": ("在保", "在保", "正常"), "停保": ("停保", "暂停", "已停保"), "注销": ("注销", "退保", "已注销")}


def _poverty_spelling(hh: _Household) -> str:
    opts = _POVERTY_SPELLINGS.get(hh.poverty_status, (hh.poverty_status,))
    return opts[hh.hid % len(opts)]


def _dibao_spelling(hh: _Household) -> str:
    opts = _DIBAO_SPELLINGS.get(hh.dibao_status, (hh.dibao_status,))
    return opts[hh.hid % len(opts)]


def _prepare_policy(rw: "_RosterWriter", out_dir: Path, cut_note: dict[str, Any]) -> None:
    """Write DIR/config/policy/<county>_<year>.toml from the generator's own table."""
    cfg = rw.cfg
    folder = out_dir / "config" / "policy"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{cfg.county}_{cfg.school_year}.toml"
    path.write_text(policy_toml(cfg.county, cfg.region, cfg.school_year), encoding="utf-8")
    rw.policy_rng = _stream(cfg, "policy")  # type: ignore[attr-defined]
    rw.cut_place = (cut_note.get("town"), cut_note.get("village")) if cut_note else None  # type: ignore[attr-defined]


def _in_cut_place(rw: Any, hh: _Household) -> bool:
    cut = getattr(rw, "cut_place", None)
    return bool(cut) and rw.geo.towns[hh.town] == cut[0] and hh.village == cut[1]


def _dibao_visible(hh: _Household, c: _Claim) -> bool:
    return hh.in_dibao and (not hh.heads_only or c.guardian == hh.head)


def _visible_categories(hh: _Household, dibao_visible: bool = True) -> frozenset[str]:
    """The policy categories a tool can see for the household (qualifying, not cut)."""
    cats: set[str] = set()
    if hh.in_filing and not hh.cut and hh.poverty_status != "已脱贫(不再享受政策)":
        cats.add("建档立卡")
        if hh.household_type in ("低保贫困户", "低保户"):
            cats.add("低保")
        if hh.household_type in ("特困供养贫困户", "五保户"):
            cats.add("特困供养")
    if hh.in_dibao and dibao_visible and hh.dibao_status == "在保":
        cats.add("特困供养" if hh.dibao_category == "特困供养" else "低保")
    return frozenset(cats)


def _policy_cells(rw: Any, c: _Claim, lay: _Layout, v: dict[str, Any], errs: list[str]) -> None:
    """Set the row's amount by the county's table; now and then a wrong amount or a grade far
    from the student's age, only where the row tells what the table asks (recorded in errs)."""
    rng, cfg, pb = rw.policy_rng, rw.cfg, rw.pb
    p = pb.persons[c.student]
    hh = pb.households[p.hh]
    cats = _visible_categories(hh, _dibao_visible(hh, c))
    eligible = bool(cats) and not _in_cut_place(rw, hh)
    exp = yearly_amount(c.stage, c.grade_idx + 1, c.boarding, cats or frozenset({"建档立卡"}))
    v["amount"] = exp
    cols = lay.columns
    clean_id = not any(e.startswith("id_") for e in errs)
    # a grade 3+ years from the age (小学 rows with a usable ID, where the row tells the stage)
    if (c.stage == "小学" and "grade" in cols and ("stage" in cols or "school" in cols) and clean_id
            and rng.p(_rate(cfg, 0.012))):
        age = pb.age(p.birth)
        far = [g for g in range(6) if abs(age - (6 + g)) >= 3]
        if far:
            v["grade"] = _GRADES["小学"][rng.choice(far)]
            errs.append("grade_age")
    # a wrong amount, for eligible students whose row tells everything the table asks
    tells = (("stage" in cols or ("school" in cols and "grade" in cols))
             and ("boarding" in cols or not stage_has_boarding_rule(c.stage))
             and ("grade" in cols or not stage_has_year_rule(c.stage)))
    if eligible and tells and "amount" in cols and rng.p(_rate(cfg, 0.02)):
        wrong = max(0, exp + rng.choice((-500, -250, -200, 200, 250, 500, 1000)))
        if wrong != exp:
            v["amount"] = wrong
            errs.append("amount_wrong")


def _roster_stages(schools: dict[str, _School]) -> list[str]:
    """The stages the county's rosters cover (a stage with at least one roster row)."""
    have = {c.stage for s in schools.values() for c in s.claims}
    return [st for st in _STAGE_RANK if st in have]


def _mark_missed_eligible(cfg: SynthConfig, pb: _PopBuilder, schools: dict[str, _School],
                          filing_recs: list[_Rec], dibao_recs: list[_Rec]) -> None:
    """Children of qualifying households, visible with a usable ID in a system export, of school
    age (6–15, or 3–22 when the filing export says at school), of a stage some roster covers
    (the filing's 在校生状况, else 小学/初中 by age), on no roster: missed_eligible on one of
    their system records (qualifying first, filing first)."""
    claimed = {c.student for s in schools.values() for c in s.claims}
    covered = _roster_stages(schools)
    broken = {"id_digit", "id_swap", "id_missing", "id_drop", "id_family"}
    by_person: dict[int, list[_Rec]] = {}
    for r in filing_recs + dibao_recs:
        if not (set(r.errors) & broken):
            by_person.setdefault(r.person, []).append(r)
    for k, recs in by_person.items():
        if k in claimed:
            continue
        p = pb.persons[k]
        hh = pb.households[p.hh]
        if hh.cut:
            recs = [r for r in recs if r.source != "filing"]
        qual = [r for r in recs if (r.source == "filing" and hh.poverty_status != "已脱贫(不再享受政策)")
                or (r.source == "dibao" and hh.dibao_status == "在保")]
        if not qual:
            continue
        age = pb.age(p.birth)
        at_school = p.school_status != "非在校生" and any(r.source == "filing" for r in recs)
        if at_school and 3 <= age <= 22:
            stage = p.school_status
        elif 6 <= age <= 15:
            stage = "小学" if age <= 11 else "初中"
        else:
            continue
        if stage not in covered:
            continue  # no roster covers the stage (higher education, typically): not missed
        pick = sorted(qual, key=lambda r: (r.source != "filing", r.file, r.sheet, r.row))[0]
        pick.kinds.append("missed_eligible")
