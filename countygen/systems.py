"""The system exports: the dibao register (Excel 97, a heads-only file, a CSV) and the filing
export per town (GB18030 or UTF-8 BOM CSV, one xlsx), as their clerks type them."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path
from typing import Any

from .config import SynthConfig, error_rate, stream
from .draws import Rng, year_month
from .ids import SYSTEM_ID_DAMAGE, damage_id
from .model import Geo, Household, Person, Rec
from .name_errors import replace_rare, typo_name
from .places import PlaceSpeller
from .population import PopBuilder
from .sheets import write_xls
from .xlsx import XlsxBook
from .vocabulary import DIBAO_HEADERS, DIBAO_HEADS_ONLY_HEADERS, DIBAO_SPELLINGS, FILING_HEADERS, HOUSEHOLD_TYPE_CODES, POVERTY_SPELLINGS, STATUS_TO_CODE

__all__ = ["in_charset", "write_dibao", "write_filing"]


def in_charset(c: str, codec: str) -> bool:
    """Whether an old system in `codec` (gb2312, gbk) could store `c`."""
    try:
        c.encode(codec)
    except UnicodeEncodeError:
        return False
    return True


class _SystemRender:
    """Typed values of system rows with the side's error rates; per-household head typing."""

    def __init__(self, cfg: SynthConfig, pb: PopBuilder, rng: Rng) -> None:
        self.cfg, self.pb, self.rng = cfg, pb, rng

    def head_cell(self, hh: Household, head_name: str, errs: list[str]) -> str:
        """The 户主姓名 cell of one member's row: the household's spelling, now and then its own typo."""
        head = self.pb.persons[hh.head]
        if self.rng.p(error_rate(self.cfg, 0.01)):
            own, k = typo_name(self.rng, head.name, head.sur_len, "system")
            if k:
                errs[:] = [e for e in errs if not e.startswith("head_name_")] + ["head_name_" + k]
                return own
        return head_name

    def name(self, p: Person, errs: list[str], prefix: str) -> str:
        rng = self.rng
        nm = p.name
        non_gbk = any(not in_charset(ch, "gbk") for ch in nm)
        if non_gbk and rng.p(error_rate(self.cfg, 0.8)):
            rare = [i for i, ch in enumerate(nm) if not in_charset(ch, "gbk")]
            i = rare[0]
            if rng.p(0.75):
                nm, k = nm[:i] + "?" + nm[i + 1:], "rare_q"
            else:
                nm, k = replace_rare(rng, "rare_common", nm, rare), "rare_common"
            if nm != p.name:
                errs.append(prefix + k)
            return nm
        if rng.p(error_rate(self.cfg, 0.02)):
            nm, k = typo_name(rng, nm, p.sur_len, "system")
            if k:
                errs.append(prefix + k)
        return nm

    def ident(self, p: Person, errs: list[str], prefix: str, family: Person | None = None) -> str | None:
        """The ID cell; now and then another family member's ID (``family``: the head's)."""
        rng = self.rng
        if family is not None and family is not p and rng.p(error_rate(self.cfg, 0.003)):
            errs.append(prefix + "family")
            return family.id18
        if rng.p(error_rate(self.cfg, 0.02)):
            v, k = damage_id(rng, p.id18, p.birth, SYSTEM_ID_DAMAGE)
            if k:
                errs.append(prefix + k)
            return v
        return p.id18


def _dibao_rows(cfg: SynthConfig, geo: Geo, pb: PopBuilder, households: list[Household],
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
                since = year_month(rng, int(since[:4]), min(int(since[:4]) + 2, cfg.school_year))
            out.append(([town, vil, hn, head_id, n, nm, idv, p.relation, hh.dibao_category, amt,
                         since, _dibao_spelling(hh)], k, errs))
    return out


_XLS_MAX_DATA = 65000


def write_dibao(cfg: SynthConfig, geo: Geo, pb: PopBuilder, inbox: Path,
                speller: PlaceSpeller) -> tuple[list[Rec], int]:
    rng = stream(cfg, "dibao")
    recs: list[Rec] = []
    files = 0
    heads_only_town, csv_town = 1, 2
    by_town = _by_town(geo, pb, "dibao")
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
    write_xls(inbox / "dibao" / fname, sheets)
    files += 1
    for nm, chunk in zip(names, chunks, strict=True):
        for j, (_, person, errs) in enumerate(chunk):
            recs.append(Rec("dibao", f"dibao/{fname}", nm, 3 + j, person, errs))
    # heads-only register for one town
    if len(geo.towns) > heads_only_town and by_town[heads_only_town]:
        town = geo.towns[heads_only_town]
        fname = f"{town}低保户主名册.xls"
        rows = _dibao_rows(cfg, geo, pb, by_town[heads_only_town], rng, True, f"dibao/{fname}", speller)
        nm = "户主名册"
        write_xls(inbox / "dibao" / fname,
                   [(nm, f"{town}城乡低保户花名册（户主）", DIBAO_HEADS_ONLY_HEADERS, [r[0] for r in rows], None)])
        files += 1
        for j, (_, person, errs) in enumerate(rows):
            recs.append(Rec("dibao", f"dibao/{fname}", nm, 3 + j, person, errs))
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
            recs.append(Rec("dibao", f"dibao/{fname}", "", 3 + j, person, errs))
    return recs, files


def _by_town(geo: Geo, pb: PopBuilder, system: str) -> list[list[Household]]:
    """The system's households per town, in export order (town, village, household number)."""
    by_town: list[list[Household]] = [[] for _ in geo.towns]
    for hh in _export_order(geo, pb):
        if hh.in_dibao if system == "dibao" else hh.in_filing:
            by_town[hh.town].append(hh)
    return by_town


def _export_order(geo: Geo, pb: PopBuilder) -> list[Household]:
    vindex = [{v: i for i, v in enumerate(vs)} for vs in geo.villages]
    return sorted(pb.households, key=lambda h: (h.town, vindex[h.town][h.village], h.hid))


def write_filing(cfg: SynthConfig, geo: Geo, pb: PopBuilder, inbox: Path,
                 speller: PlaceSpeller) -> tuple[list[Rec], int, dict[str, Any]]:
    rng = stream(cfg, "filing")
    sr = _SystemRender(cfg, pb, rng)
    recs: list[Rec] = []
    files = 0
    code_town, xlsx_town = 0, 4
    by_town = _by_town(geo, pb, "filing")
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
            status = STATUS_TO_CODE[hh.poverty_status] if t == code_town else _poverty_spelling(hh)
            htype = HOUSEHOLD_TYPE_CODES.get(hh.household_type, hh.household_type) if t == code_town else hh.household_type
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
            wb = XlsxBook(inbox / "filing" / fname, "recon-synth", dt.datetime(cfg.school_year, 9, 1))
            ws = wb.sheet("建档立卡人口")
            ws.append([f"{cfg.county}{town}建档立卡贫困人口信息表"])
            ws.merge(1, 1, 1, len(FILING_HEADERS))
            ws.append(list(FILING_HEADERS))
            for vals, _, _ in rows:
                ws.append(vals)
            wb.close()
            for j, (_, person, errs) in enumerate(rows):
                recs.append(Rec("filing", f"filing/{fname}", "建档立卡人口", 3 + j, person, errs))
        else:
            utf8 = t % 4 == 1 or t == 3
            with open(inbox / "filing" / fname, "w", encoding="utf-8-sig" if utf8 else "gb18030",
                      newline="") as fh:
                w = csv.writer(fh, lineterminator="\n" if utf8 else "\r\n")
                w.writerow(FILING_HEADERS)
                for vals, _, _ in rows:
                    w.writerow(["" if x is None else x for x in vals])
            for j, (_, person, errs) in enumerate(rows):
                recs.append(Rec("filing", f"filing/{fname}", "", 2 + j, person, errs))
        files += 1
    return recs, files, cut_note


def _poverty_spelling(hh: Household) -> str:
    opts = POVERTY_SPELLINGS.get(hh.poverty_status, (hh.poverty_status,))
    return opts[hh.hid % len(opts)]


def _dibao_spelling(hh: Household) -> str:
    opts = DIBAO_SPELLINGS.get(hh.dibao_status, (hh.dibao_status,))
    return opts[hh.hid % len(opts)]
