"""Towns and villages: one key per place, however each export spells it.

Exports name one village 坝北村, 坝北, 坝北村委会 or 坝北社区, and one town 茶峒镇 or 茶洞镇;
anything that compares or groups places (blocking, the `place` level, export completeness,
household keys, the town workbooks) uses the key, never the text as written.

A key (``place_key``), in this order:
  NFKC and traditional -> simplified, as person names are (``names.normalize_names``) ->
  spaces, punctuation and symbols dropped -> characters that place names write
  interchangeably made one (峒 -> 洞, 垭 -> 丫: ``data/place_chars.txt``) -> the
  administrative suffix dropped, repeatedly (村民委员会, 村委会, 社区, 村 ...; 街道办事处,
  人民政府, 镇, 乡, 苗族 ...) while at least two characters are left; a suffix that would
  leave one keeps its first character (新村委会 -> 新村, like 新村 itself) -> the bureau's
  aliases (``place_aliases.toml``: a renamed or merged village, a spelling no rule covers),
  applied to normalised variants and targets alike.
It is idempotent, never empty for text with a letter or digit in it, and stable night over
night (nothing in it depends on the night's data).

Then the night's exports together (``resolve_places``): two keys of one level (villages:
within one town) that differ in one character, look-alike (``names.is_lookalike``) or
sounding the same (``names.pinyin_keys``), and that no file writes side by side, are one
place (结卜镇 in one school's roster is the 结补镇 of every other file): the key more rows use
is kept. A file that lists both is the evidence that they are two places. The display name
of a key is the alias target as written, else the full spelling (simplified, with its
suffix) the night's records use most (``place_names``).

Pure: Python runs over the distinct place strings only (a county has a few hundred).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

import polars as pl

from .errors import ConfigError
from .names import is_lookalike, normalize_names, pinyin_keys

__all__ = [
    "LEVELS",
    "SUFFIXES",
    "PlaceAliases",
    "NO_ALIASES",
    "parse_place_aliases",
    "place_key",
    "place_keys",
    "with_place_keys",
    "place_names",
    "with_place_names",
    "observed_places",
    "resolve_places",
    "with_resolved_keys",
    "carry_keys",
]

LEVELS: tuple[str, ...] = ("town", "village")

_ETHNIC = ("民族", "苗族", "土家族", "瑶族", "侗族", "回族", "彝族", "壮族", "白族", "满族", "蒙古族",
           "藏族", "布依族", "仡佬族", "畲族", "维吾尔族", "哈尼族", "傣族", "黎族")
# Longest first: the loop in _strip takes the first that ends the text.
SUFFIXES: dict[str, tuple[str, ...]] = {
    "town": tuple(sorted(("街道办事处", "人民政府", "办事处", "街道办", "街道", "镇", "乡", *_ETHNIC), key=len, reverse=True)),
    "village": tuple(sorted(("村民委员会", "居民委员会", "村委会", "居委会", "村委", "居委", "社区", "村"), key=len, reverse=True)),
}

_DATA = Path(__file__).parent / "data" / "place_chars.txt"


@dataclass(frozen=True)
class PlaceAliases:
    """Per level: variant key -> canonical key (chains resolved), and canonical key -> the
    alias target as the file writes it (the display name)."""

    keys: Mapping[str, Mapping[str, str]] = field(default_factory=lambda: MappingProxyType({lv: MappingProxyType({}) for lv in LEVELS}))
    names: Mapping[str, Mapping[str, str]] = field(default_factory=lambda: MappingProxyType({lv: MappingProxyType({}) for lv in LEVELS}))


NO_ALIASES = PlaceAliases()


@lru_cache(maxsize=1)
def _char_map() -> dict[str, str]:
    """Each interchangeable character -> the first of its group (data/place_chars.txt)."""
    suffix_chars = {c for sufs in SUFFIXES.values() for s in sufs for c in s}
    out: dict[str, str] = {}
    for line in _DATA.read_text(encoding="utf-8").splitlines():
        if line.startswith("#") or not line.strip():
            continue
        group = line.split()
        bad = suffix_chars.intersection(group)
        if bad:  # a suffix character in a group would make keys depend on the order of steps
            raise ConfigError(f"{_DATA.name}: suffix character {sorted(bad)[0]} in a group")
        for c in group[1:]:
            out[c] = group[0]
    return out


def _kept(c: str) -> bool:
    """Letters and digits stay; spaces, punctuation, symbols and controls go."""
    return unicodedata.category(c)[0] in "LN"


def _strip(key: str, level: str) -> str:
    changed = True
    while changed:
        changed = False
        for suf in SUFFIXES[level]:
            if not key.endswith(suf) or len(key) == len(suf):
                continue
            rest = key[: -len(suf)]
            if len(rest) >= 2:
                key, changed = rest, True
            elif len(suf) > 1:  # 新村委会: the name is 新村, as 新村 alone says
                key, changed = rest + suf[0], True
            if changed:
                break
    return key


def _finish(pre: str | None, level: str) -> str | None:
    """Everything after NFKC and t2s, on one distinct string."""
    if pre is None:
        return None
    cmap = _char_map()
    text = "".join(cmap.get(c, c) for c in pre if _kept(c))
    return _strip(text, level) if text else None


def _base_keys(values: list[str | None], level: str) -> list[str | None]:
    pre = normalize_names(pl.Series("p", values, dtype=pl.String)).to_list()
    return [_finish(p, level) for p in pre]


def _check_level(level: str) -> None:
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, not {level!r}")


def place_keys(values: pl.Series, level: str, aliases: PlaceAliases = NO_ALIASES) -> pl.Series:
    """Keys of `values` (same length and name; null where there is no place)."""
    _check_level(level)
    s = values.cast(pl.String)
    distinct = s.drop_nulls().unique().to_list()
    alias = aliases.keys[level]
    keys = [alias.get(k, k) if k is not None else None for k in _base_keys(distinct, level)]
    lut = {v: k for v, k in zip(distinct, keys)}
    return s.replace_strict(lut, default=None, return_dtype=pl.String).alias(values.name)


def place_key(text: str | None, level: str, aliases: PlaceAliases = NO_ALIASES) -> str | None:
    """Scalar form of `place_keys` (same rules)."""
    return place_keys(pl.Series("p", [text], dtype=pl.String), level, aliases)[0]


def with_place_keys(df: pl.DataFrame, aliases: PlaceAliases = NO_ALIASES) -> pl.DataFrame:
    """`df` with ``town_key`` and ``village_key`` from its ``town`` and ``village``."""
    return df.with_columns(
        place_keys(df[lv] if lv in df.columns else pl.Series(lv, [None] * df.height, dtype=pl.String), lv, aliases)
        .alias(f"{lv}_key")
        for lv in LEVELS
    )


def _written(col: pl.Expr) -> pl.Expr:
    return col.cast(pl.String).str.normalize("NFKC").str.replace_all(r"\s+", "")


def place_names(frames: list[pl.DataFrame], level: str, aliases: PlaceAliases = NO_ALIASES) -> pl.DataFrame:
    """key -> display name for one level, over frames holding ``{level}`` and ``{level}_key``:
    the alias target as written, else the commonest full spelling (simplified, with its
    suffix: 龙茶乡 rather than 龙茶 or 龍茶鄉, so the name, and a town workbook's file name,
    does not flip when one export's spelling changes), else the commonest spelling; commonest
    by files (when the frames have a ``file`` column), then rows; ties: the longest, then the
    first in code-point order. One key has one name."""
    _check_level(level)
    kc = f"{level}_key"
    # Counted first (key, spelling as it stands, file), then the few spellings tidied.
    parts = [f.select(pl.col(kc).alias("key"), pl.col(level).cast(pl.String).alias("name"),
                      (pl.col("file").cast(pl.String) if "file" in f.columns else pl.lit(None, pl.String)).alias("file"))
             .drop_nulls(["key", "name"])
             .group_by("key", "name", "file").len()
             for f in frames if kc in f.columns and level in f.columns]
    schema = {"key": pl.String, "name": pl.String}
    if not parts:
        return pl.DataFrame(schema=schema)
    # files first: one big register spelling a town its own way does not outvote every school
    counted = (
        pl.concat(parts)
        .with_columns(_written(pl.col("name")).alias("name"))
        .group_by("key", "name")
        .agg(pl.col("file").n_unique().alias("files"), pl.col("len").sum())
    )
    spelt = counted["name"].unique()
    simplified = dict(zip(spelt.to_list(), normalize_names(spelt).to_list()))
    full = {n for n, simple in simplified.items() if n == simple and n.endswith(SUFFIXES[level]) and _strip(n, level) != n}
    best = (
        counted.with_columns(pl.col("name").is_in(list(full)).alias("_full"))
        .sort(["_full", "files", "len", pl.col("name").str.len_chars(), "name"], descending=[True, True, True, True, False])
        .unique("key", keep="first", maintain_order=True)
        .select("key", "name")
    )
    fixed = pl.DataFrame({"key": list(aliases.names[level]), "name": list(aliases.names[level].values())}, schema=schema)
    return pl.concat([fixed, best.join(fixed, on="key", how="anti")]).sort("key")


def with_place_names(frames: Mapping[str, pl.DataFrame], aliases: PlaceAliases = NO_ALIASES) -> dict[str, pl.DataFrame]:
    """Each frame with ``town_name`` and ``village_name``, chosen over all the frames together
    (every source of one night): the name of its key, so equal keys show equal names."""
    out = dict(frames)
    for lv in LEVELS:
        names = place_names(list(out.values()), lv, aliases)
        lut = dict(zip(names["key"].to_list(), names["name"].to_list()))
        out = {
            src: f.with_columns(
                (pl.col(f"{lv}_key") if f"{lv}_key" in f.columns else pl.lit(None, pl.String))
                .replace_strict(lut, default=None, return_dtype=pl.String).alias(f"{lv}_name")
            )
            for src, f in out.items()
        }
    return out


# ------------------------------------------------------------------ alias files
def parse_place_aliases(raw: Mapping[str, Any], where: str, base: PlaceAliases = NO_ALIASES) -> PlaceAliases:
    """`base` extended by one alias file's content (``[town]`` / ``[village]``: variant =
    canonical). Variants and targets are normalised like any place; a later file's entry
    replaces an earlier one. ConfigError names the file and key: an unknown table, a value
    that is not text, a spelling with nothing left after normalising, a cycle."""
    unknown = sorted(set(raw) - set(LEVELS))
    if unknown:
        raise ConfigError(f"{where}: unknown table [{unknown[0]}] (expected {', '.join(f'[{lv}]' for lv in LEVELS)})")
    keys = {lv: dict(base.keys[lv]) for lv in LEVELS}
    names = {lv: dict(base.names[lv]) for lv in LEVELS}
    for lv in LEVELS:
        table = raw.get(lv, {})
        if not isinstance(table, Mapping):
            raise ConfigError(f"{where}: [{lv}] must be a table of \"variant\" = \"canonical\"")
        items = list(table.items())
        for variant, target in items:
            if not isinstance(target, str) or not target.strip():
                raise ConfigError(f"{where}: {lv}.{variant} must be a non-empty string")
        got = _base_keys([str(v) for v, _ in items] + [t for _, t in items], lv)
        for (variant, target), vk, tk in zip(items, got[: len(items)], got[len(items):]):
            if vk is None or tk is None:
                raise ConfigError(f"{where}: {lv}.{variant}: no place name left after normalising")
            if vk != tk:
                keys[lv][vk] = tk
            names[lv][tk] = "".join(_written_text(target))
        keys[lv] = _resolve_chains(keys[lv], where, lv)
        # a variant's own display name would name a key nothing maps to any more
        names[lv] = {k: v for k, v in names[lv].items() if k not in keys[lv]}
    return PlaceAliases(
        keys=MappingProxyType({lv: MappingProxyType(keys[lv]) for lv in LEVELS}),
        names=MappingProxyType({lv: MappingProxyType(names[lv]) for lv in LEVELS}),
    )


def _written_text(text: str) -> str:
    return "".join(unicodedata.normalize("NFKC", text).split())


def _resolve_chains(mapping: dict[str, str], where: str, level: str) -> dict[str, str]:
    """a -> b, b -> c becomes a -> c, b -> c; a cycle is an error."""
    out: dict[str, str] = {}
    for start in mapping:
        seen = [start]
        cur = mapping[start]
        while cur in mapping:
            if cur in seen:
                raise ConfigError(f"{where}: {level} aliases go round in a circle ({' -> '.join(seen + [cur])})")
            seen.append(cur)
            cur = mapping[cur]
        out[start] = cur
    return out


# ------------------------------------------------------- the night's spellings together
_OBSERVED = {"file": pl.String, "town": pl.String, "village": pl.String, "rows": pl.UInt32}
_TABLE = {"town": pl.String, "village": pl.String, "town_key": pl.String, "village_key": pl.String}


def observed_places(frames: list[pl.DataFrame]) -> pl.DataFrame:
    """file, town, village (as written), rows: every spelling each file uses (frames with a
    ``file`` column, e.g. the ingested sheets of every source)."""
    parts = [
        f.select(pl.col("file").cast(pl.String),
                 *((pl.col(c).cast(pl.String) if c in f.columns else pl.lit(None, pl.String)).alias(c) for c in LEVELS))
        .group_by("file", *LEVELS).len("rows")
        for f in frames if f.height and "file" in f.columns
    ]
    return pl.concat(parts).cast(_OBSERVED) if parts else pl.DataFrame(schema=_OBSERVED)


def _merge_variants(counts: pl.DataFrame) -> dict[tuple[str | None, str], str]:
    """(scope, key) -> the key it is a variant of (columns scope, key, file, rows).

    Keys are taken commonest first; each either joins a kept key of its scope that it differs
    from in one character (a look-alike, or the whole keys sound alike) and shares no file
    with, or is kept itself. Candidates come from one-character-deleted signatures, so a
    county-wide night (thousands of places) is not compared pair by pair."""
    per = counts.group_by("scope", "key").agg(pl.col("rows").sum(), pl.col("file").unique().alias("files")).sort(
        ["rows", "scope", "key"], descending=[True, False, False], nulls_last=True)
    distinct = per["key"].unique().to_list()
    py = dict(zip(distinct, pinyin_keys(pl.Series(distinct, dtype=pl.String)).to_list()))
    kept: list[tuple[str, set[str]]] = []  # canonical key, files of it and its variants
    by_sig: dict[tuple[str | None, int, str], list[int]] = {}
    out: dict[tuple[str | None, str], str] = {}
    for scope, key, files in per.select("scope", "key", "files").iter_rows():
        fs = set(files)
        sigs = [(scope, i, key[:i] + "\0" + key[i + 1:]) for i in range(len(key))]
        best = None
        for scope_, i, sig in sigs:
            for k in by_sig.get((scope_, i, sig), ()):
                canon, cfiles = kept[k]
                if (best is None or k < best) and not (fs & cfiles) and (
                        is_lookalike(key[i], canon[i]) or (py.get(key) is not None and py.get(key) == py.get(canon))):
                    best = k
        if best is not None:
            out[(scope, key)] = kept[best][0]
            kept[best][1].update(fs)
            continue
        kept.append((key, fs))
        for sig in sigs:
            by_sig.setdefault(sig, []).append(len(kept) - 1)
    return out


def resolve_places(observed: pl.DataFrame, aliases: PlaceAliases = NO_ALIASES) -> pl.DataFrame:
    """town, village (as written) -> town_key, village_key for one night's spellings
    (``observed_places``): the keys of ``place_key``, with one-character variants that no
    file writes beside the other merged into the commoner (villages within their town)."""
    if observed.is_empty():
        return pl.DataFrame(schema=_TABLE)
    obs = with_place_keys(observed, aliases)
    towns = _merge_variants(obs.filter(pl.col("town_key").is_not_null()).select(
        pl.lit(None, pl.String).alias("scope"), pl.col("town_key").alias("key"), "file", "rows"))
    obs = obs.with_columns(pl.col("town_key").replace({k: v for (_, k), v in towns.items()}))
    villages = _merge_variants(obs.filter(pl.col("village_key").is_not_null()).select(
        pl.col("town_key").alias("scope"), pl.col("village_key").alias("key"), "file", "rows"))
    vm = pl.DataFrame([{"town_key": t, "village_key": v, "_canon": c} for (t, v), c in villages.items()],
                      schema={"town_key": pl.String, "village_key": pl.String, "_canon": pl.String})
    obs = obs.join(vm, on=["town_key", "village_key"], how="left", nulls_equal=True).with_columns(
        pl.coalesce("_canon", "village_key").alias("village_key"))
    return obs.select(list(_TABLE)).unique(["town", "village"], keep="first", maintain_order=True).cast(_TABLE)


def with_resolved_keys(df: pl.DataFrame, table: pl.DataFrame) -> pl.DataFrame:
    """`df` with ``town_key`` and ``village_key`` from a ``resolve_places`` table (joined on
    the town and village as written)."""
    cols = {lv: (pl.col(lv).cast(pl.String) if lv in df.columns else pl.lit(None, pl.String)).alias(f"_{lv}") for lv in LEVELS}
    keyed = df.select(*cols.values()).join(
        table.rename({"town": "_town", "village": "_village"}), on=["_town", "_village"], how="left",
        nulls_equal=True, maintain_order="left")
    return df.with_columns(keyed["town_key"], keyed["village_key"])


def carry_keys(df: pl.DataFrame, like: list[pl.DataFrame], aliases: PlaceAliases = NO_ALIASES) -> pl.DataFrame:
    """`df` (rows of another night: town and village as written) keyed as tonight keys the
    same places: ``place_key``, then tonight's merges, read off `like` (tonight's records)."""
    df = with_place_keys(df, aliases)
    parts = [f.select(*LEVELS, "town_key", "village_key") for f in like if {"town_key", "village_key", *LEVELS} <= set(f.columns)]
    if not parts:
        return df
    tonight = with_place_keys(
        pl.concat(parts).unique().rename({"town_key": "_tk", "village_key": "_vk"}), aliases)
    towns = dict(tonight.select("town_key", "_tk").drop_nulls().unique("town_key").iter_rows())
    df = df.with_columns(pl.col("town_key").replace(towns))
    villages = tonight.select(pl.col("_tk").alias("town_key"), "village_key", "_vk").drop_nulls(["village_key", "_vk"]).unique(
        ["town_key", "village_key"])
    out = df.join(villages, on=["town_key", "village_key"], how="left", nulls_equal=True, maintain_order="left")
    return out.with_columns(pl.coalesce("_vk", "village_key").alias("village_key")).drop("_vk")
