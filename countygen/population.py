"""Geography (towns, villages) and the population: households, their members and IDs, and
which system each household is in, with what status."""

from __future__ import annotations

import datetime as dt

from .config import SynthConfig, stream
from .draws import Rng, year_month
from .ids import id_check_char
from .model import Geo, Household, Person
from .name_pool import FEMALE, MALE, NEUTRAL, RARE, SURNAMES, UY_FEMALE, UY_MALE

__all__ = ["village_names", "build_geo", "PopBuilder", "build_population", "assign_systems"]


_TOWNS = (
    "卫民镇", "结补镇", "龙茶乡", "花垣镇", "龙潭镇", "边城镇", "双龙镇", "石栏镇", "吉卫镇",
    "麻栗场镇", "雅酉镇", "民乐镇", "长乐乡", "补抽乡", "道二乡", "董马库乡", "猫儿乡", "排碧乡",
    "团结镇", "窝勺乡", "排料乡", "两河乡", "大龙乡", "茶洞镇", "排吾乡", "金龙乡", "寨阳乡",
    "水田乡", "高岩乡", "岩坪乡", "白岩乡", "清水乡", "麻阳镇", "腊尔镇", "落潮井乡", "阳孟乡",
    "禾库镇", "山江镇", "都里乡", "木江坪镇",
)


_V1 = "坝田岭寨平沙北南新上下大和龙石马水高黄金白青双桥东西中老长花茶竹杉枫岩"


_V2 = "溪坪冲岩湾坝塘寨坡垭坳桥湖山口"


def _neighbours(region: str) -> list[str]:
    if region == "433124":
        return ["433122", "433123", "433125", "433126", "433101"]
    out = [region[:4] + s for s in ("01", "21", "22", "23", "25", "26", "27") if region[:4] + s != region]
    return out[:5]


def village_names() -> list[str]:
    return [a + b + "村" for a in _V1 for b in _V2 if a != b]


def build_geo(cfg: SynthConfig, rng: Rng) -> Geo:
    names = cfg.towns or _TOWNS
    n_towns = max(min(5, len(names)), min(len(names), round(cfg.households ** 0.5 / 6)))
    towns = list(names[:n_towns])
    per_town = cfg.households / n_towns
    n_vill = max(2, min(25, round(per_town / 60)))
    villages: list[list[str]] = []
    combos = village_names()
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
    return Geo(towns, villages, weights, _neighbours(cfg.region))


class PopBuilder:
    def __init__(self, cfg: SynthConfig, geo: Geo, rng: Rng) -> None:
        self.cfg = cfg
        self.geo = geo
        self.rng = rng
        self.ref = dt.date(cfg.school_year, 9, 1)
        self.ref_ord = self.ref.toordinal()
        self.persons: list[Person] = []
        self.households: list[Household] = []
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
        p = Person(
            pid=len(self.persons) + 1, hh=hh, name=name, sur_len=sur_len, gender=gender, birth=b,
            id18=self.make_id(self.region(p_away), b, gender), relation=relation if listed else "",
            listed=listed, ethnicity=ethnicity,
        )
        if kid:
            self.school(p)
        self.persons.append(p)
        return p.pid - 1

    def school(self, p: Person) -> None:
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
        self.households.append(Household(hid=hid, town=town, village=village, head=members[0],
                                          members=members, others=others, kind=kind, phone=phone))


def build_population(cfg: SynthConfig, geo: Geo) -> PopBuilder:
    rng = stream(cfg, "population")
    pb = PopBuilder(cfg, geo, rng)
    town_pairs = [(i, w) for i, w in enumerate(geo.town_weights)]
    vill_w = [[(v, 0.5 + rng.random()) for v in vs] for vs in geo.villages]
    for _ in range(cfg.households):
        t = rng.pick(town_pairs)
        pb.household(t, rng.pick(vill_w[t]))
    # export order: by town, village (in geo order), household number
    return pb


def assign_systems(cfg: SynthConfig, geo: Geo, pb: PopBuilder) -> None:
    rng = stream(cfg, "systems")
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
            h.dibao_since = year_month(rng, 2012, cfg.school_year)
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
