"""Clerks' decisions: stable item keys, applying decisions, importing returned workbooks.

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
run id; the import looks both up in the run's ``discrepancies`` rows.

Decisions (the ``reviews`` table) are applied by the pure functions here, called from
``pipeline.reconcile``:

- ``corrected_tables``: a corrected ID (``已更正`` with a valid ID) replaces the roster
  cell before normalisation, so everything downstream uses it;
- ``apply_links``: a confirmed pair (``确认是同一人``) becomes a ``matched`` link with
  ``via='clerk'``; a rejected pair (``不是同一人``) is dropped and never proposed again;
- ``annotate``: keys and fingerprints on every discrepancy; decided items with unchanged
  records are left out; changed ones come back (``review_state='reopened'``); two
  reviewers disagreeing is reported on the item (``review_state='conflict'``).

A decision applies while the records behind it are unchanged; ``待核实`` (pending) is stored
(throughput) but decides nothing, and a reviewer's later row replaces their earlier one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import unicodedata
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from .fields import SYSTEMS
from .idcard import is_valid_id
from .ingest import SheetTable
from .vocabulary import (
    DECISION_LABEL_OF, DECISION_LABELS, DECISIONS, ID_KINDS, NOTICE_BLOCKING, PAIR_KINDS, USABLE_ID_STATUSES, mask_id,
)

__all__ = [
    "DECISIONS",
    "DECISION_LABELS",
    "REVIEW_COLUMNS",
    "ID_KINDS",
    "empty_decisions",
    "effective_decisions",
    "identities",
    "corrected_tables",
    "apply_links",
    "annotate",
    "eligible_students",
    "clean_id",
    "ImportReport",
    "import_workbooks",
]

USABLE = USABLE_ID_STATUSES
_LABEL_OF = DECISION_LABEL_OF

REVIEW_COLUMNS: dict[str, pl.DataType] = {
    "review_id": pl.String(), "imported_at": pl.Datetime("us", "UTC"), "reviewer": pl.String(),
    "decision": pl.String(), "decision_code": pl.String(), "corrected_value": pl.String(),
    "note": pl.String(), "item_key": pl.String(), "item_ref": pl.Int64(), "fingerprint": pl.String(),
    "kind": pl.String(), "system": pl.String(), "field": pl.String(), "school": pl.String(),
    "town": pl.String(), "roster_identity": pl.String(), "system_identity": pl.String(),
    "run_id": pl.String(), "workbook": pl.String(), "sheet": pl.String(), "row": pl.Int64(),
}

REOPENED_TEXT = "【记录已变化，请重新核实】此前{}的结论为「{}」，但名单或系统中的相关记录已有变化。"
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


def effective_decisions(decisions: pl.DataFrame | None) -> pl.DataFrame:
    """One row per item: the agreed decision, or ``conflict`` with who said what.

    Each reviewer's latest row counts; ``待核实`` withdraws nothing and decides nothing.
    Columns: item_key, decision_code, corrected_value, fingerprint, roster_identity,
    system_identity, system, kind, reviewers (text), decided_at, conflict (bool), detail.
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
        .sort(["item_key", "reviewer", "imported_at", "_i"], nulls_last=False)
        .unique(["item_key", "reviewer"], keep="last", maintain_order=True)
        .filter(pl.col("decision_code") != "pending")
        .with_columns(
            pl.concat_str([pl.col("decision_code"), pl.col("corrected_value").fill_null("")], separator="=").alias("_sig"),
            pl.format("{}：{}", pl.col("reviewer"), pl.col("decision")).alias("_said"),
        )
        .sort(["item_key", "imported_at", "_i"])
    )
    rows = []
    for key, g in latest.group_by("item_key", maintain_order=True):
        last = g.row(g.height - 1, named=True)
        conflict = g["_sig"].n_unique() > 1
        rows.append({
            "item_key": key[0], "decision_code": last["decision_code"], "corrected_value": last["corrected_value"],
            "fingerprint": last["fingerprint"], "roster_identity": last["roster_identity"],
            "system_identity": last["system_identity"], "system": last["system"], "kind": last["kind"],
            "reviewers": "、".join(sorted(set(g["reviewer"].to_list()))),
            "decided_at": last["imported_at"], "conflict": conflict,
            "detail": "；".join(g["_said"].to_list()),
        })
    return pl.DataFrame(rows, schema=out_schema)


def clean_id(value: Any) -> str | None:
    """A clerk's corrected ID as typed (spaces, full-width, lower-case x) -> 18 chars, or None if invalid."""
    if value is None:
        return None
    text = unicodedata.normalize("NFKC", str(value)).strip().lstrip("'").replace(" ", "").upper()
    if text.endswith(".0"):  # typed into a number cell
        text = text[:-2]
    return text if is_valid_id(text) else None


def corrected_tables(
    tables: Sequence[SheetTable], roster: pl.DataFrame, decisions: pl.DataFrame | None
) -> tuple[list[SheetTable], int]:
    """Roster sheets with clerk-corrected IDs written into their ID cells (and how many)."""
    eff = effective_decisions(decisions)
    fixes = eff.filter(
        ~pl.col("conflict") & (pl.col("decision_code") == "corrected") & pl.col("kind").is_in(list(ID_KINDS))
        & pl.col("corrected_value").is_not_null()
    ).with_columns(pl.col("corrected_value").map_elements(clean_id, return_dtype=pl.String)).drop_nulls("corrected_value")
    if fixes.height == 0 or roster.height == 0:
        return list(tables), 0
    who = identities(roster, "roster").join(
        fixes.select(pl.col("roster_identity").alias("identity"), pl.col("corrected_value").alias("_fix")),
        on="identity",
    ).unique(["file", "sheet", "row"], keep="first").select("file", "sheet", "row", "_fix")
    if who.height == 0:
        return list(tables), 0
    out: list[SheetTable] = []
    for t in tables:
        if t.source != "roster":
            out.append(t)
            continue
        fr = t.frame
        mine = who.filter((pl.col("file") == t.file) & (pl.col("sheet") == t.sheet))
        if mine.height == 0:
            out.append(t)
            continue
        fr = fr.join(mine.select("row", "_fix").cast({"row": fr.schema["row"]}), on="row", how="left", maintain_order="left")
        hit = pl.col("_fix").is_not_null()
        fr = fr.with_columns(
            pl.when(hit).then(pl.col("_fix")).otherwise(pl.col("id_number") if "id_number" in fr.columns else pl.lit(None, pl.String)).alias("id_number"),
            pl.when(hit).then(pl.lit("text")).otherwise(pl.col("id_number_kind") if "id_number_kind" in fr.columns else pl.lit(None, pl.String)).alias("id_number_kind"),
        ).drop("_fix")
        out.append(dataclasses.replace(t, frame=fr, columns={**t.columns, "id_number": t.columns.get("id_number", "身份证号")}))
    return out, who.height


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
    ``conflict``); reopened and conflicting items get a note in front of ``message``.
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
                       pl.col("reviewers").alias("_who"), pl.col("decided_at").alias("_at")),
            on="item_key", how="left", maintain_order="left",
        )
        confirmed_pairs = eff.filter(~pl.col("conflict") & (pl.col("decision_code") == "confirm")).select(
            "roster_identity", "system_identity", pl.col("fingerprint").alias("_pfp"), pl.lit(True).alias("_pair_ok")
        ).unique(["roster_identity", "system_identity", "_pfp"])
        d = d.join(confirmed_pairs, left_on=["roster_identity", "system_identity", "fingerprint"],
                   right_on=["roster_identity", "system_identity", "_pfp"], how="left", maintain_order="left")
        decided = pl.col("_code").is_not_null() & ~pl.col("_conflict").fill_null(False)
        same = decided & (pl.col("_dfp") == pl.col("fingerprint"))
        pair_done = pl.col("_pair_ok").fill_null(False) & pl.col("kind").is_in(list(PAIR_KINDS))
        d = d.with_columns((same | pair_done).alias("_gone"))
        counts["review_suppressed"] = int(d["_gone"].sum())
        d = d.filter(~pl.col("_gone"))
        reopened = decided & (pl.col("_dfp") != pl.col("fingerprint"))
        conflict = pl.col("_conflict").fill_null(False)
        label = pl.col("_code").replace_strict(_LABEL_OF, default=pl.col("_code"))
        when = pl.format("（核实人 {}，{}）", pl.col("_who"), pl.col("_at").dt.convert_time_zone("Asia/Shanghai").dt.strftime("%Y-%m-%d"))
        d = d.with_columns(
            pl.when(conflict).then(pl.lit("conflict")).when(reopened).then(pl.lit("reopened")).otherwise(state).alias("review_state"),
            pl.when(conflict).then(pl.format(CONFLICT_TEXT, pl.col("_detail")) + pl.col("message"))
            .when(reopened).then(pl.format(REOPENED_TEXT, when, label) + pl.col("message"))
            .otherwise(pl.col("message")).alias("message"),
        )
        counts["review_reopened"] = int((d["review_state"] == "reopened").sum())
        counts["review_conflicts"] = int((d["review_state"] == "conflict").sum())
    else:
        d = d.with_columns(state.alias("review_state"))
    refs = d.select("item_key").sort("item_key").with_row_index("item_ref", offset=1).cast({"item_ref": pl.Int64})
    d = d.join(refs, on="item_key", how="left", maintain_order="left")
    keep = list(discrepancies.columns) + ["item_key", "item_ref", "fingerprint", "roster_identity", "system_identity", "review_state"]
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
    for name, s in systems.items():
        # Two columns before filtering: filtering the whole export would copy all of it.
        if name == "filing" and "poverty_status_norm" in s.columns:
            ok = s.select("rec", "poverty_status_norm").filter(pl.col("poverty_status_norm").is_in(list(qualifying_poverty)))
        elif name == "dibao" and "status_norm" in s.columns:
            ok = s.select("rec", "status_norm").filter(pl.col("status_norm").is_in(list(qualifying_dibao)))
        else:
            continue
        parts.append(
            matches.filter((pl.col("system") == name) & (pl.col("status") == "matched"))
            .join(ok.select(pl.col("rec").cast(pl.UInt32).alias("system_rec")), on="system_rec")
            .select(pl.col("roster_rec").cast(pl.UInt32))
        )
    cols = ["school", "name", "id_number", "stage", "grade", "aid_item", "amount", "file", "sheet", "row"]
    if not parts:
        return pl.DataFrame(schema={c: (pl.Int64 if c == "row" else pl.String) for c in cols})
    good = pl.concat(parts).unique()
    blocking = discrepancies.filter(
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


# --------------------------------------------------------------------------- import


@dataclass
class ImportReport:
    """What ``import_workbooks`` did: rows stored, and one message per problem."""

    imported: int = 0
    skipped_blank: int = 0
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    files: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors


def _text(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    t = str(v).strip()
    return t or None


def import_workbooks(paths: Sequence[Path | str], db_path: Path | str, *, now: datetime | None = None) -> ImportReport:
    """Read clerks' returned workbooks and store their decisions in ``reviews``.

    Every refused row or file gets a message naming the file and the row; the rest is
    stored in one atomic publish. Nothing is stored when nothing is valid.
    """
    from openpyxl import load_workbook

    from . import report, store

    rep = ImportReport()
    now = now or datetime.now().astimezone()
    rows: list[dict[str, Any]] = []
    db_path = Path(db_path)
    if not db_path.exists():
        rep.errors.append(f"{db_path}：数据库不存在 (no database)")
        return rep
    con = store.open_readonly(db_path)
    try:
        for raw in paths:
            path = Path(raw)
            name = str(raw)
            rep.files += 1
            try:
                wb = load_workbook(path, data_only=True)
            except Exception as exc:  # noqa: BLE001 - any unreadable file is reported, not raised
                rep.errors.append(f"{name}：无法读取这个文件（{type(exc).__name__}），未导入")
                continue
            meta = report.read_meta(wb)
            if meta is None or report.SHEET_PROBLEMS not in wb.sheetnames:
                rep.errors.append(f"{name}：不是本系统下发的核实表（缺少“{report.SHEET_PROBLEMS}”或隐藏的运行信息），未导入")
                continue
            run_id = meta.get("run_id")
            status = con.execute("SELECT status FROM runs WHERE run_id = ?", [run_id]).fetchall()
            if not status:
                rep.errors.append(f"{name}：这份表来自另一次运行（{run_id}），本数据库中没有该运行，未导入")
                continue
            if status[0][0] != "succeeded":
                rep.errors.append(
                    f"{name}：这份表所属的运行（{run_id}）状态为 {status[0][0]}（已被同一晚的重新运行取代或失败），"
                    "请在最新下发的核实表上填写，未导入"
                )
                continue
            items = {
                r[0]: r[1:]
                for r in con.execute(
                    "SELECT item_ref, item_key, row_hash, fingerprint, kind, system, field, school, town, "
                    "roster_identity, system_identity FROM discrepancies WHERE run_id = ?",
                    [run_id],
                ).fetchall()
            }
            ws = wb[report.SHEET_PROBLEMS]
            head_row = int(meta.get("header_row", "1")) if str(meta.get("header_row", "1")).isdigit() else 1
            header = [(_text(c.value) or "") for c in ws[head_row]]
            col = {h: i for i, h in enumerate(header) if h}
            need = [report.COL_REF, report.COL_HASH, *report.REVIEW_HEADERS]
            missing = [h for h in need if h not in col]
            if missing:
                rep.errors.append(f"{name}：表头被改动，找不到列 {'、'.join(missing)}，未导入")
                continue
            for r, cells in enumerate(ws.iter_rows(min_row=head_row + 1, values_only=True), start=head_row + 1):
                get = lambda h: cells[col[h]] if col[h] < len(cells) else None  # noqa: E731
                decision = _text(get(report.COL_DECISION))
                corrected = _text(get(report.COL_CORRECTED))
                note = _text(get(report.COL_NOTE))
                reviewer = _text(get(report.COL_REVIEWER))
                if not any((decision, corrected, note, reviewer)):
                    rep.skipped_blank += 1
                    continue
                where = f"{name} 第{r}行"
                ref_text = _text(get(report.COL_REF))
                try:
                    ref = int(ref_text) if ref_text is not None else None
                except ValueError:
                    ref = None
                if ref is None or ref not in items:
                    rep.errors.append(f"{where}：找不到这一行对应的问题（问题编号 {ref_text or '空'}），可能是新加或从别的表复制的行，未导入")
                    continue
                key, row_hash, fp, kind, system, fld, school, town, rid, sid = items[ref]
                values = {h: cells[i] if i < len(cells) else None for h, i in col.items()}
                if report.row_hash(values) != row_hash:
                    rep.errors.append(f"{where}：锁定的内容（姓名、身份证号、说明等）被改动过，本行未导入；请在下发的原表上只填写“核实结论”等四列")
                    continue
                if decision is None and corrected is not None:
                    decision = "已更正"
                if decision not in DECISIONS:
                    rep.errors.append(f"{where}：核实结论「{decision or '空'}」无效，应为 {' / '.join(DECISION_LABELS)} 之一，未导入")
                    continue
                code = DECISIONS[decision]
                if reviewer is None:
                    rep.errors.append(f"{where}：没有填写核实人，未导入")
                    continue
                if code in ("confirm", "reject") and not sid:
                    rep.errors.append(f"{where}：这个问题不涉及系统中的某条记录，不能选「{decision}」；请选“已更正”或“待核实”，未导入")
                    continue
                if corrected is not None and (kind in ID_KINDS or fld == "id_number"):
                    fixed = clean_id(corrected)
                    if fixed is None:
                        rep.errors.append(f"{where}：更正后的身份证号「{mask_id(corrected)}」无效（应为18位，出生日期和校验位正确），未导入")
                        continue
                    corrected = fixed
                rows.append({
                    "review_id": uuid.uuid4().hex, "imported_at": now, "reviewer": reviewer, "decision": decision,
                    "decision_code": code, "corrected_value": corrected, "note": note, "item_key": key,
                    "item_ref": ref, "fingerprint": fp, "kind": kind, "system": system, "field": fld,
                    "school": school, "town": town, "roster_identity": rid, "system_identity": sid,
                    "run_id": run_id, "workbook": path.name, "sheet": report.SHEET_PROBLEMS, "row": r,
                })
        new = pl.DataFrame(rows, schema=REVIEW_COLUMNS) if rows else empty_decisions()
        if new.height:
            earlier = store.read_reviews(db_path)
            eff = effective_decisions(pl.concat([earlier, new], how="vertical_relaxed"))
            mine = set(new["item_key"].to_list())
            for c in eff.filter(pl.col("conflict") & pl.col("item_key").is_in(list(mine))).iter_rows(named=True):
                rep.notes.append(f"问题 {c['item_key'][:8]}（{c['kind']}）两位核实人结论不一致：{c['detail']}；今晚的核实表会把它列出来")
    finally:
        con.close()
    if new.height:
        store.add_reviews(db_path, new)
        rep.imported = new.height
    return rep
