"""One system's matching as a second process runs it while this one matches the other
(``pipeline.link_systems``' ``aside``, a county's night on two cores). What it reports on the
way is kept and sent back with the links, since the parent's logger is not there.

Imports only the matcher, so that the second process is ready in about a second.
"""

from __future__ import annotations

import polars as pl

from .config import MatchSettings
from .match import ROSTER_COLS, SYSTEM_COLS, SystemLinks, link_system
from .model import Model

__all__ = ["Recorded", "link_recorded", "matching_columns"]

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

