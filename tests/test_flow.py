"""End to end: the real Prefect flow on a small generated county (one Prefect start-up)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import duckdb
import openpyxl
import polars as pl
import pytest

from countygen import SynthConfig, generate_county
from reconcile import report

ID_SHAPED = re.compile(r"\d{6}(?:19|20)\d{2}[01]\d[0-3]\d\d{3}[\dXx]")


@pytest.fixture(scope="module")
def harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="module")
def county(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("county")
    generate_county(out, SynthConfig(households=250, seed=5))
    return out


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


def test_failed_run_is_marked_and_keeps_previous_results(harness, county: Path, tmp_path: Path) -> None:
    from flows.nightly import nightly_reconciliation

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
    Prefect database (logs, states, events, parameters, artifacts) and result storage."""
    import flows.nightly as nightly
    from reconcile import ingest
    from reconcile.config import load_settings

    roster = pl.concat([t.frame for t in ingest.read_inbox(county / "inbox", load_settings().header_aliases).tables
                        if t.source == "roster"], how="diagonal_relaxed")
    ids = {v for v in roster["id_number"].drop_nulls().to_list() if ID_SHAPED.fullmatch(v)}
    names = {v for v in roster["name"].drop_nulls().to_list() if len(v) >= 3}
    secret_id, secret_name = sorted(ids)[0], sorted(names)[0]

    db, reports = tmp_path / "recon.duckdb", tmp_path / "reports"
    caplog.set_level(logging.DEBUG)
    nightly.nightly_reconciliation(inbox=str(county / "inbox"), db=str(db), reports=str(reports))

    def leaky(*_a, **_k):
        raise ValueError(f"could not parse '{secret_name}' / {secret_id} as Date; value: {secret_id}")

    monkeypatch.setattr(nightly.pipeline, "reconcile", leaky)
    with pytest.raises(Exception) as failure:
        nightly.nightly_reconciliation(inbox=str(county / "inbox"), db=str(db), reports=str(reports))
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
