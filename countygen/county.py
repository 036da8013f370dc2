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

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .config import SynthConfig, SynthError, SynthOutputExists, error_rate, stream
from .ids import id_check_char
from .places import PlaceSpeller, pick_old_names, write_aliases, write_places
from .policy import write_policy
from .population import assign_systems, build_geo, build_population, village_names
from .roster import RosterWriter, build_claims
from .systems import write_dibao, write_filing
from .truth import mark_missed_eligible, roster_stages, write_truth
from .vocabulary import (
    DIBAO_HEADERS,
    DIBAO_HEADS_ONLY_HEADERS,
    ERROR_CODES,
    EXPECTED_KINDS,
    FILING_HEADERS,
    FILING_STATUS_CODES,
    ROSTER_GROUP_HEADERS,
    ROSTER_HEADER_VARIANTS,
)

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

    geo = build_geo(cfg, stream(cfg, "geo"))
    old_names = pick_old_names(stream(cfg, "places"), geo.towns, geo.villages, village_names())
    speller = PlaceSpeller(stream(cfg, "spelling"), error_rate(cfg, 0.25), error_rate(cfg, 0.5), old_names)
    pb = build_population(cfg, geo)
    assign_systems(cfg, geo, pb)
    schools = build_claims(cfg, geo, pb)
    # systems first: the filing writer decides the cut, which the roster's expectations need
    filing_recs, filing_files, cut_note = write_filing(cfg, geo, pb, inbox, speller)
    dibao_recs, dibao_files = write_dibao(cfg, geo, pb, inbox, speller)
    write_policy(out_dir, cfg.county, cfg.region, cfg.school_year)
    rw = RosterWriter(cfg, geo, pb, inbox, speller, cut_note)
    rw.write_all(schools)
    mark_missed_eligible(cfg, pb, schools, filing_recs, dibao_recs)
    recs = rw.recs + dibao_recs + filing_recs
    kinds = write_truth(cfg, geo, pb, truth, recs, cut_note, roster_stages(schools))
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
