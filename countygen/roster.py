"""School aid rosters: who is claimed where, each school's file layout, the rows as a school
types them (with their errors), amounts by the county's standards."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import SynthConfig, error_rate, stream
from .draws import Rng
from .ids import ROSTER_HEAD_ID_DAMAGE, ROSTER_ID_DAMAGE, damage_id, id_check_char
from .model import Claim, Geo, Household, Person, Rec, School
from .name_errors import typo_name
from .name_pool import RARE
from .places import PlaceSpeller
from .policy import stage_has_boarding_rule, stage_has_year_rule, yearly_amount
from .population import PopBuilder
from .xlsx import XlsxBook
from .truth import dibao_visible, eligibility_kinds, visible_categories
from .vocabulary import AID_ITEM, ENTRY_AGE, GRADES, INVALID_ID_KINDS, JUNIOR_ALT, ROSTER_COLUMNS, ROSTER_GROUP_HEADERS, ROSTER_HEADER_VARIANTS, STAGE_RANK, UNIVERSITIES

__all__ = ["build_claims", "RosterWriter"]


def _roster_id(rng: Rng, cfg: SynthConfig, numeric_prone: bool, person: Any, base: float,
               damage: tuple[tuple[str, float], ...], code: str, errs: list[str]) -> Any:
    """An ID cell as a school types it: Excel-damaged in numeric-prone files, else typos."""
    r = rng.random()
    if numeric_prone and r < error_rate(cfg, 0.07):
        kind = "number" if r < error_rate(cfg, 0.06) else "sci"
        value, k = damage_id(rng, person.id18, person.birth, ((kind, 1.0),))
    elif rng.p(error_rate(cfg, base)):
        value, k = damage_id(rng, person.id18, person.birth, damage)
    else:
        return person.id18
    if k:
        errs.append(code + k)
    return value


def _school_name_for(p: Person, hh: Household, geo: Geo, rng: Rng, cfg: SynthConfig) -> str:
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


def _choose_guardian(p: Person, hh: Household, pb: PopBuilder, rng: Rng) -> int:
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


def build_claims(cfg: SynthConfig, geo: Geo, pb: PopBuilder) -> dict[str, School]:
    rng = stream(cfg, "claims")
    schools: dict[str, School] = {}
    for t in geo.towns:
        for suffix, stages in (("中心幼儿园", ("学前",)), ("中心小学", ("小学",)), ("中学", ("初中",))):
            schools[t + suffix] = School(t + suffix, stages)
    for nm, stages in ((f"{cfg.county}第一中学", ("高中",)), (f"{cfg.county}民族中学", ("高中",)),
                       (f"{cfg.county}职业中专", ("中职",)),
                       (f"{cfg.county}学生资助管理中心", ("本科", "大专"))):
        schools[nm] = School(nm, stages)
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
            c = Claim(student=k, school=school, stage=st, grade_idx=p.grade_idx,
                       guardian=_choose_guardian(p, hh, pb, rng), boarding=boarding,
                       class_no=1 + rng.randrange(3), university=school.endswith("学生资助管理中心"))
            if c.university and not cfg.university_list:
                continue  # drawn all the same, so the rest of the county does not change
            schools.setdefault(school, School(school, (st,))).claims.append(c)  # a school away: new
    # duplicate claims: same school (a second application) or another school of the same stage
    dup_rate = error_rate(cfg, 0.006)
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
            d = Claim(student=c.student, school=target, stage=c.stage, grade_idx=c.grade_idx,
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


def _forced_features(rng: Rng, schools: list[School]) -> dict[str, dict[str, Any]]:
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


def _roster_layout(rng: Rng, school: School, cfg: SynthConfig, force: dict[str, Any]) -> _Layout:
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


def _relation_text(student: Person, guardian: Person | None, style: str) -> str:
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


def _student_no(rng: Rng, p: Person, region: str) -> str | None:
    r = rng.random()
    if r < 0.8:
        return "G" + p.id18
    if r < 0.9:
        first17 = f"{region}{p.birth:%Y%m%d}{rng.randrange(1000):03d}"
        return "J" + first17 + id_check_char(first17)
    return f"L{region}{p.birth:%Y%m%d}{rng.randrange(10000):04d}"


class RosterWriter:
    """Writes one roster per school and keeps a record of every data row."""

    def __init__(self, cfg: SynthConfig, geo: Geo, pb: PopBuilder, inbox: Path, speller: PlaceSpeller,
                 cut_note: dict[str, Any]) -> None:
        self.cfg, self.geo, self.pb, self.inbox, self.speller = cfg, geo, pb, inbox, speller
        self.file = ""
        self.rng = stream(cfg, "roster")
        self.policy_rng = stream(cfg, "policy")
        # the village cut from an export: its students are judged by export_incomplete instead
        self.cut_place = (cut_note.get("town"), cut_note.get("village")) if cut_note else None
        self.recs: list[Rec] = []
        self.files = 0

    def write_all(self, schools: dict[str, School]) -> None:
        active = [s for s in schools.values() if s.claims]
        force = _forced_features(stream(self.cfg, "roster-force"), active)
        for school in active:
            self.write_school(school, force.get(school.name, {}))

    def _grade_text(self, c: Claim, lay: _Layout) -> str:
        if c.stage == "初中" and lay.junior_alt:
            return JUNIOR_ALT[c.grade_idx]
        return GRADES[c.stage][c.grade_idx]

    def write_school(self, school: School, force: dict[str, Any]) -> None:
        rng = self.rng
        lay = _roster_layout(rng, school, self.cfg, force)
        order = STAGE_RANK
        firsts = list(school.claims)
        rng.shuffle(firsts)
        # sort by stage, grade, class; late duplicates (second applications) stay at the end
        firsts.sort(key=lambda c: (order[c.stage], c.grade_idx, c.class_no))
        seen: dict[int, None] = {}
        main: list[Claim] = []
        late: list[Claim] = []
        for c in firsts:
            if c.student in seen:
                late.append(c)
            else:
                seen[c.student] = None
                main.append(c)
        claims = main + late
        sheets: list[tuple[str, list[Claim]]]
        grades = sorted({(order[c.stage], c.grade_idx) for c in claims})
        split = len(grades) >= 2 and len(claims) >= 20 and rng.p(0.12)
        if len(grades) >= 2 and force.get("two_sheets"):
            split = True
        if split:
            cut = grades[len(grades) // 2]
            a = [c for c in claims if (order[c.stage], c.grade_idx) < cut]
            b = [c for c in claims if (order[c.stage], c.grade_idx) >= cut]

            def label(part: list[Claim]) -> str:
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
        wb = XlsxBook(self.inbox / "roster" / fname, "recon-synth", dt.datetime(self.cfg.school_year, 9, 1))
        ncol = len(lay.columns)
        fill_day = 5 + rng.randrange(20)
        for sheet_name, part in sheets:
            ws = wb.sheet(sheet_name)
            r = 0

            def put(values: list[Any]) -> int:
                nonlocal r
                r = ws.append(values)
                return r

            put([f"{school.name}{self.cfg.school_year}年秋季学期家庭经济困难学生资助名单"])
            ws.merge(r, 1, r, ncol)
            if lay.title_rows == 2:
                put([f"填报单位：{school.name}（盖章）    填报日期：{self.cfg.school_year}年9月{fill_day}日"])
                ws.merge(r, 1, r, ncol)
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
                self.recs.append(Rec("roster", rel, sheet_name, row_no, c.student, rec_errors,
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
        wb.close()
        self.files += 1

    def _header(self, ws: Any, put: Any, lay: _Layout, row: Any) -> None:
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
                    ws.merge(r, i0 + 1, r, i1 + 1)
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
                ws.merge(r, i + 1, r + 1, i + 1)
        if len(grouped) > 1:
            ws.merge(r, grouped[0] + 1, r, grouped[-1] + 1)

    def render(self, c: Claim, lay: _Layout, seq: int) -> tuple[list[Any], list[str], bool]:
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
        if rng.p(error_rate(cfg, 0.04 + extra)):
            name, k = typo_name(rng, name, p.sur_len, "roster")
            if k:
                errs.append("name_" + k)
        v["name"] = name
        # student ID
        v["id_number"] = _roster_id(rng, cfg, lay.numeric_prone, p, 0.05, ROSTER_ID_DAMAGE, "id_", errs)
        tells_grade = "grade" in cols and ("stage" in cols or "school" in cols)
        family = _family_member(pb, c, rng) if tells_grade and rng.p(error_rate(cfg, 0.004)) else None
        if family is not None and not any(e.startswith("id_") for e in errs):
            v["id_number"] = family.id18  # a brother's, a sister's or the guardian's ID on the student's row
            errs.append("id_family")
        # facts
        gender = p.gender
        if "gender" in cols and rng.p(error_rate(cfg, 0.005)):
            gender = "女" if gender == "男" else "男"
            errs.append("gender_conflict")
        v["gender"] = gender
        birth = p.birth
        if "birth_date" in cols and rng.p(error_rate(cfg, 0.006)):
            birth = _conflicting_birth(rng, birth)
            errs.append("birth_conflict")
        style = lay.date_style if rng.p(0.9) else rng.choice(("iso", "cn", "compact", "dot", "slash", "excel"))
        v["birth_date"] = _fmt_date(birth, style)
        # guardian
        if g is not None:
            gname = g.name
            if rng.p(error_rate(cfg, 0.04)):
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
        v["school"] = rng.choice(UNIVERSITIES)[0] if c.university else c.school
        v["stage"] = c.stage
        v["grade"] = self._grade_text(c, lay)
        v["class_name"] = f"{c.class_no}班"
        v["ethnicity"] = p.ethnicity
        v["student_no"] = _student_no(rng, p, cfg.region) if c.stage not in ("学前",) or rng.p(0.2) else None
        v["boarding"] = "是" if c.boarding else "否"
        v["town"], v["village"] = self.speller.spell(self.file, self.geo.towns[hh.town], hh.village, hh.hid, errs,
                                                     "town" in cols, "village" in cols)
        v["aid_item"] = AID_ITEM[c.stage] if not (c.stage == "本科" and c.grade_idx == 0) else "大学新生入学资助"
        _policy_cells(self, c, lay, v, errs)  # issue 7: amounts by the county's policy, a few wrong
        v["phone"] = hh.phone
        if family is not None and "id_family" in errs:
            shown_birth = birth if "birth_date" in cols else family.birth
            shown_gender = gender if "gender" in cols else family.gender
            if (shown_birth, shown_gender) != (family.birth, family.gender):
                facts_conflict = True  # the row's own facts contradict the ID it carries
        return [v.get(col) for col in cols], errs, facts_conflict

    def kinds(self, c: Claim, lay: _Layout, errs: list[str], facts_conflict: bool) -> list[str]:
        hh = self.pb.households[self.pb.persons[c.student].hh]
        out: list[str] = []
        if any(e in INVALID_ID_KINDS for e in errs):
            out.append("id_invalid")
        if c.duplicate:
            out.append("duplicate_claim")
        if "birth_conflict" in errs or "gender_conflict" in errs or facts_conflict:
            out.append("id_fact_conflict")
        in_dibao = dibao_visible(hh, c)
        visible = "village" in lay.columns or in_dibao
        out += eligibility_kinds(hh, visible and _in_cut_place(self, hh), in_dibao)
        if "amount_wrong" in errs:
            out.append("subsidy_mismatch")
        if "grade_age" in errs or "id_family" in errs:
            out.append("age_stage_mismatch")
        return out


def _family_member(pb: PopBuilder, c: Claim, rng: Rng) -> Person | None:
    """Another member of the student's household whose ID a clerk might copy into the row (a
    brother or sister, else the guardian), 3+ years from the usual age of the row's grade, so
    the row's grade contradicts the ID it carries (age_stage_mismatch)."""
    p = pb.persons[c.student]
    hh = pb.households[p.hh]
    usual = ENTRY_AGE[c.stage] + c.grade_idx
    far = [k for k in (*hh.members, c.guardian) if k >= 0 and k != c.student and abs(pb.age(pb.persons[k].birth) - usual) >= 3]
    kin = [k for k in far if pb.persons[k].school_status != "非在校生"]
    pool = kin if kin and rng.p(0.6) else far
    return pb.persons[rng.choice(sorted(set(pool)))] if pool else None


def _in_cut_place(rw: RosterWriter, hh: Household) -> bool:
    cut = rw.cut_place
    return bool(cut) and rw.geo.towns[hh.town] == cut[0] and hh.village == cut[1]


def _policy_cells(rw: RosterWriter, c: Claim, lay: _Layout, v: dict[str, Any], errs: list[str]) -> None:
    """Set the row's amount by the county's table; now and then a wrong amount or a grade far
    from the student's age, only where the row tells what the table asks (recorded in errs)."""
    rng, cfg, pb = rw.policy_rng, rw.cfg, rw.pb
    p = pb.persons[c.student]
    hh = pb.households[p.hh]
    cats = visible_categories(hh, dibao_visible(hh, c))
    eligible = bool(cats) and not _in_cut_place(rw, hh)
    exp = yearly_amount(c.stage, c.grade_idx + 1, c.boarding, cats or frozenset({"建档立卡"}))
    v["amount"] = exp
    cols = lay.columns
    clean_id = not any(e.startswith("id_") for e in errs)
    # a grade 3+ years from the age (小学 rows with a usable ID, where the row tells the stage)
    if (c.stage == "小学" and "grade" in cols and ("stage" in cols or "school" in cols) and clean_id
            and rng.p(error_rate(cfg, 0.012))):
        age = pb.age(p.birth)
        far = [g for g in range(6) if abs(age - (6 + g)) >= 3]
        if far:
            v["grade"] = GRADES["小学"][rng.choice(far)]
            errs.append("grade_age")
    # a wrong amount, for eligible students whose row tells everything the table asks
    tells = (("stage" in cols or ("school" in cols and "grade" in cols))
             and ("boarding" in cols or not stage_has_boarding_rule(c.stage))
             and ("grade" in cols or not stage_has_year_rule(c.stage)))
    if eligible and tells and "amount" in cols and rng.p(error_rate(cfg, 0.02)):
        wrong = max(0, exp + rng.choice((-500, -250, -200, 200, 250, 500, 1000)))
        if wrong != exp:
            v["amount"] = wrong
            errs.append("amount_wrong")
