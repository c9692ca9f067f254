"""Helpers of the --engine ray tests: folder contents; the clusters come from bench/ray_cluster.py."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from ray_cluster import OBJECT_STORE_BYTES, process_title, processes_of, ray_cluster, stop_processes

__all__ = ["OBJECT_STORE_BYTES", "folder_bytes", "process_title", "processes_of", "ray_cluster", "stop_processes"]


def folder_bytes(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (hidden work files too), by relative path."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}
