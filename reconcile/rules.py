"""Discrepancy rules: what the clerk must be told, one row per roster record and kind.

Each rule is a small function from the normalised records and links to rows of the
discrepancy table, with a Chinese message a clerk understands. Kinds are stable codes
(documented in the README): not_found, needs_review, id_mismatch, name_mismatch,
id_invalid, household_exited, dibao_stopped, duplicate_claim, id_fact_conflict.
"""

from __future__ import annotations

from typing import Callable, Mapping

import polars as pl

from .config import Settings
from .idcard import digit_diff_positions

__all__ = ["KINDS", "SEVERITY", "find_discrepancies", "DISCREPANCY_COLUMNS"]

SYSTEM_LABEL = {"dibao": "低保", "filing": "建档立卡"}
USABLE = ["valid", "legacy15"]

KINDS: dict[str, str] = {
    "not_found": "两个系统中均未找到该学生",
    "needs_review": "系统中有疑似记录，需人工确认",
    "id_mismatch": "按姓名和出生日期找到，但身份证号不一致",
    "name_mismatch": "按身份证号找到，但姓名不一致",
    "id_invalid": "名单中的身份证号无效或已损坏",
    "household_exited": "家庭已脱贫且不再享受政策",
    "dibao_stopped": "家庭低保已停保或注销",
    "duplicate_claim": "同一学生被重复申报",
    "id_fact_conflict": "出生日期或性别与身份证号不符",
}
SEVERITY: dict[str, str] = {
    "not_found": "high",
    "household_exited": "high",
    "dibao_stopped": "high",
    "duplicate_claim": "high",
    "id_mismatch": "medium",
    "id_invalid": "medium",
    "id_fact_conflict": "medium",
    "needs_review": "medium",
    "name_mismatch": "low",
}

DISCREPANCY_COLUMNS: dict[str, pl.DataType] = {
    "kind": pl.String(), "severity": pl.String(), "source": pl.String(), "file": pl.String(),
    "sheet": pl.String(), "row": pl.Int64(), "system": pl.String(), "system_file": pl.String(),
    "system_sheet": pl.String(), "system_row": pl.Int64(), "field": pl.String(), "value": pl.String(),
    "system_value": pl.String(), "message": pl.String(), "school": pl.String(), "town": pl.String(),
    "name": pl.String(), "id_number": pl.String(), "system_name": pl.String(), "system_id": pl.String(),
    "diff_positions": pl.List(pl.Int8()),
}

ID_STATUS_TEXT = {
    "missing": "名单中没有填写身份证号",
    "student_no": "名单中身份证号一栏为空，已按学籍号（G+身份证号）补齐，请在名单中补填身份证号",
    "checksum": "身份证号校验位不正确（18位中有数字录错或顺序颠倒）",
    "bad_date": "身份证号中的出生日期不是有效日期",
    "bad_length": "身份证号位数不对（应为18位）",
    "bad_chars": "身份证号含有非法字符",
    "number_damaged": "身份证号被 Excel 存成了数字，最后三位已变成 000，无法从表格中恢复",
    "sci_damaged": "身份证号被 Excel 显示为科学计数法（如 4.33124E+17），大部分数字已丢失",
}
NAME_LEVEL_TEXT = {
    "pinyin": "读音相同，可能是同音字录入错误",
    "wildcard": "系统中含有无法显示的生僻字（显示为?）",
    "close": "只差一个字，可能是录入错误",
    "else": "姓名差别较大，请核实是否为同一人",
}


def _roster_base(r: pl.DataFrame) -> pl.DataFrame:
    return r.select(
        pl.col("rec").alias("roster_rec"), "source", "file", "sheet", "row",
        pl.col("school"), pl.col("town"), pl.col("name"),
        pl.coalesce("id_norm", "id_number").alias("id_number"),
    )


def _links(matches: pl.DataFrame, systems: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
    """Links with the system record's lineage and the fields the rules read."""
    parts = []
    for name, s in systems.items():
        cols = s.select(
            pl.col("rec").alias("system_rec"),
            pl.col("file").alias("system_file"),
            pl.col("sheet").alias("system_sheet"),
            pl.col("row").alias("system_row"),
            pl.col("name").alias("system_name"),
            pl.col("name_norm").alias("s_name_norm"),
            pl.col("id_norm").alias("system_id"),
            pl.col("id_status").alias("s_id_status"),
            (pl.col("poverty_status_norm") if "poverty_status_norm" in s.columns else pl.lit(None, pl.String)).alias("poverty_status"),
            (pl.col("exit_year") if "exit_year" in s.columns else pl.lit(None, pl.String)).alias("exit_year"),
            (pl.col("status_norm") if "status_norm" in s.columns else pl.lit(None, pl.String)).alias("dibao_status"),
            (pl.col("approved_date") if "approved_date" in s.columns else pl.lit(None, pl.String)).alias("approved_date"),
        )
        parts.append(matches.filter(pl.col("system") == name).join(cols, on="system_rec", how="left"))
    if not parts:
        return matches
    return pl.concat(parts, how="diagonal_relaxed")


def _finish(df: pl.DataFrame, kind: str) -> pl.DataFrame:
    df = df.with_columns(pl.lit(kind).alias("kind"), pl.lit(SEVERITY[kind]).alias("severity"))
    for col, dtype in DISCREPANCY_COLUMNS.items():
        if col not in df.columns:
            df = df.with_columns(pl.lit(None, dtype=dtype).alias(col))
    return df.select(list(DISCREPANCY_COLUMNS)).cast(DISCREPANCY_COLUMNS)


def _name_fields() -> list[pl.Expr]:
    return [pl.lit("name").alias("field"), pl.col("name").alias("value"), pl.col("system_name").alias("system_value")]


def _sys_label() -> pl.Expr:
    return pl.col("system").replace_strict(SYSTEM_LABEL, default=pl.col("system"))


def not_found(r: pl.DataFrame, links: pl.DataFrame, s: Settings) -> pl.DataFrame:
    found = links.select("roster_rec").unique()
    out = _roster_base(r).join(found, on="roster_rec", how="anti")
    return _finish(
        out.with_columns(
            pl.lit("低保和建档立卡两个系统中都没有找到该学生（已按身份证号、姓名与出生日期、户主等方式查找）。"
                   "请核实学生姓名和身份证号，或确认其家庭是否在低保/建档立卡范围内。").alias("message")
        ),
        "not_found",
    )


def needs_review(r: pl.DataFrame, links: pl.DataFrame, s: Settings) -> pl.DataFrame:
    sure = links.filter(pl.col("status") == "matched").select("roster_rec").unique()
    maybe = links.filter(pl.col("status") == "review").join(sure, on="roster_rec", how="anti")
    out = _roster_base(r).join(maybe, on="roster_rec", how="inner")
    return _finish(
        out.with_columns(
            *_name_fields(),
            pl.format(
                "在{}系统中找到疑似记录（姓名「{}」，匹配可能性 {}%），证据不足以自动确认，请人工核对是否为同一人。",
                _sys_label(), pl.col("system_name").fill_null(""), (pl.col("score") * 100).round(0).cast(pl.Int32),
            ).alias("message"),
        ),
        "needs_review",
    )


def id_mismatch(r: pl.DataFrame, links: pl.DataFrame, s: Settings) -> pl.DataFrame:
    base = _roster_base(r).join(r.select(pl.col("rec").alias("roster_rec"), "id_status", "id_known"), on="roster_rec")
    out = base.join(links, on="roster_rec", how="inner").filter(
        (pl.col("lv_id") != "exact") & pl.col("id_number").is_not_null() & pl.col("system_id").is_not_null()
        & (pl.col("id_status") != "missing") & (pl.col("via") != "household_head")
    )
    diff = digit_diff_positions(pl.col("id_number"), pl.col("system_id"))
    positions = (
        pl.when(diff.is_not_null()).then(diff)
        .otherwise(pl.int_ranges(pl.col("id_known").fill_null(0).cast(pl.Int8), 18, dtype=pl.Int8))
    )
    out = out.with_columns(positions.alias("diff_positions"))
    pos_text = pl.col("diff_positions").list.eval((pl.element() + 1).cast(pl.String)).list.join("、")
    side = (
        pl.when(pl.col("id_status").is_in(["number_damaged", "sci_damaged"]))
        .then(pl.lit("名单中的号码已被 Excel 损坏，请按系统中的号码核实更正。"))
        .when(~pl.col("id_status").is_in(USABLE) & pl.col("s_id_status").is_in(USABLE))
        .then(pl.lit("名单中的号码校验不通过，很可能是名单录错。"))
        .when(pl.col("id_status").is_in(USABLE) & ~pl.col("s_id_status").is_in(USABLE))
        .then(pl.lit("系统中的号码校验不通过，很可能是系统录错，请联系系统主管部门核实。"))
        .otherwise(pl.lit("两边号码都能通过校验，请对照户口簿核实。"))
    )
    how = pl.when(pl.col("lv_id") == "swap").then(pl.lit("（相邻两位顺序颠倒）")).otherwise(pl.lit(""))
    return _finish(
        out.with_columns(
            pl.lit("id_number").alias("field"),
            pl.col("id_number").alias("value"),
            pl.col("system_id").alias("system_value"),
            pl.format("在{}系统中按姓名和出生日期等找到该学生，但身份证号第{}位不同{}。{}", _sys_label(), pos_text, how, side).alias("message"),
        ),
        "id_mismatch",
    )


def name_mismatch(r: pl.DataFrame, links: pl.DataFrame, s: Settings) -> pl.DataFrame:
    out = _roster_base(r).join(r.select(pl.col("rec").alias("roster_rec"), "name_norm"), on="roster_rec").join(
        links, on="roster_rec", how="inner"
    ).filter(
        pl.col("lv_id").is_in(["exact", "one_digit", "swap", "prefix"]) & (pl.col("lv_name") != "exact")
        & (pl.col("via") != "household_head")
    )
    return _finish(
        out.with_columns(
            *_name_fields(),
            pl.format(
                "在{}系统中按身份证号找到该学生，但姓名不同：名单为「{}」，系统中为「{}」，{}。",
                _sys_label(), pl.col("name").fill_null(""), pl.col("system_name").fill_null(""),
                pl.col("lv_name").replace_strict(NAME_LEVEL_TEXT, default="请核实"),
            ).alias("message"),
        ),
        "name_mismatch",
    )


def id_invalid(r: pl.DataFrame, links: pl.DataFrame, s: Settings) -> pl.DataFrame:
    # An empty ID cell filled from the student number (G + ID) is still a gap in the roster.
    from_student_no = pl.col("id_number_kind") == "student_no"
    out = (
        _roster_base(r)
        .join(r.select(pl.col("rec").alias("roster_rec"), "id_status", "id_number_kind"), on="roster_rec")
        .filter(~pl.col("id_status").is_in(USABLE) | from_student_no)
        .with_columns(pl.when(from_student_no).then(pl.lit("student_no")).otherwise(pl.col("id_status")).alias("id_status"))
    )
    found = links.filter(pl.col("status") == "matched").sort("roster_rec", "system").unique("roster_rec", keep="first")
    out = out.join(found.select("roster_rec", "system", "system_file", "system_sheet", "system_row", "system_name", "system_id"), on="roster_rec", how="left")
    hint = pl.when(pl.col("system_id").is_not_null()).then(
        pl.format("{}系统中登记的号码可供核对。", _sys_label())
    ).otherwise(pl.lit("请对照户口簿或身份证核实后更正。"))
    return _finish(
        out.with_columns(
            pl.lit("id_number").alias("field"),
            pl.col("id_number").alias("value"),
            pl.col("system_id").alias("system_value"),
            pl.format("{}。{}", pl.col("id_status").replace_strict(ID_STATUS_TEXT, default="身份证号无效"), hint).alias("message"),
        ),
        "id_invalid",
    )


def _eligibility(links: pl.DataFrame, s: Settings) -> pl.DataFrame:
    """Per roster record: is any linked household still qualifying, and why not."""
    q = links.with_columns(
        (
            ((pl.col("system") == "filing") & pl.col("poverty_status").is_in(list(s.qualifying_poverty)))
            | ((pl.col("system") == "dibao") & pl.col("dibao_status").is_in(list(s.qualifying_dibao)))
        ).alias("qualifies")
    )
    return q.group_by("roster_rec").agg(pl.col("qualifies").any().alias("any_qualifies"))


def household_exited(r: pl.DataFrame, links: pl.DataFrame, s: Settings) -> pl.DataFrame:
    ok = _eligibility(links, s).filter("any_qualifies").select("roster_rec")
    exited = links.filter(
        (pl.col("system") == "filing") & pl.col("poverty_status").is_not_null()
        & ~pl.col("poverty_status").is_in(list(s.qualifying_poverty))
    ).join(ok, on="roster_rec", how="anti").unique("roster_rec", keep="first", maintain_order=True)
    out = _roster_base(r).join(exited, on="roster_rec", how="inner")
    year = pl.when(pl.col("exit_year").is_not_null()).then(pl.format("（脱贫年度 {}）", pl.col("exit_year"))).otherwise(pl.lit(""))
    return _finish(
        out.with_columns(
            pl.lit("poverty_status").alias("field"),
            pl.col("poverty_status").alias("system_value"),
            pl.format(
                "该学生在建档立卡系统中的家庭状态为「{}」{}，低保系统中也没有在保记录，已不属于资助对象，请核实。",
                pl.col("poverty_status"), year,
            ).alias("message"),
        ),
        "household_exited",
    )


def dibao_stopped(r: pl.DataFrame, links: pl.DataFrame, s: Settings) -> pl.DataFrame:
    ok = _eligibility(links, s).filter("any_qualifies").select("roster_rec")
    stopped = links.filter(
        (pl.col("system") == "dibao") & pl.col("dibao_status").is_not_null()
        & ~pl.col("dibao_status").is_in(list(s.qualifying_dibao))
    ).join(ok, on="roster_rec", how="anti").unique("roster_rec", keep="first", maintain_order=True)
    out = _roster_base(r).join(stopped, on="roster_rec", how="inner")
    return _finish(
        out.with_columns(
            pl.lit("status").alias("field"),
            pl.col("dibao_status").alias("system_value"),
            pl.format(
                "该学生家庭的低保状态为「{}」，建档立卡系统中也没有仍享受政策的记录，已不属于资助对象，请核实。",
                pl.col("dibao_status"),
            ).alias("message"),
        ),
        "dibao_stopped",
    )


def duplicate_claim(r: pl.DataFrame, links: pl.DataFrame, s: Settings) -> pl.DataFrame:
    """The same student on two roster rows: same ID, or the same system person, or same name and birth."""
    sys_id = (
        links.filter((pl.col("status") == "matched") & pl.col("s_id_status").is_in(USABLE) & (pl.col("via") != "household_head"))
        .sort(["roster_rec", "system"])
        .group_by("roster_rec", maintain_order=True)
        .agg(pl.col("system_id").first().alias("_sid"))
    )
    who = r.select(
        pl.col("rec").alias("roster_rec"),
        pl.when(pl.col("id_status").is_in(USABLE)).then(pl.col("id_norm")).alias("_rid"),
        pl.concat_str([pl.col("name_norm"), pl.coalesce("birth", "id_birth").cast(pl.String)], separator="|").alias("_nb"),
    ).join(sys_id, on="roster_rec", how="left").with_columns(
        pl.coalesce("_sid", "_rid", "_nb").alias("_who")
    ).filter(pl.col("_who").is_not_null())
    counts = who.group_by("_who").agg(pl.len().alias("n")).filter(pl.col("n") > 1)
    dup = who.join(counts, on="_who")
    base = _roster_base(r).join(dup.select("roster_rec", "_who", "n"), on="roster_rec")
    where = (
        base.sort(["file", "sheet", "row"])
        .with_columns(pl.format("{}第{}行", pl.col("file"), pl.col("row")).alias("_at"))
        .group_by("_who")
        .agg(pl.col("_at").str.join("；").alias("_all"))
    )
    out = base.join(where, on="_who")
    return _finish(
        out.with_columns(
            pl.format("同一学生在名单中出现 {} 次（{}），可能重复申报，请核实只保留一条。", pl.col("n"), pl.col("_all")).alias("message")
        ),
        "duplicate_claim",
    )


def id_fact_conflict(r: pl.DataFrame, links: pl.DataFrame, s: Settings) -> pl.DataFrame:
    base = _roster_base(r).join(
        r.select(pl.col("rec").alias("roster_rec"), "id_status", "birth", "id_birth", "gender_norm", "id_gender", "birth_date", "gender"),
        on="roster_rec",
    ).filter(pl.col("id_status").is_in(USABLE))
    births = base.filter(pl.col("birth").is_not_null() & pl.col("id_birth").is_not_null() & (pl.col("birth") != pl.col("id_birth"))).with_columns(
        pl.lit("birth_date").alias("field"),
        pl.col("birth_date").alias("value"),
        pl.col("id_birth").cast(pl.String).alias("system_value"),
        pl.format("名单填写的出生日期 {} 与身份证号中的出生日期 {} 不一致，请核实。", pl.col("birth").cast(pl.String), pl.col("id_birth").cast(pl.String)).alias("message"),
    )
    genders = base.filter(pl.col("gender_norm").is_not_null() & pl.col("id_gender").is_not_null() & (pl.col("gender_norm") != pl.col("id_gender"))).with_columns(
        pl.lit("gender").alias("field"),
        pl.col("gender").alias("value"),
        pl.col("id_gender").alias("system_value"),
        pl.format("名单填写的性别「{}」与身份证号（第17位）表示的性别「{}」不一致，请核实。", pl.col("gender_norm"), pl.col("id_gender")).alias("message"),
    )
    return _finish(pl.concat([births, genders], how="diagonal_relaxed") if births.height or genders.height else births, "id_fact_conflict")


RULES: tuple[Callable[[pl.DataFrame, pl.DataFrame, Settings], pl.DataFrame], ...] = (
    not_found, needs_review, id_mismatch, name_mismatch, id_invalid,
    household_exited, dibao_stopped, duplicate_claim, id_fact_conflict,
)


def find_discrepancies(
    roster: pl.DataFrame, systems: Mapping[str, pl.DataFrame], matches: pl.DataFrame, settings: Settings
) -> pl.DataFrame:
    """Every rule over the roster and its links, in a stable order."""
    links = _links(matches, systems)
    frames = [rule(roster, links, settings) for rule in RULES]
    out = pl.concat(frames, how="vertical_relaxed")
    return out.sort(["file", "sheet", "row", "kind", "system"], nulls_last=True, maintain_order=True)
