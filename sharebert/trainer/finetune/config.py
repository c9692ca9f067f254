"""Settings of `sharebert finetune`: one typed dataclass, validated when it is built.

Names and defaults follow the published fine-tuning command (Hugging Face's run_glue flags with the
published values, docs/finetune.md), so a published command line maps onto it field for field;
`FinetuneConfig.from_flags` resolves the few flags that are spelled otherwise than the settings.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import ConfigError

PRECISIONS = ("auto", "fp32", "fp16", "bf16")
SCHEDULES = ("polynomial", "linear", "constant", "constant_with_warmup")
EVALUATION_STRATEGIES = ("no", "steps", "epoch")

# Settings that do not change what a (task, seed) run computes: a rerun may differ in them and still
# reuse finished runs.
NOT_RUN_SETTINGS = frozenset(
    {
        "task_names",
        "seeds",
        "output_dir",
        "overwrite_output_dir",
        "logging_steps",
        "save_steps",
        "wandb",
        "wandb_project",
        "run_name",
        "device",
        "cpu_threads",
    }
)


@dataclass
class FinetuneConfig:
    """Every setting of `sharebert finetune`; names and defaults follow the published HF run_glue command."""

    model_name_or_path: Path
    output_dir: Path
    task_names: list[str]
    data_dir: Path | None = None
    dataset_name: str | None = None
    max_seq_length: int = 128
    per_device_train_batch_size: int = 64
    per_device_eval_batch_size: int = 64
    gradient_accumulation_steps: int = 1
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    num_train_epochs: float = 5.0
    max_steps: int = -1  # > 0 overrides num_train_epochs
    lr_scheduler_type: str = "polynomial"
    warmup_steps: int = 50
    warmup_ratio: float = 0.0  # used when warmup_steps is 0
    lr_end: float = 1e-7  # the polynomial schedule's final LR (Hugging Face's default)
    power: float = 1.0
    max_grad_norm: float = 1.0
    precision: str = "auto"  # auto: bf16 (or fp16) on a GPU, fp32 on the CPU
    evaluation_strategy: str = "steps"
    eval_steps: int = 50
    save_steps: int = 500  # resume checkpoint every N steps; 0: none
    logging_steps: int = 50
    early_stopping_patience: int = -1  # evaluations without improvement before stopping; -1: never
    do_train: bool = True
    do_eval: bool = True
    do_predict: bool = True
    predict_optional: bool = False  # do_predict was not asked for explicitly: skip tasks without test files
    seeds: list[int] = field(default_factory=lambda: [42])
    overwrite_output_dir: bool = False
    lowercase: bool | None = None  # None: from the model folder (tokenizer_config.json), else uncased
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    max_predict_samples: int | None = None
    device: str = "auto"
    cpu_threads: int = 0  # 0: auto (one thread for models narrower than SMALL_MODEL_HIDDEN, else torch's default)
    wandb: bool = False
    wandb_project: str = "sharebert-finetune"
    run_name: str | None = None

    def __post_init__(self) -> None:
        from . import glue  # imports numpy, which `sharebert --help` (reading the defaults above) does without

        self.model_name_or_path = Path(self.model_name_or_path)
        self.output_dir = Path(self.output_dir)
        self.data_dir = None if self.data_dir is None else Path(self.data_dir)
        self.task_names = glue.resolve_task_names(self.task_names)
        if (self.data_dir is None) == (self.dataset_name is None):
            raise ConfigError("give exactly one data source: --data_dir (GLUE TSV folders) or --dataset_name")
        for name in (
            "max_seq_length",
            "per_device_train_batch_size",
            "per_device_eval_batch_size",
            "gradient_accumulation_steps",
        ):
            _positive(name, getattr(self, name))
        if self.max_seq_length < 3:
            raise ConfigError(f"max_seq_length={self.max_seq_length} must be >= 3 ([CLS] a [SEP])")
        for name in ("learning_rate", "adam_epsilon", "power"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name}={getattr(self, name)} must be > 0")
        for name in ("weight_decay", "max_grad_norm", "lr_end", "warmup_ratio"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"{name}={getattr(self, name)} must be >= 0")
        for name in ("adam_beta1", "adam_beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)} must be in [0, 1)")
        if self.warmup_ratio >= 1:
            raise ConfigError(f"warmup_ratio={self.warmup_ratio} must be < 1")
        if self.lr_end >= self.learning_rate and self.lr_scheduler_type == "polynomial":
            raise ConfigError(f"lr_end={self.lr_end} must be below learning_rate={self.learning_rate}")
        if self.max_steps <= 0 and not self.num_train_epochs > 0:
            raise ConfigError(f"num_train_epochs={self.num_train_epochs} must be > 0 (or give --max_steps)")
        for name in ("warmup_steps", "save_steps"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}={getattr(self, name)} must be >= 0")
        for name in ("eval_steps", "logging_steps"):
            _positive(name, getattr(self, name))
        _choice("precision", self.precision, PRECISIONS)
        _choice("lr_scheduler_type", self.lr_scheduler_type, SCHEDULES)
        _choice("evaluation_strategy", self.evaluation_strategy, EVALUATION_STRATEGIES)
        _choice("device", self.device.split(":")[0], ("auto", "cpu", "cuda"))
        if isinstance(self.cpu_threads, bool) or not isinstance(self.cpu_threads, int) or self.cpu_threads < 0:
            raise ConfigError(f"cpu_threads={self.cpu_threads!r} must be an integer >= 0 (0: automatic)")
        for name in ("max_train_samples", "max_eval_samples", "max_predict_samples"):
            if getattr(self, name) is not None:
                _positive(name, getattr(self, name))
        if not self.seeds:
            raise ConfigError("seeds: give at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"seeds={self.seeds} repeats a seed")
        if not (self.do_train or self.do_eval or self.do_predict):
            raise ConfigError("nothing to do: give --do_train, --do_eval and/or --do_predict")

    @classmethod
    def from_flags(cls, **flags) -> FinetuneConfig:
        """The config of a `sharebert finetune` command line: its flags by name, None where not given (the
        defaults apply). Resolves the flags that are not settings: --seed (one of --seeds), --fp16/--bf16
        (a --precision), --report_to wandb (--wandb), --local_rank (refused above 0) and --fp16_backend
        (ignored: torch.amp is always used); with none of --do_train/--do_eval/--do_predict, all three
        run and predict skips the tasks without test files.
        """
        given = {name: value for name, value in flags.items() if value is not None}
        given.pop("fp16_backend", None)
        if given.pop("local_rank", -1) > 0:
            raise ConfigError("--local_rank: fine-tuning runs in one process (local_rank -1 or 0)")
        _resolve_seed(given)
        _resolve_precision(given)
        _resolve_stages(given)
        if set(given.pop("report_to", ())) & {"wandb", "all"}:
            given["wandb"] = True
        return cls(**given)

    def to_dict(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(self).items()}

    def run_settings(self) -> dict:
        """The settings a finished run must share with this call to be reused instead of rerun."""
        return {k: v for k, v in self.to_dict().items() if k not in NOT_RUN_SETTINGS}


def _resolve_seed(flags: dict) -> None:
    seed = flags.pop("seed", None)
    if seed is not None and "seeds" in flags:
        raise ConfigError("give --seed or --seeds, not both")
    if seed is not None:
        flags["seeds"] = [seed]


def _resolve_precision(flags: dict) -> None:
    chosen = [name for name in ("fp16", "bf16") if flags.pop(name, False)]
    if len(chosen) > 1 or (chosen and flags.get("precision", chosen[0]) != chosen[0]):
        raise ConfigError("choose one precision: --fp16, --bf16 or --precision")
    if chosen:
        flags["precision"] = chosen[0]


def _resolve_stages(flags: dict) -> None:
    stages = ("do_train", "do_eval", "do_predict")
    if any(name in flags for name in stages):
        flags.update({name: bool(flags.get(name)) for name in stages})
    else:
        flags.update(dict.fromkeys(stages, True), predict_optional=True)


def _positive(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name}={value!r} must be a positive integer")


def _choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ConfigError(f"{name}={value!r} must be one of {', '.join(choices)}")
