"""`recon serve` stops on SIGTERM, also when its Prefect server went away first (Prefect's own
graceful shutdown then retries its API calls without end)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.serving import EXIT_ON_SIGTERM
from reconcile.prefect_server import ephemeral_server

RECON = Path(sys.executable).with_name("recon")
GRACE_S = 3


def _wait_for(proc: subprocess.Popen[str], text: str, timeout_s: float) -> str:
    """The serve's output up to the line holding ``text`` (fails on timeout or exit)."""
    lines: list[str] = []
    found = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if text in line:
                found.set()
    threading.Thread(target=read, daemon=True).start()
    assert found.wait(timeout_s), "".join(lines)[-2000:]
    return "".join(lines)


def _stop(proc: subprocess.Popen[str]) -> tuple[int, float]:
    """SIGTERM; the exit code and the seconds it took (killed after a minute)."""
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=GRACE_S + 60), time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()


@contextlib.contextmanager
def _session_server(request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of the session's Prefect test server (tests/conftest.py `harness`)."""
    from prefect.settings import PREFECT_API_URL

    request.getfixturevalue("harness")
    yield str(PREFECT_API_URL.value())


@pytest.mark.parametrize(("server_first", "exit_code"), [(False, 0), (True, EXIT_ON_SIGTERM)],
                         ids=["server-up", "server-gone"])
def test_serve_stops_on_sigterm(server_first: bool, exit_code: int, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    monkeypatch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    (tmp_path / "inbox").mkdir()
    argv = [str(RECON), "serve", "--inbox", str(tmp_path / "inbox"), "--db", str(tmp_path / "recon.duckdb"),
            "--reports", str(tmp_path / "reports"), "--cron", "30 1 * * *", "--stop-grace", str(GRACE_S)]
    # A server that stays up is the session's test server (its start-up already paid); one
    # that goes away first is a server of this test's own.
    with ephemeral_server() if server_first else _session_server(request) as url:
        proc = subprocess.Popen(argv, env={**os.environ, "PREFECT_API_URL": url}, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        try:
            _wait_for(proc, "is served", timeout_s=120)
        except BaseException:
            proc.kill()
            raise
        if not server_first:
            code, took = _stop(proc)
    if server_first:
        code, took = _stop(proc)
        assert took >= GRACE_S  # Prefect's own shutdown had its chance first
    assert code == exit_code
    assert took < GRACE_S + 20
