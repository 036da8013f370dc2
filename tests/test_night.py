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
import textwrap
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from reconcile.errors import ReconError

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
    files = {p.parent.name for p in (root / "nights").rglob("*.parquet")} - {"schema"}
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

    generate_county(tmp_path / "county", SynthConfig(households=80, seed=9))  # small: still schools, links, items
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


# ---- kill -9 of `recon run`: the reports swap, and no Prefect server left -----------------------


def _descendants(pid: int) -> list:
    import psutil

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _servers(procs: list) -> list:
    import psutil

    out = []
    for p in procs:
        try:
            if "prefect.server.api.server:create_app" in " ".join(p.cmdline()):
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def _gone(procs: list, timeout: float = 15) -> bool:
    import psutil

    t = time.monotonic()
    while time.monotonic() - t < timeout:
        alive = []
        for p in procs:
            try:
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    alive.append(p)
            except psutil.NoSuchProcess:
                pass
        if not alive:
            return True
        time.sleep(0.2)
    return False


def test_kill_9_of_recon_run_between_publish_and_swap(tmp_path: Path) -> None:
    """`recon run` killed after the database says the run succeeded and before the reports
    swap: its Prefect server dies with it, and the next start puts the run's workbooks in
    place (the database and reports/<night> agree again)."""
    from countygen import SynthConfig, generate_county
    from reconcile import night_reports, store

    generate_county(tmp_path / "county", SynthConfig(households=40, seed=3))
    db, reports, marker = tmp_path / "recon.duckdb", tmp_path / "reports", tmp_path / "paused"
    env = dict(os.environ, RECON_TEST_PAUSE_AT="finish:after_replace", RECON_TEST_PAUSE_FILE=str(marker),
               PREFECT_HOME=str(tmp_path / "prefect"), DO_NOT_TRACK="1", PREFECT_SERVER_ANALYTICS_ENABLED="false")
    env.pop("PREFECT_API_URL", None)
    cmd = [sys.executable, "-m", "reconcile.cli", "run", "--inbox", str(tmp_path / "county" / "inbox"),
           "--db", str(db), "--reports", str(reports)]
    victim = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(marker, victim, timeout=240)
    servers = _servers(_descendants(victim.pid))
    assert len(servers) == 1, "recon run starts one Prefect server of its own"
    os.kill(victim.pid, signal.SIGKILL)
    out, err = victim.communicate(timeout=30)
    assert _gone(servers), "the Prefect server outlived the killed run"
    # The inbox was read while the server started (flows.read_ahead), its progress shown then.
    assert "recon - reading 1/" in err and "the inbox was read while Prefect's server started" in out + err

    [(run_id, status, night)] = _q(db, "select run_id, status, night from runs")
    assert status == "succeeded"
    final = reports / night.isoformat()
    assert not final.exists() and night_reports.staging_dir(reports, run_id).is_dir()   # the window
    # What the next start (the flow, `recon status`) does first, under the run lock:
    done = night_reports.repair(reports, lambda rid: store.run_state(db, rid))
    assert done == [f"swapped the workbooks of succeeded run {run_id} into {final.name}"]
    assert night_reports.run_of(final) == run_id and list(final.glob("*.xlsx"))
    assert not [p for p in reports.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("left, status, expect", [
    # a succeeded run's staging folder: swapped in (the old workbooks go)
    ({".staging-r2": "new", "2026-11-23": "old"}, "succeeded", {"2026-11-23": "new"}),
    # a failed or killed run's staging folder: removed, last good workbooks stay
    ({".staging-r2": "new", "2026-11-23": "old"}, "failed", {"2026-11-23": "old"}),
    ({".staging-r2": "new"}, None, {}),
    # killed between the two renames: the previous folder is put back
    ({".old-2026-11-23-abc123": "old", ".staging-r2": "new"}, "running", {"2026-11-23": "old"}),
    ({".old-2026-11-23-abc123": "older", "2026-11-23": "old"}, None, {"2026-11-23": "old"}),
])
def test_repair_after_a_kill(tmp_path: Path, left: dict, status: str | None, expect: dict) -> None:
    from reconcile import night_reports

    for name, content in left.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "一中.xlsx").write_text(content)
    night_reports.repair(tmp_path, lambda rid: (status, NIGHT) if status and rid == "r2" else None)
    got = {p.name: (p / "一中.xlsx").read_text() for p in tmp_path.iterdir()}
    assert got == expect


def _runs(rows: list[tuple]):
    import polars as pl

    return pl.DataFrame(rows, schema={"run_id": pl.String, "status": pl.String, "night": pl.Date,
                                      "started_at": pl.Datetime("us", "UTC"), "finished_at": pl.Datetime("us", "UTC"),
                                      "error": pl.String}, orient="row")


D = [NIGHT + timedelta(days=i) for i in range(5)]
S = datetime(2026, 11, 23, tzinfo=timezone.utc)


@pytest.mark.parametrize("rows, until, missed", [
    ([], D[4], []),                                                        # nothing recorded yet
    ([("a", "succeeded", D[0], S, S, None), ("b", "succeeded", D[1], S, S, None)], D[1], []),
    ([("a", "succeeded", D[0], S, S, None)], D[2], [D[1], D[2]]),           # two nights never ran
    ([("a", "succeeded", D[0], S, S, None), ("b", "failed", D[1], S, S, "运行中断")], D[1], [D[1]]),
    ([("a", "superseded", D[0], S, S, None), ("b", "succeeded", D[0], S, S, None)], D[0], []),
])
def test_missed_nights(rows, until, missed) -> None:
    from reconcile.night_alerts import missed_nights

    got = missed_nights(_runs(rows), until)
    assert [n for n, _, _ in got] == missed
    for night, reason, run_id in got:
        assert reason and (run_id is None) == (night not in {r[2] for r in rows})


def test_missed_nights_look_back_a_week_at_most() -> None:
    from reconcile.night_alerts import LOOKBACK_NIGHTS, missed_nights

    got = missed_nights(_runs([("a", "succeeded", D[0], S, S, None)]), D[0] + timedelta(days=30))
    assert len(got) == LOOKBACK_NIGHTS and got[-1][0] == D[0] + timedelta(days=30)


# ---- nobody is told: the note and the notifier -------------------------------------------------

TELL = textwrap.dedent("""
    import json, os, sys
    with open(os.environ["TOLD_FILE"], "a", encoding="utf-8") as f:
        f.write(json.dumps({"note": sys.argv[-1], "night": os.environ["RECON_NIGHT"],
                            "event": os.environ["RECON_EVENT"], "reason": os.environ["RECON_REASON"]},
                           ensure_ascii=False) + "\\n")
""")


def _notify_config(tmp_path: Path, url: str | None = None, extra: str = "") -> Path:
    cfg = tmp_path / "config"
    cfg.mkdir()
    (tmp_path / "tell.py").write_text(TELL)
    lines = [f"command = [{json.dumps(sys.executable)}, {json.dumps(str(tmp_path / 'tell.py'))}]"]
    if url:
        lines.append(f"webhook_url = {json.dumps(url)}")
    (cfg / "notify.toml").write_text("\n".join(lines) + "\n")
    if extra:
        (cfg / "store.toml").write_text(extra)
    return cfg


def test_a_failed_night_is_told_without_opening_prefect(harness, tmp_path: Path, monkeypatch) -> None:
    from flows.nightly import nightly_reconciliation
    from reconcile import night_reports

    told = tmp_path / "told.jsonl"
    monkeypatch.setenv("TOLD_FILE", str(told))
    # a configuration error (a retention of 0 nights) makes the night fail after it began
    cfg = _notify_config(tmp_path, extra="[retention]\nrecords_nights = 0\n")
    (tmp_path / "inbox").mkdir()
    db, reports = tmp_path / "recon.duckdb", tmp_path / "reports"
    with pytest.raises(ReconError, match="retention.records_nights"):
        nightly_reconciliation(inbox=str(tmp_path / "inbox"), db=str(db), reports=str(reports), config=str(cfg))
    [(run_id, status, night, error)] = _q(db, "select run_id, status, night, error from runs")
    assert status == "failed" and "records_nights" in error
    note = reports / night.isoformat() / night_reports.FAILURE_NOTE
    text = note.read_text(encoding="utf-8")
    assert "运行失败" in text and run_id in text and "store.toml" in text and "recon run" in text
    [event] = [json.loads(line) for line in told.read_text(encoding="utf-8").splitlines()]
    assert event["event"] == "failed" and event["note"] == str(note) and event["night"] == night.isoformat()
    assert "records_nights" in event["reason"]


def test_recon_status_tells_of_missed_nights(tmp_path: Path, monkeypatch, capsys) -> None:
    import http.server
    import threading
    from zoneinfo import ZoneInfo

    from reconcile import night_reports, store
    from reconcile.cli import main

    posts: list[dict] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            posts.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    told = tmp_path / "told.jsonl"
    monkeypatch.setenv("TOLD_FILE", str(told))
    cfg = _notify_config(tmp_path, url=f"http://127.0.0.1:{server.server_port}/recon")
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
    db, reports = tmp_path / "recon.duckdb", tmp_path / "reports"
    last = today - timedelta(days=2)
    store.begin_run(db, run_id="ok", started_at=T0, night=last, as_of=last, parameters={})
    store.finish_run(db, run_id="ok", finished_at=T0, counts={}, tables=_frames("ok", 3))
    store.begin_run(db, run_id="killed", started_at=T0, night=today - timedelta(days=1), as_of=last, parameters={})
    argv = ["status", "--db", str(db), "--reports", str(reports), "--config", str(cfg), "--due", "00:00"]
    try:
        assert main(argv) == 1
        out = capsys.readouterr().out
        assert "2 night(s) through" in out
        missed = [today - timedelta(days=1), today]
        for night in missed:
            assert "运行缺失说明" in (reports / night.isoformat() / night_reports.FAILURE_NOTE).read_text(encoding="utf-8")
        assert sorted(p["night"] for p in posts) == [n.isoformat() for n in missed]
        assert {p["event"] for p in posts} == {"missed"}
        assert [p["run_id"] for p in sorted(posts, key=lambda p: p["night"])] == ["killed", None]
        assert len(told.read_text(encoding="utf-8").splitlines()) == 2
        # told once: asking again sends nothing new
        assert main(argv) == 1
        assert len(posts) == 2
    finally:
        server.shutdown()
