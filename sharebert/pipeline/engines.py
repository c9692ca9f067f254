"""Where the tasks of `prepare` and `mask` run: `--engine local`, this machine's process pool
(parallel.WorkerPool), or `--engine ray`, a Ray cluster (ray_engine.RayPool; docs/cluster.md). Both keep
one contract, so a stage's code is the same on either; this module picks one. Kept light: the stages'
configs import it, and Ray is imported only when chosen."""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import ConfigError
from .parallel import WorkerPool, default_workers

ENGINES = ("local", "ray")


def check_engine(engine: str, ray_address: str | None) -> None:
    """The engine settings of a stage's config (--engine, --ray-address)."""
    if engine not in ENGINES:
        raise ConfigError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if ray_address is not None and engine != "ray":
        raise ConfigError("--ray-address: only used with --engine ray")


def open_pool(
    engine: str,
    workers: int | None,
    *,
    preload: Sequence[str] = (),
    ray_address: str | None = None,
    at_most: int | None = None,
):
    """The task runner of `engine`: a WorkerPool ("local") or a RayPool ("ray"), both with `workers`,
    `initialize`, `map_ordered`, `check_shared`, `release` and the context manager. `workers` None: every
    core here, or every CPU of the Ray cluster; `at_most`: never more workers than that."""
    if engine == "ray":
        from .ray_engine import RayPool

        return RayPool(workers, address=ray_address, at_most=at_most, preload=preload)
    workers = default_workers() if workers is None else workers
    return WorkerPool(min(workers, at_most) if at_most else workers, preload=preload)
