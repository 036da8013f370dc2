"""The vocabulary: one entry per kind, the README's table generated from it, one ID mask."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from pandera.errors import SchemaError

from reconcile import idcard
from reconcile.errors import redact
from reconcile.vocabulary import (
    DECISION_LABEL_OF,
    DECISIONS,
    FIELD_LABELS,
    ID_STATUS_TEXT,
    KINDS,
    NOTICE_BLOCKING,
    SEVERITIES,
    SEVERITY_LABELS,
    SYSTEM_LABELS,
    SYSTEMS,
    kinds_table,
    mask_id,
    mask_text,
)
from schemas import DiscrepancySchema

README = Path(__file__).resolve().parent.parent / "README.md"

ID_A = "43312420050123123X"
ID_B = "43312420050123124X"  # differs from ID_A at position 16
ID_C = "430524201003157716"
ID_D = "430524201003517716"  # ID_C with positions 12 and 13 swapped
LEGACY = "433124050123123"


@pytest.mark.parametrize(
    ("value", "keep", "expected"),
    [
        (None, (), ""),
        ("", (), ""),
        (ID_A, (), "433124********123X"),
        (ID_C, (12, 13), "430524******157716"),  # two swapped digits shown
        (ID_A, (16,), "433124********123X"),  # already visible
        (ID_A, (0, 3), "433124********123X"),
        (ID_A, (6, 7, 8, 9, 10), "433124********123X"),  # too many: none revealed
        (ID_A, (-1, 18, 99), "433124********123X"),  # out of range: ignored
        (ID_A, [6, 7, 8, 9], "4331242005****123X"),  # at most 4 revealed
        (LEGACY, (), "433124******123"),
        ("4331242005", (), "43******05"),
        ("12345", (), "12*45"),
        ("1234", (), "****"),
        ("X", (), "*"),
        ("43312420050123", (), "433124*****123"),
    ],
)
def test_mask_id(value, keep, expected):
    assert mask_id(value, keep) == expected


def test_mask_id_always_hides_birth_date_core():
    masked = mask_id(ID_A, range(18))
    assert masked == "433124********123X"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, ""),
        ("电话13812345678", "电话13812345678"),  # 11 digits: not an ID
        (f"身份证{ID_A}号", "身份证433124********123X号"),
        ("433124200501231000.0", "433124********1000.0"),
        ("４３３１２４２００５０１２３１２３ｘ", "４３３１２４********１２３ｘ"),
        ("4331 2420 0501 2312 3X", "4331 2************2 3X"),
        ("G" + ID_C, "G430524********7716"),
        ("4.30524E+17", "4.30524E+17"),
    ],
)
def test_mask_text(text, expected):
    assert mask_text(text) == expected



def test_readme_kinds_table_is_the_vocabulary():
    text = README.read_text(encoding="utf-8")
    assert kinds_table() in text, "README's Discrepancy kinds table differs from vocabulary.kinds_table()"


@pytest.mark.parametrize("code", list(KINDS))
def test_every_kind_is_complete(code):
    k = KINDS[code]
    assert k.code == code and k.severity in SEVERITIES
    assert all(t and not t.isascii() for t in (k.label, k.title, k.what, k.todo))
    assert set(k.correctable) <= set(FIELD_LABELS)


def test_labels_are_distinct_and_cover_their_codes():
    assert len({k.label for k in KINDS.values()}) == len(KINDS)
    assert set(SEVERITY_LABELS) == set(SEVERITIES)
    assert set(SYSTEM_LABELS) == set(SYSTEMS)
    assert set(idcard.STATUSES) <= set(ID_STATUS_TEXT)
    assert {DECISIONS[label] for label in DECISIONS} == set(DECISION_LABEL_OF)


def test_notice_blocking_holds_every_kind_about_doubt():
    must = {"not_found", "household_exited", "dibao_stopped", "export_incomplete", "subsidy_mismatch",
            "id_invalid", "id_mismatch", "needs_review", "duplicate_claim", "age_stage_mismatch"}
    assert must <= set(NOTICE_BLOCKING)


def test_schema_refuses_a_kind_not_in_the_vocabulary():
    row = {"kind": "not_found", "severity": "high", "source": "roster", "file": "a.xlsx", "sheet": "s", "row": 2,
           "system": None, "message": "m"}
    DiscrepancySchema.validate(pl.DataFrame([row], schema_overrides={"system": pl.String}))
    with pytest.raises(SchemaError):
        DiscrepancySchema.validate(pl.DataFrame([row | {"kind": "nope"}], schema_overrides={"system": pl.String}))


@pytest.mark.parametrize(
    "text",
    ["cast failed for 43312420050123123X", "值 4331 2420 0501 2312 3X 无效", "4.33124200501231E+17"],
)
def test_errors_and_cells_mask_the_same_way(text):
    assert redact(text) == mask_text(text)
    assert "20050123" not in redact(text) and "200501231" not in redact(text)
