"""errors: library error text scrubbed of cell values, column and check names kept."""

from __future__ import annotations

import pytest

from reconcile.errors import redact, scrub

CASES = [
    ("polars quotes a CSV row in backticks",
     "could not parse `张三,43312420050123181X,花垣县` as dtype str at column 'name' (column number 2)",
     "could not parse `…` as dtype str at column 'name' (column number 2)"),
    ("pandera names the column and the check", "non-nullable series 'sheet' contains null values; check 'isin'",
     "non-nullable series 'sheet' contains null values; check 'isin'"),
    ("a quoted name or header text is a cell value", "value '王五' in \"李四\" or 「赵六」", "value '…' in \"…\" or 「…」"),
    ("an ID number anywhere (the one mask, vocabulary.mask_text)", "row 433124200501231815 and 4.33124200501231E+17",
     "row 433124********1815 and 4.331242*****231E+17"),
    ("a problem code with a detail is a name", "problem 'invalid_id:checksum'", "problem 'invalid_id:checksum'"),
]


@pytest.mark.parametrize("label,text,expected", CASES, ids=[c[0] for c in CASES])
def test_scrub(label, text, expected) -> None:
    assert scrub(text) == expected


def test_header_texts_given_are_kept() -> None:
    assert scrub("column '身份证号' failed", keep=frozenset({"身份证号"})) == "column '身份证号' failed"


@pytest.mark.parametrize("path,expected", [
    ("roster/徐成_433124201305279576_补报.xlsx", "roster/徐成_433124********9576_补报.xlsx"),
    ("roster/一中_2026.xlsx", "roster/一中_2026.xlsx"),
])
def test_paths_are_logged_with_ids_masked(path, expected) -> None:
    assert redact(path) == expected
