"""Find each roster student in a system: blocking, comparison levels, one scoring model.

Candidates come from blocking joins (exact ID, ID one digit off or two digits swapped, the
known prefix of a damaged ID, birth date with the name's pinyin or its first/last
character, the household, name within the village by place key). Each candidate pair is compared field by
field; each field falls into the first comparison level whose condition holds and
contributes log2(m/u) bits (Fellegi–Sunter). The sum plus the prior gives the match weight
and probability; every link keeps each field's level and contribution in `why`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import polars as pl
from rapidfuzz import process
from rapidfuzz.distance import Levenshtein

from .config import COMPARISONS, MatchSettings
from .idcard import digit_diff_positions, is_adjacent_swap
from .names import DOT, in_charset, lookalike_chars

__all__ = ["candidate_pairs", "score_pairs", "estimate_model", "Model", "assign", "match_system", "BLOCKS"]

USABLE = ["valid", "legacy15"]
DAMAGED = ["number_damaged", "sci_damaged"]
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

ROSTER_COLS = [
    "rec", "id_norm", "id_status", "id_known", "id_birth", "id_gender", "birth", "gender_norm",
    "name_norm", "name_py", "head_name_norm", "head_py", "head_id_norm", "town_key", "village_key",
]
SYSTEM_COLS = [
    "rec", "id_norm", "id_status", "id_known", "id_birth", "id_gender", "gender_norm",
    "name_norm", "name_py", "head_name_norm", "head_py", "head_id_norm", "household", "town_key",
    "village_key", "is_head_row",
]

# Scoring works through the candidate pairs this many at a time: a county-wide run has tens
# of millions of them, and the joined comparison frame holds ~50 columns per pair.
CHUNK_PAIRS = 1_000_000
# Levels and blocks as enums (4 bytes a row rather than a 16-byte string view) in the frames
# kept for every candidate pair; the physical order of VIA is the blocks' rank.
VIA = pl.Enum(list(BLOCKS))
_MAX_RECS = 2**28  # records per side that a pair key (see _first_block_per_pair) can hold
LEVEL_TYPES: dict[str, pl.Enum] = {f: pl.Enum(list(names)) for f, names in COMPARISONS.items()}


def _prep(df: pl.DataFrame, cols: list[str]) -> pl.DataFrame:
    missing = [c for c in cols if c not in df.columns]
    df = df.with_columns(pl.lit(None).alias(c) for c in missing)
    df = df.select(cols)
    if "is_head_row" in cols:
        df = df.with_columns(pl.col("is_head_row").cast(pl.Boolean).fill_null(False))
    # Excel's short scientific display rounds its last digit: trust one digit fewer.
    known = pl.when(pl.col("id_status") == "sci_damaged").then(pl.col("id_known") - 1).otherwise(pl.col("id_known"))
    return df.with_columns(pl.col("rec").cast(pl.UInt32), known.alias("id_known"))


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
    """All blocked candidate pairs (r, s) with the strongest block that found them."""
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

    # In BLOCKS order: of a pair found by several blocks the first one found is kept. Each
    # block is built only when its turn comes, so one block's raw pairs exist at a time.
    blocks: list[Callable[[], pl.DataFrame]] = [
        lambda: _pairs(r.filter(pl.col("id_norm").str.len_chars() == 18), s, "id_norm", "id"),
        lambda: _near_id_pairs(r, s),
        lambda: _prefix_pairs(r, s, ms.min_known_prefix),
        lambda: _pairs(rb, sb, ["b", "name_py"], "name_birth"),
        lambda: _pairs(r, s, "head_id_norm", "household"),
        via_member,
        birth_char,
        lambda: _pairs(r, s, ["name_py", "village_key"], "name_place"),
        lambda: _pairs(r, s, ["name_py", "head_py"], "name_place"),
    ]
    return _first_block_per_pair(blocks)


def _first_block_per_pair(blocks: Sequence[Callable[[], pl.DataFrame]]) -> pl.DataFrame:
    """Each distinct pair once, with the strongest block that found it, sorted by (r, s).

    A county-wide run finds tens of millions of pairs, many several times. Each block is
    built, cut at once to one u64 per pair — r (28 bits), s (32) and the block's rank (4),
    in that order — and released before the next is built. One sort of that single column
    then puts each pair's rows together, strongest block first, and the first of each pair
    is kept: no hash table, no second copy of (r, s, via) rows."""
    r64, s64 = pl.col("r").cast(pl.UInt64), pl.col("s").cast(pl.UInt64)
    rank = pl.col("via").cast(VIA).to_physical().cast(pl.UInt64)  # VIA's order is BLOCKS'
    keyed, seen = [], []
    for build in blocks:
        b = build()
        if b.height:
            seen.append(b["via"][0])
            if b["r"].max() >= _MAX_RECS or b["s"].max() >= _MAX_RECS:  # type: ignore[operator]
                raise ValueError(f"more than {_MAX_RECS:,} records on one side: split the run")
            keyed.append(b.select(r64 * 2**36 + s64 * 16 + rank)["r"])
        del b
    assert seen == sorted(seen, key=BLOCKS.index), "blocks must come in BLOCKS order"
    if not keyed:
        return pl.DataFrame(schema={"r": pl.UInt32, "s": pl.UInt32, "via": VIA})
    k = pl.concat(keyed).sort()
    del keyed
    pair = pl.col("k") // 16
    k = k.to_frame("k").filter((pair != pair.shift(1)).fill_null(True))
    return k.select(
        (pl.col("k") // 2**36).cast(pl.UInt32).alias("r"),
        (pl.col("k") // 16 % 2**32).cast(pl.UInt32).alias("s"),
        pl.lit(pl.Series(BLOCKS, dtype=VIA)).gather(pl.col("k") % 16).alias("via"),
    )


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


def _level_exprs(ms: MatchSettings, min_known: int) -> dict[str, pl.Expr]:
    """The comparison level of each field, as one expression per field (null: no evidence)."""
    rid, sid = pl.col("r_id_norm"), pl.col("s_id_norm")
    both18 = (rid.str.len_chars() == 18) & (sid.str.len_chars() == 18)
    diff = digit_diff_positions(rid, sid)
    r_dmg = pl.col("r_id_status").is_in(DAMAGED) & (pl.col("r_id_known") >= min_known)
    s_dmg = pl.col("s_id_status").is_in(DAMAGED) & (pl.col("s_id_known") >= min_known)
    unusable = pl.col("r_id_status").is_in(["missing", "bad_length", "bad_chars", "sci_damaged", "number_damaged"]) | pl.col(
        "s_id_status"
    ).is_in(["missing", "bad_length", "bad_chars", "sci_damaged", "number_damaged"])
    id_level = (
        pl.when(rid.is_null() | sid.is_null()).then(None)
        .when(both18 & (rid == sid)).then(pl.lit("exact"))
        .when(both18 & (diff.list.len() == 1)).then(pl.lit("one_digit"))
        .when((rid.str.len_chars() - sid.str.len_chars()).abs() == 1).then(
            pl.when(pl.col("_id_dist") == 1).then(pl.lit("one_digit")).otherwise(pl.lit("else"))
        )
        .when(both18 & is_adjacent_swap(rid, sid)).then(pl.lit("swap"))
        .when(both18 & (diff.list.len() == 2) & ~(pl.col("r_id_status").is_in(USABLE) & pl.col("s_id_status").is_in(USABLE))).then(pl.lit("two_digit"))
        .when(r_dmg & (sid.str.slice(0, pl.col("r_id_known")) == rid.str.slice(0, pl.col("r_id_known")))).then(pl.lit("prefix"))
        .when(s_dmg & (rid.str.slice(0, pl.col("s_id_known")) == sid.str.slice(0, pl.col("s_id_known")))).then(pl.lit("prefix"))
        .when(unusable).then(None)
        .when(~pl.col("r_id_status").is_in(USABLE) | ~pl.col("s_id_status").is_in(USABLE)).then(pl.lit("bad_else"))
        .otherwise(pl.lit("else"))
    )
    rn, sn = pl.col("r_name_norm"), pl.col("s_name_norm")
    name_level = (
        pl.when(rn.is_null() | sn.is_null()).then(None)
        .when((rn == sn) | (rn.str.replace_all(DOT, "", literal=True) == sn.str.replace_all(DOT, "", literal=True))).then(pl.lit("exact"))
        .when(pl.col("r_name_py") == pl.col("s_name_py")).then(pl.lit("pinyin"))
        .when(pl.col("_wild")).then(pl.lit("wildcard"))
        .when(pl.col("_look")).then(pl.lit("lookalike"))
        .when(pl.col("_dist") <= 1).then(pl.lit("close"))
        .otherwise(pl.lit("else"))
    )
    sb = pl.col("s_id_birth")
    birth_level = (
        pl.when(sb.is_null() | (pl.col("r_birth").is_null() & pl.col("r_id_birth").is_null())).then(None)
        .when((sb == pl.col("r_birth")) | (sb == pl.col("r_id_birth"))).then(pl.lit("exact"))
        # a birth date read from an ID that fails its checksum is no evidence when it disagrees
        # (the typo may sit in the date: the ID level already counts it)
        .when(~pl.col("s_id_status").is_in(USABLE) | (pl.col("r_birth").is_null() & ~pl.col("r_id_status").is_in(USABLE))).then(None)
        .otherwise(pl.lit("else"))
    )
    rg = pl.coalesce("r_gender_norm", "r_id_gender")
    sg = pl.coalesce("s_id_gender", "s_gender_norm")
    gender_level = pl.when(rg.is_null() | sg.is_null()).then(None).when(rg == sg).then(pl.lit("agree")).otherwise(pl.lit("disagree"))
    rh, sh = pl.col("r_head_name_norm"), pl.col("s_head_name_norm")
    head_level = (
        pl.when((pl.col("r_head_id_norm") == pl.col("s_head_id_norm")) | (rh == sh)).then(pl.lit("exact"))
        .when(rh.is_null() | sh.is_null()).then(None)
        .when(pl.col("r_head_py") == pl.col("s_head_py")).then(pl.lit("pinyin"))
        .otherwise(pl.lit("else"))
    )
    # place keys (reconcile.places): 坝北村 and 坝北村委会 are one village
    rv, sv, rt, st = pl.col("r_village_key"), pl.col("s_village_key"), pl.col("r_town_key"), pl.col("s_town_key")
    place_level = (
        pl.when(rv.is_null() | sv.is_null()).then(None)
        .when((rv == sv) & (rt.is_null() | st.is_null() | (rt == st))).then(pl.lit("village"))
        .when(rt == st).then(pl.lit("town"))
        .otherwise(pl.lit("else"))
    )
    return {"id": id_level, "name": name_level, "birth": birth_level, "gender": gender_level, "head": head_level, "place": place_level}


def _as_head_pair(df: pl.DataFrame) -> pl.DataFrame:
    """A heads-only row stands for the household: compare the roster's guardian with it."""
    head = pl.col("s_is_head_row") & (pl.col("via") == "household") & (pl.col("r_name_norm") != pl.col("s_name_norm"))
    swap = {
        "r_name_norm": "r_head_name_norm", "r_name_py": "r_head_py", "r_id_norm": "r_head_id_norm",
    }
    out = df.with_columns(
        [pl.when(head).then(pl.col(src)).otherwise(pl.col(dst)).alias(dst) for dst, src in swap.items()]
        + [
            pl.when(head).then(pl.lit("valid")).otherwise(pl.col("r_id_status")).alias("r_id_status"),
            pl.when(head).then(None).otherwise(pl.col("r_birth")).alias("r_birth"),
            pl.when(head).then(None).otherwise(pl.col("r_id_birth")).alias("r_id_birth"),
            pl.when(head).then(None).otherwise(pl.col("r_gender_norm")).alias("r_gender_norm"),
            pl.when(head).then(None).otherwise(pl.col("r_id_gender")).alias("r_id_gender"),
            head.alias("via_head"),
        ]
    )
    return out


def compare_pairs(pairs: pl.DataFrame, r: pl.DataFrame, s: pl.DataFrame, ms: MatchSettings) -> pl.DataFrame:
    """Each pair's comparison level per field (`lv_<field>`)."""
    df = (
        pairs.join(r.rename({c: f"r_{c}" for c in r.columns}), left_on="r", right_on="r_rec", how="left")
        .join(s.rename({c: f"s_{c}" for c in s.columns}), left_on="s", right_on="s_rec", how="left")
    )
    df = _as_head_pair(df)
    a = df["r_name_norm"].fill_null("").to_list()
    b = df["s_name_norm"].fill_null("").to_list()
    dist = process.cpdist(a, b, scorer=Levenshtein.distance, workers=-1) if df.height else []
    rn, sn = pl.col("r_name_norm"), pl.col("s_name_norm")
    has_q = df.select(
        (rn.str.contains(r"[?口]") | sn.str.contains(r"[?口]")).fill_null(False)
    ).to_series()
    wild = pl.Series("_wild", [False] * df.height, dtype=pl.Boolean)
    if has_q.any():
        idx = has_q.arg_true()
        sub = df[idx]
        vals = _wildcard_equal(sub["r_name_norm"].to_list(), sub["s_name_norm"].to_list())
        wild = wild.scatter(idx, vals)
    # A digit dropped or added: one edit between the two ID strings.
    id_dist = process.cpdist(
        df["r_id_norm"].fill_null("").to_list(), df["s_id_norm"].fill_null("").to_list(),
        scorer=Levenshtein.distance, workers=-1,
    ) if df.height else []
    df = df.with_columns(pl.Series("_dist", dist, dtype=pl.Int32), pl.Series("_id_dist", id_dist, dtype=pl.Int32), wild)
    df = df.with_columns(_look_expr(df))
    levels = _level_exprs(ms, ms.min_known_prefix)
    return df.with_columns(levels[f].alias(f"lv_{f}") for f in COMPARISONS)


def score_pairs(pairs: pl.DataFrame, r: pl.DataFrame, s: pl.DataFrame, ms: MatchSettings) -> pl.DataFrame:
    """Compare each candidate pair field by field, weigh it, and keep those worth reviewing.

    Works in chunks of `CHUNK_PAIRS` pairs and keeps only a slim frame per pair (ids, block,
    levels as enums, name frequency): the full comparison frame of a county-wide run does not
    fit in memory. Returns the pairs with weight >= `review_bits`, each with its levels,
    weight, probability, why, the runner-up weight of its roster row over all its
    candidates (`_second`) and the roster row's identity columns that `assign` needs."""
    tf = _name_freq(r, s)
    slim = _compare_slim(pairs, r, s, ms, tf)
    model = estimate_model(slim, r, s, ms)
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
    why = pl.struct(
        [pl.struct(pl.col(f"lv_{f}").alias("level"), pl.col(f"bw_{f}").round(2).alias("bits")).alias(f) for f in COMPARISONS]
        + [pl.lit(round(model.prior_bits, 2)).alias("prior")]
    ).struct.json_encode()
    kept = kept.with_columns((1.0 / (1.0 + (2.0 ** (-weight)))).alias("score"), why.alias("why"))
    kept = kept.drop("_tf", *[f"bw_{f}" for f in COMPARISONS]).join(second, on="r", how="left", maintain_order="left")
    return _with_roster_identity(kept, r)


def _compare_slim(pairs: pl.DataFrame, r: pl.DataFrame, s: pl.DataFrame, ms: MatchSettings, tf: pl.DataFrame) -> pl.DataFrame:
    """`compare_pairs` chunk by chunk (each pair is compared on its own), keeping of each
    pair only what the model and the weights need: r, s, via, via_head, the levels (enums)
    and `_tf`, the frequency of the compared roster name when the names agree exactly (the
    name compared may be the guardian's, so it is taken from the comparison, not from r)."""
    slim_cols = [
        pl.col("r"), pl.col("s"), pl.col("via").cast(VIA), pl.col("via_head"),
        *[pl.col(f"lv_{f}").cast(LEVEL_TYPES[f]) for f in COMPARISONS],
    ]
    out = []
    for start in range(0, max(pairs.height, 1), CHUNK_PAIRS):
        chunk = compare_pairs(pairs.slice(start, CHUNK_PAIRS), r, s, ms)
        tf_exact = pl.when(pl.col("lv_name") == "exact").then(pl.col("tf")).alias("_tf")
        chunk = (
            chunk.select(*slim_cols, "r_name_norm")
            .join(tf, left_on="r_name_norm", right_on="name_norm", how="left", maintain_order="left")
            .select("r", "s", "via", "via_head", *[f"lv_{f}" for f in COMPARISONS], tf_exact)
        )
        out.append(chunk)
    return pl.concat(out, rechunk=True)


def _name_freq(r: pl.DataFrame, s: pl.DataFrame) -> pl.DataFrame:
    """Each name's share of all names in both files (for the term-frequency adjustment)."""
    names = pl.concat([r.select("name_norm"), s.select("name_norm")]).drop_nulls()
    return names.group_by("name_norm").len().select("name_norm", (pl.col("len") / max(names.height, 1)).alias("tf"))


def _tf_ref(slim: pl.DataFrame) -> float | None:
    """The mean frequency of the names that agree exactly (null when none do)."""
    exact = slim.filter(pl.col("lv_name") == "exact").select("_tf")
    return exact["_tf"].rechunk().mean() if exact.height else None


def _bit_exprs(model: Model, ref: float | None, ms: MatchSettings) -> dict[str, pl.Expr]:
    """Each field's bits from its level; the name's `exact` level adjusted for the name's
    frequency (as Splink does): agreement on a name is worth log2(mean frequency of agreeing
    names / this name's frequency) more bits, capped at +/- `tf_cap_bits`."""
    bits = {}
    for f, names in COMPARISONS.items():
        mapping = {n: model.bits(f, n) for n in names}
        bits[f] = pl.col(f"lv_{f}").replace_strict(mapping, default=0.0, return_dtype=pl.Float64).fill_null(0.0)
    if ref is not None:
        cap = ms.tf_cap_bits
        adj = (pl.lit(ref) / pl.col("_tf")).log(2).clip(-cap, cap)
        bits["name"] = bits["name"] + pl.when(pl.col("lv_name") == "exact").then(adj.fill_null(0.0)).otherwise(0.0)
    else:
        bits["name"] = bits["name"] + pl.lit(0.0)
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


def _look_expr(df: pl.DataFrame) -> pl.Series:
    """Names of equal length differing in one character, the two characters of similar shape."""
    rn, sn = pl.col("r_name_norm"), pl.col("s_name_norm")
    one = (pl.col("_dist") == 1) & (rn.str.len_chars() == sn.str.len_chars())
    width = int(df.select(rn.str.len_chars().max()).item() or 0) if df.height else 0
    if not width:
        return pl.Series("_look", [False] * df.height, dtype=pl.Boolean)
    ca = pl.coalesce([pl.when(rn.str.slice(i, 1) != sn.str.slice(i, 1)).then(rn.str.slice(i, 1)) for i in range(width)])
    cb = pl.coalesce([pl.when(rn.str.slice(i, 1) != sn.str.slice(i, 1)).then(sn.str.slice(i, 1)) for i in range(width)])
    chars = df.select(pl.when(one).then(ca).alias("a"), pl.when(one).then(cb).alias("b"))
    return lookalike_chars(chars["a"], chars["b"]).alias("_look")


class Model:
    """Fitted Fellegi–Sunter parameters: m and u per field and level, and the prior."""

    def __init__(self, m: dict[str, dict[str, float]], u: dict[str, dict[str, float]], prior_bits: float, fitted: bool) -> None:
        self.m, self.u, self.prior_bits, self.fitted = m, u, prior_bits, fitted

    def bits(self, field: str, level: str) -> float:
        # Rounded so that the same inputs give the same weights to the last digit.
        return round(math.log2(self.m[field][level] / self.u[field][level]), 9)


def _random_pairs(r: pl.DataFrame, s: pl.DataFrame, n: int, seed: int = 20240901) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    n = int(min(n, r.height * s.height))
    ri = r["rec"].to_numpy()[rng.integers(0, r.height, n)]
    si = s["rec"].to_numpy()[rng.integers(0, s.height, n)]
    return pl.DataFrame({"r": ri, "s": si, "via": ["random"] * n}, schema={"r": pl.UInt32, "s": pl.UInt32, "via": pl.String})


def estimate_model(df: pl.DataFrame, r: pl.DataFrame, s: pl.DataFrame, ms: MatchSettings) -> Model:
    """Fellegi–Sunter parameters from the data, as Splink estimates them:

    * u (level | different persons) from random roster x system pairs (a level seen fewer
      than 10 times there keeps its configured u);
    * m (level | same person) and the share of true links among the candidate pairs by
      expectation maximisation over the candidate pairs' comparison vectors (one row per
      distinct vector with its count), the configured m being the starting point and a
      Dirichlet prior worth `em_prior_pairs` pairs;
    * the prior odds of a random pair: the expected number of true links over |R| x |S|.

    With fewer than `em_min_pairs` candidate pairs the configured values are used."""
    m0 = {f: {n: ms.levels[f][n].m for n in names} for f, names in COMPARISONS.items()}
    u0 = {f: {n: ms.levels[f][n].u for n in names} for f, names in COMPARISONS.items()}
    cols = [f"lv_{f}" for f in COMPARISONS]

    def vectors(frame: pl.DataFrame, skip_head: bool) -> pl.DataFrame:
        """Distinct comparison vectors with their counts (levels as strings); grouped a slice
        at a time before filtering or casting so that a large frame is not copied."""
        keys = cols + (["via_head"] if skip_head and "via_head" in frame.columns else [])
        vec = pl.concat(
            [frame.slice(i, CHUNK_PAIRS).group_by(keys).len() for i in range(0, max(frame.height, 1), CHUNK_PAIRS)]
        ).group_by(keys).agg(pl.col("len").sum())
        if len(keys) > len(cols):
            vec = vec.filter(~pl.col("via_head")).drop("via_head")
        return vec.with_columns(pl.col(c).cast(pl.String) for c in cols)

    pairs = vectors(df, skip_head=True)
    if not ms.em or int(pairs["len"].sum() or 0) < ms.em_min_pairs:
        return Model(m0, u0, ms.prior_bits, False)

    def encode(vec: pl.DataFrame) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        # Sorted: group order varies between runs, and float sums must not.
        vec = vec.sort(cols, nulls_last=True)
        idx = {}
        for f, names in COMPARISONS.items():
            code = {n: i for i, n in enumerate(names)}
            idx[f] = vec[f"lv_{f}"].replace_strict(code, default=-1, return_dtype=pl.Int32).fill_null(-1).to_numpy()
        return vec["len"].to_numpy().astype(float), idx

    # m and the candidate-pair prior by EM (u of the candidate population estimated alongside)
    cnt, idx = encode(pairs)
    a = ms.em_prior_pairs
    m = {f: np.array([m0[f][n] for n in names]) for f, names in COMPARISONS.items()}
    pm0 = {f: v / v.sum() for f, v in m.items()}
    uc = {f: np.full(len(names), 1.0 / len(names)) for f, names in COMPARISONS.items()}
    lam = 0.5
    for _ in range(ms.em_iterations):
        logit = np.full(len(cnt), math.log(lam / (1 - lam)))
        for f in COMPARISONS:
            i = idx[f]
            ok = i >= 0
            logit[ok] += np.log(m[f][i[ok]]) - np.log(uc[f][i[ok]])
        w = 1.0 / (1.0 + np.exp(-np.clip(logit, -700, 700)))
        wm, wu = cnt * w, cnt * (1 - w)
        for f in COMPARISONS:
            i = idx[f]
            k = len(m[f])
            ok = i >= 0
            sm = np.bincount(i[ok], weights=wm[ok], minlength=k)
            su = np.bincount(i[ok], weights=wu[ok], minlength=k)
            m[f] = (sm + a * pm0[f]) / (sm.sum() + a)
            uc[f] = (su + 1.0 / k) / (su.sum() + 1.0)
        lam = min(max(wm.sum() / cnt.sum(), 1e-6), 1 - 1e-6)
    links = lam * cnt.sum()
    prior = min(links / (r.height * s.height), 0.5)
    # u from random pairs, less the true links a random sample holds (prior x m)
    rnd = compare_pairs(_random_pairs(r, s, 200_000), r, s, ms)
    rc, ridx = encode(vectors(rnd, skip_head=False))
    u = {}
    for f, names in COMPARISONS.items():
        i = ridx[f]
        ok = i >= 0
        cnt_r = np.bincount(i[ok], weights=rc[ok], minlength=len(names))
        tot = cnt_r.sum()
        true_cnt = tot * prior * m[f]
        clean = np.maximum(cnt_r - true_cnt, 0.0)
        u[f] = np.array([clean[j] / (tot * (1 - prior)) if tot and clean[j] >= 10 else u0[f][n] for j, n in enumerate(names)])
    fm = {f: {n: float(m[f][j]) for j, n in enumerate(names)} for f, names in COMPARISONS.items()}
    fu = {f: {n: float(u[f][j]) for j, n in enumerate(names)} for f, names in COMPARISONS.items()}
    return Model(fm, fu, round(math.log2(prior / (1 - prior)), 9), True)


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


def match_system(roster: pl.DataFrame, system: pl.DataFrame, system_name: str, ms: MatchSettings) -> pl.DataFrame:
    """Links from roster records to one system's records (at most one per roster row)."""
    r = _prep(roster, ROSTER_COLS)
    s = _prep(system, SYSTEM_COLS)
    pairs = candidate_pairs(r, s, ms)
    scored = score_pairs(pairs, r, s, ms)
    del pairs
    links = assign(scored, ms)
    del scored
    keep = ["r", "s", "weight", "score", "status", "via", "why"] + [f"lv_{f}" for f in COMPARISONS]
    return links.select(keep).rename({"r": "roster_rec", "s": "system_rec"}).with_columns(pl.lit(system_name).alias("system"))
