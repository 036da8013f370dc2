"""The county's vocabulary: file headers, status codes and spellings, grades, aid items, the
error classes of truth/records.csv and the kinds of truth/expected.csv."""

from __future__ import annotations

from typing import Any

from .name_errors import NAME_KINDS
from .places import PLACE_KINDS

__all__ = [
    "ROSTER_COLUMNS", "ROSTER_HEADER_VARIANTS", "ROSTER_GROUP_HEADERS", "DIBAO_HEADERS",
    "DIBAO_HEADS_ONLY_HEADERS", "FILING_HEADERS", "FILING_STATUS_CODES", "STATUS_TO_CODE",
    "EXPECTED_KINDS", "ERROR_CODES", "INVALID_ID_KINDS", "STAGE_RANK", "ENTRY_AGE", "GRADES",
    "JUNIOR_ALT", "AID_ITEM", "UNIVERSITIES", "HOUSEHOLD_TYPE_CODES", "POVERTY_SPELLINGS",
    "DIBAO_SPELLINGS",
]


ROSTER_COLUMNS: tuple[str, ...] = (
    "seq", "school", "stage", "grade", "class_name", "name", "gender", "ethnicity",
    "birth_date", "id_number", "student_no", "boarding", "head_name", "head_id",
    "relation", "town", "village", "aid_item", "amount", "phone",
)


# Header spellings used in roster files (canonical field -> the spellings that occur).
# The guardian word (户主/监护人/家长) is chosen once per file for head_name/head_id/relation.
ROSTER_HEADER_VARIANTS: dict[str, tuple[str, ...]] = {
    "seq": ("序号", "编号"),
    "school": ("学校名称", "学校", "就读学校"),
    "stage": ("学段", "学习阶段"),
    "grade": ("年级", "就读年级"),
    "class_name": ("班级", "班别"),
    "name": ("学生姓名", "姓名", "受助学生姓名"),
    "gender": ("性别",),
    "ethnicity": ("民族",),
    "birth_date": ("出生日期", "出生年月日"),
    "id_number": ("身份证号", "身份证件号码", "公民身份号码", "学生身份证号"),
    "student_no": ("学籍号", "全国学籍号"),
    "boarding": ("是否寄宿", "寄宿生"),
    "head_name": ("户主姓名", "监护人姓名", "家长姓名"),
    "head_id": ("户主身份证号", "户主身份证件号码", "监护人身份证号", "家长身份证号"),
    "relation": ("与户主关系", "与监护人关系"),
    "town": ("乡镇", "所在乡镇", "乡镇(街道)"),
    "village": ("村", "村(社区)", "所在村"),
    "aid_item": ("资助项目", "资助类别"),
    "amount": ("资助金额", "资助金额(元)", "金额"),
    "phone": ("联系电话", "手机号码"),
}


# Two-row header with a group cell: the group text (merged across the guardian columns) and
# the sub-headers below it. Only head_name/head_id/relation are grouped; the student's own
# name and ID headers in such files are never the bare 姓名/身份证号.
ROSTER_GROUP_HEADERS: dict[str, Any] = {
    "groups": ("户主信息", "监护人信息", "家长信息"),
    "sub": {"head_name": ("姓名",), "head_id": ("身份证号", "身份证件号码"), "relation": ("与户主关系", "关系")},
    "bands": ("基本信息", "学生信息", "家庭信息", "资助信息"),
}


DIBAO_HEADERS: tuple[str, ...] = (
    "乡镇(街道)", "村(社区)", "户主姓名", "户主身份证号", "保障人数", "成员姓名", "成员身份证号",
    "与户主关系", "低保类别", "月保障金额", "批准日期", "状态",
)


DIBAO_HEADS_ONLY_HEADERS: tuple[str, ...] = (
    "乡镇(街道)", "村(社区)", "户主姓名", "户主身份证号", "保障人数", "低保类别", "月保障金额",
    "批准日期", "状态",
)


FILING_HEADERS: tuple[str, ...] = (
    "县", "乡镇", "行政村", "户编号", "户主姓名", "人编号", "姓名", "证件号码", "与户主关系", "性别",
    "在校生状况", "贫困户属性", "脱贫状态", "脱贫年度",
)


FILING_STATUS_CODES: dict[str, str] = {
    "0": "未脱贫", "1": "已脱贫(享受政策)", "3": "返贫", "4": "已脱贫(不再享受政策)",
}


STATUS_TO_CODE = {v: k for k, v in FILING_STATUS_CODES.items()}


EXPECTED_KINDS: dict[str, str] = {
    "not_found": "student's household is in no system export",
    "export_incomplete": "student's household is registered, but only in the part of an export "
    "that was cut short (truth/notes.json); reported instead of not_found",
    "id_invalid": "roster student ID cell invalid or damaged (checksum, length, number 000-tail, "
    "sci text, missing); cosmetic faults (spaces, full-width, apostrophe, lower x) are not",
    "duplicate_claim": "same student on two roster rows (both rows)",
    "id_fact_conflict": "roster birth date or gender column contradicts the row's ID (the true one, or a "
    "family member's typed into the row: id_family)",
    "household_exited": "found in filing as 已脱贫(不再享受政策) and not 在保 in dibao",
    "dibao_stopped": "found in dibao as 停保/注销 and not qualifying in filing",
    "subsidy_mismatch": "roster amount differs from the county policy (DIR/config/policy) for the row's "
    "stage, year, boarding and household category, where the row tells them all",
    "age_stage_mismatch": "roster grade 3+ years away from the age of the row's ID: a 小学 grade moved (the row's "
    "own usable ID), or a family member's ID typed into the row (id_family)",
    "missed_eligible": "school-age child (age on Sept 1, 在校生状况) of a qualifying household, visible with a "
    "usable ID in a system export, on no roster; the row is one of the child's system records",
}


# errors column codes: <field>_<kind>; field in name, id, head_name, head_id
_ID_KINDS = ("digit", "swap", "lower_x", "fullwidth", "space", "apostrophe", "legacy15",
             "number", "sci", "missing", "drop", "family")


ERROR_CODES: tuple[str, ...] = (
    *(f"name_{k}" for k in NAME_KINDS),
    *(f"id_{k}" for k in _ID_KINDS),
    *(f"head_name_{k}" for k in NAME_KINDS),
    *(f"head_id_{k}" for k in _ID_KINDS),
    "birth_conflict", "gender_conflict", "duplicate", "amount_wrong", "grade_age",
    *PLACE_KINDS,
)


INVALID_ID_KINDS = ("id_digit", "id_swap", "id_number", "id_sci", "id_missing", "id_drop")


STAGE_RANK = {"学前": 0, "小学": 1, "初中": 2, "高中": 3, "中职": 4, "本科": 5, "大专": 6}


ENTRY_AGE = {"学前": 3, "小学": 6, "初中": 12, "高中": 15, "中职": 15, "本科": 18, "大专": 18}


GRADES: dict[str, tuple[str, ...]] = {
    "学前": ("小班", "中班", "大班"),
    "小学": ("一年级", "二年级", "三年级", "四年级", "五年级", "六年级"),
    "初中": ("七年级", "八年级", "九年级"),
    "高中": ("高一", "高二", "高三"),
    "中职": ("一年级", "二年级", "三年级"),
    "本科": ("大一", "大二", "大三", "大四"),
    "大专": ("大一", "大二", "大三"),
}


JUNIOR_ALT = ("初一", "初二", "初三")


AID_ITEM = {
    "学前": "学前教育资助", "小学": "义务教育生活补助", "初中": "义务教育生活补助",
    "高中": "普通高中国家助学金", "中职": "中职国家助学金", "本科": "雨露计划", "大专": "雨露计划",
}


UNIVERSITIES = (
    ("吉首大学", "本科"), ("湖南师范大学", "本科"), ("湘潭大学", "本科"), ("湖南农业大学", "本科"),
    ("长沙民政职业技术学院", "大专"), ("怀化职业技术学院", "大专"), ("湘西民族职业技术学院", "大专"),
)


HOUSEHOLD_TYPE_CODES = {"一般贫困户": "01", "低保贫困户": "02", "特困供养贫困户": "03", "低保户": "04", "五保户": "05"}


POVERTY_SPELLINGS = {
    "已脱贫(不再享受政策)": ("已脱贫(不再享受政策)", "已脱贫（不再享受政策）", "已脱贫不再享受政策", "脱贫不享受政策"),
    "已脱贫(享受政策)": ("已脱贫(享受政策)", "已脱贫（享受政策）", "已脱贫享受政策"),
}


DIBAO_SPELLINGS = {"在保": ("在保", "在保", "正常"), "停保": ("停保", "暂停", "已停保"), "注销": ("注销", "退保", "已注销")}
