"""Matching's cost and its links under the configured u sample beside a larger one, in one
invocation, on the same normalised county.

    .venv/bin/python benchmarks/match_speed.py [--households 3000] [--dir DIR] [--peer-max-pairs 2000000]

Runs `match.link_system` for every system twice: as configured, and with `u_max_pairs`
set to the peer value (the sample the configured one is measured against). Prints per run
the CPU seconds of matching and of its random sample (`_sample_counts`), the random pairs
drawn, and then how the two runs' links differ: roster rows linked to another system record
(or to none in one run), the same link with another status, the largest weight difference
of a link both runs made, and the largest difference of a level's bits in the fitted models.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _truth import add_county_args, county_dir  # noqa: E402

from reconcile import match  # noqa: E402
from reconcile.config import MatchSettings, load_settings  # noqa: E402
from reconcile.fields import SYSTEMS  # noqa: E402
from reconcile.ingest import read_inbox  # noqa: E402
from reconcile.model import parameters_frame  # noqa: E402
from reconcile.pipeline import normalize_all  # noqa: E402


def _timed_sampling() -> dict[str, float]:
    """CPU seconds spent in `match._sample_counts`, summed while the returned dict lives."""
    spent = {"cpu": 0.0}
    inner = match._sample_counts

    def timed(r: pl.DataFrame, s: pl.DataFrame, ms: MatchSettings):  # type: ignore[no-untyped-def]
        t = time.process_time()
        try:
            return inner(r, s, ms)
        finally:
            spent["cpu"] += time.process_time() - t

    match._sample_counts = timed
    return spent


def run(records: dict[str, pl.DataFrame], ms: MatchSettings, label: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    spent = _timed_sampling()
    links, params, drawn = [], [], []
    t = time.process_time()
    for system in SYSTEMS:
        got = match.link_system(records["roster"], records[system], system, ms)
        links.append(got.links)
        params.append(parameters_frame(got.model, system))
        drawn.append(got.model.random_pairs)
    cpu = time.process_time() - t
    print(f"{label:<28} matching {cpu:6.1f} s CPU, of which the u sample {spent['cpu']:5.1f} s; "
          f"random pairs per system {drawn}")
    return pl.concat(links), pl.concat(params)


def differences(a: tuple[pl.DataFrame, pl.DataFrame], b: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    k = ["system", "roster_rec"]
    cols = [*k, "system_rec", "status", "weight"]
    j = a[0].select(cols).join(b[0].select(cols), on=k, how="full", coalesce=True, suffix="_peer")
    other = j.filter(pl.col("system_rec").ne_missing(pl.col("system_rec_peer"))).height
    same = j.filter(pl.col("system_rec").eq_missing(pl.col("system_rec_peer")))
    status = same.filter(pl.col("status") != pl.col("status_peer")).height
    dw = same.select((pl.col("weight") - pl.col("weight_peer")).abs().max()).item() or 0.0
    p = a[1].join(b[1], on=["system", "field", "level"], suffix="_peer")
    db = p.select((pl.col("bits") - pl.col("bits_peer")).abs().max()).item() or 0.0
    print(f"links {a[0].height} vs {b[0].height}: {other} roster rows linked otherwise, {status} links with another "
          f"status; largest weight difference of a common link {dw:.2f} bits; of a level {db:.2f} bits")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_county_args(ap)
    ap.add_argument("--peer-max-pairs", type=int, default=2_000_000)
    args = ap.parse_args()
    settings = load_settings()
    with county_dir(args) as county:
        records, _ = normalize_all(read_inbox(county / "inbox", settings.header_aliases), settings)
    print(f"roster {records['roster'].height} rows; " + ", ".join(f"{s} {records[s].height}" for s in SYSTEMS))
    ms = settings.match
    peer = dataclasses.replace(ms, u_max_pairs=args.peer_max_pairs)
    configured = run(records, ms, f"configured ({ms.u_max_pairs:,})")
    larger = run(records, peer, f"peer ({peer.u_max_pairs:,})")
    differences(configured, larger)


if __name__ == "__main__":
    main()
