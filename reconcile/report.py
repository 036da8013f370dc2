"""Excel workbooks for school clerks: one per school, in Chinese, IDs masked.

Each workbook ``{school}.xlsx`` has a sheet ``待核实问题`` (one row per discrepancy, sorted
by severity, kind and roster position, header frozen, filter on) and a sheet ``说明``
explaining every kind of problem and what to do about it.

Privacy: ID numbers show only the region code (first 6), the last 4 characters and the
positions where roster and system disagree (at most a few); any other run of 14 or more
digits in any cell is masked the same way. Safety: no cell from input can run as a
formula — input strings are written as text (``data_type 's'``), and those starting with
``= + - @`` or a tab/CR also get Excel's quote prefix. Output is reproducible: the same
frame gives byte-identical files (fixed document and zip timestamps).
"""

from __future__ import annotations

import io
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
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet
from openpyxl.writer.excel import ExcelWriter

from reconcile.fields import ID_FIELDS

__all__ = [
    "mask_id",
    "mask_text",
    "write_school_workbooks",
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
    "county": "县", "household_no": "户编号", "person_no": "人编号",
    "school_status": "在校生状况", "household_type": "贫困户属性",
    "poverty_status": "脱贫状态", "exit_year": "脱贫年度",
}

# Column header -> how to compute the cell from one (sorted) discrepancy row.
HEADERS: tuple[str, ...] = (
    "序号", "严重程度", "问题类型", "名单文件", "工作表", "行号", "学生姓名", "身份证号",
    "核对系统", "系统文件", "系统工作表", "系统行号", "系统中姓名", "系统中身份证号",
    "核对项", "名单值", "系统值", "说明",
)

_INPUT_COLUMNS: dict[str, pl.DataType] = {
    "kind": pl.String, "severity": pl.String, "source": pl.String, "file": pl.String,
    "sheet": pl.String, "row": pl.Int64, "system": pl.String, "system_file": pl.String,
    "system_sheet": pl.String, "system_row": pl.Int64, "field": pl.String,
    "value": pl.String, "system_value": pl.String, "message": pl.String,
    "school": pl.String, "town": pl.String, "name": pl.String, "id_number": pl.String,
    "system_name": pl.String, "system_id": pl.String,
    "diff_positions": pl.List(pl.Int8),
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


def _put(ws: Worksheet, row: int, col: int, value: Any, *, from_input: bool = True) -> None:
    """Write one cell; strings from input are always text, never formulas."""
    cell = ws.cell(row=row, column=col)
    if value is None:
        return
    if isinstance(value, str):
        # XML turns CR into LF on reading: write what will be read back.
        text = ILLEGAL_CHARACTERS_RE.sub("", value).replace("\r\n", "\n").replace("\r", "\n")
        if from_input:
            text = mask_text(text)[:_EXCEL_MAX_CHARS]  # longer makes Excel call the file corrupt
        if text == "":
            return
        cell.value = text
        cell.data_type = "s"
        if text.startswith(_FORMULA_START) or text.lstrip().startswith(_FORMULA_START):
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
        pl.col("school").fill_null(NO_SCHOOL).alias("_school"),
        pl.col("severity")
        .replace_strict(_SEVERITY_RANK, default=len(_SEVERITY_RANK), return_dtype=pl.Int8)
        .alias("_rank"),
    )
    keys = ["_rank", "kind", "file", "sheet", "row", "system", "system_file", "system_sheet",
            "system_row", "field"]
    return frame.sort(keys, nulls_last=True, maintain_order=True)


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


def _problem_sheet(ws: Worksheet, rows: pl.DataFrame) -> None:
    ws.title = SHEET_PROBLEMS
    _style_header(ws, HEADERS)
    id_fields = set(ID_FIELDS)
    for r, d in enumerate(rows.iter_rows(named=True), start=2):
        keep = [int(p) for p in (d["diff_positions"] or []) if p is not None]
        is_id = d["field"] in id_fields
        cells = (
            r - 1,
            _label(SEVERITY_LABELS, d["severity"]),
            _label(KIND_LABELS, d["kind"]),
            d["file"],
            d["sheet"],
            d["row"],
            d["name"],
            mask_id(d["id_number"], keep),
            _label(SYSTEM_LABELS, d["system"]),
            d["system_file"],
            d["system_sheet"],
            d["system_row"],
            d["system_name"],
            mask_id(d["system_id"], keep),
            _label(FIELD_LABELS, d["field"]),
            _id_cell(d["value"], keep, d["id_number"]) if is_id else d["value"],
            _id_cell(d["system_value"], keep, d["system_id"]) if is_id else d["system_value"],
            d["message"],
        )
        for c, value in enumerate(cells, start=1):
            _put(ws, r, c, value)
    last = max(ws.max_row, 1)
    ws.freeze_panes = "A2"
    ws.auto_filter.ref = f"A1:{get_column_letter(len(HEADERS))}{last}"
    _fit_columns(ws, len(HEADERS), wrap=(len(HEADERS),))


_HELP_HEADERS = ("问题类型", "代码", "是什么问题", "怎么处理")
_HELP_NOTES = (
    "严重程度：高＝可能影响资助资格或金额，请优先核实；中＝信息有误，需要更正；低＝提示，请留意。",
    "行号是名单文件中Excel显示的行号；系统行号是系统导出文件中的行号。",
    "为保护学生隐私，身份证号只显示前6位（地区码）、后4位，以及名单与系统不一致的位置，其余用*代替。",
    "本表只供本校核实使用，请勿外传；核实后请在表中注明结果并按要求报回。",
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
    r += 1
    for note in _HELP_NOTES:
        _put(ws, r, 1, note, from_input=False)
        r += 1
    ws.freeze_panes = "A2"
    _fit_columns(ws, 2)
    for col in ("C", "D"):
        ws.column_dimensions[col].width = 60
    for (c3, c4) in ws.iter_rows(min_row=2, max_row=1 + len(KIND_LABELS), min_col=3, max_col=4):
        c3.alignment = c4.alignment = Alignment(wrap_text=True, vertical="top")


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


def write_school_workbooks(
    discrepancies: pl.DataFrame,
    out_dir: Path,
    *,
    stamp: datetime | None = None,
) -> list[Path]:
    """Write one ``{school}.xlsx`` per school (null school: ``未注明学校``) into ``out_dir``.

    Returns the paths in school-name order. ``stamp`` (naive UTC; default 1970-01-01)
    becomes the workbooks' created/modified time, so equal input gives equal bytes.
    Existing files of the same name are replaced atomically; others are left alone.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if stamp is None:
        stamp = _EPOCH
    elif stamp.tzinfo is not None:
        stamp = stamp.astimezone(timezone.utc).replace(tzinfo=None)
    if discrepancies.height == 0:
        return []
    frame = _prepare(discrepancies)
    schools = sorted(set(frame.get_column("_school").to_list()))
    used: set[str] = set()
    paths: list[Path] = []
    for school in schools:
        base = _safe_filename(school)
        name, i = base, 2
        while name.casefold() in used:
            name, i = f"{base}({i})", i + 1
        used.add(name.casefold())
        rows = frame.filter(pl.col("_school") == school)
        wb = Workbook()
        _problem_sheet(wb.active, rows)
        _help_sheet(wb.create_sheet(SHEET_HELP))
        path = out_dir / f"{name}.xlsx"
        _write_atomic(path, _workbook_bytes(wb, stamp))
        paths.append(path)
    return paths
