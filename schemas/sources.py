"""Row rules for each source, checked on the normalised records.

Each check is one small named rule; a failing row is kept and reported, never dropped.
`CHECK_FIELDS` says which canonical field a check is about and the problem code it reports.
"""

from __future__ import annotations

import polars as pl
import pandera.polars as pa

__all__ = ["CHECK_FIELDS", "CHECK_READS", "SOURCE_SCHEMAS", "RosterSchema", "DibaoSchema", "FilingSchema"]

VALID_ID = ("valid", "legacy15")

# check name -> (canonical field, problem code)
CHECK_FIELDS: dict[str, tuple[str, str]] = {
    "name_present": ("name", "missing_name"),
    "id_usable": ("id_number", "invalid_id"),
    "birth_date_readable": ("birth_date", "bad_date"),
    "gender_known": ("gender", "unknown_gender"),
    "amount_numeric": ("amount", "bad_amount"),
    "dibao_status_known": ("status", "unknown_code"),
    "poverty_status_known": ("poverty_status", "unknown_code"),
    "head_id_usable": ("head_id", "invalid_id"),
}

# Every column a check below reads, besides the lineage: records are validated on these
# alone (pandera copies whole failing rows; a county-wide frame has forty columns).
CHECK_READS: tuple[str, ...] = (
    "name_norm", "id_status", "head_id_status", "birth_date", "birth", "gender", "gender_norm",
    "amount", "amount_value", "status", "status_norm", "poverty_status", "poverty_status_norm",
)


def _present(col: str) -> pl.Expr:
    return pl.col(col).is_not_null()


def _parsed_when_given(raw: str, parsed: str) -> pl.Expr:
    return pl.col(raw).is_null() | pl.col(parsed).is_not_null()


def _id_usable(data: pa.PolarsData) -> pl.LazyFrame:
    return data.lazyframe.select(pl.col("id_status").is_in(VALID_ID) | (pl.col("id_status") == "missing"))


def _head_id_usable(data: pa.PolarsData) -> pl.LazyFrame:
    return data.lazyframe.select(
        pl.col("head_id_status").is_null() | pl.col("head_id_status").is_in(VALID_ID + ("missing",))
    )


class _Lineage(pa.DataFrameModel):
    source: str
    file: str
    sheet: str
    row: int = pa.Field(ge=1)

    class Config:
        strict = False

    @pa.dataframe_check
    def name_present(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(_present("name_norm"))

    @pa.dataframe_check
    def id_usable(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return _id_usable(data)

    @pa.dataframe_check
    def head_id_usable(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return _head_id_usable(data)


class RosterSchema(_Lineage):
    @pa.dataframe_check
    def birth_date_readable(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(_parsed_when_given("birth_date", "birth"))

    @pa.dataframe_check
    def gender_known(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(_parsed_when_given("gender", "gender_norm"))

    @pa.dataframe_check
    def amount_numeric(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(_parsed_when_given("amount", "amount_value"))


class DibaoSchema(_Lineage):
    @pa.dataframe_check
    def dibao_status_known(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(_parsed_when_given("status", "status_norm"))


class FilingSchema(_Lineage):
    @pa.dataframe_check
    def poverty_status_known(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(_parsed_when_given("poverty_status", "poverty_status_norm"))

    @pa.dataframe_check
    def gender_known(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(_parsed_when_given("gender", "gender_norm"))


SOURCE_SCHEMAS: dict[str, type[pa.DataFrameModel]] = {
    "roster": RosterSchema,
    "dibao": DibaoSchema,
    "filing": FilingSchema,
}
