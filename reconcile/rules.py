"""Discrepancy rules: what the clerk must be told, one row per roster record and kind.

Each rule is a small function from the normalised records and links to rows of the
discrepancy table, with a Chinese message a clerk understands. Kinds, their severity and
wording are ``reconcile.vocabulary.KINDS``: not_found, needs_review, id_mismatch, name_mismatch,
id_invalid, household_exited, dibao_stopped, duplicate_claim, id_fact_conflict; and, with a
``RuleContext`` (reference date, county policy, incomplete exports; issue 7): subsidy_mismatch,
age_stage_mismatch, export_incomplete (instead of not_found), missed_eligible (a system record
on no roster: its lineage points at the system row).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable, Mapping

import polars as pl

from . import policy as pol
from .comparisons import level_labels
from .config import Settings
from .idcard import check_char_expr, digit_diff_positions
from .memory import compact
from .vocabulary import ID_STATUS_TEXT, KINDS as VOCAB, SYSTEM_LABELS, USABLE_ID_STATUSES

__all__ = ["find_discrepancies", "DISCREPANCY_COLUMNS", "RuleContext", "roster_places", "qualifies_expr",
           "claim_identities"]

USABLE = list(USABLE_ID_STATUSES)
NAME_LEVEL_TEXT = level_labels("name")  # how far apart two names are, as a clerk is told

DISCREPANCY_COLUMNS: dict[str, pl.DataType] = {
    "kind": pl.String(), "severity": pl.String(), "source": pl.String(), "file": pl.String(),
    "sheet": pl.String(), "row": pl.Int64(), "system": pl.String(), "system_file": pl.String(),
    "system_sheet": pl.String(), "system_row": pl.Int64(), "field": pl.String(), "value": pl.String(),
    "system_value": pl.String(), "message": pl.String(), "school": pl.String(), "town": pl.String(),
    "village": pl.String(), "name": pl.String(), "id_number": pl.String(), "system_name": pl.String(), "system_id": pl.String(),
    "diff_positions": pl.List(pl.Int8()),
}


def _roster_base(r: pl.DataFrame) -> pl.DataFrame:
    return r.select(
        pl.col("rec").alias("roster_rec"), "source", "file", "sheet", "row",
        pl.col("school"), _town_name(r), (pl.col("village_name") if "village_name" in r.columns else pl.col("village")).alias("village"), pl.col("name"),
        pl.coalesce("id_norm", "id_number").alias("id_number"),
    )


def _town_name(df: pl.DataFrame) -> pl.Expr:
    """``town``: the night's name for the row's town key (reconcile.places), so every
    spelling of one town lands in one town workbook; the text as written without one."""
    return (pl.col("town_name") if "town_name" in df.columns else pl.col("town")).alias("town")


# Matches columns no rule reads: the long `why` text above all (a filter copies a string
# column's bytes, and `_links` filters per system), the weight and the roster's lineage.
_UNREAD = ("why", "weight", "roster_file", "roster_sheet", "roster_row")


def _links(matches: pl.DataFrame, systems: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
    """Links with the system record's lineage and the fields the rules read."""
    matches = matches.drop(_UNREAD, strict=False)
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
            (pl.col("household_type") if "household_type" in s.columns else pl.lit(None, pl.String)).alias("household_type"),
            (pl.col("dibao_category") if "dibao_category" in s.columns else pl.lit(None, pl.String)).alias("dibao_category"),
            pl.col("town_key").alias("system_town_key"),
            pl.col("village_key").alias("system_village_key"),
            pl.col("town_name").alias("system_town"),
            pl.col("village_name").alias("system_village"),
            pl.col("household").alias("system_household"),
            pl.when(pl.col("id_status").is_in(USABLE)).then(pl.col("id_birth")).alias("system_birth"),
        )
        # the lineage the links already carry is theirs (as a join would keep it)
        cols = cols.drop([c for c in cols.columns if c in matches.columns and c != "system_rec"])
        parts.append(matches.filter(pl.col("system") == name).join(cols, on="system_rec", how="left"))
    if not parts:
        return matches
    return pl.concat(parts, how="diagonal_relaxed")


def _finish(df: pl.DataFrame | pl.LazyFrame, kind: str) -> pl.DataFrame:
    """The rule's rows in the discrepancy shape. A rule may hand over a lazy query: only the
    columns kept here are then ever built (a roster joined with its links is 45 wide)."""
    lf = df.lazy().with_columns(pl.lit(kind).alias("kind"), pl.lit(VOCAB[kind].severity).alias("severity"))
    have = set(lf.collect_schema().names())
    lf = lf.with_columns(pl.lit(None, dtype=t).alias(c) for c, t in DISCREPANCY_COLUMNS.items() if c not in have)
    # Compact: the rule's strings are views into the wide frames it joined and filtered,
    # which would otherwise stay alive as long as the discrepancies do.
    return compact(lf.select(list(DISCREPANCY_COLUMNS)).cast(DISCREPANCY_COLUMNS).collect())


def _name_fields() -> list[pl.Expr]:
    return [pl.lit("name").alias("field"), pl.col("name").alias("value"), pl.col("system_name").alias("system_value")]


def _sys_label() -> pl.Expr:
    return pl.col("system").replace_strict(dict(SYSTEM_LABELS), default=pl.col("system"))


def not_found(n: _Night) -> pl.DataFrame:
    r, links, s, ctx = n.r, n.links, n.s, n.ctx
    found = links.select("roster_rec").unique()
    out = _roster_base(r).join(found, on="roster_rec", how="anti")
    return _finish(
        out.with_columns(
            pl.lit(VOCAB["not_found"].texts["message"]).alias("message")
        ),
        "not_found",
    )


def needs_review(n: _Night) -> pl.DataFrame:
    r, links, s, ctx = n.r, n.links, n.s, n.ctx
    sure = links.select("roster_rec", "status").filter(pl.col("status") == "matched").select("roster_rec").unique()
    maybe = links.lazy().filter(pl.col("status") == "review").join(sure.lazy(), on="roster_rec", how="anti",
                                                                   maintain_order="left")
    out = _roster_base(r).lazy().join(maybe, on="roster_rec", how="inner", maintain_order="left")
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


def id_mismatch(n: _Night) -> pl.DataFrame:
    r, links, s, ctx = n.r, n.links, n.s, n.ctx
    base = _roster_base(r).lazy().join(r.select(pl.col("rec").alias("roster_rec"), "id_status", "id_known").lazy(),
                                       on="roster_rec", maintain_order="left")
    out = base.join(links.lazy(), on="roster_rec", how="inner", maintain_order="left").filter(
        # (no ID level: a family member's number on one side, both numbers valid, still differs)
        (pl.col("lv_id") != "exact").fill_null(
            pl.col("id_status").is_in(USABLE) & pl.col("s_id_status").is_in(USABLE) & (pl.col("id_number") != pl.col("system_id")))
        & pl.col("id_number").is_not_null() & pl.col("system_id").is_not_null()
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


def name_mismatch(n: _Night) -> pl.DataFrame:
    r, links, s, ctx = n.r, n.links, n.s, n.ctx
    out = _roster_base(r).lazy().join(r.select(pl.col("rec").alias("roster_rec"), "name_norm").lazy(), on="roster_rec",
                                      maintain_order="left").join(
        links.lazy(), on="roster_rec", how="inner", maintain_order="left"
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


def _damage(status: pl.Expr, known: pl.Expr, value: pl.Expr, system_id: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """Where a roster ID is damaged: the 0-based positions, and a clause saying so.

    Against the student's own system ID when there is one (which digits differ); else what
    the status tells: Excel's lost digits, the check character the first 17 digits call for."""
    diff = digit_diff_positions(value, system_id)
    lost = pl.int_ranges(known.fill_null(0).cast(pl.Int8), 18, dtype=pl.Int8)
    damaged = status.is_in(["number_damaged", "sci_damaged"])
    first17 = value.str.slice(0, 17)
    want = check_char_expr(first17)
    positions = (
        pl.when(damaged).then(lost)
        .when(diff.is_not_null() & (diff.list.len() > 0)).then(diff)
        .when((status == "checksum") & want.is_not_null()).then(pl.lit([17], dtype=pl.List(pl.Int8)))
    )
    pos_text = positions.list.eval((pl.element() + 1).cast(pl.String)).list.join("、")
    clause = (
        pl.when(damaged & (known.fill_null(0) > 0)).then(pl.format("（只有前{}位可信，第{}至18位已丢失）", known, known + 1))
        .when(diff.is_not_null() & (diff.list.len() > 0)).then(pl.format("（与系统中该学生本人的号码相比，第{}位不同）", pos_text))
        .when((status == "checksum") & want.is_not_null()).then(pl.format(
            "（按前17位计算，第18位校验码应为「{}」，名单中为「{}」：前17位中可能有一位录错或两位顺序颠倒）",
            want, value.str.slice(17, 1)))
        .when(status == "bad_length").then(pl.format("（名单中的号码有{}位）", value.str.len_chars()))
        .otherwise(pl.lit(""))
    )
    return positions, clause


def id_invalid(n: _Night) -> pl.DataFrame:
    r, links, s, ctx = n.r, n.links, n.s, n.ctx
    # An empty ID cell filled from the student number (G + ID) is still a gap in the roster.
    from_student_no = pl.col("id_number_kind") == "student_no"
    out = (
        _roster_base(r).lazy()
        .join(r.select(pl.col("rec").alias("roster_rec"), "id_status", "id_number_kind", "id_known").lazy(), on="roster_rec",
              maintain_order="left")
        .filter(~pl.col("id_status").is_in(USABLE) | from_student_no)
        .with_columns(pl.when(from_student_no).then(pl.lit("student_no")).otherwise(pl.col("id_status")).alias("id_status"))
        .collect()
    )
    keep = ["roster_rec", "system", "system_file", "system_sheet", "system_row", "system_name", "system_id"]
    # Only the student's own record: a link through the head of household carries the head's ID.
    found = (
        links.select(*keep, "status", "via", "s_id_status")
        .filter((pl.col("status") == "matched") & (pl.col("via") != "household_head") & pl.col("s_id_status").is_in(USABLE))
        .sort("roster_rec", "system").unique("roster_rec", keep="first").select(keep)
    )
    out = out.join(found, on="roster_rec", how="left")
    positions, where = _damage(pl.col("id_status"), pl.col("id_known"), pl.col("id_number"), pl.col("system_id"))
    hint = pl.when(pl.col("system_id").is_not_null()).then(
        pl.format("{}系统中该学生本人登记的号码可供核对。", _sys_label())
    ).otherwise(pl.lit("请对照户口簿或身份证核实后更正。"))
    return _finish(
        out.with_columns(
            pl.lit("id_number").alias("field"),
            pl.col("id_number").alias("value"),
            pl.col("system_id").alias("system_value"),
            positions.alias("diff_positions"),
            pl.format("{}{}。{}", pl.col("id_status").replace_strict(dict(ID_STATUS_TEXT), default="身份证号无效"),
                      where, hint).alias("message"),
        ),
        "id_invalid",
    )


def qualifies_expr(s: Settings, as_of: dt.date | None = None, *, system: str = "system",
                   poverty: str = "poverty_status", dibao: str = "dibao_status",
                   exit_year: str = "exit_year", approved: str = "approved_date") -> pl.Expr:
    """Does a system record's household qualify on ``as_of``? Filing: a status that still
    enjoys the policy (or one that ended it only after as_of's year); dibao: 在保, approved
    on or before as_of when the export gives the date."""
    f_ok = pl.col(poverty).is_in(list(s.qualifying_poverty))
    d_ok = pl.col(dibao).is_in(list(s.qualifying_dibao))
    if as_of is not None:
        year = pl.col(exit_year).cast(pl.String).str.extract(r"(\d{4})", 1).cast(pl.Int32, strict=False)
        f_ok = f_ok | (pl.col(poverty).is_not_null() & (year > as_of.year).fill_null(False))
        since = _month_start(approved)
        d_ok = d_ok & (since <= pl.lit(as_of)).fill_null(True)
    return ((pl.col(system) == "filing") & f_ok.fill_null(False)) | ((pl.col(system) == "dibao") & d_ok.fill_null(False))


def _month_start(col: str) -> pl.Expr:
    """YYYY-MM(-DD) text (or YYYY年M月) as the date it starts."""
    g = pl.col(col).cast(pl.String).str.extract_groups(r"(\d{4})\D{0,2}(\d{1,2})")
    text = pl.concat_str([g.struct.field("1"), g.struct.field("2").str.zfill(2), pl.lit("01")], separator="-")
    return text.str.to_date("%Y-%m-%d", strict=False)


def _eligibility(links: pl.DataFrame, s: Settings) -> pl.DataFrame:
    """Per roster record: is any linked household still qualifying, and why not."""
    q = links if "qualifies" in links.columns else links.with_columns(qualifies_expr(s).alias("qualifies"))
    return q.group_by("roster_rec").agg(pl.col("qualifies").any().alias("any_qualifies"))


def _ended(n: _Night, system: str, status: str, qualifying: frozenset[str]) -> pl.LazyFrame:
    """Roster rows linked in `system` to a household whose status no longer qualifies, and
    found in no qualifying household of either system (one row each)."""
    r, links = n.r, n.links
    ended = links.lazy().filter(
        (pl.col("system") == system) & pl.col(status).is_not_null() & ~pl.col(status).is_in(list(qualifying))
    ).join(n.qualifying.lazy(), on="roster_rec", how="anti", maintain_order="left").unique(
        "roster_rec", keep="first", maintain_order=True)
    return _roster_base(r).lazy().join(ended, on="roster_rec", how="inner", maintain_order="left")


def _with_cut(rows: pl.LazyFrame, n: _Night) -> pl.LazyFrame:
    """``rows`` plus ``cut_systems``: the systems whose export is incomplete in the student's place."""
    cut = _in_places(n.places, n.ctx.incomplete).group_by("roster_rec").agg(
        pl.col("problem_system").alias("cut_systems"))
    return rows.join(cut.lazy(), on="roster_rec", how="left", maintain_order="left")


def _other_system_says(system: str, absent: str) -> pl.Expr:
    """What to say about the other system: absent, unless its export is cut where the student lives."""
    cut = pl.col("cut_systems").fill_null(pl.lit([], dtype=pl.List(pl.String))).list.contains(system)
    return pl.when(cut).then(pl.lit(
        f"但{SYSTEM_LABELS[system]}系统在该村（乡镇）的导出不完整，无法确认该学生在{SYSTEM_LABELS[system]}系统中的情况。"
        f"请先重新导出{SYSTEM_LABELS[system]}数据再核对。"
    )).otherwise(pl.lit(absent))


def household_exited(n: _Night) -> pl.DataFrame:
    r, links, s, ctx = n.r, n.links, n.s, n.ctx
    out = _with_cut(_ended(n, "filing", "poverty_status", s.qualifying_poverty), n)
    year = pl.when(pl.col("exit_year").is_not_null()).then(
        pl.format("（脱贫年度 {}，自该年度起不再享受政策）", pl.col("exit_year"))).otherwise(pl.lit(""))
    return _finish(
        out.with_columns(
            pl.lit("poverty_status").alias("field"),
            pl.col("poverty_status").alias("system_value"),
            pl.format(
                "该学生在建档立卡系统中的家庭状态为「{}」{}，{}",
                pl.col("poverty_status"), year, _other_system_says("dibao", "低保系统中也没有在保记录，已不属于资助对象，请核实。"),
            ).alias("message"),
        ),
        "household_exited",
    )


def dibao_stopped(n: _Night) -> pl.DataFrame:
    r, links, s, ctx = n.r, n.links, n.s, n.ctx
    out = _with_cut(_ended(n, "dibao", "dibao_status", s.qualifying_dibao), n)
    since = pl.when(pl.col("approved_date").is_not_null()).then(
        pl.format("（低保批准日期 {}，导出中没有停保日期）", pl.col("approved_date"))).otherwise(pl.lit(""))
    return _finish(
        out.with_columns(
            pl.lit("status").alias("field"),
            pl.col("dibao_status").alias("system_value"),
            pl.format(
                "该学生家庭的低保状态为「{}」{}，{}",
                pl.col("dibao_status"), since,
                _other_system_says("filing", "建档立卡系统中也没有仍享受政策的记录，已不属于资助对象，请核实。"),
            ).alias("message"),
        ),
        "dibao_stopped",
    )


def claim_identity(r: pl.DataFrame, links: pl.DataFrame) -> pl.DataFrame:
    """roster_rec → ``_who``, the student a roster row claims for: the matched system
    person's ID, else the row's own valid ID, else name and birth date."""
    sys_id = (
        links.select("roster_rec", "system", "system_id", "status", "s_id_status", "via")
        .filter((pl.col("status") == "matched") & pl.col("s_id_status").is_in(USABLE) & (pl.col("via") != "household_head"))
        .sort(["roster_rec", "system"])
        .group_by("roster_rec", maintain_order=True)
        .agg(pl.col("system_id").first().alias("_sid"))
    )
    return r.select(
        pl.col("rec").alias("roster_rec"),
        pl.when(pl.col("id_status").is_in(USABLE)).then(pl.col("id_norm")).alias("_rid"),
        pl.concat_str([pl.col("name_norm"), pl.coalesce("birth", "id_birth").cast(pl.String)], separator="|").alias("_nb"),
    ).join(sys_id, on="roster_rec", how="left").select(
        "roster_rec", pl.coalesce("_sid", "_rid", "_nb").alias("_who")
    ).filter(pl.col("_who").is_not_null())


def claim_identities(roster: pl.DataFrame, systems: Mapping[str, pl.DataFrame], matches: pl.DataFrame) -> pl.DataFrame:
    """:func:`claim_identity` from the stored shapes (records and matches), for a province's
    look across county lines."""
    return claim_identity(roster, _links(matches, systems))


def duplicate_claim(n: _Night) -> pl.DataFrame:
    """The same student on two roster rows: same ID, or the same system person, or same name and birth."""
    r, links, s, ctx = n.r, n.links, n.s, n.ctx
    who = claim_identity(r, links)
    counts = who.group_by("_who").agg(pl.len().alias("n")).filter(pl.col("n") > 1)
    dup = who.join(counts, on="_who")
    base = _roster_base(r).join(dup.select("roster_rec", "_who", "n"), on="roster_rec")
    where = (
        base.sort(["file", "sheet", "row"])
        .with_columns(pl.format("{}{}第{}行", pl.col("school").fill_null(""),
                                pl.when(pl.col("sheet").fill_null("") != "").then(pl.format("「{}」", pl.col("sheet")))
                                .otherwise(pl.lit("")), pl.col("row")).alias("_at"))
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


def id_fact_conflict(n: _Night) -> pl.DataFrame:
    r, links, s, ctx = n.r, n.links, n.s, n.ctx
    # lazily: of the roster only the rows in conflict are ever built
    base = _roster_base(r).lazy().join(
        r.select(pl.col("rec").alias("roster_rec"), "id_status", "birth", "id_birth", "gender_norm", "id_gender", "birth_date", "gender").lazy(),
        on="roster_rec", maintain_order="left",
    ).filter(pl.col("id_status").is_in(USABLE))
    births = base.filter(pl.col("birth").is_not_null() & pl.col("id_birth").is_not_null() & (pl.col("birth") != pl.col("id_birth"))).with_columns(
        pl.lit("birth_date").alias("field"),
        pl.col("birth").cast(pl.String).alias("value"),  # as a date, so only digits can differ from the ID's
        pl.col("id_birth").cast(pl.String).alias("system_value"),
        pl.format("名单填写的出生日期 {} 与身份证号中的出生日期 {} 不一致，请核实。", pl.col("birth").cast(pl.String), pl.col("id_birth").cast(pl.String)).alias("message"),
    ).collect()
    genders = base.filter(pl.col("gender_norm").is_not_null() & pl.col("id_gender").is_not_null() & (pl.col("gender_norm") != pl.col("id_gender"))).with_columns(
        pl.lit("gender").alias("field"),
        pl.col("gender").alias("value"),
        pl.col("id_gender").alias("system_value"),
        pl.format("名单填写的性别「{}」与身份证号（第17位）表示的性别「{}」不一致，请核实。", pl.col("gender_norm"), pl.col("id_gender")).alias("message"),
    ).collect()
    return _finish(pl.concat([births, genders], how="diagonal_relaxed") if births.height or genders.height else births, "id_fact_conflict")


RULES: tuple[Callable[["_Night"], pl.DataFrame], ...] = (
    not_found, needs_review, id_mismatch, name_mismatch, id_invalid,
    household_exited, dibao_stopped, duplicate_claim, id_fact_conflict,
)


# --------------------------------------------------------------------------- policy (issue 7)


@dataclass(frozen=True)
class RuleContext:
    """What the policy rules need beyond the records: the reference date, the county's
    policy, and the places whose export looks cut short (system, town, village)."""

    as_of: dt.date | None = None
    policy: pol.Policy | None = None
    incomplete: pl.DataFrame | None = None
    # A province run (reconcile.crosscounty): this county's system records that another
    # county's roster was linked to (system, rec), and this roster's rows whose student is on
    # another county's roster too (roster_rec, places).
    claimed: pl.DataFrame | None = None
    elsewhere: pl.DataFrame | None = None


@dataclass(frozen=True)
class _Night:
    """One night's rule inputs, and what several rules read of them, each built once
    (built per rule, the stage facts alone took a third of the rules' time)."""

    r: pl.DataFrame
    links: pl.DataFrame
    s: Settings
    ctx: RuleContext

    @cached_property
    def places(self) -> pl.DataFrame:
        return roster_places(self.r, self.links)

    @cached_property
    def qualifying(self) -> pl.DataFrame:
        """roster_rec of the rows linked to a household that still qualifies."""
        return _eligibility(self.links, self.s).filter("any_qualifies").select("roster_rec")

    @cached_property
    def facts(self) -> pl.DataFrame:
        return _facts_frame(self.r, self.s, self.ctx.policy)


def roster_places(r: pl.DataFrame, links: pl.DataFrame) -> pl.DataFrame:
    """roster_rec → place keys and names: the roster's own village, else the first linked record's."""
    cols = ["system_town_key", "system_village_key", "system_town", "system_village"]
    linked = (
        links.select("roster_rec", "system", "system_rec", *cols)
        .filter(pl.col("system_village_key").is_not_null())
        .sort(["roster_rec", "system", "system_rec"])
        .group_by("roster_rec", maintain_order=True)
        .agg(pl.col(c).first() for c in cols)
        if links.height and "system_village_key" in links.columns
        else pl.DataFrame(schema={"roster_rec": pl.UInt32, **{c: pl.String for c in cols}})
    )
    base = r.select(pl.col("rec").alias("roster_rec"), "town_key", "village_key", "town_name", "village_name")
    out = base.join(linked, on="roster_rec", how="left")
    own = pl.col("village_key").is_not_null()
    return out.select(
        "roster_rec",
        *(pl.when(own).then(pl.col(mine)).otherwise(pl.col(theirs)).alias(f"place_{mine}")
          for mine, theirs in zip(("town_key", "village_key", "town_name", "village_name"), cols)),
    )


def _in_places(places: pl.DataFrame, problems: pl.DataFrame) -> pl.DataFrame:
    """roster_rec, problem_system for roster records in a place named by `problems` (by key)."""
    if problems is None or problems.is_empty():
        return pl.DataFrame(schema={"roster_rec": pl.UInt32, "problem_system": pl.String})
    p = problems.select(pl.col("system").alias("problem_system"), pl.col("town_key").alias("_pt"), pl.col("village_key").alias("_pv"))
    hit = places.join(p, left_on="place_village_key", right_on="_pv", how="inner").filter(
        pl.col("place_town_key").is_null() | (pl.col("place_town_key") == pl.col("_pt"))
    )
    return hit.select("roster_rec", "problem_system").unique(maintain_order=True)


def _categories(links: pl.DataFrame, s: Settings) -> pl.DataFrame:
    """roster_rec → the policy categories of its qualifying households (建档立卡 / 低保 / 特困供养)."""
    htype = pl.col("household_type").cast(pl.String).str.replace_all(r"\s+", "").replace_strict(
        dict(s.codes.get("household_type", {})), default=pl.col("household_type").cast(pl.String), return_dtype=pl.String)
    dcat = pl.col("dibao_category").cast(pl.String).str.replace_all(r"\s+", "").replace_strict(
        dict(s.codes.get("dibao_category", {})), default=pl.col("dibao_category").cast(pl.String), return_dtype=pl.String)
    if links.is_empty() or "qualifies" not in links.columns:
        return pl.DataFrame(schema={"roster_rec": pl.UInt32, "cats": pl.List(pl.String)})
    q = links.select("roster_rec", "system", "household_type", "dibao_category", "qualifies").filter("qualifies")
    cats = q.select(
        "roster_rec",
        pl.when(pl.col("system") == "filing").then(pl.lit("建档立卡"))
        .when(dcat == "特困供养").then(pl.lit("特困供养")).otherwise(pl.lit("低保")).alias("cat"),
    )
    extra = q.filter(pl.col("system") == "filing").select(
        "roster_rec",
        pl.when(htype.is_in(["低保贫困户", "低保户"])).then(pl.lit("低保"))
        .when(htype.is_in(["特困供养贫困户", "五保户"])).then(pl.lit("特困供养")).alias("cat"),
    ).drop_nulls("cat")
    both = pl.concat([cats, extra]).unique().sort(["roster_rec", "cat"])
    return both.group_by("roster_rec", maintain_order=True).agg(pl.col("cat").alias("cats"))


def _facts_frame(r: pl.DataFrame, s: Settings, policy: pol.Policy | None) -> pl.DataFrame:
    """roster_rec → stages (list), year (of study) and boarding/in-province as the row says them."""
    cols = ["stage", "grade", "school", "boarding"]
    uniq = r.select(cols).unique()
    words = dict(s.codes.get("stage", {}))
    found = [pol.row_facts(stage, grade, school, boarding, policy, words) for stage, grade, school, boarding in uniq.iter_rows()]
    # built a column at a time: from row dicts, polars took longer than the facts themselves
    facts = uniq.with_columns(
        pl.Series("f_stages", [sorted(f.stages) for f in found], dtype=pl.List(pl.String)),
        pl.Series("f_year", [f.year for f in found], dtype=pl.Int32),
        pl.Series("f_boarding", [f.boarding for f in found], dtype=pl.Boolean),
        pl.Series("f_in_prov", [f.in_province for f in found], dtype=pl.Boolean),
    )
    return r.select(pl.col("rec").alias("roster_rec"), *cols).join(facts, on=cols, how="left", nulls_equal=True)


def subsidy_mismatch(n: _Night) -> pl.DataFrame:
    """An eligible student's amount that is not what the county's policy gives for the row's
    stage, year, boarding and household category (only where the row tells all of them)."""
    r, links, s, ctx = n.r, n.links, n.s, n.ctx
    policy = ctx.policy
    if policy is None or r.is_empty():
        return _finish(_roster_base(r).head(0), "subsidy_mismatch")
    ok = n.qualifying
    skip = _in_places(n.places, ctx.incomplete).select("roster_rec")
    facts = n.facts.join(_categories(links, s), on="roster_rec", how="left")
    rows = (
        r.select(pl.col("rec").alias("roster_rec"), "amount", "amount_value", "aid_item")
        .join(ok, on="roster_rec", how="semi").join(skip, on="roster_rec", how="anti")
        .filter(pl.col("amount_value").is_not_null())
        .join(facts, on="roster_rec", how="left")
        .with_columns(pl.col("cats").fill_null(pl.lit([], dtype=pl.List(pl.String))))
    )
    keys = ["f_stages", "f_year", "f_boarding", "f_in_prov", "cats"]
    expected = []
    for stages, year, boarding, in_prov, cats in rows.select(keys).unique().iter_rows():
        e = pol.expected_amount(policy, pol.Facts(frozenset(stages or ()), year, boarding, frozenset(cats or ()), in_prov))
        if e is not None:
            expected.append({"f_stages": stages, "f_year": year, "f_boarding": boarding, "f_in_prov": in_prov,
                             "cats": cats, "expected": e.amount, "rule_text": e.text})
    exp_schema = {"f_stages": pl.List(pl.String), "f_year": pl.Int32, "f_boarding": pl.Boolean, "f_in_prov": pl.Boolean,
                  "cats": pl.List(pl.String), "expected": pl.Float64, "rule_text": pl.String}
    exp = pl.DataFrame(expected, schema=exp_schema)
    per_term = (pl.col("aid_item").fill_null("") + pl.col("amount").fill_null("")).str.contains("学期")
    bad = rows.join(exp, on=keys, how="inner", nulls_equal=True).with_columns(
        pl.when(per_term).then(pl.col("amount_value") * policy.terms_per_year).otherwise(pl.col("amount_value")).alias("_yearly")
    ).filter((pl.col("_yearly") - pl.col("expected")).abs() > 0.5)
    out = _roster_base(r).join(bad.select("roster_rec", "expected", "rule_text", "_yearly", "f_stages", "cats"), on="roster_rec")
    fmt = lambda c: pl.col(c).round(0).cast(pl.Int64).cast(pl.String)  # noqa: E731
    return _finish(
        out.with_columns(
            pl.lit("amount").alias("field"),
            fmt("_yearly").alias("value"),
            fmt("expected").alias("system_value"),
            pl.format(
                "名单资助金额为每年 {} 元，按《{}》（{}，家庭类别：{}）应为每年 {} 元。适用标准：{}。请核对学段、年级、是否寄宿和家庭类别。",
                fmt("_yearly"), pl.lit(policy.title), pl.col("f_stages").list.join("/"),
                pl.when(pl.col("cats").list.len() > 0).then(pl.col("cats").list.join("、")).otherwise(pl.lit("无")),
                fmt("expected"), pl.col("rule_text"),
            ).alias("message"),
        ),
        "subsidy_mismatch",
    )


def _reference_day(as_of: dt.date) -> dt.date:
    return dt.date(pol.school_year_of(as_of), 9, 1)


def _age(birth: pl.Expr, ref: dt.date) -> pl.Expr:
    before = (birth.dt.month() > ref.month) | ((birth.dt.month() == ref.month) & (birth.dt.day() > ref.day))
    return (pl.lit(ref.year) - birth.dt.year() - before.cast(pl.Int32)).cast(pl.Int32)


def age_stage_mismatch(n: _Night) -> pl.DataFrame:
    """Age on Sept 1 of the school year (from the roster ID, else the matched system ID)
    outside what the row's stage and grade allow."""
    r, links, s, ctx = n.r, n.links, n.s, n.ctx
    if ctx.as_of is None or r.is_empty():
        return _finish(_roster_base(r).head(0), "age_stage_mismatch")
    ref = _reference_day(ctx.as_of)
    sys_birth = (
        links.select("roster_rec", "system", "status", "via", "system_birth")
        .filter((pl.col("status") == "matched") & (pl.col("via") != "household_head") & pl.col("system_birth").is_not_null())
        .sort(["roster_rec", "system"]).group_by("roster_rec", maintain_order=True).agg(pl.col("system_birth").first())
    )
    births = r.select(
        pl.col("rec").alias("roster_rec"), pl.when(pl.col("id_status").is_in(USABLE)).then(pl.col("id_birth")).alias("_b")
    ).join(sys_birth, on="roster_rec", how="left").select("roster_rec", pl.coalesce("_b", "system_birth").alias("_birth"))
    rows = n.facts.join(births, on="roster_rec").filter(
        pl.col("_birth").is_not_null() & (pl.col("f_stages").list.len() > 0)
    ).with_columns(_age(pl.col("_birth"), ref).alias("_age"))
    c = s.checks
    verdicts = []
    for stages, year, age in rows.select("f_stages", "f_year", "_age").unique().iter_rows():
        fits = pol.age_window_fits(age, frozenset(stages), year, c.entry_age, c.age_early, c.age_late)
        if fits is False:
            usual = "、".join(
                f"{st}{'' if year is None else f'{year}年级'}通常 {c.entry_age[st] + (year or 1) - 1} 岁"
                for st in sorted(stages) if st in c.entry_age
            )
            verdicts.append({"f_stages": stages, "f_year": year, "_age": age, "_usual": usual})
    v = pl.DataFrame(verdicts, schema={"f_stages": pl.List(pl.String), "f_year": pl.Int32, "_age": pl.Int32, "_usual": pl.String})
    bad = rows.join(v, on=["f_stages", "f_year", "_age"], how="inner", nulls_equal=True)
    out = _roster_base(r).join(bad.select("roster_rec", "_age", "_usual", "grade", "_birth"), on="roster_rec")
    return _finish(
        out.with_columns(
            pl.lit("grade").alias("field"),
            pl.col("grade").alias("value"),
            pl.col("_age").cast(pl.String).alias("system_value"),
            pl.format(
                "按身份证号中的出生日期，该学生在 {} 时 {} 岁，与名单中的学段/年级「{}」不符（{}）。请核实年级或身份证号。",
                pl.lit(ref.isoformat()), pl.col("_age"), pl.col("grade").fill_null("未填"), pl.col("_usual"),
            ).alias("message"),
        ),
        "age_stage_mismatch",
    )


def export_incomplete(n: _Night) -> pl.DataFrame:
    """Students of a place whose export looks cut short, not found qualifying anywhere and
    with no record in the export that was cut: a clerk should re-export, not chase them."""
    r, links, s, ctx = n.r, n.links, n.s, n.ctx
    if ctx.incomplete is None or ctx.incomplete.is_empty() or r.is_empty():
        return _finish(_roster_base(r).head(0), "export_incomplete")
    inc = _in_places(n.places, ctx.incomplete)
    ok = n.qualifying
    seen_in = links.select("roster_rec", pl.col("system").alias("problem_system")).unique()
    hit = (
        inc.join(ok, on="roster_rec", how="anti")
        .join(seen_in, on=["roster_rec", "problem_system"], how="anti")
        .group_by("roster_rec", maintain_order=True).agg(pl.col("problem_system").first())
    )
    out = _roster_base(r).join(hit, on="roster_rec").join(n.places, on="roster_rec", how="left")
    return _finish(
        out.with_columns(
            pl.col("problem_system").alias("system"),
            pl.format(
                "{}{}的{}导出数据明显不完整（与另一系统和名单相比该村几乎没有记录），该学生可能因此未找到。请先重新导出{}数据再核对，不必逐户查找。",
                pl.col("place_town_name").fill_null(""), pl.col("place_village_name").fill_null(""),
                _sys_label_of("problem_system"), _sys_label_of("problem_system"),
            ).alias("message"),
        ),
        "export_incomplete",
    )


def _sys_label_of(col: str) -> pl.Expr:
    return pl.col(col).replace_strict(dict(SYSTEM_LABELS), default=pl.col(col))


def missed_eligible(n: _Night, systems: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
    """School-age children of qualifying households (either system) on no roster (控辍保学).
    One row per child, pointing at a system record (its own lineage in file/sheet/row)."""
    r, links, s, ctx = n.r, n.links, n.s, n.ctx
    if ctx.as_of is None:
        return _finish(_roster_base(r).head(0), "missed_eligible")
    ref = _reference_day(ctx.as_of)
    c = s.checks
    parts: dict[str, pl.LazyFrame] = {}
    for name, sysrec in systems.items():
        if sysrec.is_empty():
            continue
        cols = sysrec.columns
        parts[name] = sysrec.lazy().filter(pl.col("id_status").is_in(USABLE) & pl.col("id_birth").is_not_null()).select(
            pl.lit(name).alias("system"), "rec", "file", "sheet", "row", "name", "name_norm", "id_norm", "id_birth",
            _town_name(sysrec), (pl.col("village_name") if "village_name" in cols else pl.col("village")).alias("village"),
            (pl.col("poverty_status_norm") if "poverty_status_norm" in cols else pl.lit(None, pl.String)).alias("poverty_status"),
            (pl.col("exit_year") if "exit_year" in cols else pl.lit(None, pl.String)).alias("exit_year"),
            (pl.col("status_norm") if "status_norm" in cols else pl.lit(None, pl.String)).alias("dibao_status"),
            (pl.col("approved_date") if "approved_date" in cols else pl.lit(None, pl.String)).alias("approved_date"),
            (pl.col("school_status") if "school_status" in cols else pl.lit(None, pl.String)).alias("school_status"),
        )
    if not parts:
        return _finish(_roster_base(r).head(0), "missed_eligible")
    derived = [
        qualifies_expr(s, ctx.as_of).alias("qualifies"),
        _age(pl.col("id_birth"), ref).alias("_age"),
        pl.col("school_status").cast(pl.String).str.replace_all(r"\s+", "").alias("_ss"),
    ]
    # Who is expected and not covered is decided on a few columns of every record; the
    # record's other fields are fetched for the few left (lazily: only what is read is built).
    recs = pl.concat(list(parts.values()), how="vertical_relaxed").with_columns(derived).select(
        "system", "rec", "id_norm", "qualifies", "_age", "_ss").collect()
    at_school = pl.col("_ss").is_not_null() & (pl.col("_ss") != "非在校生") & ~pl.col("_ss").str.contains("非|未|辍|失学")
    # Covered: linked to a roster row, or the same ID / name and birth date on any roster.
    linked = links.select("system", pl.col("system_rec").alias("rec"))
    if ctx.claimed is not None:  # on another county's roster: not missed here
        linked = pl.concat([linked, ctx.claimed.select("system", pl.col("rec").cast(linked.schema["rec"]))])
    linked = linked.unique()
    covered_ids = pl.concat([
        r.select("id_norm", "id_status").filter(pl.col("id_status").is_in(USABLE)).select("id_norm"),
        recs.join(linked, on=["system", "rec"], how="semi").select("id_norm"),
    ]).unique()
    roster_nb = r.select("name_norm", pl.coalesce(pl.when(pl.col("id_status").is_in(USABLE)).then(pl.col("id_birth")), "birth").alias("id_birth")).drop_nulls().unique()
    person = recs.group_by("id_norm").agg(
        pl.col("qualifies").any().alias("_q"), at_school.any().alias("_at_school"), pl.col("_age").first().alias("_page"),
    )
    lo_c, hi_c = c.compulsory_ages
    lo_s, hi_s = c.student_ages
    expected = person.filter(
        pl.col("_q") & (pl.col("_page").is_between(lo_c, hi_c) | (pl.col("_at_school") & pl.col("_page").is_between(lo_s, hi_s)))
    ).select("id_norm")
    picked = recs.join(expected.join(covered_ids, on="id_norm", how="anti"), on="id_norm", how="semi").select("system", "rec")
    cand = (
        pl.concat([lf.join(picked.lazy().filter(pl.col("system") == name).select("rec"), on="rec", how="semi",
                           maintain_order="left") for name, lf in parts.items()], how="vertical_relaxed")
        .with_columns(derived).collect()
        .join(roster_nb, on=["name_norm", "id_birth"], how="anti")
        .sort([pl.col("qualifies").not_(), pl.col("system") != "filing", "file", "sheet", "row"])
        .unique("id_norm", keep="first", maintain_order=True)
    )
    # A stage no roster covers tonight (本科/大专 without a university roster) is counted for
    # analysts (missed_other_stage), not put to the towns as a possible drop-out.
    entry = sorted(c.entry_age.items(), key=lambda kv: kv[1])
    by_age = pl.lit(None, pl.String)
    for stage, age in entry:  # ascending: the last (outermost) test is the oldest stage
        if stage in ("大专", "中职"):  # same entry age as 本科 / 高中: the commoner one names it
            continue
        by_age = pl.when(pl.col("_age") >= age).then(pl.lit(stage)).otherwise(by_age)
    named = pl.col("_ss").is_in(list(c.entry_age))
    cand = cand.with_columns(pl.when(named).then(pl.col("_ss")).otherwise(by_age).alias("_stage"))
    covered = set(c.missed_stages) | set(n.facts["f_stages"].explode().drop_nulls().unique().to_list())
    on_rosters = pl.col("_stage").is_in(sorted(covered))
    other = cand.filter(~on_rosters).select(
        pl.col("system").alias("source"), "file", "sheet", "row", "system",
        pl.col("file").alias("system_file"), pl.col("sheet").alias("system_sheet"), pl.col("row").alias("system_row"),
        "town", "village", pl.col("name").alias("system_name"), pl.col("id_norm").alias("system_id"),
        pl.lit("stage").alias("field"), pl.col("_stage").alias("system_value"),
        pl.format("{}{}：学段「{}」今晚没有任何资助名单，未核对。", pl.col("town").fill_null(""), pl.col("village").fill_null(""),
                  pl.col("_stage").fill_null("未知")).alias("message"),
    )
    cand = cand.filter(on_rosters)
    status = pl.coalesce(pl.col("poverty_status"), pl.col("dibao_status"))
    out = cand.select(
        pl.col("system").alias("source"), "file", "sheet", "row", "system",
        pl.col("file").alias("system_file"), pl.col("sheet").alias("system_sheet"), pl.col("row").alias("system_row"),
        "town", "village", pl.col("name"), pl.col("name").alias("system_name"), pl.col("id_norm").alias("id_number"),
        pl.col("id_norm").alias("system_id"),
        pl.lit("school_status").alias("field"), pl.col("school_status").alias("system_value"),
        pl.format(
            "{}{}：{}在 {} 时 {} 岁（在校生状况：{}），家庭在{}系统中属于资助对象（{}），但不在任何学校的资助名单上。请乡镇核实是否辍学，或是否漏报。",
            pl.col("town").fill_null(""), pl.col("village").fill_null(""), pl.col("name").fill_null(""),
            pl.lit(ref.isoformat()), pl.col("_age"), pl.col("school_status").fill_null("未注明"),
            _sys_label(), status.fill_null(""),
        ).alias("message"),
    )
    return pl.concat([_finish(out, "missed_eligible"), _finish(other, "missed_other_stage")])


def _with_places(out: pl.DataFrame, n: _Night) -> pl.DataFrame:
    """A roster row without 乡镇/村 gets its linked household's: the town clerk who must act on it."""
    roster = n.r
    if out.is_empty() or roster.is_empty():
        return out
    where = roster.select(pl.col("rec").alias("roster_rec"), "file", "sheet", "row").join(
        n.places, on="roster_rec").drop("roster_rec")
    mine = pl.col("source") == "roster"
    return out.join(where, on=["file", "sheet", "row"], how="left", maintain_order="left").with_columns(
        pl.when(mine).then(pl.coalesce("town", "place_town_name")).otherwise("town").alias("town"),
        pl.when(mine).then(pl.coalesce("village", "place_village_name")).otherwise("village").alias("village"),
    ).drop("place_town_key", "place_village_key", "place_town_name", "place_village_name")


def duplicate_elsewhere(r: pl.DataFrame, ctx: RuleContext) -> pl.DataFrame:
    """duplicate_claim across county lines: the student is on another county's roster too."""
    base = _roster_base(r)
    if ctx.elsewhere is None:
        return _finish(base.head(0), "duplicate_claim")
    out = base.join(ctx.elsewhere.select("roster_rec", "places"), on="roster_rec", how="inner", maintain_order="left")
    return _finish(
        out.with_columns(
            pl.format("同一学生也在其他县的资助名单上（{}），可能重复申报，请与该县核实只保留一条。", pl.col("places")).alias("message")
        ),
        "duplicate_claim",
    )


def find_discrepancies(
    roster: pl.DataFrame, systems: Mapping[str, pl.DataFrame], matches: pl.DataFrame, settings: Settings,
    context: RuleContext | None = None,
) -> pl.DataFrame:
    """Every rule over the roster and its links, in a stable order.

    With a context (issue 7): eligibility on its date, and the policy rules; students of a
    place whose export is incomplete get export_incomplete instead of not_found.
    """
    ctx = context or RuleContext()
    links = _links(matches, systems)
    if links.height and "system" in links.columns:
        links = links.with_columns(qualifies_expr(settings, ctx.as_of).alias("qualifies"))
    night = _Night(roster, links, settings, ctx)
    frames = [rule(night) for rule in RULES]
    if context is not None:
        extra = [
            export_incomplete(night),
            subsidy_mismatch(night),
            age_stage_mismatch(night),
            missed_eligible(night, systems),
        ]
        moved = extra[0].select("file", "sheet", "row")
        frames[0] = frames[0].join(moved, on=["file", "sheet", "row"], how="anti")  # not_found → export_incomplete
        frames += extra
        if ctx.elsewhere is not None:  # one duplicate_claim item a row, the county's own first
            seen = frames[RULES.index(duplicate_claim)].select("file", "sheet", "row")
            frames.append(duplicate_elsewhere(roster, ctx).join(seen, on=["file", "sheet", "row"], how="anti"))
    out = _with_places(pl.concat(frames, how="vertical_relaxed"), night)
    return out.sort(["file", "sheet", "row", "kind", "system"], nulls_last=True, maintain_order=True)
