"""metrics.jsonl and its Weights & Biases mirror, for pretraining and fine-tuning alike; pretraining's bar.

`MetricsFile` appends one JSON object a line (keys sorted), flushed per record, and mirrors each record to
a wandb run when one is attached; `start_wandb` starts that run, offline unless the user asks for online.
Pretraining writes RUN_DIR/metrics.jsonl (global rank 0 only): every logged step
  {"step", "samples", "loss", "lr", "grad_norm", "loss_scale", "samples_per_s", "elapsed_s", "epoch"}
and every validation {"step", "val_loss", "val_mlm_acc", "val_samples", "elapsed_s"}; `PretrainMetricsLog`
also shows them on a tqdm bar and in the log. Fine-tuning's records (its "train", "eval" and "final"
events) are listed in finetune.py. wandb is imported only when asked for.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable
from pathlib import Path

from ..fileio import atomic_path
from ..progress import progress_bar

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
WANDB_INIT_TIMEOUT_S = 60


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


# ------------------------------------------------------------------------------------ wandb
def wandb_mode() -> str:
    """WANDB_MODE if the user set it (online to go online), else offline: stored credentials alone send nothing."""
    return os.environ.get("WANDB_MODE") or "offline"


def start_wandb(
    project: str, name: str, folder: Path, config: dict, resume_id: str | None = None, group: str | None = None
):
    """A wandb run (resumed when `resume_id` is given) in `wandb_mode()`; offline when an online start fails."""
    import wandb

    mode = wandb_mode()
    kwargs = dict(
        project=project,
        name=name,
        group=group,
        dir=str(folder),
        config=config,
        id=resume_id,
        resume="allow" if resume_id else None,
    )
    if mode == "offline":
        return wandb.init(mode=mode, **kwargs)
    try:
        return wandb.init(mode=mode, settings=wandb.Settings(init_timeout=WANDB_INIT_TIMEOUT_S), **kwargs)
    except Exception as e:
        log.warning("wandb could not start %s (%s); logging offline instead", mode, e)
        return wandb.init(mode="offline", **kwargs)


# ------------------------------------------------------------------------------------ metrics.jsonl
def values_but_step(record: dict) -> dict:
    """What wandb logs of a pretraining record: every value but the step (its x axis) and the missing ones."""
    return {k: v for k, v in record.items() if k != "step" and v is not None}


class MetricsFile:
    """Appends records to metrics.jsonl, one JSON object a line, flushed per record (a kill loses none).

    Disabled (on ranks other than 0) it writes nothing. Each record is mirrored to the attached wandb run, if
    any, as `wandb_values(record)` at the record's step.
    """

    def __init__(
        self,
        path: Path,
        enabled: bool = True,
        wandb_run=None,
        wandb_values: Callable[[dict], dict] = values_but_step,
    ):
        self.wandb_run, self.wandb_values = wandb_run, wandb_values
        self._file = open(path, "a", encoding="utf-8") if enabled else None

    def write(self, record: dict) -> None:
        if self._file is None:
            return
        self._file.write(json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n")
        self._file.flush()
        if self.wandb_run is not None:
            self.wandb_run.log(self.wandb_values(record), step=record["step"])

    def mirror_to(self, wandb_run) -> None:
        """Mirror the next records to `wandb_run` (after finishing the run mirrored so far)."""
        self.finish_wandb()
        self.wandb_run = wandb_run

    def finish_wandb(self) -> None:
        if self.wandb_run is not None:
            self.wandb_run.finish()
            self.wandb_run = None

    def close(self) -> None:
        self.finish_wandb()
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> MetricsFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ------------------------------------------------------------------------------------ pretraining's view
class PretrainMetricsLog:
    """Pretraining's records: to metrics.jsonl (and wandb), on the bar and, every `print_steps`, in the log."""

    def __init__(
        self, folder: Path, enabled: bool, first_step: int, total_steps: int | None, print_steps: int, wandb_run=None
    ):
        self.enabled, self.print_steps = enabled, print_steps
        self.file = MetricsFile(Path(folder) / METRICS_FILE, enabled, wandb_run)
        self._bar = (
            progress_bar(total=total_steps, initial=first_step, unit="step", desc="pretrain") if enabled else None
        )
        self._bar_step = first_step

    def log_step(self, record: dict, time_left_s: float | None) -> None:
        if not self.enabled:
            return
        self.file.write(record)
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
        self.file.write(record)
        log.info(
            "step %d: validation loss %.4f, masked-token accuracy %.4f",
            record["step"],
            record["val_loss"],
            record["val_mlm_acc"],
        )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        self.file.close()

    def __enter__(self) -> PretrainMetricsLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
