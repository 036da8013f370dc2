"""File mechanics of the store: modes kept, fsync, free space checked first, atomic swaps.

Nothing here knows DuckDB tables; :mod:`reconcile.catalog` and :mod:`reconcile.partitions`
call these so that every file the store writes is replaced whole or not at all, keeps the
mode of the database it belongs to, and is refused before writing when the disk is too full.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import shutil
import struct
import sys
import time
from pathlib import Path

from reconcile.errors import ReconError

__all__ = [
    "DEFAULT_MODE",
    "DiskFullError",
    "FileHeldError",
    "MIN_FREE_BYTES",
    "check_free_space",
    "dir_mode",
    "file_mode",
    "free_bytes",
    "fsync_path",
    "held_for_writing",
    "is_disk_full",
    "pause_point",
    "say_without_space",
]

log = logging.getLogger(__name__)

DEFAULT_MODE = 0o600  # a new database holds minors' IDs: owner only
MIN_FREE_BYTES = 8 * 1024 * 1024  # kept free beyond every estimate (DuckDB's own headroom)


class DiskFullError(ReconError):
    """Not enough free space for a write; nothing was changed."""


class FileHeldError(ReconError):
    """Another program holds the published database open for writing."""


def file_mode(path: Path) -> int:
    """The permission bits of ``path``, or :data:`DEFAULT_MODE` for a file not there yet."""
    try:
        return os.stat(path).st_mode & 0o777
    except FileNotFoundError:
        return DEFAULT_MODE


def dir_mode(mode: int) -> int:
    """A folder's mode for files of ``mode``: whoever may read a file may list its folder."""
    return mode | ((mode & 0o444) >> 2) | 0o700


def fsync_path(path: Path, *, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def free_bytes(folder: Path) -> int:
    """Free space for an unprivileged writer in ``folder`` (tests replace shutil.disk_usage)."""
    return int(shutil.disk_usage(folder).free)


def check_free_space(folder: Path, need: int, what: str, margin: int = MIN_FREE_BYTES) -> None:
    """Refuse a write that would not fit (with ``margin`` to spare), before anything is written."""
    free = free_bytes(folder)
    if free < need + margin:
        raise DiskFullError(
            f"磁盘空间不足，未写入任何内容 (not enough free space in {folder} for {what}: "
            f"{free / 2**20:.1f} MiB free, about {(need + margin) / 2**20:.1f} MiB needed; "
            "free some space and run again)"
        )


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def say_without_space(message: str) -> None:
    """Keep a message where no disk space is needed: the log and stderr."""
    log.error("%s", message)
    try:
        print(f"recon: {message}", file=sys.stderr, flush=True)
    except OSError:
        pass


def held_for_writing(path: Path) -> int | None:
    """The pid of another process holding a write lock on ``path`` (a DuckDB read-write
    connection holds one for as long as it is open), or None."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        probe = struct.pack("hhqqi", fcntl.F_RDLCK, os.SEEK_SET, 0, 0, 0)
        kind, _, _, _, pid = struct.unpack("hhqqi", fcntl.fcntl(fd, fcntl.F_GETLK, probe))
    finally:
        os.close(fd)
    return pid if kind == fcntl.F_WRLCK and pid != os.getpid() else None


def pause_point(op: str, point: str) -> None:
    """Test hook for kill -9 tests: with RECON_TEST_PAUSE_AT='{op}:{point}' (e.g.
    'finish:before_replace'), touch RECON_TEST_PAUSE_FILE and sleep, so a test can kill
    the process exactly there. Does nothing unless the variable is set."""
    if os.environ.get("RECON_TEST_PAUSE_AT") != f"{op}:{point}":
        return
    marker = os.environ.get("RECON_TEST_PAUSE_FILE")
    if marker:
        Path(marker).write_text(str(os.getpid()))
    time.sleep(float(os.environ.get("RECON_TEST_PAUSE_S", "60")))
