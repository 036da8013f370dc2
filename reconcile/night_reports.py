"""A night's reports folder: staged, swapped into place after the database publish,
repaired on the next start when a kill fell between the two, and the failure note.

``<reports>/<night>/`` holds the workbooks of the night's newest succeeded run, named in
its ``.run_id`` file. A run writes into ``.staging-<run_id>`` and, once the database says
it succeeded, renames that into place (the old folder goes to ``.old-<night>-…`` first).
A kill -9 between the publish and the rename leaves the staging folder of a succeeded
run: :func:`repair`, called under the run lock at the next start, finishes the swap.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable
from datetime import date
from pathlib import Path

from reconcile.atomic_files import say_without_space

__all__ = ["FAILURE_NOTE", "RUN_MARK", "repair", "staging_dir", "swap_into_place", "write_note", "run_of"]

FAILURE_NOTE = "运行失败说明.txt"
RUN_MARK = ".run_id"  # the run whose workbooks a night folder holds
_STAGING = ".staging-"
_OLD = ".old-"


def staging_dir(reports: Path, run_id: str) -> Path:
    return reports / f"{_STAGING}{run_id}"


def run_of(folder: Path) -> str | None:
    """The run whose workbooks ``folder`` holds (None: none, or written before the mark)."""
    try:
        return (folder / RUN_MARK).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def swap_into_place(staging: Path, final: Path, run_id: str) -> None:
    """Make ``staging`` the night's folder: two renames, the old folder deleted after."""
    (staging / RUN_MARK).write_text(run_id + "\n", encoding="utf-8")
    old = final.with_name(f"{_OLD}{final.name}-{uuid.uuid4().hex[:6]}")
    if final.exists():
        final.rename(old)
    staging.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def repair(reports: Path, state: Callable[[str], tuple[str, date] | None]) -> list[str]:
    """Finish what a killed run left (call under the run lock): a succeeded run's staging
    folder is swapped into place, any other is deleted; an ``.old-<night>`` folder is put
    back when its night has no folder (killed between the two renames), else deleted.
    ``state(run_id)`` gives a run's status and night. Returns what was done, for the log."""
    done: list[str] = []
    if not reports.is_dir():
        return done
    for staging in sorted(p for p in reports.iterdir() if p.is_dir() and p.name.startswith(_STAGING)):
        run_id = staging.name[len(_STAGING):]
        found = state(run_id)
        if found is not None and found[0] == "succeeded":
            final = reports / found[1].isoformat()
            if run_of(final) != run_id:
                swap_into_place(staging, final, run_id)
                done.append(f"swapped the workbooks of succeeded run {run_id} into {final.name}")
                continue
        shutil.rmtree(staging, ignore_errors=True)
        done.append(f"removed the staging folder of run {run_id} ({found[0] if found else 'unknown'})")
    for old in sorted(p for p in reports.iterdir() if p.is_dir() and p.name.startswith(_OLD)):
        night = old.name[len(_OLD):].rsplit("-", 1)[0]
        final = reports / night
        if not final.exists():
            old.rename(final)
            done.append(f"put the previous workbooks of {night} back")
        else:
            shutil.rmtree(old, ignore_errors=True)
    return done


def write_note(reports: Path, night: date, text: str, *, replace: bool = True) -> Path | None:
    """Write the failure note into the night's folder; when even that fails (a full disk),
    say it on stderr and in the log instead. Returns the note's path, or None."""
    path = reports / night.isoformat() / FAILURE_NOTE
    if path.exists() and not replace:
        return None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        say_without_space(f"could not write {path} ({type(exc).__name__}: {exc.strerror}); the note was:\n{text}")
        return None
    return path
