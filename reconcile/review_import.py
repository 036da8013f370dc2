"""Clerks' returned workbooks → the ``reviews`` table: the I/O half of the review loop.

What a clerk sends back is checked like the night's inputs before anything reads it: its
size, and for an xlsx the cells of every sheet (a sheet of a million empty styled cells
is refused in about a second instead of costing minutes and gigabytes). Workbooks are read
with calamine, so an ``.xls`` saved by Excel 97 or LibreOffice (which keep the hidden sheet
and columns) reads like an xlsx. Each workbook stands alone: a bad one is refused with a
message naming the file, the others are imported.

A workbook's rows are found through its run's item map (``store.read_item_map``: item_ref
→ item_key, fingerprint), kept when a same-night rerun supersedes the run; such a row is
tied to tonight's item of the same key, and rows whose item no longer exists get a note.
Decisions are read in the clerk's own words (``review.parse_decision``), corrections are
cleaned (``review.clean_correction``) and a corrected ID is checked against the people
the database knows (``review.judge_corrected_id``). Everything valid is stored in one
atomic publish; every refused row or file gets a message naming the file and the row.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import fastexcel
import polars as pl

from . import policy as pol
from . import report, review, store
from .config import Settings, load_settings
from .vocabulary import DECISION_LABEL_OF, kind_label

__all__ = ["ImportReport", "import_workbooks", "MAX_FILE_BYTES", "MAX_SHEET_CELLS", "MAX_SHEET_ROWS", "MAX_SHEET_COLUMNS"]

MAX_FILE_BYTES = 32 * 1024**2      # a school's workbook is tens of KB; a town's a few MB
MAX_SHEET_CELLS = 500_000          # cells written in one sheet, empty styled ones included
MAX_SHEET_ROWS = 100_000
MAX_SHEET_COLUMNS = 200
MAX_INFLATED = 256 * 1024**2       # all of an xlsx's XML, inflated
_CHUNK = 4 * 1024**2
_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_CELL_REF = re.compile(rb'<c\b[^>]*?\br="([A-Z]{1,3})([0-9]{1,7})"')


@dataclass
class ImportReport:
    """What ``import_workbooks`` did: rows stored, and one message per problem."""

    imported: int = 0
    skipped_blank: int = 0
    unchanged: int = 0  # rows still showing what last night's workbook carried forward
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    files: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors


class _Refused(Exception):
    """A workbook that is not read at all (the message says why, in Chinese)."""


@dataclass
class _Book:
    meta: dict[str, str] | None
    header: list[str]
    rows: list[list[Any]]          # cell values of the problem sheet below its header
    first_row: int                  # the Excel row number of rows[0]
    number_cells: set[int]          # Excel rows whose 更正值 cell holds a number


# --------------------------------------------------------------------------- reading


def _col_number(letters: bytes) -> int:
    n = 0
    for ch in letters:
        n = n * 26 + (ch - 64)
    return n


def _check_xlsx(path: Path) -> None:
    """Refuse an xlsx whose sheets hold more cells, rows or columns than any workbook we
    send out could, before a reader materialises them (inflating in bounded chunks)."""
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise _Refused("文件已损坏，无法打开") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > 10_000 or sum(i.file_size for i in infos) > MAX_INFLATED:
            raise _Refused("文件内容过大或结构异常，无法安全读取")
        budget = MAX_INFLATED
        for info in infos:
            if not (info.filename.startswith("xl/worksheets/") and info.filename.endswith(".xml")):
                continue
            cells = rows = cols = 0
            tail = b""
            with zf.open(info) as fh:
                while chunk := fh.read(_CHUNK):
                    budget -= len(chunk)
                    if budget < 0:
                        raise _Refused("文件内容过大，无法安全读取")
                    buf = tail + chunk
                    cells += chunk.count(b"<c ") + chunk.count(b"<c>")
                    if cells > MAX_SHEET_CELLS:
                        raise _Refused(
                            f"工作表中有超过 {MAX_SHEET_CELLS:,} 个单元格（多为设置了格式的空白单元格），"
                            "无法安全读取；请在下发的原表上填写，不要给整行整列设置格式")
                    for m in _CELL_REF.finditer(buf):
                        cols = max(cols, _col_number(m.group(1)))
                        rows = max(rows, int(m.group(2)))
                    tail = buf[-256:]
            if rows > MAX_SHEET_ROWS or cols > MAX_SHEET_COLUMNS:
                raise _Refused(f"工作表的范围（{rows:,} 行 × {cols:,} 列）远超下发的核实表，无法安全读取；"
                               "请在下发的原表上填写")


def _load(reader: Any, name: str, **kw: Any) -> pl.DataFrame:
    return reader.load_sheet(name, header_row=None, skip_rows=0, **kw).to_polars()


def _header_index(rows: list[tuple[Any, ...]]) -> int:
    """Where the table's header is: the first of the top rows naming the review columns."""
    for i, row in enumerate(rows[:20]):
        texts = {str(v).strip() for v in row if v is not None}
        if report.COL_DECISION in texts and report.COL_REVIEWER in texts:
            return i
    return 0


def _read_book(path: Path) -> _Book:
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            magic = fh.read(8)
    except OSError as exc:
        raise _Refused(f"无法打开（{exc.strerror}）") from None
    if size > MAX_FILE_BYTES:
        raise _Refused(f"文件过大（{size // 1024**2} MB），不是下发的核实表")
    if magic.startswith(b"PK"):
        _check_xlsx(path)
    elif not magic.startswith(_OLE):  # Excel 97 (.xls): 65,536 rows × 256 columns at most
        raise _Refused("不是 Excel 工作簿（.xlsx 或 .xls）")
    try:
        reader = fastexcel.read_excel(path)
        names = list(reader.sheet_names)
        meta = None
        if report.SHEET_META in names:
            grid = _load(reader, report.SHEET_META, dtypes="string")
            meta = report.meta_from_rows(grid.rows()) if grid.width >= 2 else None
        sheet = report.SHEET_PROBLEMS if report.SHEET_PROBLEMS in names else None
        if sheet is None:
            sheet = next((n for n in names if n != report.SHEET_META), None)
        grid = _load(reader, sheet, dtypes="string") if sheet is not None else pl.DataFrame()
        rows = grid.rows() if grid.height else []
        at = _header_index(rows)
        header = [("" if v is None else str(v).strip()) for v in (rows[at] if rows else [])]
        # calamine's grid starts at the sheet's first filled row: place it by the header's row
        # as the workbook says it (rows above the header hold what to fill in).
        head_row = int(meta["header_row"]) if meta and str(meta.get("header_row", "")).isdigit() else at + 1
        number_cells: set[int] = set()
        if report.COL_CORRECTED in header and len(rows) > at + 1:
            idx = header.index(report.COL_CORRECTED)
            typed = _load(reader, sheet, use_columns=[idx], dtypes={idx: "boolean"}).to_series().to_list()
            number_cells = {head_row + i - at for i, v in enumerate(typed) if v is not None and i > at}
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - calamine panics are BaseExceptions; all are reported
        raise _Refused(f"无法读取这个文件（{type(exc).__name__}）") from None
    return _Book(meta, header, rows[at + 1:], head_row + 1, number_cells)


# --------------------------------------------------------------------------- items


@dataclass
class _Run:
    """A workbook's run as the import sees it: its items by item_ref and where they are now."""

    run_id: str
    here: str                                   # the run whose records describe the items now
    items: dict[int, dict[str, Any]]            # item_ref -> item (gone: True when it no longer exists)
    earlier: bool = False                       # superseded: read through the kept item map


_ITEM_COLS = ("item_ref", "item_key", "row_hash", "fingerprint", "kind", "system", "field", "school", "town",
              "roster_identity", "system_identity", "file", "sheet", "row")


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> pl.DataFrame:
    return pl.from_arrow(con.sql(sql, params=params).to_arrow_table())  # type: ignore[return-value]


def _latest(con: duckdb.DuckDBPyConnection) -> str | None:
    got = con.execute("SELECT run_id FROM runs WHERE status = 'succeeded' "
                      "ORDER BY finished_at DESC NULLS LAST, started_at DESC LIMIT 1").fetchall()
    return got[0][0] if got else None


def _resolve_run(con: duckdb.DuckDBPyConnection, db: Path, run_id: str) -> _Run | str:
    """The run's items, or why the workbook can't be imported."""
    status = con.execute("SELECT status FROM runs WHERE run_id = ?", [run_id]).fetchall()
    if not status:
        return f"这份表来自另一次运行（{run_id}），本数据库中没有该运行，未导入"
    cols = ", ".join(_ITEM_COLS)
    if status[0][0] == "succeeded":
        d = _rows(con, f"SELECT {cols} FROM discrepancies WHERE run_id = ?", [run_id])
        return _Run(run_id, run_id, {r["item_ref"]: {**r, "gone": False} for r in d.iter_rows(named=True)})
    kept = store.read_item_map(db, run_id)
    latest = _latest(con)
    if kept.height == 0 or latest is None:
        return (f"这份表所属的运行（{run_id}）没有完成，表中的问题没有保存下来；"
                "请在最新下发的核实表上填写，未导入")
    now = _rows(con, f"SELECT {cols} FROM discrepancies WHERE run_id = ?", [latest]).drop("item_ref", "fingerprint")
    if "row_hash" in kept.columns:
        now = now.drop("row_hash")
    else:
        kept = kept.with_columns(pl.lit(None, pl.String).alias("row_hash"))
    joined = kept.select("item_ref", "item_key", "fingerprint", "row_hash", "kind", "school", "town").join(
        now.drop("kind", "school", "town"), on="item_key", how="left")
    items = {r["item_ref"]: {**r, "gone": r["file"] is None} for r in joined.iter_rows(named=True)}
    return _Run(run_id, latest, items, earlier=True)


# --------------------------------------------------------------------------- corrections


def _student_and_owners(con: duckdb.DuckDBPyConnection, cands: list[dict[str, Any]]) -> None:
    """Fill each ID candidate's ``student`` (its roster record) and ``owners`` (whoever else
    in that run's roster or systems has the corrected ID)."""
    for c in cands:
        it = c["item"]
        got = _rows(con, "SELECT name_norm, birth, gender_norm, stage, grade, school, id_norm FROM records "
                         "WHERE run_id = ? AND source = 'roster' AND file = ? AND sheet = ? AND row = ?",
                    [c["here"], it["file"], it["sheet"], it["row"]])
        c["student"] = got.row(0, named=True) if got.height else {}
        hits = _rows(con, "SELECT source, file, sheet, row, name_norm, head_name_norm, id_norm, head_id_norm, relation "
                          "FROM records WHERE run_id = ? AND (id_norm = ? OR head_id_norm = ?)",
                     [c["here"], c["value"], c["value"]])
        owners = []
        for h in hits.iter_rows(named=True):
            own_row = h["source"] == "roster" and (h["file"], h["sheet"], h["row"]) == (it["file"], it["sheet"], it["row"])
            if h["id_norm"] == c["value"] and not own_row:
                is_head = h["source"] != "roster" and (h["head_id_norm"] == h["id_norm"] or (h["relation"] or "").strip() in ("户主", "本人"))
                role = "student" if h["source"] == "roster" else ("head" if is_head else "member")
                owners.append(review.Owner(h["source"], role, h["name_norm"]))
            if h["head_id_norm"] == c["value"]:
                owners.append(review.Owner(h["source"], "guardian" if h["source"] == "roster" else "head", h["head_name_norm"]))
        c["owners"] = owners


def _reference_day(con: duckdb.DuckDBPyConnection, run_id: str) -> dt.date:
    got = con.execute("SELECT coalesce(as_of, night) FROM runs WHERE run_id = ?", [run_id]).fetchall()
    day = got[0][0] if got and got[0][0] else dt.date.today()
    return dt.date(pol.school_year_of(day), 9, 1)  # ages are taken on 1 September, as the rules do


# --------------------------------------------------------------------------- rows


def _text(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    t = str(v).strip()
    return t or None


def _row_problem(book_rows: dict[str, Any], it: dict[str, Any], number_cell: bool) -> tuple[dict[str, Any] | None, str | None]:
    """One filled row → (decision fields, None) or (None, why it is refused)."""
    decision, corrected = book_rows["decision"], book_rows["corrected"]
    kind = it["kind"]
    if decision is None and corrected is not None:
        decision, code = "已更正", "corrected"
    elif decision is None:
        return None, "只填了备注或核实人，没有选择核实结论；还在核实的请选「待核实」，未导入"
    else:
        code, why = review.parse_decision(decision, book_rows["words"])
        if code is None:
            return None, f"{why}，未导入"
    if book_rows["reviewer"] is None:
        return None, "没有填写核实人，未导入"
    if code in ("confirm", "reject") and not it["system_identity"]:
        return None, (f"这个问题不涉及系统中的某条记录，不能选「{DECISION_LABEL_OF[code]}」；"
                      "请选“已更正”或“待核实”，未导入")
    field_ = review.correctable_field(kind)
    if corrected is not None:
        if code != "corrected":
            return None, f"填写了更正值，但核实结论是「{DECISION_LABEL_OF[code]}」；更正请选「已更正」，未导入"
        if field_ is None:
            return None, (f"「{kind_label(kind)}」这类问题不能用“更正值”更正；请改正名单原文件后选「已更正」"
                          "（更正值留空），或选其他结论，未导入")
        clean, why = review.clean_correction(field_, corrected, number_cell=number_cell)
        if clean is None:
            return None, f"{why}，未导入"
        corrected = clean
    elif code == "corrected" and kind == "id_invalid":
        return None, "名单中的身份证号仍然无效：选「已更正」时请在“更正值”中填写正确的18位身份证号，未导入"
    return {"decision": DECISION_LABEL_OF[code], "decision_code": code, "corrected_value": corrected, "field_": field_}, None


def import_workbooks(paths: Sequence[Path | str], db_path: Path | str, *, now: dt.datetime | None = None,
                     settings: Settings | None = None) -> ImportReport:
    """Read clerks' returned workbooks and store their decisions in ``reviews``.

    Every refused row or file gets a message naming the file and the row; the rest is
    stored in one atomic publish. Nothing is stored when nothing is valid.
    """
    rep = ImportReport()
    now = now or dt.datetime.now().astimezone()
    db_path = Path(db_path)
    try:
        con = store.open_readonly(db_path)
    except FileNotFoundError:
        rep.errors.append(f"{db_path}：数据库不存在 (no database)")
        return rep
    settings = settings or load_settings()
    rows: list[dict[str, Any]] = []
    id_cands: list[dict[str, Any]] = []
    runs: dict[str, _Run | str] = {}
    try:
        earlier = store.read_reviews(db_path)
        carried = {r["item_key"]: r for r in review.carried_forward(earlier).iter_rows(named=True)}
        for raw in paths:
            path, name = Path(raw), str(raw)
            rep.files += 1
            try:
                book = _read_book(path)
            except _Refused as exc:
                rep.errors.append(f"{name}：{exc}，未导入")
                continue
            col = {h: i for i, h in enumerate(book.header) if h}
            if book.meta is None:
                if all(h in col for h in report.REVIEW_HEADERS):
                    rep.errors.append(f"{name}：不是下发的原表（缺少隐藏的运行信息），像是把行复制到了新的工作簿；"
                                      "请在下发的原表上填写后报回，未导入")
                else:
                    rep.errors.append(f"{name}：不是本系统下发的核实表（缺少“{report.SHEET_PROBLEMS}”或隐藏的运行信息），未导入")
                continue
            run_id = book.meta["run_id"]
            if run_id not in runs:
                runs[run_id] = _resolve_run(con, db_path, run_id)
            run = runs[run_id]
            if isinstance(run, str):
                rep.errors.append(f"{name}：{run}")
                continue
            missing = [h for h in (report.COL_REF, report.COL_HASH, *report.REVIEW_HEADERS) if h not in col]
            if missing:
                rep.errors.append(f"{name}：表头被改动，找不到列 {'、'.join(missing)}，未导入")
                continue
            gone = 0
            for i, cells in enumerate(book.rows):
                r = book.first_row + i
                get = lambda h: _text(cells[col[h]]) if col[h] < len(cells) else None  # noqa: E731
                filled = {"decision": get(report.COL_DECISION), "corrected": get(report.COL_CORRECTED),
                          "note": get(report.COL_NOTE), "reviewer": get(report.COL_REVIEWER), "words": settings.review}
                if not any(filled[k] for k in ("decision", "corrected", "note", "reviewer")):
                    rep.skipped_blank += 1
                    continue
                where = f"{name} 第{r}行"
                ref_text = get(report.COL_REF)
                try:
                    ref = int(float(ref_text)) if ref_text is not None else None
                except ValueError:
                    ref = None
                it = run.items.get(ref) if ref is not None else None
                if it is None:
                    rep.errors.append(f"{where}：找不到这一行对应的问题（问题编号 {ref_text or '空'}），可能是新加的行"
                                      "或从别的表复制来的行；请在下发的原表上填写，未导入")
                    continue
                if it["gone"]:
                    gone += 1
                    continue
                values = {h: cells[j] if j < len(cells) else None for h, j in col.items()}
                if it["row_hash"] and report.row_hash(values) != it["row_hash"]:
                    rep.errors.append(f"{where}：锁定的内容（姓名、身份证号、说明等）被改动过，本行未导入；"
                                      "请在下发的原表上只填写“核实结论”等四列")
                    continue
                c = carried.get(it["item_key"])
                if (c is not None and filled["corrected"] is None and filled["reviewer"] == c["carried_reviewer"]
                        and filled["decision"] == c["carried_decision"] and filled["note"] == c["carried_note"]):
                    rep.unchanged += 1  # what last night's workbook showed, returned untouched
                    continue
                parsed, why = _row_problem(filled, it, r in book.number_cells)
                if parsed is None:
                    rep.errors.append(f"{where}：{why}")
                    continue
                row = {
                    "review_id": uuid.uuid4().hex, "imported_at": now, "reviewer": filled["reviewer"],
                    "decision": parsed["decision"], "decision_code": parsed["decision_code"],
                    "corrected_value": parsed["corrected_value"], "note": filled["note"], "item_key": it["item_key"],
                    "item_ref": ref, "fingerprint": it["fingerprint"], "kind": it["kind"], "system": it["system"],
                    "field": it["field"], "school": it["school"], "town": it["town"],
                    "roster_identity": it["roster_identity"], "system_identity": it["system_identity"],
                    "run_id": run.run_id, "workbook": path.name, "sheet": report.SHEET_PROBLEMS, "row": r,
                }
                if parsed["field_"] == "id_number" and parsed["corrected_value"] is not None:
                    id_cands.append({"row": row, "item": it, "here": run.here, "value": parsed["corrected_value"],
                                     "where": where})
                rows.append(row)
            if gone:
                rep.notes.append(f"{name}：有 {gone} 行填写的问题在这份表下发后的重新运行中已不存在"
                                 "（记录已变化或问题已解决），这些行不再需要处理，未导入")
            if run.earlier:
                rep.notes.append(f"{name}：这份表来自同一晚被重新运行取代的运行（{run.run_id}），已按问题编号对应到最新的运行导入")
        _judge_ids(con, id_cands, rows, rep, settings)
        new = pl.DataFrame(rows, schema=review.REVIEW_COLUMNS) if rows else review.empty_decisions()
        if new.height:
            _report_conflicts(con, earlier, new, runs, rep)
    finally:
        con.close()
    if new.height:
        store.add_reviews(db_path, new)
        rep.imported = new.height
    return rep


def _judge_ids(con: duckdb.DuckDBPyConnection, cands: list[dict[str, Any]], rows: list[dict[str, Any]],
               rep: ImportReport, settings: Settings) -> None:
    """Refuse corrected IDs that belong to someone else or give an age the stage can't have."""
    if not cands:
        return
    _student_and_owners(con, cands)
    days: dict[str, dt.date] = {}
    words = dict(settings.codes.get("stage", {}))
    refused = set()
    for c in cands:
        day = days.setdefault(c["here"], _reference_day(con, c["here"]))
        ok, message = review.judge_corrected_id(c["value"], c["student"], c["owners"], day, settings.checks, words)
        if not ok:
            refused.add(id(c["row"]))
            rep.errors.append(f"{c['where']}：更正后的身份证号不能采用：{message}，未导入")
        elif message:
            rep.notes.append(f"{c['where']}：{message}")
    rows[:] = [r for r in rows if id(r) not in refused]


def _report_conflicts(con: duckdb.DuckDBPyConnection, earlier: pl.DataFrame, new: pl.DataFrame,
                      runs: dict[str, _Run | str], rep: ImportReport) -> None:
    """Name each item this import leaves in disagreement: student, kind, who said what."""
    eff = review.effective_decisions(pl.concat([earlier, new], how="vertical_relaxed"))
    mine = set(new["item_key"].to_list())
    by_key = {it["item_key"]: (run.here, it) for run in runs.values() if isinstance(run, _Run) for it in run.items.values()}
    for c in eff.filter(pl.col("conflict") & pl.col("item_key").is_in(list(mine))).iter_rows(named=True):
        here, it = by_key.get(c["item_key"], (None, None))
        who = "（学生不详）"
        if it is not None and it.get("file") is not None:
            got = con.execute("SELECT name FROM records WHERE run_id = ? AND source = 'roster' AND file = ? "
                              "AND sheet = ? AND row = ?", [here, it["file"], it["sheet"], it["row"]]).fetchall()
            school = it.get("school") or ""
            who = f"学生「{got[0][0] if got else '?'}」（{school}{'，' if school else ''}名单第{it['row']}行）"
        rep.notes.append(f"{who}的「{kind_label(c['kind'])}」核实结论不一致：{c['detail']}；"
                         "不会采用任何一方，今晚的核实表会把它列出来")
