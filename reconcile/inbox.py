"""Which entries of an inbox are read: regular files inside roster/, dibao/, filing/ only.

Nothing outside the inbox is ever read: the walk never follows a symbolic link (every
symlink, wherever it points, is skipped with a problem row: one pointing inside would be read
twice), and files are opened with ``O_NOFOLLOW`` and checked to be regular after opening.
FIFOs, sockets and devices are skipped with a problem row too, as is every other entry left
out: system and temporary files we can name (Thumbs.db, desktop.ini, .DS_Store, AppleDouble
``._*``, Office ``~$*`` and LibreOffice ``.~lock.*#`` locks, ``__MACOSX/``), unsupported
types, and anything outside the three folders. A name starting with ``.`` is not a reason to
skip (unzipping a Windows archive gives names like ``..\\..\\双龙镇.csv``).

A name that is not UTF-8 (what unzipping a Windows archive in GBK gives: the bytes come back
as surrogate escapes) is recorded escaped (``\\xd5\\xc5…``) in lineage and the file is read.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from .fields import SOURCES
from .problems import problem

__all__ = ["InboxFile", "SUPPORTED_EXTENSIONS", "MAX_FILE_BYTES", "list_inbox", "display_name",
           "read_regular_file", "NotRegularFile", "FileTooLarge"]

SUPPORTED_EXTENSIONS = (".xlsx", ".xls", ".csv")
MAX_FILE_BYTES = 512 * 1024**2            # any input file larger than this is refused
_SYSTEM_FILES = {"thumbs.db", "ehthumbs.db", "desktop.ini", ".ds_store", ".localized"}
_SYSTEM_DIRS = {"__macosx", "$recycle.bin", "system volume information", ".trashes",
                ".spotlight-v100", ".fseventsd"}


@dataclass(frozen=True)
class InboxFile:
    source: str
    path: Path            # as on disk (may hold surrogate escapes)
    rel: str              # lineage: inbox-relative, '/'-separated, always valid UTF-8


class NotRegularFile(OSError):
    """The entry turned out not to be a regular file when opened."""


def display_name(name: str) -> str:
    """A file name as valid UTF-8 text: a name that isn't UTF-8 has every byte beyond ASCII
    escaped as ``\\xNN`` (a guess at its encoding could be wrong; the bytes are exact)."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        return os.fsencode(name).decode("ascii", "backslashreplace")


def _is_system_file(name: str) -> bool:
    low = name.lower()
    return (low in _SYSTEM_FILES or name.startswith(("~$", "._"))
            or (name.startswith(".~lock.") and name.endswith("#")))


def _kind(mode: int) -> str:
    for test, what in ((stat.S_ISFIFO, "FIFO (named pipe)"), (stat.S_ISSOCK, "socket"),
                       (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device")):
        if test(mode):
            return what
    return "special file"


def _symlink_detail(entry: os.DirEntry, root: Path) -> str:
    try:
        target = Path(entry.path).resolve(strict=False)
        inside = target == root or root in target.parents
    except (OSError, RuntimeError):
        return "symbolic link (target unresolvable)"
    return ("symbolic link pointing inside the inbox" if inside
            else "symbolic link pointing outside the inbox")


def _walk(folder: Path, source: str, rel: str, root: Path, found: list[InboxFile],
          problems: list[dict]) -> None:
    try:
        entries = sorted(os.scandir(folder), key=lambda e: os.fsencode(e.name))
    except OSError as exc:
        problems.append(problem(source, rel + "/", "unreadable_file",
                                detail=f"folder cannot be listed: {type(exc).__name__}"))
        return
    for entry in entries:
        name = display_name(entry.name)
        if name != entry.name:
            # (reported once per entry; a file is still read, a folder still walked)
            problems.append(problem(source, f"{rel}/{name}", "file_name_not_utf8",
                                    detail="name bytes escaped as \\xNN"))
        erel = f"{rel}/{name}"
        try:
            if entry.is_symlink():
                problems.append(problem(source, erel, "symlink_skipped",
                                        detail=_symlink_detail(entry, root)))
            elif entry.is_dir(follow_symlinks=False):
                if entry.name.lower() in _SYSTEM_DIRS:
                    problems.append(problem(source, erel + "/", "skipped_system_file",
                                            detail="system folder"))
                else:
                    _walk(Path(entry.path), source, erel, root, found, problems)
            elif entry.is_file(follow_symlinks=False):
                if _is_system_file(entry.name):
                    problems.append(problem(source, erel, "skipped_system_file",
                                            detail="system or lock file"))
                elif Path(entry.name).suffix.lower() in SUPPORTED_EXTENSIONS:
                    found.append(InboxFile(source, Path(entry.path), erel))
                else:
                    problems.append(problem(source, erel, "unsupported_file",
                                            detail=Path(name).suffix.lower() or "no extension"))
            else:
                problems.append(problem(source, erel, "not_a_regular_file",
                                        detail=_kind(entry.stat(follow_symlinks=False).st_mode)))
        except OSError as exc:
            problems.append(problem(source, erel, "unreadable_file",
                                    detail=f"cannot stat: {type(exc).__name__}"))


def list_inbox(inbox: Path) -> tuple[list[InboxFile], list[dict]]:
    """The files to read, in a stable order, and a problem row for every entry left out."""
    problems: list[dict] = []
    found: list[InboxFile] = []
    if not inbox.is_dir():
        return [], [problem(None, str(display_name(str(inbox))), "inbox_missing")] + [
            problem(s, f"{s}/", "source_folder_missing") for s in SOURCES]
    root = inbox.resolve()
    try:
        # the source folders in their fixed order, then the rest by name
        order = {s: i for i, s in enumerate(SOURCES)}
        top = sorted(os.scandir(root), key=lambda e: (order.get(e.name, len(order)),
                                                      os.fsencode(e.name)))
    except OSError as exc:
        return [], [problem(None, ".", "unreadable_file",
                            detail=f"inbox cannot be listed: {type(exc).__name__}")]
    seen = set()
    for entry in top:
        name = display_name(entry.name)
        if entry.name in SOURCES and entry.is_dir(follow_symlinks=False) and not entry.is_symlink():
            seen.add(entry.name)
            _walk(Path(entry.path), entry.name, entry.name, root, found, problems)
            continue
        source = entry.name if entry.name in SOURCES else None
        if entry.is_symlink():
            problems.append(problem(source, name, "symlink_skipped",
                                    detail=_symlink_detail(entry, root)))
        elif entry.is_dir(follow_symlinks=False):
            code = ("skipped_system_file" if entry.name.lower() in _SYSTEM_DIRS
                    else "folder_outside_source_folders")
            problems.append(problem(None, name + "/", code))
        elif entry.is_file(follow_symlinks=False):
            code = "skipped_system_file" if _is_system_file(entry.name) else "file_outside_source_folder"
            problems.append(problem(source, name, code))
        else:
            problems.append(problem(source, name, "not_a_regular_file",
                                    detail=_kind(entry.stat(follow_symlinks=False).st_mode)))
    for s in SOURCES:
        if s not in seen:
            problems.append(problem(s, f"{s}/", "source_folder_missing"))
    return found, problems


def read_regular_file(path: Path, limit: int = MAX_FILE_BYTES, *, head: int | None = None) -> bytes:
    """The bytes of a regular file (its first ``head`` bytes if given), never through a
    symlink; raises ``NotRegularFile`` for anything else and ``FileTooLarge`` beyond
    ``limit`` bytes."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFile(f"not a regular file: {_kind(st.st_mode)}")
        if st.st_size > limit:
            raise FileTooLarge(st.st_size, limit)
        if head is not None:
            return os.read(fd, head)
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(limit + 1)
        if len(data) > limit:
            raise FileTooLarge(len(data), limit)
        return data
    finally:
        os.close(fd)


class FileTooLarge(OSError):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"file too large: {size // 1024**2} MiB (limit {limit // 1024**2} MiB)")
