"""A clerk's round trip through the real office program: LibreOffice Calc fills the workbooks.

    .venv/bin/python benchmarks/libreoffice_roundtrip.py [--households N] [--seed S] [--keep DIR]

Generates a county, runs the night (``recon run``), then has LibreOffice (headless, driven
through its own UNO API by the system Python: ``benchmarks/_uno_fill.py``) type decisions
into school workbooks — a confirmed pair, a pair in other words (是同一人), a rejected pair,
a corrected amount, a corrected ID typed as text, an ID typed into a number cell, a
待核实 with a note — and save them alternately as xlsx (``Calc MS Excel 2007 XML``) and as
xls (``MS Excel 97``). Imports them with ``recon review import``, runs the night again
and prints what was applied, item by item. IDs are printed masked.

Needs ``apt-get install -y libreoffice-calc fonts-noto-cjk python3-uno``; exits 2 without it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import openpyxl
import polars as pl

from countygen import SynthConfig, generate_county
from reconcile import report, store
from reconcile.vocabulary import kind_label, mask_id

ROOT = Path(__file__).resolve().parent.parent
RECON = ROOT / ".venv" / "bin" / "recon"
SYSTEM_PYTHON = "/usr/bin/python3"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    return subprocess.run(cmd, capture_output=True, text=True, env=env)


def _night(county: Path, db: Path, reports: Path) -> None:
    notes = json.loads((county / "truth" / "notes.json").read_text(encoding="utf-8"))
    cmd = [str(RECON), "run", "--inbox", str(county / "inbox"), "--db", str(db), "--reports", str(reports),
           "--as-of", notes["reference_date"]]
    if (county / "config").is_dir():
        cmd += ["--config", str(county / "config")]
    t0 = time.perf_counter()
    proc = _run(cmd)
    if proc.returncode != 0:
        sys.exit(f"recon run failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    print(f"recon run: {time.perf_counter() - t0:.0f} s")


def _latest(db: Path) -> tuple[str, dict, pl.DataFrame]:
    con = store.open_readonly(db)
    try:
        run_id, counts = con.execute("SELECT run_id, counts FROM latest_run").fetchall()[0]
        d = pl.from_arrow(con.sql("SELECT * FROM discrepancies WHERE run_id = ?", params=[run_id]).to_arrow_table())
    finally:
        con.close()
    return run_id, json.loads(counts), d  # type: ignore[return-value]


def _record(db: Path, run_id: str, it: dict) -> dict:
    con = store.open_readonly(db)
    try:
        got = con.execute("SELECT name, id_norm, amount FROM records WHERE run_id = ? AND source = 'roster' AND file = ? "
                          "AND sheet = ? AND row = ?", [run_id, it["file"], it["sheet"], it["row"]]).fetchall()
    finally:
        con.close()
    return dict(zip(("name", "id_norm", "amount"), got[0])) if got else {}


def _truth(county: Path) -> pl.DataFrame:
    persons = pl.read_csv(county / "truth" / "persons.csv", infer_schema_length=0).select("person_id", "id_number")
    recs = pl.read_csv(county / "truth" / "records.csv", infer_schema_length=0).filter(pl.col("source") == "roster")
    return recs.join(persons, on="person_id").select("file", "sheet", pl.col("row").cast(pl.Int64), "id_number")


def _plan(d: pl.DataFrame, truth: pl.DataFrame) -> list[tuple[dict, str, tuple]]:
    """(item, what the clerk does, (decision, corrected, note, reviewer, how the ID is typed))."""
    used: set[int] = set()

    def take(kind: str, where: pl.Expr | None = None) -> dict | None:
        sel = d.filter((pl.col("kind") == kind) & ~pl.col("item_ref").is_in(list(used)))
        if where is not None:
            sel = sel.filter(where)
        if sel.height == 0:
            return None
        row = sel.sort("item_ref").row(0, named=True)
        used.add(row["item_ref"])
        return row

    wishes: list[tuple[dict | None, str, tuple]] = []
    inv = d.filter(pl.col("kind") == "id_invalid").join(truth, on=["file", "sheet", "row"])
    fix = take("id_invalid", pl.col("item_ref").is_in(inv["item_ref"].to_list()))
    true_id = inv.filter(pl.col("item_ref") == fix["item_ref"])["id_number"][0] if fix else None
    wishes += [
        (take("name_mismatch"), "confirm the pair", ("确认是同一人", None, "对照户口簿", "王老师", "string")),
        (take("name_mismatch"), "confirm in other words", ("是同一人", None, None, "王老师", "string")),
        (take("needs_review") or take("name_mismatch"), "reject the pair", ("不是同一人", None, None, "王老师", "string")),
        (take("subsidy_mismatch"), "correct the amount", ("已更正", "{system_value}", None, "王老师", "string")),
        (fix, "correct the ID (typed as text)", ("已更正", true_id, None, "王老师", "string")),
        (take("id_mismatch") or take("id_invalid"), "an ID typed into a number cell",
         ("已更正", 4.33124201604214e17, None, "王老师", "value")),
        (take("not_found"), "待核实 with a note", ("待核实", None, "等家长带户口簿来", "王老师", "string")),
    ]
    out = []
    for it, what, (dec, corr, note, who, how) in wishes:
        if it is None:
            continue
        if corr == "{system_value}":
            corr = it["system_value"]
        out.append((it, what, (dec, corr, note, who, how)))
    return out


def _cells(book: Path, refs: dict[int, tuple]) -> list[list]:
    ws = openpyxl.load_workbook(book)[report.SHEET_PROBLEMS]
    col = {c.value: c.column_letter for c in ws[report.HEADER_ROW]}
    ref_col = [c.value for c in ws[report.HEADER_ROW]].index(report.COL_REF)
    cells = []
    for row in ws.iter_rows(min_row=report.HEADER_ROW + 1):
        ref = row[ref_col].value
        if ref in refs:
            dec, corr, note, who, how = refs[ref]
            for h, v in zip(report.REVIEW_HEADERS, (dec, corr, note, who)):
                if v is not None:
                    kind = how if h == report.COL_CORRECTED else "string"
                    cells.append([report.SHEET_PROBLEMS, f"{col[h]}{row[0].row}", v, kind])
    return cells


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--households", type=int, default=250)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--keep", type=Path, default=None, help="work in (and keep) this folder")
    args = ap.parse_args()
    if not shutil.which("soffice") or subprocess.run([SYSTEM_PYTHON, "-c", "import uno"], capture_output=True).returncode:
        print("needs LibreOffice and python3-uno: apt-get install -y libreoffice-calc fonts-noto-cjk python3-uno")
        sys.exit(2)
    work = args.keep or Path(tempfile.mkdtemp(prefix="recon-lo-"))
    county, db, reports, back = work / "county", work / "recon.duckdb", work / "reports", work / "returned"
    back.mkdir(parents=True, exist_ok=True)
    if not (county / "inbox").is_dir():
        generate_county(county, SynthConfig(households=args.households, seed=args.seed))
    _night(county, db, reports)
    run1, _, d1 = _latest(db)
    night_dir = max(p for p in reports.iterdir() if p.is_dir() and not p.name.startswith("."))
    books = sorted(night_dir.glob("*.xlsx"))
    plan = _plan(d1, _truth(county))
    where: dict[int, Path] = {}
    for b in books:
        ws = openpyxl.load_workbook(b, read_only=True)[report.SHEET_PROBLEMS]
        header = next(ws.iter_rows(min_row=report.HEADER_ROW, max_row=report.HEADER_ROW, values_only=True))
        i = list(header).index(report.COL_REF)
        for r in ws.iter_rows(min_row=report.HEADER_ROW + 1, values_only=True):
            if r[i] is not None:
                where.setdefault(int(r[i]), b)
    by_book: dict[Path, dict[int, tuple]] = {}
    for it, _, fill in plan:
        by_book.setdefault(where[it["item_ref"]], {})[it["item_ref"]] = fill
    jobs, fmt_of = [], {}
    for n, (book, refs) in enumerate(sorted(by_book.items())):
        xls = n % 2 == 1
        dst = back / (book.stem + (".xls" if xls else ".xlsx"))
        jobs.append({"src": str(book), "dst": str(dst), "filter": "MS Excel 97" if xls else "Calc MS Excel 2007 XML",
                     "cells": _cells(book, refs)})
        for ref in refs:
            fmt_of[ref] = dst.suffix
    plan_file = work / "uno_plan.json"
    plan_file.write_text(json.dumps({"port": _free_port(), "profile": str(work / "lo-profile"), "books": jobs},
                                    ensure_ascii=False), encoding="utf-8")
    t0 = time.perf_counter()
    uno = subprocess.run([SYSTEM_PYTHON, str(ROOT / "benchmarks" / "_uno_fill.py"), str(plan_file)],
                         capture_output=True, text=True, timeout=600)
    print(uno.stdout.strip() or uno.stderr.strip()[-2000:])
    print(f"LibreOffice filled and saved {len(jobs)} workbook(s) in {time.perf_counter() - t0:.0f} s: "
          f"{sum(j['dst'].endswith('.xlsx') for j in jobs)} xlsx, {sum(j['dst'].endswith('.xls') for j in jobs)} xls")
    returned = [Path(j["dst"]) for j in jobs]
    imp = _run([str(RECON), "review", "import", *map(str, returned), "--db", str(db)])
    print(f"$ recon review import {' '.join(p.name for p in returned)}")
    for line in (imp.stderr + imp.stdout).splitlines():
        print("   ", _short(line, work))
    _night(county, db, reports)
    run2, counts, d2 = _latest(db)
    state = dict(zip(d2["item_key"], d2["review_state"]))
    print(f"next night {run2} (superseded {run1}): clerk_corrections={counts.get('clerk_corrections')} "
          f"clerk_links={counts.get('clerk_links')} clerk_rejections={counts.get('clerk_rejections')} "
          f"review_suppressed={counts.get('review_suppressed')} review_reopened={counts.get('review_reopened')}")
    print(f"{'format':6} {'kind':18} {'what the clerk did':34} tonight")
    for it, what, fill in plan:
        now = _record(db, run2, it)
        if it["item_key"] not in state:
            tonight = "gone (settled)"
        else:
            tonight = "still listed" + (f" ({state[it['item_key']]})" if state[it["item_key"]] else "")
        seen = {"name": now.get("name"), "ID": mask_id(now.get("id_norm")), "amount": now.get("amount")}
        print(f"{fmt_of.get(it['item_ref'], '?'):6} {kind_label(it['kind']):18} {what:34} {tonight}; roster now: "
              + ", ".join(f"{k} {v}" for k, v in seen.items()))
    _carried(reports, d2, plan)
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)


def _carried(reports: Path, d2: pl.DataFrame, plan: list[tuple[dict, str, tuple]]) -> None:
    """What tonight's workbooks show in the editable cells of the items left 待核实."""
    night_dir = max(p for p in reports.iterdir() if p.is_dir() and not p.name.startswith("."))
    for it, what, fill in plan:
        if fill[0] != "待核实":
            continue
        now = d2.filter(pl.col("item_key") == it["item_key"])
        if now.height == 0:
            continue
        ref = now["item_ref"][0]
        for book in sorted(night_dir.glob("*.xlsx")):
            ws = openpyxl.load_workbook(book, read_only=True)[report.SHEET_PROBLEMS]
            rows = ws.iter_rows(min_row=report.HEADER_ROW, values_only=True)
            header = list(next(rows))
            for r in rows:
                if r[header.index(report.COL_REF)] == ref:
                    shown = {h: r[header.index(h)] for h in report.REVIEW_HEADERS}
                    print(f"tonight's {book.name}, item {ref} ({what}): " + ", ".join(f"{h}={v}" for h, v in shown.items()))


def _short(line: str, work: Path) -> str:
    """An import message as printed (recon masks the IDs), the work folder left off."""
    return line.replace(str(work) + "/", "")


if __name__ == "__main__":
    main()
