"""Tell someone a night failed or was missed: the note in the night's reports folder, and
the webhook or command of notify.toml (nothing sent when unset).

A notifier's own failure is logged, never raised: it must not hide the night's failure.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import urllib.request
from pathlib import Path

from datetime import date, datetime

from reconcile import night_alerts, night_reports, store
from reconcile.config import NotifySettings, load_notify
from reconcile.errors import ReconError

__all__ = ["send", "tell", "tell_missed"]

log = logging.getLogger(__name__)


def send(settings: NotifySettings, *, event: str, night: str, run_id: str | None, reason: str,
         note: Path | None, db: str) -> list[str]:
    """POST the event to the webhook and/or run the command; returns what was done."""
    done: list[str] = []
    body = {"event": event, "night": night, "run_id": run_id, "reason": reason,
            "note": str(note) if note else None, "db": db}
    if settings.webhook_url:
        try:
            req = urllib.request.Request(settings.webhook_url, data=json.dumps(body, ensure_ascii=False).encode(),
                                         headers={"Content-Type": "application/json; charset=utf-8"}, method="POST")
            with urllib.request.urlopen(req, timeout=settings.timeout_s) as resp:  # noqa: S310 - configured address
                done.append(f"webhook answered {resp.status}")
        except OSError as exc:
            log.error("notify: the webhook could not be reached (%s)", type(exc).__name__)
    if settings.command:
        env = {**os.environ, "RECON_EVENT": event, "RECON_NIGHT": night, "RECON_RUN_ID": run_id or "",
               "RECON_REASON": reason, "RECON_NOTE": str(note or "")}
        try:
            out = subprocess.run([*settings.command, str(note or "")], env=env, timeout=settings.timeout_s,
                                 capture_output=True, check=False)
            done.append(f"command exited {out.returncode}")
            if out.returncode:
                log.error("notify: %s exited %d", settings.command[0], out.returncode)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.error("notify: %s could not be run (%s)", settings.command[0], type(exc).__name__)
    return done


def tell(*, db: str, reports: str, config: str | None, night: date, kind: str, reason: str,
         run_id: str | None, when: datetime) -> Path | None:
    """Write the night's 运行失败说明.txt and send it where notify.toml says."""
    text = night_alerts.failure_note(night=night, kind=kind, reason=reason, run_id=run_id, when=when,
                                     db=db, reports=reports)
    note = night_reports.write_note(Path(reports), night, text)
    try:
        settings = load_notify(Path(config) if config else None)
    except ReconError as exc:
        log.error("notify.toml could not be read (%s); nobody was sent the note", exc)
        return note
    send(settings, event=kind, night=night.isoformat(), run_id=run_id, reason=reason, note=note, db=db)
    return note


def tell_missed(*, db: Path, reports: str, config: str | None, until: date, when: datetime) -> list[date]:
    """Nights through ``until`` that no run completed (killed, failed, never started),
    each told once (a night whose folder has the note already is not told again)."""
    told: list[date] = []
    for night, reason, run_id in night_alerts.missed_nights(store.read_runs(db), until):
        if (Path(reports) / night.isoformat() / night_reports.FAILURE_NOTE).exists():
            continue
        log.warning("night %s has no succeeded run: %s", night, reason)
        tell(db=str(db), reports=reports, config=config, night=night, kind="missed", reason=reason,
             run_id=run_id, when=when)
        told.append(night)
    return told
