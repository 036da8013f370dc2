"""csv_reader: line ends, encodings, bad lines and unclosed quotes, each named by line."""

from __future__ import annotations

import polars as pl
import pytest

from reconcile import csv_reader
from reconcile.csv_reader import GridTooLarge, decode_text, parse_delimited

ROWS = [["学生姓名", "地址"]] + [[f"学生{i}", "2017级花垣县"] for i in range(1, 101)]


def _lines(rows=ROWS) -> list[bytes]:
    return [",".join(r).encode("utf-8") for r in rows]


def _join(lines: list[bytes], end: bytes = b"\n") -> bytes:
    return end.join(lines) + end


def _replace(at: int, raw: bytes) -> bytes:
    lines = _lines()
    lines[at - 1] = raw
    return _join(lines)


def _insert(at: int, raw: bytes) -> bytes:
    lines = _lines()
    lines.insert(at - 1, raw)
    return _join(lines)


MIXED = b"".join(line + (b"\r\n", b"\n", b"\r")[i % 3] for i, line in enumerate(_lines()))

# label, bytes, encoding, records holding a value, bad lines, line of the last record
CASES = [
    ("plain utf-8", _join(_lines()), "utf-8", 101, [], 101),
    ("CRLF", _join(_lines(), b"\r\n"), "utf-8", 101, [], 101),
    ("CR only (old Mac)", _join(_lines(), b"\r"), "utf-8", 101, [], 101),
    ("CRLF, LF and CR mixed", MIXED, "utf-8", 101, [], 101),
    ("a NUL byte", _replace(20, "学生x,\x00地址".encode()), "utf-8", 100, [(20, "NUL byte")], 101),
    ("one GBK line in UTF-8", _replace(30, "学生y,花垣县".encode("gbk")), "utf-8", 100,
     [(30, "not utf-8: invalid continuation byte")], 101),
    ("unclosed quote mid-file", _insert(40, '"学生z,花垣县'.encode()), "utf-8", 101,
     [(40, "unclosed quote: the quoted field opening on this line is never closed")], 102),
    ("unclosed quote near the end", _insert(100, '"学生z,花垣县'.encode()), "utf-8", 101,
     [(100, "unclosed quote: the quoted field opening on this line is never closed")], 102),
    ("a quoted field over lines is one record", _insert(10, '"学生\n甲","花\n垣"'.encode()), "utf-8",
     102, [], 104),
    ("GB18030 file", _join([ln.decode().encode("gb18030") for ln in _lines()]), "gb18030", 101, [], 101),
    ("UTF-8 with BOM", b"\xef\xbb\xbf" + _join(_lines()), "utf-8", 101, [], 101),
    ("UTF-16 with BOM", "\n".join(",".join(r) for r in ROWS).encode("utf-16"), "utf-16", 101, [], 101),
]


@pytest.mark.parametrize("label,data,encoding,n,bad,last", CASES, ids=[c[0] for c in CASES])
def test_every_good_line_is_read_and_each_bad_one_named(label, data, encoding, n, bad, last) -> None:
    text = decode_text(data)
    assert text is not None and text.encoding == encoding
    grid = parse_delimited(text.text)
    assert sorted(text.bad_lines + grid.bad_lines) == bad
    held = grid.frame.select(~pl.all_horizontal(pl.all().is_null())).to_series()
    assert held.sum() == n                        # a bad line reads as an empty record
    assert grid.rows[-1] == last
    names = grid.frame["c0"].drop_nulls().to_list()
    assert not any("\r" in v or "\x00" in v for v in names)
    assert grid.frame["c1"].drop_nulls().str.contains("^(地址|2017级花垣县|花\n垣)$").all()


@pytest.mark.parametrize("data", [
    "\n".join(",".join(r) for r in ROWS).encode("utf-16-le"),      # UTF-16 without a BOM
    "姓名,身份证号\n".encode() + b"M\xfcller,\x80\xff\n",            # half the lines bad
    bytes(range(256)) * 40,
], ids=["utf-16 without BOM", "half the lines bad", "binary"])
def test_no_encoding_but_for_a_few_lines_is_undecodable(data) -> None:
    assert decode_text(data) is None


def test_a_grid_beyond_the_bound_is_refused_before_parsing(monkeypatch) -> None:
    monkeypatch.setattr(csv_reader, "MAX_EMPTY_GRID_BYTES", 1024)
    wide = "," * 500 + "\n" + "\n".join(f"x{i}" for i in range(200))
    with pytest.raises(GridTooLarge, match="cells the file doesn't hold"):
        parse_delimited(wide)


def test_long_rows_are_read_in_batches(monkeypatch) -> None:
    monkeypatch.setattr(csv_reader, "BATCH_ROWS", 7)
    data = _insert(50, '"学生\n甲",1'.encode())
    grid = parse_delimited(decode_text(data).text)
    assert grid.frame.height == 102 and grid.rows.is_sorted() and grid.rows[-1] == 103


@pytest.mark.parametrize("mib,refused", [(100, False), (390, False), (457, True)])
def test_text_beyond_the_reading_bound_is_refused_before_decoding(mib, refused) -> None:
    if refused:
        with pytest.raises(GridTooLarge, match="split the file"):
            csv_reader.check_size(mib * 2**20)
    else:
        csv_reader.check_size(mib * 2**20)
