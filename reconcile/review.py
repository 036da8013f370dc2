"""Clerks' decisions, the pure half: stable item keys, reading decisions, applying them.

Item keys
---------
Every discrepancy gets an ``item_key`` built from what it is about, never from row numbers
or run ids: its kind, system and field, and the *identity* of the roster record and of the
system record involved. A record's identity is ``id:<normalised ID>`` when its ID is valid,
else ``nbh:<normalised name>|<birth date>|<household>`` (roster household: the guardian's
ID, else the guardian's name). So a decision follows the item from night to night even when
rows move. Items also carry a ``fingerprint``: a hash of the identifying fields of the
records behind them (names, IDs, birth date, gender, guardian, household, status). When the
fingerprint at decision time differs from tonight's, the records changed and the item comes
back, saying so.

The item key is derived from full ID numbers, so it stays in DuckDB: the workbook carries
``item_ref`` instead (the item's ordinal within its run, meaningless outside it) and the
run id; ``reconcile.review_import`` (the I/O half) looks both up in the run's item map.

Decisions (the ``reviews`` table) are applied by the pure functions here, called from
``pipeline.reconcile``:

- ``corrected_tables``: a corrected value (``已更正`` with a 更正值 on a kind the vocabulary
  lets a clerk correct: ID, name, amount) replaces the roster cell before normalisation,
  so everything downstream uses it;
- ``apply_links``: a confirmed pair (``确认是同一人``) becomes a ``matched`` link with
  ``via='clerk'``; a rejected pair (``不是同一人``) is dropped and never proposed again;
- ``annotate``: keys and fingerprints on every discrepancy; items confirmed or rejected
  with unchanged records are left out; changed ones come back (``review_state='reopened'``);
  an item marked ``已更正`` is never hidden: it goes when the corrected record no longer
  has the problem, and while it still does it comes back saying so; reviewers disagreeing
  (or one reviewer saying two things in one import) is reported on the item
  (``review_state='conflict'``). The latest ``待核实`` and note per item are carried into
  tonight's workbook (``carried_decision``, ``carried_note``, ``carried_reviewer``).

A decision applies while the records behind it are unchanged; ``待核实`` (pending) is stored
(throughput) but decides nothing, and a reviewer's later row replaces their earlier one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

import polars as pl

from . import policy as pol
from .config import CheckSettings, ReviewSettings
from .idcard import is_valid_id
from .ingest import SheetTable
from .vocabulary import (
    DECISION_LABEL_OF, DECISION_LABELS, DECISIONS, FIELD_LABELS, ID_KINDS, KINDS, NOTICE_BLOCKING, PAIR_KINDS, SYSTEM_LABELS, SYSTEMS,
    USABLE_ID_STATUSES, mask_id,
)

__all__ = [
    "REVIEW_COLUMNS",
    "CARRIED_COLUMNS",
    "empty_decisions",
    "effective_decisions",
    "identities",
    "corrected_tables",
    "apply_links",
    "annotate",
    "carried_forward",
    "eligible_students",
    "parse_decision",
    "clean_id",
    "clean_correction",
    "correctable_field",
    "Owner",
    "judge_corrected_id",
]

USABLE = USABLE_ID_STATUSES

REVIEW_COLUMNS: dict[str, pl.DataType] = {
    "review_id": pl.String(), "imported_at": pl.Datetime("us", "UTC"), "reviewer": pl.String(),
    "decision": pl.String(), "decision_code": pl.String(), "corrected_value": pl.String(),
    "note": pl.String(), "item_key": pl.String(), "item_ref": pl.Int64(), "fingerprint": pl.String(),
    "kind": pl.String(), "system": pl.String(), "field": pl.String(), "school": pl.String(),
    "town": pl.String(), "roster_identity": pl.String(), "system_identity": pl.String(),
    "run_id": pl.String(), "workbook": pl.String(), "sheet": pl.String(), "row": pl.Int64(),
}
# What annotate adds for the workbook writer: the latest 待核实 and note per item, carried
# into tonight's editable cells (核实结论, 备注, 核实人).
CARRIED_COLUMNS: tuple[str, ...] = ("carried_decision", "carried_note", "carried_reviewer")

REOPENED_TEXT = "【记录已变化，请重新核实】此前{}的结论为「{}」，但名单或系统中的相关记录已有变化。"
STILL_OPEN_TEXT = "【已填写“已更正”，但问题仍在】此前{}填写了「已更正」{}，今晚的名单中这个问题仍然存在，请核对名单原文件。"
CONFLICT_TEXT = "【核实结论不一致】{}。请相关人员协商后重新填写。"


def empty_decisions() -> pl.DataFrame:
    return pl.DataFrame(schema=REVIEW_COLUMNS)


def _sha(text: str, n: int = 16) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:n]


# --------------------------------------------------------------------------- identities

_ROSTER_FP = ("name_norm", "id_norm", "id_status", "birth", "gender_norm", "head_name_norm", "head_id_norm")
_SYSTEM_FP = ("name_norm", "id_norm", "id_status", "id_birth", "head_name_norm", "head_id_norm", "household",
              "status_norm", "poverty_status_norm", "exit_year")


def _s(col: str, df: pl.DataFrame) -> pl.Expr:
    return pl.col(col).cast(pl.String).fill_null("") if col in df.columns else pl.lit("")


def identities(records: pl.DataFrame, source: str, only: pl.DataFrame | None = None) -> pl.DataFrame:
    """``rec``, lineage, ``identity`` and ``fp`` (the fingerprint's input text) per record;
    with ``only`` (file, sheet, row), for those records alone (a county has millions)."""
    df = records
    if source == "roster":
        birth = pl.coalesce(
            *(pl.col(c).cast(pl.String) for c in ("birth", "id_birth") if c in df.columns), pl.lit(None, pl.String)
        ).fill_null("")
        household = pl.coalesce(
            *(pl.col(c) for c in ("head_id_norm", "head_name_norm") if c in df.columns), pl.lit(None, pl.String)
        ).fill_null("")
        fp_cols = _ROSTER_FP
    else:
        birth = _s("id_birth", df)
        household = _s("household", df)
        fp_cols = _SYSTEM_FP
    usable = pl.col("id_status").is_in(list(USABLE)) & pl.col("id_norm").is_not_null()
    ident = (
        pl.when(usable).then(pl.concat_str([pl.lit("id:"), pl.col("id_norm")]))
        .otherwise(pl.concat_str([pl.lit("nbh:"), _s("name_norm", df), pl.lit("|"), birth, pl.lit("|"), household]))
    )
    fp = pl.concat_str([_s(c, df) for c in fp_cols], separator="\x1f")
    lf = df.lazy()
    if only is not None:
        keys = only.select("file", "sheet", pl.col("row").cast(df.schema["row"])).unique()
        lf = lf.join(keys.lazy(), on=["file", "sheet", "row"], how="semi", maintain_order="left")
    return lf.select("rec", "file", "sheet", "row", ident.alias("identity"), fp.alias("fp")).collect()


# --------------------------------------------------------------------------- decisions


def _shown(kind: Any, value: Any) -> str:
    """A corrected value as a message may show it: IDs masked."""
    if value is None:
        return ""
    return mask_id(str(value)) if kind in ID_KINDS else str(value)


def _said(reviewer: str, decision: str, kind: Any, corrected: Any, workbook: Any, twice: bool) -> str:
    who = f"{reviewer}（{workbook}）" if twice and workbook else reviewer
    fix = f"（更正为 {_shown(kind, corrected)}）" if corrected else ""
    return f"{who}：{decision}{fix}"


def effective_decisions(decisions: pl.DataFrame | None) -> pl.DataFrame:
    """One row per item: the agreed decision, or ``conflict`` with who said what.

    Each reviewer's latest import counts (a ``待核实`` there decides nothing); one reviewer
    saying two different things in one import (a school and a town workbook) is a conflict
    too. Columns: item_key, decision_code, corrected_value, fingerprint, roster_identity,
    system_identity, system, kind, reviewers (text), decided_at, conflict (bool), detail
    (who said what, corrected values shown, IDs masked).
    """
    out_schema = {
        "item_key": pl.String, "decision_code": pl.String, "corrected_value": pl.String,
        "fingerprint": pl.String, "roster_identity": pl.String, "system_identity": pl.String,
        "system": pl.String, "kind": pl.String, "reviewers": pl.String, "decided_at": pl.Datetime("us", "UTC"),
        "conflict": pl.Boolean, "detail": pl.String,
    }
    if decisions is None or decisions.height == 0:
        return pl.DataFrame(schema=out_schema)
    d = decisions
    for c, t in REVIEW_COLUMNS.items():
        if c not in d.columns:
            d = d.with_columns(pl.lit(None, dtype=t).alias(c))
    d = d.cast({"imported_at": pl.Datetime("us", "UTC"), "row": pl.Int64}, strict=False).with_row_index("_i")
    latest = (
        d.filter(pl.col("reviewer").is_not_null() & pl.col("item_key").is_not_null())
        .filter(pl.col("imported_at") == pl.col("imported_at").max().over("item_key", "reviewer"))
        .filter(pl.col("decision_code") != "pending")
        .with_columns(
            pl.concat_str([pl.col("decision_code"), pl.col("corrected_value").fill_null("")], separator="=").alias("_sig"),
        )
        .sort(["item_key", "imported_at", "_i"])
        .unique(["item_key", "reviewer", "_sig"], keep="last", maintain_order=True)
    )
    rows = []
    for key, g in latest.group_by("item_key", maintain_order=True):
        last = g.row(g.height - 1, named=True)
        conflict = g["_sig"].n_unique() > 1
        names = g["reviewer"].to_list()
        said = [
            _said(r["reviewer"], r["decision"] or DECISION_LABEL_OF.get(r["decision_code"], ""), r["kind"],
                  r["corrected_value"], r["workbook"], names.count(r["reviewer"]) > 1)
            for r in g.iter_rows(named=True)
        ]
        rows.append({
            "item_key": key[0], "decision_code": last["decision_code"], "corrected_value": last["corrected_value"],
            "fingerprint": last["fingerprint"], "roster_identity": last["roster_identity"],
            "system_identity": last["system_identity"], "system": last["system"], "kind": last["kind"],
            "reviewers": "、".join(sorted(set(names))),
            "decided_at": last["imported_at"], "conflict": conflict,
            "detail": "；".join(said),
        })
    return pl.DataFrame(rows, schema=out_schema)


def carried_forward(decisions: pl.DataFrame | None) -> pl.DataFrame:
    """Per item, what tonight's workbook shows in its editable cells: the latest row's
    ``待核实`` (only that: other decisions settle or reopen the item), its note and reviewer.
    Columns: item_key and ``CARRIED_COLUMNS``."""
    schema = {"item_key": pl.String, **{c: pl.String for c in CARRIED_COLUMNS}}
    if decisions is None or decisions.height == 0:
        return pl.DataFrame(schema=schema)
    d = decisions.cast({"imported_at": pl.Datetime("us", "UTC")}, strict=False).with_row_index("_i")
    last = (
        d.filter(pl.col("item_key").is_not_null() & pl.col("reviewer").is_not_null())
        .sort(["item_key", "imported_at", "_i"])
        .unique("item_key", keep="last", maintain_order=True)
    )
    pending = pl.col("decision_code") == "pending"
    return last.select(
        "item_key",
        pl.when(pending).then(pl.lit(DECISION_LABEL_OF["pending"])).alias("carried_decision"),
        pl.col("note").alias("carried_note"),
    ).with_columns(
        pl.when(pl.col("carried_decision").is_not_null() | pl.col("carried_note").is_not_null())
        .then(last["reviewer"]).alias("carried_reviewer")
    ).filter(pl.col("carried_reviewer").is_not_null()).cast(schema)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- reading a row

_DECISION_NOISE = re.compile(r"[\s\u3000。，,.．!！?？、；;：:“”\"'‘’「」『』（）()\[\]【】<>《》…~～-]+")


def _decision_key(text: str) -> str:
    return _DECISION_NOISE.sub("", unicodedata.normalize("NFKC", text)).casefold()


def parse_decision(text: str, words: ReviewSettings) -> tuple[str | None, str | None]:
    """(decision code, None) for a 核实结论 as a clerk wrote it, or (None, why not).

    The dropdown's words and the configured ones match after spaces and punctuation are
    removed; a text holding exactly one of the dropdown's words means that one; configured
    ambiguous words (同意) and anything else are refused with the list."""
    key = _decision_key(text)
    choose = " / ".join(DECISION_LABELS)
    known = {_decision_key(label): code for label, code in DECISIONS.items()}
    known.update({_decision_key(w): c for w, c in words.words.items()})
    if key in known:
        return known[key], None
    if key in {_decision_key(w) for w in words.ambiguous}:
        return None, f"核实结论「{text}」无效：意思不明确，请从下拉列表中选择 {choose} 之一"
    inside = {code for label, code in DECISIONS.items() if _decision_key(label) in key}
    if len(inside) == 1 and not key.startswith(("不", "非", "未")):
        return inside.pop(), None
    return None, f"核实结论「{text}」无效，应为 {choose} 之一"


def clean_id(value: Any) -> str | None:
    """A clerk's corrected ID as typed (spaces, full-width, lower-case x) -> 18 chars, or None if invalid."""
    if value is None:
        return None
    text = unicodedata.normalize("NFKC", str(value)).strip().lstrip("'").replace(" ", "").upper()
    if text.endswith(".0"):  # typed into a number cell
        text = text[:-2]
    return text if is_valid_id(text) else None


_SCI = re.compile(r"^\s*'?([0-9])\.([0-9]+)[Ee]\+?([0-9]{1,2})\s*$")
_AMOUNT_NOISE = re.compile(r"[\s,，元￥¥圆]|/年|每年|/学期")
_NAME_OK = re.compile(r"^[\u3400-\u9fff\U00020000-\U0003134f·A-Za-z]{1,30}$")
MAX_AMOUNT = 100_000  # yuan: more than any standard; a typo otherwise


def _lost_digits(value: Any, number_cell: bool) -> str | None:
    """Why an ID in a number cell (or typed as 4.33124E+17) can't be used, or None."""
    text = unicodedata.normalize("NFKC", str(value)).strip()
    m = _SCI.match(text)
    if m:
        kept = m.group(1) + m.group(2)
        shown = text.lstrip("'")
    elif number_cell and re.fullmatch(r"[0-9]{15,}(\.0)?", text):
        shown = f"{float(text):.14E}"  # the 15 significant digits a number cell keeps
        kept = shown.split("E")[0].replace(".", "")
    else:
        return None
    lost = max(18 - len(kept), 0)
    return (f"“更正值”单元格被表格当成了数字（显示为 {mask_id(shown)}），只保留了前{len(kept)}位"
            f"（{mask_id(kept)}），后{lost}位已经丢失；请把这个单元格设为文本格式（或先输入英文单引号 '），"
            "再输入完整的18位身份证号")


def clean_correction(field: str, value: Any, *, number_cell: bool = False) -> tuple[str | None, str | None]:
    """(clean value, None) for a 更正值 of ``field`` (id_number, name, amount), or (None, why).

    ``number_cell``: the cell held a number (what Excel does to an ID typed without '),
    whose digits past the 15th are gone."""
    if value is None or not str(value).strip():
        return None, "没有填写更正值"
    if field == "id_number":
        lost = _lost_digits(value, number_cell)
        if lost:
            return None, lost
        fixed = clean_id(value)
        if fixed is None:
            return None, f"更正后的身份证号「{mask_id(str(value).strip())}」无效（应为18位，出生日期和校验位正确）"
        return fixed, None
    if field == "amount":
        text = _AMOUNT_NOISE.sub("", unicodedata.normalize("NFKC", str(value)))
        try:
            amount = Decimal(text)
        except InvalidOperation:
            return None, f"更正后的资助金额「{value}」不是数字（只填金额，如 1500）"
        if not 0 < amount <= MAX_AMOUNT:
            return None, f"更正后的资助金额「{value}」不在 1 至 {MAX_AMOUNT} 元之间"
        return (str(int(amount)) if amount == amount.to_integral_value() else str(amount.normalize())), None
    if field == "name":
        text = re.sub(r"\s+", "", unicodedata.normalize("NFKC", str(value))).replace("•", "·").replace("・", "·")
        if not _NAME_OK.fullmatch(text):
            return None, f"更正后的姓名「{value}」不像一个姓名（只能是汉字、字母和间隔点·，不超过30个字）"
        return text, None
    return None, f"{FIELD_LABELS.get(field, field)}不能在表中更正"


def correctable_field(kind: str | None) -> str | None:
    """The roster field a 更正值 replaces on this kind (the vocabulary says), or None."""
    k = KINDS.get(kind or "")
    return k.correctable[0] if k is not None and k.correctable else None


@dataclasses.dataclass(frozen=True)
class Owner:
    """Someone whose ID a corrected ID equals: where (roster, dibao, filing), as what
    (``member``, ``head``, ``guardian``, ``student``) and their normalised name."""

    source: str
    role: str
    name_norm: str | None


def _age_on(birth: dt.date, day: dt.date) -> int:
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def _near(a: str | None, b: str | None) -> bool:
    """Same name, or one character apart (a typo in the roster): probably the same child."""
    if not a or not b:
        return False
    if a == b:
        return True
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b)) <= 1
    short, long_ = sorted((a, b), key=len)
    return any(long_[:i] + long_[i + 1:] == short for i in range(len(long_)))


# A corrected ID is refused for its age only when it clearly can't be the child's: this many
# years wider on each side than the age_stage_mismatch window (checks.toml [age]).
CORRECTION_SLACK = 2

_ROLE_TEXT = {"head": "户主", "member": "另一名家庭成员", "guardian": "名单中填写的户主（监护人）", "student": "名单中另一名学生"}


def judge_corrected_id(
    corrected: str, student: Mapping[str, Any], owners: Sequence[Owner], day: dt.date, checks: CheckSettings,
    stage_words: Mapping[str, str] | None = None,
) -> tuple[bool, str | None]:
    """May a clerk's corrected ID replace the student's? (accepted, message).

    Refused: the ID is someone else's in the roster or a system (a head of household, a
    guardian, another child), or the age it gives on ``day`` fits none of the student's
    stages (and any student's age when the stage is unknown). Accepted with a message: it
    only contradicts the roster's own birth date or gender (the roster may be the wrong
    one). ``student`` has name_norm, birth (date), gender_norm, stage, grade, school."""
    name = student.get("name_norm")
    for o in owners:
        if o.role in ("head", "guardian") and not _near(o.name_norm, name):
            where = "" if o.source == "roster" else f"{SYSTEM_LABELS.get(o.source, o.source)}系统中"
            return False, f"这个号码是{where}{_ROLE_TEXT[o.role]}的身份证号，不是这名学生的；请对照学生本人的户口簿页重新填写"
        if o.role in ("member", "student") and not _near(o.name_norm, name):
            where = "名单中" if o.source == "roster" else f"{SYSTEM_LABELS.get(o.source, o.source)}系统中"
            return False, f"这个号码在{where}登记的是另一个人（{_ROLE_TEXT[o.role]}），不是这名学生；请对照学生本人的户口簿页重新填写"
    birth = dt.date(int(corrected[6:10]), int(corrected[10:12]), int(corrected[12:14]))
    age = _age_on(birth, day)
    facts = pol.row_facts(student.get("stage"), student.get("grade"), student.get("school"), None, None, stage_words)
    early, late = checks.age_early + CORRECTION_SLACK, checks.age_late + CORRECTION_SLACK
    fits = pol.age_window_fits(age, facts.stages, facts.year, checks.entry_age, early, late)
    if fits is None:
        lo = min(checks.entry_age.values()) - early
        hi = checks.student_ages[1] + late
        fits = lo <= age <= hi
    if not fits:
        stage = "、".join(sorted(facts.stages)) or "在校学生"
        return False, (f"按这个号码，学生在 {day.isoformat()} 时 {age} 岁，与学段「{stage}」不符，"
                       "可能填成了家长或别人的号码；请对照学生本人的户口簿页重新填写")
    notes = []
    own_birth = student.get("birth")
    if isinstance(own_birth, dt.date) and own_birth != birth:
        notes.append(f"出生日期（名单 {own_birth.isoformat()}，号码中 {birth.isoformat()}）")
    gender = "男" if int(corrected[16]) % 2 else "女"
    own_gender = student.get("gender_norm")
    if own_gender in ("男", "女") and own_gender != gender:
        notes.append(f"性别（名单「{own_gender}」，号码中「{gender}」）")
    if notes:
        return True, f"已接受，但更正后的号码与名单中的{'和'.join(notes)}不一致：可能名单中这一项也有误，请一并核对"
    return True, None


def corrected_tables(
    tables: Sequence[SheetTable], roster: pl.DataFrame, decisions: pl.DataFrame | None
) -> tuple[list[SheetTable], int]:
    """Roster sheets with clerks' corrected values (ID, name, amount: what the item's kind
    lets a clerk correct) written into their cells, and how many rows changed."""
    eff = effective_decisions(decisions)
    fixes = eff.filter(
        ~pl.col("conflict") & (pl.col("decision_code") == "corrected") & pl.col("corrected_value").is_not_null()
    )
    rows = []
    for r in fixes.iter_rows(named=True):
        field_ = correctable_field(r["kind"])
        value = clean_correction(field_, r["corrected_value"])[0] if field_ else None
        if value is not None:
            rows.append({"identity": r["roster_identity"], "_field": field_, "_fix": value})
    if not rows or roster.height == 0:
        return list(tables), 0
    wanted = pl.DataFrame(rows, schema={"identity": pl.String, "_field": pl.String, "_fix": pl.String})
    who = identities(roster, "roster").join(wanted, on="identity").unique(
        ["file", "sheet", "row", "_field"], keep="first").select("file", "sheet", "row", "_field", "_fix")
    if who.height == 0:
        return list(tables), 0
    out: list[SheetTable] = []
    for t in tables:
        mine = who.filter((pl.col("file") == t.file) & (pl.col("sheet") == t.sheet)) if t.source == "roster" else who.head(0)
        if mine.height == 0:
            out.append(t)
            continue
        fr, columns = t.frame, dict(t.columns)
        for (field_,), part in mine.group_by("_field", maintain_order=True):
            fr = fr.join(part.select("row", "_fix").cast({"row": fr.schema["row"]}), on="row", how="left", maintain_order="left")
            hit = pl.col("_fix").is_not_null()
            old = pl.col(field_) if field_ in fr.columns else pl.lit(None, pl.String)
            fr = fr.with_columns(pl.when(hit).then(pl.col("_fix")).otherwise(old).alias(field_))
            if field_ == "id_number":
                kind = pl.col("id_number_kind") if "id_number_kind" in fr.columns else pl.lit(None, pl.String)
                fr = fr.with_columns(pl.when(hit).then(pl.lit("text")).otherwise(kind).alias("id_number_kind"))
            fr = fr.drop("_fix")
            columns.setdefault(str(field_), FIELD_LABELS.get(str(field_), str(field_)))
        out.append(dataclasses.replace(t, frame=fr, columns=columns))
    return out, who.select("file", "sheet", "row").unique().height


def _pair_fp(r_fp: pl.Expr, s_fp: pl.Expr) -> pl.Expr:
    return pl.concat_str([r_fp, s_fp.fill_null("")], separator="\x1e")


def _hash_col(expr_frame: pl.DataFrame, col: str) -> pl.Series:
    return expr_frame[col].map_elements(lambda t: _sha(t), return_dtype=pl.String)


def apply_links(
    matches: pl.DataFrame, records: Mapping[str, pl.DataFrame], decisions: pl.DataFrame | None
) -> tuple[pl.DataFrame, dict[str, int]]:
    """Clerks' confirmed pairs become matched links (via 'clerk'); rejected pairs go.

    ``matches`` has the stored shape (pipeline.match_all). A decision applies only while
    the pair's records are unchanged (same fingerprint) and the reviewers agree.
    """
    counts = {"clerk_links": 0, "clerk_rejections": 0}
    eff = effective_decisions(decisions).filter(
        ~pl.col("conflict") & pl.col("decision_code").is_in(["confirm", "reject"]) & pl.col("system").is_not_null()
        & pl.col("system_identity").is_not_null()
    )
    if eff.height == 0:
        return matches, counts
    r_id = identities(records["roster"], "roster").select(
        pl.col("rec").cast(pl.UInt32).alias("roster_rec"), pl.col("identity").alias("roster_identity"),
        pl.col("fp").alias("r_fp"), pl.col("file").alias("roster_file"), pl.col("sheet").alias("roster_sheet"),
        pl.col("row").alias("roster_row"),
    )
    pairs = []
    for system in SYSTEMS:
        if system not in records:
            continue
        s_id = identities(records[system], system).select(
            pl.col("rec").cast(pl.UInt32).alias("system_rec"), pl.col("identity").alias("system_identity"),
            pl.col("fp").alias("s_fp"), pl.col("file").alias("system_file"), pl.col("sheet").alias("system_sheet"),
            pl.col("row").alias("system_row"),
        )
        pairs.append(
            eff.filter(pl.col("system") == system)
            .join(r_id, on="roster_identity")
            .join(s_id, on="system_identity")
        )
    p = pl.concat(pairs, how="vertical_relaxed") if pairs else pl.DataFrame()
    if p.height == 0:
        return matches, counts
    p = p.with_columns(_pair_fp(pl.col("r_fp"), pl.col("s_fp")).alias("_fp"))
    p = p.with_columns(_hash_col(p, "_fp").alias("_fp")).filter(pl.col("_fp") == pl.col("fingerprint"))
    key = ["roster_rec", "system", "system_rec"]
    m = matches.with_columns(pl.col("roster_rec").cast(pl.UInt32), pl.col("system_rec").cast(pl.UInt32))
    reject = p.filter(pl.col("decision_code") == "reject").select(key).unique()
    if reject.height:
        before = m.height
        m = m.join(reject, on=key, how="anti")
        counts["clerk_rejections"] = before - m.height
    confirm = p.filter(pl.col("decision_code") == "confirm").unique(key, keep="last")
    if confirm.height:
        # The clerk's pair replaces whatever else that roster row was linked to in that system.
        added = _clerk_links(matches, confirm, key).select(m.columns).cast(m.schema)
        m = m.join(confirm.select("roster_rec", "system"), on=["roster_rec", "system"], how="anti").vstack(added)
        counts["clerk_links"] = confirm.height
    return m.sort(["roster_rec", "system"], maintain_order=True), counts


def _clerk_links(matches: pl.DataFrame, confirm: pl.DataFrame, key: list[str]) -> pl.DataFrame:
    old = matches.with_columns(pl.col("roster_rec").cast(pl.UInt32), pl.col("system_rec").cast(pl.UInt32))
    base = confirm.select(
        *key, "roster_file", "roster_sheet", "roster_row", "system_file", "system_sheet", "system_row",
        "reviewers", pl.col("decided_at").cast(pl.String).alias("_at"),
    ).join(old.drop("roster_file", "roster_sheet", "roster_row", "system_file", "system_sheet", "system_row", strict=False),
           on=key, how="left")
    why = [
        json.dumps({**(json.loads(w) if w else {}), "clerk": {"reviewers": r, "decided_at": a}}, ensure_ascii=False)
        for w, r, a in zip(base["why"].to_list(), base["reviewers"].to_list(), base["_at"].to_list())
    ]
    out = base.with_columns(
        pl.lit("matched").alias("status"),
        pl.lit("clerk").alias("via"),
        pl.col("score").fill_null(1.0),
        pl.col("weight").fill_null(0.0),
        pl.Series("why", why, dtype=pl.String),
    )
    for c in matches.columns:
        if c not in out.columns:
            out = out.with_columns(pl.lit(None).alias(c))
    return out


def annotate(
    discrepancies: pl.DataFrame, records: Mapping[str, pl.DataFrame], decisions: pl.DataFrame | None
) -> tuple[pl.DataFrame, dict[str, int]]:
    """Keys and fingerprints on every discrepancy; decided items out, changed ones reopened.

    Adds ``item_key``, ``item_ref`` (1.. within this run, by key), ``fingerprint``,
    ``roster_identity``, ``system_identity``, ``review_state`` (null, ``reopened`` or
    ``conflict``) and ``CARRIED_COLUMNS``; reopened and conflicting items, and items marked
    已更正 that are still there, get a note in front of ``message``.
    """
    d = discrepancies.with_row_index("_pos")
    r_id = identities(records["roster"], "roster", d.select("file", "sheet", "row")).select(
        "file", "sheet", "row", pl.col("identity").alias("roster_identity"), pl.col("fp").alias("r_fp")
    ).unique(["file", "sheet", "row"], keep="first")
    d = d.join(r_id.cast({"row": d.schema["row"]}), on=["file", "sheet", "row"], how="left", maintain_order="left")
    s_parts = []
    for system in SYSTEMS:
        if system in records:
            at = d.filter(pl.col("system") == system).select(
                pl.col("system_file").alias("file"), pl.col("system_sheet").alias("sheet"), pl.col("system_row").alias("row"))
            s_parts.append(identities(records[system], system, at).select(
                pl.lit(system).alias("system"), pl.col("file").alias("system_file"), pl.col("sheet").alias("system_sheet"),
                pl.col("row").alias("system_row"), pl.col("identity").alias("system_identity"), pl.col("fp").alias("s_fp"),
            ))
    s_id = pl.concat(s_parts).unique(["system", "system_file", "system_sheet", "system_row"], keep="first").cast(
        {"system_row": d.schema["system_row"]}
    )
    d = d.join(s_id, on=["system", "system_file", "system_sheet", "system_row"], how="left", maintain_order="left")
    school_part = pl.when(pl.col("kind") == "duplicate_claim").then(pl.col("school").fill_null("")).otherwise(pl.lit(""))
    d = d.with_columns(
        pl.concat_str(
            [pl.col("kind"), pl.col("system").fill_null(""), pl.col("field").fill_null(""),
             pl.col("roster_identity").fill_null(pl.format("row:{}|{}|{}", "file", "sheet", "row")),
             pl.col("system_identity").fill_null(""), school_part],
            separator="\x1f",
        ).alias("_key"),
        pl.when(pl.col("system_identity").is_null()).then(pl.col("r_fp").fill_null(""))
        .otherwise(_pair_fp(pl.col("r_fp").fill_null(""), pl.col("s_fp"))).alias("_fp"),
    )
    d = d.with_columns(_hash_col(d, "_key").alias("item_key"), _hash_col(d, "_fp").alias("fingerprint"))
    # The same child twice in one roster: same key, told apart by position (file, sheet, row).
    d = d.sort(["item_key", "file", "sheet", "row"]).with_columns(pl.int_range(pl.len()).over("item_key").alias("_n"))
    d = d.with_columns(
        pl.when(pl.col("_n") > 0).then(pl.format("{}#{}", pl.col("item_key"), pl.col("_n") + 1)).otherwise(pl.col("item_key")).alias("item_key")
    ).sort("_pos")

    eff = effective_decisions(decisions)
    counts = {"review_suppressed": 0, "review_reopened": 0, "review_conflicts": 0}
    state = pl.lit(None, dtype=pl.String)
    if eff.height:
        d = d.join(
            eff.select("item_key", pl.col("decision_code").alias("_code"), pl.col("fingerprint").alias("_dfp"),
                       pl.col("conflict").alias("_conflict"), pl.col("detail").alias("_detail"),
                       pl.col("reviewers").alias("_who"), pl.col("decided_at").alias("_at"),
                       pl.col("corrected_value").alias("_cv")),
            on="item_key", how="left", maintain_order="left",
        )
        confirmed_pairs = eff.filter(~pl.col("conflict") & (pl.col("decision_code") == "confirm")).select(
            "roster_identity", "system_identity", pl.col("fingerprint").alias("_pfp"), pl.lit(True).alias("_pair_ok")
        ).unique(["roster_identity", "system_identity", "_pfp"])
        d = d.join(confirmed_pairs, left_on=["roster_identity", "system_identity", "fingerprint"],
                   right_on=["roster_identity", "system_identity", "_pfp"], how="left", maintain_order="left")
        decided = pl.col("_code").is_not_null() & ~pl.col("_conflict").fill_null(False)
        # Only a judgement on the records (same person or not) settles an item whose records
        # did not change; 已更正 settles nothing by itself: the corrected record must show it.
        judged = decided & pl.col("_code").is_in(["confirm", "reject"])
        same = judged & (pl.col("_dfp") == pl.col("fingerprint"))
        pair_done = pl.col("_pair_ok").fill_null(False) & pl.col("kind").is_in(list(PAIR_KINDS))
        d = d.with_columns((same | pair_done).alias("_gone"))
        counts["review_suppressed"] = int(d["_gone"].sum())
        d = d.filter(~pl.col("_gone"))
        reopened = judged & (pl.col("_dfp") != pl.col("fingerprint"))
        still_open = decided & (pl.col("_code") == "corrected")
        conflict = pl.col("_conflict").fill_null(False)
        label = pl.col("_code").replace_strict(dict(DECISION_LABEL_OF), default=pl.col("_code"))
        when = pl.format("（核实人 {}，{}）", pl.col("_who"), pl.col("_at").dt.convert_time_zone("Asia/Shanghai").dt.strftime("%Y-%m-%d"))
        shown_fix = pl.when(pl.col("_cv").is_null()).then(pl.lit("")).when(pl.col("kind").is_in(list(ID_KINDS))) \
            .then(pl.lit("（更正值为身份证号）")).otherwise(pl.format("（更正为 {}）", pl.col("_cv")))
        d = d.with_columns(
            pl.when(conflict).then(pl.lit("conflict")).when(reopened | still_open).then(pl.lit("reopened"))
            .otherwise(state).alias("review_state"),
            pl.when(conflict).then(pl.format(CONFLICT_TEXT, pl.col("_detail")) + pl.col("message"))
            .when(reopened).then(pl.format(REOPENED_TEXT, when, label) + pl.col("message"))
            .when(still_open).then(pl.format(STILL_OPEN_TEXT, when, shown_fix) + pl.col("message"))
            .otherwise(pl.col("message")).alias("message"),
        )
        counts["review_reopened"] = int((d["review_state"] == "reopened").sum())
        counts["review_conflicts"] = int((d["review_state"] == "conflict").sum())
    else:
        d = d.with_columns(state.alias("review_state"))
    d = d.join(carried_forward(decisions), on="item_key", how="left", maintain_order="left")
    refs = d.select("item_key").sort("item_key").with_row_index("item_ref", offset=1).cast({"item_ref": pl.Int64})
    d = d.join(refs, on="item_key", how="left", maintain_order="left")
    keep = list(discrepancies.columns) + ["item_key", "item_ref", "fingerprint", "roster_identity", "system_identity",
                                          "review_state", *CARRIED_COLUMNS]
    return d.select(keep), counts


# --------------------------------------------------------------------------- public notice


def eligible_students(
    roster: pl.DataFrame, systems: Mapping[str, pl.DataFrame], matches: pl.DataFrame,
    discrepancies: pl.DataFrame, qualifying_poverty: Iterable[str], qualifying_dibao: Iterable[str],
) -> pl.DataFrame:
    """Roster students confirmed eligible: a matched link to a household that still
    qualifies, and no open problem about eligibility (not found, exited, stopped, claimed
    twice, doubtful match). Columns: school, name, id_number, stage, grade, aid_item, amount,
    file, sheet, row."""
    parts = []
    # Narrow before filtering: the links carry every field's contribution (`why`), the
    # exports every column; filtering them whole would copy all of it (a prefecture's GB).
    sure = matches.select("system", "status", "roster_rec", "system_rec")
    for name, s in systems.items():
        if name == "filing" and "poverty_status_norm" in s.columns:
            ok = s.select("rec", "poverty_status_norm").filter(pl.col("poverty_status_norm").is_in(list(qualifying_poverty)))
        elif name == "dibao" and "status_norm" in s.columns:
            ok = s.select("rec", "status_norm").filter(pl.col("status_norm").is_in(list(qualifying_dibao)))
        else:
            continue
        parts.append(
            sure.filter((pl.col("system") == name) & (pl.col("status") == "matched"))
            .join(ok.select(pl.col("rec").cast(pl.UInt32).alias("system_rec")), on="system_rec")
            .select(pl.col("roster_rec").cast(pl.UInt32))
        )
    cols = ["school", "name", "id_number", "stage", "grade", "aid_item", "amount", "file", "sheet", "row"]
    if not parts:
        return pl.DataFrame(schema={c: (pl.Int64 if c == "row" else pl.String) for c in cols})
    good = pl.concat(parts).unique()
    blocking = discrepancies.select("kind", "file", "sheet", "row").filter(
        pl.col("kind").is_in(list(NOTICE_BLOCKING))
    ).select("file", "sheet", "row").unique()
    r = roster.select(
        pl.col("rec").cast(pl.UInt32).alias("roster_rec"), "id_status", "id_norm",
        *[pl.col(c) if c in roster.columns else pl.lit(None, dtype=pl.String).alias(c) for c in cols],
    )
    out = (
        r.join(good, on="roster_rec")
        .join(blocking.cast({"row": r.schema["row"]}), on=["file", "sheet", "row"], how="anti")
        .with_columns(pl.when(pl.col("id_status").is_in(list(USABLE))).then(pl.col("id_norm")).otherwise(pl.col("id_number")).alias("id_number"))
        .sort(["school", "file", "sheet", "row"], nulls_last=True)
        .select(cols)
    )
    return out
