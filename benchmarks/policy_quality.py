"""Precision and recall of the policy kinds against the generator's ground truth (issue 7).

    .venv/bin/python benchmarks/policy_quality.py [--households 3000] [--seed 1] [--errors 1] [--dir DIR]

Generates a county (with its policy file in DIR/config/policy), reconciles it as of the
truth's reference date, and compares each kind with truth/expected.csv: roster kinds by
(file, sheet, row), missed_eligible by the child (any of the child's system records).
The truth is the generator's own (its standards table and its rules, no code of the product's);
for each kind the wrong and missed rows are counted by the error classes injected into them
(truth/records.csv), which tells a product fault from a hard input.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _truth import add_county_args, county_dir  # noqa: E402
from reconcile.config import load_settings  # noqa: E402
from reconcile.ingest import read_inbox  # noqa: E402
from reconcile.pipeline import reconcile  # noqa: E402

KINDS = ("household_exited", "dibao_stopped", "subsidy_mismatch", "age_stage_mismatch", "export_incomplete", "missed_eligible")
KEY = ["file", "sheet", "row"]
TARGET = 0.98


def score(found: pl.DataFrame, truth_dir: Path) -> list[dict]:
    expected = pl.read_csv(truth_dir / "expected.csv", schema_overrides={"sheet": pl.String, "row": pl.Int64}).with_columns(pl.col("sheet").fill_null(""))
    records = pl.read_csv(truth_dir / "records.csv", schema_overrides={"sheet": pl.String, "row": pl.Int64, "errors": pl.String}).with_columns(
        pl.col("sheet").fill_null(""))
    person = records.select(*KEY, "person_id")
    out = []
    for kind in KINDS:
        want = expected.filter(pl.col("kind") == kind).select(KEY)
        got = found.filter(pl.col("kind") == kind).select(KEY).unique()
        if kind == "missed_eligible":  # the child, whichever of its records was named
            want = want.join(person, on=KEY).select("person_id").unique()
            got = got.join(person, on=KEY, how="left").select("person_id").unique()
            on = ["person_id"]
        else:
            on = KEY
        hit = got.join(want, on=on, how="semi").height
        p = hit / got.height if got.height else 1.0
        r = hit / want.height if want.height else 1.0
        wrong = got.join(want, on=on, how="anti")
        missed = want.join(got, on=on, how="anti")
        out.append({"kind": kind, "truth": want.height, "found": got.height, "correct": hit, "precision": p, "recall": r,
                    "wrong_by_error": _by_error(wrong, records, on), "missed_by_error": _by_error(missed, records, on)})
    return out


def _by_error(rows: pl.DataFrame, records: pl.DataFrame, on: list[str]) -> dict[str, int]:
    """Error classes of the rows and of the person's system records ("system " + class): a
    roster kind can fail on an error in the system record it should have been linked to."""
    if rows.is_empty():
        return {}
    people = rows.select(on).unique() if on != KEY else rows.select(KEY).unique().join(
        records.select(*KEY, "person_id"), on=KEY, how="left")
    if on == KEY:
        own = people.join(records.select(*KEY, "errors"), on=KEY, how="left")
    else:
        own = people.join(records.filter(pl.col("source") == "roster").select("person_id", "errors"), on="person_id", how="left")
    system = people.join(records.filter(pl.col("source") != "roster").select(
        "person_id", pl.col("errors").str.split(";").list.eval(pl.when(pl.element() != "").then(pl.lit("system ") + pl.element()))
        .list.drop_nulls().list.join(";").alias("errors")), on="person_id", how="left")
    errs = (pl.concat([own.select(*on, "errors"), system.select(*on, "errors")])
            .with_columns(pl.col("errors").fill_null("").str.split(";")).explode("errors")
            .filter(pl.col("errors") != "").unique([*on, "errors"]))
    clean = people.join(errs, on=on, how="anti").height
    counts = dict(errs.group_by("errors").agg(pl.len().alias("n")).sort(["n", "errors"], descending=[True, False]).iter_rows())
    return {**({"(no error)": clean} if clean else {}), **counts}


def main() -> None:
    ap = argparse.ArgumentParser()
    add_county_args(ap)
    args = ap.parse_args()
    with county_dir(args) as county:
        notes = json.loads((county / "truth" / "notes.json").read_text(encoding="utf-8"))
        as_of = dt.date.fromisoformat(notes["reference_date"])
        settings = load_settings(county / "config")
        t0 = time.perf_counter()
        results = reconcile(read_inbox(county / "inbox", settings.header_aliases), settings, as_of=as_of)
        took = time.perf_counter() - t0
        rows = score(results.discrepancies, county / "truth")
        print(f"county: {args.households} households, seed {args.seed}, errors x{args.errors}; as of {as_of}; "
              f"policy {results.policy.title if results.policy else None}; roster {results.counts['roster_rows']} rows; {took:.1f} s")
        print(f"{'kind':<22}{'truth':>7}{'found':>7}{'correct':>9}{'precision':>11}{'recall':>8}  target {TARGET}")
        for r in rows:
            ok = "met" if r["precision"] >= TARGET and r["recall"] >= TARGET else "MISSED"
            print(f"{r['kind']:<22}{r['truth']:>7}{r['found']:>7}{r['correct']:>9}{r['precision']:>11.4f}{r['recall']:>8.4f}  {ok}")
        print("\nerror classes of the wrong (found, not in truth) and missed rows, per kind:")
        for r in rows:
            for label in ("wrong", "missed"):
                classes = r[f"{label}_by_error"]
                if classes:
                    print(f"  {r['kind']} {label}: " + ", ".join(f"{k} {v}" for k, v in list(classes.items())[:8]))
        ep = results.export_problems
        print(f"\nexport_problems: {ep.height} row(s)")
        for row in ep.iter_rows(named=True):
            print(f"  {row['system']} {row['file']} {row['town']}/{row['village']}: {row['problem']}, expected rows {row['expected_rows']} ({row['expected_from']})")
        cut = notes.get("cut") or {}
        print(f"truth: cut {cut.get('source')} {cut.get('file')} {cut.get('town')}/{cut.get('village')}, {cut.get('persons')} rows")


if __name__ == "__main__":
    main()
