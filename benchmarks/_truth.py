"""Scoring links against the generator's ground truth (shared by the benchmarks)."""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import polars as pl

KEY = ["file", "sheet", "row"]


def load_truth(truth_dir: Path) -> pl.DataFrame:
    return pl.read_csv(truth_dir / "records.csv", schema_overrides={"sheet": pl.String, "row": pl.Int64, "errors": pl.String}).with_columns(
        pl.col("sheet").fill_null(""), pl.col("errors").fill_null("")
    )


def true_links(truth: pl.DataFrame) -> pl.DataFrame:
    """(roster row, system) → the set of that person's rows in the system."""
    roster = truth.filter(pl.col("source") == "roster").select(
        pl.col("file").alias("roster_file"), pl.col("sheet").alias("roster_sheet"), pl.col("row").alias("roster_row"), "person_id", "errors"
    )
    systems = truth.filter(pl.col("source") != "roster").select(
        pl.col("source").alias("system"), pl.col("file").alias("system_file"), pl.col("sheet").alias("system_sheet"),
        pl.col("row").alias("system_row"), "person_id",
    )
    return roster.join(systems, on="person_id")


def evaluate(links: pl.DataFrame, truth: pl.DataFrame, status: list[str]) -> dict[str, float]:
    """Precision/recall of the links with the given statuses, per (roster row, system)."""
    tl = true_links(truth)
    rk = ["roster_file", "roster_sheet", "roster_row", "system"]
    wanted = tl.select(rk).unique()
    pred = links.filter(pl.col("status").is_in(status) & (pl.col("via") != "household_head")).select(
        *rk, "system_file", "system_sheet", "system_row"
    )
    correct = pred.join(tl.select(*rk, "system_file", "system_sheet", "system_row"), on=rk + ["system_file", "system_sheet", "system_row"], how="semi")
    p = correct.height / pred.height if pred.height else 1.0
    r = correct.select(rk).unique().height / wanted.height if wanted.height else 1.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return {"links": pred.height, "true_links": wanted.height, "correct": correct.height, "precision": p, "recall": r, "f1": f1}


def recall_by_error(links: pl.DataFrame, truth: pl.DataFrame, status: list[str]) -> pl.DataFrame:
    """Recall of true links per kind of error injected into the roster row."""
    tl = true_links(truth)
    rk = ["roster_file", "roster_sheet", "roster_row", "system"]
    pred = links.filter(pl.col("status").is_in(status) & (pl.col("via") != "household_head")).select(
        *rk, "system_file", "system_sheet", "system_row"
    )
    hit = tl.join(pred, on=rk + ["system_file", "system_sheet", "system_row"], how="semi").select(rk).unique().with_columns(pl.lit(True).alias("hit"))
    per = tl.select(*rk, "errors").unique(rk).join(hit, on=rk, how="left").with_columns(pl.col("hit").fill_null(False))
    per = per.with_columns(pl.col("errors").str.split(";")).explode("errors").with_columns(
        pl.when(pl.col("errors") == "").then(pl.lit("(none)")).otherwise(pl.col("errors")).alias("error")
    )
    return per.group_by("error").agg(pl.len().alias("links"), pl.col("hit").mean().alias("recall")).sort("error")


def household_links(links: pl.DataFrame, truth: pl.DataFrame, persons: pl.DataFrame) -> dict[str, float]:
    """Links through a heads-only export: right when the student belongs to that head's household."""
    hh = persons.select("person_id", "household_id")
    rows = truth.join(hh, on="person_id", how="left")
    roster = rows.filter(pl.col("source") == "roster").select(
        pl.col("file").alias("roster_file"), pl.col("sheet").alias("roster_sheet"), pl.col("row").alias("roster_row"),
        pl.col("household_id").alias("r_hh"),
    )
    system = rows.filter(pl.col("source") != "roster").select(
        pl.col("file").alias("system_file"), pl.col("sheet").alias("system_sheet"), pl.col("row").alias("system_row"),
        pl.col("household_id").alias("s_hh"),
    )
    hl = links.filter(pl.col("via") == "household_head").join(roster, on=["roster_file", "roster_sheet", "roster_row"], how="left").join(
        system, on=["system_file", "system_sheet", "system_row"], how="left"
    )
    right = hl.filter(pl.col("r_hh") == pl.col("s_hh")).height
    return {"links": hl.height, "correct": right, "precision": right / hl.height if hl.height else 1.0}


def add_county_args(ap: argparse.ArgumentParser) -> None:
    """The options every quality benchmark takes to pick or generate its county."""
    ap.add_argument("--households", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--errors", type=float, default=1.0)
    ap.add_argument("--dir", type=Path, default=None,
                    help="a county folder (DIR/inbox, DIR/truth, DIR/config); generated there if empty")


@contextmanager
def county_dir(args: argparse.Namespace) -> Iterator[Path]:
    """`--dir`, generated first if it holds no county, or a temporary generated county."""
    from countygen import SynthConfig, generate_county

    with tempfile.TemporaryDirectory() as tmp:
        county = args.dir or Path(tmp) / "county"
        if not (county / "truth" / "notes.json").exists():
            generate_county(county, SynthConfig(households=args.households, seed=args.seed, errors=args.errors))
        yield county
