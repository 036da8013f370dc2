"""The people, households, roster claims, schools and file records a county is made of."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

__all__ = ["Person", "Household", "Claim", "Rec", "Geo", "School"]


@dataclass(slots=True)
class Person:
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
class Household:
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
class Claim:
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
class Rec:
    source: str
    file: str
    sheet: str
    row: int
    person: int
    errors: list[str]
    kinds: list[str] = field(default_factory=list)
    head: int = -1  # roster: the guardian named on the row; systems: the household head


@dataclass(slots=True)
class Geo:
    towns: list[str]
    villages: list[list[str]]
    town_weights: list[float]
    neighbours: list[str]


@dataclass(slots=True)
class School:
    name: str
    stages: tuple[str, ...]
    claims: list[Claim] = field(default_factory=list)
