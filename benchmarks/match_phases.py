"""Matching's CPU time and its exact output, for comparing two versions of the code.

    nice -n 10 .venv/bin/python benchmarks/match_phases.py DIR [--save OUT] [--compare OUT] [--profile HTML]

DIR is a county folder `recon synth` wrote (its `inbox`, `config`). Reads and normalises
the inbox, then times `pipeline.link_systems` alone (CPU seconds, all threads, and wall).
`--save OUT` writes its `Linked` result (matches, model parameters, blocking figures) as
Parquet/JSON; `--compare OUT` checks this code's result against it with `DataFrame.equals`
(order included): a faster matching must not change a single link, status, weight, why or
parameter. Run `--save` with one version's interpreter and `--compare` with the other's
(PYTHONPATH set to that version's root). `--profile HTML` writes a pyinstrument profile of
link_systems (pyinstrument installed by hand, not locked).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(os.environ.get("PYTHONPATH", "").split(os.pathsep)[0] or Path(__file__).resolve().parent.parent)
sys.path.insert(0, str(ROOT))

import reconcile  # noqa: E402,F401  (before polars: it sets the allocator's options)

from reconcile import pipeline  # noqa: E402
from reconcile.config import load_settings  # noqa: E402
from _saved import compare_frames, save_frames  # noqa: E402
from reconcile.ingest import read_inbox  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir", type=Path)
    ap.add_argument("--save", type=Path)
    ap.add_argument("--compare", type=Path)
    ap.add_argument("--profile", type=Path)
    args = ap.parse_args()
    config = args.dir / "config"
    settings = load_settings(config if config.exists() else None)
    records, _ = pipeline.normalize_all(read_inbox(args.dir / "inbox", settings.header_aliases), settings)
    print(f"code {Path(pipeline.__file__).resolve().parent.parent}; roster {records['roster'].height} rows", flush=True)
    profiler = None
    if args.profile:
        from pyinstrument import Profiler  # optional, not in the lock

        profiler = Profiler()
        profiler.start()
    cpu, wall = time.process_time(), time.perf_counter()
    linked = pipeline.link_systems(records, settings)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    if profiler is not None:
        profiler.stop()
        args.profile.write_text(profiler.output_html())
        print(profiler.output_text(unicode=False, color=False, show_all=False)[:20000])
    print(f"link_systems: {cpu:.1f} s CPU, {wall:.1f} s wall; {linked.matches.height} links", flush=True)
    frames = {"matches": linked.matches, "model": linked.model_parameters}
    if args.save:
        save_frames(args.save, frames)
        (args.save / "blocking.json").write_text(json.dumps(linked.blocking, sort_keys=True, default=dict))
    if args.compare:
        same = not compare_frames(args.compare, frames)
        blk = not (args.compare / "blocking.json").exists() or json.loads((args.compare / "blocking.json").read_text()) == json.loads(json.dumps(linked.blocking, sort_keys=True, default=dict))
        same &= blk
        print(f"blocking: {'IDENTICAL' if blk else 'DIFFERENT'}")
        return 0 if same else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
