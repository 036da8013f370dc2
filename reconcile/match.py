"""Find each roster student in a system: blocking, comparison levels, one scoring model.

Candidates come from blocking joins (exact ID, ID one digit off or two digits swapped, the
known prefix of a damaged ID, birth date with the name's pinyin or its first/last
character, the household, name within the village by place key). Each candidate pair is compared field by
field; each field falls into the first comparison level whose condition holds and
contributes log2(m/u) bits (Fellegi–Sunter). The sum plus the prior gives the match weight
and probability; every link keeps each field's level and contribution in `why`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import polars as pl
from rapidfuzz import process
from rapidfuzz.distance import Hamming, Levenshtein

from .comparisons import COMPARISONS, DAMAGED, USABLE, Context
from .config import MatchSettings
from .idcard import is_adjacent_swap
from .model import Model, Session, encode, fit_model, level_counts
from .names import in_charset, lookalike_chars

__all__ = ["candidate_pairs", "blocking_figures", "compare_pairs", "score_pairs", "assign", "match_system", "link_system",
           "SystemLinks", "BLOCKS", "SESSIONS", "USABLE", "MATCH_ONLY"]

Progress = Callable[[str], None]
# Blocking rules, strongest first; a pair found by several keeps the first.
BLOCKS = (
    "id",
    "id_near",
    "id_prefix",
    "name_birth",
    "household",
    "birth_char",
    "name_place",
)
# EM sessions (see reconcile.model), one per blocking rule that finds most true links: its
# candidate pairs as a condition on the levels, and the fields it blocks on, held fixed.
SESSIONS = (
    Session("id", ("id",), pl.col("lv_id") == "exact"),
    Session("name_birth", ("name", "birth"), pl.col("lv_name").is_in(["exact", "pinyin"]) & (pl.col("lv_birth") == "exact")),
    # one household lives in one village: its pairs agree on the place by construction too
    Session("household", ("head", "place"), pl.col("lv_head") == "exact"),
)

ROSTER_COLS = [
    "rec", "id_norm", "id_status", "id_known", "id_birth", "id_gender", "birth", "gender_norm",
    "name_norm", "name_py", "name_fz", "head_name_norm", "head_py", "head_fz", "head_id_norm", "head_id_status",
    "head_id_known", "town_key", "village_key", "stage",
]
# Record columns normalize builds for matching alone: not stored, not read after matching
# (a prefecture's records drop them before the rules, a few hundred megabytes).
MATCH_ONLY = ("name_fz", "head_py", "head_fz")
SYSTEM_COLS = [
    "rec", "id_norm", "id_status", "id_known", "id_birth", "id_gender", "gender_norm",
    "name_norm", "name_py", "name_fz", "head_name_norm", "head_py", "head_id_norm", "household", "town_key",
    "village_key", "is_head_row", "school_status",
]

# Scoring works through the candidate pairs this many at a time: a county-wide run has tens
# of millions of them, and the joined comparison frame holds ~50 columns per pair.
CHUNK_PAIRS = 1_000_000
# Levels and blocks as enums (4 bytes a row rather than a 16-byte string view) in the frames
# kept for every candidate pair; the physical order of VIA is the blocks' rank.
VIA = pl.Enum(list(BLOCKS))
_MAX_RECS = 2**28  # records per side that a pair key (see _first_block_per_pair) can hold
LEVEL_TYPES: dict[str, pl.Enum] = {f: pl.Enum(list(c.names)) for f, c in COMPARISONS.items()}
_TF = [c for c in COMPARISONS.values() if c.tf_column]
assert len(_TF) <= 1, "one term-frequency comparison at most"
TF_FIELD = _TF[0].field if _TF else None
TF_LEVELS = [lv.name for lv in _TF[0].levels if lv.tf] if _TF else []


def _prep(df: pl.DataFrame, cols: list[str]) -> pl.DataFrame:
    missing = [c for c in cols if c not in df.columns]
    df = df.with_columns(pl.lit(None).alias(c) for c in missing)
    df = df.select(cols)
    if "is_head_row" in cols:
        df = df.with_columns(pl.col("is_head_row").cast(pl.Boolean).fill_null(False))
    if "household" in cols:  # an ID on two rows of one household is one member's, not both's
        shared = pl.col("id_norm").is_not_null() & pl.col("household").is_not_null() & (pl.len().over("household", "id_norm") > 1)
        df = df.with_columns(shared.alias("id_shared"))
    # Excel's short scientific display rounds its last digit: trust one digit fewer.
    def known(p: str) -> pl.Expr:
        return pl.when(pl.col(f"{p}_status") == "sci_damaged").then(pl.col(f"{p}_known") - 1).otherwise(pl.col(f"{p}_known"))

    heads = [known("head_id").alias("head_id_known")] if "head_id_known" in cols else []
    return df.with_columns(pl.col("rec").cast(pl.UInt32), known("id").alias("id_known"), *heads)


def _pairs(left: pl.DataFrame, right: pl.DataFrame, on: list[str] | str, via: str) -> pl.DataFrame:
    on = [on] if isinstance(on, str) else on
    lk = left.select(pl.col("rec").alias("r"), *on).drop_nulls(on)
    rk = right.select(pl.col("rec").alias("s"), *on).drop_nulls(on)
    return lk.join(rk, on=on, how="inner").select("r", "s", pl.lit(via).cast(VIA).alias("via"))


# Near-ID blocking with bounded memory. An 18-character ID is cut into three parts
# (region 0-5, birth 6-11, birth day + sequence + check 12-17); two IDs one digit apart, or
# with two adjacent digits swapped inside one part, agree on the other two parts. So each
# ID gets three keys (the ID with one part left out), not one per position. A swap across a
# part boundary (5|6, 11|12) is undone on the failing side and joined exactly. A 17- or
# 19-character ID (a digit lost or added) shares the region + the last six, or the first
# twelve. Keys are built one at a time and only when the failing side has rows, and the
# pairs are cut to IDs at most two characters apart right after each join.
_PARTS = ((0, 6), (6, 12), (12, 18))


def _part_key(col: str, k: int) -> pl.Expr:
    """The ID in `col` with part k left out."""
    s = pl.col(col)
    keep = [(a, b) for j, (a, b) in enumerate(_PARTS) if j != k]
    return pl.concat_str([s.str.slice(a, b - a) for a, b in keep])


def _hamming_le(a: pl.Expr, b: pl.Expr, limit: int) -> pl.Expr:
    return pl.sum_horizontal([(a.str.slice(i, 1) != b.str.slice(i, 1)).cast(pl.Int8) for i in range(18)]) <= limit


def _near_id_pairs(r: pl.DataFrame, s: pl.DataFrame) -> pl.DataFrame:
    """IDs one digit off, two digits swapped, or one digit lost/added; one side must fail
    its checksum (or have the wrong length)."""

    def near(bad: pl.DataFrame, other: pl.DataFrame) -> list[pl.DataFrame]:
        """(bad rec, other rec) pairs, from the side whose IDs fail their checksum."""
        n = pl.col("id_norm").str.len_chars()
        bad_all = bad.filter(~pl.col("id_status").is_in(USABLE) & ~pl.col("id_status").is_in(DAMAGED))
        b18 = bad_all.filter(n == 18).select("rec", "id_norm")
        o18 = other.filter(n == 18).select(pl.col("rec").alias("rec_o"), pl.col("id_norm").alias("id_o"))
        out = []
        if b18.height:
            for k in range(len(_PARTS)):
                bk = b18.with_columns(_part_key("id_norm", k).alias("key"))
                ok = o18.with_columns(_part_key("id_o", k).alias("key"))
                j = bk.join(ok, on="key").filter(_hamming_le(pl.col("id_norm"), pl.col("id_o"), 2))
                out.append(j.select("rec", "rec_o"))
            sx = pl.col("id_norm")
            for p in (5, 11):
                sw = b18.select(
                    "rec",
                    (sx.str.slice(0, p) + sx.str.slice(p + 1, 1) + sx.str.slice(p, 1) + sx.str.slice(p + 2)).alias("id_o"),
                )
                out.append(sw.join(o18, on="id_o").select("rec", "rec_o"))
        b_odd = bad_all.filter(n.is_in([17, 19])).select("rec", "id_norm")
        if b_odd.height:
            tail = [(pl.col(c).str.slice(0, 6) + pl.col(c).str.slice(-6)) for c in ("id_norm", "id_o")]
            head = [pl.col(c).str.slice(0, 12) for c in ("id_norm", "id_o")]
            for kb, ko in (tail, head):
                j = b_odd.with_columns(kb.alias("key")).join(o18.with_columns(ko.alias("key")), on="key")
                out.append(j.select("rec", "rec_o"))
        return out

    out = [p.rename({"rec": "r", "rec_o": "s"}) for p in near(r, s)]
    out += [p.rename({"rec": "s", "rec_o": "r"}).select("r", "s") for p in near(s, r)]
    if not out:
        return pl.DataFrame(schema={"r": pl.UInt32, "s": pl.UInt32, "via": pl.String})
    return pl.concat(out).unique().with_columns(pl.lit("id_near").alias("via"))


def _prefix_pairs(r: pl.DataFrame, s: pl.DataFrame, min_known: int) -> pl.DataFrame:
    """A damaged roster ID (Excel number, scientific notation) shares its known prefix."""
    dmg = r.filter(pl.col("id_status").is_in(DAMAGED) & (pl.col("id_known") >= min_known))
    out = []
    for k in sorted(dmg["id_known"].unique().to_list()):
        rk = dmg.filter(pl.col("id_known") == k).select(pl.col("rec").alias("r"), pl.col("id_norm").str.slice(0, k).alias("p"))
        sk = s.filter(pl.col("id_norm").str.len_chars() == 18).select(pl.col("rec").alias("s"), pl.col("id_norm").str.slice(0, k).alias("p"))
        out.append(rk.join(sk, on="p").select("r", "s"))
    if not out:
        return pl.DataFrame(schema={"r": pl.UInt32, "s": pl.UInt32, "via": pl.String})
    return pl.concat(out).with_columns(pl.lit("id_prefix").alias("via"))


def _births(r: pl.DataFrame) -> pl.DataFrame:
    """A roster row may be found under its ID's birth date or the birth-date column."""
    return pl.concat(
        [
            r.select("rec", pl.col("id_birth").alias("b"), "name_py", "name_norm"),
            r.select("rec", pl.col("birth").alias("b"), "name_py", "name_norm"),
        ]
    ).drop_nulls("b").unique(["rec", "b"])


def candidate_pairs(r: pl.DataFrame, s: pl.DataFrame, ms: MatchSettings) -> pl.DataFrame:
    """All blocked candidate pairs (r, s) with the strongest block that found them, at most
    `max_candidates` per roster row (see `_bounded`)."""
    return _candidates(r, s, ms)[0]


def _candidates(r: pl.DataFrame, s: pl.DataFrame, ms: MatchSettings) -> tuple[pl.DataFrame, int]:
    """`candidate_pairs` and the number of roster rows that had more candidates than the cap."""
    rb = _births(r)
    sb = s.select("rec", pl.col("id_birth").alias("b"), "name_py", "name_norm").drop_nulls("b")
    first = pl.col("name_norm").str.slice(0, 1).alias("c")
    last = pl.col("name_norm").str.slice(-1, 1).alias("c")

    def birth_char() -> pl.DataFrame:
        return pl.concat(
            [
                _pairs(rb.with_columns(first), sb.with_columns(first), ["b", "c"], "birth_char"),
                _pairs(rb.with_columns(last), sb.with_columns(last), ["b", "c"], "birth_char"),
            ]
        )

    # Guardians: the roster's head ID is the system household's head, or a member of it.
    def via_member() -> pl.DataFrame:
        s_members = s.select(pl.col("rec").alias("s"), "household").drop_nulls("household")
        return (
            r.select(pl.col("rec").alias("r"), pl.col("head_id_norm").alias("id_norm"))
            .drop_nulls("id_norm")
            .join(s.select("id_norm", "household").drop_nulls(), on="id_norm")
            .join(s_members, on="household")
            .select("r", "s", pl.lit("household").alias("via"))
        )

    # A heads-only export: the guardian by name within the head's village (the guardian's ID
    # may be damaged or missing; the domain's rule: such a student is found through the
    # guardian's name and ID).
    def via_head_name() -> pl.DataFrame:
        heads = s.filter(pl.col("is_head_row")).select("rec", pl.col("name_py").alias("head_py"), "village_key")
        return _pairs(r, heads, ["head_py", "village_key"], "household")

    # In BLOCKS order: of a pair found by several blocks the first one found is kept. Each
    # block is built only when its turn comes, so one block's raw pairs exist at a time.
    blocks: list[Callable[[], pl.DataFrame]] = [
        lambda: _pairs(r.filter(pl.col("id_norm").str.len_chars() == 18), s, "id_norm", "id"),
        lambda: _near_id_pairs(r, s),
        lambda: _prefix_pairs(r, s, ms.min_known_prefix),
        lambda: _pairs(rb, sb, ["b", "name_py"], "name_birth"),
        lambda: _pairs(r, s, "head_id_norm", "household"),
        via_member,
        via_head_name,
        birth_char,
        lambda: _pairs(r, s, ["name_py", "village_key"], "name_place"),
        lambda: _pairs(r, s, ["name_py", "head_py"], "name_place"),
    ]
    features = _Features(r, s)
    return _first_block_per_pair(blocks, ms.max_candidates, features)


class _Features:
    """The few fields a pair is ranked on when its roster row has too many candidates: the
    tighter keys (birth date, birth year, town, village, gender, the guardian's name) that
    an oversized block did not use, as agreements, each a bit of a small score."""

    def __init__(self, r: pl.DataFrame, s: pl.DataFrame) -> None:
        self.r = r.select(
            pl.col("rec").alias("r"), pl.col("name_norm").alias("r_n"), pl.col("name_py").alias("r_p"),
            pl.col("birth").alias("r_b"), pl.col("id_birth").alias("r_ib"), pl.col("gender_norm").alias("r_g"),
            pl.col("town_key").alias("r_t"), pl.col("village_key").alias("r_v"), pl.col("head_py").alias("r_h"),
        )
        self.s = s.select(
            pl.col("rec").alias("s"), pl.col("name_norm").alias("s_n"), pl.col("name_py").alias("s_p"),
            pl.col("id_birth").alias("s_b"), pl.col("gender_norm").alias("s_g"),
            pl.col("town_key").alias("s_t"), pl.col("village_key").alias("s_v"), pl.col("head_py").alias("s_h"),
        )

    def closeness(self, pairs: pl.DataFrame) -> pl.Series:
        """Per pair (in `pairs`' order) a score 0-47: higher agrees on more and stronger fields."""
        def agree(a: str, b: str) -> pl.Expr:
            return (pl.col(a) == pl.col(b)).fill_null(False).cast(pl.UInt8)

        birth = ((pl.col("r_b") == pl.col("s_b")) | (pl.col("r_ib") == pl.col("s_b"))).fill_null(False).cast(pl.UInt8)
        year = ((pl.col("r_b").dt.year() == pl.col("s_b").dt.year())
                | (pl.col("r_ib").dt.year() == pl.col("s_b").dt.year())).fill_null(False).cast(pl.UInt8)
        score = (agree("r_n", "s_n") * 16 + agree("r_p", "s_p") * 8 + birth * 8 + year * 4 + agree("r_v", "s_v") * 4
                 + agree("r_h", "s_h") * 4 + agree("r_t", "s_t") * 2 + agree("r_g", "s_g"))
        # A slice at a time: an oversized block can hold tens of millions of pairs, and the
        # joined fields would take some twenty columns each.
        parts = []
        for start in range(0, max(pairs.height, 1), CHUNK_PAIRS):
            joined = (pairs.slice(start, CHUNK_PAIRS).select("r", "s")
                      .join(self.r, on="r", how="left", maintain_order="left")
                      .join(self.s, on="s", how="left", maintain_order="left"))
            parts.append(joined.select(score.cast(pl.UInt8).alias("_close")).to_series())
            del joined
        return pl.concat(parts)


def _bounded(pairs: pl.DataFrame, cap: int, features: _Features) -> tuple[pl.DataFrame, pl.Series]:
    """`pairs` with at most `cap` per roster row: a row with more keeps the `cap` that agree
    best on the fields the blocks did not join on (`_Features`), the stronger block first on a
    tie, then the lower system rec (deterministic). Returns the pairs kept (their order kept
    for the rows not cut) and the roster recs that were cut."""
    n = pl.len().over("r")
    none = pl.Series("r", [], dtype=pl.UInt32)
    if not pairs.height:
        return pairs, none
    # A block may find a pair twice (two birth dates, first and last character): the rows
    # over the cap are counted again by distinct pair.
    rank = pl.col("via").cast(VIA).to_physical()
    over = (pairs.filter(n > cap).with_columns(rank.alias("_rank")).sort("_rank").unique(["r", "s"], keep="first")
            .filter(pl.len().over("r") > cap))
    if not over.height:
        return pairs, none
    top = (
        over.with_columns(features.closeness(over))
        .sort(["r", "_close", "_rank", "s"], descending=[False, True, False, False])
        .filter(pl.int_range(pl.len()).over("r") < cap)
        .drop("_close", "_rank")
    )
    return pairs.join(over.select("r").unique(), on="r", how="anti").vstack(top.select(pairs.columns)), over["r"].unique()


def _first_block_per_pair(blocks: Sequence[Callable[[], pl.DataFrame]], cap: int,
                          features: _Features) -> tuple[pl.DataFrame, int]:
    """Each distinct pair once, with the strongest block that found it, sorted by (r, s), at
    most `cap` per roster row; and how many roster rows had more (they keep their `cap` best,
    `_bounded`: a common key is ranked, not dropped, so a true candidate is not lost with it).

    A county-wide run finds tens of millions of pairs, many several times. Each block is
    built, cut to `cap` per roster row, cut at once to one u64 per pair — r (28 bits), s (32)
    and the block's rank (4), in that order — and released before the next is built. One sort
    of that single column then puts each pair's rows together, strongest block first, and the
    first of each pair is kept: no hash table, no second copy of (r, s, via) rows. The union
    is cut to `cap` per roster row again."""
    r64, s64 = pl.col("r").cast(pl.UInt64), pl.col("s").cast(pl.UInt64)
    rank = pl.col("via").cast(VIA).to_physical().cast(pl.UInt64)  # VIA's order is BLOCKS'
    keyed, seen, cut = [], [], []
    for build in blocks:
        b, cut_here = _bounded(build(), cap, features)
        cut.append(cut_here)
        if b.height:
            seen.append(b["via"][0])
            if b["r"].max() >= _MAX_RECS or b["s"].max() >= _MAX_RECS:  # type: ignore[operator]
                raise ValueError(f"more than {_MAX_RECS:,} records on one side: split the run")
            keyed.append(b.select(r64 * 2**36 + s64 * 16 + rank)["r"])
        del b
    assert seen == sorted(seen, key=BLOCKS.index), "blocks must come in BLOCKS order"
    if not keyed:
        return pl.DataFrame(schema={"r": pl.UInt32, "s": pl.UInt32, "via": VIA}), 0
    k = pl.concat(keyed).sort()
    del keyed
    pair = pl.col("k") // 16
    k = k.to_frame("k").filter((pair != pair.shift(1)).fill_null(True))
    out = k.select(
        (pl.col("k") // 2**36).cast(pl.UInt32).alias("r"),
        (pl.col("k") // 16 % 2**32).cast(pl.UInt32).alias("s"),
        pl.lit(pl.Series(BLOCKS, dtype=VIA)).gather(pl.col("k") % 16).alias("via"),
    )
    del k
    out, cut_all = _bounded(out, cap, features)
    capped = pl.concat([*cut, cut_all]).n_unique()
    return out.sort(["r", "s"]), capped


def blocking_figures(pairs: pl.DataFrame, roster_rows: int, capped: int) -> dict[str, float]:
    """Candidate pairs per roster row (mean over all roster rows, maximum) and the roster
    rows whose candidates were cut to the cap: the figures a run reports per system."""
    per_row = pairs.group_by("r").len()["len"] if pairs.height else pl.Series("len", [], dtype=pl.UInt32)
    return {
        "pairs": pairs.height,
        "mean": round(pairs.height / roster_rows, 2) if roster_rows else 0.0,
        "max": int(per_row.max() or 0),  # type: ignore[arg-type]
        "capped": capped,
    }


def _wild_char(p: str, q: str) -> bool:
    """'?' (also typed as * □ ？) stands for any character; '口' for a rare one only."""
    rare_q, rare_p = not in_charset(q, "gb2312"), not in_charset(p, "gb2312")
    return p == q or p == "?" or q == "?" or (p == "口" and rare_q) or (q == "口" and rare_p)


def _wildcard_equal(a: list[str | None], b: list[str | None]) -> list[bool]:
    """A placeholder for a character the system could not store: equal length, the rest equal."""
    out = []
    for x, y in zip(a, b):
        if x is None or y is None or len(x) != len(y) or x == y:
            out.append(False)
        else:
            out.append(all(_wild_char(p, q) for p, q in zip(x, y)))
    return out


def _as_head_pair(df: pl.DataFrame) -> pl.DataFrame:
    """A heads-only row stands for the household: compare the roster's guardian with it."""
    head = pl.col("s_is_head_row") & (pl.col("via") == "household") & (pl.col("r_name_norm") != pl.col("s_name_norm"))
    swap = {
        "r_name_norm": "r_head_name_norm", "r_name_py": "r_head_py", "r_name_fz": "r_head_fz", "r_id_norm": "r_head_id_norm",
        "r_id_status": "r_head_id_status", "r_id_known": "r_head_id_known",
    }
    out = df.with_columns(
        [pl.when(head).then(pl.col(src)).otherwise(pl.col(dst)).alias(dst) for dst, src in swap.items()]
        + [
            pl.when(head).then(None).otherwise(pl.col("r_birth")).alias("r_birth"),
            pl.when(head).then(None).otherwise(pl.col("r_id_birth")).alias("r_id_birth"),
            pl.when(head).then(None).otherwise(pl.col("r_gender_norm")).alias("r_gender_norm"),
            pl.when(head).then(None).otherwise(pl.col("r_id_gender")).alias("r_id_gender"),
            head.alias("via_head"),
        ]
    )
    return out


def _household_flags(df: pl.DataFrame, s: pl.DataFrame) -> pl.DataFrame:
    """`_r_id_family`: the roster's ID is carried by another row of the system row's household
    whose name is another (a family member's ID typed into the roster row); `_r_name_other`:
    the roster's name (its reading) is another row's of that household, not this row's (the
    roster row is about that member, whatever ID it carries); `_head_member`: the roster's
    guardian (ID or name) is a member of that household. Each flag is True or null; the pairs
    that have one are few (they share a household), so they are found by joins on the pairs'
    keys and marked by their (r, s) key rather than by joining the wide frame."""
    members = s.select(pl.col("household").alias("s_household"), pl.col("rec").alias("_t"), pl.col("id_norm").alias("_tid"),
                       pl.col("name_norm").alias("_tname"), pl.col("name_py").alias("_tpy")).drop_nulls(["s_household", "_tid"])
    keys = df.select("r", "s", "s_household", "r_id_norm", "r_head_id_norm", "r_name_norm", "r_name_py", "s_name_py",
                     "r_head_py").filter(pl.col("s_household").is_not_null())
    fam = keys.join(members, left_on=["s_household", "r_id_norm"], right_on=["s_household", "_tid"]).filter(
        (pl.col("_t") != pl.col("s")) & (pl.col("_tname") != pl.col("r_name_norm"))
        & (pl.col("_tpy") != pl.col("r_name_py")).fill_null(True))
    named = s.select(pl.col("household").alias("s_household"), pl.col("rec").alias("_t"), pl.col("name_py").alias("_tpy")).drop_nulls()
    other = keys.join(named, left_on=["s_household", "r_name_py"], right_on=["s_household", "_tpy"]).filter(
        (pl.col("_t") != pl.col("s")) & (pl.col("s_name_py") != pl.col("r_name_py")).fill_null(True))
    head = pl.concat([
        keys.join(members, left_on=["s_household", "r_head_id_norm"], right_on=["s_household", "_tid"]).select("r", "s"),
        keys.join(named, left_on=["s_household", "r_head_py"], right_on=["s_household", "_tpy"]).select("r", "s"),
    ])
    key = pl.col("r").cast(pl.UInt64) * 2**32 + pl.col("s").cast(pl.UInt64)
    flags = []
    for flag, rows in (("_r_id_family", fam), ("_r_name_other", other), ("_head_member", head)):
        found = rows.select(key.alias("k"))["k"].unique()
        flags.append(pl.when(key.is_in(found.implode())).then(pl.lit(True)).otherwise(pl.lit(None, pl.Boolean)).alias(flag))
    return df.with_columns(flags)


def compare_pairs(pairs: pl.DataFrame, r: pl.DataFrame, s: pl.DataFrame, ms: MatchSettings) -> pl.DataFrame:
    """Each pair's comparison level per field (`lv_<field>`)."""
    df = (
        pairs.join(r.rename({c: f"r_{c}" for c in r.columns}), left_on="r", right_on="r_rec", how="left")
        .join(s.rename({c: f"s_{c}" for c in s.columns}), left_on="s", right_on="s_rec", how="left")
    )
    df = _household_flags(_as_head_pair(df), s)
    rn, sn = pl.col("r_name_norm"), pl.col("s_name_norm")
    # Name edit distance, worked out only where it can be at most 1 (a length difference of
    # at most 1 and the same first or last character, or a one-character name): elsewhere
    # `_dist` is 2, meaning two or more. Most random pairs are cut here.
    maybe = ((rn.str.len_chars().cast(pl.Int32) - sn.str.len_chars().cast(pl.Int32)).abs() <= 1) & (
        (rn.str.slice(0, 1) == sn.str.slice(0, 1)) | (rn.str.slice(-1, 1) == sn.str.slice(-1, 1))
        | (rn.str.len_chars() <= 1) | (sn.str.len_chars() <= 1))
    rid, sid = pl.col("r_id_norm"), pl.col("s_id_norm")
    rl, sl = rid.str.len_chars(), sid.str.len_chars()
    # A digit dropped or added: one edit between the two ID strings (only lengths one apart).
    off_one = ((rl.cast(pl.Int32) - sl.cast(pl.Int32)).abs() == 1).fill_null(False)
    # the rows each step works on, found in one context (in parallel)
    masks = df.select(
        maybe.fill_null(False).alias("maybe"),
        (rn.str.contains(r"[?口]") | sn.str.contains(r"[?口]")).fill_null(False).alias("has_q"),
        off_one.alias("off_one"),
    )
    dist = _on_rows(df, masks["maybe"], "r_name_norm", "s_name_norm", Levenshtein.distance, 2, "_dist")
    has_q = masks["has_q"]
    wild = pl.Series("_wild", [False] * df.height, dtype=pl.Boolean)
    if has_q.any():
        idx = has_q.arg_true()
        sub = df[idx]
        vals = _wildcard_equal(sub["r_name_norm"].to_list(), sub["s_name_norm"].to_list())
        wild = wild.scatter(idx, vals)
    id_dist = _on_rows(df, masks["off_one"], "r_id_norm", "s_id_norm", Levenshtein.distance, 99, "_id_dist")
    # 18-character IDs: how many positions differ, and (only where two do) whether they are
    # two adjacent characters swapped.
    id_ham = _id_hamming(df)
    df = df.with_columns(dist, id_dist, id_ham, wild)
    two = df.select((pl.col("_id_ham") == 2) & (rl == sl)).to_series().fill_null(False)
    swap = pl.Series("_id_swap", [False] * df.height, dtype=pl.Boolean)
    if two.any():
        idx = two.arg_true()
        sub = df.select("r_id_norm", "s_id_norm")[idx]
        swap = swap.scatter(idx, sub.select(is_adjacent_swap("r_id_norm", "s_id_norm")).to_series().fill_null(False))
    df = df.with_columns(swap)
    df = df.with_columns(_look_expr(df))
    return _with_levels(df, Context(min_known_prefix=ms.min_known_prefix))


def _level_waves(ctx: Context) -> list[list[pl.Expr]]:
    """The fields' level expressions in waves: a field joins the first wave after every
    field whose level it reads (a level may read the fields compared before). The fields of
    one wave are computed in one context, so polars works on them in parallel."""
    exprs = {f: c.expr(ctx).alias(f"lv_{f}") for f, c in COMPARISONS.items()}
    wave_of: dict[str, int] = {}
    for f, e in exprs.items():  # COMPARISONS' order: a field reads only the fields before it
        reads = {n[3:] for n in e.meta.root_names() if n.startswith("lv_")}
        wave_of[f] = max((wave_of[g] + 1 for g in reads), default=0)
    return [[exprs[f] for f in exprs if wave_of[f] == w] for w in range(max(wave_of.values(), default=-1) + 1)]


def _with_levels(df: pl.DataFrame, ctx: Context) -> pl.DataFrame:
    """`df` with each field's level `lv_<field>`, the columns in COMPARISONS' order."""
    for wave in _level_waves(ctx):
        df = df.with_columns(wave)
    levels = [f"lv_{f}" for f in COMPARISONS]
    return df.select(*[c for c in df.columns if c not in levels], *levels)


def score_pairs(pairs: pl.DataFrame, r: pl.DataFrame, s: pl.DataFrame, ms: MatchSettings,
                progress: Progress | None = None, label: str = "") -> tuple[pl.DataFrame, Model]:
    """Compare each candidate pair field by field, fit the model, weigh the pairs, and keep
    those worth reviewing.

    Works in chunks of `CHUNK_PAIRS` pairs and keeps only a slim frame per pair (ids, block,
    levels as enums, value frequency): the full comparison frame of a county-wide run does
    not fit in memory. Returns the pairs with weight >= `review_bits`, each with its levels,
    weight, probability, why, the runner-up weight of its roster row over all its
    candidates (`_second`) and the roster row's identity columns that `assign` needs; and
    the fitted model."""
    tf = _value_freq(r, s)
    slim = _compare_slim(pairs, r, s, ms, tf)
    model = _fit(slim, r, s, ms, progress, label)
    ref = _tf_ref(slim)
    bits = _bit_exprs(model, ref, ms)
    weight = _weight_expr(bits, model).alias("weight")
    # Weighed a slice at a time (the weight's intermediate columns over every pair would
    # take more memory than the pairs): of each slice keep the pairs worth reviewing and
    # each roster row's two best weights, from which its runner-up over all is taken.
    kept_parts, top_parts = [], []
    for start in range(0, max(slim.height, 1), CHUNK_PAIRS):
        part = slim.slice(start, CHUNK_PAIRS).with_columns(weight)
        kept_parts.append(part.filter(pl.col("weight") >= ms.review_bits))
        top_parts.append(_top_two(part))
        del part
    del slim
    second = _second_weights(pl.concat(top_parts))
    kept = pl.concat(kept_parts)
    del kept_parts, top_parts
    kept = kept.with_columns(pl.col("via").cast(pl.String), *[pl.col(f"lv_{f}").cast(pl.String) for f in COMPARISONS])
    kept = kept.with_columns(bits[f].alias(f"bw_{f}") for f in COMPARISONS)
    weight = pl.col("weight")
    kept = kept.with_columns((1.0 / (1.0 + (2.0 ** (-weight)))).alias("score"), _why(model).cast(pl.Categorical).alias("why"))
    kept = kept.drop("_tf", *[f"bw_{f}" for f in COMPARISONS]).join(second, on="r", how="left", maintain_order="left")
    return _with_roster_identity(kept, r), model


def _why(model: Model) -> pl.Expr:
    """`matches.why`: per field its level, bits and the clerks' label; and the prior (bits)."""
    fields = []
    for f, c in COMPARISONS.items():
        labels = {n: c.level(n).label for n in c.names}
        lv = pl.col(f"lv_{f}")
        fields.append(pl.struct(
            lv.alias("level"), pl.col(f"bw_{f}").round(2).alias("bits"),
            lv.replace_strict(labels, default=None, return_dtype=pl.String).alias("label"),
        ).alias(f))
    return pl.struct(fields + [pl.lit(round(model.prior_bits, 2)).alias("prior")]).struct.json_encode()


def _compare_slim(pairs: pl.DataFrame, r: pl.DataFrame, s: pl.DataFrame, ms: MatchSettings, tf: pl.DataFrame) -> pl.DataFrame:
    """`compare_pairs` chunk by chunk (each pair is compared on its own), keeping of each
    pair only what the model and the weights need: r, s, via, via_head, the levels (enums)
    and `_tf`, the frequency of the compared roster value when its level is adjusted for
    it (the name compared may be the guardian's, so it is taken from the comparison)."""
    slim_cols = [
        pl.col("r"), pl.col("s"), pl.col("via").cast(VIA), pl.col("via_head"),
        *[pl.col(f"lv_{f}").cast(LEVEL_TYPES[f]) for f in COMPARISONS],
    ]
    out = []
    for start in range(0, max(pairs.height, 1), CHUNK_PAIRS):
        chunk = compare_pairs(pairs.slice(start, CHUNK_PAIRS), r, s, ms)
        if TF_FIELD is None:
            out.append(chunk.select(*slim_cols, pl.lit(None, pl.Float64).alias("_tf")))
            continue
        col = f"r_{COMPARISONS[TF_FIELD].tf_column}"
        tf_here = pl.when(pl.col(f"lv_{TF_FIELD}").is_in(TF_LEVELS)).then(pl.col("tf")).alias("_tf")
        chunk = (
            chunk.select(*slim_cols, col)
            .join(tf, left_on=col, right_on="value", how="left", maintain_order="left")
            .select("r", "s", "via", "via_head", *[f"lv_{f}" for f in COMPARISONS], tf_here)
        )
        out.append(chunk)
    return pl.concat(out, rechunk=True)


def _vectors(frame: pl.DataFrame, skip_head: bool) -> pl.DataFrame:
    """Distinct comparison vectors with their counts; grouped a slice at a time before
    filtering so that a large frame is not copied."""
    cols = [f"lv_{f}" for f in COMPARISONS]
    keys = cols + (["via_head"] if skip_head and "via_head" in frame.columns else [])
    vec = pl.concat(
        [frame.slice(i, CHUNK_PAIRS).group_by(keys).len() for i in range(0, max(frame.height, 1), CHUNK_PAIRS)]
    ).group_by(keys).agg(pl.col("len").sum())
    if len(keys) > len(cols):
        vec = vec.filter(~pl.col("via_head")).drop("via_head")
    return vec.with_columns(pl.col(c).cast(pl.String) for c in cols)


def _sample_counts(r: pl.DataFrame, s: pl.DataFrame, ms: MatchSettings) -> tuple[dict[str, np.ndarray], int]:
    """Level counts over random roster x system pairs (for u): every pair when there are at
    most `u_max_pairs`, else `u_batch_pairs` at a time (fixed seed) until each level was seen
    `u_min_seen` times beyond the true links the sample may hold, or `u_max_pairs` were drawn."""
    total = r.height * s.height
    rr, ss = r["rec"].to_numpy(), s["rec"].to_numpy()
    counts = {f: np.zeros(len(c.names)) for f, c in COMPARISONS.items()}
    if not total:
        return counts, 0
    # a random pair is a link about once in |S| (each student is in a system once at most)
    expect = 1.0 / max(s.height, 1)
    rng = np.random.default_rng(ms.seed)
    drawn = 0
    while drawn < min(total, ms.u_max_pairs):
        n = min(ms.u_batch_pairs, min(total, ms.u_max_pairs) - drawn)
        if total <= ms.u_max_pairs:  # all pairs, in order
            k = np.arange(drawn, drawn + n)
            ri, si = rr[k // s.height], ss[k % s.height]
        else:
            ri, si = rr[rng.integers(0, r.height, n)], ss[rng.integers(0, s.height, n)]
        batch = pl.DataFrame({"r": ri, "s": si}, schema={"r": pl.UInt32, "s": pl.UInt32}).with_columns(
            pl.lit("random").alias("via"))
        add = level_counts(*encode(_vectors(compare_pairs(batch, r, s, ms), skip_head=False)))
        for f in counts:
            counts[f] += add[f]
        drawn += n
        if total > ms.u_max_pairs and all(
            (counts[f] - counts[f].sum() * expect >= ms.u_min_seen).all() for f in counts
        ):
            break
    return counts, drawn


def _fit(slim: pl.DataFrame, r: pl.DataFrame, s: pl.DataFrame, ms: MatchSettings,
         progress: Progress | None, label: str) -> Model:
    """The model of one system (reconcile.model), or the configured one for tiny inputs."""
    candidates = _vectors(slim, skip_head=True)
    if not ms.em or int(candidates["len"].sum() or 0) < ms.em_min_pairs:
        return fit_model(candidates, {}, 0, 1.0, SESSIONS, ms, progress, label)
    counts, drawn = _sample_counts(r, s, ms)
    return fit_model(candidates, counts, drawn, float(r.height * s.height), SESSIONS, ms, progress, label)


def _value_freq(r: pl.DataFrame, s: pl.DataFrame) -> pl.DataFrame:
    """Each value's share of all values in both files (for the term-frequency adjustment)."""
    col = COMPARISONS[TF_FIELD].tf_column if TF_FIELD else "name_norm"
    values = pl.concat([r.select(pl.col(col).alias("value")), s.select(pl.col(col).alias("value"))]).drop_nulls()
    return values.group_by("value").len().select("value", (pl.col("len") / max(values.height, 1)).alias("tf"))


def _tf_ref(slim: pl.DataFrame) -> float | None:
    """The mean frequency of the values whose level is adjusted (null when none are)."""
    adjusted = slim.filter(pl.col("_tf").is_not_null()).select("_tf")
    return adjusted["_tf"].rechunk().mean() if adjusted.height else None


def _bit_exprs(model: Model, ref: float | None, ms: MatchSettings) -> dict[str, pl.Expr]:
    """Each field's bits from its level; the `tf` levels adjusted for the value's frequency
    (as Splink does): agreement on a value is worth log2(mean frequency of agreeing values /
    this value's frequency) more bits, capped at +/- `tf_cap_bits`."""
    bits = {}
    for f, c in COMPARISONS.items():
        mapping = {n: model.bits(f, n) for n in c.names}
        bits[f] = pl.col(f"lv_{f}").replace_strict(mapping, default=0.0, return_dtype=pl.Float64).fill_null(0.0)
    if TF_FIELD is not None:
        if ref is not None:
            adj = (pl.lit(ref) / pl.col("_tf")).log(2).clip(-ms.tf_cap_bits, ms.tf_cap_bits)
            bits[TF_FIELD] = bits[TF_FIELD] + adj.fill_null(0.0)
        else:
            bits[TF_FIELD] = bits[TF_FIELD] + pl.lit(0.0)
    return bits


def _weight_expr(bits: dict[str, pl.Expr], model: Model) -> pl.Expr:
    """Match weight: the prior plus every field's bits."""
    return pl.lit(model.prior_bits) + pl.sum_horizontal([bits[f] for f in COMPARISONS])


def _top_two(scored: pl.DataFrame) -> pl.DataFrame:
    """Each roster row's two highest weights (r, weight), enough for `_second_weights`."""
    return (
        scored.select("r", "weight")
        .sort(["r", "weight"], descending=[False, True])
        .group_by("r", maintain_order=True)
        .head(2)
    )


def _second_weights(scored: pl.DataFrame) -> pl.DataFrame:
    """The runner-up weight of each roster row over all its candidates (for the margin)."""
    if not scored.height:
        return pl.DataFrame(schema={"r": pl.UInt32, "_second": pl.Float64})
    return (
        scored.select("r", "weight")
        .sort(["r", "weight"], descending=[False, True])
        .group_by("r", maintain_order=True)
        .agg(pl.col("weight").get(1, null_on_oob=True).alias("_second"))
    )


def _with_roster_identity(df: pl.DataFrame, r: pl.DataFrame) -> pl.DataFrame:
    """The roster columns `_identity` reads, joined back by roster rec (only for the pairs
    kept, so the wide comparison frame need not be)."""
    cols = ["id_status", "id_norm", "name_norm", "birth", "id_birth"]
    return df.join(
        r.select(pl.col("rec").alias("r"), *[pl.col(c).alias(f"r_{c}") for c in cols]),
        on="r", how="left", maintain_order="left",
    )


def _on_rows(df: pl.DataFrame, mask: pl.Series, a: str, b: str, scorer: Callable, default: int, name: str) -> pl.Series:
    """A rapidfuzz distance between columns a and b on the rows where `mask` holds (`default`
    elsewhere): Python strings are made only for those rows."""
    out = pl.Series(name, [default] * df.height, dtype=pl.Int32)
    if not mask.any():
        return out
    idx = mask.arg_true()
    sub = df.select(a, b)[idx]
    got = process.cpdist(sub[a].fill_null("").to_list(), sub[b].fill_null("").to_list(), scorer=scorer, workers=-1)
    return out.scatter(idx, pl.Series(got, dtype=pl.Int32))


def _id_hamming(df: pl.DataFrame) -> pl.Series:
    """Positions at which two 18-character IDs differ (null for other lengths). IDs of 18
    bytes (ASCII, nearly all) are compared as byte arrays; the others with rapidfuzz."""
    rid, sid = pl.col("r_id_norm"), pl.col("s_id_norm")
    both = df.select(((rid.str.len_chars() == 18) & (sid.str.len_chars() == 18)).fill_null(False).alias("both"),
                     ((rid.str.len_bytes() == 18) & (sid.str.len_bytes() == 18)).fill_null(False).alias("ascii"))
    out = pl.Series("_id_ham", [None] * df.height, dtype=pl.Int32)
    ascii_rows = both["ascii"]
    if ascii_rows.any():
        idx = ascii_rows.arg_true()
        sub = df.select("r_id_norm", "s_id_norm")[idx]
        a, b = (np.frombuffer(sub[c].str.join("").item().encode(), dtype=np.uint8).reshape(-1, 18) for c in sub.columns)
        out = out.scatter(idx, pl.Series((a != b).sum(axis=1), dtype=pl.Int32))
    rest = both["both"] & ~ascii_rows
    if rest.any():
        idx = rest.arg_true()
        sub = df.select("r_id_norm", "s_id_norm")[idx]
        got = process.cpdist(sub["r_id_norm"].to_list(), sub["s_id_norm"].to_list(), scorer=Hamming.distance, workers=-1)
        out = out.scatter(idx, pl.Series(got, dtype=pl.Int32))
    return out


def _look_expr(df: pl.DataFrame) -> pl.Series:
    """Names of equal length differing in one character, the two characters of similar shape
    (worked out only for the rows one character apart: few, among random pairs)."""
    rn, sn = pl.col("r_name_norm"), pl.col("s_name_norm")
    one = df.select(((pl.col("_dist") == 1) & (rn.str.len_chars() == sn.str.len_chars())).fill_null(False)).to_series()
    out = pl.Series("_look", [False] * df.height, dtype=pl.Boolean)
    if not one.any():
        return out
    idx = one.arg_true()
    sub = df.select("r_name_norm", "s_name_norm")[idx]
    width = int(sub.select(rn.str.len_chars().max()).item() or 0)
    ca = pl.coalesce([pl.when(rn.str.slice(i, 1) != sn.str.slice(i, 1)).then(rn.str.slice(i, 1)) for i in range(width)])
    cb = pl.coalesce([pl.when(rn.str.slice(i, 1) != sn.str.slice(i, 1)).then(sn.str.slice(i, 1)) for i in range(width)])
    chars = sub.select(ca.alias("a"), cb.alias("b"))
    return out.scatter(idx, lookalike_chars(chars["a"], chars["b"]).fill_null(False))


def _identity() -> list[pl.Expr]:
    """Who a roster row is about, two ways (valid ID; name + birth date), for telling the
    same child claimed twice from two different children. Falls back to the row itself."""
    own = pl.format("rec:{}", pl.col("r"))
    by_id = pl.when(pl.col("r_id_status").is_in(USABLE)).then(pl.col("r_id_norm"))
    birth = pl.coalesce("r_birth", "r_id_birth").cast(pl.String)
    by_name = pl.concat_str([pl.col("r_name_norm"), birth], separator="|")
    return [pl.coalesce(by_id, own).alias("_who"), pl.coalesce(by_name, own).alias("_who2")]


def assign(scored: pl.DataFrame, ms: MatchSettings, rounds: int = 6) -> pl.DataFrame:
    """Best candidate per roster row; one system record goes to one student unless the
    students are the same person claimed twice (kept for the duplicate rule). `scored` is
    `score_pairs`' output: it carries each roster row's runner-up weight (`_second`)."""
    cand = scored.filter(pl.col("weight") >= ms.review_bits).with_columns(_identity())
    household = cand.filter(pl.col("via_head"))
    pool = cand.filter(~pl.col("via_head"))
    chosen = []
    taken_s = pl.DataFrame(schema={"s": pl.UInt32})
    for _ in range(rounds):
        if pool.is_empty():
            break
        best = pool.sort(["r", "weight", "s"], descending=[False, True, False]).unique("r", keep="first", maintain_order=True)
        top = best.sort(["s", "weight", "r"], descending=[False, True, False]).unique("s", keep="first", maintain_order=True)
        winners = (
            best.join(top.select("s", pl.col("_who").alias("_tw"), pl.col("_who2").alias("_tw2")), on="s")
            .filter((pl.col("_who") == pl.col("_tw")) | (pl.col("_who2") == pl.col("_tw2")))
            .drop("_tw", "_tw2")
        )
        chosen.append(winners)
        taken_r = winners.select("r").unique()
        taken_s = pl.concat([taken_s, winners.select("s").unique()])
        pool = pool.join(taken_r, on="r", how="anti").join(taken_s, on="s", how="anti")
    # Household links stand in for students the export does not list; keep them for students found nowhere else.
    links = pl.concat(chosen) if chosen else pool.head(0)
    household = household.join(links.select("r"), on="r", how="anti").sort(["r", "weight"], descending=[False, True]).unique("r", keep="first")
    links = pl.concat([links, household], how="diagonal_relaxed")
    sure = (pl.col("weight") >= ms.matched_bits) & (
        pl.col("_second").is_null() | ((pl.col("weight") - pl.col("_second")) >= ms.margin_bits) | (pl.col("lv_id") == "exact")
    )
    return links.with_columns(
        pl.when(sure).then(pl.lit("matched")).otherwise(pl.lit("review")).alias("status"),
        pl.when(pl.col("via_head")).then(pl.lit("household_head")).otherwise(pl.col("via")).alias("via"),
    ).sort("r")


@dataclass(frozen=True)
class SystemLinks:
    """One system's links, its fitted model and its blocking figures (`blocking_figures`)."""

    links: pl.DataFrame
    model: Model
    blocking: Mapping[str, float]


def link_system(roster: pl.DataFrame, system: pl.DataFrame, system_name: str, ms: MatchSettings,
                progress: Progress | None = None) -> SystemLinks:
    """Links from roster records to one system's records (at most one per roster row), the
    model fitted on them, and how many candidate pairs each roster row had."""
    r = _prep(roster, ROSTER_COLS)
    s = _prep(system, SYSTEM_COLS)
    pairs, capped = _candidates(r, s, ms)
    figures = blocking_figures(pairs, r.height, capped)
    if progress:
        progress(f"blocking {system_name}: {figures['pairs']} candidate pairs, {figures['mean']} a roster row on "
                 f"average, {figures['max']} at most; {capped} roster rows cut to the best {ms.max_candidates}")
    scored, model = score_pairs(pairs, r, s, ms, progress, system_name)
    del pairs
    links = assign(scored, ms)
    del scored
    keep = ["r", "s", "weight", "score", "status", "via", "why"] + [f"lv_{f}" for f in COMPARISONS]
    out = links.select(keep).rename({"r": "roster_rec", "s": "system_rec"}).with_columns(pl.lit(system_name).alias("system"))
    return SystemLinks(out, model, MappingProxyType(figures))


def match_system(roster: pl.DataFrame, system: pl.DataFrame, system_name: str, ms: MatchSettings,
                 progress: Progress | None = None) -> tuple[pl.DataFrame, Model]:
    """`link_system`'s links and model."""
    got = link_system(roster, system, system_name, ms, progress)
    return got.links, got.model
