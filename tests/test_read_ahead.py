"""flows.read_ahead: the inbox read while `recon run`'s Prefect server starts, taken by the flow once."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import duckdb
import pytest

from flows import read_ahead


@pytest.fixture(scope="module")
def county(generated_county) -> Path:
    return generated_county(households=40, seed=3)


def _roster_files(db: Path) -> set[str]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return {f for (f,) in con.execute("select distinct file from records where source = 'roster'").fetchall()}
    finally:
        con.close()


def test_what_was_read_ahead_is_taken_once(county: Path) -> None:
    seen: list[tuple[str, int, int]] = []
    ahead = read_ahead.read_ahead(county / "inbox", None, on_file=lambda *a: seen.append(a))
    assert ahead is not None and ahead.error is None
    assert [i for _, i, _ in seen] == list(range(1, len(seen) + 1)) and seen[-1][2] == len(seen)
    # The flow finds it by its parameters, however the inbox path is spelt, and only once.
    assert read_ahead.take(str(county / "inbox" / ".." / "inbox"), None) is ahead
    assert read_ahead.take(county / "inbox", None) is None
    result = ahead.take()
    assert result is not None and result.files_read == len(seen)
    assert ahead.take() is None, "a retry of the task reads afresh"


@pytest.mark.parametrize("case", ["no inbox", "bad config"])
def test_nothing_is_read_ahead_where_the_flow_would_fail_first(case: str, county: Path, tmp_path: Path) -> None:
    inbox, config = county / "inbox", None
    if case == "no inbox":
        inbox = tmp_path / "missing"
    else:
        config = str(tmp_path)
        (tmp_path / "settings.toml").write_text("[match]\nmatched = 2\n", encoding="utf-8")
    assert read_ahead.read_ahead(inbox, config) is None
    assert read_ahead.take(inbox, config) is None


def test_an_error_while_reading_ahead_is_raised_where_the_task_takes_it(county: Path, monkeypatch) -> None:
    def broken(*_a, **_k):
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(read_ahead.ingest, "read_inbox", broken)
    ahead = read_ahead.read_ahead(county / "inbox", None)
    assert ahead is not None and read_ahead.take(county / "inbox", None) is ahead
    with pytest.raises(OSError) as raised:
        ahead.take()
    assert raised.value.errno == errno.EIO
    assert ahead.take() is None


def test_the_flow_takes_the_inbox_as_read_ahead_and_reads_afresh_the_next_night(harness, county: Path,
                                                                                   tmp_path: Path) -> None:
    """The night after a read-ahead reconciles what was read then: a roster file removed
    from the inbox afterwards is still in tonight's records; the next night reads again."""
    from flows.nightly import nightly_reconciliation

    inbox = tmp_path / "inbox"
    shutil.copytree(county / "inbox", inbox)
    every = {f"roster/{p.name}" for p in (inbox / "roster").iterdir()}
    assert read_ahead.read_ahead(inbox, None) is not None
    gone = sorted((inbox / "roster").iterdir())[0]
    gone.unlink()
    db, reports = tmp_path / "recon.duckdb", tmp_path / "reports"
    nightly_reconciliation(inbox=str(inbox), db=str(db), reports=str(reports))
    assert _roster_files(db) == every
    nightly_reconciliation(inbox=str(inbox), db=str(db), reports=str(reports))
    assert _roster_files(db) == every - {f"roster/{gone.name}"}
