"""End to end: the real Prefect flow on a small generated county (one Prefect start-up)."""

from __future__ import annotations

import errno
import logging
import re
import shutil
from pathlib import Path

import duckdb
import openpyxl
import polars as pl
import pytest

from reconcile import report

ID_SHAPED = re.compile(r"\d{6}(?:19|20)\d{2}[01]\d[0-3]\d\d{3}[\dXx]")


@pytest.fixture(scope="module")
def county(generated_county) -> Path:
    return generated_county(households=250, seed=5)


def _query(db: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_nightly_flow_end_to_end(harness, county: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from flows.nightly import nightly_reconciliation

    db, reports = tmp_path / "recon.duckdb", tmp_path / "reports"
    caplog.set_level(logging.DEBUG)
    counts = nightly_reconciliation(inbox=str(county / "inbox"), db=str(db), reports=str(reports))
    assert counts["roster_rows"] > 100 and counts["matched"] > 0.8 * counts["roster_rows"]
    assert counts["matched"] + counts["review"] + counts["not_found"] == counts["roster_rows"]

    [(status, n_roster, err)] = _query(db, "select status, roster_rows, error from runs")
    assert (status, n_roster, err) == ("succeeded", counts["roster_rows"], None)
    by_source = dict(_query(db, "select source, count(*) from records group by source"))
    assert by_source == {"roster": counts["roster_rows"], "dibao": counts["dibao_rows"], "filing": counts["filing_rows"]}
    kinds = dict(_query(db, "select kind, count(*) from discrepancies group by kind"))
    assert {"not_found", "id_invalid", "name_mismatch"} <= set(kinds)
    assert _query(db, "select count(*) from matches where status not in ('matched', 'review')") == [(0,)]
    # Every stored link and discrepancy points at a real ingested row.
    assert _query(db, """select count(*) from matches m anti join records r
                          on r.source = 'roster' and r.file = m.roster_file and r.sheet = m.roster_sheet and r.row = m.roster_row""") == [(0,)]

    books = sorted(Path(counts["reports"]).glob("*.xlsx"))
    assert books, "one workbook per school"
    ws = openpyxl.load_workbook(books[0]).worksheets[0]
    assert ws.freeze_panes == f"A{report.HEADER_ROW + 1}" and ws.auto_filter.ref
    for row in ws.iter_rows(values_only=True):
        assert not any(isinstance(v, str) and ID_SHAPED.search(v) for v in row)

    # No ID number in anything Prefect or recon logged.
    assert not [r for r in caplog.records if ID_SHAPED.search(r.getMessage())]

    # A rerun on the same night replaces that night's results.
    again = nightly_reconciliation(inbox=str(county / "inbox"), db=str(db), reports=str(reports))
    assert dict(_query(db, "select status, count(*) from runs group by status")) == {"succeeded": 1, "superseded": 1}
    assert _query(db, "select count(distinct run_id) from records") == [(1,)]
    assert again["discrepancies"] == counts["discrepancies"]


def test_failed_run_is_marked_and_keeps_previous_results(harness, generated_county, tmp_path: Path) -> None:
    from flows.nightly import nightly_reconciliation

    county = generated_county(households=60, seed=11)  # any county will do: a small one
    db, reports = tmp_path / "recon.duckdb", tmp_path / "reports"
    nightly_reconciliation(inbox=str(county / "inbox"), db=str(db), reports=str(reports))
    bad = tmp_path / "settings"
    bad.mkdir()
    (bad / "settings.toml").write_text("[match]\nmatched = 2\n", encoding="utf-8")
    with pytest.raises(Exception):
        nightly_reconciliation(inbox=str(county / "inbox"), db=str(db), reports=str(reports), config=str(bad))
    rows = _query(db, "select status, error from runs order by started_at")
    assert [r[0] for r in rows] == ["succeeded", "failed"]
    assert "matched" in rows[1][1]
    assert _query(db, "select count(distinct run_id) from records") == [(1,)]
    assert len(list(reports.glob("*/*.xlsx"))) > 0


def test_a_night_failing_at_its_workbooks_publishes_nothing_it_staged(harness, generated_county, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.nightly import nightly_reconciliation

    county = generated_county(households=60, seed=11)
    db, reports = tmp_path / "recon.duckdb", tmp_path / "reports"
    run = dict(inbox=str(county / "inbox"), db=str(db), reports=str(reports))
    nightly_reconciliation(**run)

    def broken(*args, **kw):
        raise ValueError("the workbook writer broke")

    monkeypatch.setattr(report, "write_school_workbooks", broken)
    with pytest.raises(Exception, match="workbook writer broke"):
        nightly_reconciliation(**run)  # its tables were staged before the workbooks
    [(failed,)] = _query(db, "select run_id from runs where status = 'failed'")
    assert _query(db, "select count(distinct run_id) from records") == [(1,)]
    nights = db.parent / f"{db.name}.d" / "nights"

    def with_files() -> set[str]:
        return {p.parent.name for p in nights.rglob("*.parquet")} - {"schema"}

    assert failed in with_files()  # unpublished: no view reads them
    monkeypatch.undo()
    nightly_reconciliation(**run)  # its start sweeps the failed night's files
    assert failed not in with_files()
    assert dict(_query(db, "select status, count(*) from runs group by status")) == {
        "succeeded": 1, "superseded": 1, "failed": 1}


def _prefect_files() -> list[Path]:
    """The harness's Prefect database (with its WAL/journal) and local result storage."""
    from prefect.settings import get_current_settings

    s = get_current_settings()
    url = str(s.server.database.connection_url.get_secret_value()
              if hasattr(s.server.database.connection_url, "get_secret_value")
              else s.server.database.connection_url)
    db = Path(url.split("///", 1)[1]) if "sqlite" in url else None
    files = [p for p in ([db, Path(f"{db}-wal"), Path(f"{db}-journal")] if db else []) if p.exists()]
    storage = Path(s.results.local_storage_path).expanduser()
    if storage.is_dir():
        files += [p for p in storage.rglob("*") if p.is_file()]
    return files


def test_no_id_or_name_reaches_logs_errors_or_prefect(harness, county: Path, tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture,
                                                      capfd: pytest.CaptureFixture, monkeypatch) -> None:
    """Run the flow (one good night, one failing with a library error that quotes an ID and a
    name), then scan every log record, stdout/stderr, the exception, the runs table and the
    Prefect database (logs, states, events, parameters, artifacts) and result storage. The
    inbox also holds a file named after a student with the ID in its name, and a CSV whose
    line with an unclosed quote holds a student's name (issue 11)."""
    import flows.nightly as nightly
    from reconcile import ingest
    from reconcile.config import load_settings

    roster = pl.concat([t.frame for t in ingest.read_inbox(county / "inbox", load_settings().header_aliases).tables
                        if t.source == "roster"], how="diagonal_relaxed")
    ids = {v for v in roster["id_number"].drop_nulls().to_list() if ID_SHAPED.fullmatch(v)}
    names = {v for v in roster["name"].drop_nulls().to_list() if len(v) >= 3}
    secret_id, secret_name = sorted(ids)[0], sorted(names)[0]
    inbox = tmp_path / "inbox"
    shutil.copytree(county / "inbox", inbox)
    good = next((inbox / "roster").glob("*.xlsx"))
    shutil.copy(good, inbox / "roster" / f"徐成_{secret_id}_补报.xlsx")
    lines = ["学生姓名,身份证号"] + [f"{n},{i}" for n, i in zip(sorted(names)[1:30], sorted(ids)[1:30])]
    lines.insert(10, f'"{secret_name},{secret_id}')
    (inbox / "roster" / "未闭引号.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")

    db, reports = tmp_path / "recon.duckdb", tmp_path / "reports"
    caplog.set_level(logging.DEBUG)
    nightly.nightly_reconciliation(inbox=str(inbox), db=str(db), reports=str(reports))
    assert _query(db, "select row, problem from row_problems where file = 'roster/未闭引号.csv' and problem = 'bad_line'") == [(11, "bad_line")]
    assert _query(db, "select count(*) from records where file = 'roster/未闭引号.csv'") == [(29,)]

    def leaky(*_a, **_k):
        raise ValueError(f"could not parse '{secret_name}' / {secret_id} as Date; value: {secret_id}")

    monkeypatch.setattr(nightly.pipeline, "reconcile", leaky)
    with pytest.raises(Exception) as failure:
        nightly.nightly_reconciliation(inbox=str(inbox), db=str(db), reports=str(reports))
    assert "ValueError" in f"{type(failure.value).__name__}: {failure.value}"
    from prefect.logging.handlers import APILogHandler

    for h in logging.getLogger("prefect").handlers:   # send buffered logs to the API now
        if isinstance(h, APILogHandler):
            h.flush()

    texts = [str(failure.value), capfd.readouterr().out, capfd.readouterr().err]
    texts += [r.getMessage() for r in caplog.records]
    texts += [logging.Formatter().formatException(r.exc_info) for r in caplog.records if r.exc_info]
    texts += [str(r) for r in _query(db, "select * from runs")]
    blobs = [p.read_bytes().decode("utf-8", "replace") for p in _prefect_files()]
    assert blobs, "the Prefect database was found and scanned"
    assert any("nightly-reconciliation" in b for b in blobs)   # it is the right database
    leaks = [(i, m) for i, t in enumerate(texts + blobs) for m in ID_SHAPED.findall(t)]
    assert leaks == []
    found_names = [n for n in names | {secret_name} for t in texts + blobs if n in t]
    assert found_names == []
    [(error,)] = _query(db, "select error from runs where status = 'failed'")
    assert "ValueError" in error and secret_id not in error


# exception leaving read_inbox -> retried?
RETRY_CASES = [
    (FileNotFoundError(errno.ENOENT, "inbox folder missing"), False),
    (NotADirectoryError(errno.ENOTDIR, "not a folder"), False),
    (PermissionError(errno.EACCES, "denied"), False),
    (OSError(errno.ENOSPC, "no space"), False),
    (ValueError("a bug"), False),
    (TimeoutError("share timed out"), True),
    (OSError(errno.EIO, "I/O error"), True),
    (OSError(errno.ESTALE, "stale NFS handle"), True),
    (ConnectionResetError(errno.ECONNRESET, "reset"), True),
]


@pytest.mark.parametrize("exc,retried", RETRY_CASES, ids=[type(e).__name__ + str(getattr(e, "errno", "")) for e, _ in RETRY_CASES])
def test_only_transient_io_is_retried(exc, retried) -> None:
    from prefect.states import Failed

    from flows.nightly import TRANSIENT_RETRIES

    condition = TRANSIENT_RETRIES["retry_condition_fn"]
    assert condition(None, None, Failed(data=exc)) is retried


def test_a_missing_inbox_fails_at_once(harness, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from flows.nightly import nightly_reconciliation

    caplog.set_level(logging.INFO)
    with pytest.raises(FileNotFoundError):
        nightly_reconciliation(inbox=str(tmp_path / "missing"), db=str(tmp_path / "r.duckdb"),
                               reports=str(tmp_path / "reports"))
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if "Retry" in m], messages
    [(status,)] = _query(tmp_path / "r.duckdb", "select status from runs")
    assert status == "failed"


def test_exports_respelt_overnight_change_nothing(harness, county: Path, tmp_path: Path) -> None:
    """Night 1 as generated; night 2 the same exports with places spelt otherwise
    (conftest.respell_county): the same places cut short, no household entered or left, the
    same town workbooks, and the records carry one key per place."""
    import shutil

    from conftest import respell_county
    from flows.nightly import TOWN_DIR, nightly_reconciliation

    db, reports = tmp_path / "recon.duckdb", tmp_path / "reports"
    first = nightly_reconciliation(inbox=str(county / "inbox"), db=str(db), reports=str(reports), as_of="2025-09-15")
    towns_first = sorted(p.name for p in (Path(first["reports"]) / TOWN_DIR).glob("*.xlsx"))
    cut = "select system, town, village, town_key, village_key, problem, found_rows from export_problems order by all"
    cut_first = _query(db, cut)  # a rerun on the same night replaces these
    respelt = tmp_path / "respelt"
    shutil.copytree(county / "inbox", respelt)
    respell_county(respelt)
    second = nightly_reconciliation(inbox=str(respelt), db=str(db), reports=str(reports), as_of="2025-09-15")
    assert sorted(p.name for p in (Path(second["reports"]) / TOWN_DIR).glob("*.xlsx")) == towns_first
    assert (second["matched"], second["not_found"]) == (first["matched"], first["not_found"])
    assert len(cut_first) == first["export_problems"] and _query(db, cut) == cut_first
    assert second["household_changes"] == 0
    # one key per place however it is written: 卫民 / 卫民镇, 龍茶鄉 / 龙茶乡, 沙坳 / 沙坳村委会
    spellings = _query(db, """select count(distinct town), count(distinct town_key), count(distinct town_name),
                                     count(distinct village_key) < count(distinct village)
                              from records where run_id = (select run_id from runs where status = 'succeeded')""")
    assert spellings[0][1] == spellings[0][2] < spellings[0][0] and spellings[0][3]

def test_doubtful_links_reach_review_and_the_clerks_workbook(harness, county: Path, tmp_path: Path) -> None:
    """A night whose `matched` threshold (configuration) is far above most links' weights:
    the links below it land in `review`, students with only such links become
    `needs_review` items, and those reach the school workbooks with the system's name and
    the model's probability; the fitted model is stored beside them."""
    from flows.nightly import nightly_reconciliation
    from reconcile.comparisons import COMPARISONS
    from reconcile.report import HEADER_ROW, SHEET_PROBLEMS
    from reconcile.vocabulary import kind_label

    config = tmp_path / "config"
    config.mkdir()
    (config / "settings.toml").write_text("[match]\nmatched = 0.999999999999\n", encoding="utf-8")  # 40 bits
    db, reports = tmp_path / "recon.duckdb", tmp_path / "reports"
    counts = nightly_reconciliation(inbox=str(county / "inbox"), db=str(db), reports=str(reports), config=str(config))
    statuses = dict(_query(db, "select status, count(*) from matches group by status"))
    assert statuses.get("review", 0) > 0 and statuses.get("matched", 0) > 0
    assert counts["review"] > 0
    [(n_items,)] = _query(db, "select count(*) from discrepancies where kind = 'needs_review'")
    assert n_items > 0 and counts["kind_needs_review"] == n_items
    # every needs_review item is a student with a review link and no matched link anywhere
    assert _query(db, """select count(*) from discrepancies d join records r on r.source = 'roster'
                          and r.file = d.file and r.sheet = d.sheet and r.row = d.row
                          where d.kind = 'needs_review' and (r.rec in (select roster_rec from matches where status = 'matched')
                          or r.rec not in (select roster_rec from matches where status = 'review'))""") == [(0,)]

    label = kind_label("needs_review")
    rows = []
    for book in sorted(Path(counts["reports"]).glob("*.xlsx")):  # the school workbooks
        ws = openpyxl.load_workbook(book)[SHEET_PROBLEMS]
        header = [c.value for c in ws[HEADER_ROW]]
        rows += [dict(zip(header, r)) for r in ws.iter_rows(min_row=HEADER_ROW + 1, values_only=True)
                 if r[header.index("问题类型")] == label]
    assert len(rows) == n_items
    assert all(r["系统中姓名"] and "匹配可能性" in r["说明"] for r in rows)

    params = _query(db, "select system, count(*), bool_and(fitted), bool_and(converged), min(prior) from model_parameters group by system order by system")
    levels = sum(len(c.names) for c in COMPARISONS.values())
    assert [p[:4] for p in params] == [("dibao", levels, True, True), ("filing", levels, True, True)]
    assert all(0 < p[4] < 0.01 for p in params)
