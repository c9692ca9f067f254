"""The command line of `sharebert pretrain`: the reference's flag names (snake_case, kebab-case aliases) and
the typed config they fill. Nothing heavy is imported until the command runs.

Flags of the published ShareBERT command that mean nothing here are accepted and checked (see
docs/pretrain.md): --deepspeed (always on), --data_loader_type (the loader always gives each rank its own
slice), --fp16_backend ds, --optimizer_type adamw, --local_rank, --tokenizer_name (checked against the
samples' vocab, never downloaded).
"""

from __future__ import annotations

import argparse
import dataclasses

MODEL_FLAG_PREFIX = "model__"


def _bool(text: str) -> bool:
    lowered = str(text).strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not true or false")


def _markers(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of fractions") from None


def _add(group, name: str, **kwargs) -> None:
    """--name, plus the kebab-case alias --name-with-dashes."""
    flags = [f"--{name}"] + ([f"--{name.replace('_', '-')}"] if "_" in name else [])
    if "metavar" not in kwargs and kwargs.get("type") in (int, float):
        kwargs["metavar"] = "N" if kwargs["type"] is int else "X"
    group.add_argument(*flags, dest=kwargs.pop("dest", name), **kwargs)


def _switch(group, name: str, help: str, default: bool = False) -> None:
    """A boolean flag used alone (--name) or with a value (--name false), as the reference parses them."""
    _add(group, name, type=_bool, nargs="?", const=True, default=default, metavar="BOOL", help=help)


def add_pretrain_parser(sub, common) -> None:
    p = sub.add_parser(
        "pretrain",
        parents=[common],
        help="pretrain a ShareBERT model (masked LM) with DeepSpeed",
        description="Pretrain a ShareBERT encoder on the samples of `sharebert mask`. Accepts the flags of the "
        "published ShareBERT/academic-budget-bert command. Run it directly, or under torchrun / "
        "deepspeed for several GPUs or nodes. See docs/pretrain.md.",
    )
    _add(p, "dataset_path", required=True, metavar="SAMPLES_DIR", help="output folder of `sharebert mask`")
    _add(p, "output_dir", required=True, metavar="RUN_DIR", help="where checkpoints, metrics and the model go")
    _add(p, "seed", type=int, default=42, help="seed of the model init, data order and dropout (default 42)")

    g = p.add_argument_group("model (a preset, then any field of the model config)")
    _add(g, "preset", default="base", choices=("tiny", "small", "base", "large"), help="default: base")
    _add(
        g,
        "model_type",
        default="bert-mlm",
        choices=("bert-mlm", "bert-mlm-nsp"),
        help="bert-mlm (default; the published setting) or bert-mlm-nsp (samples made with --nsp)",
    )
    _add(
        g,
        "tokenizer_name",
        metavar="NAME|PATH",
        help="checked only: bert-base-uncased / bert-large-uncased or a vocab.txt path must match the samples' vocab",
    )
    from .config import ShareBertConfig  # torch-free

    for f in dataclasses.fields(ShareBertConfig):
        _add(
            g,
            f.name,
            dest=MODEL_FLAG_PREFIX + f.name,
            metavar=str(f.type).upper(),
            help=f"model {f.name} (default: the preset's)",
        )

    g = p.add_argument_group("batch, optimizer, precision")
    _add(g, "train_batch_size", type=int, default=4000, help="samples per optimizer step, all GPUs (default 4000)")
    _add(g, "train_micro_batch_size_per_gpu", type=int, default=250, help="samples per GPU per pass (default 250)")
    _add(
        g,
        "gradient_accumulation_steps",
        type=int,
        help="default: train_batch_size / (micro-batch x world size); if given, it must agree",
    )
    _add(g, "lr", type=float, default=1e-3, help="peak learning rate (default 1e-3)")
    _add(g, "optimizer_type", default="adamw", help="adamw (the only one; no DeepSpeed op is compiled)")
    _add(g, "weight_decay", type=float, default=0.01, help="AdamW weight decay, not on 1-D parameters (default 0.01)")
    _add(g, "adam_beta1", type=float, default=0.9)
    _add(g, "adam_beta2", type=float, default=0.98)
    _add(g, "adam_eps", type=float, default=1e-6)
    _add(g, "gradient_clipping", type=float, default=0.5, help="max gradient norm; 0 = off (default 0.5)")
    precision = g.add_mutually_exclusive_group()
    precision.add_argument(
        "--fp16",
        dest="precision",
        action="store_const",
        const="fp16",
        help="fp16 with DeepSpeed's dynamic loss scaling (GPU)",
    )
    precision.add_argument(
        "--bf16",
        dest="precision",
        action="store_const",
        const="bf16",
        help="bf16 autocast (default on GPUs that support it)",
    )
    precision.add_argument("--fp32", dest="precision", action="store_const", const="fp32", help="full precision")
    precision.add_argument("--precision", dest="precision", choices=("auto", "fp32", "bf16", "fp16"))
    p.set_defaults(precision="auto")
    _add(g, "fp16_backend", default="ds", help="ds (DeepSpeed's loss scaler; apex is not supported)")
    _add(g, "zero_stage", type=int, default=0, choices=(0, 1, 2), help="DeepSpeed ZeRO stage (default 0)")
    _add(g, "deepspeed_config", metavar="FILE", help="JSON whose keys override the generated DeepSpeed config")
    _switch(g, "compile", "torch.compile the model (faster steps after a compile of a minute or two)")
    _switch(g, "deepspeed", "accepted for the reference's command; DeepSpeed is always used")
    _add(
        g,
        "data_loader_type",
        default="dist",
        choices=("dist", "per_device"),
        help="accepted for the reference's command; each rank always reads its own slice",
    )
    _add(g, "local_rank", type=int, help="set by the deepspeed launcher (LOCAL_RANK wins)")

    g = p.add_argument_group("learning-rate schedule")
    _add(
        g,
        "lr_schedule",
        default="step",
        choices=("step", "constant_step", "time"),
        help="step: over max_steps; constant_step: fixed warm-up steps; time: over total_training_time (default step)",
    )
    _add(g, "curve", default="linear", choices=("linear", "exp"), help="default linear")
    _add(g, "warmup_proportion", type=float, default=0.06, help="warm-up share of the schedule (default 0.06)")
    _add(g, "num_warmup_steps", type=int, default=1000, help="warm-up steps of constant_step (default 1000)")
    _add(g, "decay_rate", type=float, default=0.99, help="exp curve: factor per decay_step")
    _add(g, "decay_step", type=float, default=1000.0, help="exp curve: steps (or hours) per decay_rate")

    g = p.add_argument_group("when to stop")
    _add(g, "max_steps", type=int, default=23000, help="optimizer steps (default 23000)")
    _add(g, "total_training_time", type=float, metavar="HOURS", help="time budget; length of the time schedule")
    _add(g, "early_exit_time_marker", type=float, metavar="HOURS", help="stop here with a checkpoint")
    _add(g, "num_epochs", type=int, help="reference epochs (one train file per GPU each)")
    _add(g, "exit_at_step", type=int, help="pause at this step with a checkpoint (resume later), schedule unchanged")
    _switch(
        g,
        "use_early_stopping",
        "stop when the validation loss is still above early_stop_eval_loss after early_stop_time minutes",
    )
    _add(g, "early_stop_time", type=float, default=720.0, metavar="MINUTES")
    _add(g, "early_stop_eval_loss", type=float, default=2.1)

    g = p.add_argument_group("validation (on the test samples)")
    _switch(g, "do_validation", "validate on the reference's schedule (below) or every --validation_steps")
    _add(g, "validation_steps", type=int, help="validate every N steps (implies --do_validation)")
    _add(g, "validation_epochs", type=int, default=10, help="reference epochs between validations, mid-run")
    _add(g, "validation_epochs_begin", type=int, default=1, help="... in the first validation_begin_proportion")
    _add(g, "validation_epochs_end", type=int, default=1, help="... in the last validation_end_proportion")
    _add(g, "validation_begin_proportion", type=float, default=0.1)
    _add(g, "validation_end_proportion", type=float, default=0.1)
    _add(g, "validation_micro_batch", type=int, help="per GPU (default: the training micro-batch)")
    _add(g, "validation_samples", type=int, default=10000, help="size of the fixed validation subset")

    g = p.add_argument_group("checkpoints, resume, model export")
    _add(g, "checkpoint_steps", type=int, default=1000, help="checkpoint every N steps and at the end (default 1000)")
    _add(g, "num_epochs_between_checkpoints", type=int, help="the same in reference epochs (wins if given)")
    _add(g, "keep_checkpoints", type=int, default=3, help="checkpoints kept (default 3)")
    _switch(g, "resume", "continue RUN_DIR's run from its latest checkpoint (or start one)")
    _add(g, "load_training_checkpoint", metavar="DIR", help="continue from this run or checkpoint folder")
    _add(g, "load_checkpoint_id", metavar="TAG", help="checkpoint tag to load, e.g. step00023000 (default: latest)")
    _add(
        g,
        "finetune_time_markers",
        type=_markers,
        default=(),
        metavar="F1,F2,...",
        help="export a model folder at these fractions of total_training_time (RUN_DIR/exports/)",
    )
    _switch(g, "finetune_checkpoint_at_end", "export RUN_DIR/model at the end (default true)", default=True)
    _switch(g, "export_only", "only export RUN_DIR/model from the latest checkpoint")

    g = p.add_argument_group("logging")
    _add(g, "log_steps", type=int, default=10, help="a metrics.jsonl record every N steps (default 10)")
    _add(g, "print_steps", type=int, default=100, help="a log line every N steps (default 100)")
    _switch(g, "wandb", "log to Weights & Biases (offline unless wandb is set up online)")
    _add(g, "project_name", default="sharebert-pretraining", help="wandb project")
    _add(g, "job_name", default="pretraining_experiment", help="wandb run name")
    _add(g, "current_run_id", default="", help="appended to the job name")
    p.set_defaults(func=run_pretrain)


def build_config(args):
    """The typed PretrainConfig from parsed arguments (ConfigError on a bad or inconsistent value)."""
    from ..errors import ConfigError
    from .config import parse_overrides
    from .engine import EngineConfig
    from .pretrain_config import CheckpointConfig, LogConfig, PretrainConfig, StopConfig, ValidationConfig
    from .schedule import PretrainSchedule

    if args.optimizer_type.lower() != "adamw":
        raise ConfigError(f"--optimizer_type {args.optimizer_type}: only adamw is supported (the published setting)")
    if args.fp16_backend != "ds":
        raise ConfigError(f"--fp16_backend {args.fp16_backend}: only ds (DeepSpeed's loss scaler) is supported")
    model_flags = {
        k[len(MODEL_FLAG_PREFIX) :]: v
        for k, v in vars(args).items()
        if k.startswith(MODEL_FLAG_PREFIX) and v is not None
    }
    overrides = parse_overrides([f"{k}={v}" for k, v in model_flags.items()])

    def pick(cls, **renamed):
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{name: getattr(args, name) for name in names if hasattr(args, name)}, **renamed)

    return PretrainConfig(
        dataset_path=args.dataset_path,
        output_dir=args.output_dir,
        seed=args.seed,
        model_preset=args.preset,
        model_overrides=overrides,
        model_type=args.model_type,
        tokenizer_name=args.tokenizer_name,
        local_rank=args.local_rank,
        engine=pick(EngineConfig, micro_batch_size=args.train_micro_batch_size_per_gpu),
        schedule=pick(PretrainSchedule),
        stop=pick(StopConfig),
        validation=pick(ValidationConfig),
        checkpoint=pick(CheckpointConfig),
        log=pick(LogConfig),
    )


def run_pretrain(args) -> int:
    from .pretrain import pretrain

    return pretrain(build_config(args)).exit_status


if __name__ == "__main__":
    # `deepspeed --module sharebert.trainer.pretrain_cli FLAGS`: the deepspeed launcher puts --local_rank=N first,
    # which `sharebert pretrain` accepts only after the subcommand.
    import sys

    from ..cli import main

    sys.exit(main(["pretrain", *sys.argv[1:]]))
