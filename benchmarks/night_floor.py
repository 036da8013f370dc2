"""A county night beside its floor, on the same generated county, in one invocation.

    .venv/bin/python benchmarks/night_floor.py [--households 3000] [--dir DIR] [--log FILE]

The floor does the least any tool must: read every file (xlsx and xls with calamine, CSV
with polars, GB18030 when not UTF-8), one hash join on the ID number, write the records
and the links to DuckDB, and the unmatched roster rows to one xlsx per school with
xlsxwriter (constant-memory mode). Then `recon run` as a user runs it (a new process,
Prefect start-up included). Prints both wall times and their ratio (target: <= 5x).
Also prints both in CPU seconds (steadier when the machine is shared). ``--log FILE`` keeps recon's own output (its timestamped step log) for a look at where the time went.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import polars as pl
import xlsxwriter

from _truth import add_county_args, county_dir

ROOT = Path(__file__).resolve().parent.parent
ID_HEADERS = {"roster": ("身份证号", "学生身份证号", "身份证件号"), "dibao": ("成员身份证号",), "filing": ("证件号码", "身份证号")}
HEAD_ROWS = 12  # where a header may stand below title rows


def _grids(path: Path) -> list[tuple[str, pl.DataFrame]]:
    """Every sheet of a file as text cells, no header."""
    if path.suffix.lower() == ".csv":
        data = path.read_bytes()
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            text = data.decode("gb18030")
        frame = pl.read_csv(text.encode(), has_header=False, infer_schema=False, truncate_ragged_lines=True)
        return [("", frame)]
    import fastexcel

    book = fastexcel.read_excel(str(path))
    return [(name, pl.read_excel(path, sheet_name=name, engine="calamine", read_options={"header_row": None},
                                 infer_schema_length=0)) for name in book.sheet_names]


def _records(inbox: Path) -> pl.DataFrame:
    """source, file, sheet, row, id, school for every row under a header with an ID column."""
    out = []
    for source in ("roster", "dibao", "filing"):
        for path in sorted((inbox / source).iterdir()):
            for sheet, grid in _grids(path):
                cols = grid.columns
                head = grid.head(HEAD_ROWS).rows()
                found = next(((i, j) for i, r in enumerate(head) for j, v in enumerate(r)
                              if v is not None and str(v).strip() in ID_HEADERS[source]), None)
                if found is None:
                    continue
                i, j = found
                school = next((k for k, v in enumerate(head[i]) if v is not None and str(v).strip() == "学校"), None)
                body = grid.slice(i + 1).with_row_index("_i")
                out.append(body.select(
                    pl.lit(source).alias("source"), pl.lit(f"{source}/{path.name}").alias("file"), pl.lit(sheet).alias("sheet"),
                    (pl.col("_i").cast(pl.Int64) + i + 2).alias("row"),
                    pl.col(cols[j]).str.strip_chars().str.to_uppercase().alias("id"),
                    (pl.col(cols[school]) if school is not None else pl.lit(path.stem)).alias("school"),
                ).filter(pl.col("id").is_not_null()))
    return pl.concat(out)


def floor(inbox: Path, out: Path) -> dict[str, int]:
    records = _records(inbox)
    roster = records.filter(pl.col("source") == "roster")
    systems = records.filter(pl.col("source") != "roster")
    links = roster.join(systems, on="id", how="inner", suffix="_system")
    con = duckdb.connect(str(out / "floor.duckdb"))
    con.register("r", records.to_arrow())
    con.register("l", links.to_arrow())
    con.execute("create table records as select * from r")
    con.execute("create table links as select * from l")
    con.close()
    unmatched = roster.join(links.select("file", "sheet", "row"), on=["file", "sheet", "row"], how="anti")
    (out / "floor").mkdir()
    for (school,), part in unmatched.group_by("school", maintain_order=True):
        book = xlsxwriter.Workbook(str(out / "floor" / f"{str(school)[:60].replace('/', '_')}.xlsx"),
                                   {"constant_memory": True})
        sheet = book.add_worksheet("未找到")
        for c, name in enumerate(part.columns):
            sheet.write_string(0, c, name)
        for r, row in enumerate(part.iter_rows(), start=1):
            for c, value in enumerate(row):
                sheet.write_string(r, c, "" if value is None else str(value))
        book.close()
    return {"records": records.height, "links": links.height, "unmatched": unmatched.height}


def main() -> None:
    ap = argparse.ArgumentParser()
    add_county_args(ap)
    ap.add_argument("--log", type=Path, default=None, help="write recon run's output here")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="recon-floor-"))
    with county_dir(args) as county:
        try:
            _compare(county, tmp, args.log)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _compare(county: Path, tmp: Path, log: Path | None = None) -> None:
    """Time the floor, then `recon run`, on one county; print both and the ratio."""
    t0, c0 = time.perf_counter(), time.process_time()
    got = floor(county / "inbox", tmp)
    t_floor, c_floor = time.perf_counter() - t0, time.process_time() - c0
    print(f"floor: {t_floor:.1f} s ({got['records']} rows read, {got['links']} links, "
          f"{got['unmatched']} unmatched roster rows written per school)", flush=True)
    notes = json.loads((county / "truth" / "notes.json").read_text(encoding="utf-8"))
    cmd = [str(ROOT / ".venv" / "bin" / "recon"), "run", "--inbox", str(county / "inbox"), "--db",
           str(tmp / "recon.duckdb"), "--reports", str(tmp / "reports"), "--as-of", notes["reference_date"]]
    if (county / "config").is_dir():
        cmd += ["--config", str(county / "config")]
    t0, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    t_run, after = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_CHILDREN)
    c_run = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    if log is not None:
        log.write_text(proc.stdout + proc.stderr, encoding="utf-8")
    if proc.returncode:
        print(proc.stderr[-3000:], file=sys.stderr)
        sys.exit(proc.returncode)
    print(proc.stdout[proc.stdout.find("recon: run"):].splitlines()[1])
    print(f"recon run: {t_run:.1f} s; floor: {t_floor:.1f} s; ratio {t_run / t_floor:.1f}x (target <= 5x)")
    # CPU seconds (all threads and child processes): steadier than wall time on a shared machine.
    print(f"cpu: recon run {c_run:.1f} s; floor {c_floor:.1f} s; ratio {c_run / c_floor:.1f}x")


if __name__ == "__main__":
    main()
