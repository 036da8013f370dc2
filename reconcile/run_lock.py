"""The single-writer lock of a store: an ``flock`` on ``{db_path}.lock`` held for a whole run."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from reconcile.errors import RunLockedError

__all__ = ["RunLock", "writer"]

# Lock files this process holds (resolved path -> lock), so the write functions know
# whether they run under the caller's lock or must take it themselves.
_HELD: dict[str, "RunLock"] = {}


def _lock_path(db_path: Path) -> Path:
    return Path(f"{Path(db_path)}.lock")


class RunLock:
    """Exclusive writer lock: an ``fcntl.flock`` on ``{db_path}.lock``.

    Waits up to ``wait_s`` seconds (default: not at all), then raises
    :class:`~reconcile.errors.RunLockedError`. The lock dies with the process, so a killed
    run never leaves a stale lock behind. Not re-entrant: a second ``RunLock`` on the same
    database, even in the same process, fails while the first is held.
    """

    def __init__(self, db_path: Path | str, *, wait_s: float = 0.0) -> None:
        self.db_path = Path(db_path)
        self.path = _lock_path(self.db_path)
        self.wait_s = float(wait_s)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> "RunLock":
        if self._fd is not None:
            raise RuntimeError("RunLock is not re-entrant")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + max(self.wait_s, 0.0)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as e:
                    if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                        raise
                    if time.monotonic() >= deadline:
                        holder = _read_holder(fd)
                        raise RunLockedError(
                            f"另一个运行正在写入数据库，请等它结束后再试 "
                            f"(another run holds the writer lock {str(self.path)!r}"
                            f"{', pid ' + holder if holder else ''}; "
                            f"waited {self.wait_s:g} s)"
                        ) from None
                    time.sleep(min(0.1, max(deadline - time.monotonic(), 0.01)))
        except BaseException:
            os.close(fd)
            raise
        # Record who holds it, for the message another process may show.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        _HELD[_key(self.db_path)] = self
        return self

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        if _HELD.get(_key(self.db_path)) is self:
            del _HELD[_key(self.db_path)]
        try:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return ""
    return text if text.isdigit() else ""


def _key(db_path: Path) -> str:
    return str(Path(db_path).resolve())


@contextlib.contextmanager
def writer(db_path: Path) -> Iterator[None]:
    """Run under this process's RunLock for db_path, taking it briefly if not held."""
    if _key(db_path) in _HELD:
        yield
        return
    with RunLock(db_path):
        yield
