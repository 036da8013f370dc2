"""Raw sheet tables → one validated, normalised records frame per source.

Pure: frames in, frames out. Rows that break a rule stay in the records and are also
reported as row problems, with the header text as it stands in the file.
"""

from __future__ import annotations

from typing import Sequence

import pandera.polars as pa
import polars as pl

from schemas import CHECK_FIELDS, CHECK_READS, SOURCE_SCHEMAS

from .config import Settings
from .fields import FIELDS, ID_FIELDS, LINEAGE
from .idcard import normalize_ids
from .ingest import PROBLEM_SCHEMA, SheetTable
from .names import name_forms
from .places import observed_places, resolve_places, with_place_names, with_resolved_keys
from .schools import with_schools

__all__ = ["normalize_source", "header_map", "parse_dates", "empty_records", "observed_names"]

LINEAGE_SCHEMA = {"source": pl.String, "file": pl.String, "sheet": pl.String, "row": pl.Int64}


def empty_records(source: str) -> pl.DataFrame:
    cols = {**LINEAGE_SCHEMA, **{f: pl.String for f in FIELDS[source]}}
    cols.update({f"{f}_kind": pl.String for f in ID_FIELDS if f in FIELDS[source]})
    return pl.DataFrame(schema=cols)


def header_map(tables: Sequence[SheetTable]) -> pl.DataFrame:
    """(source, file, sheet, field) → header text as it stands in the file."""
    rows = [
        {"source": t.source, "file": t.file, "sheet": t.sheet, "field": f, "column": h}
        for t in tables
        for f, h in t.columns.items()
    ]
    schema = {"source": pl.String, "file": pl.String, "sheet": pl.String, "field": pl.String, "column": pl.String}
    return pl.DataFrame(rows, schema=schema)


def parse_dates(col: str) -> pl.Expr:
    """Dates as clerks type them: 2012-03-05, 2012/3/5, 2012年3月5日, 20120305, 2012.3.5, serials."""
    s = pl.col(col).str.strip_chars()
    parts = s.str.extract_groups(r"^(\d{4})\D{1,2}(\d{1,2})\D{1,2}(\d{1,2})")
    compact = s.str.extract_groups(r"^(\d{4})(\d{2})(\d{2})$")
    serial = s.str.extract(r"^(\d{4,5})(?:\.0+)?$", 1).cast(pl.Int32, strict=False)

    def build(g: pl.Expr) -> pl.Expr:
        # Through text, so an impossible date (2012-02-30) becomes null instead of an error.
        text = pl.concat_str(
            [g.struct.field("1"), g.struct.field("2").str.zfill(2), g.struct.field("3").str.zfill(2)], separator="-"
        )
        return text.str.to_date("%Y-%m-%d", strict=False)

    from_serial = pl.when(serial.is_between(367, 73050)).then(
        pl.lit("1899-12-30").str.to_date() + pl.duration(days=serial)
    )
    return pl.coalesce(build(parts), build(compact), from_serial.cast(pl.Date)).alias(f"{col}_parsed")


def _code(col: str, mapping: dict[str, str], out: str) -> pl.Expr:
    keys = {k: v for k, v in mapping.items()}
    return (
        pl.col(col)
        .str.strip_chars()
        .str.replace_all(r"\s+", "")
        .replace_strict(keys, default=None, return_dtype=pl.String)
        .alias(out)
    )


def _concat(tables: Sequence[SheetTable], source: str) -> pl.DataFrame:
    frames = []
    for t in tables:
        if t.source != source:
            continue
        frame = t.frame
        if source == "dibao":
            frame = frame.with_columns(pl.lit("name" not in t.columns).alias("heads_only"))
        frames.append(frame)
    base = empty_records(source)
    if source == "dibao":
        base = base.with_columns(pl.lit(False).alias("heads_only"))
    out = pl.concat([base, *frames], how="diagonal_relaxed") if frames else base
    return out.with_columns(pl.col(f).cast(pl.String) for f in FIELDS[source] if f in out.columns)


def observed_names(tables: Sequence[SheetTable]) -> pl.Series:
    """Every person-name cell of the sheets (``name`` and ``head_name``, as text): what
    ``names.name_forms`` of one night reads, so that a name spelt in several sources is
    normalised once."""
    cells = [t.frame[c].cast(pl.String) for t in tables for c in ("name", "head_name") if c in t.frame.columns]
    return pl.concat(cells) if cells else pl.Series("name", [], dtype=pl.String)


def _names(df: pl.DataFrame, forms: pl.DataFrame | None = None) -> pl.DataFrame:
    # Once per distinct spelling of either column (the night's, when given), joined back on the spelling.
    values = pl.concat([df["name"].cast(pl.String), df["head_name"].cast(pl.String)])
    if forms is None:
        forms = name_forms(values)
    else:  # a spelling the night's forms lack (none, when they came from these sheets) is added
        missing = values.to_frame("value").join(forms, on="value", how="anti")["value"]
        if missing.drop_nulls().len():
            forms = pl.concat([forms, name_forms(missing)])
    name, head = (
        df.select(pl.col(c).cast(pl.String).alias("value")).join(forms, on="value", how="left", maintain_order="left")
        for c in ("name", "head_name")
    )
    return df.with_columns(
        name["norm"].alias("name_norm"),
        head["norm"].alias("head_name_norm"),
        name["py"].alias("name_py"),
        head["py"].alias("head_py"),
        name["fz"].alias("name_fz"),  # accent pairs folded (match's `fuzzy` level), once a record
        head["fz"].alias("head_fz"),
    )


def _ids(df: pl.DataFrame) -> pl.DataFrame:
    df = normalize_ids(df, "id_number", "id_number_kind" if "id_number_kind" in df.columns else None, "id")
    df = normalize_ids(df, "head_id", "head_id_kind" if "head_id_kind" in df.columns else None, "head_id")
    # (the guardian's known prefix stays: a heads-only export is matched on the guardian's ID)
    return df.drop(["head_id_birth", "head_id_gender", "head_id_region"], strict=False)


def _student_no_id(df: pl.DataFrame) -> pl.DataFrame:
    """A roster ID missing or unusable but present in the 学籍号 (`G` + ID) is taken from there."""
    if "student_no" not in df.columns:
        return df
    g = (
        pl.col("student_no")
        .str.strip_chars()
        .str.to_uppercase()
        .str.extract(r"^G(\d{17}[\dX])$", 1)
    )
    use = pl.col("id_number").is_null() & g.is_not_null()
    return df.with_columns(
        pl.when(use).then(g).otherwise(pl.col("id_number")).alias("id_number"),
        pl.when(use).then(pl.lit("student_no")).otherwise(pl.col("id_number_kind")).alias("id_number_kind"),
    )


def _by_value(df: pl.DataFrame, col: str, expr: pl.Expr) -> pl.Series:
    """`expr`, an expression of column `col` alone, for each row of `df`, worked out once per
    distinct value of `col` (a county's 100,000 birth dates are a few thousand spellings)."""
    lut = df.select(pl.col(col).unique()).with_columns(expr.alias("_value"))
    return df.select(col).join(lut, on=col, how="left", nulls_equal=True, maintain_order="left")["_value"]


def _source_specific(df: pl.DataFrame, source: str, settings: Settings) -> pl.DataFrame:
    codes = settings.codes
    if source == "roster":
        df = df.with_columns(
            _by_value(df, "birth_date", parse_dates("birth_date")).alias("birth"),
            _code("gender", dict(codes.get("gender", {})), "gender_norm"),
            pl.col("amount")
            .str.replace_all(r"[,，\s元]", "")
            .cast(pl.Float64, strict=False)
            .alias("amount_value"),
        )
    elif source == "dibao":
        df = df.with_columns(
            pl.when(pl.col("heads_only") | (pl.col("name").is_null() & pl.col("id_number").is_null()))
            .then(pl.lit(True))
            .otherwise(pl.lit(False))
            .alias("is_head_row")
        ).with_columns(
            pl.when(pl.col("is_head_row")).then(pl.col("head_name")).otherwise(pl.col("name")).alias("name"),
            pl.when(pl.col("is_head_row")).then(pl.col("head_id")).otherwise(pl.col("id_number")).alias("id_number"),
            pl.when(pl.col("is_head_row") & pl.col("relation").is_null())
            .then(pl.lit("户主"))
            .otherwise(pl.col("relation"))
            .alias("relation"),
            *(
                [pl.when(pl.col("is_head_row")).then(pl.col("head_id_kind")).otherwise(pl.col("id_number_kind")).alias("id_number_kind")]
                if "head_id_kind" in df.columns and "id_number_kind" in df.columns
                else []
            ),
            _code("status", dict(codes.get("dibao_status", {})), "status_norm"),
        )
    else:
        df = df.with_columns(
            _code("poverty_status", dict(codes.get("poverty_status", {})), "poverty_status_norm"),
            _code("gender", dict(codes.get("gender", {})), "gender_norm"),
        )
    return df


def _county_household_no(df: pl.DataFrame) -> pl.Expr:
    """A filing household number is unique within its county only (each county numbers its
    own): in an export holding several counties (a prefecture's, merged) the numbers of the
    counties other than the commonest one are prefixed with their county's name, so that two
    counties' households never become one. A one-county export keeps its numbers as they are."""
    number = pl.col("household_no").str.strip_chars()
    if "county_name" not in df.columns:
        return number
    county = pl.col("county_name").str.strip_chars()
    counts = df.select(county.alias("c")).drop_nulls().group_by("c").len()
    if counts.height < 2:
        return number
    main = counts.sort(["len", "c"], descending=[True, False])["c"][0]
    return pl.when(county.is_null() | (county == main)).then(number).otherwise(pl.concat_str([county, number], separator="/"))


def _households(df: pl.DataFrame, source: str) -> pl.DataFrame:
    # By place key: a head without an ID is one household however the export spells his village.
    place = pl.concat_str([pl.col("town_key").fill_null(""), pl.col("village_key").fill_null("")], separator="/")
    by_head = pl.concat_str([place, pl.col("head_name_norm").fill_null("")], separator="/")
    if source == "filing":
        df = df.with_columns(
            pl.coalesce(_county_household_no(df), by_head).alias("household")
        )
        # The filing export has no head-ID column: take it from the member who is the head.
        heads = (
            df.select("relation", "name_norm", "head_name_norm", "id_norm", "household")
            .filter(pl.col("relation").str.contains("户主") | (pl.col("name_norm") == pl.col("head_name_norm")))
            .filter(pl.col("id_norm").is_not_null())
            .group_by("household")
            .agg(pl.col("id_norm").first().alias("_head_id"))
        )
        # Joined on the key column alone: joining the whole frame would copy every column.
        head = df.select("household").join(heads, on="household", how="left", maintain_order="left")["_head_id"]
        return df.with_columns(pl.coalesce(pl.col("head_id_norm"), head).alias("head_id_norm"))
    if source == "dibao":
        known = pl.col("head_id_status").is_in(["valid", "legacy15"])
        return df.with_columns(
            pl.when(known).then(pl.col("head_id_norm")).otherwise(by_head).alias("household")
        )
    return df.with_columns(pl.lit(None, dtype=pl.String).alias("household"))


def _problems(df: pl.DataFrame, source: str, headers: pl.DataFrame) -> pl.DataFrame:
    schema = SOURCE_SCHEMAS[source]
    checked = [c for c in (*LINEAGE, *CHECK_READS) if c in df.columns]
    try:
        schema.validate(df.select(checked), lazy=True)
        return pl.DataFrame(schema=PROBLEM_SCHEMA)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
    cases = cases.filter(pl.col("check").is_in(list(CHECK_FIELDS)) & pl.col("index").is_not_null())
    if cases.is_empty():
        return pl.DataFrame(schema=PROBLEM_SCHEMA)
    field_of = {k: v[0] for k, v in CHECK_FIELDS.items()}
    problem_of = {k: v[1] for k, v in CHECK_FIELDS.items()}
    found = cases.select(
        pl.col("index").cast(pl.UInt32).alias("rec"),
        pl.col("check").replace_strict(field_of).alias("field"),
        pl.col("check").replace_strict(problem_of).alias("problem"),
    ).unique(maintain_order=True)
    fields = found["field"].unique().to_list()
    # Only the failing rows and the columns reported, before anything is reshaped.
    failing = df.select(
        "rec", *LINEAGE, "id_status", "head_id_status",
        *[pl.col(f).cast(pl.String) if f in df.columns else pl.lit(None, pl.String).alias(f) for f in fields],
    ).join(found.select("rec").unique(), on="rec", how="semi")
    lineage = failing.select("rec", *LINEAGE)
    values = failing.select("rec", *fields).unpivot(index="rec", variable_name="field", value_name="value")
    out = (
        found.join(lineage, on="rec", how="left")
        .join(values, on=["rec", "field"], how="left")
        .join(headers, on=["source", "file", "sheet", "field"], how="left")
        .with_columns(
            pl.when(pl.col("problem") == "invalid_id")
            .then(pl.col("problem") + pl.lit(":") + pl.col("field").replace_strict(
                {"id_number": "id", "head_id": "head_id"}, default="id"))
            .otherwise(pl.col("problem"))
            .alias("problem")
        )
    )
    # Say why an ID is unusable (checksum, length...) in the problem code itself.
    status = failing.select("rec", "id_status", "head_id_status")
    out = out.join(status, on="rec", how="left").with_columns(
        pl.when(pl.col("problem") == "invalid_id:id")
        .then(pl.lit("invalid_id:") + pl.col("id_status"))
        .when(pl.col("problem") == "invalid_id:head_id")
        .then(pl.lit("invalid_head_id:") + pl.col("head_id_status"))
        .otherwise(pl.col("problem"))
        .alias("problem")
    )
    return out.select(list(PROBLEM_SCHEMA)).cast(PROBLEM_SCHEMA).sort(["file", "sheet", "row", "column"], nulls_last=True)


def normalize_source(
    tables: Sequence[SheetTable], source: str, settings: Settings, places: pl.DataFrame | None = None,
    names: pl.DataFrame | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Concatenate one source's sheets, normalise names/IDs/codes, and check the row rules.
    ``places``: the night's place keys (``places.resolve_places`` over every source's
    sheets); without it, this source's own spellings are resolved alone. ``names``: the
    night's ``names.name_forms`` (of ``observed_names`` over every source's sheets); without
    it, this source's own spellings are read alone."""
    if source == "roster":
        tables = with_schools(tables)  # school from column, title row or file name
    df = _concat(tables, source)
    for f in FIELDS[source] + ("name", "head_name", "id_number", "head_id", "town", "village", "relation", "gender"):
        if f not in df.columns:
            df = df.with_columns(pl.lit(None, dtype=pl.String).alias(f))
    for f in ID_FIELDS:
        if f"{f}_kind" not in df.columns:
            df = df.with_columns(pl.lit(None, dtype=pl.String).alias(f"{f}_kind"))
    df = df.sort(["file", "sheet", "row"], maintain_order=True)
    if source == "roster":
        df = _student_no_id(df)
    df = _source_specific(df, source, settings)
    df = df.with_row_index("rec")
    df = _ids(_names(df, names))
    if "gender_norm" not in df.columns:
        df = df.with_columns(pl.lit(None, dtype=pl.String).alias("gender_norm"))
    if "birth" not in df.columns:
        df = df.with_columns(pl.lit(None, dtype=pl.Date).alias("birth"))
    if places is None:
        places = resolve_places(observed_places([t.frame for t in tables if t.source == source]), settings.places)
    df = with_resolved_keys(df, places)
    df = _households(df, source)
    # Display names from this source alone; pipeline.normalize_all chooses them over all sources.
    df = with_place_names({source: df}, settings.places)[source]
    problems = _problems(df, source, header_map([t for t in tables if t.source == source]))
    return df, problems
