"""Places as each export spells them: 坝北村 / 坝北 / 坝北村委会 / 坝北社区, 茶洞镇 / 茶峒镇, and
villages renamed or merged that an older export still names by their old name.

Every export file picks its own spelling of each place (``PlaceSpeller.spell``); the truth
records which (``truth/places.csv``), and the renames and mergers go to the county's alias file
(``DIR/config/place_aliases.toml``: ``[town]`` and ``[village]`` tables mapping a variant to its
canonical name). Suffix and look-alike variants are not in the alias file: the product
normalises those itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .draws import Rng

__all__ = ["PLACE_KINDS", "OldName", "PlaceSpeller", "pick_old_names", "write_aliases", "write_places"]

PLACE_KINDS: tuple[str, ...] = (
    "town_suffix",      # 镇/乡 left off (花垣镇 -> 花垣)
    "town_lookalike",   # a look-alike or homophone character (茶洞镇 -> 茶峒镇)
    "village_suffix",   # 村 -> "", 村委会, 社区; 社区 -> 居委会, ""
    "village_alias",    # the village's name before it was renamed or merged
)

# Characters of town names that exports spell with a look-alike or homophone character.
_TOWN_LOOKALIKE: dict[str, str] = {
    "洞": "峒", "峒": "洞", "栏": "拦", "垣": "桓", "腊": "蜡", "窝": "涡", "寨": "砦", "潮": "朝",
    "猫": "茅", "碧": "壁", "酉": "西", "补": "卜", "禾": "和",
}
_TOWN_SUFFIXES = ("街道", "镇", "乡")


@dataclass(frozen=True)
class OldName:
    """A village's former name; ``merged``: only the households of the former village had it."""

    name: str
    merged: bool


def pick_old_names(rng: Rng, towns: list[str], villages: list[list[str]], unused: list[str]) -> dict[tuple[str, str], OldName]:
    """Renamed and merged villages: about one town in three, at least one in the county."""
    taken = {v for vs in villages for v in vs}
    pool = [v for v in unused if v not in taken and v[:-1] not in {t[:-1] for t in taken}]
    out: dict[tuple[str, str], OldName] = {}
    towns_with = [i for i, vs in enumerate(villages) if len(vs) >= 2]
    for i in towns_with:
        if (rng.p(0.35) or (i == towns_with[-1] and not out)) and pool:
            v = rng.choice([x for x in villages[i] if x.endswith("村")] or villages[i])
            old = pool.pop(rng.randrange(len(pool)))
            out[(towns[i], v)] = OldName(old, merged=rng.p(0.5))
    return out


def _strip_town(t: str) -> str:
    for s in _TOWN_SUFFIXES:
        if t.endswith(s) and len(t) > len(s) + 1:
            return t[: -len(s)]
    return t


def _village_variants(v: str) -> tuple[str, ...]:
    if v.endswith("社区"):
        return (v[:-2] + "居委会", v[:-2], v + "居委会")
    if v.endswith("村"):
        return (v[:-1], v + "委会", v[:-1] + "社区")
    return ()


@dataclass
class PlaceSpeller:
    """One spelling per (file, place); ``rate``: how often a file spells a place its own way."""

    rng: Rng
    rate: float
    alias_rate: float
    old_names: dict[tuple[str, str], OldName]
    _town: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    _village: dict[tuple[str, str, str], tuple[str, str]] = field(default_factory=dict)
    _alias: dict[tuple[str, str, str], bool] = field(default_factory=dict)
    used: dict[tuple[str, str, str, str, str], list[str]] = field(default_factory=dict)

    def town(self, file: str, town: str) -> tuple[str, str]:
        key = (file, town)
        if key not in self._town:
            spelled, kind = town, ""
            if self.rng.p(self.rate):
                look = [i for i, c in enumerate(town[:-1]) if c in _TOWN_LOOKALIKE]
                if look and self.rng.p(0.5):
                    i = self.rng.choice(look)
                    spelled, kind = town[:i] + _TOWN_LOOKALIKE[town[i]] + town[i + 1:], "town_lookalike"
                elif _strip_town(town) != town:
                    spelled, kind = _strip_town(town), "town_suffix"
            self._town[key] = (spelled, kind)
        return self._town[key]

    def village(self, file: str, town: str, village: str, hid: int) -> tuple[str, str]:
        old = self.old_names.get((town, village))
        akey = (file, town, village)
        if old is not None:
            if akey not in self._alias:
                self._alias[akey] = self.rng.p(self.alias_rate)
            if self._alias[akey] and (not old.merged or hid % 3 == 0):
                return old.name, "village_alias"
        if akey not in self._village:
            spelled, kind = village, ""
            variants = _village_variants(village)
            if variants and self.rng.p(self.rate):
                spelled, kind = self.rng.choice(variants), "village_suffix"
            self._village[akey] = (spelled, kind)
        return self._village[akey]

    def spell(self, file: str, town: str, village: str, hid: int, errs: list[str] | None = None,
              show_town: bool = True, show_village: bool = True) -> tuple[str, str]:
        """(town, village) as ``file`` writes them; the classes used go to ``errs`` (cells shown only)."""
        t, tk = self.town(file, town)
        v, vk = self.village(file, town, village, hid)
        shown = [k for k, on in ((tk, show_town), (vk, show_village)) if k and on]
        if errs is not None:
            errs.extend(shown)
        key = (file, town, village, t if show_town else "", v if show_village else "")
        self.used.setdefault(key, shown)
        return t, v


def write_places(path: Path, speller: PlaceSpeller) -> None:
    """truth/places.csv: how each file wrote each place (only the columns it has)."""
    import csv

    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["file", "town", "village", "town_as_written", "village_as_written", "spelling"])
        for (file, town, village, t, v), kinds in sorted(speller.used.items()):
            w.writerow([file, town, village, t, v, ";".join(kinds)])


def write_aliases(path: Path, old_names: dict[tuple[str, str], OldName]) -> None:
    """DIR/config/place_aliases.toml: renamed and merged places, variant -> canonical name."""
    lines = [
        "# Places renamed or merged: a name an export may still use -> the place's name today.",
        "# Written by recon synth; a bureau extends it like header_aliases.toml.",
        "[town]",
        "",
        "[village]",
    ]
    for (_, village), old in sorted(old_names.items(), key=lambda kv: kv[1].name):
        note = "  # merged into it" if old.merged else ""
        lines.append(f'"{old.name}" = "{village}"{note}')
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
