"""Which school a roster row belongs to, when the roster does not say it in a column.

Many rosters have no 学校 column: the school is in the title row above the header
(「卫民镇中学2025年秋季学期家庭经济困难学生资助名单」, 「填报单位：卫民镇中学（盖章）」) or in the
file name (``卫民镇中心幼儿园_资助名单.xlsx``). A row's school is its column's, else the title's,
else the file name's. Schools of one name in different towns (中心小学) are different schools:
such a name is prefixed with its town (卫民镇中心小学), so every workbook and notice keyed by
school keeps them apart. Pure: sheets in, sheets out.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from pathlib import PurePosixPath

import polars as pl

from .ingest import SheetTable

__all__ = ["school_from_title", "school_from_file", "with_schools"]

# Where a school's name ends in a title: the year, the term, or the words of the list's name.
_TAIL = re.compile(
    r"(?:\d{4}\s*[-—至~]?\s*(?:\d{4})?\s*(?:年|学年)|[（(]|学年|秋季|春季|上学期|下学期|第[一二]学期|家庭经济困难|"
    r"建档立卡|学生资助(?!管理)|资助(?!管理)|受助|申请|补助|名单|花名册|明细|登记|汇总|统计)"
)
_UNIT = re.compile(r"(?:填报|申报|报送)?单位(?:名称)?\s*[:：]\s*([^\s（(:：]+)")
_SEPARATORS = re.compile(r"[_\-—\s·]+")
_SCHOOLISH = re.compile(r"(?:学校|学|校|园|中专|职中|中心|教学点|学院|分校|校区)$")


def _school_in(text: str) -> str | None:
    """The school named at the start of a title or file name, if it looks like one."""
    head = _TAIL.split(text.strip(), maxsplit=1)[0].strip(" 　:：,，.。")
    if 2 <= len(head) <= 40 and _SCHOOLISH.search(head) and not head.isascii():
        return head
    return None


def school_from_title(title: str | None) -> str | None:
    """The school a sheet's title rows name (a 填报单位 line first, else a line's start)."""
    if not title:
        return None
    for line in title.splitlines():
        m = _UNIT.search(line)
        if m and (name := _school_in(m.group(1))):
            return name
    for line in title.splitlines():
        if name := _school_in(line):
            return name
    return None


def school_from_file(rel: str) -> str | None:
    """The school a roster's file name names (``卫民镇中心幼儿园_资助名单.xlsx``)."""
    stem = PurePosixPath(rel).stem
    for part in [stem, *_SEPARATORS.split(stem)]:
        if part and (name := _school_in(part)):
            return name
    return None


def _town_in(text: str, towns: Sequence[str]) -> str | None:
    found = [t for t in towns if t and t in text]
    return max(found, key=len) if found else None


def with_schools(tables: Sequence[SheetTable]) -> list[SheetTable]:
    """Roster sheets with every row's school filled in (column, else title, else file name)
    and a name that two towns share prefixed with the town. Other sources pass through."""
    rosters = [(i, t) for i, t in enumerate(tables) if t.source == "roster"]
    if not rosters:
        return list(tables)
    filled: dict[int, pl.DataFrame] = {}
    for i, t in rosters:
        sheet_school = school_from_title(t.title) or school_from_file(t.file)
        fr = t.frame
        col = pl.col("school").str.strip_chars() if "school" in fr.columns else pl.lit(None, pl.String)
        town = pl.col("town").str.replace_all(r"\s+", "") if "town" in fr.columns else pl.lit(None, pl.String)
        filled[i] = fr.with_columns(
            pl.coalesce(pl.when(col.str.len_chars() > 0).then(col), pl.lit(sheet_school, pl.String)).alias("school"),
            town.alias("_row_town"),
        )
    towns = sorted(set().union(*(set(f["_row_town"].drop_nulls().to_list()) for f in filled.values())))
    # The town of a school in a file: one the title or file name names, else its rows' commonest.
    # One name in files of different towns is two schools; the sheets of one file are one.
    places = []
    for i, t in rosters:
        named = _town_in(f"{t.title}\n{t.file}", towns)
        places.append(filled[i].filter(pl.col("school").is_not_null()).select(
            pl.lit(t.file).alias("_file"), "school", pl.coalesce(pl.lit(named, pl.String), "_row_town").alias("_stown")))
    place = (
        pl.concat(places).group_by("_file", "school").agg(pl.col("_stown").drop_nulls().mode().sort().first())
        if places else pl.DataFrame(schema={"_file": pl.String, "school": pl.String, "_stown": pl.String})
    )
    shared = place.drop_nulls("_stown").group_by("school").agg(pl.col("_stown").n_unique().alias("_n")).filter(pl.col("_n") > 1)
    renamed = place.join(shared.select("school"), on="school", how="semi").filter(
        ~pl.col("school").str.contains(pl.col("_stown"), literal=True)
    ).with_columns((pl.col("_stown") + pl.col("school")).alias("_qualified"))
    out = list(tables)
    for i, t in rosters:
        fr = filled[i].drop("_row_town")
        mine = renamed.filter(pl.col("_file") == t.file).select("school", "_qualified")
        if mine.height:
            fr = fr.join(mine, on="school", how="left", maintain_order="left").with_columns(
                pl.coalesce("_qualified", "school").alias("school")).drop("_qualified")
        out[i] = dataclasses.replace(t, frame=fr)
    return out
