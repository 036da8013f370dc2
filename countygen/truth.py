"""The truth beside the inbox, and what a perfect tool reports about eligibility: persons,
households, records, expected kinds, missed eligible children."""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path
from typing import Any

from .config import SynthConfig
from .model import Claim, Geo, Household, Rec, School
from .population import PopBuilder
from .vocabulary import ERROR_CODES, EXPECTED_KINDS, FILING_STATUS_CODES, STAGE_RANK

__all__ = [
    "eligibility_kinds", "dibao_visible", "visible_categories", "write_truth", "roster_stages",
    "mark_missed_eligible",
]


def eligibility_kinds(hh: Household, cut_place: bool | None = None, dibao_seen: bool | None = None) -> list[str]:
    """Kinds a perfect tool reports about eligibility. ``cut_place``: the household lives in the
    village cut from an export and the row shows it (the roster's village column, or a dibao
    record): a student found qualifying nowhere there gets export_incomplete (instead of
    not_found), whether or not the household itself was in the export that was cut.
    ``dibao_seen``: the student can be found in the dibao export (a heads-only export shows
    only the head: the roster must name the head as guardian)."""
    if cut_place is None:
        cut_place = hh.cut
    in_dibao = hh.in_dibao if dibao_seen is None else dibao_seen
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


def dibao_visible(hh: Household, c: Claim) -> bool:
    return hh.in_dibao and (not hh.heads_only or c.guardian == hh.head)


def visible_categories(hh: Household, dibao_seen: bool = True) -> frozenset[str]:
    """The policy categories a tool can see for the household (qualifying, not cut)."""
    cats: set[str] = set()
    if hh.in_filing and not hh.cut and hh.poverty_status != "已脱贫(不再享受政策)":
        cats.add("建档立卡")
        if hh.household_type in ("低保贫困户", "低保户"):
            cats.add("低保")
        if hh.household_type in ("特困供养贫困户", "五保户"):
            cats.add("特困供养")
    if hh.in_dibao and dibao_seen and hh.dibao_status == "在保":
        cats.add("特困供养" if hh.dibao_category == "特困供养" else "低保")
    return frozenset(cats)


def write_truth(cfg: SynthConfig, geo: Geo, pb: PopBuilder, truth: Path, recs: list[Rec],
                cut_note: dict[str, Any], stages: list[str]) -> dict[str, int]:
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
        "roster_stages": stages,
        "place_aliases": "config/place_aliases.toml (renamed and merged villages); truth/places.csv: how each file spells each place",
    }
    (truth / "notes.json").write_text(json.dumps(notes, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return kinds


def roster_stages(schools: dict[str, School]) -> list[str]:
    """The stages the county's rosters cover (a stage with at least one roster row)."""
    have = {c.stage for s in schools.values() for c in s.claims}
    return [st for st in STAGE_RANK if st in have]


def mark_missed_eligible(cfg: SynthConfig, pb: PopBuilder, schools: dict[str, School],
                         filing_recs: list[Rec], dibao_recs: list[Rec]) -> None:
    """Children of qualifying households, visible with a usable ID in a system export, of school
    age (6–15, or 3–22 when the filing export says at school), of a stage some roster covers
    (the filing's 在校生状况, else 小学/初中 by age), on no roster: missed_eligible on one of
    their system records (qualifying first, filing first)."""
    claimed = {c.student for s in schools.values() for c in s.claims}
    covered = roster_stages(schools)
    broken = {"id_digit", "id_swap", "id_missing", "id_drop", "id_family"}
    by_person: dict[int, list[Rec]] = {}
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
