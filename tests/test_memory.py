"""compact: same values, fresh string buffers."""

from __future__ import annotations

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from reconcile.memory import compact


def _buffer_bytes(s: pl.Series) -> int:
    """Bytes of the data buffers behind a string column (its views excluded)."""
    arr = s.to_arrow(compat_level=pl.CompatLevel.newest())
    chunks = arr.chunks if hasattr(arr, "chunks") else [arr]
    return sum(b.size for c in chunks for b in c.buffers()[2:] if b is not None)


@pytest.mark.parametrize(
    "frame",
    [
        pl.DataFrame({"a": ["张三", None, "李四" * 20], "n": [1, 2, 3]}),
        pl.DataFrame({"a": pl.Series([], dtype=pl.String)}),
        pl.DataFrame({"e": pl.Series(["x", "y"], dtype=pl.Enum(["x", "y"])), "d": [None, None]}),
        pl.DataFrame({"a": [None, None]}, schema={"a": pl.String}),
    ],
)
def test_values_and_types_unchanged(frame: pl.DataFrame) -> None:
    assert_frame_equal(compact(frame), frame)


def test_filtered_strings_no_longer_hold_the_whole_buffer() -> None:
    big = pl.DataFrame({"s": [f"学生姓名与编号{i:012d}" for i in range(200_000)]})
    kept = big.filter(pl.int_range(pl.len()) % 20 == 0)
    assert _buffer_bytes(kept["s"]) >= 0.9 * _buffer_bytes(big["s"])  # what compact is for
    small = compact(kept)
    assert small.equals(kept)
    assert _buffer_bytes(small["s"]) <= 0.1 * _buffer_bytes(big["s"])
