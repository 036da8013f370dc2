"""ID numbers (GB 11643): the check character, and the ways a clerk or Excel damages an ID."""

from __future__ import annotations

import datetime as dt
from typing import Any

from .draws import Rng

__all__ = ["id_check_char", "damage_id", "ROSTER_ID_DAMAGE", "ROSTER_HEAD_ID_DAMAGE", "SYSTEM_ID_DAMAGE"]

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def id_check_char(first17: str) -> str:
    """The GB 11643 check character of the first 17 digits."""
    total = sum(int(c) * w for c, w in zip(first17, _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11]


_FULLWIDTH = str.maketrans("0123456789X", "０１２３４５６７８９Ｘ")


def _sci_text(id18: str) -> str:
    mant, exp = f"{int(id18):.5E}".split("E")
    if "." in mant:
        mant = mant.rstrip("0").rstrip(".")
    return f"{mant}E{exp}"


def damage_id(rng: Rng, id18: str, birth: dt.date,
               weights: tuple[tuple[str, float], ...]) -> tuple[Any, str]:
    """Damage an ID; returns (cell value: str | float | None, kind)."""
    applicable: list[tuple[str, float]] = []
    digits_only = id18[-1] != "X"
    for kind, w in weights:
        if kind == "lower_x" and id18[-1] != "X":
            continue
        if kind in ("number", "sci") and not digits_only:
            continue
        if kind == "legacy15" and not (1900 <= birth.year <= 1999):
            continue
        applicable.append((kind, w))
    if not applicable:
        return id18, ""
    kind = rng.pick(applicable)
    if kind == "digit":
        i = rng.randrange(17)
        d = rng.choice([c for c in "0123456789" if c != id18[i]])
        return id18[:i] + d + id18[i + 1:], kind
    if kind == "swap":
        spots = [i for i in range(16) if id18[i] != id18[i + 1]]
        i = rng.choice(spots)
        return id18[:i] + id18[i + 1] + id18[i] + id18[i + 2:], kind
    if kind == "lower_x":
        return id18[:-1] + "x", kind
    if kind == "fullwidth":
        return id18.translate(_FULLWIDTH), kind
    if kind == "space":
        if rng.p(0.5):
            return f"{id18[:6]} {id18[6:14]} {id18[14:]}", kind
        return f"{id18[:6]} {id18[6:]}", kind
    if kind == "apostrophe":
        return "'" + id18, kind
    if kind == "legacy15":
        return id18[:6] + id18[8:17], kind
    if kind == "number":
        # Excel keeps 15 significant digits: typing the ID as a number zeroes the last three
        return float(int(id18[:15]) * 1000), kind
    if kind == "sci":
        return _sci_text(id18), kind
    if kind == "missing":
        return None, kind
    if kind == "drop":
        i = rng.randrange(18)
        return id18[:i] + id18[i + 1:], kind
    raise AssertionError(kind)


ROSTER_ID_DAMAGE = (("digit", 22.0), ("swap", 14.0), ("lower_x", 30.0), ("fullwidth", 6.0),
                     ("space", 12.0), ("apostrophe", 10.0), ("missing", 8.0), ("drop", 6.0))
ROSTER_HEAD_ID_DAMAGE = ROSTER_ID_DAMAGE + (("legacy15", 25.0),)
SYSTEM_ID_DAMAGE = (("digit", 30.0), ("swap", 20.0), ("lower_x", 40.0), ("space", 8.0),
                     ("legacy15", 25.0), ("missing", 6.0), ("drop", 6.0))
