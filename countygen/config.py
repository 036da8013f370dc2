"""What to generate (``SynthConfig``), the generator's errors, and its seeded random streams."""

from __future__ import annotations

from dataclasses import dataclass

from .draws import Rng

__all__ = ["SynthError", "SynthOutputExists", "SynthConfig", "stream", "error_rate"]


class SynthError(Exception):
    """Base of the generator's own errors (it shares nothing with the product)."""


class SynthOutputExists(SynthError, FileExistsError):
    """The output folder already holds an inbox or truth (pass overwrite=True to replace them)."""


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
    # The county's aid centre's list of higher-education students (雨露计划, 本科/大专). Off: the
    # rosters cover 学前..中职, as a county's school rosters do, and no 本科/大专 child is missed.
    university_list: bool = False


def stream(cfg: SynthConfig, name: str) -> Rng:
    return Rng(f"recon-synth:{cfg.seed}:{name}")


def error_rate(cfg: SynthConfig, base: float) -> float:
    return min(1.0, max(0.0, base * cfg.errors))
