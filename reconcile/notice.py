"""The public notice (公示名单): who is on it, with which stage and amount, and for how long.

A student is listed only when nothing about them is in doubt: matched to a household that
still qualifies (``review.eligible_students``), no open item of a kind that blocks the notice
(``vocabulary.NOTICE_BLOCKING``), and an ID that is whole. Stage and amount are the ones the
checks used: the stage from 学段, else 年级 and the school's name; the amount the roster's
(per year, which the subsidy check found right), else the county's standard. The notice runs
for at least five working days, counted on the configured calendar. Pure: no clock, no files.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import polars as pl

from . import policy as pol
from .config import NoticeSettings, Settings
from .vocabulary import USABLE_ID_STATUSES

__all__ = ["NOTICE_COLUMNS", "is_working_day", "add_working_days", "notice_period", "return_deadline", "notice_rows"]

NOTICE_COLUMNS: dict[str, pl.DataType] = {
    "school": pl.String(), "name": pl.String(), "id_number": pl.String(), "stage": pl.String(),
    "grade": pl.String(), "aid_item": pl.String(), "amount": pl.String(),
    "file": pl.String(), "sheet": pl.String(), "row": pl.Int64(),  # lineage: not printed
}


def is_working_day(day: dt.date, ns: NoticeSettings) -> bool:
    """Monday to Friday, less holidays, plus the make-up working days (调休)."""
    if day in ns.workdays:
        return True
    return day.weekday() < 5 and day not in ns.holidays


def add_working_days(start: dt.date, n: int, ns: NoticeSettings) -> list[dt.date]:
    """The first ``n`` working days from ``start`` (inclusive)."""
    days: list[dt.date] = []
    day = start
    while len(days) < n:
        if is_working_day(day, ns):
            days.append(day)
        day += dt.timedelta(days=1)
    return days


def notice_period(start: dt.date, ns: NoticeSettings) -> tuple[dt.date, dt.date]:
    """First and last day of the notice: ``ns.working_days`` working days from ``start``."""
    days = add_working_days(start, ns.working_days, ns)
    return days[0], days[-1]


def return_deadline(night: dt.date, ns: NoticeSettings) -> dt.date:
    """The day the clerks' workbooks are due back: ``return_within_days`` working days after the night."""
    return add_working_days(night + dt.timedelta(days=1), ns.return_within_days, ns)[-1]


def _amount_text(v: float | None) -> str | None:
    return None if v is None else f"{v:g}"


def notice_rows(eligible: pl.DataFrame, roster: pl.DataFrame, settings: Settings,
                policy: pol.Policy | None) -> pl.DataFrame:
    """The rows of the 公示名单, in ``eligible``'s order: school, name, id_number (whole, valid),
    stage and amount as checked, grade, aid item (the standard's name when the roster has none)."""
    if eligible.height == 0:
        return pl.DataFrame(schema=NOTICE_COLUMNS)
    cols = ["stage", "grade", "school", "boarding", "amount_value", "aid_item", "amount"]
    r = roster.select(
        "file", "sheet", "row", "id_status",
        *[pl.col(c) if c in roster.columns else pl.lit(None, pl.String).alias(c) for c in cols],
    ).rename({c: f"_r_{c}" for c in cols})
    rows = eligible.select("file", "sheet", "row", "school", "name", "id_number").join(
        r.cast({"row": eligible.schema["row"]}), on=["file", "sheet", "row"], how="left", maintain_order="left"
    ).filter(pl.col("id_status").is_in(list(USABLE_ID_STATUSES)))
    words: Mapping[str, str] = dict(settings.codes.get("stage", {}))
    facts: dict[tuple, tuple[str | None, str | None, str | None]] = {}
    keys = ["_r_stage", "_r_grade", "_r_school", "_r_boarding", "_r_amount_value", "_r_aid_item", "_r_amount"]
    for key in rows.select(keys).unique().iter_rows():
        stage, grade, school, boarding, value, aid_item, amount = key
        f = pol.row_facts(stage, grade, school, boarding, policy, words)
        stage_text = "/".join(sorted(f.stages)) or None
        expected = pol.expected_amount(policy, f) if policy is not None else None
        per_term = "学期" in f"{aid_item or ''}{amount or ''}"
        yearly = None
        if value is not None:
            yearly = float(value) * (policy.terms_per_year if per_term and policy is not None else 1)
        elif expected is not None:
            yearly = expected.amount
        item = aid_item
        if not item and expected is not None and policy is not None:
            labels = [s.label for s in policy.standards if s.id in expected.rules]
            item = "、".join(labels) or None
        facts[key] = (stage_text, item, _amount_text(yearly))
    table = pl.DataFrame(
        [dict(zip(keys, k)) | {"stage": v[0], "aid_item": v[1], "amount": v[2]} for k, v in facts.items()],
        schema={**{k: rows.schema[k] for k in keys}, "stage": pl.String, "aid_item": pl.String, "amount": pl.String},
    )
    out = rows.join(table, on=keys, how="left", nulls_equal=True, maintain_order="left")
    return out.select(
        "school", "name", "id_number", "stage", pl.col("_r_grade").alias("grade"), "aid_item", "amount",
        "file", "sheet", "row",
    ).cast(NOTICE_COLUMNS)
