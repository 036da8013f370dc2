"""Delimited text (CSV, TSV, text "xls") read line-exactly: one bad line never costs the file.

* Line ends: CRLF, LF and a lone CR all end a line (mixed in one file as well).
* Encoding: UTF-16 with BOM, else UTF-8 (BOM or not), else GB18030 (never gb2312), decided
  by which decodes the file with the fewest bad lines. A line that does not decode, or holds
  a NUL byte, is left out and reported (``bad_line``, ``row`` = its line number); a file
  where that is more than a few lines (``max(5, 1 %)``) or half of them is not that encoding.
* Quotes: a quoted field may span lines; one that runs on for more than
  ``MAX_RECORD_LINES`` lines (or past the csv module's field limit) is an unclosed quote:
  the line it opens on is left out and reported, and reading resumes on the next line.
* Bounded: records are parsed by the csv module in batches of ``BATCH_ROWS`` and turned
  into columns by polars, so the reader holds the text, one batch and the columns built so
  far; ``check_grid`` refuses a file whose lines × columns would need more than
  ``MAX_EMPTY_GRID_BYTES`` for cells the file does not hold.
"""

from __future__ import annotations

import csv
import io
import itertools
import re
from dataclasses import dataclass, field

import polars as pl

__all__ = ["DecodedText", "CsvGrid", "decode_text", "parse_delimited", "sniff_delimiter", "check_size",
           "MAX_RECORD_LINES", "BATCH_ROWS", "MAX_EMPTY_GRID_BYTES", "MAX_COLUMNS", "GridTooLarge"]

MAX_RECORD_LINES = 50          # a quoted field running on longer is taken for an unclosed quote
BATCH_ROWS = 20_000
MAX_COLUMNS = 16_384           # Excel's own; longer records are cut to the widest of the sample
CELL_BYTES = 16                # one cell of a polars string column beyond its text
MAX_EMPTY_GRID_BYTES = 1024**3


@dataclass
class DecodedText:
    parts: list[str]                            # pieces cut after a '\n'; line ends normalised
    encoding: str
    bad_lines: list[tuple[int, str]] = field(default_factory=list)   # (line, technical reason)

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def head(self, chars: int) -> str:
        out, n = [], 0
        for part in self.parts:
            out.append(part[:chars - n])
            n += len(out[-1])
            if n >= chars:
                break
        return "".join(out)


@dataclass
class CsvGrid:
    frame: pl.DataFrame                         # c0..cN (String)
    rows: pl.Series                             # line on which each record starts (Int64)
    bad_lines: list[tuple[int, str]]


class GridTooLarge(Exception):
    pass


#: What reading costs beyond the rows it returns, per byte of text (measured by
#: benchmarks/reader_bounds.py on a 120 MiB roster: 306 MB beyond 111 MB of rows; the raw
#: cells and the table overlap while the table is built a slice at a time).
COST_PER_BYTE = 2.6


def check_size(n_bytes: int) -> None:
    """Refuse, before decoding, a text file whose reading would cost more than the bound
    beyond its rows (a 457 MiB CSV would need about 1.2 GiB)."""
    cost = n_bytes * COST_PER_BYTE
    if cost > MAX_EMPTY_GRID_BYTES:
        raise GridTooLarge(
            f"{n_bytes / 2**20:.0f} MiB of text: reading it would need about {cost / 2**30:.1f} GiB "
            f"beyond its rows (limit {MAX_EMPTY_GRID_BYTES / 2**30:.0f} GiB, i.e. "
            f"{MAX_EMPTY_GRID_BYTES / COST_PER_BYTE / 2**20:.0f} MiB of text); split the file")


def _normalise_line_ends(data: bytes) -> bytes:
    if b"\r" not in data:
        return data
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")


def _decode_lines(data: bytes, encoding: str, cap: int) -> tuple[list[str], list[tuple[int, str]]] | None:
    """Decode, leaving out (as empty lines) the lines that don't; None past ``cap`` bad lines.

    Work is linear: each failure resumes after the failing line, and there are at most ``cap``.
    """
    view = memoryview(data)
    parts: list[str] = []
    bad: list[tuple[int, str]] = []
    pos, line = 0, 1                               # ``line``: the line number at ``pos``
    while True:
        nul = data.find(b"\x00", pos)
        seg_end = len(data) if nul == -1 else max(pos, data.rfind(b"\n", pos, nul) + 1)
        try:
            for a, b in _pieces(data, pos, seg_end):
                parts.append(str(view[a:b], encoding))
            good_end, reason, failed = seg_end, "NUL byte", nul != -1
        except UnicodeDecodeError as exc:
            good_end = max(a, data.rfind(b"\n", a, a + exc.start) + 1)
            parts.append(str(view[a:good_end], encoding))
            reason, failed = f"not {encoding}: {exc.reason}", True
        if not failed:
            return parts, bad
        line += data.count(b"\n", pos, good_end)
        bad.append((line, reason))
        if len(bad) > cap:
            return None
        end = data.find(b"\n", good_end)
        if end == -1:
            return parts, bad
        parts.append("\n")         # the bad line is read as an empty line: numbering holds
        pos, line = end + 1, line + 1


PIECE_BYTES = 8 * 1024**2


def _pieces(data: bytes, start: int, end: int):
    """(a, b) slices of data[start:end] of about PIECE_BYTES, each ending after a '\n' (never
    inside a character: no UTF-8 or GB18030 multi-byte sequence holds the byte 0x0A)."""
    while start < end:
        cut = min(end, start + PIECE_BYTES)
        if cut < end:
            nl = data.rfind(b"\n", start, cut)
            cut = nl + 1 if nl != -1 else (data.find(b"\n", cut, end) + 1 or end)
        yield start, cut
        start = cut


def decode_text(data: bytes) -> DecodedText | None:
    """The text of a file, or None when no encoding decodes it but for a few lines."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError:
            return None
        return DecodedText([text.replace("\r\n", "\n").replace("\r", "\n")], "utf-16")
    data = _normalise_line_ends(data)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    lines = data.count(b"\n") + 1
    nonempty = lines - data.count(b"\n\n") - data.endswith(b"\n")
    cap = max(0, min(max(5, lines // 100), (nonempty - 1) // 2))
    utf8 = _decode_lines(data, "utf-8", cap)
    if utf8 is not None and (not utf8[1] or _nonascii_lines(data) - len(utf8[1]) > len(utf8[1])):
        # UTF-8 is the stronger signal: GBK text almost never passes as UTF-8, while UTF-8
        # text nearly always "decodes" as GB18030 (into nonsense). A few bad lines among many
        # good non-ASCII ones are bad lines of a UTF-8 file.
        return DecodedText(utf8[0], "utf-8", utf8[1])
    gb = _decode_lines(data, "gb18030", cap)
    if gb is not None and (utf8 is None or len(gb[1]) <= len(utf8[1])):
        return DecodedText(gb[0], "gb18030", gb[1])
    if utf8 is not None:
        return DecodedText(utf8[0], "utf-8", utf8[1])
    return None


_HIGH_LINE = re.compile(rb"[\x80-\xff][^\n]*")


def _nonascii_lines(data: bytes) -> int:
    """Lines holding a byte beyond ASCII (each match runs to its line's end: linear)."""
    return sum(1 for _ in _HIGH_LINE.finditer(data))


def sniff_delimiter(text: str) -> str:
    lines = [ln for ln in itertools.islice(io.StringIO(text[:1 << 20]), 50) if ln.strip()]
    best, best_score = ",", 0
    for delim in (",", "\t", ";", "|"):
        counts = sorted(ln.count(delim) for ln in lines)
        if not counts:
            continue
        # the count most lines share, preferring more columns: robust to title lines
        score = max(counts[len(counts) // 2], counts[-1] // 2)
        if score > best_score:
            best, best_score = delim, score
    return best


def _sample_width(text: str, delim: str) -> int:
    sample = "".join(itertools.islice(io.StringIO(text[:1 << 20]), 200))
    try:
        width = max((len(r) for r in csv.reader(io.StringIO(sample), delimiter=delim)), default=1)
    except csv.Error:
        width = max((ln.count(delim) + 1 for ln in io.StringIO(sample)), default=1)
    return min(max(width, 1), MAX_COLUMNS)


def check_grid(parts: list[str], delim: str, width: int) -> None:
    """Refuse before parsing when lines × columns would need more than the bound for cells
    the file doesn't hold (a cell the file holds costs at least its delimiter)."""
    lines = sum(p.count("\n") for p in parts) + 1
    held = sum(p.count(delim) for p in parts) + lines
    empty = lines * width - held
    if empty * CELL_BYTES > MAX_EMPTY_GRID_BYTES:
        raise GridTooLarge(
            f"{lines:,} lines x {width:,} columns: the reader would need "
            f"{empty * CELL_BYTES / 1024**3:.1f} GiB for cells the file doesn't hold "
            f"(limit {MAX_EMPTY_GRID_BYTES / 1024**3:.0f} GiB)")


def _columns(rows: list[list[str]], width: int) -> pl.DataFrame:
    """Records -> columns c0..c{width-1}: transposed by zip_longest (short records padded with
    null, longer ones cut), each column built by polars from one tuple of str."""
    cols = list(itertools.islice(itertools.zip_longest(*rows), width))
    empty = (None,) * len(rows)
    return pl.DataFrame(
        [pl.Series(f"c{i}", cols[i] if i < len(cols) else empty, dtype=pl.String)
         for i in range(width)]
    ).with_columns(pl.all().replace("", None))


class _Lines:
    """The lines of a text held as pieces (each ending after a '\\n'), one at a time, with
    tell/seek like io.StringIO but without its copy of the text (4 bytes a character);
    ``release`` lets go of the pieces before the current one."""

    def __init__(self, parts: list[str]) -> None:
        self.parts = parts
        self.i = 0
        self.pos = 0

    def __iter__(self) -> "_Lines":
        return self

    def __next__(self) -> str:
        while self.i < len(self.parts) and self.pos >= len(self.parts[self.i]):
            self.i, self.pos = self.i + 1, 0
        if self.i >= len(self.parts):
            raise StopIteration
        part = self.parts[self.i]
        nl = part.find("\n", self.pos)
        end = len(part) if nl == -1 else nl + 1
        line = part[self.pos:end]
        self.pos = end
        return line

    def tell(self) -> tuple[int, int]:
        return self.i, self.pos

    def seek(self, where: tuple[int, int]) -> None:
        self.i, self.pos = where

    def at_end(self) -> bool:
        return all(self.pos >= len(p) if k == self.i else not p
                   for k, p in enumerate(self.parts[self.i:], start=self.i))

    def readline(self) -> str:
        return next(self, "")

    def release(self) -> None:
        for k in range(self.i):
            self.parts[k] = ""


class _Records:
    """csv records with the line each starts on; unclosed quotes become bad lines."""

    def __init__(self, parts: list[str], delim: str) -> None:
        self.f = _Lines(parts)
        self.delim = delim
        self.line = 1                          # line at the reader's position
        self.bad: list[tuple[int, str]] = []
        self._new_reader()

    def _new_reader(self) -> None:
        self.reader = csv.reader(self.f, delimiter=self.delim, quotechar='"', strict=False)
        self.base = self.line - 1              # lines before this reader began

    def batch(self) -> tuple[list[list[str]], list[int]] | None:
        """Up to BATCH_ROWS records; fast when no record spans lines (the common case)."""
        self.f.release()                       # nothing before this batch is read again
        start_off, start_line = self.f.tell(), self.line
        try:
            rows = list(itertools.islice(self.reader, BATCH_ROWS))
            consistent = self.base + self.reader.line_num == start_line - 1 + len(rows)
        except csv.Error:
            rows, consistent = [], False
        if consistent:
            self.line = start_line + len(rows)
            return (rows, list(range(start_line, start_line + len(rows)))) if rows else None
        self.f.seek(start_off)
        self.line = start_line
        self._new_reader()
        return self._slow_batch()

    def _quote_open_at_end(self, off: int) -> bool:
        """A record that spans lines up to the end of the text: is its quote still open?"""
        here = self.f.tell()
        if not self.f.at_end():
            return False
        self.f.seek(off)
        try:
            for _ in csv.reader(self.f, delimiter=self.delim, quotechar='"', strict=True):
                pass
            return False
        except csv.Error:
            return True
        finally:
            self.f.seek(here)

    def _slow_batch(self) -> tuple[list[list[str]], list[int]] | None:
        rows: list[list[str]] = []
        lines: list[int] = []
        while len(rows) < BATCH_ROWS:
            off, first = self.f.tell(), self.line
            try:
                row = next(self.reader)
                span = self.base + self.reader.line_num - first + 1
                error = None
            except StopIteration:
                break
            except csv.Error as exc:
                row, span, error = None, MAX_RECORD_LINES + 1, f"is cut off ({str(exc).split('(')[0].strip()})"
            if error is None and span > 1 and self._quote_open_at_end(off):
                error = "is never closed"
            if span > MAX_RECORD_LINES or error is not None:
                why = error or f"runs on for {span} lines (limit {MAX_RECORD_LINES})"
                self.bad.append((first, f"unclosed quote: the quoted field opening on this line {why}"))
                self.f.seek(off)
                self.f.readline()
                self.line = first + 1
                self._new_reader()
                continue
            self.line = first + span
            rows.append(row)
            lines.append(first)
        return (rows, lines) if rows else None


def parse_delimited(text: str | list[str]) -> CsvGrid:
    """The records of a delimited text (a str, or pieces each ending after a line end, which
    are let go as they are read) as a grid, with line numbers and bad lines."""
    parts = [text] if isinstance(text, str) else text
    if parts and parts[0].startswith("\ufeff"):
        parts[0] = parts[0][1:]
    head = DecodedText(parts, "").head(1 << 20)
    delim = sniff_delimiter(head)
    width = _sample_width(head, delim)
    check_grid(parts, delim, width)
    del text
    recs = _Records(parts, delim)
    frames: list[pl.DataFrame] = []
    numbers: list[pl.Series] = []
    while (got := recs.batch()) is not None:
        rows, lines = got
        frames.append(_columns(rows, width))
        numbers.append(pl.Series("row", lines, dtype=pl.Int64))
    frame = pl.concat(frames, rechunk=False) if frames else pl.DataFrame()   # no second copy
    rows = pl.concat(numbers) if numbers else pl.Series("row", [], dtype=pl.Int64)
    return CsvGrid(frame, rows, sorted(recs.bad))
