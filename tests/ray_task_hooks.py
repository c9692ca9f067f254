"""Run by tests/test_ray_cluster.py as a `sharebert` driver whose tasks are slowed down and logged, so that
a test can kill a Ray worker while it runs a task, or the driver while tasks are finished and not.

    python ray_task_hooks.py LOG_FOLDER DELAY_SECONDS (prepare|mask) ARGS...

Each task writes LOG_FOLDER/<its name>.<pid>.start before it sleeps DELAY_SECONDS and runs the stage's own
task function (the workers import this module, with the tests folder on their PYTHONPATH): mask's task of
sample files, named after its first file, or prepare's phase-1 batch, named batch-<index>. prepare's batches
are cut at PREPARE_BATCH_CHARS characters, so that even the built-in corpus makes many."""

from __future__ import annotations

import functools
import os
import sys
import time
from pathlib import Path

PREPARE_BATCH_CHARS = 60_000


def _log_and_wait(log_folder: str, delay: float, name: str) -> None:
    (Path(log_folder) / f"{name}.{os.getpid()}.start").touch()
    time.sleep(delay)


def logged_slow_run_tasks(log_folder: str, delay: float, tasks):
    from sharebert.pipeline.mask import stage

    _log_and_wait(log_folder, delay, tasks[0].name)
    return stage._run_tasks(tasks)


def logged_slow_process_batch(log_folder: str, delay: float, task):
    from sharebert.pipeline.prepare import spill

    _log_and_wait(log_folder, delay, f"batch-{task.index}")
    return spill.process_batch(task)


def main(argv: list[str]) -> int:
    import ray_task_hooks

    from sharebert.cli import main as sharebert_main

    log_folder, delay, *command = argv
    # The hooks are pickled by reference (module ray_task_hooks), so the workers run them too.
    if command[0] == "prepare":
        from sharebert.pipeline.prepare import stage

        stage.BATCH_CHARS = PREPARE_BATCH_CHARS
        stage.process_batch = functools.partial(ray_task_hooks.logged_slow_process_batch, log_folder, float(delay))
    else:
        from sharebert.pipeline.mask import stage

        stage._run_tasks = functools.partial(ray_task_hooks.logged_slow_run_tasks, log_folder, float(delay))
    return sharebert_main(command)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
