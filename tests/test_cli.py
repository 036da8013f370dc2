"""The `recon` command line: clear errors and instructions, without starting Prefect."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconcile.cli import main


def test_serve_without_server_says_exactly_how(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    (tmp_path / "inbox").mkdir()
    code = main(["serve", "--inbox", str(tmp_path / "inbox"), "--cron", "30 1 * * *"])
    err = capsys.readouterr().err
    assert code == 2
    assert "prefect server start" in err and "PREFECT_API_URL=http://127.0.0.1:4200/api" in err
    assert '--cron "30 1 * * *"' in err


def test_serve_province_without_server_says_how_and_needs_a_province_inbox(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    assert main(["serve", "--province"]) == 2
    assert "--inbox" in capsys.readouterr().err
    (tmp_path / "inbox").mkdir()
    code = main(["serve", "--province", "--inbox", str(tmp_path / "inbox"), "--workers", "3"])
    err = capsys.readouterr().err
    assert code == 2 and "prefect server start" in err and "--province --workers 3" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--inbox", "/nonexistent/inbox"], "does not exist"),
        (["run", "--inbox", ".", "--config", "/nonexistent/config"], "does not exist"),
    ],
)
def test_run_refuses_clearly(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_bad_config_is_refused_before_prefect_starts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "settings.toml").write_text("[match]\nreview = 0.999\n", encoding="utf-8")
    assert main(["run", "--inbox", str(tmp_path), "--config", str(tmp_path)]) == 2
    assert "settings.toml" in capsys.readouterr().err


def test_bad_date_is_rejected(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--as-of", "2026-13-01"])
    assert "not a date" in capsys.readouterr().err


def test_synth_writes_inbox_and_truth_beside_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["synth", str(tmp_path / "c"), "--households", "60", "--seed", "3", "--errors", "2"]) == 0
    assert {p.name for p in (tmp_path / "c" / "inbox").iterdir()} == {"roster", "dibao", "filing"}
    assert (tmp_path / "c" / "truth" / "records.csv").exists()
    assert "generated" in capsys.readouterr().out
