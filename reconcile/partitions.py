"""A run's rows as immutable Parquet files, and the DuckDB views that read them back.

Each run writes each of its tables once, to ``nights/<night>/<run_id>/<table>.parquet``
beside the catalog; nothing rewrites a file afterwards (retention deletes whole files).
So a night's publish costs what that night holds, however many nights are stored.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from reconcile.errors import ReconError

__all__ = ["POLARS_TYPES", "SLICE_ROWS", "Written", "columns_hash", "estimate_bytes", "view_sql", "write_schema_file", "write_table"]

log = logging.getLogger(__name__)

SLICE_ROWS = 100_000  # rows cast and written at a time: a county-wide table is never doubled

# The DuckDB types a table declaration may use, as polars stores them in Parquet.
POLARS_TYPES: dict[str, pl.DataType] = {
    "VARCHAR": pl.String(), "JSON": pl.String(), "BIGINT": pl.Int64(), "INTEGER": pl.Int32(),
    "SMALLINT": pl.Int16(), "DOUBLE": pl.Float64(), "DATE": pl.Date(), "BOOLEAN": pl.Boolean(),
    "TIMESTAMPTZ": pl.Datetime("us", "UTC"),
}


@dataclass(frozen=True)
class Written:
    """One run table already in its Parquet file (``store.stage_tables``): the commit that
    publishes the run lists it instead of writing it, so its frames could go before."""

    path: Path
    rows: int


def _base_type(declared: str) -> str:
    return declared.replace(" PRIMARY KEY", "").strip()


def _q(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def columns_hash(columns: Mapping[str, str]) -> str:
    """Identifies a table's declared columns: files of one hash are read by one scan."""
    text = ";".join(f"{c}:{_base_type(t)}" for c, t in columns.items())
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def estimate_bytes(frames: pl.DataFrame | Sequence[pl.DataFrame] | Written | None) -> int:
    """An upper bound of the Parquet bytes a table's frames need (compressed, it is less);
    a table already written needs none."""
    if frames is None or isinstance(frames, Written):
        return 0
    items = [frames] if isinstance(frames, pl.DataFrame) else list(frames)
    return int(sum(f.estimated_size() for f in items))


def _typed(frame: pl.DataFrame, table: str, columns: Mapping[str, str], run_id: str) -> pl.DataFrame:
    exprs = []
    for col, declared in columns.items():
        target = POLARS_TYPES[_base_type(declared)]
        if col == "run_id":
            exprs.append(pl.lit(run_id, pl.String).alias(col))
        elif col in frame.columns:
            exprs.append(pl.col(col).cast(target, strict=True))
        else:
            exprs.append(pl.lit(None, target).alias(col))
    try:
        return frame.select(exprs)
    except (pl.exceptions.PolarsError, TypeError, ValueError) as exc:
        # polars quotes the failing values: name the table and columns only
        bad = [c for c in columns if c in frame.columns and c != "run_id"
               and not _casts(frame.get_column(c), POLARS_TYPES[_base_type(columns[c])])]
        raise ReconError(f"store: {table} columns {bad or '?'} cannot be stored as declared "
                         f"({type(exc).__name__})") from None


def _casts(series: pl.Series, target: pl.DataType) -> bool:
    try:
        series.cast(target, strict=True)
    except (pl.exceptions.PolarsError, TypeError, ValueError):
        return False
    return True


def write_table(path: Path, table: str, columns: Mapping[str, str], run_id: str,
                frames: pl.DataFrame | Sequence[pl.DataFrame], mode: int) -> int:
    """Write one run's rows of ``table`` to ``path`` (every declared column, in order);
    returns the row count. Columns the table does not declare are ignored."""
    items = [frames] if isinstance(frames, pl.DataFrame) else list(frames)
    extra = sorted({c for f in items for c in f.columns if c not in columns})
    if extra:
        log.debug("store: %s ignores columns %s", table, extra)  # names only, never values
    writer: pq.ParquetWriter | None = None
    rows = 0
    try:
        for frame in items:
            for start in range(0, max(frame.height, 1), SLICE_ROWS):
                part = _typed(frame.slice(start, SLICE_ROWS), table, columns, run_id)
                arrow = part.to_arrow()
                if writer is None:
                    writer = pq.ParquetWriter(path, arrow.schema, compression="zstd")
                if part.height:
                    writer.write_table(arrow)
                rows += part.height
    finally:
        if writer is not None:
            writer.close()
    if writer is not None:
        os.chmod(path, mode)
    return rows


def write_schema_file(path: Path, columns: Mapping[str, str], mode: int) -> None:
    """A table's declared columns in a Parquet file of no rows: the first file its glob
    finds, so a view binds to the declaration even before (or after) any run's file."""
    empty = pl.DataFrame(schema={c: POLARS_TYPES[_base_type(t)] for c, t in columns.items()})
    pq.write_table(empty.to_arrow(), path, compression="zstd")
    os.chmod(path, mode)


def view_sql(table: str, columns: Mapping[str, str], glob: str, *, mixed: bool) -> str:
    """A view of ``table`` over every run's file (one glob: the view never changes as runs
    come and go), showing only the runs the catalog lists for it. ``mixed``: files were
    written under different declarations, so columns are matched by name (binding then
    reads every file's footer; otherwise only the schema file's)."""
    cols = ", ".join(f"CAST({_q(c)} AS {_base_type(t)}) AS {_q(c)}" for c, t in columns.items())
    options = ", union_by_name = true" if mixed else ""
    listed = "'" + table.replace("'", "''") + "'"
    return (f"SELECT {cols} FROM read_parquet('{glob.replace(chr(39), chr(39) * 2)}'{options}) "
            f"WHERE run_id IN (SELECT run_id FROM partitions WHERE table_name = {listed})")
