"""Calls run in a second Python process that imports only what they need.

Why not a spawned ``ProcessPoolExecutor``: spawn re-runs the parent's ``__main__`` in the
child first, and under ``recon run`` that is the CLI script, which imports the CLI, the
county generator and the review import before the child can start writing (about 1.2 s of
CPU against 0.65 s for the report writer alone, 2.5 s against 1.1 s on a loaded 2-core
machine). Here the child is ``python -m reconcile.second_process``: its ``__main__`` is
this module, and unpickling the calls imports their modules. The child is started fresh
(never forked beside Prefect's threads).

Protocol: the parent writes one pickle (a list of ``(function, args, kwargs)``) to the
child's stdin and closes it. The child answers each call as soon as it is done: it pickles
``("ok", result)`` (or ``("error", exception)``, and stops) into an anonymous temporary
file and hands that file over on a Unix socket (``socket.send_fds``). So the child never
waits for the parent, holds one call's result at a time (a prefecture's files read there
come back file by file), and nothing it wrote outlives the two processes; the parent
unpickles the answers when it asks for them, not while its own share runs (through a pipe,
every read of 64 KiB waits for this process's busy main thread to let go of the GIL). A
child that dies before answering every call raises ``ChildProcessError`` in the parent. The
child writes nothing else anywhere (its errors go back to the parent, whose callers decide
what may be logged).
"""

from __future__ import annotations

import copyreg
import os
import pickle
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from types import MappingProxyType
from typing import IO, Any

__all__ = ["SecondProcess", "Call", "Pending", "start", "read_only"]

Call = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]


def read_only(d: dict[Any, Any]) -> MappingProxyType:
    """A pickled ``MappingProxyType`` made again (the type itself cannot be named in a pickle)."""
    return MappingProxyType(d)


def _proxy(m: MappingProxyType) -> tuple[Callable[..., Any], tuple[dict[Any, Any]]]:
    return read_only, (dict(m),)


def _dump(value: Any, out: IO[bytes]) -> None:
    """pickle.dump, with read-only mappings (the settings' ``MappingProxyType``s) sent as
    what they are: a copy of the dict, made read-only again on the other side. Written as
    it is pickled: a prefecture's export is never held a second time as one bytes object."""
    pickler = pickle.Pickler(out, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = {**copyreg.dispatch_table, MappingProxyType: _proxy}
    pickler.dump(value)


class SecondProcess:
    """``calls`` started in a new interpreter at once; ``results()`` waits for their values
    (in order) or raises the first call's exception. Use as a context manager: leaving it
    early (the parent's own share failed) stops the child."""

    def __init__(self, calls: Sequence[Call]) -> None:
        self._sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._proc = subprocess.Popen([sys.executable, "-m", __name__, str(theirs.fileno())],
                                          stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL, pass_fds=(theirs.fileno(),))
        finally:
            theirs.close()
        self._unsent: Exception | None = None
        self._answers: list[IO[bytes]] = []
        self._expected = len(calls)
        # Pickled into the pipe from a thread, answers taken by another: the parent goes on
        # with its own share meanwhile.
        self._feeder = threading.Thread(target=self._feed, args=(list(calls),), daemon=True)
        self._feeder.start()
        self._taker = threading.Thread(target=self._take, daemon=True)
        self._taker.start()

    def _feed(self, calls: list[Call]) -> None:
        stdin = self._proc.stdin
        assert stdin is not None
        try:
            _dump(calls, stdin)
        except (BrokenPipeError, OSError):
            pass  # the child died: results() says so
        except Exception as exc:  # noqa: BLE001 - a call that does not pickle: raised by results()
            self._unsent = exc
        finally:
            try:
                stdin.close()
            except OSError:
                pass

    def _take(self) -> None:
        """Each answer's file as the child hands it over, until all came or the child ended."""
        while len(self._answers) < self._expected:
            try:
                msg, fds, _, _ = socket.recv_fds(self._sock, 1, 1)
            except OSError:
                return
            if not msg or not fds:  # the child ended (or was stopped)
                return
            self._answers.append(os.fdopen(fds[0], "rb"))

    def results(self) -> list[Any]:
        self._taker.join()
        self._feeder.join()
        code = self._proc.wait()
        if self._unsent is not None:
            raise self._unsent
        values = []
        while self._answers:
            with self._answers.pop(0) as f:
                f.seek(0)
                status, value = pickle.load(f)
            if status == "error":
                raise value
            values.append(value)
        if len(values) < self._expected:
            raise ChildProcessError(f"the second process ended (exit status {code}) without an answer")
        return values

    def __enter__(self) -> SecondProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._taker.join()  # the child's end of the socket is closed: the taker has returned
        self._sock.close()
        while self._answers:
            self._answers.pop().close()


class Pending:
    """One call running in a second process (``start``): ``result()`` waits for its value or
    raises its exception; ``cancel()`` stops it (the caller's own work failed meanwhile)."""

    def __init__(self, call: Call) -> None:
        self._proc = SecondProcess([call])

    def result(self) -> Any:
        with self._proc:
            return self._proc.results()[0]

    def cancel(self) -> None:
        self._proc.__exit__(None, None, None)


def start(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Pending:
    """``fn(*args, **kwargs)`` started at once in a second process (see ``SecondProcess``)."""
    return Pending((fn, args, kwargs))


def _answer(answer: tuple[str, Any], sock: socket.socket) -> None:
    """One answer, pickled into an anonymous temporary file (not into memory: a prefecture's
    records are a gigabyte; a value that does not pickle can still be answered with an
    error) whose descriptor goes to the parent."""
    with tempfile.TemporaryFile() as spool:
        try:
            _dump(answer, spool)
        except Exception:  # noqa: BLE001 - a value that does not pickle: say what, without its text
            what = type(answer[1]).__name__ if answer[0] == "error" else "a result"
            spool.seek(0)
            spool.truncate()
            pickle.dump(("error", RuntimeError(f"the second process could not send back {what}")), spool)
        spool.flush()
        socket.send_fds(sock, [b"a"], [spool.fileno()])


def _serve(fd: int) -> int:
    """The child: read the calls, run them in order, answer each as it is done."""
    sock = socket.socket(fileno=fd)
    try:
        calls = pickle.load(sys.stdin.buffer)
    except BaseException as exc:  # noqa: BLE001 - every failure goes back to the parent
        _answer(("error", exc), sock)
        return 0
    while calls:
        fn, args, kwargs = calls.pop(0)  # let each call's arguments go once it has run
        try:
            answer: tuple[str, Any] = ("ok", fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - every failure goes back to the parent
            answer = ("error", exc)
        del fn, args, kwargs
        failed = answer[0] == "error"
        _answer(answer, sock)
        del answer
        if failed:
            break
    sock.close()
    return 0


if __name__ == "__main__":
    # Served by this module under its own name, not as __main__: what the child pickles back
    # (``read_only``) must name a module the parent can import.
    import reconcile.second_process as _named

    sys.exit(_named._serve(int(sys.argv[1])))
