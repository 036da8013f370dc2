"""Which school a roster row belongs to: column, title row, file name; one name in two towns."""

from __future__ import annotations

import dataclasses

import pytest

from conftest import sheet
from reconcile.schools import school_from_file, school_from_title, with_schools


@pytest.mark.parametrize(
    ("title", "school"),
    [
        ("卫民镇中学2025年秋季学期家庭经济困难学生资助名单", "卫民镇中学"),
        ("xx学校家庭经济困难学生资助名单", "xx学校"),
        ("花垣县学生资助管理中心2025年秋季学期家庭经济困难学生资助名单", "花垣县学生资助管理中心"),
        ("资助名单\n填报单位：卫民镇中心幼儿园（盖章）    填报日期：2025年9月12日", "卫民镇中心幼儿园"),
        ("2025年秋季学期资助名单", None),
        ("基本信息 学生信息 家庭信息", None),
        ("", None),
    ],
)
def test_school_from_title(title, school):
    assert school_from_title(title) == school


@pytest.mark.parametrize(
    ("file", "school"),
    [
        ("roster/卫民镇中心幼儿园_资助名单.xlsx", "卫民镇中心幼儿园"),
        ("roster/2025秋/龙潭镇中学-名单.xls", "龙潭镇中学"),
        ("roster/资助名单.xlsx", None),
        ("roster/list.csv", None),
    ],
)
def test_school_from_file(file, school):
    assert school_from_file(file) == school


def _roster(file: str, rows: list[dict], title: str = ""):
    return dataclasses.replace(sheet("roster", rows, file=file), title=title)


def test_column_then_title_then_file_name():
    t = _roster("roster/龙潭镇中学_名单.xlsx", [{"name": "甲", "school": "一中"}, {"name": "乙", "school": None}],
                title="龙潭镇示范学校家庭经济困难学生资助名单")
    [out] = with_schools([t])
    assert out.frame["school"].to_list() == ["一中", "龙潭镇示范学校"]
    [out] = with_schools([dataclasses.replace(t, title="")])
    assert out.frame["school"].to_list() == ["一中", "龙潭镇中学"]


def test_one_name_in_two_towns_is_two_schools():
    a = _roster("roster/a.xlsx", [{"name": "甲", "school": "中心小学", "town": "卫民镇"}])
    b = _roster("roster/b.xlsx", [{"name": "乙", "school": "中心小学", "town": "结补镇"}])
    c = _roster("roster/c.xlsx", [{"name": "丙", "school": "县一中", "town": "卫民镇"}])
    d = _roster("roster/c.xlsx", [{"name": "丁", "school": "县一中", "town": "结补镇"}, {"name": "戊", "school": "县一中",
                                                                                       "town": "卫民镇"}])
    out = with_schools([a, b, c, dataclasses.replace(d, sheet="Sheet2")])
    assert [o.frame["school"].to_list() for o in out] == [["卫民镇中心小学"], ["结补镇中心小学"], ["县一中"], ["县一中", "县一中"]]
