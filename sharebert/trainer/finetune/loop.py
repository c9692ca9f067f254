"""The training and evaluation loop of one (task, seed) fine-tuning run, in plain PyTorch.

`FineTuner.train` reads like the loop it is: for each optimizer step, `train_step` (gradient
accumulation, clipping, mixed precision), maybe log, maybe evaluate on the selection split and keep
the best weights, maybe write a resume checkpoint. The example order is a pure function of (seed,
epoch) and the step counter, so a resumed run continues exactly where it stopped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ...errors import ConfigError, file_error
from ...fileio import atomic_path
from ...progress import progress_bar
from ..pretrain.schedule import polynomial_decay
from ..runtime import capture_rng, restore_rng
from . import glue
from .config import FinetuneConfig
from .glue_metrics import compute_metrics, predictions_from_logits, selection_score

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.pt"


# ---------------------------------------------------------------- hardware and numerics
@dataclass(frozen=True)
class Numerics:
    device: torch.device
    precision: str  # fp32, fp16 or bf16

    @property
    def dtype(self):
        return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(self.precision)

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    @property
    def pad_multiple(self) -> int:
        return 8 if self.dtype is not None else 1  # tensor-core friendly widths in half precision


def choose_numerics(device: str, precision: str) -> Numerics:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda but no CUDA GPU is available")
    if dev.type == "cpu":
        if precision in ("fp16", "bf16"):
            log.warning("%s mixed precision needs a GPU: training in fp32 on the CPU", precision)
        return Numerics(dev, "fp32")
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return Numerics(dev, precision)


@dataclass
class TaskData:
    task: glue.GlueTask
    train: glue.EncodedSplit | None
    dev: dict[str, glue.EncodedSplit]
    test: dict[str, glue.EncodedSplit]


def to_device(batch: dict[str, np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v).to(device, non_blocking=True) for k, v in batch.items()}


# ---------------------------------------------------------------- evaluation
@torch.no_grad()
def predict_logits(model, data: glue.EncodedSplit, batch_size: int, numerics: Numerics, pad_id: int) -> np.ndarray:
    """Logits for every example, batched longest first (little padding), returned in the split's order."""
    was_training = model.training
    model.eval()
    order = np.argsort(-data.lengths, kind="stable")
    out = None
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        with numerics.autocast():
            logits = model(**to_device(data.padded(rows, pad_id, numerics.pad_multiple), numerics.device)).logits
        logits = logits.float().cpu().numpy()
        if out is None:
            out = np.zeros((len(data), logits.shape[-1]), dtype=np.float32)
        out[rows] = logits
    model.train(was_training)
    return out


def evaluate(
    model, task: glue.GlueTask, splits: dict[str, glue.EncodedSplit], batch_size: int, numerics: Numerics, pad_id: int
) -> dict[str, dict[str, float]]:
    results = {}
    for name, data in splits.items():
        predictions = predictions_from_logits(task, predict_logits(model, data, batch_size, numerics, pad_id))
        results[name] = compute_metrics(task, predictions, data.labels)
    return results


# ---------------------------------------------------------------- training
@dataclass(frozen=True)
class Plan:
    """How many optimizer steps, and which examples each one takes (a pure function of seed and step)."""

    examples: int
    batch_size: int
    accumulation: int
    total_steps: int
    warmup_steps: int
    seed: int

    @property
    def micro_batches_per_epoch(self) -> int:
        return math.ceil(self.examples / self.batch_size)

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.micro_batches_per_epoch / self.accumulation)

    def epoch_order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.examples)

    def micro_batches(self, step: int, order: np.ndarray) -> list[np.ndarray]:
        """Row indices of the micro-batches of optimizer step `step` (0-based) within its epoch's order."""
        first = (step % self.steps_per_epoch) * self.accumulation
        last = min(first + self.accumulation, self.micro_batches_per_epoch)
        return [order[i * self.batch_size : (i + 1) * self.batch_size] for i in range(first, last)]


def make_plan(config: FinetuneConfig, examples: int, seed: int) -> Plan:
    plan = Plan(examples, config.per_device_train_batch_size, config.gradient_accumulation_steps, 0, 0, seed)
    if config.max_steps > 0:
        total = config.max_steps
    else:
        total = max(1, math.ceil(config.num_train_epochs * plan.steps_per_epoch))
    warmup = config.warmup_steps or math.ceil(config.warmup_ratio * total)
    return dataclasses.replace(plan, total_steps=total, warmup_steps=warmup)


def lr_factor(config: FinetuneConfig, step: int, plan: Plan) -> float:
    """The LR multiplier for the update after `step` updates (Hugging Face's schedules)."""
    kind = config.lr_scheduler_type
    if kind in ("constant", "constant_with_warmup"):
        if kind == "constant" or step >= plan.warmup_steps:
            return 1.0
        return step / max(1, plan.warmup_steps)
    end = config.lr_end / config.learning_rate if kind == "polynomial" else 0.0
    power = config.power if kind == "polynomial" else 1.0
    return polynomial_decay(step, plan.total_steps, plan.warmup_steps, power, end)


def make_optimizer(model, config: FinetuneConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on weight matrices only (not on biases and normalization weights)."""
    no_decay = set()
    for module in model.modules():
        is_norm = isinstance(module, torch.nn.LayerNorm) or "Norm" in type(module).__name__
        for name, p in module.named_parameters(recurse=False):
            if is_norm or name.endswith("bias"):
                no_decay.add(id(p))
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if id(p) not in no_decay], "weight_decay": config.weight_decay},
        {"params": [p for p in params if id(p) in no_decay], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(
        groups, lr=config.learning_rate, betas=(config.adam_beta1, config.adam_beta2), eps=config.adam_epsilon
    )


@dataclass
class TrainState:
    """Progress of one run: what a resume checkpoint restores besides the weights and the optimizer."""

    step: int = 0
    best_score: float | None = None
    best_step: int | None = None
    evaluations_since_best: int = 0
    skipped_steps: int = 0  # non-finite gradients
    history: list = field(default_factory=list)  # {"step", "score", "metrics"} per evaluation
    train_seconds: float = 0.0


class FineTuner:
    """Trains one (task, seed) run: train_step, periodic evaluation with best-weight keeping, checkpoints."""

    def __init__(
        self,
        model,
        config: FinetuneConfig,
        data: TaskData,
        seed: int,
        numerics: Numerics,
        pad_id: int,
        run_dir: Path,
        metrics_log,
    ):
        self.model, self.config, self.data, self.seed = model, config, data, seed
        self.task = data.task
        self.numerics, self.pad_id, self.run_dir, self.metrics_log = numerics, pad_id, run_dir, metrics_log
        self.plan = make_plan(config, len(data.train), seed)
        self.optimizer = make_optimizer(model, config)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: lr_factor(config, s, self.plan))
        self.scaler = torch.amp.GradScaler(numerics.device.type) if numerics.precision == "fp16" else None
        self.state = TrainState()
        self.best_weights: dict | None = None
        self.selection = {s: d for s, d in data.dev.items() if s == self.task.selection_split}
        self.evaluating = config.evaluation_strategy != "no" and bool(self.selection)

    # -- the loop
    def train(self) -> TrainState:
        """Train to the planned step (or an early stop); the model ends with the best weights."""
        self.model.train()
        self._resume()
        plan, state = self.plan, self.state
        bar = progress_bar(
            total=plan.total_steps, initial=state.step, desc=f"{self.task.folder} seed {self.seed}", unit="step"
        )
        self._clock, self._loss_since_log, self._logged_at = time.perf_counter(), 0.0, state.step
        order_epoch, order = -1, None
        try:
            while state.step < plan.total_steps:
                epoch = state.step // plan.steps_per_epoch
                if epoch != order_epoch:
                    order_epoch, order = epoch, plan.epoch_order(epoch)
                self._loss_since_log += self.train_step(plan.micro_batches(state.step, order))
                state.step += 1
                bar.update(1)
                if self._after_step():
                    log.info("%s seed %d: early stop at step %d", self.task.folder, self.seed, state.step)
                    break
        finally:
            bar.close()
        self._tick()
        if self.best_weights is not None:
            self.model.load_state_dict(self.best_weights)
        elif not self.evaluating:
            state.best_step = state.step  # no selection: the final weights are the result
        return state

    def _after_step(self) -> bool:
        """Log, evaluate and checkpoint when due; True when early stopping says stop."""
        step, total = self.state.step, self.plan.total_steps
        if step % self.config.logging_steps == 0 or step == total:
            self._log_training()
        if self._should_evaluate(step) and self._evaluate_and_keep_best():
            return True
        if self.config.save_steps and step % self.config.save_steps == 0 and step < total:
            self._save_checkpoint()
        return False

    def _tick(self) -> None:
        now = time.perf_counter()
        self.state.train_seconds += now - self._clock
        self._clock = now

    def train_step(self, micro_batches: list[np.ndarray]) -> torch.Tensor:
        """One optimizer step over the micro-batches (gradient accumulation); returns the mean loss (on device)."""
        total_rows = sum(len(rows) for rows in micro_batches)
        loss_sum = torch.zeros((), device=self.numerics.device)
        for rows in micro_batches:
            batch = self.data.train.padded(rows, self.pad_id, self.numerics.pad_multiple)
            labels = self.data.train.labels[rows]
            batch["labels"] = labels.astype(np.float32 if self.task.is_regression else np.int64)
            with self.numerics.autocast():
                loss = self.model(**to_device(batch, self.numerics.device)).loss
            scaled = loss * (len(rows) / total_rows)
            (self.scaler.scale(scaled) if self.scaler else scaled).backward()
            loss_sum += scaled.detach()
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.max_grad_norm or float("inf"))
        if self.scaler:
            self.scaler.step(self.optimizer)  # skips the step itself when the gradients overflowed
            self.scaler.update()
        elif torch.isfinite(norm):
            self.optimizer.step()
        else:
            self.state.skipped_steps += 1
            log.warning(
                "%s seed %d step %d: non-finite gradient, step skipped",
                self.task.folder,
                self.seed,
                self.state.step + 1,
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        return loss_sum

    # -- evaluation and best weights
    def _should_evaluate(self, step: int) -> bool:
        if not self.evaluating:
            return False
        if step == self.plan.total_steps:
            return True
        if self.config.evaluation_strategy == "epoch":
            return step % self.plan.steps_per_epoch == 0
        return step % self.config.eval_steps == 0

    def _evaluate_and_keep_best(self) -> bool:
        """Evaluate on the selection split, keep the weights if best so far; True when it is time to stop."""
        state = self.state
        metrics = evaluate(
            self.model, self.task, self.selection, self.config.per_device_eval_batch_size, self.numerics, self.pad_id
        )[self.task.selection_split]
        score = selection_score(self.task, metrics)
        state.history.append({"step": state.step, "score": score, "metrics": metrics})
        improved = state.best_score is None or score > state.best_score
        if improved:
            state.best_score, state.best_step, state.evaluations_since_best = score, state.step, 0
            self.best_weights = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
        else:
            state.evaluations_since_best += 1
        self.metrics_log.write(
            {
                "event": "eval",
                "task": self.task.name,
                "seed": self.seed,
                "step": state.step,
                "split": self.task.selection_split,
                "score": score,
                "best": improved,
                **metrics,
            }
        )
        patience = self.config.early_stopping_patience
        return patience > 0 and state.evaluations_since_best >= patience

    def _log_training(self) -> None:
        steps = self.state.step - self._logged_at
        self.metrics_log.write(
            {
                "event": "train",
                "task": self.task.name,
                "seed": self.seed,
                "step": self.state.step,
                "epoch": round(self.state.step / self.plan.steps_per_epoch, 4),
                "loss": float(self._loss_since_log) / max(1, steps),
                "lr": self.scheduler.get_last_lr()[0],
            }
        )
        self._loss_since_log, self._logged_at = 0.0, self.state.step

    # -- resume checkpoints
    def _checkpoint_path(self) -> Path:
        return self.run_dir / CHECKPOINT_FILE

    def _save_checkpoint(self) -> None:
        self._tick()
        payload = {
            "settings": self.config.run_settings(),
            "state": dataclasses.asdict(self.state),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler else None,
            "best_weights": self.best_weights,
            "rng": capture_rng(),
        }
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(self._checkpoint_path()) as tmp:
            torch.save(payload, tmp)
        log.debug("%s: checkpoint at step %d", self._checkpoint_path(), self.state.step)

    def _resume(self) -> None:
        path = self._checkpoint_path()
        if not path.exists():
            return
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # a damaged checkpoint is never silently ignored
            raise file_error(
                path, f"cannot read the resume checkpoint ({type(e).__name__}); delete it to start over"
            ) from None
        if not isinstance(payload, dict) or payload.get("settings") != self.config.run_settings():
            raise file_error(path, "a checkpoint of other settings: use --overwrite_output_dir or another --output_dir")
        try:
            self.model.load_state_dict(payload["model"])
            self.optimizer.load_state_dict(payload["optimizer"])
            self.scheduler.load_state_dict(payload["scheduler"])
            if self.scaler and payload["scaler"]:
                self.scaler.load_state_dict(payload["scaler"])
            self.best_weights = payload["best_weights"]
            self.state = TrainState(**payload["state"])
            restore_rng(payload["rng"])
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            reason = (str(e).splitlines() or [""])[0]
            raise file_error(
                path, f"a damaged resume checkpoint ({type(e).__name__}: {reason}); delete it to start over"
            ) from None
        log.info("%s: resuming at step %d", path, self.state.step)

    def remove_checkpoint(self) -> None:
        self._checkpoint_path().unlink(missing_ok=True)
