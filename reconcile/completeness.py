"""Is tonight's export whole, and what changed since the previous run (issue 7).

Pure: frames in, frames out. The flow reads the previous run from DuckDB
(``store.read_previous``) and passes it in as frames.

``export_problems`` — one row per place (town/village) whose export in one system looks cut
short: the other system lists households there and the roster has students there, but this
export lists none (``missing``), or far fewer than the previous run (``fewer_than_last_run``).

``household_changes`` — one row per household that entered or left a system (qualifying
then vs now) since the previous run, with the roster students linked to it.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from .config import Settings
from .places import carry_keys
from .rules import qualifies_expr
from .vocabulary import SYSTEM_LABELS

__all__ = [
    "EXPORT_PROBLEM_SCHEMA",
    "HOUSEHOLD_CHANGE_SCHEMA",
    "PREVIOUS_COUNT_SCHEMA",
    "PREVIOUS_RECORD_SCHEMA",
    "place_counts",
    "export_problems",
    "household_changes",
]

EXPORT_PROBLEM_SCHEMA: dict[str, pl.DataType] = {
    "system": pl.String(), "file": pl.String(), "town": pl.String(), "village": pl.String(),
    "town_key": pl.String(), "village_key": pl.String(),
    "problem": pl.String(), "expected_rows": pl.Int64(), "expected_from": pl.String(), "found_rows": pl.Int64(),
    "previous_households": pl.Int64(), "found_households": pl.Int64(), "other_system_households": pl.Int64(),
    "roster_students": pl.Int64(), "message": pl.String(),
}
HOUSEHOLD_CHANGE_SCHEMA: dict[str, pl.DataType] = {
    "system": pl.String(), "household": pl.String(), "change": pl.String(), "town": pl.String(),
    "village": pl.String(), "head_name": pl.String(), "status_before": pl.String(), "status_now": pl.String(),
    "export_incomplete": pl.Boolean(), "students": pl.Int64(), "student_rows": pl.String(), "message": pl.String(),
}
# What the flow reads from the previous run.
PREVIOUS_COUNT_SCHEMA: dict[str, pl.DataType] = {
    "system": pl.String(), "file": pl.String(), "town": pl.String(), "village": pl.String(),
    "rows": pl.Int64(), "households": pl.Int64(),
}
PREVIOUS_RECORD_SCHEMA: dict[str, pl.DataType] = {
    "system": pl.String(), "household": pl.String(), "town": pl.String(), "village": pl.String(),
    "head_name": pl.String(), "id_norm": pl.String(), "status": pl.String(), "poverty_status": pl.String(),
    "exit_year": pl.String(), "approved_date": pl.String(),
}


PLACE = ["town_key", "village_key"]


def _clean(col: str) -> pl.Expr:
    return pl.col(col).str.replace_all(r"\s+", "")


def _keyed(df: pl.DataFrame, settings: Settings | None, like: Sequence[pl.DataFrame] = ()) -> pl.DataFrame:
    """`df` with place keys and names: tonight's records have them; a previous run's rows
    (as stored: town and village as written) are keyed as tonight keys them (`like`: tonight's
    records), so a new alias or a respelt export does not look like a place that vanished."""
    if not set(PLACE) <= set(df.columns):
        df = carry_keys(df, list(like), settings.places) if settings is not None else carry_keys(df, list(like))
    return df.with_columns(
        (pl.col(f"{lv}_name") if f"{lv}_name" in df.columns else _clean(lv)).alias(f"_{lv}_name") for lv in ("town", "village")
    )


def _counts(systems: dict[str, pl.DataFrame], settings: Settings | None) -> pl.DataFrame:
    """Rows and households per system, file and place key, with the place's names."""
    parts = []
    for name, df in systems.items():
        if df.is_empty():
            continue
        parts.append(
            _keyed(df, settings).select(pl.lit(name).alias("system"), "file", *PLACE, "_town_name", "_village_name", "household")
            .group_by(["system", "file", *PLACE], maintain_order=True)
            .agg(pl.col("_town_name").drop_nulls().first().alias("town"), pl.col("_village_name").drop_nulls().first().alias("village"),
                 pl.len().cast(pl.Int64).alias("rows"), pl.col("household").n_unique().cast(pl.Int64).alias("households"))
        )
    schema = {**PREVIOUS_COUNT_SCHEMA, "town_key": pl.String(), "village_key": pl.String()}
    if not parts:
        return pl.DataFrame(schema=schema)
    return pl.concat(parts).cast(schema).sort(["system", *PLACE, "file"], nulls_last=True)


def place_counts(systems: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """Rows and households per system, file and place (what the next run compares with; the
    place by its name, which the next run keys again)."""
    return _counts(systems, None).select(list(PREVIOUS_COUNT_SCHEMA)).sort(["system", "town", "village", "file"])


def export_problems(roster: pl.DataFrame, systems: dict[str, pl.DataFrame], settings: Settings,
                    previous_counts: pl.DataFrame | None = None) -> pl.DataFrame:
    """Places (by key: 坝北 in one export is 坝北村 in the other) whose export looks cut short."""
    c = settings.checks
    now = _counts(systems, settings)
    per_place = now.group_by(["system", *PLACE]).agg(
        pl.col("rows").sum(), pl.col("households").sum(), pl.col("town").first(), pl.col("village").first())
    roster_places = (
        _keyed(roster, settings).select(pl.col("town_key").alias("r_town"), "village_key")
        .filter(pl.col("village_key").is_not_null())
    )
    prev = None
    if previous_counts is not None and not previous_counts.is_empty():
        prev = _keyed(previous_counts.cast(PREVIOUS_COUNT_SCHEMA), settings, [roster, *systems.values()]).group_by(["system", *PLACE]).agg(
            pl.col("rows").sum().alias("p_rows"), pl.col("households").sum().alias("p_hh"),
            pl.col("file").unique().sort().str.join("; ").alias("p_files"),
            pl.col("_town_name").drop_nulls().first().alias("p_town"), pl.col("_village_name").drop_nulls().first().alias("p_village"))
    # tonight's places and last night's: a place gone from both exports still has its students
    places = pl.concat([per_place.select(PLACE)] + ([prev.select(PLACE)] if prev is not None else [])).unique()
    # roster students per place: village equal, town equal where the roster gives one
    students = (
        roster_places.join(places, on="village_key", how="inner")
        .filter(pl.col("r_town").is_null() | (pl.col("r_town") == pl.col("town_key")))
        .group_by(PLACE).agg(pl.len().cast(pl.Int64).alias("roster_students"))
    )
    found: list[dict] = []
    names = list(systems)
    # county-wide rows per household of each system, and that system's share of the other's households
    for y in names:
        for x in names:
            if x == y:
                continue
            px = per_place.filter(pl.col("system") == x).select(*PLACE, "town", "village", pl.col("households").alias("x_hh"))
            py = per_place.filter(pl.col("system") == y).select(*PLACE, pl.col("rows").alias("y_rows"), pl.col("households").alias("y_hh"))
            both = px.join(py, on=PLACE, how="inner", nulls_equal=True)
            scale = (both["y_rows"].sum() / both["x_hh"].sum()) if both.height and both["x_hh"].sum() else None
            cand = (
                px.join(py, on=PLACE, how="left", nulls_equal=True).join(students, on=PLACE, how="left", nulls_equal=True)
                .filter((pl.col("x_hh") >= c.export_min_households) & pl.col("y_hh").is_null()
                        & (pl.col("roster_students").fill_null(0) >= c.export_min_students))
            )
            yfiles = now.filter(pl.col("system") == y).group_by("town_key").agg(pl.col("file").unique().sort().str.join("; ").alias("files"))
            for row in cand.join(yfiles, on="town_key", how="left", nulls_equal=True).iter_rows(named=True):
                found.append({"system": y, "file": row["files"], "town": row["town"], "village": row["village"],
                              "town_key": row["town_key"], "village_key": row["village_key"],
                              "problem": "missing", "expected_rows": round(row["x_hh"] * scale) if scale else None,
                              "expected_from": "estimate", "found_rows": 0, "previous_households": None,
                              "found_households": 0, "other_system_households": row["x_hh"],
                              "roster_students": row["roster_students"]})
    out = pl.DataFrame(found, schema=EXPORT_PROBLEM_SCHEMA)
    if prev is not None:
        # a missing place with a previous count: say how many rows it had
        out = out.join(prev, on=["system", *PLACE], how="left", nulls_equal=True).with_columns(
            pl.when(pl.col("p_rows").is_not_null()).then(pl.col("p_rows")).otherwise(pl.col("expected_rows")).alias("expected_rows"),
            pl.when(pl.col("p_rows").is_not_null()).then(pl.lit("previous_run")).otherwise(pl.col("expected_from")).alias("expected_from"),
            pl.coalesce("p_hh", "previous_households").alias("previous_households"),
            pl.coalesce("file", "p_files").alias("file"),
        ).select(list(EXPORT_PROBLEM_SCHEMA))
        named = now.group_by(PLACE).agg(pl.col("town").first().alias("n_town"), pl.col("village").first().alias("n_village"))
        drops = (
            prev.join(per_place.rename({"rows": "n_rows", "households": "n_hh"}).drop("town", "village"),
                      on=["system", *PLACE], how="left", nulls_equal=True)
            .join(students, on=PLACE, how="left", nulls_equal=True)
            .join(named, on=PLACE, how="left", nulls_equal=True)
            .filter((pl.col("p_hh") >= c.export_min_households)
                    & (pl.col("n_hh").fill_null(0) < c.export_drop_ratio * pl.col("p_hh"))
                    & (pl.col("roster_students").fill_null(0) >= c.export_min_students))
            .join(out.select("system", *PLACE), on=["system", *PLACE], how="anti", nulls_equal=True)
        )
        other = per_place.select(pl.col("system").alias("_o"), *PLACE, pl.col("households").alias("_ohh"))
        rows = []
        for row in drops.iter_rows(named=True):
            o = other.filter((pl.col("_o") != row["system"]) & pl.col("town_key").eq_missing(row["town_key"])
                             & pl.col("village_key").eq_missing(row["village_key"]))
            rows.append({"system": row["system"], "file": row["p_files"],
                         "town": row["n_town"] or row["p_town"], "village": row["n_village"] or row["p_village"],
                         "town_key": row["town_key"], "village_key": row["village_key"],
                         "problem": "missing" if not row["n_hh"] else "fewer_than_last_run",
                         "expected_rows": row["p_rows"], "expected_from": "previous_run", "found_rows": row["n_rows"] or 0,
                         "previous_households": row["p_hh"], "found_households": row["n_hh"] or 0,
                         "other_system_households": int(o["_ohh"].sum()) if o.height else None,
                         "roster_students": row["roster_students"]})
        out = pl.concat([out, pl.DataFrame(rows, schema=EXPORT_PROBLEM_SCHEMA)])
    label = pl.col("system").replace_strict(dict(SYSTEM_LABELS), default=pl.col("system"))
    msg = pl.format(
        "{}导出（{}）中{}{}{}，而{}。名单中该地有 {} 名学生。请重新导出{}数据（预计约 {} 行）。",
        label, pl.col("file").fill_null("未知文件"), pl.col("town").fill_null(""), pl.col("village").fill_null(""),
        pl.when(pl.col("problem") == "missing").then(pl.lit("没有任何记录")).otherwise(
            pl.format("只有 {} 户（上次 {} 户）", pl.col("found_households"), pl.col("previous_households"))),
        pl.when(pl.col("other_system_households").is_not_null()).then(
            pl.format("另一系统在该地有 {} 户", pl.col("other_system_households"))).otherwise(pl.lit("上次运行时该地有记录")),
        pl.col("roster_students").fill_null(0), label, pl.col("expected_rows").cast(pl.String).fill_null("?"),
    )
    return out.with_columns(msg.alias("message")).cast(EXPORT_PROBLEM_SCHEMA).sort(["system", "town", "village"])


def _households(df: pl.DataFrame, system: str, settings: Settings, as_of) -> pl.DataFrame:
    """One row per household: qualifying, status, place, head name, member IDs."""
    return (
        df.with_columns(pl.lit(system).alias("system"))
        .with_columns(qualifies_expr(settings, as_of).alias("_q"))
        .group_by(["system", "household"], maintain_order=True)
        .agg(
            pl.col("_q").any().alias("qualifies"),
            pl.coalesce("poverty_status", "dibao_status").drop_nulls().first().alias("status"),
            pl.col("town_key").first(), pl.col("village_key").first(),
            pl.col("_town_name").first().alias("town"), pl.col("_village_name").first().alias("village"),
            pl.col("head_name").drop_nulls().first().alias("head_name"),
            pl.col("id_norm").drop_nulls().unique().alias("ids"),
        )
    )


def _system_frame(df: pl.DataFrame, settings: Settings, *, raw: bool, like: Sequence[pl.DataFrame] = ()) -> pl.DataFrame:
    cols = df.columns
    if raw:  # previous records: statuses as exported, map them like normalize does
        def code(col: str, table: str) -> pl.Expr:
            m = dict(settings.codes.get(table, {}))
            return (pl.col(col).cast(pl.String).str.replace_all(r"\s+", "").replace_strict(m, default=None, return_dtype=pl.String)
                    if col in cols else pl.lit(None, pl.String))
        pov, dib = code("poverty_status", "poverty_status"), code("status", "dibao_status")
    else:
        pov = pl.col("poverty_status_norm").cast(pl.String) if "poverty_status_norm" in cols else pl.lit(None, pl.String)
        dib = pl.col("status_norm").cast(pl.String) if "status_norm" in cols else pl.lit(None, pl.String)
    opt = lambda c: pl.col(c) if c in cols else pl.lit(None, pl.String)  # noqa: E731
    return _keyed(df, settings, like).select(
        "household", *PLACE, "_town_name", "_village_name", "head_name", "id_norm",
        pov.alias("poverty_status"), dib.alias("dibao_status"), opt("exit_year").cast(pl.String).alias("exit_year"),
        opt("approved_date").cast(pl.String).alias("approved_date"),
    ).filter(pl.col("household").is_not_null())


def household_changes(roster: pl.DataFrame, systems: dict[str, pl.DataFrame], matches: pl.DataFrame,
                      settings: Settings, previous_records: pl.DataFrame | None, as_of=None,
                      problems: pl.DataFrame | None = None) -> pl.DataFrame:
    """Households that entered (qualify now, not before) or left (qualified before, not now)."""
    if previous_records is None or previous_records.is_empty():
        return pl.DataFrame(schema=HOUSEHOLD_CHANGE_SCHEMA)
    rows = []
    for name, df in systems.items():
        now = _households(_system_frame(df, settings, raw=False), name, settings, as_of)
        prev_df = previous_records.filter(pl.col("system") == name)
        if prev_df.is_empty() and now.is_empty():
            continue
        before = _households(_system_frame(prev_df, settings, raw=True, like=[roster, *systems.values()]), name, settings, as_of)
        j = now.join(before, on=["system", "household"], how="full", coalesce=True, suffix="_before")
        j = j.with_columns(pl.col("qualifies").fill_null(False), pl.col("qualifies_before").fill_null(False))
        changed = j.filter(pl.col("qualifies") != pl.col("qualifies_before")).with_columns(
            pl.when(pl.col("qualifies")).then(pl.lit("entered")).otherwise(pl.lit("left")).alias("change"),
            pl.coalesce("town", "town_before").alias("town"), pl.coalesce("village", "village_before").alias("village"),
            pl.coalesce("town_key", "town_key_before").alias("town_key"),
            pl.coalesce("village_key", "village_key_before").alias("village_key"),
            pl.coalesce("head_name", "head_name_before").alias("head_name"),
            pl.col("status_before"), pl.col("status").alias("status_now"),
            pl.concat_list([pl.col("ids").fill_null(pl.lit([], dtype=pl.List(pl.String))),
                            pl.col("ids_before").fill_null(pl.lit([], dtype=pl.List(pl.String)))]).list.unique().alias("_ids"),
        )
        if changed.is_empty():
            continue
        # students: roster rows linked to the household now, or whose ID is a member's ID
        hh_of = df.select(pl.col("rec").alias("system_rec"), "household")
        linked = (
            matches.filter(pl.col("system") == name).join(hh_of, on="system_rec", how="inner")
            .select(pl.col("roster_rec"), "household") if matches.height else pl.DataFrame(schema={"roster_rec": pl.UInt32, "household": pl.String})
        )
        by_id = changed.select("household", pl.col("_ids").alias("id_norm")).explode("id_norm").join(
            roster.filter(pl.col("id_status").is_in(["valid", "legacy15"])).select(pl.col("rec").alias("roster_rec"), "id_norm"),
            on="id_norm", how="inner").select("roster_rec", "household")
        studs = (
            pl.concat([linked, by_id], how="vertical_relaxed").unique()
            .join(roster.select(pl.col("rec").alias("roster_rec"), "file", "sheet", "row", "name"), on="roster_rec")
            .sort(["file", "sheet", "row"])
            .group_by("household", maintain_order=True)
            .agg(pl.len().cast(pl.Int64).alias("students"),
                 pl.format("{}!{}第{}行 {}", "file", "sheet", "row", pl.col("name").fill_null("")).str.join("；").alias("student_rows"))
        )
        rows.append(changed.join(studs, on="household", how="left").select(
            "system", "household", "change", "town", "village", *PLACE, "head_name", "status_before", "status_now",
            pl.col("students").fill_null(0), "student_rows"))
    if not rows:
        return pl.DataFrame(schema=HOUSEHOLD_CHANGE_SCHEMA)
    out = pl.concat(rows, how="vertical_relaxed")
    cut = (problems.select("system", *PLACE).unique().with_columns(pl.lit(True).alias("export_incomplete"))
           if problems is not None and problems.height else pl.DataFrame(schema={"system": pl.String, "town_key": pl.String, "village_key": pl.String, "export_incomplete": pl.Boolean}))
    out = out.join(cut, on=["system", *PLACE], how="left", nulls_equal=True).with_columns(pl.col("export_incomplete").fill_null(False))
    label = pl.col("system").replace_strict(dict(SYSTEM_LABELS), default=pl.col("system"))
    msg = pl.when(pl.col("change") == "entered").then(
        pl.format("{}{}户主{}的家庭自上次运行后进入{}资助范围（{} → {}），名单中关联学生 {} 名。", pl.col("town").fill_null(""),
                  pl.col("village").fill_null(""), pl.col("head_name").fill_null(""), label,
                  pl.col("status_before").fill_null("无记录"), pl.col("status_now").fill_null(""), pl.col("students"))
    ).otherwise(
        pl.format("{}{}户主{}的家庭自上次运行后不再属于{}资助范围（{} → {}）{}，名单中关联学生 {} 名。", pl.col("town").fill_null(""),
                  pl.col("village").fill_null(""), pl.col("head_name").fill_null(""), label,
                  pl.col("status_before").fill_null(""), pl.col("status_now").fill_null("本次导出中没有"),
                  pl.when(pl.col("export_incomplete")).then(pl.lit("，但该地本次导出不完整，可能只是漏导")).otherwise(pl.lit("")),
                  pl.col("students"))
    )
    return (out.with_columns(msg.alias("message")).select(list(HOUSEHOLD_CHANGE_SCHEMA)).cast(HOUSEHOLD_CHANGE_SCHEMA)
            .sort(["system", "change", "town", "village", "household"]))


class Previous:
    """The previous run as the flow read it from DuckDB: its id, per-place counts
    (PREVIOUS_COUNT_SCHEMA) and its system records (PREVIOUS_RECORD_SCHEMA)."""

    def __init__(self, run_id: str, counts: pl.DataFrame, records: pl.DataFrame) -> None:
        self.run_id = run_id
        self.counts = counts
        self.records = records
