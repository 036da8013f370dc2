"""Row-problem codes and their Chinese reasons: defined once, used wherever a problem is made.

A problem row (``PROBLEM_SCHEMA``, the ``row_problems`` table) names where it is: ``file``
always; ``sheet`` the sheet name, ``''`` for a CSV or a whole-file problem (never null);
``row`` and ``column`` null for a whole-file/sheet problem; ``source`` null for an entry
outside the three source folders. ``value`` is the offending cell's text for a cell problem;
for every other problem it reads 「中文原因」 then the technical detail (English, no cell
values).
"""

from __future__ import annotations

import polars as pl

__all__ = ["PROBLEM_SCHEMA", "REASONS", "reason", "problem", "message", "problem_frame"]

PROBLEM_SCHEMA: dict[str, pl.DataType] = {
    "source": pl.String(),
    "file": pl.String(),
    "sheet": pl.String(),
    "row": pl.Int64(),
    "column": pl.String(),
    "problem": pl.String(),
    "value": pl.String(),
}

#: problem code -> the reason a clerk reads. Codes with a ``:detail`` suffix (``invalid_id:
#: checksum``) take the reason of the part before the colon.
REASONS: dict[str, str] = {
    # the inbox and its entries
    "inbox_missing": "收件箱文件夹不存在",
    "source_folder_missing": "缺少来源文件夹（roster / dibao / filing）",
    "file_outside_source_folder": "文件不在 roster、dibao、filing 三个文件夹内，未读取",
    "folder_outside_source_folders": "文件夹不在 roster、dibao、filing 三个文件夹内，未读取",
    "unsupported_file": "不支持的文件类型，未读取（只读 .xlsx、.xls、.csv）",
    "skipped_system_file": "系统或临时文件，已跳过",
    "symlink_skipped": "符号链接，未读取（只读收件箱内的普通文件）",
    "not_a_regular_file": "不是普通文件（管道、设备等），未读取",
    "file_name_not_utf8": "文件名不是 UTF-8 编码（多见于 Windows 压缩包），已按转义后的名称记录",
    # whole files and sheets
    "unreadable_file": "文件无法读取",
    "too_large": "文件或工作表超出读取上限，未读取",
    "encoding_undetected": "无法识别文件编码",
    "empty_file": "文件为空",
    "unreadable_sheet": "工作表无法读取",
    "no_header_found": "未找到表头",
    "missing_required_column": "缺少必需的列",
    "duplicate_column": "同一字段出现在多列",
    "no_data_rows": "表头下没有数据行",
    # lines and cells
    "bad_line": "该行无法读取，已跳过",
    "error_value": "单元格是错误值，按空值读取",
    "formula_without_value": "公式没有保存的结果，按空值读取",
    "value_too_long": "单元格内容过长，已截断",
    "control_characters": "单元格含控制字符，已删除",
    # row checks (schemas.sources.CHECK_FIELDS)
    "missing_name": "缺少姓名",
    "invalid_id": "身份证号无效",
    "invalid_head_id": "户主身份证号无效",
    "bad_date": "日期无法识别",
    "unknown_gender": "性别无法识别",
    "bad_amount": "金额不是数字",
    "unknown_code": "代码无法识别",
}


def reason(code: str) -> str:
    """The Chinese reason of a code (``invalid_id:checksum`` -> that of ``invalid_id``)."""
    return REASONS[code.split(":", 1)[0]]


def message(code: str, detail: str | None = None) -> str:
    """「reason」 then the technical detail: what ``value`` holds for a non-cell problem."""
    return f"「{reason(code)}」{detail or ''}"


def problem(
    source: str | None,
    file: str,
    code: str,
    *,
    sheet: str = "",
    row: int | None = None,
    column: str | None = None,
    detail: str | None = None,
    value: str | None = None,
) -> dict:
    """One problem row. ``value`` is a cell's text (cell problems); without it the row's
    value is ``message(code, detail)``."""
    return {"source": source, "file": file, "sheet": sheet or "", "row": row, "column": column,
            "problem": code, "value": value if value is not None else message(code, detail)}


def problem_frame(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=PROBLEM_SCHEMA, orient="row") if rows else pl.DataFrame(
        schema=PROBLEM_SCHEMA)
