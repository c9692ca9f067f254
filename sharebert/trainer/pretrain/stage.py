"""`sharebert pretrain`: masked-LM pretraining of ShareBERT under DeepSpeed, from SAMPLES_DIR to RUN_DIR.

RUN_DIR/
  run_config.json    the settings of the (latest) start: pretrain, model, DeepSpeed, world size
  metrics.jsonl      one JSON object per logged step and per validation (see metrics.py)
  checkpoints/       resumable training state (see checkpoint.py)
  model/             the exported model folder (config.json, weights, vocab.txt) that finetune loads
  exports/stepN/     model folders exported at --finetune_time_markers
Every rank runs the same loop; all decisions that end or branch it (stop, validate, save) come from values
all ranks agree on: the step count and one all-reduce per step of (loss, elapsed time, stop request).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from ... import __version__
from ...errors import ShareBertError, file_error
from ...fileio import write_json_atomic
from ...pipeline.formats import check_json_fields
from ..metrics import METRICS_FILE, PretrainMetricsLog, keep_records_up_to, start_wandb
from ..model.io import MODEL_DIR
from ..runtime import StopSignals, TrainingClock, capture_rng, restore_rng, seed_everything
from .checkpoint import CHECKPOINTS_DIR, Checkpoints, latest_tag, tag_for
from .config import EngineConfig, PretrainConfig, shard_epoch_steps
from .data import (
    IGNORE_INDEX,
    DataPosition,
    LoaderLayout,
    Prefetcher,
    TrainingSamples,
    rescale_position,
    train_batches,
    validation_batches,
)
from .engine import LaunchEnvironment, TrainingEngine, deepspeed_config, resolve_precision
from .preflight import check_same_model, find_resume_point, jsonable, load_model_config_and_samples, write_model_folder
from .schedule import validation_interval

# What restore reads of the state saved with DeepSpeed's checkpoint (see TrainState.to_dict), checked first.
CLIENT_STATE_FIELDS = {
    "model_config?": "object",
    "sharebert": {
        "step": "count",
        "samples": "count",
        "elapsed_s": "number",
        "wandb_run_id?": "string",
        "exported_markers?": ["number"],
        "data": {"epoch": "count", "micro_batch": "count", "world_size": "positive", "micro_batch_size": "positive"},
    },
}

log = logging.getLogger(__name__)

RUN_CONFIG_FILE = "run_config.json"
EXPORTS_DIR = "exports"
PAUSES = ("SIGTERM", "SIGINT", "exit_at_step")  # stop reasons after which the run is meant to be resumed
FP16_SKIP_LIMIT = 100  # consecutive overflowing fp16 steps that mean the run has diverged


class NonFiniteLoss(ShareBertError):
    """The loss or the gradients became NaN/inf: the run stops without applying the step."""


@dataclass
class TrainState:
    """The counters a checkpoint restores (with the DeepSpeed state and each rank's RNG states)."""

    step: int = 0
    samples: int = 0
    position: DataPosition = field(default_factory=DataPosition)
    elapsed_s: float = 0.0
    wandb_run_id: str | None = None
    exported_markers: list = field(default_factory=list)

    def to_dict(self, layout: LoaderLayout) -> dict:
        return {
            "step": self.step,
            "samples": self.samples,
            "elapsed_s": self.elapsed_s,
            "wandb_run_id": self.wandb_run_id,
            "exported_markers": list(self.exported_markers),
            "data": {
                **self.position.to_dict(),
                "world_size": layout.world_size,
                "micro_batch_size": layout.micro_batch_size,
                "seed": layout.seed,
            },
        }


@dataclass
class PretrainResult:
    output_dir: Path
    step: int
    samples: int
    stop_reason: str  # max_steps, num_epochs, exit_at_step, time_budget, early_stopping, SIGTERM, SIGINT, export_only
    checkpoint: Path | None
    model_dir: Path | None
    loss: float | None
    val_loss: float | None

    @property
    def exit_status(self) -> int:
        """0 for a run that ended as planned, 128 + signal number for one stopped by a signal."""
        return {"SIGINT": 130, "SIGTERM": 143}.get(self.stop_reason, 0)


@dataclass
class StepOutcome:
    loss: float
    lr: float
    grad_norm: float | None
    loss_scale: float | None
    skipped: bool
    elapsed_s: float  # agreed by all ranks (their mean)
    stop_requested: bool  # a signal reached some rank
    duration_s: float


# ------------------------------------------------------------------------------------ entry point
def pretrain(config: PretrainConfig) -> PretrainResult:
    """Pretrain (or resume, or only export) as `config` says; every rank of a launch calls this."""
    from ..model.modeling import ShareBertForMaskedLM

    env = LaunchEnvironment.from_env(config.local_rank)
    if env.rank > 0:  # progress and summaries come from rank 0; other ranks report only problems
        logging.getLogger("sharebert").setLevel(max(logging.WARNING, logging.getLogger("sharebert").level))
    model_config, samples = load_model_config_and_samples(config)
    deepspeed_config(config.engine, env.world_size, resolve_precision(config.engine.precision))  # fail fast
    if config.engine.fp8:
        from .fp8 import check_fp8_supported

        check_fp8_supported()
    resume = find_resume_point(config)
    if config.output_dir.exists() and not config.output_dir.is_dir():
        raise file_error(config.output_dir, "exists and is not a folder (--output_dir)")
    config.output_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(config.seed, env.rank)
    model = ShareBertForMaskedLM(model_config, seed=config.seed)
    apply_speedups(model, config.engine)
    engine = TrainingEngine(model, config.engine, env)
    return Trainer(config, env, samples, model_config, engine).run(resume)


def apply_speedups(model: torch.nn.Module, engine_config: EngineConfig) -> None:
    """--unpad and --fp8 (docs/pretrain.md, "FP8 and unpadded"): neither changes a parameter or the state dict."""
    if engine_config.unpad:
        model.set_unpad(True)
    if engine_config.fp8:
        from .fp8 import convert_to_float8

        converted = convert_to_float8(model, engine_config.fp8_recipe, pad_inner_dim=engine_config.unpad)
        log.info("fp8 (%s scaling): %d shared matmuls converted", engine_config.fp8_recipe, len(converted))


# ------------------------------------------------------------------------------------ the loop
class Trainer:
    def __init__(
        self,
        config: PretrainConfig,
        env: LaunchEnvironment,
        samples: TrainingSamples,
        model_config,
        engine: TrainingEngine,
    ):
        self.config, self.env, self.samples, self.model_config, self.engine = config, env, samples, model_config, engine
        self.out = config.output_dir
        self.layout = LoaderLayout(config.seed, env.world_size, env.rank, engine.micro_batch_size)
        self.checkpoints = Checkpoints(self.out / CHECKPOINTS_DIR, engine, config.checkpoint.keep_checkpoints)
        self.shard_epoch = shard_epoch_steps(
            samples.mean_train_file_rows, engine.micro_batch_size, engine.accumulation_steps
        )
        self.batch_size = engine.micro_batch_size * engine.accumulation_steps * env.world_size
        self.state = TrainState()
        self.saved_step = self.validated_step = -1
        self.consecutive_skips = 0
        self.micro_batches_done = 0  # by this rank in this session (the same on every rank)
        self.early_stop = False
        self.last_loss = self.last_val_loss = None
        self.agreed_elapsed = 0.0  # training seconds, the mean of the ranks' clocks at the last step
        self._interval = {"steps": 0, "samples": 0, "seconds": 0.0}  # since the last metrics record

    # ---------------------------------------------------------------- run
    def run(self, resume: tuple[Path, str] | None) -> PretrainResult:
        if resume is not None:
            self.restore(*resume)
        elif self.env.rank == 0:
            keep_records_up_to(self.out / METRICS_FILE, 0)
        if self.config.checkpoint.export_only:
            return self.result("export_only", None, self.export_model(self.out / MODEL_DIR))
        self.write_run_config()
        self.clock = TrainingClock(self.state.elapsed_s)
        self.agreed_elapsed = self.state.elapsed_s
        with StopSignals() as self.signals, self.open_metrics() as self.metrics, self.open_batches() as self.batches:
            reason = self.train()
            checkpoint = self.save_checkpoint()
            model_dir = self.finish(reason)
        self.engine.barrier()
        log.info("pretrain: stopped at step %d (%s); checkpoint %s", self.state.step, reason, checkpoint)
        return self.result(reason, checkpoint, model_dir)

    def train(self) -> str:
        """Step until a stop condition holds; return which."""
        reason = self.stop_reason()
        self.step_end, self.paused_s = time.perf_counter(), 0.0
        while reason is None:
            outcome = self.train_step()
            self.record_step(outcome)
            with self.pause():  # not counted in samples/s
                if self.validation_due():
                    self.validate()
                reason = self.stop_reason(outcome)
                if reason is None and self.checkpoint_due():
                    self.save_checkpoint()
                self.export_at_time_markers()
        return reason

    @contextlib.contextmanager
    def pause(self):
        started = time.perf_counter()
        yield
        self.paused_s += time.perf_counter() - started

    def train_step(self) -> StepOutcome:
        """One optimizer step: accumulate micro-batches, agree on loss/time/stop, check, clip and update."""
        lr = self.lr_at(self.state.step)
        losses, position = [], None
        for _ in range(self.engine.accumulation_steps):
            batch = next(self.batches)
            losses.append(self.engine.forward_backward(batch.inputs))
            position = batch.position
            self.micro_batches_done += 1
        norm = self.engine.grad_norm_tensor()  # whole gradients: the same on every rank
        loss_sum, elapsed_sum, stops, norm_sum = self.engine.all_reduce_sum(  # the step's one host sync
            [
                torch.stack(losses).mean(),
                self.clock.elapsed(),
                float(self.signals.requested),
                norm if norm is not None else 0.0,
            ]
        )
        world = self.env.world_size
        loss, grad_norm = loss_sum / world, (norm_sum / world if norm is not None else None)
        if not self.engine.fp16 and not (math.isfinite(loss) and (grad_norm is None or math.isfinite(grad_norm))):
            self.raise_non_finite(loss, grad_norm)
        report = self.engine.optimizer_step(lr, grad_norm)
        self.state.step += 1
        self.state.samples += self.batch_size
        self.state.position = position
        self.consecutive_skips = self.consecutive_skips + 1 if report.skipped else 0
        if self.consecutive_skips >= FP16_SKIP_LIMIT:
            raise NonFiniteLoss(
                f"fp16: {FP16_SKIP_LIMIT} steps in a row overflowed up to step {self.state.step}; "
                f"the run has diverged (last checkpoint: {self.latest_checkpoint()})"
            )
        self.agreed_elapsed = elapsed_sum / world
        now = time.perf_counter()  # the step's wall time: loader, step and the previous step's logging
        duration, self.step_end, self.paused_s = now - self.step_end - self.paused_s, now, 0.0
        return StepOutcome(
            loss, lr, report.grad_norm, report.loss_scale, report.skipped, self.agreed_elapsed, stops > 0, duration
        )

    def raise_non_finite(self, loss: float, grad_norm: float | None) -> None:
        what = f"loss {loss}" if not math.isfinite(loss) else f"gradient norm {grad_norm}"
        raise NonFiniteLoss(
            f"non-finite {what} at step {self.state.step + 1} ({self.engine.precision}): stopped "
            f"without applying it; last good checkpoint: {self.latest_checkpoint()} "
            "(a lower --lr or --gradient_clipping may help)"
        )

    def latest_checkpoint(self) -> str:
        tag = latest_tag(self.checkpoints.folder) if self.checkpoints.folder.is_dir() else None
        return str(self.checkpoints.folder / tag) if tag else "none yet"

    # ---------------------------------------------------------------- schedules
    def lr_at(self, step: int) -> float:
        stop = self.config.stop
        factor = self.config.schedule.factor(step, self.agreed_elapsed / 3600, stop.max_steps, stop.total_training_time)
        return self.config.engine.lr * factor

    @property
    def max_steps(self) -> int | None:
        limits = [self.config.stop.max_steps]
        if self.config.stop.num_epochs is not None:
            limits.append(self.config.stop.num_epochs * self.shard_epoch)
        limits = [x for x in limits if x is not None]
        return min(limits) if limits else None

    def progress(self) -> float:
        """How far training is, 0..1: against max_steps or the time budget, whichever ends it first."""
        done = [self.state.step / self.max_steps] if self.max_steps else []
        budget = self.config.stop.budget_hours
        if budget:
            done.append(self.agreed_elapsed / (budget * 3600))
        return min(1.0, max(done, default=0.0))

    def stop_reason(self, outcome: StepOutcome | None = None) -> str | None:
        stop, step = self.config.stop, self.state.step
        if outcome is not None and outcome.stop_requested:
            return self.signals.received or "SIGTERM"  # another rank got it
        if self.max_steps is not None and step >= self.max_steps:
            return "max_steps" if step >= (stop.max_steps or math.inf) else "num_epochs"
        if stop.exit_at_step is not None and step >= stop.exit_at_step:
            return "exit_at_step"
        if stop.budget_hours is not None and self.agreed_elapsed >= stop.budget_hours * 3600:
            return "time_budget"
        return "early_stopping" if self.early_stop else None

    def validation_due(self) -> bool:
        v, step = self.config.validation, self.state.step
        if not v.do_validation:
            return False
        if v.validation_steps is not None:
            return step % v.validation_steps == 0
        if step % self.shard_epoch:
            return False
        every = validation_interval(
            self.progress(),
            v.validation_epochs,
            v.validation_epochs_begin,
            v.validation_epochs_end,
            v.validation_begin_proportion,
            v.validation_end_proportion,
        )
        return (step // self.shard_epoch - 1) % every == 0

    def checkpoint_due(self) -> bool:
        ck = self.config.checkpoint
        every = (
            ck.num_epochs_between_checkpoints * self.shard_epoch
            if ck.num_epochs_between_checkpoints
            else ck.checkpoint_steps
        )
        return every is not None and self.state.step % every == 0

    # ---------------------------------------------------------------- reporting
    def open_metrics(self) -> PretrainMetricsLog:
        wandb_run = None
        if self.config.log.wandb and self.env.rank == 0:
            log_cfg = self.config.log
            wandb_run = start_wandb(
                log_cfg.project_name, log_cfg.run_name, self.out, self.run_config(), self.state.wandb_run_id
            )
            self.state.wandb_run_id = wandb_run.id
        return PretrainMetricsLog(
            self.out, self.env.rank == 0, self.state.step, self.max_steps, self.config.log.print_steps, wandb_run
        )

    def record_step(self, outcome: StepOutcome) -> None:
        self.last_loss = outcome.loss
        interval = self._interval
        interval["steps"] += 1
        interval["samples"] += self.batch_size
        interval["seconds"] += outcome.duration_s
        if outcome.skipped:
            log.info("step %d: fp16 overflow, update skipped (loss scale now %s)", self.state.step, outcome.loss_scale)
        if self.state.step % self.config.log.log_steps and self.state.step != self.max_steps:
            return
        rate = interval["samples"] / max(interval["seconds"], 1e-9)
        record = {
            "step": self.state.step,
            "samples": self.state.samples,
            "loss": outcome.loss,
            "lr": outcome.lr,
            "grad_norm": outcome.grad_norm,
            "loss_scale": outcome.loss_scale,
            "samples_per_s": rate,
            "elapsed_s": round(outcome.elapsed_s, 3),
            "epoch": self.state.position.epoch,
        }
        self.metrics.log_step(record, self.time_left(interval["seconds"] / interval["steps"]))
        self._interval = {"steps": 0, "samples": 0, "seconds": 0.0}

    def time_left(self, seconds_per_step: float) -> float | None:
        budget = self.config.stop.budget_hours
        by_time = budget * 3600 - self.agreed_elapsed if budget else None
        by_steps = (self.max_steps - self.state.step) * seconds_per_step if self.max_steps else None
        return min((x for x in (by_time, by_steps) if x is not None), default=None)

    def run_config(self) -> dict:
        return {
            "pretrain": jsonable(dataclasses.asdict(self.config)),
            "model": self.model_config.to_dict(),
            "deepspeed": self.engine.ds_config,
            "world_size": self.env.world_size,
            "precision": self.engine.precision,
            "shard_epoch_steps": self.shard_epoch,
            "sharebert_version": __version__,
        }

    def write_run_config(self) -> None:
        if self.env.rank == 0:
            write_json_atomic(self.out / RUN_CONFIG_FILE, self.run_config())

    # ---------------------------------------------------------------- data
    def open_batches(self) -> Prefetcher:
        pin = self.engine.device.type == "cuda"
        depth = min(64, max(4, 2 * self.engine.accumulation_steps))
        return Prefetcher(
            lambda: train_batches(self.samples, self.layout, self.state.position, self.model_config.nsp, pin),
            depth=depth,
        )

    @torch.no_grad()
    def validate(self) -> dict:
        """Masked-LM loss and accuracy on the validation subset, summed over all ranks."""
        v, engine = self.config.validation, self.engine
        micro_batch = v.validation_micro_batch or self.layout.micro_batch_size
        layout = dataclasses.replace(self.layout, micro_batch_size=micro_batch)
        totals = torch.zeros(4, dtype=torch.float64, device=engine.device)  # loss sum, correct, targets, samples
        engine.train(False)
        try:
            batches = validation_batches(
                self.samples, layout, v.validation_samples, self.model_config.nsp, pin=engine.device.type == "cuda"
            )
            with Prefetcher(lambda: batches, depth=4, name="sharebert-validation") as prefetched:
                for inputs in prefetched:
                    inputs = engine.to_device(inputs)
                    with engine.autocast():
                        logits = engine.module(**inputs).logits.float()
                    labels = inputs["labels"]
                    used = labels != IGNORE_INDEX
                    loss = F.cross_entropy(
                        logits.reshape(-1, logits.shape[-1]),
                        labels.reshape(-1),
                        ignore_index=IGNORE_INDEX,
                        reduction="sum",
                    )
                    correct = ((logits.argmax(-1) == labels) & used).sum()
                    totals += torch.stack(
                        [
                            loss.double(),
                            correct.double(),
                            used.sum().double(),
                            torch.tensor(float(len(labels)), dtype=torch.float64, device=engine.device),
                        ]
                    )
        finally:
            engine.train(True)
        loss_sum, correct, targets, n = engine.all_reduce_sum(totals)
        record = {
            "step": self.state.step,
            "val_loss": loss_sum / max(targets, 1),
            "val_mlm_acc": correct / max(targets, 1),
            "val_samples": int(n),
            "elapsed_s": round(self.agreed_elapsed, 3),
        }
        self.metrics.log_validation(record)
        self.validated_step, self.last_val_loss = self.state.step, record["val_loss"]
        stop = self.config.stop
        if stop.use_early_stopping and (
            not math.isfinite(record["val_loss"])
            or (self.agreed_elapsed / 60 > stop.early_stop_time and record["val_loss"] > stop.early_stop_eval_loss)
        ):
            log.warning(
                "early stopping: validation loss %.4f after %.0f minutes", record["val_loss"], self.agreed_elapsed / 60
            )
            self.early_stop = True
        return record

    # ---------------------------------------------------------------- checkpoints and exports
    def save_checkpoint(self) -> Path:
        target = self.checkpoints.folder / tag_for(self.state.step)
        if self.saved_step == self.state.step:
            return target
        self.state.elapsed_s = self.agreed_elapsed
        client = {"sharebert": self.state.to_dict(self.layout), "model_config": self.model_config.to_dict()}
        rank_state = {
            "rng": capture_rng(),
            "rank": self.env.rank,
            "position": self.state.position.to_dict(),
            "micro_batches_this_session": self.micro_batches_done,
        }
        self.checkpoints.save(self.state.step, client, rank_state)
        self.saved_step = self.state.step
        return target

    def restore(self, folder: Path, tag: str) -> None:
        client, rank_state = self.checkpoints.load(folder, tag)
        if not isinstance(client, dict) or "sharebert" not in client:
            raise file_error(folder / tag, "not a sharebert pretraining checkpoint")
        check_json_fields(folder / tag, client, CLIENT_STATE_FIELDS)
        check_same_model(client.get("model_config", {}), self.model_config.to_dict(), folder / tag)
        saved = client["sharebert"]
        self.state = TrainState(
            step=saved["step"],
            samples=saved["samples"],
            elapsed_s=saved["elapsed_s"],
            wandb_run_id=saved.get("wandb_run_id"),
            exported_markers=list(saved.get("exported_markers", [])),
            position=self.resumed_position(saved["data"]),
        )
        self.saved_step = self.state.step if folder == self.checkpoints.folder else -1
        if rank_state is not None:
            restore_rng(rank_state["rng"])
        else:
            log.warning(
                "%s: no RNG state for rank %d (the run had fewer ranks); dropout draws anew",
                folder / tag,
                self.env.rank,
            )
            seed_everything(self.config.seed + self.state.step, self.env.rank)
        if self.env.rank == 0:
            keep_records_up_to(self.out / METRICS_FILE, self.state.step)
        log.info(
            "resumed from %s at step %d (data epoch %d, micro-batch %d)",
            folder / tag,
            self.state.step,
            self.state.position.epoch,
            self.state.position.micro_batch,
        )

    def resumed_position(self, saved: dict) -> DataPosition:
        """The saved data position; with another world size or micro-batch, the same share of the epoch."""
        position = DataPosition.from_dict(saved)
        if (saved["world_size"], saved["micro_batch_size"]) == (self.layout.world_size, self.layout.micro_batch_size):
            return position
        log.warning(
            "resuming with %d rank(s) x micro-batch %d a run saved with %d x %d: epoch %d's order changes; "
            "continuing after the same number of its samples",
            self.layout.world_size,
            self.layout.micro_batch_size,
            saved["world_size"],
            saved["micro_batch_size"],
            position.epoch,
        )
        return rescale_position(
            position,
            saved["world_size"] * saved["micro_batch_size"],
            self.layout.world_size * self.layout.micro_batch_size,
        )

    def export_model(self, folder: Path) -> Path:
        """Write a model folder (config, fp32 weights, vocab, tokenizer files) that `sharebert finetune` and
        `transformers` load; rank 0 writes."""
        if self.env.rank == 0:
            lowercase = self.samples.manifest.vocab.get("lowercase")  # as prepare tokenized; unrecorded: uncased
            write_model_folder(
                self.engine.module, self.model_config, folder, self.samples.vocab_file(), lowercase is not False
            )
            log.info("model exported: %s", folder)
        self.engine.barrier()
        return folder

    def export_at_time_markers(self) -> None:
        ck, total = self.config.checkpoint, self.config.stop.total_training_time
        due = [
            m
            for m in ck.finetune_time_markers
            if m not in self.state.exported_markers and self.agreed_elapsed >= m * total * 3600
        ]
        if due:
            self.state.exported_markers.extend(due)
            self.export_model(self.out / EXPORTS_DIR / tag_for(self.state.step))

    def finish(self, reason: str) -> Path | None:
        """After the final checkpoint: a last validation and the model export, unless the run only pauses
        (a signal, or --exit_at_step: it is meant to be resumed)."""
        if reason in PAUSES:
            return None
        if self.config.validation.do_validation and self.validated_step != self.state.step:
            self.validate()
        if self.config.checkpoint.finetune_checkpoint_at_end:
            return self.export_model(self.out / MODEL_DIR)
        return None

    def result(self, reason: str, checkpoint: Path | None, model_dir: Path | None) -> PretrainResult:
        return PretrainResult(
            self.out,
            self.state.step,
            self.state.samples,
            reason,
            checkpoint,
            model_dir,
            self.last_loss,
            self.last_val_loss,
        )
