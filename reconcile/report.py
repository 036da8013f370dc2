"""Excel workbooks for clerks (per school, per town) and public-notice lists, in Chinese.

Each clerk workbook has a sheet ``待核实问题`` (one row per item, most important first,
roster and system values side by side with differing characters highlighted, four
unlocked review columns 核实结论 (dropdown) / 更正值 / 备注 / 核实人, everything else locked,
header frozen, filter on, A4 landscape printing), a sheet ``说明`` explaining every kind of
problem and how to fill the sheet in, and a hidden sheet ``_recon`` with the run id. Two
hidden columns carry the item's reference within the run and a hash of the row's locked
cells (``row_hash``), which ``recon review import`` checks. ``write_public_notices`` writes
the 公示名单 per school.

Privacy: ID numbers show only the region code (first 6), the last 4 characters and the
positions where roster and system disagree (at most a few); any other run of 14 or more
digits in any cell is masked the same way. Safety: no cell from input can run as a
formula — input strings are written as text (never a formula cell), and those starting
with ``= + - @`` or a tab/CR also get Excel's quote prefix. Output is reproducible: the same
frame gives byte-identical files (fixed document and zip timestamps).

Written with xlsxwriter (``reconcile.xlsx_book``), the data rows rendered column-wise at once
(``reconcile.xlsx_rows``). The layout is data here: COLUMNS (widths, wrapping, printing) and
STYLES (the cell formats by name).
"""

from __future__ import annotations

import datetime as dt
import difflib
import functools
import hashlib
import math
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

import polars as pl
from xlsxwriter.worksheet import Worksheet

from reconcile.config import NoticeSettings
from reconcile.fields import ID_FIELDS
from reconcile.notice import notice_period, return_deadline
from reconcile.vocabulary import (
    DECISION_LIST, DECISION_LABELS, SCHOOL_KINDS, TOWN_KINDS, FIELD_LABELS, KINDS, NO_SCHOOL, NO_TOWN, SEVERITY_LABELS, SEVERITY_RANK, SYSTEM_LABELS,
    mask_id, mask_text,
)
from reconcile.xlsx_book import Book

__all__ = [
    "workbook_columns",
    "write_school_workbooks",
    "write_clerk_workbooks",
    "write_public_notices",
    "with_row_hashes",
    "row_hash",
    "read_meta",
    "meta_from_rows",
    "SHEET_META",
    "COL_DECISION",
    "COL_CORRECTED",
    "COL_NOTE",
    "COL_REVIEWER",
    "REVIEW_HEADERS",
    "COL_REF",
    "COL_HASH",
    "HEADERS",
    "SHEET_PROBLEMS",
    "SHEET_HELP",
]

SHEET_PROBLEMS = "待核实问题"
SHEET_HELP = "说明"

# The clerk sheet's columns, in order, as data: (header, width, wrapped, printed). The four
# review columns are the only unlocked ones; the printed ones fit one A4 landscape page wide
# at PRINT_SCALE with FONT_SIZE text (at least 9 pt on paper); the rest (lineage, the item's
# reference and the hash of its locked cells, these two hidden) stay off the print area.
COL_DECISION, COL_CORRECTED, COL_NOTE, COL_REVIEWER = "核实结论", "更正值", "备注", "核实人"
REVIEW_HEADERS: tuple[str, ...] = (COL_DECISION, COL_CORRECTED, COL_NOTE, COL_REVIEWER)
COL_REF, COL_HASH, COL_SCHOOL = "问题编号", "校验码", "学校/村"
COLUMNS: tuple[tuple[str, float, bool, bool], ...] = (
    ("序号", 4.5, False, True), ("严重程度", 4.5, True, True), ("问题类型", 10, True, True), ("行号", 9, True, True),
    ("学生姓名", 7.5, True, True), ("系统中姓名", 7.5, True, True), ("身份证号", 19.5, False, True),
    ("系统中身份证号", 19.5, False, True), ("核对项", 7, True, True), ("名单值", 9, True, True),
    ("系统值", 9, True, True), ("说明", 24, True, True),
    (COL_DECISION, 9, True, True), (COL_CORRECTED, 11, True, True), (COL_NOTE, 8, True, True),
    (COL_REVIEWER, 6, True, True),
    ("核对系统", 9, False, False), ("名单文件", 24, False, False), ("工作表", 12, False, False),
    ("系统文件", 22, False, False), ("系统工作表", 12, False, False), ("系统行号", 8, False, False),
    (COL_REF, 8, False, False), (COL_HASH, 18, False, False),
)
# The town workbook's extra column, after 序号: a town clerk works through several schools and villages.
TOWN_COLUMN: tuple[str, float, bool, bool] = (COL_SCHOOL, 10, True, True)
HEADERS: tuple[str, ...] = tuple(c[0] for c in COLUMNS)
HIDDEN: tuple[str, ...] = (COL_REF, COL_HASH)
HEADER_ROW = 3  # rows 1-2: what to fill in, and to whom and by when to return it
FONT_SIZE = 11.0  # the workbook's default (Calibri 11): every cell
PRINT_SCALE = 82  # percent: FONT_SIZE x PRINT_SCALE = 9 pt on paper
MIN_PAPER_PT = 9.0
A4_MM = (210.0, 297.0)
MARGIN_IN = 0.25  # left and right
NOTE_MIN_WIDTH = 16.0  # 说明 takes what the page leaves, but no less
PAGE_SLACK = 0.96  # of the page's width used: room for a font a little wider than Calibri
# Locked content covered by the row hash (序号 and 学校 depend on the workbook, not the item).
HASHED: tuple[str, ...] = tuple(
    h for h in HEADERS if h not in (("序号", COL_SCHOOL, COL_REF, COL_HASH) + REVIEW_HEADERS)
) + (COL_REF,)
# Roster / system pairs shown side by side, differing characters highlighted.
PAIRS: tuple[tuple[str, str], ...] = (("学生姓名", "系统中姓名"), ("身份证号", "系统中身份证号"), ("名单值", "系统值"))
SHEET_META = "_recon"
META_FORMAT = "clerk-workbook/1"  # meta "header_row" says where the header is (1 when absent)
SHEET_NOTICE = "公示名单"
NOTICE_HEADERS: tuple[str, ...] = ("序号", "姓名", "身份证号", "学段", "年级", "资助项目", "资助金额（元）")
_STATE_RANK: dict[str, int] = {"conflict": 0, "reopened": 1}

_INPUT_COLUMNS: dict[str, pl.DataType] = {
    "kind": pl.String, "severity": pl.String, "source": pl.String, "file": pl.String,
    "sheet": pl.String, "row": pl.Int64, "system": pl.String, "system_file": pl.String,
    "system_sheet": pl.String, "system_row": pl.Int64, "field": pl.String,
    "value": pl.String, "system_value": pl.String, "message": pl.String,
    "school": pl.String, "town": pl.String, "village": pl.String, "name": pl.String, "id_number": pl.String,
    "system_name": pl.String, "system_id": pl.String,
    "diff_positions": pl.List(pl.Int8), "item_ref": pl.Int64, "review_state": pl.String,
    # what the clerk said last time, carried into the editable cells (review.CARRIED_COLUMNS)
    "carried_decision": pl.String, "carried_note": pl.String, "carried_reviewer": pl.String,
}


def workbook_columns(discrepancies: pl.DataFrame) -> pl.DataFrame:
    """Only the columns the clerk workbooks are written from (no copy): what a second
    process writing a share of them is sent."""
    return discrepancies.select(c for c in _INPUT_COLUMNS if c in discrepancies.columns)


_CARRIED_INTO: tuple[tuple[str, str], ...] = (
    (COL_DECISION, "carried_decision"), (COL_NOTE, "carried_note"), (COL_REVIEWER, "carried_reviewer"))

_EXCEL_MAX_CHARS = 32767
_ILLEGAL_CHARACTERS = re.compile(r"[\000-\010\013\014\016-\037]")  # not allowed in XML 1.0
_EPOCH = datetime(1970, 1, 1)


# --------------------------------------------------------------------------- helpers


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in ("W", "F") else 1 for c in text)


_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}


def _safe_filename(school: str) -> str:
    name = re.sub(r'[/\\:*?"<>|\x00-\x1f\x7f]', "_", school).strip(" .")
    if not name:
        name = NO_SCHOOL
    if name.split(".")[0].upper() in _RESERVED:
        name = "_" + name
    if len(name.encode("utf-8")) > 200:  # file systems count bytes (255 with suffix and "(n)"); a cut name keeps a hash of the whole
        name = f"{name.encode('utf-8')[:190].decode('utf-8', 'ignore')}~{hashlib.sha1(school.encode('utf-8')).hexdigest()[:8]}"
    return name


def _label(mapping: Mapping[str, str], code: Any) -> str:
    if code is None:
        return ""
    return mapping.get(str(code), str(code))


def _id_cell(value: str | None, keep: Sequence[int], reference: str | None) -> str:
    """Mask an ID value; reveal diff positions only when it lines up with the compared ID."""
    if value is None:
        return ""
    text = str(value)
    aligned = reference is not None and len(text) == len(reference)
    return mask_id(text, keep if aligned else ())


def _final(value: Any, *, from_input: bool = True) -> Any:
    """The value a cell gets: strings cleaned of illegal characters, CR as LF, ID-shaped
    runs masked; '' becomes None (an empty cell). What reading the cell back gives."""
    if value is None:
        return None
    if isinstance(value, str):
        return _final_text(value, from_input) if len(value) <= _CACHED_CHARS else _clean(value, from_input)
    return value


_CACHED_CHARS = 200  # labels, file and sheet names, messages: the same few texts on many rows


def _clean(value: str, from_input: bool) -> str | None:
    # XML turns CR into LF on reading: write what will be read back.
    text = _ILLEGAL_CHARACTERS.sub("", value).replace("\r\n", "\n").replace("\r", "\n")
    if from_input:
        text = mask_text(text)[:_EXCEL_MAX_CHARS]  # longer makes Excel call the file corrupt
    return text or None


_final_text = functools.lru_cache(maxsize=1 << 16)(_clean)


def _prepare(discrepancies: pl.DataFrame) -> pl.DataFrame:
    frame = discrepancies
    missing = [c for c in _INPUT_COLUMNS if c not in frame.columns]
    if missing:
        frame = frame.with_columns(pl.lit(None, dtype=_INPUT_COLUMNS[c]).alias(c) for c in missing)
    frame = frame.with_columns(
        pl.col(c).cast(pl.String) for c, t in _INPUT_COLUMNS.items() if t == pl.String
    ).with_columns(
        pl.col("row").cast(pl.Int64, strict=False),
        pl.col("system_row").cast(pl.Int64, strict=False),
        pl.col("item_ref").cast(pl.Int64, strict=False),
        pl.col("school").fill_null(NO_SCHOOL).alias("_school"),
        pl.col("town").fill_null(NO_TOWN).alias("_town"),
        pl.col("severity")
        .replace_strict(dict(SEVERITY_RANK), default=len(SEVERITY_RANK), return_dtype=pl.Int8)
        .alias("_rank"),
        pl.col("review_state")
        .replace_strict(_STATE_RANK, default=len(_STATE_RANK), return_dtype=pl.Int8)
        .alias("_state"),
    )
    keys = ["_rank", "_state", "kind", "file", "sheet", "row", "system", "system_file", "system_sheet",
            "system_row", "field", "value", "system_value", "message"]
    frame = frame.sort(keys, nulls_last=True, maintain_order=True)
    # Without keys from the pipeline (tests, old frames): number the items in sorted order.
    if frame.get_column("item_ref").null_count() == frame.height:
        frame = frame.with_columns(pl.int_range(1, frame.height + 1, dtype=pl.Int64).alias("item_ref"))
    return frame


_DEFAULT_SHEETS = re.compile(r"^(?:Sheet|工作表)1$", re.IGNORECASE)


def _where(sheet: str | None, row: Any) -> str | None:
    """The roster position a clerk looks up: the sheet (one roster has 七年级 and 八年级-九年级
    with the same row numbers) and the row Excel shows. A lone default sheet name says nothing."""
    if row is None:
        return None
    if sheet and not _DEFAULT_SHEETS.match(sheet):
        return f"{sheet}第{row}行"
    return f"第{row}行"


def _file_name(path: str | None) -> str | None:
    """A file as the clerk knows it: its name without folder or extension."""
    if not path:
        return None
    return PurePosixPath(path).stem


# --------------------------------------------------------------------------- cells, once per item
# Every item's cells are computed once, column by column in polars (a night has tens of
# thousands of items, each in a school and a town workbook and hashed for the store); the
# exact Python runs only on the few values that need it (control characters, ID-shaped
# runs, diff positions to show, pairs that differ).

# A superset of what _clean changes: control characters, CR, a run ID_SHAPED may match.
_DIRTY = r"[\x00-\x08\x0B-\x0D\x0E-\x1F]|[0-9０-９](?:[ \u3000]?[0-9０-９]){13,}"
# Pairs whose differing characters are marked, and the ID columns marked at diff positions.
_SPANNED: tuple[str, ...] = tuple(h for pair in PAIRS for h in pair)


def _patched(fast: pl.Series, need: pl.Series, fn: Any, *cols: pl.Series) -> pl.Series:
    """``fast`` with the rows where ``need`` replaced by ``fn`` of those rows' ``cols``."""
    idx = need.arg_true()
    if idx.len() == 0:
        return fast
    values = [fn(*args) for args in zip(*(c.gather(idx).to_list() for c in cols))]
    return fast.scatter(idx, pl.Series(values, dtype=fast.dtype))


def _finals(s: pl.Series) -> pl.Series:
    """``_final`` of a text column."""
    fast = pl.select(pl.when(s.str.len_bytes() > 0).then(s).alias(s.name)).to_series()
    need = (s.str.contains(_DIRTY) | (s.str.len_chars() > _EXCEL_MAX_CHARS)).fill_null(False)
    return _patched(fast, need, _final, s)


def _masked(text: pl.Series, keep: pl.Series | None = None, use_keep: pl.Series | None = None) -> pl.Series:
    """``mask_id`` of a text column, with each row's ``keep`` positions where ``use_keep``."""
    if keep is None or use_keep is None:
        keep = pl.Series([None] * text.len(), dtype=pl.List(pl.Int8))
        use_keep = pl.repeat(False, text.len(), eager=True)
    frame = pl.DataFrame({"t": text, "k": keep.list.drop_nulls().list.len().fill_null(0) > 0, "u": use_keep})
    n, tail = pl.col("t").str.len_chars(), pl.when(pl.col("t").str.len_chars() >= 16).then(4).otherwise(3)
    fast = frame.select(
        pl.when(n.fill_null(0) < 14).then(pl.lit(""))
        .otherwise(pl.col("t").str.slice(0, 6).str.pad_end(n - tail, "*") + pl.col("t").str.slice(n - tail))
    ).to_series()
    need = frame.select(((n > 0) & (n < 14)) | (pl.col("k") & pl.col("u"))).to_series().fill_null(False)
    return _patched(fast, need, lambda t, k, u: mask_id(t, k if u else ()), text, keep, use_keep)


def _by_value(s: pl.Series, fn: Any, dtype: pl.DataType = pl.String()) -> pl.Series:
    """``fn`` of each distinct value (file names, a text's lines: few values on many rows)."""
    values = s.drop_nulls().unique().to_list()
    return s.replace_strict(values, pl.Series([fn(v) for v in values], dtype=dtype), default=None, return_dtype=dtype)


def _pair_value(value: pl.Series, ids: pl.Series, name: pl.Series, keep: pl.Series, is_id: pl.Series) -> pl.Series:
    """名单值 / 系统值: None when the pair columns show it already; an ID masked as its pair is."""
    f = pl.DataFrame({"v": value, "i": ids, "n": name, "id": is_id})
    shown = f.select(pl.col("v").is_not_null() & ((pl.col("v") == pl.col("i")).fill_null(False)
                                                  | (pl.col("v") == pl.col("n")).fill_null(False))).to_series()
    aligned = f.select((pl.col("v").str.len_chars() == pl.col("i").str.len_chars()).fill_null(False)).to_series()
    masked = _masked(value, keep, aligned)
    return pl.DataFrame({"s": shown, "id": is_id, "m": masked, "v": value}).select(
        pl.when("s").then(None).when("id").then("m").otherwise("v")).to_series()


def _where_expr() -> pl.Expr:
    """``_where`` as an expression (re.match's ``$`` allows one final newline)."""
    sheet, row = pl.col("sheet"), pl.col("row").cast(pl.String)
    named = (sheet.str.len_bytes() > 0) & ~sheet.str.contains(r"(?i)^(?:Sheet|工作表)1\n?$")
    return (pl.when(pl.col("row").is_null()).then(None)
            .when(named.fill_null(False)).then(pl.concat_str(sheet, pl.lit("第"), row, pl.lit("行")))
            .otherwise(pl.concat_str(pl.lit("第"), row, pl.lit("行"))))


def _cell_frame(p: pl.DataFrame) -> pl.DataFrame:
    """Header -> final cell value of every prepared item (序号 and 学校 aside), the review
    columns' carried values, 学校/村, and per pair column the marked character spans."""
    keep = p.get_column("diff_positions")
    ids, system_ids = p.get_column("id_number"), p.get_column("system_id")
    is_id = p.select(pl.col("field").is_in(list(ID_FIELDS)).fill_null(False)).to_series()
    everywhere = pl.repeat(True, p.height, eager=True)
    kinds = {code: k.label for code, k in KINDS.items()} | {"": None}
    labels = p.select(
        pl.col("severity").replace(dict(SEVERITY_LABELS)).alias("严重程度"),
        pl.col("kind").replace_strict(kinds, return_dtype=pl.String).alias("问题类型"),
        _where_expr().alias("行号"),
        pl.col("system").replace(dict(SYSTEM_LABELS)).alias("核对系统"),
        pl.col("field").replace(dict(FIELD_LABELS)).alias("核对项"),
        pl.concat_str(pl.when(pl.col("school") != "").then("school"), pl.when(pl.col("village") != "").then("village"),
                      separator="\n", ignore_nulls=True).alias(COL_SCHOOL),
    )
    raw: dict[str, pl.Series] = {
        **{s.name: s for s in labels},
        "学生姓名": p.get_column("name"), "系统中姓名": p.get_column("system_name"),
        "身份证号": _masked(ids, keep, everywhere), "系统中身份证号": _masked(system_ids, keep, everywhere),
        "名单值": _pair_value(p.get_column("value"), ids, p.get_column("name"), keep, is_id),
        "系统值": _pair_value(p.get_column("system_value"), system_ids, p.get_column("system_name"), keep, is_id),
        "说明": p.get_column("message"),
        "名单文件": _by_value(p.get_column("file"), _file_name), "工作表": p.get_column("sheet"),
        "系统文件": _by_value(p.get_column("system_file"), _file_name), "系统工作表": p.get_column("system_sheet"),
        **{h: p.get_column(carried) for h, carried in _CARRIED_INTO},
    }
    return pl.DataFrame([_finals(s).alias(h) for h, s in raw.items()]).with_columns(
        p.get_column("system_row").alias("系统行号"), p.get_column("item_ref").alias(COL_REF))


def _span_map(cells: pl.DataFrame, keep: pl.Series, ids: pl.Series) -> dict[int, dict[str, list[tuple[int, int]]]]:
    """Row number -> pair column -> the marked characters, for the rows that have any: where
    a pair's texts differ beyond formatting, or, with no system ID to compare with
    (id_invalid), where the roster's ID is damaged."""
    differ = pl.any_horizontal(
        *[pl.col(a).is_not_null() & pl.col(b).is_not_null() & (pl.col(a) != pl.col(b)) for a, b in PAIRS],
        pl.col("系统中身份证号").is_null() & pl.col("身份证号").is_not_null()
        & (keep.list.drop_nulls().list.len().fill_null(0) > 0))
    idx = cells.select(differ.fill_null(False)).to_series().arg_true()
    rows = cells.select(_SPANNED).with_columns(keep.alias("_keep"), ids.alias("_id"))[idx]
    found = ((i, _row_spans(row, row["_keep"], row["_id"])) for i, row in zip(idx.to_list(), rows.iter_rows(named=True)))
    return {i: marked for i, spans in found if (marked := {h: v for h, v in spans.items() if v})}


def _row_spans(cells: Mapping[str, Any], diff_positions: Sequence[int | None] | None,
               id_number: str | None) -> dict[str, list[tuple[int, int]]]:
    """The marked character ranges of one item's pair columns."""
    spans: dict[str, list[tuple[int, int]]] = {}
    for left, right in PAIRS:
        a, b = cells.get(left), cells.get(right)
        if isinstance(a, str) and isinstance(b, str) and a != b and _comparable(a) != _comparable(b):
            marked_a, marked_b = _diff_spans(a, b)  # cached: the row gets lists of its own
            spans[left], spans[right] = list(marked_a), list(marked_b)
    keep = [int(p) for p in (diff_positions or []) if p is not None]
    if keep and not cells.get("系统中身份证号") and isinstance(cells.get("身份证号"), str):
        # No system ID to compare with (id_invalid): mark where the roster's ID is damaged.
        for h in ("身份证号", "名单值"):
            if isinstance(cells.get(h), str) and len(cells[h]) == len(id_number or ""):
                spans[h] = _spans_by_position(cells[h], keep)
    return spans


def _hashes(cells: pl.DataFrame) -> pl.Series:
    """``row_hash`` of every item's locked cells."""
    # row_hash's text, column-wise: a cell's text is _hash_text's for the String and integer columns here
    texts = cells.select(pl.concat_str([pl.lit(f"{h}=") + pl.col(h).cast(pl.String).fill_null("") for h in HASHED],
                                       separator=_HASH_SEP)).to_series()
    return pl.Series(COL_HASH, [_digest(t) for t in texts], dtype=pl.String)


_HASH_SEP = "\x1f"


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def _hash_text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return str(v)


def row_hash(values: dict[str, Any]) -> str:
    """Hash of a row's locked cells (by header), as written or as read back with openpyxl."""
    return _digest(_HASH_SEP.join(f"{h}={_hash_text(values.get(h))}" for h in HASHED))


def with_row_hashes(discrepancies: pl.DataFrame) -> pl.DataFrame:
    """``discrepancies`` plus ``row_hash``: what the clerk workbooks' locked cells hash to."""
    if discrepancies.height == 0:
        return discrepancies.with_columns(pl.lit(None, dtype=pl.String).alias("row_hash"))
    prepared = _prepare(discrepancies.with_row_index("_orig"))
    order = pl.DataFrame([prepared.get_column("_orig"), _hashes(_cell_frame(prepared)).alias("row_hash")])
    return discrepancies.with_row_index("_orig").join(order, on="_orig", how="left", maintain_order="left").drop("_orig")


@functools.lru_cache(maxsize=1 << 16)  # statuses, stages and schools pair up the same way on many rows
def _diff_spans(a: str, b: str) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Character ranges that differ between a and b (masked '*' never counts)."""
    if len(a) == len(b) and ("*" in a or "*" in b or (a.isascii() and b.isascii())):
        idx = [i for i, (x, y) in enumerate(zip(a, b)) if x != y and x != "*" and y != "*"]
        spans = [(i, i + 1) for i in idx]
        return spans, spans
    ia: list[int] = []
    ib: list[int] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op != "equal":
            ia += [i for i in range(i1, i2) if a[i] != "*"]
            ib += [j for j in range(j1, j2) if b[j] != "*"]
    return _merge(ia), _merge(ib)


def _merge(idx: list[int]) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    for i in idx:
        if spans and spans[-1][1] == i:
            spans[-1] = (spans[-1][0], i + 1)
        else:
            spans.append((i, i + 1))
    return spans


def _style_header(book: Book, ws: Worksheet, headers: Sequence[str], *, row: int = 1,
                  edit: Sequence[str] = ()) -> None:
    for col, title in enumerate(headers, start=1):
        book.text(ws, row, col, title, "edit_head" if title in edit else "head")


def column_px(width: float) -> float:
    """Screen pixels (96 dpi) of a column ``width`` characters wide (Calibri 11: 7 px each, 5 px padding)."""
    return width * 7 + 5


def printable_px(landscape: bool) -> float:
    """Pixels (96 dpi, at 100 %) across an A4 page between the margins."""
    mm = (A4_MM[1] if landscape else A4_MM[0]) - 2 * MARGIN_IN * 25.4
    return mm / 25.4 * 96


def _layout(with_school: bool) -> list[tuple[str, float, bool, bool]]:
    """The sheet's columns; 说明 takes the width the printed page leaves at PRINT_SCALE."""
    cols = list(COLUMNS)
    if with_school:
        cols.insert(1, TOWN_COLUMN)
    room = printable_px(True) * 100 / PRINT_SCALE * PAGE_SLACK
    used = sum(column_px(w) for h, w, _, printed in cols if printed and h != "说明")
    note = max(NOTE_MIN_WIDTH, (room - used - 5) / 7 - 0.5)
    return [(h, round(note, 1) if h == "说明" else w, wrap, printed) for h, w, wrap, printed in cols]


# Cell styles, as data: name -> xlsxwriter format properties (a cell may merge several, in order).
STYLES: dict[str, dict[str, Any]] = {
    "body": {"valign": "top"},
    "wrap": {"valign": "top", "text_wrap": True},
    "diff": {"valign": "top", "text_wrap": True, "pattern": 1, "bg_color": "#FFF2CC"},
    # the review columns: the only unlocked cells; text format, so a corrected ID typed here stays text
    "review": {"valign": "top", "text_wrap": True, "pattern": 1, "bg_color": "#E2EFDA", "locked": False,
               "num_format": "@"},
    "head": {"bold": True, "pattern": 1, "bg_color": "#DDEBF7", "align": "center", "valign": "vcenter",
             "text_wrap": True},
    "edit_head": {"bold": True, "pattern": 1, "bg_color": "#C6E0B4", "align": "center", "valign": "vcenter",
                  "text_wrap": True},
    "bold": {"bold": True},
    "title": {"bold": True, "font_size": 14, "align": "center"},
    "mark": {"bold": True, "font_color": "#C00000", "underline": 1},  # the characters that differ
}


_FORMAT_ONLY = str.maketrans({"/": "-", ".": "-", "年": "-", "月": "-", "日": None, " ": None, "\u3000": None})


@functools.lru_cache(maxsize=1 << 16)
def _comparable(text: str) -> str:
    """A value with its formatting taken out: 2019/09/18, 2019.9.18 and 2019-09-18 are one date."""
    t = unicodedata.normalize("NFKC", text).translate(_FORMAT_ONLY).strip("-")
    m = re.fullmatch(r"(\d{4})-(\d{1,2})-(\d{1,2})", t)
    if m:
        return f"{m.group(1)}-{int(m.group(2)):02d}-{int(m.group(3)):02d}"
    m = re.fullmatch(r"(\d+)(?:-0+)?", t)  # 1500.0 = 1500
    return m.group(1) if m else t


def _spans_by_position(text: str, positions: Iterable[int]) -> list[tuple[int, int]]:
    return _merge(sorted({p for p in positions if 0 <= p < len(text) and text[p] != "*"}))


def instructions(scope: str, name: str, return_to: str, deadline: dt.date | None) -> tuple[str, str]:
    """The two lines above the table: what to fill in; to whom and by when to return it."""
    who = f"本表供{name}核实本乡镇学生的问题使用" if scope == "town" else f"本表供{name}核实本校学生的问题使用"
    first = (f"{who}：请逐条核实，在绿色的“核实结论”列选择结论并填写“核实人”；身份证号、姓名或资助金额有误的，"
             "选“已更正”并在“更正值”填写正确的值。其余单元格已锁定。")
    when = f"{deadline.year}年{deadline.month}月{deadline.day}日前" if deadline else "按要求"
    second = f"请于{when}将本表（原文件，不要复制到新表）报回{return_to}。"
    return first, second


def _wide_class(texts: pl.Series) -> str | None:
    """A regex class of the double-width characters (East Asian W and F) among ``texts``:
    the distinct characters are few (a few thousand) however many rows there are."""
    chars = texts.str.split("").explode().drop_nulls().unique().to_list()
    wide = sorted(c for c in chars if len(c) == 1 and unicodedata.east_asian_width(c) in ("W", "F"))
    return "[" + "".join(re.escape(c) for c in wide) + "]" if wide else None


def _heights(cells: pl.DataFrame, wrapped: Sequence[tuple[str, float]]) -> pl.Series:
    """Each row's height: the lines its longest wrapped cell (column, width) needs."""
    lines = []
    for h, w in wrapped:
        if h not in cells.columns:
            continue
        column = cells.get_column(h)
        if column.dtype == pl.String:
            lines.append(_text_lines_of(column, w))
        else:
            lines.append(_by_value(column, functools.partial(text_lines, width=w), pl.Int64()).fill_null(1))
    return pl.select((pl.max_horizontal(pl.lit(1), *lines) * LINE_PT + _PAD_PT).alias("_height")).to_series()


def _text_lines_of(column: pl.Series, width: float) -> pl.Series:
    """``text_lines`` of every text in ``column`` (1 for a null), without a Python call per row."""
    wide = _wide_class(column)
    room = max(width - 1.0, 1.0)
    parts = (pl.DataFrame({"t": column}).with_row_index("_r")
             .with_columns(pl.col("t").str.split("\n")).explode("t"))
    chars = pl.col("t").str.len_chars()
    shown = chars.cast(pl.Int64) + pl.col("t").str.count_matches(wide).cast(pl.Int64) if wide else chars
    n = pl.max_horizontal(pl.lit(1, pl.Int64), (shown.cast(pl.Float64) * 1.1 / room).ceil().cast(pl.Int64))
    per_row = (parts.select("_r", pl.when(pl.col("t").is_null()).then(None).otherwise(n + (n > 2).cast(pl.Int64)).alias("n"))
               .group_by("_r", maintain_order=True).agg(pl.col("n").sum(), pl.col("n").is_null().all().alias("none")))
    return per_row.select(pl.when(pl.col("none")).then(1).otherwise(pl.col("n")).alias(column.name)).to_series()


def _problem_sheet(book: Book, rows: pl.DataFrame, spans: Mapping[int, Mapping[str, list[tuple[int, int]]]], *,
                   title: str, lines: tuple[str, str], with_school: bool = False) -> None:
    """The items' sheet; ``rows`` are their cells (``_cell_frame``), hash, row number in
    ``spans`` (``_i``) and height (``_height``) in this layout."""
    ws = book.sheet(SHEET_PROBLEMS)
    layout = _layout(with_school)
    headers = [c[0] for c in layout]
    col = {h: i for i, h in enumerate(headers, start=1)}
    ncols = len(headers)
    last_printed = max(i for i, c in enumerate(layout, start=1) if c[3])
    printed_width = sum(w for _h, w, _wr, p in layout if p)
    plain = {h: "wrap" if wrap else "body" for h, _w, wrap, _p in layout}
    book.widths(ws, [w for _h, w, _wr, _p in layout], hidden=[col[h] for h in HIDDEN])
    for r, text in enumerate(lines, start=1):
        ws.set_row(r - 1, row_height([(text, printed_width)]))
        book.merged_text(ws, r, 1, last_printed, text, "wrap", *(("bold",) if r == 2 else ()))
    ws.set_row(HEADER_ROW - 1, row_height([(h, w) for h, w, _wr, p in layout if p]))
    _style_header(book, ws, headers, row=HEADER_ROW, edit=REVIEW_HEADERS)
    first = HEADER_ROW + 1
    r = first - 1
    written = [h for h in headers if h != "序号"]
    # Per column: where, its style, whether a blank is written (the review columns: green, unlocked).
    plan = [(col[h], "review" if h in REVIEW_HEADERS else plain[h], h in REVIEW_HEADERS, h) for h in written]
    data = rows.select("_i", "_height", pl.int_range(1, pl.len() + 1).alias("序号"),
                       *[h if h in rows.columns else pl.lit(None).alias(h) for h in written])
    book.rows(ws, first, data, [(col["序号"], "序号", (plain["序号"],), False)]
              + [(c, h, (style,), blank) for c, style, blank, h in plan],
              height="_height", rich=spans, key="_i", mark="mark", rich_styles=("diff",))
    r = first - 1 + data.height
    last = max(r, HEADER_ROW)
    ws.freeze_panes(first - 1, 0)
    ws.autofilter(HEADER_ROW - 1, 0, last - 1, ncols - 1)
    if last >= first:
        c = col[COL_DECISION] - 1
        ws.data_validation(first - 1, c, last - 1, c, {
            "validate": "list", "source": list(DECISION_LABELS), "ignore_blank": True,
            "error_title": "核实结论", "error_message": "请从下拉列表中选择：" + " / ".join(DECISION_LABELS),
            "input_title": "核实结论", "input_message": "请选择核实结果，并填写核实人",
        })
    # Locked except the four review columns; filtering and column widths still allowed.
    ws.protect("", {"autofilter": True, "format_columns": True, "format_rows": True,
                    "select_locked_cells": True, "select_unlocked_cells": True})
    # Printing: A4 landscape at PRINT_SCALE, header row on every page, lineage left off.
    _print_setup(ws, landscape=True, title_rows=(HEADER_ROW, HEADER_ROW), header=title)
    ws.print_area(0, 0, last - 1, last_printed - 1)


def _meta_sheet(book: Book, meta: dict[str, str]) -> None:
    ws = book.sheet(SHEET_META)
    for r, (k, v) in enumerate(meta.items(), start=1):
        book.value(ws, r, 1, _final(k, from_input=False))
        book.value(ws, r, 2, _final(v, from_input=False))
    ws.very_hidden()
    ws.protect()


def read_meta(wb: Any) -> dict[str, str] | None:
    """The hidden run information of a clerk workbook read with openpyxl (None when absent)."""
    if SHEET_META not in wb.sheetnames:
        return None
    return meta_from_rows(wb[SHEET_META].iter_rows(min_row=1, max_col=2, values_only=True))


def meta_from_rows(rows: Iterable[Sequence[Any]]) -> dict[str, str] | None:
    """The run information from the hidden sheet's (key, value) rows, however it was read."""
    meta = {str(r[0]): str(r[1]) for r in rows if len(r) >= 2 and r[0] is not None and r[1] is not None}
    return meta if meta.get("format") == META_FORMAT and meta.get("run_id") else None


_HELP_HEADERS = ("问题类型", "是什么问题", "怎么处理")
_HELP_WIDTHS = (16, 62, 62)
_HELP_NOTES = (
    "严重程度：高＝可能影响资助资格或金额，请优先核实；中＝信息有误，需要更正；低＝提示，请留意。",
    "行号是名单中Excel显示的行号，前面是工作表的名称；系统行号是系统导出文件中的行号。",
    "为保护学生隐私，身份证号只显示前6位（地区码）、后4位，以及名单与系统不一致或损坏的位置，其余用*代替。",
    "{scope}核实后请在表中注明结果并按要求报回，请勿外传。",
    "填写方法：只需填写绿色的四列。“核实结论”从下拉列表选择："
    + "、".join(f"{d.label}（{d.help}）" for d in DECISION_LIST)
    + "；“核实人”必须填写。其余单元格已锁定，请勿改动、增删行或复制到别的表。",
    "已核实的问题以后不再列出；如果相关记录之后有变化，会重新列出并注明“记录已变化”；两人结论不一致的也会重新列出。",
)


def _help_sheet(book: Book, scope: str, kinds: Sequence[str]) -> None:
    ws = book.sheet(SHEET_HELP)
    book.widths(ws, _HELP_WIDTHS)
    ws.set_row(0, row_height(zip(_HELP_HEADERS, _HELP_WIDTHS)))
    _style_header(book, ws, _HELP_HEADERS)
    r = 2
    for code in kinds:
        k = KINDS[code]
        texts = (k.label, k.what, k.todo)
        ws.set_row(r - 1, row_height(list(zip(texts, _HELP_WIDTHS))))
        for c, value in enumerate(texts, start=1):
            book.value(ws, r, c, _final(value, from_input=False), "wrap")
        r += 1
    r += 1
    total = sum(_HELP_WIDTHS)
    for note in _HELP_NOTES:
        note = note.format(scope="本表只供本乡镇" if scope == "town" else "本表只供本校")
        ws.set_row(r - 1, row_height([(note, total)]))
        book.merged_text(ws, r, 1, len(_HELP_HEADERS), _final(note, from_input=False), "wrap")
        r += 1
    ws.freeze_panes(1, 0)
    _print_setup(ws, landscape=True, title_rows=(1, 1))


# Points per line of wrapped text: an 11 pt CJK font (LibreOffice falls back to Noto Sans CJK,
# whose lines are about 1.35 em) and a little padding; a CJK character is 2.1 width units (2.2
# counted, for the wider fonts a clerk's machine may use).
LINE_PT = 15.0
_PAD_PT = 3.0


def text_lines(text: Any, width: float) -> int:
    """Lines a wrapped cell ``width`` characters wide needs for ``text`` (estimated)."""
    if text is None:
        return 1
    return _text_lines(str(text), width)


@functools.lru_cache(maxsize=1 << 16)  # labels and messages repeat across a night's rows
def _text_lines(text: str, width: float) -> int:
    room = max(width - 1.0, 1.0)
    lines = [max(1, math.ceil(_width(part) * 1.1 / room)) for part in text.split("\n")]
    # Chinese line breaking keeps closing punctuation off a line's start: long texts need a line more.
    return sum(n + (1 if n > 2 else 0) for n in lines)


def row_height(cells: Iterable[tuple[Any, float]]) -> float:
    """Height (points) of a row whose wrapped cells are (text, column width)."""
    return LINE_PT * max([1, *(text_lines(t, w) for t, w in cells)]) + _PAD_PT


_HEADER_MAX = 255  # Excel's limit on a page header's code, "&C" included


def _print_setup(ws: Worksheet, *, landscape: bool, title_rows: tuple[int, int], scale: int = PRINT_SCALE,
                 header: str | None = None) -> None:
    """A4 at a fixed scale (never fit-to-page: that shrinks text below 9 pt on paper)."""
    if landscape:
        ws.set_landscape()
    else:
        ws.set_portrait()
    ws.set_paper(9)  # A4
    ws.set_print_scale(scale)
    ws.repeat_rows(title_rows[0] - 1, title_rows[1] - 1)
    ws.set_margins(left=MARGIN_IN, right=MARGIN_IN, top=0.6, bottom=0.6)
    if header:
        text = header[:200]
        while len(text.replace("&", "&&")) > _HEADER_MAX - 2:
            text = text[:-1]
        ws.set_header("&C" + text.replace("&", "&&"), {"margin": 0.25})
    else:
        ws.set_header("", {"margin": 0.25})
    ws.set_footer("&C第 &P 页，共 &N 页", {"margin": 0.25})



# --------------------------------------------------------------------------- API


def _stamp(stamp: datetime | None) -> datetime:
    if stamp is None:
        return _EPOCH
    if stamp.tzinfo is not None:
        return stamp.astimezone(timezone.utc).replace(tzinfo=None)
    return stamp


def _share(groups: Sequence[str], column: pl.Series, part: tuple[int, int]) -> set[str]:
    """The groups of the k-th of n shares, ``part`` = (k, n), balanced by their rows in
    ``column``: largest first, each to the share with the fewest rows so far (ties: the
    lower share). (0, 1) is every group."""
    k, n = part
    counts = dict(column.value_counts().iter_rows())
    load = [0] * n
    mine = set()
    for g in sorted(groups, key=lambda g: -counts[g]):
        owner = min(range(n), key=lambda s: load[s])
        load[owner] += counts[g]
        if owner == k:
            mine.add(g)
    return mine


def _unique_names(groups: Sequence[str]) -> list[str]:
    used: set[str] = set()
    out = []
    for g in groups:
        base = _safe_filename(g)
        name, i = base, 2
        while name.casefold() in used:
            name, i = f"{base}({i})", i + 1
        used.add(name.casefold())
        out.append(name)
    return out


def write_clerk_workbooks(
    discrepancies: pl.DataFrame,
    out_dir: Path,
    *,
    by: str = "school",
    run_id: str = "",
    stamp: datetime | None = None,
    night: dt.date | None = None,
    notice: NoticeSettings | None = None,
    part: tuple[int, int] = (0, 1),
) -> list[Path]:
    """One clerk workbook per school (``by='school'``) or per town (``by='town'``).

    The pipeline's ``town`` is the night's display name of the town's place key
    (``reconcile.places``), one name per key: every spelling of a town lands in one workbook.

    Sheets: ``待核实问题`` (two lines on what to fill in and where to return it by when — the
    ``notice`` settings' ``return_to``, ``return_within_days`` working days after ``night`` —
    then the items, most important first, review columns unlocked), ``说明`` and a hidden
    ``_recon`` (run id, scope, header row) the import checks. Items whose kind is for the
    towns only (missed_eligible) are left out of the school workbooks; analysts' kinds out of
    both. ``stamp`` (naive UTC; default 1970-01-01) becomes the created/modified time: equal
    input, equal bytes. ``part`` (k, n): only the k-th of n shares of the workbooks, balanced
    by items, for writing a set in several processes; file names as in one.
    """
    if by not in ("school", "town"):
        raise ValueError("by must be 'school' or 'town'")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = _stamp(stamp)
    ns = notice or NoticeSettings()
    deadline = return_deadline(night, ns) if night is not None else None
    kinds = SCHOOL_KINDS if by == "school" else TOWN_KINDS
    if discrepancies.height == 0:
        return []
    frame = _prepare(discrepancies.filter(pl.col("kind").is_in(list(kinds))))
    group_col = "_school" if by == "school" else "_town"
    groups = sorted(set(frame.get_column(group_col).to_list()))
    mine = _share(groups, frame.get_column(group_col), part)
    frame = frame.filter(pl.col(group_col).is_in(sorted(mine)))
    cells = _cell_frame(frame)
    spans = _span_map(cells, frame.get_column("diff_positions"), frame.get_column("id_number"))
    wrapped = [(h, w) for h, w, wrap, _p in _layout(by == "town") if wrap]
    cells = cells.with_columns(_hashes(cells), _heights(cells, wrapped), frame.get_column(group_col),
                               pl.int_range(cells.height).alias("_i"))
    parts = cells.partition_by(group_col, as_dict=True, maintain_order=True)
    paths: list[Path] = []
    for group, name in zip(groups, _unique_names(groups)):
        if group not in mine:
            continue
        rows = parts[(group,)]
        title = f"{group} 待核实问题" + (f"（{night.year}年{night.month}月{night.day}日）" if night else "")
        lines = instructions(by, group, ns.return_to, deadline)
        path = out_dir / f"{name}.xlsx"
        with Book(path, STYLES, stamp=stamp, rows=rows.height) as book:
            _problem_sheet(book, rows, spans, title=title, lines=lines, with_school=(by == "town"))
            _help_sheet(book, by, kinds)
            _meta_sheet(book, {"format": META_FORMAT, "run_id": run_id, "scope": by, "name": group,
                               "items": str(rows.height), "header_row": str(HEADER_ROW)})
        paths.append(path)
    return paths


def write_school_workbooks(
    discrepancies: pl.DataFrame,
    out_dir: Path,
    *,
    stamp: datetime | None = None,
    run_id: str = "",
    night: dt.date | None = None,
    notice: NoticeSettings | None = None,
    part: tuple[int, int] = (0, 1),
) -> list[Path]:
    """Write one ``{school}.xlsx`` per school (null school: ``未注明学校``) into ``out_dir``.

    Returns the paths in school-name order. ``stamp`` (naive UTC; default 1970-01-01)
    becomes the workbooks' created/modified time, so equal input gives equal bytes.
    Existing files of the same name are replaced atomically; others are left alone.
    """
    return write_clerk_workbooks(discrepancies, out_dir, by="school", run_id=run_id, stamp=stamp, night=night,
                                 notice=notice, part=part)


NOTICE_WIDTHS = (6, 12, 21, 9, 9, 25, 12)  # portrait A4 at 100 %


def notice_text(start: dt.date | None, ns: NoticeSettings) -> tuple[str, ...]:
    """The notice's own words: its period (working days on the configured calendar) and where to object."""
    days = f"{ns.working_days}个工作日"
    if start is not None:
        first, last = notice_period(start, ns)
        period = f"公示时间：{first.year}年{first.month}月{first.day}日至{last.year}年{last.month}月{last.day}日（{days}）。"
    else:
        period = f"公示期不少于{days}。"
    phone = f"（电话：{ns.phone}）" if ns.phone else ""
    return (period, f"如有异议，请在公示期内向{ns.office}{phone}反映。", "为保护学生隐私，身份证号只显示前6位和后4位。")


def _notice_cells(frame: pl.DataFrame) -> pl.DataFrame:
    """The cells of the notice rows: 序号 within the school, the texts as written, the ID masked."""
    texts = [frame.get_column("name"), _masked(frame.get_column("id_number").cast(pl.String)).alias("id_number"),
             *(frame.get_column(c) for c in ("stage", "grade", "aid_item", "amount"))]
    seq = frame.select(pl.int_range(1, pl.len() + 1).over("_school").alias("序号")).to_series()
    cells = pl.DataFrame([seq, *(_finals(t) if t.dtype == pl.String else t for t in texts)])
    return cells.with_columns(_heights(cells, list(zip(cells.columns, NOTICE_WIDTHS))), frame.get_column("_school"))


def write_public_notices(eligible: pl.DataFrame, out_dir: Path, *, stamp: datetime | None = None,
                         start: dt.date | None = None, notice: NoticeSettings | None = None,
                         part: tuple[int, int] = (0, 1)) -> list[Path]:
    """One 公示名单 per school: the students nothing is in doubt about (see ``notice.notice_rows``).

    ``eligible`` has columns school, name, id_number, stage, grade, aid_item, amount, in the
    order to list them. The notice starts on ``start`` and runs for the configured working days.
    ``part`` as for ``write_clerk_workbooks``.
    """
    out_dir = Path(out_dir)
    stamp = _stamp(stamp)
    ns = notice or NoticeSettings()
    if eligible.height == 0:
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    frame = eligible.with_columns(pl.col("school").cast(pl.String).fill_null(NO_SCHOOL).alias("_school"))
    groups = sorted(set(frame.get_column("_school").to_list()))
    mine = _share(groups, frame.get_column("_school"), part)
    cells = _notice_cells(frame.filter(pl.col("_school").is_in(sorted(mine))))
    parts = cells.partition_by("_school", as_dict=True, maintain_order=True)
    ncols = len(NOTICE_HEADERS)
    paths = []
    for group, name in zip(groups, _unique_names(groups)):
        if group not in mine:
            continue
        rows = parts[(group,)]
        path = out_dir / f"{name}.xlsx"
        with Book(path, STYLES, stamp=stamp, rows=rows.height) as book:
            ws = book.sheet(SHEET_NOTICE)
            book.widths(ws, NOTICE_WIDTHS)
            ws.set_row(0, 24)
            book.merged_text(ws, 1, 1, ncols, _final(f"{group} 学生资助公示名单") or "", "title")
            ws.set_row(1, row_height(zip(NOTICE_HEADERS, NOTICE_WIDTHS)))
            _style_header(book, ws, NOTICE_HEADERS, row=2)
            values = rows.select("_height", pl.exclude("_height", "_school"))
            book.rows(ws, 3, values, [(c, h, ("wrap",), True) for c, h in enumerate(values.columns[1:], start=1)],
                      height="_height")
            r = 3 + values.height + 1
            for note in notice_text(start, ns):
                ws.set_row(r - 1, row_height([(note, sum(NOTICE_WIDTHS))]))
                book.merged_text(ws, r, 1, ncols, _final(note, from_input=False), "wrap")
                r += 1
            ws.freeze_panes(2, 0)
            _print_setup(ws, landscape=False, title_rows=(1, 2), scale=100)
            ws.print_area(0, 0, r - 2, ncols - 1)
        paths.append(path)
    return paths
