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
formula — input strings are written as text (``data_type 's'``), and those starting with
``= + - @`` or a tab/CR also get Excel's quote prefix. Output is reproducible: the same
frame gives byte-identical files (fixed document and zip timestamps).
"""

from __future__ import annotations

import difflib
from copy import copy
import hashlib
import io
import math
import os
import re
import unicodedata
import zipfile
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import polars as pl
from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.cell.rich_text import CellRichText, TextBlock
from openpyxl.cell.text import InlineFont
from openpyxl.styles import Alignment, Font, PatternFill, Protection
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.datavalidation import DataValidation
from openpyxl.worksheet.worksheet import Worksheet
from openpyxl.writer.excel import ExcelWriter

from reconcile.fields import ID_FIELDS

__all__ = [
    "mask_id",
    "mask_text",
    "write_school_workbooks",
    "write_clerk_workbooks",
    "write_public_notices",
    "with_row_hashes",
    "row_hash",
    "read_meta",
    "REVIEW_HEADERS",
    "COL_REF",
    "COL_HASH",
    "KIND_LABELS",
    "SEVERITY_LABELS",
    "SYSTEM_LABELS",
    "FIELD_LABELS",
    "HEADERS",
    "SHEET_PROBLEMS",
    "SHEET_HELP",
    "NO_SCHOOL",
]

SHEET_PROBLEMS = "待核实问题"
SHEET_HELP = "说明"
NO_SCHOOL = "未注明学校"

KIND_LABELS: dict[str, str] = {
    "not_found": "两系统均未找到",
    "id_mismatch": "身份证号不一致",
    "name_mismatch": "姓名不一致",
    "id_invalid": "身份证号无效或损坏",
    "household_exited": "已脱贫不再享受政策",
    "dibao_stopped": "低保已停保",
    "duplicate_claim": "重复申报",
    "id_fact_conflict": "出生日期或性别与身份证不符",
    "needs_review": "疑似记录待确认",
    "subsidy_mismatch": "资助金额与标准不符",
    "age_stage_mismatch": "年龄与学段年级不符",
    "export_incomplete": "系统导出可能不完整",
    "missed_eligible": "符合条件但未在名单",
}

# What each kind means and what the clerk should do (the 说明 sheet).
KIND_HELP: dict[str, tuple[str, str]] = {
    "not_found": (
        "学生在低保和建档立卡两个系统的导出数据中都没有找到（按身份证号、姓名和出生日期、户主信息均未对上）。",
        "核对名单中的姓名和身份证号是否录入正确；向家长或村委会确认家庭是否在低保或建档立卡范围内。"
        "如果同一乡镇或村的学生整批未找到，可能是系统导出不完整，请联系县学生资助管理中心。",
    ),
    "id_mismatch": (
        "按姓名、出生日期或家庭找到了该学生，但名单和系统中的身份证号不同。"
        "表中身份证号只显示前6位、后4位和两边不一致的位置。",
        "对照户口簿或身份证原件核实，更正错误的一方；如果是系统中有误，请告知主管部门更正。",
    ),
    "name_mismatch": (
        "按身份证号找到了该学生，但姓名不同（常见原因：同音字、形近字、生僻字无法录入、多了空格或间隔点）。",
        "对照户口簿核实正确写法，更正名单；如果是系统中有误，请告知主管部门。",
    ),
    "id_invalid": (
        "名单中的身份证号不符合国家标准：位数不对、校验位错误、出生日期不存在，"
        "或在Excel中被存成了数字（末几位变成0，或显示为4.30524E+17这样的科学计数法）。",
        "先把身份证号一列设为“文本”格式，再对照户口簿重新录入完整的18位号码。",
    ),
    "household_exited": (
        "学生家庭在建档立卡系统中为“已脱贫（不再享受政策）”，按政策不再享受建档立卡学生资助。"
        "注意：“已脱贫（享受政策）”的家庭仍然享受资助，不在此列。",
        "向村委会或乡村振兴部门核实家庭当前状态；如确已不再享受政策，请调整资助名单，或核实是否符合其他资助条件。",
    ),
    "dibao_stopped": (
        "学生家庭在低保系统中的状态为停保或注销。",
        "向民政部门或村委会核实是否已恢复低保；如确已停保，请调整资助类别或名单。",
    ),
    "duplicate_claim": (
        "同一学生在两所学校的名单中都出现，或在同一份名单中出现了不止一次。",
        "与相关学校联系，确认学生实际就读的学校，只保留一处申报。",
    ),
    "id_fact_conflict": (
        "名单中的出生日期或性别与身份证号所含信息不一致"
        "（身份证号第7至14位是出生日期，第17位单数为男、双数为女）。",
        "对照户口簿核实，更正错误的一项。",
    ),
    "needs_review": (
        "在系统中找到一条疑似记录，但证据不足以自动确认是同一人（例如姓名只差一个字、出生日期或户主不同）。",
        "对照户口簿核对表中名单与系统两边的姓名、身份证号：是同一人选“确认是同一人”，不是选“不是同一人”。",
    ),
    "subsidy_mismatch": (
        "名单中的资助金额与本县本学年的资助标准不一致（按学段、家庭类别、是否寄宿、年级计算）；说明中写明了应发金额和所依据的标准。",
        "核对学生的学段、年级、是否寄宿和家庭类别是否填写正确；都正确的，按标准更正资助金额。",
    ),
    "age_stage_mismatch": (
        "按身份证号中的出生日期计算，学生年龄与所填学段或年级明显不符。",
        "核对身份证号和学段、年级是否填错；确属跳级、留级或晚入学的，在备注中说明。",
    ),
    "export_incomplete": (
        "该学生所在村或乡镇在今晚的系统导出中几乎没有记录，而名单和另一系统中都有，很可能是导出被截断，而不是学生不符合条件。",
        "不必逐户核查：请联系县学生资助管理中心或系统主管部门重新导出该村（乡镇）的数据。",
    ),
    "missed_eligible": (
        "低保或建档立卡家庭中有学龄儿童，但不在任何学校的资助名单上，可能已辍学，也可能漏报（控辍保学）。",
        "由乡镇和村核实该儿童是否在校：在校的通知所在学校补报资助；已辍学的按控辍保学要求劝返。",
    ),
}

SEVERITY_LABELS: dict[str, str] = {"high": "高", "medium": "中", "low": "低"}
_SEVERITY_RANK: dict[str, int] = {"high": 0, "medium": 1, "low": 2}

SYSTEM_LABELS: dict[str, str] = {"dibao": "低保", "filing": "建档立卡"}

FIELD_LABELS: dict[str, str] = {
    "seq": "序号", "school": "学校", "stage": "学段", "grade": "年级", "class_name": "班级",
    "name": "姓名", "gender": "性别", "ethnicity": "民族", "birth_date": "出生日期",
    "id_number": "身份证号", "student_no": "学籍号", "boarding": "是否寄宿",
    "head_name": "户主姓名", "head_id": "户主身份证号", "relation": "与户主关系",
    "town": "乡镇", "village": "村", "aid_item": "资助项目", "amount": "资助金额",
    "phone": "联系电话", "household_size": "保障人数", "dibao_category": "低保类别",
    "monthly_amount": "月保障金额", "approved_date": "批准日期", "status": "状态",
    "county_name": "县", "household_no": "户编号", "person_no": "人编号",
    "school_status": "在校生状况", "household_type": "贫困户属性",
    "poverty_status": "脱贫状态", "exit_year": "脱贫年度",
}

# The clerk sheet's columns, in order. The four review columns are the only unlocked ones;
# the last two are hidden (item reference within the run, hash of the locked cells).
COL_DECISION, COL_CORRECTED, COL_NOTE, COL_REVIEWER = "核实结论", "更正值", "备注", "核实人"
REVIEW_HEADERS: tuple[str, ...] = (COL_DECISION, COL_CORRECTED, COL_NOTE, COL_REVIEWER)
COL_REF, COL_HASH, COL_SCHOOL = "问题编号", "校验码", "学校"
HEADERS: tuple[str, ...] = (
    "序号", "严重程度", "问题类型", "行号", "学生姓名", "系统中姓名", "身份证号", "系统中身份证号",
    "核对系统", "核对项", "名单值", "系统值", "说明",
    *REVIEW_HEADERS,
    "名单文件", "工作表", "系统文件", "系统工作表", "系统行号",
    COL_REF, COL_HASH,
)
# Locked content covered by the row hash (序号 and 学校 depend on the workbook, not the item).
HASHED: tuple[str, ...] = tuple(
    h for h in HEADERS if h not in (("序号", COL_SCHOOL, COL_REF, COL_HASH) + REVIEW_HEADERS)
) + (COL_REF,)
# Roster / system pairs shown side by side, differing characters highlighted.
PAIRS: tuple[tuple[str, str], ...] = (("学生姓名", "系统中姓名"), ("身份证号", "系统中身份证号"), ("名单值", "系统值"))
SHEET_META = "_recon"
META_FORMAT = "clerk-workbook/1"
SHEET_NOTICE = "公示名单"
NOTICE_HEADERS: tuple[str, ...] = ("序号", "姓名", "身份证号", "学段", "年级", "资助项目", "资助金额（元）")
_STATE_RANK: dict[str, int] = {"conflict": 0, "reopened": 1}

_INPUT_COLUMNS: dict[str, pl.DataType] = {
    "kind": pl.String, "severity": pl.String, "source": pl.String, "file": pl.String,
    "sheet": pl.String, "row": pl.Int64, "system": pl.String, "system_file": pl.String,
    "system_sheet": pl.String, "system_row": pl.Int64, "field": pl.String,
    "value": pl.String, "system_value": pl.String, "message": pl.String,
    "school": pl.String, "town": pl.String, "name": pl.String, "id_number": pl.String,
    "system_name": pl.String, "system_id": pl.String,
    "diff_positions": pl.List(pl.Int8), "item_ref": pl.Int64, "review_state": pl.String,
}

# At most this many differing positions are revealed in a masked ID.
MAX_REVEALED_DIFFS = 4
_MIN_HIDDEN = 4  # an 18-character ID always keeps at least this many characters hidden

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")  # CR is written as LF
_EXCEL_MAX_CHARS = 32767
# Runs of 14+ digits (ASCII or full-width, single spaces allowed inside), optional X last.
_ID_SHAPED = re.compile(
    r"(?<![0-9０-９])[0-9０-９](?:[ \u3000]?[0-9０-９]){13,}(?:[XxＸｘ])?(?![0-9０-９])"
)
_FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_EPOCH = datetime(1970, 1, 1)


# --------------------------------------------------------------------------- masking


def mask_id(value: str | None, keep: Iterable[int] = ()) -> str:
    """Mask an ID number: ``433124********123X``.

    16+ characters: the first 6 (region) and last 4 stay; 14–15 (legacy 15-digit): first 6
    and last 3 (the sequence); 5–13 characters (damaged):
    first 2 and last 2 stay; 4 or fewer: all masked. ``keep`` adds 0-based positions to
    show (where roster and system differ), but only when that still hides at least 4
    characters and reveals no more than 4 extra; otherwise ``keep`` is ignored.
    None or '' gives ''.
    """
    if value is None:
        return ""
    text = str(value)
    n = len(text)
    if n == 0:
        return ""
    if n >= 16:
        shown = set(range(6)) | set(range(n - 4, n))
    elif n >= 14:  # legacy 15-digit: the last 4 would include a birth-date digit
        shown = set(range(6)) | set(range(n - 3, n))
    elif n >= 5:
        shown = {0, 1, n - 2, n - 1}
    else:
        shown = set()
    extra = {int(p) for p in (keep or ()) if p is not None and 0 <= int(p) < n} - shown
    hidden = n - len(shown)
    if extra and len(extra) <= min(MAX_REVEALED_DIFFS, hidden - _MIN_HIDDEN):
        shown |= extra
    return "".join(c if i in shown else "*" for i, c in enumerate(text))


def mask_text(text: str | None) -> str:
    """Mask every ID-shaped run (14+ digits) inside free text; '' for None."""
    if text is None:
        return ""
    return _ID_SHAPED.sub(lambda m: mask_id(m.group(0)), str(text))


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
    return name[:100]


def _label(mapping: dict[str, str], code: Any) -> str:
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
        # XML turns CR into LF on reading: write what will be read back.
        text = ILLEGAL_CHARACTERS_RE.sub("", value).replace("\r\n", "\n").replace("\r", "\n")
        if from_input:
            text = mask_text(text)[:_EXCEL_MAX_CHARS]  # longer makes Excel call the file corrupt
        return text or None
    return value


def _put(ws: Worksheet, row: int, col: int, value: Any, *, from_input: bool = True, rich: Any = None) -> None:
    """Write one cell; strings from input are always text, never formulas."""
    cell = ws.cell(row=row, column=col)
    value = _final(value, from_input=from_input)
    if value is None:
        return
    if isinstance(value, str):
        cell.value = rich if rich is not None else value
        cell.data_type = "s"
        if value.startswith(_FORMULA_START) or value.lstrip().startswith(_FORMULA_START):
            cell.quotePrefix = True
    else:
        cell.value = value


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
        pl.col("town").fill_null("未注明乡镇").alias("_town"),
        pl.col("severity")
        .replace_strict(_SEVERITY_RANK, default=len(_SEVERITY_RANK), return_dtype=pl.Int8)
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


def _cells(d: dict[str, Any]) -> dict[str, Any]:
    """Header -> final cell value of one (prepared) discrepancy row (序号 and 学校 aside)."""
    keep = [int(p) for p in (d["diff_positions"] or []) if p is not None]
    is_id = d["field"] in set(ID_FIELDS)
    raw = {
        "严重程度": _label(SEVERITY_LABELS, d["severity"]),
        "问题类型": _label(KIND_LABELS, d["kind"]),
        "行号": d["row"],
        "学生姓名": d["name"],
        "系统中姓名": d["system_name"],
        "身份证号": mask_id(d["id_number"], keep),
        "系统中身份证号": mask_id(d["system_id"], keep),
        "核对系统": _label(SYSTEM_LABELS, d["system"]),
        "核对项": _label(FIELD_LABELS, d["field"]),
        "名单值": _id_cell(d["value"], keep, d["id_number"]) if is_id else d["value"],
        "系统值": _id_cell(d["system_value"], keep, d["system_id"]) if is_id else d["system_value"],
        "说明": d["message"],
        "名单文件": d["file"],
        "工作表": d["sheet"],
        "系统文件": d["system_file"],
        "系统工作表": d["system_sheet"],
        "系统行号": d["system_row"],
        COL_REF: d["item_ref"],
    }
    return {h: _final(v) for h, v in raw.items()}


def _hash_text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return str(v)


def row_hash(values: dict[str, Any]) -> str:
    """Hash of a row's locked cells (by header), as written or as read back with openpyxl."""
    text = "\x1f".join(f"{h}={_hash_text(values.get(h))}" for h in HASHED)
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def with_row_hashes(discrepancies: pl.DataFrame) -> pl.DataFrame:
    """``discrepancies`` plus ``row_hash``: what the clerk workbooks' locked cells hash to."""
    if discrepancies.height == 0:
        return discrepancies.with_columns(pl.lit(None, dtype=pl.String).alias("row_hash"))
    prepared = _prepare(discrepancies.with_row_index("_orig"))
    hashes = [row_hash(_cells(d)) for d in prepared.iter_rows(named=True)]
    order = prepared.select("_orig").with_columns(pl.Series("row_hash", hashes, dtype=pl.String))
    return discrepancies.with_row_index("_orig").join(order, on="_orig", how="left", maintain_order="left").drop("_orig")


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


_HIGHLIGHT = InlineFont(b=True, color="FFC00000", u="single")


def _rich(text: str, spans: list[tuple[int, int]]) -> CellRichText | None:
    if not spans:
        return None
    parts: list[Any] = []
    pos = 0
    for i, j in spans:
        if i > pos:
            parts.append(text[pos:i])
        parts.append(TextBlock(_HIGHLIGHT, text[i:j]))
        pos = j
    if pos < len(text):
        parts.append(text[pos:])
    return CellRichText(parts)


def _style_header(ws: Worksheet, headers: Sequence[str]) -> None:
    bold = Font(bold=True)
    fill = PatternFill(fill_type="solid", fgColor="FFDDEBF7")
    center = Alignment(horizontal="center", vertical="center")
    for col, title in enumerate(headers, start=1):
        cell = ws.cell(row=1, column=col, value=title)
        cell.font = bold
        cell.fill = fill
        cell.alignment = center


def _fit_columns(ws: Worksheet, ncols: int, *, cap: int = 60, wrap: Iterable[int] = ()) -> None:
    widths = [0] * ncols
    for row in ws.iter_rows(min_row=1, max_row=ws.max_row, max_col=ncols):
        for i, cell in enumerate(row):
            if cell.value is not None:
                widths[i] = max(widths[i], _width(str(cell.value)))
    wrap_cols = set(wrap)
    for i, w in enumerate(widths, start=1):
        ws.column_dimensions[get_column_letter(i)].width = min(max(w, 4) + 2, cap)
        if i in wrap_cols and w + 2 > cap:
            for (cell,) in ws.iter_rows(min_row=2, max_row=ws.max_row, min_col=i, max_col=i):
                cell.alignment = Alignment(wrap_text=True, vertical="top")


_TOP = Alignment(vertical="top")
_DIFF_FILL = PatternFill(fill_type="solid", fgColor="FFFFF2CC")
_EDIT_FILL = PatternFill(fill_type="solid", fgColor="FFE2EFDA")
_EDIT_HEAD_FILL = PatternFill(fill_type="solid", fgColor="FFC6E0B4")
_WIDTHS = {COL_DECISION: 14, COL_CORRECTED: 22, COL_NOTE: 24, COL_REVIEWER: 10, "说明": 46,
           "名单文件": 28, "系统文件": 24, COL_REF: 8, COL_HASH: 18}


class _Styles:
    """Cell styles set once per sheet and copied after: setting openpyxl style objects cell
    by cell hashes them every time, which dominated writing a large county's workbooks."""

    def __init__(self) -> None:
        self._arrays: dict[str, Any] = {}

    def apply(self, cell: Any, key: str, setter: Any) -> None:
        if key in self._arrays:
            cell._style = copy(self._arrays[key])
        else:
            setter(cell)
            self._arrays[key] = copy(cell._style)


def _body_style(cell: Any) -> None:
    cell.alignment = _TOP


def _diff_style(cell: Any) -> None:
    cell.alignment = _TOP
    cell.fill = _DIFF_FILL


def _note_style(cell: Any) -> None:
    cell.alignment = Alignment(wrap_text=True, vertical="top")


def _review_style(cell: Any) -> None:
    cell.alignment = _TOP
    cell.protection = Protection(locked=False)
    cell.fill = _EDIT_FILL
    cell.number_format = "@"  # corrected IDs typed here stay text


def _problem_sheet(ws: Worksheet, rows: pl.DataFrame, *, title: str, with_school: bool = False) -> None:
    ws.title = SHEET_PROBLEMS
    styles = _Styles()
    headers = list(HEADERS)
    if with_school:
        headers.insert(1, COL_SCHOOL)
    col = {h: i for i, h in enumerate(headers, start=1)}
    _style_header(ws, headers)
    for h in REVIEW_HEADERS:
        ws.cell(row=1, column=col[h]).fill = _EDIT_HEAD_FILL
    for r, d in enumerate(rows.iter_rows(named=True), start=2):
        cells = _cells(d)
        cells["序号"] = r - 1
        cells[COL_HASH] = row_hash(cells)
        if with_school:
            cells[COL_SCHOOL] = _final(d["school"])
        rich: dict[str, Any] = {}
        for left, right in PAIRS:
            a, b = cells.get(left), cells.get(right)
            if isinstance(a, str) and isinstance(b, str) and a != b:
                sa, sb = _diff_spans(a, b)
                rich[left], rich[right] = _rich(a, sa), _rich(b, sb)
        diff = set(rich)
        # Styles first: copying a style array replaces all of a cell's style (quote prefix too).
        for h, c in col.items():
            cell = ws.cell(row=r, column=c)
            if h in REVIEW_HEADERS:
                styles.apply(cell, "review", _review_style)
                cell.data_type = "s"
            elif h == "说明":
                styles.apply(cell, "note", _note_style)
            elif h in diff:
                styles.apply(cell, "diff", _diff_style)
            else:
                styles.apply(cell, "body", _body_style)
        for h, value in cells.items():
            _put(ws, r, col[h], value, from_input=False, rich=rich.get(h))
    last = max(ws.max_row, 1)
    ncols = len(headers)
    ws.freeze_panes = "A2"
    ws.auto_filter.ref = f"A1:{get_column_letter(ncols)}{last}"
    _fit_columns(ws, ncols, cap=40)
    for h, w in _WIDTHS.items():
        ws.column_dimensions[get_column_letter(col[h])].width = w
    _row_heights(ws, 2, last, [get_column_letter(col["说明"])])
    for h in (COL_REF, COL_HASH):
        ws.column_dimensions[get_column_letter(col[h])].hidden = True
    if last >= 2:
        dv = DataValidation(
            type="list", formula1='"' + ",".join(_decision_labels()) + '"', allow_blank=True,
            showErrorMessage=True, errorTitle="核实结论", error="请从下拉列表中选择：" + " / ".join(_decision_labels()),
            showInputMessage=True, promptTitle="核实结论", prompt="请选择核实结果，并填写核实人",
        )
        letter = get_column_letter(col[COL_DECISION])
        dv.add(f"{letter}2:{letter}{last}")
        ws.add_data_validation(dv)
    # Locked except the four review columns; filtering and column widths still allowed.
    ws.protection.sheet = True
    ws.protection.autoFilter = False
    ws.protection.formatColumns = False
    ws.protection.formatRows = False
    ws.protection.selectLockedCells = False
    ws.protection.selectUnlockedCells = False
    # Printing: A4 landscape, header row on every page, fit to one page wide, lineage left off.
    _print_setup(ws, landscape=True, title_rows="1:1")
    ws.print_area = f"A1:{get_column_letter(col[COL_REVIEWER])}{last}"
    ws.page_margins.left = ws.page_margins.right = 0.4
    ws.page_margins.top = ws.page_margins.bottom = 0.75
    ws.page_margins.header = ws.page_margins.footer = 0.25
    ws.oddHeader.center.text = title[:200].replace("&", "&&")


def _decision_labels() -> tuple[str, ...]:
    from reconcile.review import DECISION_LABELS

    return DECISION_LABELS


def _meta_sheet(wb: Workbook, meta: dict[str, str]) -> None:
    ws = wb.create_sheet(SHEET_META)
    for r, (k, v) in enumerate(meta.items(), start=1):
        _put(ws, r, 1, k, from_input=False)
        _put(ws, r, 2, v, from_input=False)
    ws.sheet_state = "veryHidden"
    ws.protection.sheet = True


def read_meta(wb: Workbook) -> dict[str, str] | None:
    """The hidden run information of a clerk workbook (None when absent)."""
    if SHEET_META not in wb.sheetnames:
        return None
    ws = wb[SHEET_META]
    meta = {str(k): str(v) for k, v in ws.iter_rows(min_row=1, max_col=2, values_only=True) if k is not None and v is not None}
    return meta if meta.get("format") == META_FORMAT and meta.get("run_id") else None


_HELP_HEADERS = ("问题类型", "代码", "是什么问题", "怎么处理")
_HELP_NOTES = (
    "严重程度：高＝可能影响资助资格或金额，请优先核实；中＝信息有误，需要更正；低＝提示，请留意。",
    "行号是名单文件中Excel显示的行号；系统行号是系统导出文件中的行号。",
    "为保护学生隐私，身份证号只显示前6位（地区码）、后4位，以及名单与系统不一致的位置，其余用*代替。",
    "本表只供本校核实使用，请勿外传；核实后请在表中注明结果并按要求报回。",
    "填写方法：只需填写绿色的四列。“核实结论”从下拉列表选择：确认是同一人（名单学生与系统记录是同一人）、"
    "不是同一人（系统记录不是该学生，今后不再提示这条记录）、已更正（已改正名单；身份证号有误的，请在“更正值”填写正确的18位号码）、"
    "待核实（还在核实中）；“核实人”必须填写。其余单元格已锁定，请勿改动、增删行或复制到别的表。",
    "已核实的问题以后不再列出；如果相关记录之后有变化，会重新列出并注明“记录已变化”；两人结论不一致的也会重新列出。",
)


def _help_sheet(ws: Worksheet) -> None:
    ws.title = SHEET_HELP
    _style_header(ws, _HELP_HEADERS)
    r = 2
    for kind, label in KIND_LABELS.items():
        what, todo = KIND_HELP[kind]
        for c, value in enumerate((label, kind, what, todo), start=1):
            _put(ws, r, c, value, from_input=False)
        r += 1
    _fit_columns(ws, 2)
    for col in ("C", "D"):
        ws.column_dimensions[col].width = 60
    for (c3, c4) in ws.iter_rows(min_row=2, max_row=1 + len(KIND_LABELS), min_col=3, max_col=4):
        c3.alignment = c4.alignment = Alignment(wrap_text=True, vertical="top")
    _row_heights(ws, 2, r - 1, ("C", "D"))
    r += 1
    total = sum(ws.column_dimensions[c].width or 10 for c in "ABCD")
    for note in _HELP_NOTES:
        _put(ws, r, 1, note, from_input=False)
        ws.merge_cells(start_row=r, start_column=1, end_row=r, end_column=4)
        ws.cell(row=r, column=1).alignment = Alignment(wrap_text=True, vertical="top")
        ws.row_dimensions[r].height = _LINE_HEIGHT * max(1, math.ceil(_width(note) / max(total - 2, 1)))
        r += 1
    ws.freeze_panes = "A2"
    _print_setup(ws, landscape=True, title_rows="1:1")


_LINE_HEIGHT = 15.0


def _row_heights(ws: Worksheet, first: int, last: int, wrapped: Iterable[str]) -> None:
    """Explicit heights for rows with wrapped text (LibreOffice does not grow them itself)."""
    cols = list(wrapped)
    for r in range(first, last + 1):
        lines = 1
        for c in cols:
            value = ws[f"{c}{r}"].value
            if value is not None:
                width = max((ws.column_dimensions[c].width or 10) - 1, 1)
                lines = max(lines, sum(math.ceil(max(_width(part), 1) / width) for part in str(value).split("\n")))
        if lines > 1:
            ws.row_dimensions[r].height = _LINE_HEIGHT * lines


def _print_setup(ws: Worksheet, *, landscape: bool, title_rows: str) -> None:
    ws.page_setup.orientation = "landscape" if landscape else "portrait"
    ws.page_setup.paperSize = ws.PAPERSIZE_A4
    ws.page_setup.fitToWidth = 1
    ws.page_setup.fitToHeight = 0
    ws.sheet_properties.pageSetUpPr.fitToPage = True
    ws.print_title_rows = title_rows
    ws.oddFooter.center.text = "第 &P 页，共 &N 页"


def _workbook_bytes(wb: Workbook, stamp: datetime) -> bytes:
    """Serialise with fixed document properties and zip timestamps (reproducible)."""
    wb.properties.creator = "recon"
    wb.properties.lastModifiedBy = "recon"
    wb.properties.created = stamp
    wb.properties.modified = stamp  # openpyxl's save_workbook would stamp "now" here
    raw = io.BytesIO()
    ExcelWriter(wb, zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED, allowZip64=True)).save()
    out = io.BytesIO()
    with zipfile.ZipFile(raw) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            fixed = zipfile.ZipInfo(info.filename, date_time=_FIXED_ZIP_TIME)
            fixed.compress_type = zipfile.ZIP_DEFLATED
            fixed.external_attr = 0o644 << 16
            zout.writestr(fixed, zin.read(info.filename))
    return out.getvalue()


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


# --------------------------------------------------------------------------- API


def _stamp(stamp: datetime | None) -> datetime:
    if stamp is None:
        return _EPOCH
    if stamp.tzinfo is not None:
        return stamp.astimezone(timezone.utc).replace(tzinfo=None)
    return stamp


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
) -> list[Path]:
    """One clerk workbook per school (``by='school'``) or per town (``by='town'``).

    Sheets: ``待核实问题`` (items, most important first, review columns unlocked),
    ``说明`` and a hidden ``_recon`` (run id, scope) the import checks. ``stamp`` (naive
    UTC; default 1970-01-01) becomes the created/modified time: equal input, equal bytes.
    """
    if by not in ("school", "town"):
        raise ValueError("by must be 'school' or 'town'")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = _stamp(stamp)
    if discrepancies.height == 0:
        return []
    frame = _prepare(discrepancies)
    group_col = "_school" if by == "school" else "_town"
    groups = sorted(set(frame.get_column(group_col).to_list()))
    paths: list[Path] = []
    for group, name in zip(groups, _unique_names(groups)):
        rows = frame.filter(pl.col(group_col) == group)
        wb = Workbook()
        title = f"{group} 待核实问题" + (f"（运行 {run_id}）" if run_id else "")
        _problem_sheet(wb.active, rows, title=title, with_school=(by == "town"))
        _help_sheet(wb.create_sheet(SHEET_HELP))
        _meta_sheet(wb, {"format": META_FORMAT, "run_id": run_id, "scope": by, "name": group, "items": str(rows.height)})
        path = out_dir / f"{name}.xlsx"
        _write_atomic(path, _workbook_bytes(wb, stamp))
        paths.append(path)
    return paths


def write_school_workbooks(
    discrepancies: pl.DataFrame,
    out_dir: Path,
    *,
    stamp: datetime | None = None,
    run_id: str = "",
) -> list[Path]:
    """Write one ``{school}.xlsx`` per school (null school: ``未注明学校``) into ``out_dir``.

    Returns the paths in school-name order. ``stamp`` (naive UTC; default 1970-01-01)
    becomes the workbooks' created/modified time, so equal input gives equal bytes.
    Existing files of the same name are replaced atomically; others are left alone.
    """
    return write_clerk_workbooks(discrepancies, out_dir, by="school", run_id=run_id, stamp=stamp)


def write_public_notices(eligible: pl.DataFrame, out_dir: Path, *, stamp: datetime | None = None) -> list[Path]:
    """One 公示名单 per school: students confirmed eligible (name, masked ID, stage, subsidy).

    ``eligible`` has columns school, name, id_number, stage, grade, aid_item, amount
    (see ``review.eligible_students``), in the order to list them.
    """
    out_dir = Path(out_dir)
    stamp = _stamp(stamp)
    if eligible.height == 0:
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    frame = eligible.with_columns(pl.col("school").cast(pl.String).fill_null(NO_SCHOOL).alias("_school"))
    groups = sorted(set(frame.get_column("_school").to_list()))
    paths = []
    for group, name in zip(groups, _unique_names(groups)):
        rows = frame.filter(pl.col("_school") == group)
        wb = Workbook()
        ws = wb.active
        ws.title = SHEET_NOTICE
        ncols = len(NOTICE_HEADERS)
        _put(ws, 1, 1, f"{group} 学生资助公示名单", from_input=True)
        ws.merge_cells(start_row=1, start_column=1, end_row=1, end_column=ncols)
        ws.cell(row=1, column=1).font = Font(bold=True, size=14)
        ws.cell(row=1, column=1).alignment = Alignment(horizontal="center")
        for c, h in enumerate(NOTICE_HEADERS, start=1):
            cell = ws.cell(row=2, column=c, value=h)
            cell.font = Font(bold=True)
            cell.fill = PatternFill(fill_type="solid", fgColor="FFDDEBF7")
            cell.alignment = Alignment(horizontal="center")
        r = 3
        for i, d in enumerate(rows.iter_rows(named=True), start=1):
            for c, v in enumerate((i, d["name"], mask_id(d["id_number"]), d["stage"], d["grade"], d["aid_item"], d["amount"]), start=1):
                _put(ws, r, c, v)
            r += 1
        r += 1
        for note in ("公示期不少于5个工作日。如有异议，请在公示期内向学校学生资助工作人员反映。",
                     "为保护学生隐私，身份证号只显示前6位和后4位。"):
            _put(ws, r, 1, note, from_input=False)
            r += 1
        widths = [6, 12, 22, 10, 10, 24, 14]
        for c, w in enumerate(widths, start=1):
            ws.column_dimensions[get_column_letter(c)].width = w
        ws.freeze_panes = "A3"
        _print_setup(ws, landscape=False, title_rows="1:2")
        path = out_dir / f"{name}.xlsx"
        _write_atomic(path, _workbook_bytes(wb, stamp))
        paths.append(path)
    return paths
