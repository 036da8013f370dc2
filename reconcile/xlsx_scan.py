"""An xlsx checked before calamine sees it: bounded in memory and linear in time.

An xlsx is a zip of XML files. A hostile (or broken) one can declare or hold far more XML
than the file's size suggests (a zip bomb), carry a DTD (XXE, entity expansion), or put one
value in cell XFD1048576 so that calamine, which builds a dense grid from the first to the
last cell holding a value, asks for 512 GiB and aborts the process. So before handing the
bytes over:

* the zip directory is checked (entry count, declared sizes, compression ratios), then
  every entry is inflated in bounded chunks, counting what really comes out (directories can
  lie) against the same limits;
* any ``<!DOCTYPE`` or ``<!ENTITY`` refuses the file (OOXML never needs one);
* each sheet's value cells are located (their references only), so the grid calamine would
  build is known: a sheet whose grid has more than ``MAX_EMPTY_GRID_BYTES`` of cells the
  sheet does not hold is refused;
* the cells calamine turns into null without a word are collected: error values (#N/A …)
  and formulas with no stored value.

Every pattern is bounded (no unbounded repetition can backtrack), so the scan is linear in
the XML's size whatever it holds (a sheet of ``<c `` repeated included).
"""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass, field

__all__ = ["XlsxRefused", "XlsxScan", "SheetScan", "scan_xlsx", "MAX_ZIP_ENTRIES",
           "MAX_XLSX_UNCOMPRESSED", "MAX_ZIP_RATIO", "ZIP_RATIO_MIN_BYTES", "MAX_FLAGGED_CELLS",
           "MAX_EMPTY_GRID_BYTES", "GRID_CELL_BYTES"]

MAX_ZIP_ENTRIES = 10_000
MAX_XLSX_UNCOMPRESSED = 2 * 1024**3       # all entries together, inflated
MAX_ZIP_RATIO = 200                       # inflated / compressed, for entries over ...
ZIP_RATIO_MIN_BYTES = 8 * 1024**2         # ... this inflated size (small ones may compress well)
MAX_FLAGGED_CELLS = 10_000                # error / formula cells reported per sheet at most
GRID_CELL_BYTES = 56                      # a grid cell: calamine's Data enum, then its polars copy
                                          # (measured: benchmarks/reader_bounds.py, Z400000 case)
MAX_EMPTY_GRID_BYTES = 1024**3            # grid cells the sheet doesn't hold, at most
_CHUNK = 4 * 1024**2
_OVERLAP = 8 * 1024                       # longer than any cell element the patterns accept

_REF = re.compile(rb'\sr="([A-Z]{1,3})([0-9]{1,7})"')
# A cell holding a value: its start tag (attributes bounded: the lookahead allows 600
# characters after the space) with its reference (the first ``_REF`` in the tag; group 1:
# column letters, 2: row), an optional formula, then <v or <is. One ``findall`` per chunk
# gives every cell's reference (no Python step per cell). Lazy bounded repetitions only: at
# most a few thousand steps per '<c'.
_VALUE_REF = re.compile(
    rb'<c(?=\s[^<>]{0,600}>)[^<>]{0,600}?\sr="([A-Z]{1,3})([0-9]{1,7})"[^<>]{0,600}>'
    rb'\s{0,40}(?:<f[\s/>][^<]{0,4000}(?:</f>)?\s{0,40})?<(?:v|is)[\s/>]'
)
_TYPE = re.compile(rb'\st="([a-zA-Z]{1,12})"')
_VALUE = re.compile(rb'<v>([^<]{0,40})</v>')
_HAS_VALUE = re.compile(rb'<v>\s{0,40}[^<\s]|<is[\s>]')
_DTD = (b"<!DOCTYPE", b"<!ENTITY")


class XlsxRefused(Exception):
    """Refused before reading; the message is a technical reason (no cell values)."""

    def __init__(self, message: str, *, too_large: bool = False, sheet: str = "") -> None:
        super().__init__(message)
        self.too_large = too_large
        self.sheet = sheet


@dataclass
class SheetScan:
    rows: tuple[int, int] | None = None       # first, last row holding a value
    cols: tuple[int, int] | None = None       # first, last column (0-based) holding a value
    cells: int = 0                            # value cells
    flagged: list[tuple[int, int, str, str]] = field(default_factory=list)

    @property
    def grid_cells(self) -> int:
        if self.rows is None or self.cols is None:
            return 0
        # rows from the first (the reader keeps the rows above the first value), columns
        # from the first holding a value
        return self.rows[1] * (self.cols[1] - self.cols[0] + 1)


@dataclass(frozen=True)
class XlsxScan:
    sheets: dict[str, SheetScan]              # sheet name -> what its XML holds

    def flagged(self) -> dict[str, list[tuple[int, int, str, str]]]:
        """(row, grid column, problem, value) per sheet, columns counted from the grid's
        first column (calamine's grid starts at the first column holding a value)."""
        out = {}
        for name, s in self.sheets.items():
            first = s.cols[0] if s.cols else 0
            if s.flagged:
                out[name] = sorted((r, c - first, p, v) for r, c, p, v in s.flagged if c >= first)
        return out


def _col_index(letters: bytes) -> int:
    n = 0
    for ch in letters:
        n = n * 26 + (ch - 64)
    return n - 1


def _inflate(zf: zipfile.ZipFile, info: zipfile.ZipInfo, budget: list[int]):
    """Inflate one entry in chunks: yields (buffer, cut): the buffer is the previous one's
    last ``_OVERLAP`` bytes then the new chunk; a match starting before ``cut`` belongs to
    this buffer, one starting at or after it to the next (so none is cut or counted twice).
    Refuses what inflates beyond its declared or the allowed size."""
    got = 0
    buf = b""
    with zf.open(info) as fh:
        chunk = fh.read(_CHUNK)
        while chunk:
            got += len(chunk)
            budget[0] -= len(chunk)
            if got > info.file_size or budget[0] < 0:
                raise XlsxRefused(
                    f"zip bomb refused: {info.filename} inflates beyond its declared or the "
                    f"allowed size (limit {MAX_XLSX_UNCOMPRESSED // 1024**2} MiB in all)")
            buf = buf[-_OVERLAP:] + chunk
            chunk = fh.read(_CHUNK)
            yield buf, (len(buf) - _OVERLAP if chunk else len(buf))


def _refuse_dtd(buf: bytes, name: str) -> None:
    if b"<!" in buf and any(m in buf for m in _DTD):
        raise XlsxRefused(f"{name} declares a DTD or entities (refused: XXE / entity expansion)")


def _read_small(zf: zipfile.ZipFile, name: str, limit: int = 16 * 1024**2) -> bytes | None:
    try:
        info = zf.getinfo(name)
    except KeyError:
        return None
    if info.file_size > limit:
        raise XlsxRefused(f"{name} is {info.file_size // 1024**2} MiB (limit {limit // 1024**2})")
    data = zf.read(info) if info.file_size <= limit else b""
    if len(data) > limit:
        raise XlsxRefused(f"{name} inflates beyond {limit // 1024**2} MiB")
    _refuse_dtd(data, name)
    return data


def _sheet_parts(zf: zipfile.ZipFile) -> dict[str, str]:
    """zip path of each worksheet -> sheet name (from workbook.xml and its rels)."""
    wb_data = _read_small(zf, "xl/workbook.xml")
    rels_data = _read_small(zf, "xl/_rels/workbook.xml.rels")
    if wb_data is None or rels_data is None:
        return {}
    try:
        wb = ET.fromstring(wb_data)
        rels = ET.fromstring(rels_data)
    except ET.ParseError:
        return {}
    target = {}
    for rel in rels:
        t = rel.get("Target") or ""
        t = t.lstrip("/") if t.startswith("/") else f"xl/{t}"
        target[rel.get("Id")] = re.sub(r"[^/]+/\.\./", "", t)
    out = {}
    for el in wb.iter():
        if el.tag.endswith("}sheet") or el.tag == "sheet":
            rid = next((v for k, v in el.attrib.items() if k.endswith("}id")), None)
            if rid in target:
                out[target[rid]] = el.get("name") or ""
    return out


def _scan_sheet(zf: zipfile.ZipFile, info: zipfile.ZipInfo, budget: list[int]) -> SheetScan:
    s = SheetScan()
    r0 = r1 = c0 = c1 = None
    cols_seen: set[bytes] = set()
    flagged: dict[tuple[int, int], tuple[str, str]] = {}
    for buf, cut in _inflate(zf, info, budget):
        _refuse_dtd(buf, info.filename)
        # The cells starting before ``cut``: a cell element holds no other '<c', so they all
        # end before the first '<c' at or after ``cut`` and one findall up to it finds them.
        end = buf.find(b"<c", cut) if cut < len(buf) else -1
        found = _VALUE_REF.findall(buf, 0, len(buf) if end == -1 else end)
        if found:
            letters, digits = zip(*found)
            s.cells += len(found)
            cols_seen.update(letters)
            rows = set(map(int, set(digits)))      # a row's cells share its digits
            lo, hi = min(rows), max(rows)
            r0 = lo if r0 is None else min(r0, lo)
            r1 = hi if r1 is None else max(r1, hi)
        if len(flagged) < MAX_FLAGGED_CELLS and (b't="e"' in buf or b"<f" in buf):
            _flag_cells(buf, flagged)
    if cols_seen:
        idx = [_col_index(c) for c in cols_seen]
        c0, c1 = min(idx), max(idx)
        s.rows, s.cols = (r0, r1), (c0, c1)
    s.flagged = [(r, c, p, v) for (r, c), (p, v) in flagged.items()][:MAX_FLAGGED_CELLS]
    return s


def _flag_cells(buf: bytes, flagged: dict) -> None:
    """Error cells and formulas without a stored value, around each t="e" and <f (cells in
    the overlap are seen twice and kept once: the dict is keyed by cell). Each candidate
    costs a few bounded ``find`` calls, never a scan to the end of the buffer."""
    for marker in (b't="e"', b"<f"):
        pos = buf.find(marker)
        while pos != -1 and len(flagged) < MAX_FLAGGED_CELLS:
            nxt = pos + len(marker)
            start = buf.rfind(b"<c", max(0, pos - 700), pos + 1)
            tag_end = buf.find(b">", start, start + 700) if start != -1 else -1
            if tag_end != -1 and buf[start + 2:start + 3].isspace():
                if buf[tag_end - 1:tag_end] == b"/":
                    end, inner = tag_end, b""
                else:
                    limit = buf.find(b"<c", tag_end, tag_end + 4200)
                    end = buf.find(b"</c>", tag_end, limit if limit != -1 else tag_end + 4200)
                    inner = buf[tag_end + 1:end] if end != -1 else None
                if inner is not None and end >= pos:
                    _flag_one(buf[start + 2:tag_end], inner, flagged)
                    nxt = max(nxt, end)
            pos = buf.find(marker, nxt)


def _flag_one(attrs: bytes, inner: bytes, flagged: dict) -> None:
    ref = _REF.search(attrs)
    if ref is None:
        return
    key = (int(ref.group(2)), _col_index(ref.group(1)))
    t = _TYPE.search(attrs)
    if t is not None and t.group(1) == b"e":
        v = _VALUE.search(inner)
        if v is not None:
            flagged[key] = ("error_value", v.group(1).decode("utf-8", "replace").strip())
            return
    if b"<f" in inner and not _HAS_VALUE.search(inner):
        flagged.setdefault(key, ("formula_without_value", "formula with no stored result"))


def scan_xlsx(data: bytes) -> XlsxScan:
    """Refuse bombs, DTDs and oversized grids (``XlsxRefused``); else what each sheet holds.

    Raises ``zipfile.BadZipFile`` (etc.) for a broken zip.
    """
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        infos = zf.infolist()
        if len(infos) > MAX_ZIP_ENTRIES:
            raise XlsxRefused(f"zip bomb refused: {len(infos)} entries (limit {MAX_ZIP_ENTRIES})")
        total = sum(i.file_size for i in infos)
        if total > MAX_XLSX_UNCOMPRESSED:
            raise XlsxRefused(f"zip bomb refused: declares {total // 1024**2} MiB of content "
                              f"(limit {MAX_XLSX_UNCOMPRESSED // 1024**2} MiB)")
        for i in infos:
            if i.file_size > ZIP_RATIO_MIN_BYTES and i.file_size > MAX_ZIP_RATIO * max(
                    i.compress_size, 1):
                raise XlsxRefused(
                    f"zip bomb refused: {i.filename} compresses "
                    f"{i.file_size // max(i.compress_size, 1)}:1 (limit {MAX_ZIP_RATIO}:1)")
        parts = _sheet_parts(zf)
        budget = [MAX_XLSX_UNCOMPRESSED]
        sheets: dict[str, SheetScan] = {}
        for info in infos:
            name = parts.get(info.filename)
            if name is None:
                for buf, _ in _inflate(zf, info, budget):
                    _refuse_dtd(buf, info.filename)
                continue
            scan = _scan_sheet(zf, info, budget)
            empty = scan.grid_cells - scan.cells
            if empty * GRID_CELL_BYTES > MAX_EMPTY_GRID_BYTES:
                r, c = scan.rows, scan.cols
                raise XlsxRefused(
                    f"the sheet's cells span rows {r[0]}-{r[1]} x columns {c[0] + 1}-"
                    f"{c[1] + 1} ({scan.grid_cells:,} cells, {scan.cells:,} of them used): the "
                    f"reader would need {empty * GRID_CELL_BYTES / 1024**3:.1f} GiB beyond "
                    f"its cells (limit {MAX_EMPTY_GRID_BYTES / 1024**3:.0f} GiB)",
                    too_large=True, sheet=name)
            sheets[name] = scan
        return XlsxScan(sheets)
