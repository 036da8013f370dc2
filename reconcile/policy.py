"""Policy as data: subsidy standards per county and school year, and the facts they need.

Pure: parsing and validating a policy file's *content* (a dict from TOML), reading a roster
row's stage / year of study / boarding from its text, the expected yearly amount for a set of
facts, and the age a stage and grade allow. No file, no clock: ``reconcile.config`` reads the
files, the flow passes the date.

A policy file (``reconcile/config/policy/*.toml`` or ``--config DIR/policy/*.toml``)::

    county = "花垣县"            # as the filing export's 县 column spells it
    regions = ["433124"]        # the county's ID region codes
    school_year = 2025          # the school year starting in this autumn
    terms_per_year = 2
    in_province = ["湖南", "吉首"]  # words in a school's name meaning "in the province"

    [bases]                     # named amounts other standards refer to
    upper_boarding_primary = 1000

    [[standard]]
    id = "boarding_primary"     # unique; named in subsidy_mismatch messages
    label = "义务教育寄宿生生活补助"
    component = "living"        # standards of one component exclude each other (first
                                # that applies wins); components add up
    stage = ["小学"]            # required: 学前 小学 初中 高中 中职 本科 大专
    boarding = true             # optional conditions: boarding, category (any of
    category = ["建档立卡"]       # 建档立卡 低保 特困供养), year (of study, 1-based),
    year = [1, 2]               # in_province (true/false)
    amount = { base = "upper_boarding_primary", plus = 500 }   # or a number
    per = "year"                # year | term | once (a one-off grant, e.g. on entry)
    waiver = false              # true: a tuition waiver, not cash (amount optional)

Amounts on rosters are per year unless the row says 学期 (then per term).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

__all__ = [
    "STAGES",
    "CATEGORIES",
    "Standard",
    "Policy",
    "Facts",
    "Expected",
    "parse_policy",
    "choose_policy",
    "school_year_of",
    "row_facts",
    "expected_amount",
    "age_window_fits",
]

STAGES: tuple[str, ...] = ("学前", "小学", "初中", "高中", "中职", "本科", "大专")
CATEGORIES: tuple[str, ...] = ("建档立卡", "低保", "特困供养")
PERS = ("year", "term", "once")
# Years of study per stage (for the age window when the grade is unknown).
STAGE_YEARS: dict[str, int] = {"学前": 3, "小学": 6, "初中": 3, "高中": 3, "中职": 3, "本科": 5, "大专": 3}


class PolicyError(ValueError):
    """A policy file's content is wrong; the message names the key."""


@dataclass(frozen=True)
class Standard:
    id: str
    label: str
    component: str
    stages: frozenset[str]
    amount: float
    amount_text: str  # how the file says it, e.g. "upper_boarding_primary(1000) + 500"
    per: str = "year"
    waiver: bool = False
    categories: frozenset[str] | None = None
    boarding: bool | None = None
    years: frozenset[int] | None = None
    in_province: bool | None = None


@dataclass(frozen=True)
class Policy:
    county: str
    regions: tuple[str, ...]
    school_year: int
    standards: tuple[Standard, ...]
    terms_per_year: int = 2
    in_province_words: tuple[str, ...] = ()
    source: str = ""  # the file it came from (name only)

    @property
    def title(self) -> str:
        return f"{self.county}{self.school_year}学年资助标准"


@dataclass(frozen=True)
class Facts:
    """What a roster row says about the student, as far as it can be read."""

    stages: frozenset[str] = frozenset()  # possible stages (empty: unknown)
    year: int | None = None  # year of study, 1-based
    boarding: bool | None = None
    categories: frozenset[str] = frozenset()
    in_province: bool | None = None


@dataclass(frozen=True)
class Expected:
    amount: float  # yearly cash
    rules: tuple[str, ...]  # ids of the standards that gave it (waivers included)
    text: str  # Chinese: which rules, with amounts


# --------------------------------------------------------------------------- parsing


def _list(raw: Any, where: str, kind: type) -> list[Any]:
    items = raw if isinstance(raw, list) else [raw]
    for x in items:
        if not isinstance(x, kind) or isinstance(x, bool) and kind is not bool:
            raise PolicyError(f"{where}: expected {kind.__name__} values, got {x!r}")
    return items


def _amount(raw: Any, bases: Mapping[str, float], where: str) -> tuple[float, str]:
    if isinstance(raw, bool):
        raise PolicyError(f"{where}.amount: not a number: {raw!r}")
    if isinstance(raw, (int, float)):
        if raw < 0:
            raise PolicyError(f"{where}.amount: negative")
        return float(raw), f"{raw:g}"
    if isinstance(raw, Mapping):
        unknown = set(raw) - {"base", "plus", "times"}
        if unknown:
            raise PolicyError(f"{where}.amount: unknown keys {sorted(unknown)}")
        base = raw.get("base")
        if base not in bases:
            raise PolicyError(f"{where}.amount.base: {base!r} is not in [bases]")
        plus, times = raw.get("plus", 0), raw.get("times", 1)
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (plus, times)):
            raise PolicyError(f"{where}.amount: plus/times must be numbers")
        value = bases[base] * times + plus
        text = f"{base}({bases[base]:g})" + (f" × {times:g}" if times != 1 else "") + (f" + {plus:g}" if plus else "")
        return float(value), text
    raise PolicyError(f"{where}.amount: a number or {{ base = ..., plus = ... }}, got {raw!r}")


_STANDARD_KEYS = {"id", "label", "component", "stage", "amount", "per", "waiver", "category", "boarding", "year", "in_province"}


def parse_policy(raw: Mapping[str, Any], source: str = "") -> Policy:
    """Validate a policy file's content; PolicyError names the key that is wrong."""
    where = source or "policy"
    try:
        county = raw["county"]
        school_year = raw["school_year"]
    except KeyError as exc:
        raise PolicyError(f"{where}: missing key {exc.args[0]!r}") from None
    if not isinstance(county, str) or not county.strip():
        raise PolicyError(f"{where}: county must be a name")
    if not isinstance(school_year, int) or isinstance(school_year, bool) or not 2000 <= school_year <= 2100:
        raise PolicyError(f"{where}: school_year must be a year such as 2025")
    regions = _list(raw.get("regions", []), f"{where}: regions", str)
    if any(not (len(r) == 6 and r.isdigit()) for r in regions):
        raise PolicyError(f"{where}: regions must be 6-digit codes")
    terms = raw.get("terms_per_year", 2)
    if not isinstance(terms, int) or isinstance(terms, bool) or terms < 1:
        raise PolicyError(f"{where}: terms_per_year must be a positive integer")
    words = _list(raw.get("in_province", []), f"{where}: in_province", str)
    bases_raw = raw.get("bases", {})
    if not isinstance(bases_raw, Mapping):
        raise PolicyError(f"{where}: [bases] must be a table of numbers")
    bases: dict[str, float] = {}
    for k, v in bases_raw.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise PolicyError(f"{where}: bases.{k} must be a number")
        bases[k] = float(v)
    items = raw.get("standard")
    if not isinstance(items, list) or not items:
        raise PolicyError(f"{where}: needs at least one [[standard]]")
    unknown_top = set(raw) - {"county", "regions", "school_year", "terms_per_year", "in_province", "bases", "standard"}
    if unknown_top:
        raise PolicyError(f"{where}: unknown keys {sorted(unknown_top)}")
    standards: list[Standard] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise PolicyError(f"{where}: standard[{i}] must be a table")
        sid = item.get("id")
        at = f"{where}: standard[{i}]" + (f" ({sid})" if sid else "")
        if not isinstance(sid, str) or not sid:
            raise PolicyError(f"{at}: missing key 'id'")
        if sid in seen:
            raise PolicyError(f"{at}: id {sid!r} used twice")
        seen.add(sid)
        unknown = set(item) - _STANDARD_KEYS
        if unknown:
            raise PolicyError(f"{at}: unknown keys {sorted(unknown)}")
        if "stage" not in item:
            raise PolicyError(f"{at}: missing key 'stage'")
        stages = _list(item["stage"], f"{at}.stage", str)
        bad = [s for s in stages if s not in STAGES]
        if bad:
            raise PolicyError(f"{at}.stage: unknown stages {bad} (use {'/'.join(STAGES)})")
        waiver = item.get("waiver", False)
        if not isinstance(waiver, bool):
            raise PolicyError(f"{at}.waiver must be true or false")
        if "amount" in item:
            amount, amount_text = _amount(item["amount"], bases, at)
        elif waiver:
            amount, amount_text = 0.0, "免"
        else:
            raise PolicyError(f"{at}: missing key 'amount'")
        per = item.get("per", "year")
        if per not in PERS:
            raise PolicyError(f"{at}.per must be one of {PERS}")
        cats = None
        if "category" in item:
            cats = _list(item["category"], f"{at}.category", str)
            badc = [c for c in cats if c not in CATEGORIES]
            if badc:
                raise PolicyError(f"{at}.category: unknown categories {badc} (use {'/'.join(CATEGORIES)})")
        years = None
        if "year" in item:
            years = _list(item["year"], f"{at}.year", int)
            if any(y < 1 for y in years):
                raise PolicyError(f"{at}.year: years of study start at 1")
        for key in ("boarding", "in_province"):
            if key in item and not isinstance(item[key], bool):
                raise PolicyError(f"{at}.{key} must be true or false")
        if "in_province" in item and not words:
            raise PolicyError(f"{at}.in_province needs the top-level in_province word list")
        label = item.get("label", sid)
        component = item.get("component", "grant")
        if not isinstance(label, str) or not isinstance(component, str):
            raise PolicyError(f"{at}: label and component must be text")
        standards.append(Standard(
            id=sid, label=label, component=component, stages=frozenset(stages), amount=amount,
            amount_text=amount_text, per=per, waiver=waiver,
            categories=frozenset(cats) if cats is not None else None,
            boarding=item.get("boarding"), years=frozenset(years) if years is not None else None,
            in_province=item.get("in_province"),
        ))
    return Policy(county=county.strip(), regions=tuple(regions), school_year=school_year,
                  standards=tuple(standards), terms_per_year=terms, in_province_words=tuple(words), source=source)


def school_year_of(as_of: Any) -> int:
    """The school year a date falls in: autumn term onwards belongs to that year."""
    return as_of.year if as_of.month >= 9 else as_of.year - 1


def choose_policy(policies: Iterable[Policy], *, county: str | None = None, region: str | None = None,
                  school_year: int | None = None) -> Policy | None:
    """The county's policy for the school year (the latest not after it; else the earliest)."""
    mine = [p for p in policies if (county and p.county == county) or (region and region in p.regions)]
    if county and any(p.county == county for p in mine):
        mine = [p for p in mine if p.county == county]
    if not mine:
        return None
    mine.sort(key=lambda p: p.school_year)
    if school_year is None:
        return mine[-1]
    before = [p for p in mine if p.school_year <= school_year]
    return before[-1] if before else mine[0]


# --------------------------------------------------------------------------- facts from text

_NUM = {"一": 1, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9,
        "1": 1, "2": 2, "3": 3, "4": 4, "5": 5, "6": 6, "7": 7, "8": 8, "9": 9}
_STAGE_WORDS: dict[str, str] = {
    "学前": "学前", "学前教育": "学前", "幼儿园": "学前", "小学": "小学", "初中": "初中", "初级中学": "初中",
    "高中": "高中", "普通高中": "高中", "普高": "高中", "中职": "中职", "中等职业教育": "中职", "中专": "中职",
    "职高": "中职", "本科": "本科", "大学本科": "本科", "大专": "大专", "专科": "大专", "高职": "大专",
}


def stage_of_text(text: str | None, extra: Mapping[str, str] | None = None) -> str | None:
    if not text:
        return None
    t = re.sub(r"\s+", "", text)
    words = {**_STAGE_WORDS, **(extra or {})}
    return words.get(t)


def grade_of_text(text: str | None) -> tuple[frozenset[str], int | None]:
    """(possible stages, year of study) from a grade cell such as 三年级, 初二, 高一, 大班, 大一."""
    if not text:
        return frozenset(), None
    t = re.sub(r"\s+", "", text)
    kg = {"小班": 1, "中班": 2, "大班": 3, "学前班": 3}
    if t in kg:
        return frozenset({"学前"}), kg[t]
    m = re.match(r"^(初|高|大)([一二三四五1-5])$", t) or re.match(r"^(初|高)中?([一二三1-3])年级$", t)
    if m:
        n = _NUM[m.group(2)]
        return ({"初": frozenset({"初中"}), "高": frozenset({"高中"}),
                 "大": frozenset({"本科"}) if n >= 4 else frozenset({"本科", "大专"})}[m.group(1)], n)
    m = re.match(r"^大学([一二三四五1-5])年级$", t)
    if m:
        n = _NUM[m.group(1)]
        return (frozenset({"本科"}) if n >= 4 else frozenset({"本科", "大专"})), n
    m = re.match(r"^([一二三四五六七八九1-9])年级$", t)
    if m:
        n = _NUM[m.group(1)]
        if n >= 7:
            return frozenset({"初中"}), n - 6
        return (frozenset({"小学", "中职"}) if n <= 3 else frozenset({"小学"})), n
    return frozenset(), None


def stages_of_school(name: str | None) -> frozenset[str]:
    if not name:
        return frozenset()
    if "幼儿园" in name:
        return frozenset({"学前"})
    if "小学" in name:
        return frozenset({"小学"})
    if name.endswith(("大学", "学院")):
        return frozenset({"本科", "大专"})
    if any(w in name for w in ("职业", "职中", "中专", "职校")):
        return frozenset({"中职"})
    if any(w in name for w in ("一中", "二中", "三中", "高级中学", "民族中学")):
        return frozenset({"高中"})
    if name.endswith("中学"):
        return frozenset({"初中", "高中"})
    return frozenset()


def boarding_of_text(text: str | None) -> bool | None:
    if not text:
        return None
    t = re.sub(r"\s+", "", text)
    if t in ("是", "寄宿", "寄宿生", "住校", "Y", "y", "1", "√"):
        return True
    if t in ("否", "走读", "走读生", "非寄宿", "N", "n", "0"):
        return False
    return None


def row_facts(stage: str | None, grade: str | None, school: str | None, boarding: str | None,
              policy: Policy | None = None, stage_words: Mapping[str, str] | None = None) -> Facts:
    """Stage, year of study, boarding and in/out of province as far as a roster row tells.

    Stage sources narrow each other in order (stage column, grade, school name); a source
    that contradicts the narrower set is ignored.
    """
    cand = frozenset(STAGES)
    by_col = stage_of_text(stage, stage_words)
    g_stages, year = grade_of_text(grade)
    known = False
    for src in (frozenset({by_col}) if by_col else frozenset(), g_stages, stages_of_school(school)):
        if src and cand & src:
            cand, known = cand & src, True
    if by_col == "初中" and year is not None and year >= 7:
        year -= 6
    in_prov = None
    if policy is not None and policy.in_province_words and school:
        in_prov = any(w in school for w in policy.in_province_words)
    return Facts(stages=cand if known else frozenset(), year=year, boarding=boarding_of_text(boarding), in_province=in_prov)


# --------------------------------------------------------------------------- evaluation


def _cond(rule_values: Any, fact: Any) -> bool | None:
    if rule_values is None:
        return True
    if fact is None:
        return None
    if isinstance(rule_values, frozenset):
        return fact in rule_values
    return rule_values == fact


def _applies(s: Standard, f: Facts) -> bool | None:
    results: list[bool | None] = []
    if not f.stages:
        results.append(None)
    elif f.stages <= s.stages:
        results.append(True)
    elif not (f.stages & s.stages):
        return False
    else:
        results.append(None)
    if s.categories is not None:
        results.append(bool(f.categories & s.categories) if f.categories else False)
    results.append(_cond(s.boarding, f.boarding))
    results.append(_cond(s.years, f.year))
    results.append(_cond(s.in_province, f.in_province))
    if False in results:
        return False
    if None in results:
        return None
    return True


def expected_amount(policy: Policy, f: Facts) -> Expected | None:
    """The yearly cash the policy gives for these facts; None when the row can't tell
    (stage unknown, a condition the row doesn't say) or the policy says nothing of the stage."""
    if not f.stages or not any(f.stages & s.stages for s in policy.standards):
        return None
    chosen: dict[str, Standard] = {}
    decided: set[str] = set()
    for s in policy.standards:
        if s.component in decided:
            continue
        ok = _applies(s, f)
        if ok is None:
            return None
        if ok:
            chosen[s.component] = s
            decided.add(s.component)
    total = 0.0
    parts: list[str] = []
    for s in chosen.values():
        if s.waiver:
            parts.append(f"「{s.label}」")
            continue
        yearly = s.amount * (policy.terms_per_year if s.per == "term" else 1)
        total += yearly
        unit = {"year": "元/年", "term": "元/学期", "once": "元（一次性）"}[s.per]
        parts.append(f"「{s.label}」{s.amount:g} {unit}")  # no ids or base names: a clerk reads it
    text = "；".join(parts) if parts else "政策中没有适用的标准（应为 0）"
    return Expected(total, tuple(s.id for s in chosen.values()), text)


def age_window_fits(age: int, stages: frozenset[str], year: int | None, entry_age: Mapping[str, int],
                    early: int, late: int) -> bool | None:
    """Does an age fit any of the possible stages and the year of study? None: can't tell."""
    usable = [s for s in stages if s in entry_age]
    if not usable:
        return None
    for s in usable:
        if year is not None:
            lo, hi = entry_age[s] + year - 1 - early, entry_age[s] + year - 1 + late
        else:
            lo, hi = entry_age[s] - early, entry_age[s] + STAGE_YEARS.get(s, 3) - 1 + late
        if lo <= age <= hi:
            return True
    return False
