"""Frames a benchmark keeps (``--save``) and checks another version against (``--compare``):
a change that only makes a step faster or smaller must not change a single cell."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import polars as pl

__all__ = ["save_frames", "compare_frames"]


def save_frames(folder: Path, frames: Mapping[str, pl.DataFrame]) -> None:
    """Each frame as ``folder/<name>.parquet``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in frames.items():
        frame.write_parquet(folder / f"{name}.parquet")
    print(f"saved {sorted(frames)} to {folder}")


def compare_frames(folder: Path, frames: Mapping[str, pl.DataFrame]) -> list[str]:
    """The names of the frames that differ from the saved ones (order included), each printed."""
    bad = []
    for name, frame in frames.items():
        want = pl.read_parquet(folder / f"{name}.parquet")
        same = frame.equals(want)
        print(f"  {name}: {frame.height:,} rows, {'identical' if same else 'DIFFERENT'}")
        if not same:
            bad.append(name)
    print("identical to the saved ones" if not bad else f"DIFFERENT FROM THE SAVED ONES: {bad}")
    return bad
