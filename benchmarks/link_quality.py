"""Precision and recall of `matched` links against the generator's ground truth, beside an
exact-ID lookup (what a clerk's VLOOKUP does today).

    .venv/bin/python benchmarks/link_quality.py [--households 3000] [--seed 1] [--errors 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _truth import add_county_args, county_dir, evaluate, household_links, load_truth, recall_by_error  # noqa: E402

from reconcile.config import load_settings  # noqa: E402
from reconcile.ingest import read_inbox  # noqa: E402
from reconcile.pipeline import reconcile  # noqa: E402


def exact_id_links(records: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """VLOOKUP on the ID cell as it stands (trimmed), first hit wins."""
    r = records["roster"].select(
        pl.col("file").alias("roster_file"), pl.col("sheet").alias("roster_sheet"), pl.col("row").alias("roster_row"),
        pl.col("id_number").str.strip_chars().alias("k"),
    ).drop_nulls("k")
    out = []
    for system in ("dibao", "filing"):
        s = records[system].select(
            pl.col("file").alias("system_file"), pl.col("sheet").alias("system_sheet"), pl.col("row").alias("system_row"),
            pl.col("id_number").str.strip_chars().alias("k"),
        ).drop_nulls("k").unique("k", keep="first", maintain_order=True)
        out.append(r.join(s, on="k").with_columns(pl.lit(system).alias("system"), pl.lit("matched").alias("status"), pl.lit("id").alias("via")))
    return pl.concat(out).drop("k")


def main() -> None:
    ap = argparse.ArgumentParser()
    add_county_args(ap)
    args = ap.parse_args()
    with county_dir(args) as county:
        settings = load_settings()
        t0 = time.perf_counter()
        results = reconcile(read_inbox(county / "inbox", settings.header_aliases), settings)
        took = time.perf_counter() - t0
        truth = load_truth(county / "truth")
        links = results.matches
        ours = evaluate(links, truth, ["matched"])
        ours_review = evaluate(links, truth, ["matched", "review"])
        base = evaluate(exact_id_links(results.records), truth, ["matched"])
        print(f"county: {args.households} households, seed {args.seed}, errors x{args.errors}; "
              f"roster {results.counts['roster_rows']} rows, dibao {results.counts['dibao_rows']}, filing {results.counts['filing_rows']}; "
              f"ingest+reconcile {took:.1f} s")
        print(f"{'method':<26}{'links':>8}{'precision':>11}{'recall':>9}{'F1':>8}")
        for label, m in (("exact-ID lookup", base), ("recon matched", ours), ("recon matched+review", ours_review)):
            print(f"{label:<26}{m['links']:>8}{m['precision']:>11.4f}{m['recall']:>9.4f}{m['f1']:>8.4f}")
        hh = household_links(links.filter(pl.col("status") == "matched"), truth, pl.read_csv(county / "truth" / "persons.csv"))
        print(f"students linked only through a heads-only dibao export: {hh['links']}, "
              f"right household {hh['correct']} (precision {hh['precision']:.4f}); not counted above")
        print(f"recall gain over exact-ID lookup: {100 * (ours['recall'] - base['recall']):+.2f} points")
        mp = results.model_parameters
        if mp is not None and mp.height:
            for system, part in mp.group_by("system", maintain_order=True):
                print(f"model {system[0]}: prior {part['prior'][0]:.3g} ({part['prior_bits'][0]:.1f} bits), "
                      f"EM {part['em_iterations'][0]} iterations, converged {part['converged'][0]}; levels with m from data "
                      f"{(part['m_from'] == 'data').sum()}/{part.height}, u from data {(part['u_from'] == 'data').sum()}/{part.height}")
        print("\nrecall of `matched` by error injected into the roster row:")
        with pl.Config(tbl_rows=60, tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True):
            print(recall_by_error(links, truth, ["matched"]))


if __name__ == "__main__":
    main()
