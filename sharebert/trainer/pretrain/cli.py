"""The command line of `sharebert pretrain`: the reference's flag names (snake_case, kebab-case aliases) over
the typed config they fill, which owns every default. Torch-free: nothing heavy is imported until the
command runs. `python -m sharebert.trainer.pretrain.cli FLAGS` runs the command alone (deepspeed's
`--module` entry point).

Flags of the published ShareBERT command that mean nothing here are accepted and checked (see
docs/pretrain.md): --deepspeed (always on), --data_loader_type (the loader always gives each rank its own
slice), --fp16_backend ds, --optimizer_type adamw, --local_rank, --tokenizer_name (checked against the
samples' vocab, never downloaded).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from functools import partial

from ...command import run
from ...flags import add_flag, command_flags, common_options, switch
from ..model.config import PRESETS, ShareBertConfig, parse_overrides
from .config import (
    FP8_RECIPES,
    MODEL_TYPES,
    PRECISIONS,
    ZERO_STAGES,
    CheckpointConfig,
    EngineConfig,
    LogConfig,
    PretrainConfig,
    StopConfig,
    ValidationConfig,
)
from .schedule import CURVES, LR_SCHEDULES, PretrainSchedule

MODEL_FLAG_PREFIX = "model__"


def _markers(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of fractions") from None


def add_pretrain_parser(sub, common) -> None:
    p = sub.add_parser(
        "pretrain",
        parents=[common],
        help="pretrain a ShareBERT model (masked LM) with DeepSpeed",
        description="Pretrain a ShareBERT encoder on the samples of `sharebert mask`. Accepts the flags of the "
        "published ShareBERT/academic-budget-bert command. Run it directly, or under torchrun / "
        "deepspeed for several GPUs or nodes. See docs/pretrain.md.",
    )
    add = partial(add_flag, p, config=PretrainConfig)
    add("dataset_path", required=True, metavar="SAMPLES_DIR", help="output folder of `sharebert mask`")
    add("output_dir", required=True, metavar="RUN_DIR", help="where checkpoints, metrics and the model go")
    add("seed", type=int, help="seed of the model init, data order and dropout")

    g = p.add_argument_group("model (a preset, then any field of the model config)")
    add = partial(add_flag, g, config=PretrainConfig)
    add("preset", dest="model_preset", choices=tuple(PRESETS), help="model size")
    add(
        "model_type",
        choices=MODEL_TYPES,
        help="bert-mlm (the published setting) or bert-mlm-nsp (samples made with --nsp)",
    )
    add(
        "tokenizer_name",
        metavar="NAME|PATH",
        help="checked only: bert-base-uncased / bert-large-uncased or a vocab.txt path must match the samples' vocab",
    )
    for f in dataclasses.fields(ShareBertConfig):
        add_flag(
            g,
            f.name,
            dest=MODEL_FLAG_PREFIX + f.name,
            metavar=str(f.type).upper(),
            help=f"model {f.name} (default: the preset's)",
        )

    g = p.add_argument_group("batch, optimizer, precision")
    add = partial(add_flag, g, config=EngineConfig)
    add("train_batch_size", type=int, help="samples per optimizer step, all GPUs")
    add("train_micro_batch_size_per_gpu", dest="micro_batch_size", type=int, help="samples per GPU per pass")
    add(
        "gradient_accumulation_steps",
        type=int,
        help="default: train_batch_size / (micro-batch x world size); if given, it must agree",
    )
    add("lr", type=float, help="peak learning rate")
    add_flag(g, "optimizer_type", metavar="NAME", help="adamw (the only one; no DeepSpeed op is compiled)")
    add("weight_decay", type=float, help="AdamW weight decay, not on 1-D parameters")
    add("adam_beta1", type=float)
    add("adam_beta2", type=float)
    add("adam_eps", type=float)
    add("gradient_clipping", type=float, help="max gradient norm; 0 = off")
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
    add_flag(precision, "precision", config=EngineConfig, choices=PRECISIONS)
    add_flag(g, "fp16_backend", metavar="NAME", help="ds (DeepSpeed's loss scaler; apex is not supported)")
    add("zero_stage", type=int, choices=ZERO_STAGES, help="DeepSpeed ZeRO stage")
    add("deepspeed_config", metavar="FILE", help="JSON whose keys override the generated DeepSpeed config")
    add("compile", **switch("torch.compile the model (faster steps after a compile of a minute or two)"))
    add(
        "fp8",
        **switch("the shared layers' matmuls in FP8 with torchao (GPU of compute capability 8.9+, bf16 autocast)"),
    )
    add("fp8_recipe", choices=FP8_RECIPES, help="FP8 scaling: one scale per tensor or per row")
    add("unpad", **switch("run the layers on the real tokens only, skipping the padding"))
    add_flag(g, "deepspeed", **switch("accepted for the reference's command; DeepSpeed is always used"))
    add_flag(
        g,
        "data_loader_type",
        choices=("dist", "per_device"),
        help="accepted for the reference's command; each rank always reads its own slice",
    )
    add_flag(g, "local_rank", type=int, help="set by the deepspeed launcher (LOCAL_RANK wins)")

    g = p.add_argument_group("learning-rate schedule")
    add = partial(add_flag, g, config=PretrainSchedule)
    add(
        "lr_schedule",
        choices=LR_SCHEDULES,
        help="step: over max_steps; constant_step: fixed warm-up steps; time: over total_training_time",
    )
    add("curve", choices=CURVES)
    add("warmup_proportion", type=float, help="warm-up share of the schedule")
    add("num_warmup_steps", type=int, help="warm-up steps of constant_step")
    add("decay_rate", type=float, help="exp curve: factor per decay_step")
    add("decay_step", type=float, help="exp curve: steps (or hours) per decay_rate")

    g = p.add_argument_group("when to stop")
    add = partial(add_flag, g, config=StopConfig)
    add("max_steps", type=int, help="optimizer steps")
    add("total_training_time", type=float, metavar="HOURS", help="time budget; length of the time schedule")
    add("early_exit_time_marker", type=float, metavar="HOURS", help="stop here with a checkpoint")
    add("num_epochs", type=int, help="reference epochs (one train file per GPU each)")
    add("exit_at_step", type=int, help="pause at this step with a checkpoint (resume later), schedule unchanged")
    add(
        "use_early_stopping",
        **switch("stop when the validation loss is still above early_stop_eval_loss after early_stop_time minutes"),
    )
    add("early_stop_time", type=float, metavar="MINUTES")
    add("early_stop_eval_loss", type=float)

    g = p.add_argument_group("validation (on the test samples)")
    add = partial(add_flag, g, config=ValidationConfig)
    add("do_validation", **switch("validate on the reference's schedule (below) or every --validation_steps"))
    add("validation_steps", type=int, help="validate every N steps (implies --do_validation)")
    add("validation_epochs", type=int, help="reference epochs between validations, mid-run")
    add("validation_epochs_begin", type=int, help="... in the first validation_begin_proportion")
    add("validation_epochs_end", type=int, help="... in the last validation_end_proportion")
    add("validation_begin_proportion", type=float)
    add("validation_end_proportion", type=float)
    add("validation_micro_batch", type=int, help="per GPU (default: the training micro-batch)")
    add("validation_samples", type=int, help="size of the fixed validation subset")

    g = p.add_argument_group("checkpoints, resume, model export")
    add = partial(add_flag, g, config=CheckpointConfig)
    add("checkpoint_steps", type=int, help="checkpoint every N steps and at the end")
    add("num_epochs_between_checkpoints", type=int, help="the same in reference epochs (wins if given)")
    add("keep_checkpoints", type=int, help="checkpoints kept")
    add("resume", **switch("continue RUN_DIR's run from its latest checkpoint (or start one)"))
    add("load_training_checkpoint", metavar="DIR", help="continue from this run or checkpoint folder")
    add("load_checkpoint_id", metavar="TAG", help="checkpoint tag to load, e.g. step00023000 (default: latest)")
    add(
        "finetune_time_markers",
        type=_markers,
        metavar="F1,F2,...",
        help="export a model folder at these fractions of total_training_time (RUN_DIR/exports/)",
    )
    add("finetune_checkpoint_at_end", **switch("export RUN_DIR/model at the end"))
    add("export_only", **switch("only export RUN_DIR/model from the latest checkpoint"))

    g = p.add_argument_group("logging")
    add = partial(add_flag, g, config=LogConfig)
    add("log_steps", type=int, help="a metrics.jsonl record every N steps")
    add("print_steps", type=int, help="a log line every N steps")
    add("wandb", **switch("log to Weights & Biases (offline unless WANDB_MODE=online)"))
    add("project_name", metavar="NAME", help="wandb project")
    add("job_name", metavar="NAME", help="wandb run name")
    add("current_run_id", metavar="ID", help="appended to the job name")
    p.set_defaults(func=run_pretrain)


def build_config(args):
    """The typed PretrainConfig from parsed arguments (ConfigError on a bad or inconsistent value)."""
    flags = command_flags(args)
    model_flags = [name for name in flags if name.startswith(MODEL_FLAG_PREFIX)]
    model_values = {name[len(MODEL_FLAG_PREFIX) :]: flags.pop(name) for name in model_flags}
    overrides = parse_overrides([f"{k}={v}" for k, v in model_values.items() if v is not None])
    return PretrainConfig.from_flags(**flags, model_overrides=overrides)


def run_pretrain(args) -> int:
    from .stage import pretrain

    return pretrain(build_config(args)).exit_status


def main(argv: list[str] | None = None) -> int:
    """`sharebert pretrain FLAGS` alone: the entry point of `deepspeed --module sharebert.trainer.pretrain.cli FLAGS`,
    whose leading --local_rank=N is one of these flags. Runs without the `sharebert` command's module."""
    parser = argparse.ArgumentParser(prog="sharebert")
    add_pretrain_parser(parser.add_subparsers(dest="command"), common_options())
    return run(parser.parse_args(["pretrain", *(sys.argv[1:] if argv is None else argv)]))


if __name__ == "__main__":
    sys.exit(main())
