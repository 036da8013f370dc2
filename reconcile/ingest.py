"""Read the inbox: read xlsx/xls/csv into grids, find the header, map columns, keep lineage.

Contract (docs/design.md): `read_inbox` returns an `IngestResult` holding one `SheetTable`
per usable sheet and a frame of file/sheet-level problems (`PROBLEM_SCHEMA`). Each table's
frame has `source`, `file`, `sheet`, `row` (the row number Excel shows; for CSV the line a
text editor shows), then the canonical fields found in the sheet (all `pl.String`, surrounding
whitespace stripped, null when empty), then `<field>_kind` for each ID field present.

How things arrive (for the normalize/match steps):

* Text cells come through as typed, stripped of surrounding whitespace only.
* Numeric cells come through as the number Excel shows: integral numbers as plain digits
  (`1500`), others as the shortest decimal (`1500.5`). A number of 16 digits or more is shown
  with the 15 significant digits Excel keeps and zeros after them (`433124200501231000`), and
  an ID cell holding a number has kind `"number"`: only its first 15 characters are
  trustworthy.
* Date cells come through as ISO text `YYYY-MM-DD` (`YYYY-MM-DD HH:MM:SS` if the cell carries
  a time of day). Dates typed as text are left as typed.
* `columns` maps each canonical field to its header text as it stands in the file; for a field
  found through a two-row merged header it is `"<upper cell>/<lower cell>"`, e.g.
  `"户主信息/姓名"`.
* Blank rows (no mapped field other than `seq` holds a value), total rows (合计/总计/小计/共计
  starting one of the first three columns, or alone in a mapped cell, wherever the row
  stands) and repeated header rows below the header are dropped and
  counted in `SheetTable.dropped_rows` (totals also in `dropped_totals`); they are not problems.
* CSV (``reconcile.csv_reader``): encoding is UTF-8 (with or without BOM), UTF-16 with BOM,
  else GB18030 (never gb2312); CRLF, LF and CR all end a line. A quoted field holding a line
  break spans several editor lines; `row` is the line on which its record starts. A line that
  can't be read (NUL, undecodable, unclosed quote) is a `bad_line` problem, the rest is read.
* Which entries of the inbox are read: ``reconcile.inbox``; an xlsx is checked (bombs, DTDs,
  grid bounds) by ``reconcile.xlsx_scan`` before calamine sees it. Problem rows are made by
  ``reconcile.problems.problem`` (codes and Chinese reasons defined there).
* A large inbox (``PARALLEL_MIN_BYTES``) is read by two processes: this one reads the
  earlier files while a second (``reconcile.second_process``) reads the later ones; the
  tables, problems and ``on_file`` calls are the same, in the same order, as when read
  alone. A second process that dies (a reader that aborts) has its files read here.
* `.xls` files that are really HTML tables, Excel 2003 XML or tab/comma separated text (as
  government systems often export) are read as such. HTML/XML have no Excel row numbers of
  their own: `row` counts table rows (`<tr>`, `<Row>`) from 1, as Excel shows them on opening.
"""

from __future__ import annotations

import functools
import multiprocessing
import re
import time
import tomllib
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from html.parser import HTMLParser
from pathlib import Path

import fastexcel
import polars as pl

from reconcile.csv_reader import GridTooLarge, check_size, decode_text, parse_delimited
from reconcile.errors import ConfigError, scrub
from reconcile.fields import FIELDS, ID_FIELDS, REQUIRED, SOURCES
from reconcile.idcard import normalize_ids
from reconcile.memory import fresh
from reconcile.inbox import (MAX_FILE_BYTES, FileTooLarge, InboxFile, NotRegularFile,
                             list_inbox, read_regular_file)
from reconcile.problems import PROBLEM_SCHEMA, problem, problem_frame
from reconcile.second_process import SecondProcess
from reconcile.xlsx_scan import XlsxRefused, scan_xlsx

__all__ = [
    "SheetTable",
    "IngestResult",
    "PROBLEM_SCHEMA",
    "read_inbox",
    "read_file",
    "load_header_aliases",
]

Aliases = Mapping[str, Mapping[str, Sequence[str]]]

#: The packaged header-alias file (config.py passes it first, then an optional user file).
HEADER_ALIASES_FILE = Path(__file__).with_name("config") / "header_aliases.toml"

HEADER_SCAN_ROWS = 30          # the header must start within this many rows of the sheet's top
TOTAL_MARKERS = ("合计", "总计", "小计", "共计")
TOTAL_SCAN_COLUMNS = 3
TOTAL_LABEL = r"^(?:{markers})[:：]?(?:[0-9.,]+(?:人|户|名|元)?)?[:：]?$"
BODY_SLICE_ROWS = 100_000      # a sheet's rows are mapped and cleaned this many at a time
MAX_GRID_CELLS = 16 * 1024**2   # HTML / XML 2003 grids (built cell by cell): rows x columns
SECONDS_PER_MIB = 10            # a reader taking longer than this per MiB is stopped


@dataclass(frozen=True)
class SheetTable:
    source: str
    file: str
    sheet: str
    frame: pl.DataFrame          # lineage, canonical fields (String), `<id field>_kind`
    columns: dict[str, str]      # canonical field -> header text as it stands in the file
    header_row: int              # Excel row (or CSV line) of the (last) header row
    dropped_rows: int = 0        # rows below the header left out: blank, total, repeated header
    dropped_totals: int = 0      # of which total rows (合计 …)
    title: str = ""              # text of the rows above the header (a title naming the school), one line each


@dataclass(frozen=True)
class IngestResult:
    tables: list[SheetTable]
    problems: pl.DataFrame       # PROBLEM_SCHEMA
    files_read: int              # supported files that could be opened and decoded


# --------------------------------------------------------------------------------------------
# Header aliases


def load_header_aliases(paths: Sequence[Path]) -> dict[str, dict[str, tuple[str, ...]]]:
    """Merge alias files in order: later files add spellings to the earlier ones.

    Returns every source of `fields.FIELDS` with every one of its fields (an empty tuple when
    no file names it). Raises `ConfigError` naming the file and key for an unknown source or
    field, a value that is not a list of strings, or a spelling given to two fields of one
    source.
    """
    merged: dict[str, dict[str, list[str]]] = {s: {f: [] for f in FIELDS[s]} for s in SOURCES}
    owner: dict[str, dict[str, tuple[str, str]]] = {s: {} for s in SOURCES}  # norm -> field, file
    for path in paths:
        path = Path(path)
        try:
            with path.open("rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError as exc:
            raise ConfigError(f"header alias file {str(path)!r} not found") from exc
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"header alias file {str(path)!r} is not valid TOML: {exc}") from exc
        for source, table in data.items():
            if source not in FIELDS:
                raise ConfigError(
                    f"{path}: unknown source [{source}] (expected one of {', '.join(SOURCES)})"
                )
            if not isinstance(table, dict):
                raise ConfigError(f"{path}: [{source}] must be a table of field = [spellings]")
            for fld, spellings in table.items():
                if fld not in FIELDS[source]:
                    raise ConfigError(f"{path}: unknown field {source}.{fld}")
                if isinstance(spellings, str):
                    spellings = [spellings]
                if not isinstance(spellings, list) or not all(
                    isinstance(s, str) and s.strip() for s in spellings
                ):
                    raise ConfigError(
                        f"{path}: {source}.{fld} must be a list of non-empty strings"
                    )
                for spelling in spellings:
                    norm = _norm_header(spelling)
                    seen = owner[source].get(norm)
                    if seen is not None and seen[0] != fld:
                        raise ConfigError(
                            f"{path}: {source}.{fld}: spelling {spelling!r} already belongs to "
                            f"{source}.{seen[0]} (in {seen[1]})"
                        )
                    if seen is None:
                        owner[source][norm] = (fld, str(path))
                        merged[source][fld].append(spelling.strip())
    return {s: {f: tuple(v) for f, v in fs.items()} for s, fs in merged.items()}


_BRACKETS = str.maketrans(
    {"【": "(", "】": ")", "[": "(", "]": ")", "〔": "(", "〕": ")", "{": "(", "}": ")",
     "〈": "(", "〉": ")", "《": "(", "》": ")", "「": "(", "」": ")", "<": "(", ">": ")"}
)
_HEADER_DROP = re.compile(r"[\s*※★☆:\"'“”‘’]+")
_PARENS = re.compile(r"\([^()]*\)")
_GROUP_SUFFIX = re.compile(r"(基本信息|信息|情况|资料)$")


@functools.lru_cache(maxsize=1 << 14)   # the same headers (and title cells) in every sheet
def _norm_header(text: str) -> str:
    """Header text as compared: NFKC, no whitespace/markers, one bracket style, lower case."""
    s = unicodedata.normalize("NFKC", text).translate(_BRACKETS)
    return _HEADER_DROP.sub("", s).lower()


class _AliasIndex:
    """Normalised spelling -> canonical field, for one source."""

    def __init__(self, aliases: Aliases, source: str) -> None:
        table = aliases.get(source, {})
        self.lookup: dict[str, str] = {}
        self.first: dict[str, str] = {}
        for fld in FIELDS[source]:
            spellings = tuple(table.get(fld, ()))
            self.first[fld] = spellings[0] if spellings else fld
            for spelling in spellings:
                self.lookup.setdefault(_norm_header(spelling), fld)
        for fld in FIELDS[source]:           # canonical names work as headers too
            self.lookup.setdefault(fld, fld)

    def match(self, norm: str) -> str | None:
        if not norm:
            return None
        fld = self.lookup.get(norm)
        if fld is None and "(" in norm:
            if norm[0] == "(" and norm[-1] == ")" and (inner := norm[1:-1]):
                fld = self.match(inner)           # 【村(社区)】: brackets around it all
            if fld is None and (stripped := _PARENS.sub("", norm)):
                fld = self.lookup.get(stripped)   # 资助金额(元): a bracketed note
        return fld


# --------------------------------------------------------------------------------------------
# Problems


def _safe_reason(exc: BaseException, what: str = "") -> str:
    """A short reason from an exception: its class and first line, without file bytes or
    the cell values libraries quote."""
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    msg = re.sub(r"(\\x[0-9a-fA-F]{2})+", "…", msg)
    msg = re.sub(r"signature \S+", "signature …", scrub(msg))[:160]
    head = f"{what}: " if what else ""
    return f"{head}{type(exc).__name__}: {msg}" if msg else f"{head}{type(exc).__name__}"


# --------------------------------------------------------------------------------------------
# Grids: a sheet's cells as strings, before the header is known


@dataclass
class _Grid:
    sheet: str
    frame: pl.DataFrame                       # c0..cN (String), raw cell text, one row per row
    rows: pl.Series | None = None             # row numbers (Int64) if not 1..height
    numeric: pl.DataFrame | None = None       # bool columns c0..cN: True where a number cell
    typed: Callable[[list[int]], dict[int, pl.Series]] | None = None  # lazily: number masks
    hidden: bool = False
    excel_dates: bool = False                 # date cells arrive as 'YYYY-MM-DD HH:MM:SS'
    # cells the reader turns into null that a clerk must hear about: (row, grid column,
    # problem, value), from the xlsx XML (error values like #N/A, formulas without a value)
    flagged: list[tuple[int, int, str, str]] | None = None

    def number_masks(self, cols: list[int]) -> dict[int, pl.Series]:
        if not cols:
            return {}
        if self.typed is not None:
            return self.typed(cols)
        if self.numeric is not None:
            return {c: self.numeric.get_column(f"c{c}") for c in cols}
        return {}


def _frame_from_rows(rows: list[list[str | None]]) -> pl.DataFrame:
    width = max((len(r) for r in rows), default=0)
    if width * len(rows) > MAX_GRID_CELLS:
        raise _TooLarge(f"{len(rows):,} rows x {width:,} columns (limit {MAX_GRID_CELLS:,} cells)")
    cols = {f"c{i}": [r[i] if i < len(r) else None for r in rows] for i in range(width)}
    return pl.DataFrame(cols, schema={k: pl.String for k in cols}) if cols else pl.DataFrame()


# ---- Excel (calamine) ------------------------------------------------------------------------


def _excel_grids(data: bytes, flags: dict[str, list] | None = None) -> list[_Grid]:
    reader = fastexcel.read_excel(data)
    grids = []
    flags = flags or {}
    for idx, name in enumerate(reader.sheet_names):
        sheet = reader.load_sheet(idx, header_row=None, skip_rows=0, dtypes="string")
        hidden = str(getattr(sheet, "visible", "visible")).lower() not in ("visible",)
        df = sheet.to_polars()
        if df.width == 0 or df.height == 0:
            grids.append(_Grid(name, pl.DataFrame(), hidden=hidden))
            continue
        names = list(df.columns)
        df = df.rename({n: f"c{i}" for i, n in enumerate(names)})

        def typed(cols: list[int], _idx=idx, _names=names, _h=df.height) -> dict[int, pl.Series]:
            # Second pass over the mapped columns only: as booleans, number (and boolean)
            # cells give a value and text cells give null, so this tells which were numbers.
            use = [_names[c] for c in cols]
            t = reader.load_sheet(
                _idx, header_row=None, skip_rows=0, use_columns=use,
                dtypes={n: "boolean" for n in use},
            ).to_polars()
            if t.height != _h:  # never seen; be safe rather than misalign
                return {}
            return {c: t.get_column(n).is_not_null() for c, n in zip(cols, use, strict=True)}

        grids.append(_Grid(name, df, typed=typed, hidden=hidden, excel_dates=True,
                           flagged=flags.get(name)))
    return grids


# ---- HTML tables ("xls" from web systems) --------------------------------------------------


class _HTMLTables(HTMLParser):
    """All <tr> rows of all tables, laid out like Excel: colspan/rowspan leave blank cells."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: list[list[str | None]] = []
        self.nums: list[list[bool]] = []
        self._cells: list[tuple[str, int, int, bool]] | None = None
        self._buf: list[str] | None = None
        self._span = (1, 1, False)
        self._skip = 0
        self._pending: dict[int, int] = {}   # column -> rows still covered by a rowspan
        self._total = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._skip += 1
        elif tag == "tr":
            self._end_row()
            self._cells = []
        elif tag in ("td", "th"):
            if self._cells is None:
                self._cells = []
            self._end_cell()
            a = dict(attrs)
            num = a.get("x:num")
            self._span = (_int_attr(a.get("colspan")), _int_attr(a.get("rowspan")),
                          num is not None)
            self._num_value = num
            self._buf = []
        elif tag == "br" and self._buf is not None:
            self._buf.append("\n")

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self._skip = max(0, self._skip - 1)
        elif tag in ("td", "th"):
            self._end_cell()
        elif tag == "tr":
            self._end_row()
        elif tag == "table":
            self._end_row()

    def handle_data(self, data):
        if self._buf is not None and not self._skip:
            self._buf.append(data)

    def _end_cell(self):
        if self._buf is None or self._cells is None:
            return
        text = "".join(self._buf)
        colspan, rowspan, is_num = self._span
        if is_num and self._num_value not in (None, ""):
            text = _number_text(self._num_value) or text
        self._cells.append((text, colspan, rowspan, is_num))
        self._buf = None

    def _end_row(self):
        self._end_cell()
        if self._cells is None:
            return
        row: list[str | None] = []
        nums: list[bool] = []
        col = 0
        pending = self._pending
        for text, colspan, rowspan, is_num in self._cells:
            while pending.get(col, 0) > 0:
                row.append(None)
                nums.append(False)
                col += 1
            for k in range(colspan):
                row.append(text if k == 0 else None)
                nums.append(is_num if k == 0 else False)
                if rowspan > 1:
                    pending[col] = rowspan   # decremented below, so it covers rowspan-1 rows
                col += 1
        for c in list(pending):
            pending[c] -= 1
            if pending[c] <= 0:
                del pending[c]
        self.rows.append(row)
        self.nums.append(nums)
        self._cells = None
        self._total += len(row)
        if self._total > MAX_GRID_CELLS:
            raise _TooLarge(f"HTML table of more than {MAX_GRID_CELLS:,} cells")


def _int_attr(v: str | None) -> int:
    try:
        return max(1, min(int(str(v).strip()), 1000))
    except (TypeError, ValueError):
        return 1


def _html_grid(text: str) -> _Grid:
    """Fed in pieces against a deadline (``SECONDS_PER_MIB``): the parser is pure Python."""
    parser = _HTMLTables()
    deadline = time.monotonic() + SECONDS_PER_MIB * max(1.0, len(text) / 2**20)
    for i in range(0, len(text), 1 << 16):
        parser.feed(text[i:i + (1 << 16)])
        if time.monotonic() > deadline:
            raise _TooLarge(f"HTML table takes over {SECONDS_PER_MIB} s per MiB to read")
    parser.close()
    parser._end_row()
    return _grid_with_numbers("", parser.rows, parser.nums)


def _grid_with_numbers(sheet: str, rows, nums) -> _Grid:
    df = _frame_from_rows(rows)
    numeric = None
    if df.width:
        numeric = pl.DataFrame(
            {f"c{i}": [r[i] if i < len(r) else False for r in nums] for i in range(df.width)},
            schema={f"c{i}": pl.Boolean for i in range(df.width)},
        )
    return _Grid(sheet, df, numeric=numeric)


# ---- Excel 2003 XML spreadsheet ------------------------------------------------------------

_SS = "{urn:schemas-microsoft-com:office:spreadsheet}"


def _xml_grids(text: str) -> list[_Grid]:
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        raise _Unreadable("XML spreadsheet declares a DTD or entities (refused: XXE / entity expansion)")
    root = ET.fromstring(re.sub(r"^\s*<\?xml[^>]*\?>", "", text))
    grids = []
    for ws in root.iter(f"{_SS}Worksheet"):
        name = ws.get(f"{_SS}Name") or ""
        rows: list[list[str | None]] = []
        nums: list[list[bool]] = []
        table = ws.find(f"{_SS}Table")
        if table is not None:
            for xrow in table.iter(f"{_SS}Row"):
                idx = xrow.get(f"{_SS}Index")
                if idx and idx.isdigit() and int(idx) > 1_048_576:
                    raise _TooLarge(f"ss:Index {idx} beyond Excel's last row")
                if idx and idx.isdigit():
                    while len(rows) < int(idx) - 1:
                        rows.append([])
                        nums.append([])
                row: list[str | None] = []
                num: list[bool] = []
                for cell in xrow.iter(f"{_SS}Cell"):
                    cidx = cell.get(f"{_SS}Index")
                    if cidx and cidx.isdigit() and int(cidx) > 16_384:
                        raise _TooLarge(f"ss:Index {cidx} beyond Excel's last column")
                    if cidx and cidx.isdigit():
                        while len(row) < int(cidx) - 1:
                            row.append(None)
                            num.append(False)
                    d = cell.find(f"{_SS}Data")
                    text, is_num = None, False
                    if d is not None:
                        text = "".join(d.itertext())
                        kind = d.get(f"{_SS}Type")
                        if kind == "Number":
                            text, is_num = _number_text(text) or text, True
                        elif kind == "DateTime":
                            text = _iso_datetime(text)
                    row.append(text)
                    num.append(is_num)
                    across = cell.get(f"{_SS}MergeAcross")
                    if across and across.isdigit() and int(across) < 16_384:
                        row.extend([None] * int(across))
                        num.extend([False] * int(across))
                rows.append(row)
                nums.append(num)
        grids.append(_grid_with_numbers(name, rows, nums))
    return grids


def _iso_datetime(text: str) -> str:
    m = re.fullmatch(r"\s*(\d{4}-\d{2}-\d{2})(?:T(\d{2}:\d{2}:\d{2})(?:\.\d+)?)?\s*", text)
    if not m:
        return text
    if m.group(2) and m.group(2) != "00:00:00":
        return f"{m.group(1)} {m.group(2)}"
    return m.group(1)


# --------------------------------------------------------------------------------------------
# Numbers


def _number_text(text: str) -> str | None:
    """A number as Excel shows it: integral -> digits (15 significant at most), else shortest."""
    try:
        f = float(text)
    except (TypeError, ValueError):
        return None
    if f != f or f in (float("inf"), float("-inf")):
        return None
    r = repr(f)            # shortest text that gives back the same double
    try:
        d = Decimal(r)
    except InvalidOperation:
        return None
    if d == d.to_integral_value():
        digits = str(int(d))
        # Excel keeps 15 significant digits and zeros after them (what it does to a longer number
        # typed in); a program that wrote more digits gets the same treatment
        sig = digits.lstrip("-")
        if len(sig) > 15:
            digits = ("-" if digits.startswith("-") else "") + sig[:15] + "0" * (len(sig) - 15)
        return digits
    return r


# --------------------------------------------------------------------------------------------
# Header detection


@dataclass
class _Header:
    top: int                                   # grid index of the first header row
    last: int                                  # grid index of the last header row
    fields: dict[str, tuple[int, str]]         # field -> (column, header text as in the file)
    duplicates: list[tuple[str, int, str]]     # (field, column, header text) left out
    score: int = 0
    has_required: bool = False


def _cell_text(v) -> str:
    return "" if v is None else str(v).strip()


def _resolve_single(texts: list[str], norms: list[str], index: _AliasIndex):
    hits = []
    for c, n in enumerate(norms):
        fld = index.match(n)
        if fld is not None:
            hits.append((fld, c, texts[c]))
    return hits


def _resolve_pair(top_t, top_n, low_t, low_n, index: _AliasIndex):
    """Columns of a two-row header; returns (hits, share of lower cells that were headers)."""
    width = max(len(top_n), len(low_n))
    top_t = top_t + [""] * (width - len(top_t))
    top_n = top_n + [""] * (width - len(top_n))
    low_t = low_t + [""] * (width - len(low_t))
    low_n = low_n + [""] * (width - len(low_n))
    hits = []
    used_low = 0
    group_t, group_n = "", ""        # the last upper cell, carried across its merged span
    for c in range(width):
        pt, pn, ct, cn = top_t[c], top_n[c], low_t[c], low_n[c]
        if pn:
            group_t, group_n = pt, pn
        elif not cn:
            group_t, group_n = "", ""    # a column with neither: the merged span has ended
        gt, gn = (pt, pn) if pn else (group_t, group_n)
        fld, text, via_low = None, "", False
        if cn and gn:
            short = _GROUP_SUFFIX.sub("", gn)
            for cand in (f"{gn}/{cn}", f"{gn}{cn}", f"{short}{cn}" if short != gn else None):
                if cand and (fld := index.match(cand)):
                    text, via_low = f"{gt}/{ct}", True
                    break
        if fld is None and pn and (fld := index.match(pn)):
            text = pt                     # a complete header in the upper row (merged down)
        elif fld is None and cn and (fld := index.match(cn)):
            text, via_low = ct, True
        if fld is not None:
            hits.append((fld, c, text))
            used_low += via_low
    low_cells = sum(1 for n in low_n if n)
    return hits, (used_low / low_cells if low_cells else 0.0)


def _build_header(top: int, last: int, hits, required: tuple[str, ...]) -> _Header:
    fields: dict[str, tuple[int, str]] = {}
    dups = []
    for fld, c, text in hits:
        if fld in fields:
            dups.append((fld, c, text))
        else:
            fields[fld] = (c, text)
    return _Header(top, last, fields, dups, score=len(fields),
                   has_required=all(r in fields for r in required))


def _detect_header(head: list[tuple], source: str, index: _AliasIndex) -> _Header | None:
    """The row (or pair of rows) in the top of the sheet that names most known fields."""
    texts = [[_cell_text(v) for v in row] for row in head]
    norms = [[_norm_header(t) if t else "" for t in row] for row in texts]
    required = REQUIRED[source]
    best: _Header | None = None

    def better(h: _Header, cur: _Header | None) -> bool:
        if cur is None:
            return True
        return (h.has_required, h.score) > (cur.has_required, cur.score)

    singles = []
    for r in range(len(head)):
        h = _build_header(r, r, _resolve_single(texts[r], norms[r], index), required)
        singles.append(h)
        if better(h, best):
            best = h
    for r in range(len(head) - 1):
        if singles[r].score == 0 and singles[r + 1].score == 0:
            continue
        hits, share = _resolve_pair(texts[r], norms[r], texts[r + 1], norms[r + 1], index)
        if share <= 0.5:      # the lower row is data, not a second header row
            continue
        h = _build_header(r, r + 1, hits, required)
        # strictly better than either row alone, or it is not a two-row header
        if (h.has_required, h.score) > max(
            (singles[r].has_required, singles[r].score),
            (singles[r + 1].has_required, singles[r + 1].score),
        ) and better(h, best):
            best = h
    if best is None or best.score < 2:
        return None
    return best


# --------------------------------------------------------------------------------------------
# A grid -> SheetTable

_NUMERIC = r"^-?\d+(?:\.\d+)?$"
_SCI = r"^[+-]?\d+(?:\.\d+)?[eE][+-]?\d+$"
_MIDNIGHT = r"^(\d{4}-\d{2}-\d{2}) 00:00:00$"    # a date cell as calamine gives it
_LONG_NUMBER = r"^-?\d{16,}$"


def _clean(expr: pl.Expr) -> pl.Expr:
    s = expr.str.strip_chars()
    return pl.when(s.str.len_bytes() > 0).then(s)


def _valid_ids(values: pl.Series) -> int:
    ids = normalize_ids(pl.DataFrame({"v": values.cast(pl.String)}), "v")
    return int(ids.get_column("id_status").is_in(["valid", "legacy15"]).sum())


def _choose_id_columns(header: _Header, body: pl.DataFrame, source: str, rel: str, sheet: str,
                       header_row: int) -> list[dict]:
    """Two columns for one field: an ID field takes the column whose values validate more
    often (the first on a tie), any other field the first. Each is reported, naming both."""
    problems = []
    kept = []
    for fld, c, text in header.duplicates:
        first_c, first_text = header.fields[fld]
        chosen = (first_c, first_text)
        detail = ""
        if fld in ID_FIELDS and body.height:
            n_first, n_dup = (_valid_ids(body.get_column(f"c{k}")) for k in (first_c, c))
            if n_dup > n_first:
                chosen = (c, text)
                header.fields[fld] = chosen
            detail = (f"; valid IDs: {n_first} of {body.height} in column {first_c + 1}, "
                      f"{n_dup} in column {c + 1}")
        other = (c, text) if chosen == (first_c, first_text) else (first_c, first_text)
        kept.append((fld, *other))
        problems.append(problem(
            source, rel, "duplicate_column", sheet=sheet, row=header_row, column=other[1],
            detail=f"{fld}: columns {first_c + 1} ('{first_text}') and {c + 1} ('{text}'); read "
                   f"column {chosen[0] + 1}{detail}"))
    header.duplicates = kept
    return problems


FIRST_ROWS_LOOK = 16           # rows looked at first for the first filled one

# Expressions a sheet's rows are read with are the same for every sheet: built once (building
# them in Python cost more than running them on a sheet of a few hundred rows).
_cached = functools.lru_cache(maxsize=4096)


@_cached
def _filled() -> pl.Expr:
    """True on a row holding anything (a cell that ``_clean`` leaves non-null)."""
    return pl.any_horizontal(pl.all().str.strip_chars().str.len_bytes() > 0).fill_null(False)


def _first_filled_row(frame: pl.DataFrame, step: int = 1000) -> int | None:
    """Index of the first row holding anything: looked for in the top rows, then a slice at a
    time (stripping every cell of a large sheet at once would copy all its text)."""
    at, size = 0, min(FIRST_ROWS_LOOK, step)   # most sheets hold something in their top rows
    while at < frame.height:
        found = frame.slice(at, size).select(_filled().arg_true().first()).item()
        if found is not None:
            return at + int(found)
        at, size = at + size, step
    return None


_MARKERS = "|".join(TOTAL_MARKERS)
_SQUEEZED = pl.col("v").str.normalize("NFKC").str.replace_all(r"\s+", "")
_TOTAL_CELL = (
    (pl.col("first") & _SQUEEZED.str.contains(f"^(?:{_MARKERS})"))
    | _SQUEEZED.str.contains(TOTAL_LABEL.format(markers=_MARKERS))
).fill_null(False)


def _total_rows(body: pl.DataFrame, width: int, col_of: dict[str, int]) -> tuple[pl.Expr, int]:
    """Total rows (see the module docstring), as an expression on ``__row``, and how many
    rows of ``body`` it holds (row numbers are unique). Every marker has 计 in it: only the
    few rows holding one are normalised and matched (a full copy of every cell's text would
    cost more than the sheet), their cells as one column (one pass, however wide)."""
    first_cols = [f"c{i}" for i in range(min(TOTAL_SCAN_COLUMNS, width))]
    label_cols = sorted(set(first_cols) | {f"c{c}" for c in col_of.values()})
    candidates = body.filter(
        pl.concat_str(label_cols, ignore_nulls=True).str.contains("计", literal=True)
        .fill_null(False))
    if candidates.height == 0:
        return pl.lit(False), 0
    totals = (
        candidates.lazy()
        .select("__row", *label_cols)
        .unpivot(index="__row", variable_name="col", value_name="v")
        .filter(pl.col("v").str.contains("计", literal=True))
        .with_columns(pl.col("col").is_in(first_cols).alias("first"))
        .filter(_TOTAL_CELL)
        .select(pl.col("__row").unique())
        .collect()
        .get_column("__row")
    )
    if totals.len() == 0:
        return pl.lit(False), 0
    return pl.col("__row").is_in(totals.implode()), totals.len()


@_cached
def _cell(c: int, field: str, dates: bool) -> pl.Expr:
    """Grid column ``c`` as field ``field``: stripped, null when empty; ``dates``: date cells
    (not numbers) come as 'YYYY-MM-DD 00:00:00': keep the date."""
    v = _clean(pl.col(f"c{c}"))
    if dates:   # (a number cell never reads as a date and time: no need to ask which it is)
        v = v.str.replace(_MIDNIGHT, "${1}")
    return v.alias(field)


@_cached
def _suspect(fields: tuple[str, ...]) -> pl.Expr:
    """True on a row that may hold a cell ``_cell_problems`` reports (an error value, text
    over ``MAX_CELL_CHARS``, a control character): one pass over the row's cells joined by
    line ends, so that most sheets skip the cell-by-cell look. Never false where one is."""
    joined = pl.concat_str([pl.col(f) for f in fields], separator="\n", ignore_nulls=True)
    errors = "|".join(re.escape(e) for e in EXCEL_ERRORS)
    return (
        (pl.lit("\n") + joined + pl.lit("\n")).str.contains(f"{_CONTROL}|\\n(?:{errors})\\n")
        | (joined.str.len_chars() > MAX_CELL_CHARS)
    ).fill_null(False)


@_cached
def _long_number(field: str, c: int) -> pl.Expr:
    return (pl.col(f"__num{c}") & pl.col(field).str.contains(_LONG_NUMBER)).fill_null(False)


@_cached
def _kind(field: str, c: int | None) -> pl.Expr:
    """An ID cell's kind: "number" (a number cell: only 15 digits trustworthy), "sci" (text
    in scientific notation), "text"; null when empty. ``c``: its grid column when the sheet
    tells number cells apart."""
    v = pl.col(field)
    num = pl.col(f"__num{c}") if c is not None else pl.lit(False)
    return (
        pl.when(v.is_null()).then(None)
        .when(num & v.str.contains(_NUMERIC)).then(pl.lit("number"))
        .when(v.str.contains(_SCI)).then(pl.lit("sci"))
        .otherwise(pl.lit("text"))
        .cast(pl.String)
        .alias(f"{field}_kind")
    )


def _rows_of(body: pl.DataFrame, grid: _Grid, width: int, header: _Header, ordered: list[str],
             col_of: dict[str, int], masks: dict, source: str, rel: str, sheet: str):
    """One slice of a sheet's body -> (its table rows, compacted; cell problems; totals;
    rows dropped). A slice at a time, so the copies each step makes stay small. A few
    polars queries per slice, whatever the number of columns: on a sheet of a few hundred
    rows each query's set-up costs more than its work."""
    # A total row is a total wherever it stands (a sheet sorted in reverse puts it first):
    # one of the first columns starts with 合计/总计/…, or any mapped cell is only such a
    # label (合计, 合计：66人, 总计 66000元).
    is_total, n_total = _total_rows(body, width, col_of)
    content = [f for f in ordered if f != "seq"]
    is_blank = pl.all_horizontal([pl.col(f).is_null() for f in content]) if content else pl.lit(
        True
    )
    req = REQUIRED[source][0]
    req_header = _clean(pl.lit(header.fields[req][1]))
    is_rep_header = (pl.col(req) == req_header).fill_null(False)
    num_cols = [f"__num{c}" for c in sorted(masks)]
    out = (
        body.lazy()
        .select(
            pl.col("__row").alias("row"),
            *[_cell(col_of[f], f, col_of[f] in masks and grid.excel_dates) for f in ordered],
            *num_cols,
            is_total.alias("__total"),
        )
        .filter(~pl.col("__total") & ~is_blank & ~is_rep_header)
        .with_columns((_suspect(tuple(ordered)) if ordered else pl.lit(False)).alias("__suspect"))
        .collect()
    )
    dropped = body.height - out.height
    out, cell_probs = _cell_problems(out, grid, ordered, col_of,
                                     {f: header.fields[f][1] for f in ordered}, source, rel, sheet)

    # numbers of 16+ digits as Excel shows them (15 significant digits), kinds of ID cells
    fix: list[pl.Expr] = []
    long_cols: set[str] = set()
    masked = [f for f in ordered if col_of[f] in masks]
    if masked and out.height:
        flags = out.select(_long_number(f, col_of[f]).any() for f in masked).row(0)
        long_cols = {f for f, flag in zip(masked, flags, strict=True) if flag}
    for f in ordered:
        if f in long_cols:
            num = pl.col(f"__num{col_of[f]}")
            long_num = out.filter(_long_number(f, col_of[f])).get_column(f)
            mapping = {v: (_number_text(v) or v) for v in long_num.unique().to_list()}
            fix.append(pl.when(num).then(pl.col(f).replace(mapping)).otherwise(pl.col(f)).alias(f))
    if fix:
        out = out.with_columns(fix)
    frame = out.select(
        pl.lit(source, pl.String).alias("source"),
        pl.lit(rel, pl.String).alias("file"),
        pl.lit(sheet, pl.String).alias("sheet"),
        pl.col("row").cast(pl.Int64),
        # written anew: the table holds none of the raw grid's buffers
        *[fresh(pl.col(f).cast(pl.String)).alias(f) for f in ordered],
        *[_kind(f, col_of[f] if col_of[f] in masks else None) for f in ID_FIELDS if f in col_of],
    )
    return frame, cell_probs, n_total, dropped


def _table_from_grid(
    grid: _Grid, source: str, rel: str, index: _AliasIndex, start: int = 0
) -> tuple[SheetTable | None, list[dict]]:
    """`start`: grid index of the first row holding anything (the header scan begins there).
    The grid's frame is taken (``grid.frame`` is emptied) once the header is found."""
    df = grid.frame
    sheet = grid.sheet
    head = df.slice(start, HEADER_SCAN_ROWS).rows()
    header = _detect_header(head, source, index)
    if header is not None:
        header.top += start
        header.last += start
    if header is None:
        if grid.hidden:
            return None, []
        return None, [problem(source, rel, "no_header_found", sheet=sheet)]
    rownums = (
        grid.rows if grid.rows is not None
        else pl.int_range(1, df.height + 1, eager=True, dtype=pl.Int64)
    )
    header_row = int(rownums[header.last])
    problems = []
    if not header.has_required:
        for req in REQUIRED[source]:
            if req not in header.fields:
                problems.append(problem(source, rel, "missing_required_column", sheet=sheet,
                                         row=header_row, column=index.first[req]))
        return None, problems
    problems.extend(_choose_id_columns(header, df.slice(header.last + 1), source, rel, sheet,
                                       header_row))

    ordered = [f for f in FIELDS[source] if f in header.fields]
    col_of = {f: header.fields[f][0] for f in ordered}
    width = df.width
    kept = sorted({*col_of.values(), *range(min(TOTAL_SCAN_COLUMNS, width))})
    body = df.select(*[f"c{c}" for c in kept], rownums.alias("__row")).slice(header.last + 1)
    # The grid is spent: only the body's columns live on, and they are let go a slice at a
    # time below (the raw cells and the table never both exist whole).
    del df
    grid.frame = pl.DataFrame()
    numeric_cols = sorted(set(col_of.values()))
    masks = grid.number_masks(numeric_cols) if body.height else {}
    if masks:
        body = body.with_columns(
            [m.slice(header.last + 1).alias(f"__num{c}") for c, m in masks.items()]
        )

    parts: list[pl.DataFrame] = []
    n_total = dropped = 0
    while not parts or body.height:
        piece, body = body.slice(0, BODY_SLICE_ROWS), body.slice(BODY_SLICE_ROWS)
        frame, cell_probs, n_tot, n_drop = _rows_of(piece, grid, width, header, ordered, col_of,
                                                    masks, source, rel, sheet)
        del piece
        parts.append(frame)
        problems.extend(cell_probs)
        n_total, dropped = n_total + n_tot, dropped + n_drop
    del body
    frame = pl.concat(parts, rechunk=False) if len(parts) > 1 else parts[0]
    if frame.height == 0:
        problems.append(problem(source, rel, "no_data_rows", sheet=sheet, row=header_row,
                                detail="header found but no data rows below it"))
    table = SheetTable(
        source=source,
        file=rel,
        sheet=sheet,
        frame=frame,                    # compacted: the raw grid's buffers can be freed
        columns={f: header.fields[f][1] for f in ordered},
        header_row=header_row,
        dropped_rows=dropped,
        dropped_totals=n_total,
        title="\n".join(" ".join(_cell_text(v) for v in r if _cell_text(v)) for r in head[: header.top - start]).strip(),
    )
    return table, problems


# Cells a clerk must hear about: values that are not data (error values, formulas with no
# stored result), absurdly long text and control characters. Each becomes a row problem
# naming file, sheet, row and column; the value is cleaned (error -> null, long text cut,
# control characters removed) and the rest of the row is read as usual.
EXCEL_ERRORS = ("#N/A", "#VALUE!", "#REF!", "#DIV/0!", "#NUM!", "#NAME?", "#NULL!", "#SPILL!",
                "#CALC!", "#GETTING_DATA", "#FIELD!", "#BLOCKED!", "#UNKNOWN!", "#CONNECT!",
                "#BUSY!")
MAX_CELL_CHARS = 1000          # longer cell text is cut to this (Excel's own limit is 32,767)
_CONTROL = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"
_CELL_MESSAGES = {
    "error_value": "error value in cell, read as empty",
    "formula_without_value": "formula with no stored result, read as empty",
}


def _cell_problems(out: pl.DataFrame, grid: _Grid, ordered: list[str], col_of: dict[str, int],
                   headers: dict[str, str], source: str, rel: str, sheet: str):
    if out.height == 0 or not ordered:
        return out, []
    if not grid.flagged and not out.get_column("__suspect").any():
        return out, []
    found: list[tuple[int, int, dict]] = []
    order = {f: i for i, f in enumerate(ordered)}
    if grid.flagged:
        field_at = {c: f for f, c in col_of.items()}
        kept = set(out.get_column("row").to_list())
        for r, c, prob, val in grid.flagged:
            f = field_at.get(c)
            if f is not None and r in kept:
                value = val if prob == "error_value" else None
                found.append((r, order[f], problem(source, rel, prob, sheet=sheet, row=r,
                                                   column=headers[f], value=value,
                                                   detail=_CELL_MESSAGES.get(prob))))
    marks = out.select(
        pl.col("row"),
        *[
            pl.when(pl.col(f).is_in(EXCEL_ERRORS)).then(pl.lit("error_value"))
            .when(pl.col(f).str.len_chars() > MAX_CELL_CHARS).then(pl.lit("value_too_long"))
            .when(pl.col(f).str.contains(_CONTROL)).then(pl.lit("control_characters"))
            .alias(f)
            for f in ordered
        ],
    )
    bad = marks.unpivot(index="row", variable_name="field", value_name="problem").filter(
        pl.col("problem").is_not_null()
    )
    if bad.height:
        values = out.select("row", *ordered).unpivot(index="row", variable_name="field",
                                                     value_name="value")
        bad = bad.join(values, on=["row", "field"], how="left")
        for r, f, prob, val in bad.iter_rows():
            if prob == "value_too_long":
                val = f"{len(val)} characters, cut to {MAX_CELL_CHARS}: {val[:40]}…"
            elif prob == "control_characters":
                val = re.sub(_CONTROL, "\ufffd", val)[:200]
            found.append((r, order[f], problem(source, rel, prob, sheet=sheet, row=r,
                                               column=headers[f], value=val)))
        out = out.with_columns(
            _clean(
                pl.when(pl.col(f).is_in(EXCEL_ERRORS)).then(None)
                .otherwise(pl.col(f).str.slice(0, MAX_CELL_CHARS).str.replace_all(_CONTROL, ""))
            ).alias(f)
            for f in bad.get_column("field").unique().to_list()
        )
    found.sort(key=lambda t: (t[0], t[1]))
    return out, [p for _, _, p in found]


# --------------------------------------------------------------------------------------------
# Files


_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ENCRYPTED = "EncryptedPackage".encode("utf-16-le")


def _sniff(data: bytes) -> str:
    """'zip', 'ole', 'encrypted', 'text' or 'binary' from the first bytes."""
    if data.startswith(b"PK\x03\x04") or data.startswith(b"PK\x05\x06"):
        return "zip"
    if data.startswith(_OLE):
        return "encrypted" if _ENCRYPTED in data[:65536] else "ole"
    return "text"


def _text_kind(text: str) -> str:
    start = text.lstrip("\ufeff \t\r\n")[:2048].lower()
    if start.startswith("<"):
        if "urn:schemas-microsoft-com:office:spreadsheet" in text[:4096] and "<workbook" in (
            text[:8192].lower()
        ):
            return "xml"
        return "html"
    return "delimited"


def _grids_for(path: Path, ext: str, bad_lines: list[tuple[int, str]]) -> list[_Grid]:
    """Raises on unreadable content; returns [] for an empty file. Lines of a text file left
    out (undecodable, NUL, unclosed quote) are added to ``bad_lines``. The file's bytes live
    only in here, and a text file's only until decoded."""
    if _sniff(read_regular_file(path, MAX_FILE_BYTES, head=65536)) == "text":
        try:
            check_size(path.stat().st_size)             # before the bytes are read at all
        except GridTooLarge as exc:
            raise _TooLarge(str(exc)) from None
    box = [read_regular_file(path, MAX_FILE_BYTES)]    # handed over, so it can be let go
    kind = _sniff(box[0])
    try:
        return _grids_of(box, kind, ext, bad_lines)
    except (_Undecodable, _Unreadable, _TooLarge):
        raise
    except BaseException as exc:  # noqa: BLE001 - any reader failure is a problem row, not a crash
        if not _reader_failure(exc):
            raise
        what = {"zip": "corrupt or truncated xlsx", "ole": "corrupt or truncated xls"}.get(kind, "unreadable")
        raise _Unreadable(_safe_reason(exc, what)) from None


def _grids_of(box: list[bytes], kind: str, ext: str, bad_lines: list[tuple[int, str]]) -> list[_Grid]:
    data = box.pop()
    if kind == "encrypted":
        raise _Unreadable("password-protected (encrypted) workbook")
    if kind == "zip":
        try:
            flags = scan_xlsx(data).flagged()
        except XlsxRefused as exc:
            raise (_TooLarge(str(exc), exc.sheet) if exc.too_large else _Unreadable(str(exc))) from None
        return _excel_grids(data, flags)
    if kind == "ole":
        return _excel_grids(data)
    if not data or data.isspace():          # (no copy of the bytes, unlike strip())
        return []
    decoded = decode_text(data)
    if decoded is None:
        if ext == ".csv" or not _looks_binary(data):
            raise _Undecodable()
        raise _Unreadable(f"not a workbook or text file ({ext} with unknown content)")
    del data
    bad_lines.extend(decoded.bad_lines)
    tk = _text_kind(decoded.head(8192))
    if tk == "xml":
        return _xml_grids(decoded.text)
    if tk == "html" and ext != ".csv":
        return [_html_grid(decoded.text)]
    try:
        grid = parse_delimited(decoded.parts)     # its pieces are let go as they are parsed
    except GridTooLarge as exc:
        raise _TooLarge(str(exc)) from None
    bad_lines.extend(grid.bad_lines)
    bad_lines.sort()
    return [_Grid("", grid.frame, rows=grid.rows)]


def _looks_binary(data: bytes) -> bool:
    sample = data[:4096]
    return b"\x00" in sample or sum(b < 9 or 13 < b < 32 for b in sample) > len(sample) // 20


def _reader_failure(exc: BaseException) -> bool:
    """Any Exception, and the PanicException (a BaseException) calamine raises on some broken
    files (found by fuzzing: tests/fixtures/calamine_panic.xls); not Ctrl-C or exit."""
    return isinstance(exc, Exception) or type(exc).__name__ == "PanicException"


class _Unreadable(Exception):
    pass


class _Undecodable(Exception):
    pass


class _TooLarge(Exception):
    def __init__(self, message: str, sheet: str = "") -> None:
        super().__init__(message)
        self.sheet = sheet


def read_file(
    path: Path, *, source: str, rel: str, aliases: Aliases
) -> tuple[list[SheetTable], list[dict]]:
    """Read one file of `source`; problems are dicts with PROBLEM_SCHEMA's keys.

    Never raises for bad content: an unreadable file gives an `unreadable_file` problem, an
    undecodable CSV `encoding_undetected`, a file or grid beyond the bounds `too_large`, a
    text line that can't be read `bad_line` (its line number in `row`), a file without any
    cell `empty_file`.
    """
    if source not in FIELDS:
        raise ValueError(f"unknown source {source!r} (expected one of {', '.join(SOURCES)})")
    return _read_file(Path(path), source, rel, _AliasIndex(aliases, source))


def _read_file(path: Path, source: str, rel: str, index: _AliasIndex):
    ext = path.suffix.lower()
    bad_lines: list[tuple[int, str]] = []
    try:
        grids = _grids_for(path, ext, bad_lines)
    except FileTooLarge as exc:
        return [], [problem(source, rel, "too_large", detail=str(exc))]
    except NotRegularFile as exc:
        return [], [problem(source, rel, "not_a_regular_file", detail=str(exc))]
    except OSError as exc:
        return [], [problem(source, rel, "unreadable_file", detail=_safe_reason(exc))]
    except _Undecodable:
        return [], [problem(source, rel, "encoding_undetected",
                            detail="neither UTF-8, UTF-16 (BOM) nor GB18030 but for a few lines")]
    except _Unreadable as exc:
        return [], [problem(source, rel, "unreadable_file", detail=str(exc))]
    except _TooLarge as exc:
        return [], [problem(source, rel, "too_large", sheet=exc.sheet, detail=str(exc))]

    tables: list[SheetTable] = []
    problems = [problem(source, rel, "bad_line", row=line, detail=why) for line, why in bad_lines]
    any_cells = False
    grids.reverse()
    while grids:
        grid = grids.pop()              # let each raw grid go once its table is built
        if grid.frame.width == 0 or grid.frame.height == 0:
            continue
        start = _first_filled_row(grid.frame)
        if start is None:          # no cell holds anything
            continue
        any_cells = True
        try:
            table, probs = _table_from_grid(grid, source, rel, index, int(start))
        except BaseException as exc:  # noqa: BLE001
            if not _reader_failure(exc):
                raise
            problems.append(problem(source, rel, "unreadable_sheet", sheet=grid.sheet,
                                    detail=_safe_reason(exc)))
            continue
        problems.extend(probs)
        if table is not None:
            tables.append(table)
    if not any_cells and not bad_lines:
        problems.append(problem(source, rel, "empty_file"))
    return tables, problems


# Files read beside this process: an inbox this large (bytes of its files) is split in two,
# the later files read by a second process (``reconcile.second_process``) while this one reads
# the earlier ones; a smaller one is read here alone (a second interpreter costs ~0.7 s). The
# second process sends each file's tables back as soon as it has read them (one call a file),
# so it never holds more than one file's: its share needs no bound of its own.
PARALLEL_MIN_BYTES = 16 * 1024**2
# Rough CPU seconds to read a file, for the split: per file, and per MiB by kind (measured on
# a generated county: an xlsx is compressed XML, so a MiB of it holds ten times the cells).
_COST_PER_FILE = 0.02
_COST_PER_MIB = {".xlsx": 0.65, ".xls": 0.055, ".csv": 0.08}
_CHILD_START_COST = 0.8        # what the second process spends before its first file


def _split_at(files: Sequence[InboxFile]) -> int:
    """Index of the first file the second process reads (``len(files)``: none): the cut that
    best balances the estimated cost of the two shares, or none for a small inbox."""
    costs = []
    for f in files:
        try:
            size = f.path.stat().st_size
        except OSError:
            size = 0
        costs.append((size, _COST_PER_FILE + size / 2**20 * _COST_PER_MIB.get(f.path.suffix.lower(), 0.1)))
    if len(files) < 2 or sum(b for b, _ in costs) < PARALLEL_MIN_BYTES:
        return len(files)
    total = sum(c for _, c in costs)
    best, best_at, head = total, len(files), 0.0
    for at, (_, c) in enumerate(costs):
        longer = max(head, total - head + _CHILD_START_COST)
        if longer < best:
            best, best_at = longer, at
        head += c
    return best_at


def read_inbox(
    inbox: Path,
    aliases: Aliases,
    *,
    on_file: Callable[[str, int, int], None] | None = None,
    parallel: bool = True,
) -> IngestResult:
    """Read every regular file under inbox/{roster,dibao,filing}/ (recursively, sorted);
    every entry left out gets a problem row (see ``reconcile.inbox``).

    `on_file(rel, done, total)` is called after each file, in the files' order (progress;
    `rel` as in lineage). ``parallel``: a large inbox's later files are read by a second
    process meanwhile (see ``PARALLEL_MIN_BYTES``); pass False where the cores are already
    busy. A daemonic process (a Dask worker reading one county of many, a pool's worker)
    never starts one: its siblings keep the cores busy. The result is the same either way.
    """
    files, problems = list_inbox(Path(inbox))
    indexes = {s: _AliasIndex(aliases, s) for s in SOURCES}
    may_split = parallel and not multiprocessing.current_process().daemon
    cut = _split_at(files) if may_split else len(files)
    jobs = [(f.path, f.source, f.rel, indexes[f.source]) for f in files]  # _read_file's arguments
    aside = SecondProcess([(_read_file, job, {}) for job in jobs[cut:]]) if cut < len(files) else None
    tables: list[SheetTable] = []
    files_read = 0
    refused = ("unreadable_file", "encoding_undetected", "too_large", "not_a_regular_file")

    def take(i: int, f: InboxFile, t: list[SheetTable], p: list[dict]) -> None:
        nonlocal files_read
        tables.extend(t)
        problems.extend(p)
        if not any(x["problem"] in refused and x["row"] is None for x in p):
            files_read += 1
        if on_file is not None:
            on_file(f.rel, i, len(files))

    try:
        for i, (f, job) in enumerate(zip(files[:cut], jobs[:cut], strict=True), start=1):
            take(i, f, *_read_file(*job))
        if aside is not None:
            try:
                done = aside.results()
            except ChildProcessError:
                # the second process died (a reader that aborts): read its share here, as a
                # night without it would
                done = [_read_file(*job) for job in jobs[cut:]]
            for i, (f, (t, p)) in enumerate(zip(files[cut:], done, strict=True), start=cut + 1):
                take(i, f, t, p)
    finally:
        if aside is not None:
            aside.__exit__(None, None, None)
    return IngestResult(tables=tables, problems=problem_frame(problems), files_read=files_read)
