"""`recon serve`: a flow served on a schedule that always stops on SIGTERM.

Prefect's runner handles SIGTERM by cancelling in-flight runs and pausing the deployment,
both through the API. When the Prefect server is gone (stopped first, or unreachable) those
calls retry without end and the process never exits: a service manager's stop hangs until
it sends SIGKILL. A watchdog bounds that shutdown: once the runner is stopping, it gets
``grace_s`` seconds, then the process ends itself and the flow-run processes it started.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from prefect import Flow
from prefect.runner import Runner

__all__ = ["serve", "EXIT_ON_SIGTERM"]

EXIT_ON_SIGTERM = 128 + signal.SIGTERM

_log = logging.getLogger("recon.serve")


def _children(pid: int) -> list[int]:
    """This process's descendants (the flow runs it started and theirs), from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            stat = entry.read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses
        parents[int(entry.parent.name)] = int(stat[stat.rindex(")") + 2:].split()[1])
    found, todo = [], [pid]
    while todo:
        here = todo.pop()
        kids = [p for p, pp in parents.items() if pp == here]
        found += kids
        todo += kids
    return found


def _watch(runner: Runner, started: str, grace_s: float, poll_s: float = 0.2) -> None:
    """Say ``started`` once the runner polls; when it begins stopping, give it ``grace_s``
    seconds, then end it all."""
    while not runner.started and not runner.stopping:
        time.sleep(poll_s)
    if runner.started:
        print(started, flush=True)
    while not runner.stopping:
        time.sleep(poll_s)
    time.sleep(grace_s)
    _log.warning("the Prefect runner did not stop within %.0f s of SIGTERM (is the Prefect server down?): "
                 "stopping now", grace_s)
    for child in _children(os.getpid()):
        try:
            os.kill(child, signal.SIGKILL)
        except OSError:
            pass
    logging.shutdown()
    os._exit(EXIT_ON_SIGTERM)


def serve(flow: Flow, *, name: str, parameters: dict[str, Any], description: str, schedule: Any,
          grace_s: float) -> None:
    """Serve ``flow`` as deployment ``<flow>/<name>`` until SIGTERM or Ctrl-C."""
    runner = Runner(name=name, pause_on_shutdown=True)
    runner.add_flow(flow, name=name, schedule=schedule, parameters=parameters, description=description)
    signal.signal(signal.SIGTERM, runner.handle_sigterm)  # its own, from now on, not only once it starts
    started = (f"recon serve: {flow.name}/{name} is served and polls for its scheduled runs\n"
               f"  run it now:    prefect deployment run '{flow.name}/{name}'\n"
               f"  stop it:       Ctrl-C or SIGTERM (at most {grace_s:.0f} s)")
    threading.Thread(target=_watch, args=(runner, started, grace_s), name="recon-stop-watchdog", daemon=True).start()
    try:
        asyncio.run(runner.start())
    except KeyboardInterrupt:
        pass
