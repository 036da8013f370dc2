"""The Parquet files a province run passes between its tasks (paths cross the Dask
scheduler, frames never do).

Under the run's staging folder, one folder per county::

    <county>/roster.parquet, dibao.parquet, filing.parquet   records after normalising
    <county>/problems.parquet, matches.parquet              row problems, own links
    <county>/model_parameters.parquet                       the model fitted on its own exports
    <county>/review_counts.json                             clerks' corrections and links applied, candidate figures
    <county>/borrowed_*.parquet                             what the cross-county look-up lent it
    <county>/out_*.parquet, out_counts.json                 its results, ready to publish

Staging holds minors' IDs like the database does: it lives beside the database, is
removed when the run ends, and nothing in it is logged.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from .completeness import Previous
from .crosscounty import Borrowed, Shard
from .fields import SOURCES, SYSTEMS
from .pipeline import Results

__all__ = ["write_shard", "read_shard", "read_problems", "write_borrowed", "read_borrowed", "write_results",
           "read_results", "RESULT_TABLES", "county_inboxes", "write_frame", "read_frame", "write_previous",
           "read_previous", "read_model_parameters", "write_counts", "read_counts"]

# What a county publishes (store table -> staged file); records are its source files.
RESULT_TABLES = ("row_problems", "matches", "discrepancies", "export_problems", "household_changes", "model_parameters")


def county_inboxes(inbox: Path) -> list[str]:
    """The county folders of a province inbox, by name: every folder (or link to one, even
    one that leads nowhere: that county then fails loudly instead of being left out)."""
    return sorted(p.name for p in Path(inbox).iterdir()
                  if not p.name.startswith(".") and (p.is_dir() or p.is_symlink()))


def write_previous(folder: Path, previous: Previous | None, county: str) -> None:
    """The previous run's rows of one county (night over night), if there is one."""
    if previous is None:
        return
    mine = pl.col("county") == county
    _write(previous.counts.filter(mine), folder / "previous_counts.parquet")
    _write(previous.records.filter(mine), folder / "previous_records.parquet")
    (folder / "previous_run.txt").write_text(previous.run_id, encoding="utf-8")


def read_previous(folder: Path) -> Previous | None:
    run = folder / "previous_run.txt"
    if not run.exists():
        return None
    return Previous(run.read_text(encoding="utf-8"), _read(folder / "previous_counts.parquet"),
                    _read(folder / "previous_records.parquet"))


def write_frame(frame: pl.DataFrame, path: Path) -> None:
    _write(frame, path)


def read_frame(path: Path) -> pl.DataFrame | None:
    return pl.read_parquet(path) if path.exists() else None


def _write(frame: pl.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(path, compression="lz4", statistics=False)


def _read(path: Path) -> pl.DataFrame:
    return pl.read_parquet(path) if path.exists() else pl.DataFrame()


def write_shard(folder: Path, records: dict[str, pl.DataFrame], problems: pl.DataFrame, matches: pl.DataFrame,
                model_parameters: pl.DataFrame | None = None) -> None:
    for source in SOURCES:
        _write(records[source], folder / f"{source}.parquet")
    _write(problems, folder / "problems.parquet")
    _write(matches, folder / "matches.parquet")
    if model_parameters is not None:
        _write(model_parameters, folder / "model_parameters.parquet")


def read_model_parameters(folder: Path) -> pl.DataFrame | None:
    """The model ``write_shard`` staged (None: none was)."""
    return read_frame(folder / "model_parameters.parquet")


def write_counts(folder: Path, counts: dict[str, float]) -> None:
    """What the clerks' decisions changed while the county was matched, and its candidate
    figures (``judge``'s counts)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "review_counts.json").write_text(json.dumps(counts, sort_keys=True), encoding="utf-8")


def read_counts(folder: Path) -> dict[str, float]:
    path = folder / "review_counts.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def read_shard(folder: Path, county: str) -> Shard:
    return Shard(county, {s: _read(folder / f"{s}.parquet") for s in SOURCES}, _read(folder / "matches.parquet"))


def read_problems(folder: Path) -> pl.DataFrame:
    return _read(folder / "problems.parquet")


def write_borrowed(folder: Path, borrowed: Borrowed) -> None:
    for system in SYSTEMS:
        _write(borrowed.systems.get(system, pl.DataFrame()), folder / f"borrowed_{system}.parquet")
    _write(borrowed.links, folder / "borrowed_links.parquet")
    _write(borrowed.claimed, folder / "borrowed_claimed.parquet")
    if borrowed.elsewhere is not None:
        _write(borrowed.elsewhere, folder / "borrowed_elsewhere.parquet")
    if borrowed.models is not None:
        _write(borrowed.models, folder / "borrowed_models.parquet")


def read_borrowed(folder: Path, county: str) -> Borrowed:
    elsewhere = folder / "borrowed_elsewhere.parquet"
    return Borrowed(
        county, {s: _read(folder / f"borrowed_{s}.parquet") for s in SYSTEMS}, _read(folder / "borrowed_links.parquet"),
        _read(folder / "borrowed_claimed.parquet"), pl.read_parquet(elsewhere) if elsewhere.exists() else None,
        read_frame(folder / "borrowed_models.parquet"),
    )


def write_results(folder: Path, results: Results) -> None:
    frames = {"row_problems": results.problems, "matches": results.matches, "discrepancies": results.discrepancies,
              "export_problems": results.export_problems, "household_changes": results.household_changes,
              "model_parameters": results.model_parameters}
    for table, frame in frames.items():
        if frame is not None:
            _write(frame, folder / f"out_{table}.parquet")
    (folder / "out_counts.json").write_text(json.dumps(results.counts, sort_keys=True), encoding="utf-8")


def read_results(folder: Path, county: str) -> tuple[dict[str, list[pl.DataFrame]], dict[str, int]]:
    """A county's tables as ``store.finish_run`` takes them (lists of frames, each with its
    ``county``), and its counts."""
    def tag(frame: pl.DataFrame) -> pl.DataFrame:
        if frame.width == 0:  # nothing staged (e.g. no export problems)
            return frame
        return frame.with_columns(pl.lit(county, pl.String).alias("county"))

    tables = {"records": [tag(_read(folder / f"{s}.parquet")) for s in SOURCES]}
    for table in RESULT_TABLES:
        tables[table] = [tag(_read(folder / f"out_{table}.parquet"))]
    return tables, json.loads((folder / "out_counts.json").read_text(encoding="utf-8"))
