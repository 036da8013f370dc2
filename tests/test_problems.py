"""problems: every code made anywhere has its Chinese reason; values read 「reason」 detail."""

from __future__ import annotations

import pytest

from reconcile.problems import PROBLEM_SCHEMA, REASONS, message, problem, problem_frame, reason
from schemas import CHECK_FIELDS, RowProblemSchema


@pytest.mark.parametrize("code", sorted({c for _, c in CHECK_FIELDS.values()}))
def test_every_row_check_has_a_reason(code) -> None:
    assert reason(code)


@pytest.mark.parametrize("code,expected", [
    ("invalid_id:checksum", REASONS["invalid_id"]),
    ("invalid_head_id:bad_length", REASONS["invalid_head_id"]),
    ("too_large", "文件或工作表超出读取上限，未读取"),
])
def test_reason_of_a_code_with_a_detail(code, expected) -> None:
    assert reason(code) == expected


def test_file_level_problems_satisfy_the_schema() -> None:
    rows = [
        problem(None, "放错位置.csv", "file_outside_source_folder"),
        problem("roster", "roster/a.xlsx", "too_large", sheet="名单", detail="512 GiB"),
        problem("roster", "roster/b.csv", "bad_line", row=7, detail="NUL byte"),
        problem("roster", "roster/c.xlsx", "error_value", sheet="S", row=3, column="身份证号", value="#N/A"),
    ]
    frame = problem_frame(rows)
    RowProblemSchema.validate(frame)
    assert frame.schema == PROBLEM_SCHEMA
    assert frame["sheet"].to_list() == ["", "名单", "", "S"]
    assert frame["value"].to_list() == [
        message("file_outside_source_folder"), "「文件或工作表超出读取上限，未读取」512 GiB",
        "「该行无法读取，已跳过」NUL byte", "#N/A"]
