"""The night itself, with real processes: kill -9 at every step of a write, two writers at
once, and the same inputs giving the same tables and workbook cells (issue 6).

Writers run as subprocesses of this file (`python tests/test_night.py write ...`), so a kill
is a real SIGKILL of a process holding the lock and DuckDB files. The store's test hook
`RECON_TEST_PAUSE_AT='{begin|finish|fail}:{after_copy|after_change|before_replace|
after_replace}'` makes the writer stop at that point and say so in a marker file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NIGHT = date(2026, 11, 23)
T0 = datetime(2026, 11, 23, 2, 0, tzinfo=timezone(timedelta(hours=8)))


# ---- the writer subprocess ----------------------------------------------------------------


def _frames(tag: str, n: int):
    import polars as pl

    return {
        "records": pl.DataFrame({
            "source": ["roster"] * n, "file": [f"roster/{tag}.xlsx"] * n, "sheet": ["S"] * n,
            "row": pl.Series(range(2, n + 2), dtype=pl.Int64),
            "rec": pl.Series(range(n), dtype=pl.UInt32), "name_norm": [f"{tag}{i}" for i in range(n)],
        }),
        "discrepancies": pl.DataFrame({
            "kind": ["not_found"] * n, "severity": ["high"] * n, "source": ["roster"] * n,
            "file": [f"roster/{tag}.xlsx"] * n, "sheet": ["S"] * n,
            "row": pl.Series(range(2, n + 2), dtype=pl.Int64), "message": ["两系统均未找到"] * n,
        }),
    }


def _write(db: str, run_id: str, n: int, wait_s: float) -> int:
    """One whole run under the lock, like the flow: begin, finish. Exit 0 or 2 (locked)."""
    from reconcile import store
    from reconcile.errors import RunLockedError

    try:
        with store.RunLock(Path(db), wait_s=wait_s):
            print("locked", flush=True)
            store.begin_run(Path(db), run_id=run_id, started_at=T0, night=NIGHT, as_of=NIGHT,
                            parameters={})
            store.finish_run(Path(db), run_id=run_id, finished_at=T0, counts={"roster_rows": n},
                             tables=_frames(run_id, n))
    except RunLockedError as exc:
        print(f"refused: {exc}", file=sys.stderr, flush=True)
        return 2
    return 0


def _spawn(db: Path, run_id: str, n: int = 50_000, *, pause: str | None = None,
           marker: Path | None = None, wait_s: float = 0.0) -> subprocess.Popen:
    env = dict(os.environ)
    env.pop("RECON_TEST_PAUSE_AT", None)
    if pause:
        env.update(RECON_TEST_PAUSE_AT=pause, RECON_TEST_PAUSE_FILE=str(marker))
    return subprocess.Popen(
        [sys.executable, __file__, "write", str(db), run_id, str(n), str(wait_s)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    t = time.monotonic()
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"writer ended early: {proc.communicate()}")
        if time.monotonic() - t > timeout:
            raise AssertionError("writer never reached the pause point")
        time.sleep(0.05)


def _q(db: Path, sql: str) -> list[tuple]:
    from reconcile.store import open_readonly

    con = open_readonly(db)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


# ---- kill -9 -------------------------------------------------------------------------------

POINTS = [f"{op}:{pt}" for op in ("begin", "finish")
          for pt in ("after_copy", "after_change", "before_replace", "after_replace")]


@pytest.mark.parametrize("point", POINTS)
def test_kill_9_mid_write_keeps_last_good_results(tmp_path: Path, point: str) -> None:
    db = tmp_path / "recon.duckdb"
    assert _write(str(db), "good", 1000, 0) == 0        # the last good run (in this process)
    marker = tmp_path / "paused"
    victim = _spawn(db, "killed", n=20_000, pause=point, marker=marker)
    _wait_for(marker, victim)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=30)

    # The last good results are readable and complete: the earlier run's, or the killed
    # run's when it died after its own publish had completed.
    published = point == "finish:after_replace"
    last, n = ("killed", 20_000) if published else ("good", 1000)
    assert _q(db, "select run_id, count(*) from records group by run_id") == [(last, n)]
    assert _q(db, f"select count(*) from discrepancies where run_id = '{last}'") == [(n,)]
    status = dict(_q(db, "select run_id, status from runs"))
    assert status["good"] == ("superseded" if published else "succeeded")
    begun = not point.startswith("begin") or point == "begin:after_replace"
    assert status.get("killed") == ("succeeded" if published else "running" if begun else None)

    # The next run succeeds (the dead writer's lock died with it) and marks the killed run
    # failed with the reason; the killed run's temp files are gone.
    assert _write(str(db), "next", 500, 0) == 0
    rows = dict(_q(db, "select run_id, status from runs"))
    assert rows["next"] == "succeeded" and rows["good"] == "superseded"
    if begun and not published:
        [(st, err)] = _q(db, "select status, error from runs where run_id = 'killed'")
        assert st == "failed" and "interrupted" in err
    assert _q(db, "select run_id, count(*) from records group by run_id") == [("next", 500)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["paused", "recon.duckdb", "recon.duckdb.d", "recon.duckdb.lock"]
    root = tmp_path / "recon.duckdb.d"
    assert sorted(p.name for p in root.iterdir()) == ["catalog.duckdb", "nights", "published.json"]
    files = {p.parent.name for p in (root / "nights").rglob("*.parquet")}
    # the killed run's files are gone unless it had published (then the next run's start
    # deletes them, as it does the superseded run's: a reader opened before keeps its files)
    assert "next" in files and ("killed" in files) == published
    assert not [p for p in root.rglob("*") if p.is_file() and p.suffix not in (".parquet", ".duckdb", ".json")]


# ---- two runs at once ------------------------------------------------------------------------


def test_second_run_refuses_clearly_while_the_first_writes(tmp_path: Path) -> None:
    db = tmp_path / "recon.duckdb"
    marker = tmp_path / "paused"
    first = _spawn(db, "first", n=2000, pause="finish:after_change", marker=marker)
    _wait_for(marker, first)
    second = _spawn(db, "second", n=10)
    out, err = second.communicate(timeout=120)
    assert second.returncode == 2
    assert "另一个运行正在写入数据库" in err and "another run holds the writer lock" in err
    assert f"pid {first.pid}" in err
    first.kill()
    first.wait(timeout=30)
    assert "second" not in dict(_q(db, "select run_id, status from runs"))  # never two writers


def test_second_run_that_waits_goes_after_the_first(tmp_path: Path) -> None:
    db = tmp_path / "recon.duckdb"
    marker = tmp_path / "paused"
    env_pause = "finish:before_replace"
    first = _spawn(db, "first", n=2000, pause=env_pause, marker=marker)
    _wait_for(marker, first)
    second = _spawn(db, "second", n=10, wait_s=120)
    time.sleep(1.0)
    assert second.poll() is None                      # waiting on the lock, not writing
    first.kill()                                       # the lock dies with it
    first.wait(timeout=30)
    assert second.wait(timeout=120) == 0, second.communicate()
    assert dict(_q(db, "select run_id, status from runs")) == {"first": "failed", "second": "succeeded"}


# ---- same inputs, same content -----------------------------------------------------------------

RUN_ONE = r"""
import sys, json
from datetime import date, datetime, timezone
from pathlib import Path
from reconcile import ingest, pipeline, report, store
from reconcile.config import load_settings
inbox, db, reports, run_id = sys.argv[1:5]
s = load_settings()
res = pipeline.reconcile(ingest.read_inbox(Path(inbox), s.header_aliases), s)
now = datetime.now(timezone.utc)
store.begin_run(Path(db), run_id=run_id, started_at=now, night=date(2026, 11, 23), as_of=date(2026, 11, 23), parameters={})
store.finish_run(Path(db), run_id=run_id, finished_at=now, counts=res.counts, tables={
    "records": pipeline.records_table(res), "row_problems": res.problems,
    "matches": res.matches, "discrepancies": res.discrepancies})
report.write_school_workbooks(res.discrepancies, Path(reports))
"""


def _dump(db: Path) -> dict[str, list]:
    from reconcile.store import DATA_TABLES

    out = {}
    for t in DATA_TABLES:
        # every column but run_id, in stored order (one Parquet file per run, read in order)
        out[t] = _q(db, f'select * exclude (run_id) from "{t}"')
    out["runs"] = _q(db, "select status, night, as_of, counts, roster_rows, matched, review, "
                         "not_found, discrepancies from runs")
    return out


def _cells(folder: Path) -> dict[str, list]:
    import openpyxl

    return {p.name: [[list(r) for r in ws.iter_rows(values_only=True)]
                     for ws in openpyxl.load_workbook(p).worksheets]
            for p in sorted(folder.glob("*.xlsx"))}


def test_same_inputs_give_same_tables_and_cells(tmp_path: Path) -> None:
    from countygen import SynthConfig, generate_county

    generate_county(tmp_path / "county", SynthConfig(households=150, seed=9))
    dumps, books, raw = [], [], []
    for i in range(2):
        db, rep = tmp_path / f"db{i}.duckdb", tmp_path / f"rep{i}"
        args = [str(tmp_path / "county" / "inbox"), str(db), str(rep), f"run-{i}"]
        if i == 0:   # in this process
            argv = sys.argv
            try:
                sys.argv = ["run_one", *args]
                exec(RUN_ONE, {"__name__": "run_one"})
            finally:
                sys.argv = argv
        else:        # in a fresh process with another hash seed: set/dict order must not matter
            env = dict(os.environ, PYTHONHASHSEED=str(hash("x") % 1000 + 1))
            subprocess.run([sys.executable, "-c", RUN_ONE, *args], cwd=ROOT, env=env, check=True)
        dumps.append(_dump(db))
        books.append(_cells(rep))
        raw.append({p.name: p.read_bytes() for p in rep.glob("*.xlsx")})
    assert dumps[0]["records"] and dumps[0]["discrepancies"] and dumps[0]["matches"]
    for t in dumps[0]:
        assert dumps[0][t] == dumps[1][t], t
    assert books[0] and books[0] == books[1]
    assert raw[0] == raw[1]   # byte-identical workbooks


if __name__ == "__main__" and sys.argv[1:2] == ["write"]:
    sys.path.insert(0, str(ROOT))
    db, run_id, n, wait_s = sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
    sys.exit(_write(db, run_id, n, wait_s))
