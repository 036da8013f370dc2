"""The night's steps as a second process runs them (``pipeline``'s ``aside``): on a county,
one system's matching while this process matches the other (two cores); on a prefecture,
each export's normalising and each system's matching in a process of its own, one at a
time, so that what those steps leave in the allocator dies with that process instead of
staying in the night's. What a step reports on the way is kept and sent back with its
result, since the parent's logger is not there.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from .config import MatchSettings, Settings
from .ingest import SheetTable
from .match import ROSTER_COLS, SYSTEM_COLS, SystemLinks, link_system
from .memory import compact
from .model import Model
from .normalize import normalize_source

__all__ = ["Recorded", "link_recorded", "matching_columns", "normalized"]

Recorded = tuple[pl.DataFrame, Model, dict[str, float], list[str]]


def matching_columns(roster: pl.DataFrame, system: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Only what the matcher reads of each side: what crosses to the second process."""
    return (roster.select(c for c in ROSTER_COLS if c in roster.columns),
            system.select(c for c in SYSTEM_COLS if c in system.columns))


def link_recorded(roster: pl.DataFrame, system: pl.DataFrame, system_name: str, ms: MatchSettings) -> Recorded:
    """``match.link_system``, its progress lines kept in order: (links, model, blocking figures, lines)."""
    said: list[str] = []
    got: SystemLinks = link_system(roster, system, system_name, ms, said.append)
    return got.links, got.model, dict(got.blocking), said


def normalized(tables: Sequence[SheetTable], source: str, settings: Settings,
               places: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``normalize.normalize_source``, its records in buffers of their own (``memory.compact``)."""
    recs, problems = normalize_source(tables, source, settings, places)
    return compact(recs), problems
