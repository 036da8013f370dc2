"""`recon run`'s own ephemeral Prefect server, which dies with the process that started it.

Without ``PREFECT_API_URL`` Prefect 3.9 starts a temporary API server in a subprocess
(``SubprocessASGIServer``: ``python -m uvicorn … prefect.server.api.server:create_app``)
and stops it from an ``atexit`` hook, which a kill -9 never runs: every killed run left a
~195 MB server behind. Here the same server is started by recon with
``prctl(PR_SET_PDEATHSIG, SIGKILL)``, so the kernel kills it when ``recon run`` dies,
however it dies; Prefect is pointed at it through ``PREFECT_API_URL``.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from reconcile.errors import ReconError

__all__ = ["SERVER_APP", "ephemeral_server"]

SERVER_APP = "prefect.server.api.server:create_app"
_PR_SET_PDEATHSIG = 1


def _die_with(parent: int) -> None:
    """In the child, before exec: ask for SIGKILL when the parent dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _prefect_dir() -> Path:
    spec = importlib.util.find_spec("prefect")  # not imported: no threads yet when forking
    if spec is None or not spec.submodule_search_locations:
        raise ReconError("Prefect is not installed in this environment")
    return Path(list(spec.submodule_search_locations)[0])


def _flush_logs() -> None:
    """Send the run's queued log lines while the server still listens: stopped first, the
    exit-time flush prints 'Error logging to API' to a clerk's terminal."""
    import logging

    loggers = [logging.getLogger()] + [logging.getLogger(n) for n in list(logging.root.manager.loggerDict)]
    for handler in {h for lg in loggers for h in getattr(lg, "handlers", ())}:
        with contextlib.suppress(Exception):
            handler.flush()


@contextlib.contextmanager
def ephemeral_server(timeout_s: float = 120.0, meanwhile: Callable[[], object] | None = None) -> Iterator[str]:
    """Start the server, set ``PREFECT_API_URL`` for this process, stop the server after.

    ``meanwhile`` runs while the server starts (importing the flow: about 2 s of a 5 s
    start-up on two cores); ``PREFECT_API_URL`` is already set then, so Prefect, imported
    by it, reads the server's address from its settings."""
    port = _free_port()
    env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1",
           # No block types registered at start-up (a night uses none): registering first
           # imports every installed Prefect collection, prefect-dask and with it Dask's
           # distributed, about 1 s of a start-up a clerk waits for.
           "PREFECT_SERVER_REGISTER_BLOCKS_ON_START": "0", "PREFECT_SERVER_MEMOIZE_BLOCK_AUTO_REGISTRATION": "0",
           # No telemetry heartbeat: it writes a session row into Prefect's database at start-up
           # (a "database is locked" traceback on the terminal when another night's server
           # starts at the same time) and would report to Prefect from a bureau's machine.
           "PREFECT_SERVER_ANALYTICS_ENABLED": "0"}
    parent = os.getpid()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--app-dir", str(_prefect_dir().parent), "--factory", SERVER_APP,
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "error", "--lifespan", "on"],
        env=env, preexec_fn=lambda: _die_with(parent), stdin=subprocess.DEVNULL,  # noqa: PLW1509
    )
    url = f"http://127.0.0.1:{port}/api"
    before = os.environ.get("PREFECT_API_URL")
    try:
        os.environ["PREFECT_API_URL"] = url
        if meanwhile is not None:
            meanwhile()
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise ReconError(f"the Prefect server exited during start-up (exit {proc.returncode})")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise ReconError(f"the Prefect server did not start within {timeout_s:.0f} s")
            time.sleep(0.1)
        yield url
    finally:
        _flush_logs()
        if before is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = before
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
