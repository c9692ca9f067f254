"""Typed settings of `sharebert pretrain`, each group validated on construction.

Field names are the reference's (academic-budget-bert / ShareBERT run_pretraining.py flags) where one
exists. Where the reference counts "epochs", it means shard files: see `shard_epoch_steps` and
docs/pretrain.md.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import ConfigError
from .schedule import PretrainSchedule

MODEL_TYPES = ("bert-mlm", "bert-mlm-nsp")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
ZERO_STAGES = (0, 1, 2)
FP8_RECIPES = ("tensorwise", "rowwise")  # torchao's float8 training recipes (docs/pretrain.md, "FP8 and unpadded")
# Tokenizer names whose vocab.txt is bert-base-uncased's (sha256 of the file Hugging Face publishes).
UNCASED_BERT_VOCAB_SHA256 = "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"
KNOWN_TOKENIZERS = {"bert-base-uncased": UNCASED_BERT_VOCAB_SHA256, "bert-large-uncased": UNCASED_BERT_VOCAB_SHA256}


def _positive(name: str, value, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"{name}={value!r} must be > 0")


@dataclass
class EngineConfig:
    """Batch sizes, optimizer, precision and parallelism of a training engine."""

    train_batch_size: int = 4000
    micro_batch_size: int = 250  # per GPU (the reference's train_micro_batch_size_per_gpu)
    gradient_accumulation_steps: int | None = None  # derived from the two above and the world size if None
    lr: float = 1e-3  # peak learning rate; the schedule scales it
    weight_decay: float = 0.01
    adam_beta1: float = 0.9
    adam_beta2: float = 0.98
    adam_eps: float = 1e-6
    gradient_clipping: float = 0.5  # max global gradient norm; 0 = no clipping
    precision: str = "auto"  # auto = bf16 on GPUs that support it, fp32 otherwise
    zero_stage: int = 0
    deepspeed_config: Path | None = None  # JSON whose keys override the generated DeepSpeed config
    compile: bool = False  # torch.compile the model (through DeepSpeed's engine.compile)
    fp8: bool = False  # the shared layers' matmuls in FP8 (torchao; a GPU of compute capability 8.9+)
    fp8_recipe: str = "tensorwise"  # how FP8 scales: one scale per tensor, or per row
    unpad: bool = False  # the layers run on the real tokens only, not on padding

    def __post_init__(self) -> None:
        for name in ("train_batch_size", "micro_batch_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)!r} must be a positive integer")
        if self.gradient_accumulation_steps is not None and self.gradient_accumulation_steps < 1:
            raise ConfigError(f"gradient_accumulation_steps={self.gradient_accumulation_steps} must be >= 1")
        if not self.lr > 0:
            raise ConfigError(f"lr={self.lr} must be > 0")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay={self.weight_decay} must be >= 0")
        for name in ("adam_beta1", "adam_beta2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{name}={getattr(self, name)} must be in [0, 1)")
        if not self.adam_eps > 0:
            raise ConfigError(f"adam_eps={self.adam_eps} must be > 0")
        if self.gradient_clipping < 0:
            raise ConfigError(f"gradient_clipping={self.gradient_clipping} must be >= 0 (0 = off)")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision={self.precision!r} must be one of {', '.join(PRECISIONS)}")
        if self.fp8_recipe not in FP8_RECIPES:
            raise ConfigError(f"fp8_recipe={self.fp8_recipe!r} must be one of {', '.join(FP8_RECIPES)}")
        if self.fp8 and self.precision in ("fp32", "fp16"):
            raise ConfigError(
                f"--fp8 runs beside bf16 autocast, not --{self.precision}: use --bf16 (the default on GPUs)"
            )
        if self.zero_stage not in ZERO_STAGES:
            raise ConfigError(f"zero_stage={self.zero_stage} must be one of 0, 1, 2")
        if self.deepspeed_config is not None:
            self.deepspeed_config = Path(self.deepspeed_config)


@dataclass
class StopConfig:
    """When training ends. Hours are training hours, carried across resumes (the reference's meaning)."""

    max_steps: int | None = 23000  # optimizer steps of train_batch_size samples
    total_training_time: float | None = None  # hours: the budget, and the `time` LR schedule's length
    early_exit_time_marker: float | None = None  # hours: stop here (checkpoint) without changing the schedule
    num_epochs: int | None = None  # shard-epochs (see shard_epoch_steps)
    exit_at_step: int | None = None  # stop (checkpoint) at this step without changing the schedule
    use_early_stopping: bool = False
    early_stop_time: float = 720.0  # minutes: from then on a validation loss above ...
    early_stop_eval_loss: float = 2.1  # ... this stops the run

    def __post_init__(self) -> None:
        for name in ("max_steps", "total_training_time", "early_exit_time_marker", "num_epochs", "exit_at_step"):
            _positive(name, getattr(self, name))
        if self.max_steps is None and self.total_training_time is None:
            raise ConfigError("give --max_steps or --total_training_time: training needs an end")

    @property
    def budget_hours(self) -> float | None:
        hours = [h for h in (self.total_training_time, self.early_exit_time_marker) if h is not None]
        return min(hours) if hours else None


@dataclass
class ValidationConfig:
    """Validation on the test samples: every `validation_steps` steps, or the reference's three-stage schedule
    in shard-epochs (validation_epochs_begin in the first validation_begin_proportion of training,
    validation_epochs_end in the last validation_end_proportion, validation_epochs between)."""

    do_validation: bool = False
    validation_steps: int | None = None
    validation_epochs: int = 10
    validation_epochs_begin: int = 1
    validation_epochs_end: int = 1
    validation_begin_proportion: float = 0.1
    validation_end_proportion: float = 0.1
    validation_micro_batch: int | None = None  # per GPU; default: the training micro-batch
    validation_samples: int = 10000  # a fixed, seeded subset of the test samples

    def __post_init__(self) -> None:
        for name in ("validation_steps", "validation_micro_batch"):
            _positive(name, getattr(self, name))
        for name in ("validation_epochs", "validation_epochs_begin", "validation_epochs_end", "validation_samples"):
            _positive(name, getattr(self, name), allow_none=False)
        for name in ("validation_begin_proportion", "validation_end_proportion"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name}={getattr(self, name)} must be in [0, 1]")
        if self.validation_steps is not None:
            self.do_validation = True


@dataclass
class CheckpointConfig:
    checkpoint_steps: int | None = 1000  # save every N steps (and always at the end)
    num_epochs_between_checkpoints: int | None = None  # the reference's spelling, in shard-epochs; wins if given
    keep_checkpoints: int = 3
    resume: bool = False  # continue OUTPUT_DIR's run from its latest checkpoint (start fresh if it has none)
    load_training_checkpoint: Path | None = None  # continue from this run / checkpoints / checkpoint folder
    load_checkpoint_id: str | None = None  # the tag to load (default: `latest`)
    finetune_time_markers: tuple[float, ...] = ()  # export model folders at these fractions of the time budget
    finetune_checkpoint_at_end: bool = True  # export OUTPUT_DIR/model at the end
    export_only: bool = False  # load the checkpoint, export OUTPUT_DIR/model, do not train

    def __post_init__(self) -> None:
        _positive("checkpoint_steps", self.checkpoint_steps)
        _positive("num_epochs_between_checkpoints", self.num_epochs_between_checkpoints)
        _positive("keep_checkpoints", self.keep_checkpoints, allow_none=False)
        if self.load_training_checkpoint is not None:
            self.load_training_checkpoint = Path(self.load_training_checkpoint)
        self.finetune_time_markers = tuple(sorted(float(x) for x in self.finetune_time_markers))
        if any(not 0.0 < x <= 1.0 for x in self.finetune_time_markers):
            raise ConfigError(f"finetune_time_markers={self.finetune_time_markers} must be fractions in (0, 1]")


@dataclass
class LogConfig:
    log_steps: int = 10  # a metrics.jsonl / wandb record every N steps
    print_steps: int = 100  # a log line every N steps
    wandb: bool = False
    project_name: str = "sharebert-pretraining"
    job_name: str = "pretraining_experiment"
    current_run_id: str = ""

    def __post_init__(self) -> None:
        _positive("log_steps", self.log_steps, allow_none=False)
        _positive("print_steps", self.print_steps, allow_none=False)

    @property
    def run_name(self) -> str:
        return f"{self.job_name}-{self.current_run_id}" if self.current_run_id else self.job_name


@dataclass
class PretrainConfig:
    dataset_path: Path
    output_dir: Path
    seed: int = 42
    model_preset: str = "base"
    model_overrides: dict = field(default_factory=dict)  # ShareBertConfig fields given on the command line
    model_type: str = "bert-mlm"
    tokenizer_name: str | None = None  # only checked against the samples' vocab
    local_rank: int | None = None  # the deepspeed launcher's --local_rank (LOCAL_RANK wins)
    engine: EngineConfig = field(default_factory=EngineConfig)
    schedule: PretrainSchedule = field(default_factory=PretrainSchedule)
    stop: StopConfig = field(default_factory=StopConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    log: LogConfig = field(default_factory=LogConfig)

    def __post_init__(self) -> None:
        self.dataset_path, self.output_dir = Path(self.dataset_path), Path(self.output_dir)
        if self.model_type not in MODEL_TYPES:
            raise ConfigError(f"model_type={self.model_type!r} must be one of {', '.join(MODEL_TYPES)}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed={self.seed!r} must be an integer >= 0")
        if self.schedule.lr_schedule == "time" and self.stop.total_training_time is None:
            raise ConfigError("--lr_schedule time needs --total_training_time (hours)")
        if self.schedule.lr_schedule != "time" and self.stop.max_steps is None:
            raise ConfigError(f"--lr_schedule {self.schedule.lr_schedule} needs --max_steps")
        if self.checkpoint.finetune_time_markers and self.stop.total_training_time is None:
            raise ConfigError("--finetune_time_markers are fractions of --total_training_time, which is not set")

    @classmethod
    def from_flags(cls, **flags) -> PretrainConfig:
        """The config of a `sharebert pretrain` command line: its flags by the name of their setting, None where
        not given (the settings' defaults apply), the model fields already gathered in `model_overrides`.

        The reference's flags that set nothing here are checked (--optimizer_type, --fp16_backend) or
        accepted as they are (--deepspeed, --data_loader_type); see docs/pretrain.md.
        """
        given = {name: value for name, value in flags.items() if value is not None}
        _check_reference_flags(given.pop("optimizer_type", None), given.pop("fp16_backend", None))
        for name in ACCEPTED_FLAGS:
            given.pop(name, None)
        groups = {name: _take(group, given) for name, group in SETTING_GROUPS.items()}
        return cls(**given, **groups)


# The groups of PretrainConfig, in the order they are built (and validated) from flags.
SETTING_GROUPS = {
    "engine": EngineConfig,
    "schedule": PretrainSchedule,
    "stop": StopConfig,
    "validation": ValidationConfig,
    "checkpoint": CheckpointConfig,
    "log": LogConfig,
}
# Flags of the reference's command that mean nothing here: accepted so that the published command runs.
ACCEPTED_FLAGS = ("deepspeed", "data_loader_type")


def _check_reference_flags(optimizer_type: str | None, fp16_backend: str | None) -> None:
    if optimizer_type is not None and optimizer_type.lower() != "adamw":
        raise ConfigError(f"--optimizer_type {optimizer_type}: only adamw is supported (the published setting)")
    if fp16_backend is not None and fp16_backend != "ds":
        raise ConfigError(f"--fp16_backend {fp16_backend}: only ds (DeepSpeed's loss scaler) is supported")


def _take(group, flags: dict):
    """The settings group `group` built from the entries of `flags` that name its fields (removed from it)."""
    names = [f.name for f in dataclasses.fields(group) if f.name in flags]
    return group(**{name: flags.pop(name) for name in names})


def shard_epoch_steps(mean_train_file_rows: float, micro_batch_size: int, accumulation_steps: int) -> int:
    """Optimizer steps in one reference "epoch": every rank reading one train file.

    The reference gives each GPU one HDF5 file per epoch; sharebert streams every file in one pass, so a
    reference epoch becomes the steps that consume as many samples: a file's rows per rank.
    """
    return max(1, round(mean_train_file_rows / (micro_batch_size * accumulation_steps)))
