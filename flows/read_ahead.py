"""The inbox read while `recon run`'s own Prefect server starts.

A night's first task is reading the inbox, and the server takes 5-10 s to answer before
the flow may begin: `recon run` reads the inbox in those seconds (the reading needs no
Prefect) and the flow's ``read_inbox`` task takes what was read instead of reading again.
Only a first try takes it: a retry (a transient read error) reads the inbox afresh. What
went wrong while reading ahead is raised inside the task, where a night's failures are
recorded, never before the flow.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from reconcile import ingest
from reconcile.config import Settings, load_settings

__all__ = ["ReadAhead", "read_ahead", "take"]

_lock = threading.Lock()


@dataclass
class ReadAhead:
    """One inbox read before its flow began: the settings it was read with (the flow's own,
    so the config folder is read once), its result or the exception that ended it."""

    settings: Settings
    result: ingest.IngestResult | None = None
    error: BaseException | None = None

    def take(self) -> ingest.IngestResult | None:
        """What was read, once (None after the first call): raises what reading raised.
        Handed over, not kept: the night frees the raw sheets once their records are built."""
        result, error, self.result, self.error = self.result, self.error, None, None
        if error is not None:
            raise error
        return result


_waiting: dict[tuple[str, str | None], ReadAhead] = {}


def _key(inbox: str | Path, config: str | None) -> tuple[str, str | None]:
    return str(Path(inbox).resolve()), None if config is None else str(Path(config).resolve())


def read_ahead(inbox: str | Path, config: str | None,
               on_file: Callable[[str, int, int], None] | None = None) -> ReadAhead | None:
    """Read ``inbox`` now for the flow that will be started with these parameters. None when
    there is nothing to read (no such folder: the flow reports it) or the config folder is
    bad (the flow loads it and fails as a night does). ``on_file`` as for ``ingest.read_inbox``
    (no Prefect logger yet: the caller shows the progress)."""
    path = Path(inbox)
    if not path.is_dir():
        return None
    try:
        settings = load_settings(Path(config) if config else None)
    except Exception:  # noqa: BLE001 - the flow loads the config again and records the failure
        return None

    ahead = ReadAhead(settings)
    try:
        ahead.result = ingest.read_inbox(path, settings.header_aliases, on_file=on_file)
    except Exception as exc:  # noqa: BLE001 - raised again inside the flow's task
        ahead.error = exc
    with _lock:
        _waiting[_key(inbox, config)] = ahead
    return ahead


def take(inbox: str | Path, config: str | None) -> ReadAhead | None:
    """The read-ahead waiting for a flow of these parameters, removed from the waiting list
    (a later night in the same process reads afresh)."""
    with _lock:
        return _waiting.pop(_key(inbox, config), None)
