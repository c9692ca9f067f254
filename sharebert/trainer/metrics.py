"""What a pretraining run reports: RUN_DIR/metrics.jsonl, a tqdm bar, and (with --wandb) Weights & Biases.

metrics.jsonl holds one JSON object a line: every logged step
  {"step", "samples", "loss", "lr", "grad_norm", "loss_scale", "samples_per_s", "elapsed_s", "epoch"}
and every validation {"step", "val_loss", "val_mlm_acc", "val_samples", "elapsed_s"}.
Only global rank 0 writes. wandb is imported only when asked for and never waits on the network
unless the user has set it up online.
"""

from __future__ import annotations

import json
import logging
import math
import netrc
import os
from pathlib import Path

from ..fileio import atomic_path
from ..progress import progress_bar

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
WANDB_HOST = "api.wandb.ai"


def keep_records_up_to(path: Path, step: int) -> None:
    """Drop the records after `step` (logged by a run that died after its last checkpoint)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line).get("step", math.inf) <= step:
                kept.append(line)
        except (json.JSONDecodeError, AttributeError):
            continue  # a line cut short by a kill
    with atomic_path(path) as tmp:
        tmp.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")


def wandb_mode() -> str:
    """WANDB_MODE if the user set it; online if wandb credentials are configured; offline otherwise."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    try:
        netrc_path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
        if netrc_path.exists() and netrc.netrc(netrc_path).authenticators(WANDB_HOST):
            return "online"
    except (netrc.NetrcParseError, OSError):
        pass
    return "offline"


def start_wandb(project: str, name: str, folder: Path, config: dict, resume_id: str | None):
    """A wandb run (resumed when `resume_id` is given); offline unless the user set wandb up online."""
    import wandb

    mode = wandb_mode()
    kwargs = dict(
        project=project, name=name, dir=str(folder), config=config, id=resume_id, resume="allow" if resume_id else None
    )
    try:
        return wandb.init(mode=mode, settings=wandb.Settings(init_timeout=60), **kwargs)
    except Exception as e:
        if mode == "offline":
            raise
        log.warning("wandb could not start online (%s); logging offline instead", e)
        return wandb.init(mode="offline", **kwargs)


class MetricsLog:
    """Writes records to metrics.jsonl (and wandb), shows them on the bar and, every `print_steps`, in the log."""

    def __init__(
        self, folder: Path, enabled: bool, first_step: int, total_steps: int | None, print_steps: int, wandb_run=None
    ):
        self.enabled, self.print_steps, self.wandb_run = enabled, print_steps, wandb_run
        self._file = open(Path(folder) / METRICS_FILE, "a", encoding="utf-8") if enabled else None
        self._bar = (
            progress_bar(total=total_steps, initial=first_step, unit="step", desc="pretrain") if enabled else None
        )
        self._bar_step = first_step

    def log_step(self, record: dict, time_left_s: float | None) -> None:
        if not self.enabled:
            return
        self._write(record)
        step = record["step"]
        if self._bar is not None and not self._bar.disable:
            self._bar.update(step - self._bar_step)
            self._bar_step = step
            left = "" if time_left_s is None else _duration(time_left_s)
            self._bar.set_postfix(
                loss=f"{record['loss']:.4f}",
                lr=f"{record['lr']:.2e}",
                samples_s=f"{record['samples_per_s']:.0f}",
                left=left,
                refresh=False,
            )
        if step % self.print_steps == 0:
            log.info(
                "step %d: loss %.4f, lr %.3g, %.0f samples/s%s",
                step,
                record["loss"],
                record["lr"],
                record["samples_per_s"],
                f", {_duration(time_left_s)} left" if time_left_s is not None else "",
            )

    def log_validation(self, record: dict) -> None:
        if not self.enabled:
            return
        self._write(record)
        log.info(
            "step %d: validation loss %.4f, masked-token accuracy %.4f",
            record["step"],
            record["val_loss"],
            record["val_mlm_acc"],
        )

    def _write(self, record: dict) -> None:
        self._file.write(json.dumps(record, sort_keys=True) + "\n")
        self._file.flush()
        if self.wandb_run is not None:
            self.wandb_run.log({k: v for k, v in record.items() if k != "step" and v is not None}, step=record["step"])

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._file is not None:
            self._file.close()
        if self.wandb_run is not None:
            self.wandb_run.finish()

    def __enter__(self) -> MetricsLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
