"""Splink 5 (DuckDB) on the same normalised records, set up as a careful user would.

Benchmark-only (`[dependency-groups] bench`). DuckDB's string functions count UTF-8 bytes,
so Splink gets ASCII columns: the name's pinyin (whole, surname, given name), the ID with
its ASCII digits, the guardian's name in pinyin; Chinese text is used only for exact
agreement. Training is Splink's own: u by random sampling, the prior from an exact-ID rule,
m by EM in two sessions (blocked on ID; on birth date + name pinyin); term frequencies on
the name. Links: every pair at p >= `threshold`, then one system record per roster row and
one roster row per system record (greedy by probability), as `cluster` would not give
a link between two sources one-to-one.
"""

from __future__ import annotations

import logging

import polars as pl


def _frame(df: pl.DataFrame, source: str) -> pl.DataFrame:
    birth = pl.coalesce("birth", "id_birth") if "birth" in df.columns else pl.col("id_birth")
    gender = pl.coalesce("gender_norm", "id_gender")
    idn = pl.col("id_norm")
    return df.select(
        pl.format("{}-{}", pl.lit(source), pl.col("rec")).alias("unique_id"),
        pl.col("rec").cast(pl.Int64).alias("rec"),
        pl.when(idn.str.contains(r"^[0-9X]{15,19}$")).then(idn).alias("id"),
        pl.col("name_norm").alias("name"),
        pl.col("name_py").alias("name_py"),
        pl.col("name_py").str.slice(0, 2).alias("py2"),
        birth.cast(pl.String).alias("birth"),
        gender.replace({"男": "m", "女": "f"}).alias("gender"),
        pl.col("head_py").alias("head_py") if "head_py" in df.columns else pl.lit(None, pl.String).alias("head_py"),
        pl.col("head_id_norm").alias("head_id") if "head_id_norm" in df.columns else pl.lit(None, pl.String).alias("head_id"),
        pl.col("village").alias("village") if "village" in df.columns else pl.lit(None, pl.String).alias("village"),
    )


def splink_links(roster: pl.DataFrame, system: pl.DataFrame, threshold: float = 0.5) -> pl.DataFrame:
    """(roster_rec, system_rec, score) one-to-one links from Splink 5."""
    import splink.comparison_library as cl
    import splink.comparison_level_library as cll
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    logging.getLogger("splink").setLevel(logging.ERROR)
    db = DuckDBAPI()
    left = db.register(_frame(roster, "r").to_arrow(), dataset_display_name="roster")
    right = db.register(_frame(system, "s").to_arrow(), dataset_display_name="system")
    id_cmp = cl.CustomComparison(
        output_column_name="id",
        comparison_levels=[
            cll.NullLevel("id"),
            cll.ExactMatchLevel("id"),
            cll.DamerauLevenshteinLevel("id", 1),
            cll.DamerauLevenshteinLevel("id", 2),
            cll.ElseLevel(),
        ],
    )
    name_cmp = cl.CustomComparison(
        output_column_name="name",
        comparison_levels=[
            cll.NullLevel("name_py"),
            cll.ExactMatchLevel("name").configure(tf_adjustment_column="name"),
            cll.ExactMatchLevel("name_py"),
            cll.DamerauLevenshteinLevel("name_py", 1),
            cll.JaroWinklerLevel("name_py", 0.9),
            cll.JaroWinklerLevel("name_py", 0.8),
            cll.ElseLevel(),
        ],
    )
    settings = SettingsCreator(
        link_type="link_only",
        unique_id_column_name="unique_id",
        comparisons=[
            id_cmp,
            name_cmp,
            cl.ExactMatch("birth"),
            cl.ExactMatch("gender"),
            cl.CustomComparison(
                output_column_name="head",
                comparison_levels=[
                    cll.NullLevel("head_py"),
                    cll.ExactMatchLevel("head_py"),
                    cll.JaroWinklerLevel("head_py", 0.9),
                    cll.ElseLevel(),
                ],
            ),
            cl.ExactMatch("village"),
        ],
        blocking_rules_to_generate_predictions=[
            block_on("id"),
            "substr(l.id, 1, 14) = substr(r.id, 1, 14)",
            "substr(l.id, 7, 12) = substr(r.id, 7, 12)",
            "substr(l.id, 1, 6) = substr(r.id, 1, 6) and substr(l.id, 15, 4) = substr(r.id, 15, 4)",
            block_on("birth", "name_py"),
            block_on("birth", "py2"),
            block_on("name_py", "village"),
            block_on("name_py", "head_py"),
        ],
        retain_intermediate_calculation_columns=False,
    )
    linker = Linker([left, right], settings, log_level=None)
    linker.training.estimate_probability_two_random_records_match([block_on("id")], recall=0.9)
    linker.training.estimate_u_using_random_sampling(max_pairs=5e5, seed=1)
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("id"))
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("birth", "name_py"))
    pred = linker.inference.predict(threshold_match_probability=threshold).as_duckdbpyrelation().pl()
    if pred.is_empty():
        return pl.DataFrame(schema={"roster_rec": pl.UInt32, "system_rec": pl.UInt32, "score": pl.Float64})
    lcol, rcol = ("unique_id_l", "unique_id_r")
    pairs = pred.select(
        pl.col(lcol).alias("a"), pl.col(rcol).alias("b"), pl.col("match_probability").alias("score")
    ).with_columns(
        pl.when(pl.col("a").str.starts_with("r-")).then(pl.col("a")).otherwise(pl.col("b")).alias("ru"),
        pl.when(pl.col("a").str.starts_with("r-")).then(pl.col("b")).otherwise(pl.col("a")).alias("su"),
    ).select(
        pl.col("ru").str.slice(2).cast(pl.UInt32).alias("roster_rec"),
        pl.col("su").str.slice(2).cast(pl.UInt32).alias("system_rec"),
        "score",
    )
    # one-to-one, greedy by probability
    chosen = []
    pool = pairs
    for _ in range(6):
        if pool.is_empty():
            break
        best = pool.sort("score", descending=True).unique("roster_rec", keep="first").sort("score", descending=True).unique("system_rec", keep="first")
        chosen.append(best)
        pool = pool.join(best.select("roster_rec"), on="roster_rec", how="anti").join(best.select("system_rec"), on="system_rec", how="anti")
    return pl.concat(chosen)
