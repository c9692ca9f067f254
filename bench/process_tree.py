"""Peak memory and CPU time of a benchmark's child process together with all its descendants (pool
workers and the fork server they come from), sampled from beside it."""

from __future__ import annotations

import subprocess
import threading
import time

TREE_SECONDS = 0.5  # how often the sampler lists the process tree


def run_sampled(command: list[str], sample: bool = True) -> tuple[str, int | None, float | None]:
    """Run `command`; return (its stdout, peak summed RSS of its process tree in bytes, the tree's CPU
    seconds); both None when not sampled or without psutil. The sampler costs about 2% of a core, so
    runs that are timed should not be sampled. A failing command ends the benchmark with its stderr."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = TreeSampler(process) if sample else None
    out, err = process.communicate()
    if sampler is not None:
        sampler.stop()
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command[1:3])} ... failed (exit {process.returncode}):\n{err}")
    if sampler is None or sampler.tree_cpu is None:
        return out, None, None
    return out, sampler.peak_rss, sampler.tree_cpu


class TreeSampler:
    """Samples, every 50 ms, the summed RSS of a process and all its descendants (pool workers, a fork
    server) and the CPU time of each; without psutil, only the child's own report is available.

    It runs beside the measured run, on the same cores, so it must stay cheap: listing the process tree
    scans all of /proc (doing it every 50 ms took ~5% of a core, which slowed a 2-worker run on two cores
    by ~3%), so the tree is listed every TREE_SECONDS and only its known members are sampled between."""

    def __init__(self, process: subprocess.Popen):
        self.process = process
        self.peak_rss = 0
        self.cpu: dict[int, float] = {}
        self.tree_cpu: float | None = None
        try:
            import psutil
        except ImportError:
            self._thread = None
            return
        self._thread = threading.Thread(target=self._run, args=(psutil,), daemon=True)
        self._thread.start()

    def _run(self, psutil) -> None:
        root = psutil.Process(self.process.pid)
        tree, listed = [root], 0.0
        while self.process.poll() is None:
            if time.monotonic() - listed >= TREE_SECONDS:
                try:
                    tree, listed = [root, *root.children(recursive=True)], time.monotonic()
                except psutil.Error:
                    break
            total = 0
            for p in tree:
                try:
                    total += p.memory_info().rss
                    times = p.cpu_times()
                    self.cpu[p.pid] = times.user + times.system
                except psutil.Error:
                    pass
            self.peak_rss = max(self.peak_rss, total)
            time.sleep(0.05)

    def stop(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self.tree_cpu = sum(self.cpu.values())
