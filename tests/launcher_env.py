"""Running `sharebert` in a subprocess, without the launcher's variables, which an in-process pretraining
test leaves behind in this process (its port stays taken while its process group lives)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import sharebert

REPO = Path(sharebert.__file__).resolve().parents[1]
LAUNCHER_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def subprocess_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARIABLES}
    env.update(extra)
    return env


def run_sharebert(*argv) -> subprocess.CompletedProcess:
    """`python -m sharebert ARGV -q` from the repository, one thread, output captured."""
    env = subprocess_env(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "sharebert", *map(str, argv), "-q"]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
