"""Link quality against the generator's ground truth, at several error levels and seeds,
side by side with an exact-ID lookup and Splink 5 on the same normalised records.

    .venv/bin/python benchmarks/match_quality.py [--households 3000] [--seeds 1 2 3]
                                                 [--errors 1 2 4] [--no-splink]

Per county and method: precision / recall / F1 of `matched`, recall of matched + review,
false not-found (roster rows with a true link in some system that the method links to no
system at all, as a share of roster rows), and wrong + missed links (false positives +
missed true links of `matched`). Then recall of `matched` per injected error kind (all
counties of an error level pooled), and recon's matching time per 100,000 roster rows.
Splink needs the benchmark group: `.venv/bin/pip install "splink>=5"`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _truth import evaluate, load_truth, recall_by_error, true_links  # noqa: E402
from link_quality import exact_id_links  # noqa: E402

from reconcile.config import load_settings  # noqa: E402
from reconcile.fields import SYSTEMS  # noqa: E402
from reconcile.ingest import read_inbox  # noqa: E402
from reconcile.pipeline import match_all, normalize_all  # noqa: E402
from countygen import SynthConfig, generate_county  # noqa: E402


def _with_lineage(links: pl.DataFrame, records: dict[str, pl.DataFrame], system: str) -> pl.DataFrame:
    r = records["roster"].select(pl.col("rec").alias("roster_rec"), pl.col("file").alias("roster_file"),
                                 pl.col("sheet").alias("roster_sheet"), pl.col("row").alias("roster_row"))
    s = records[system].select(pl.col("rec").alias("system_rec"), pl.col("file").alias("system_file"),
                               pl.col("sheet").alias("system_sheet"), pl.col("row").alias("system_row"))
    return links.join(r, on="roster_rec").join(s, on="system_rec").with_columns(
        pl.lit(system).alias("system"), pl.lit("matched").alias("status"), pl.lit("splink").alias("via"))


def false_not_found(links: pl.DataFrame, truth: pl.DataFrame, roster_rows: int) -> tuple[int, float]:
    rk = ["roster_file", "roster_sheet", "roster_row"]
    present = true_links(truth).select(rk).unique()
    found = links.select(rk).unique()
    n = present.join(found, on=rk, how="anti").height
    return n, n / roster_rows


def run_county(households: int, seed: int, errors: float, splink: bool, tmp: Path) -> tuple[list[dict], dict[str, pl.DataFrame]]:
    county = tmp / f"c{seed}_{errors}"
    generate_county(county, SynthConfig(households=households, seed=seed, errors=errors))
    settings = load_settings()
    records, _ = normalize_all(read_inbox(county / "inbox", settings.header_aliases), settings)
    truth = load_truth(county / "truth")
    n_roster = records["roster"].height
    t0 = time.perf_counter()
    ours = match_all(records, settings)
    took = time.perf_counter() - t0
    methods = {"exact-ID lookup": exact_id_links(records), "recon": ours}
    if splink:
        from _splink import splink_links

        t1 = time.perf_counter()
        parts = [_with_lineage(splink_links(records["roster"], records[s]), records, s) for s in SYSTEMS]
        methods["Splink 5"] = pl.concat(parts, how="diagonal_relaxed")
        methods["Splink 5"] = methods["Splink 5"]
        splink_took = time.perf_counter() - t1
    rows = []
    for label, links in methods.items():
        m = evaluate(links, truth, ["matched"])
        mr = evaluate(links, truth, ["matched", "review"])
        fnf, fnf_share = false_not_found(links, truth, n_roster)
        wrong = m["links"] - m["correct"]
        missed = m["true_links"] - round(m["recall"] * m["true_links"])
        rows.append({
            "errors": errors, "seed": seed, "method": label, "roster": n_roster, "true_links": m["true_links"],
            "precision": m["precision"], "recall": m["recall"], "f1": m["f1"], "recall_review": mr["recall"],
            "false_not_found": fnf, "fnf_share": fnf_share, "wrong": wrong, "missed": missed, "wrong_missed": wrong + missed,
            "secs": took if label == "recon" else (splink_took if label == "Splink 5" else None),
        })
    per_err = {label: recall_by_error(links, truth, ["matched"]) for label, links in methods.items()}
    return rows, per_err


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--households", type=int, default=3000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--errors", type=float, nargs="+", default=[1.0, 2.0, 4.0])
    ap.add_argument("--no-splink", action="store_true")
    args = ap.parse_args()
    rows: list[dict] = []
    per_err: dict[tuple[float, str], list[pl.DataFrame]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for e in args.errors:
            for seed in args.seeds:
                r, pe = run_county(args.households, seed, e, not args.no_splink, Path(tmp))
                rows += r
                for label, df in pe.items():
                    per_err.setdefault((e, label), []).append(df)
    res = pl.DataFrame(rows)
    fmt = pl.Config(tbl_rows=200, tbl_cols=20, tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True,
                    float_precision=4, tbl_width_chars=200)
    with fmt:
        print(f"counties: {args.households} households; seeds {args.seeds}; errors {args.errors}\n")
        print("per county (matched links; recall_review = matched + review; fnf = false not-found rows):")
        print(res.select("errors", "seed", "method", "roster", "true_links", "precision", "recall", "f1", "recall_review",
                         "false_not_found", "fnf_share", "wrong", "missed", "wrong_missed"))
        print("\nper error level, all seeds pooled:")
        agg = res.group_by("errors", "method", maintain_order=True).agg(
            pl.col("precision").mean(), pl.col("recall").mean(), pl.col("f1").mean(), pl.col("recall_review").mean(),
            (pl.col("false_not_found").sum() / pl.col("roster").sum()).alias("fnf_share"),
            pl.col("wrong_missed").sum(),
        )
        print(agg)
        ours = res.filter(pl.col("method") == "recon")
        print(f"\nrecon matching time: {100_000 * ours['secs'].sum() / ours['roster'].sum():.2f} s per 100,000 roster rows "
              f"(both systems; {ours['roster'].sum()} roster rows in {ours['secs'].sum():.1f} s)")
        labels = [m for m in ("exact-ID lookup", "recon", "Splink 5") if (args.errors[0], m) in per_err]
        for e in args.errors:
            joined = None
            for label in labels:
                df = pl.concat(per_err[(e, label)]).group_by("error").agg(
                    pl.col("links").sum(), (pl.col("recall") * pl.col("links")).sum().alias("_hit"))
                df = df.select("error", pl.col("links"), (pl.col("_hit") / pl.col("links")).alias(label))
                joined = df if joined is None else joined.join(df.drop("links"), on="error", how="full", coalesce=True)
            print(f"\nrecall of `matched` per injected roster error, errors x{e:g} (seeds pooled):")
            print(joined.sort("error"))


if __name__ == "__main__":
    main()
