"""First command on a fresh machine: install the locked dependencies into .venv/, then run.

Needs only Python 3.11 and pip. Usage: python3 bootstrap.py [--no-run] [recon run options...]
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")


def sh(*cmd: str) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def main(argv: list[str]) -> int:
    if sys.version_info[:2] != (3, 11):
        print(f"recon needs Python 3.11 (this is {sys.version.split()[0]})", file=sys.stderr)
        return 2
    if not (BIN / "python").exists():
        venv.EnvBuilder(with_pip=True).create(VENV)
    py = str(BIN / "python")
    env_quiet = ["--disable-pip-version-check", "--no-input"]
    sh(py, "-m", "pip", "install", *env_quiet, "-q", "--no-deps", "-r", "requirements.lock")
    sh(py, "-m", "pip", "install", *env_quiet, "-q", "--no-deps", "-e", ".")
    if "--no-run" in argv:
        return 0
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    return subprocess.run([str(BIN / "recon"), "run", *argv], cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
