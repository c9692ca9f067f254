"""Run by tests/test_ray_cluster.py as a `sharebert` driver whose mask tasks are slowed down and logged, so
that a test can kill a Ray worker while it runs a task, or the driver while tasks are finished and not.

    python ray_task_hooks.py LOG_FOLDER DELAY_SECONDS mask ARGS...

Each task writes LOG_FOLDER/<first file of the task>.<pid>.start before it sleeps DELAY_SECONDS and runs
mask's own task function (the workers import this module, with the tests folder on their PYTHONPATH)."""

from __future__ import annotations

import functools
import os
import sys
import time
from pathlib import Path


def logged_slow_run_tasks(log_folder: str, delay: float, tasks):
    from sharebert.pipeline.mask import stage

    (Path(log_folder) / f"{tasks[0].name}.{os.getpid()}.start").touch()
    time.sleep(delay)
    return stage._run_tasks(tasks)


def main(argv: list[str]) -> int:
    import ray_task_hooks

    from sharebert.cli import main as sharebert_main
    from sharebert.pipeline.mask import stage

    log_folder, delay, *command = argv
    # The hook is pickled by reference (module ray_task_hooks), so the workers run it too.
    stage._run_tasks = functools.partial(ray_task_hooks.logged_slow_run_tasks, log_folder, float(delay))
    return sharebert_main(command)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
