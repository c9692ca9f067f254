"""The `sharebert` command (also `python -m sharebert`): one subcommand per stage.

Each subcommand only declares its flags, builds the stage's typed config from them and calls the
stage's one public function; the configs own the defaults and resolve the flags. Heavy libraries are
imported inside those functions, so `sharebert --help` is fast and works where torch, deepspeed,
datasets or wandb are missing.
"""

from __future__ import annotations

import argparse
import sys
from functools import partial

from . import __version__
from .command import run
from .flags import add_flag, command_flags, common_options, switch, with_default

# The deepspeed launcher passes --local_rank=N before the script's arguments, so before the subcommand.
LOCAL_RANK_FLAGS = ("--local_rank", "--local-rank")


# ---------------------------------------------------------------- sharebert prepare
def _add_prepare(sub, common) -> None:
    from .pipeline.prepare.config import DEFAULT_TRAIN_VOCAB, PrepareConfig

    shown = partial(_shown_default, PrepareConfig)

    p = sub.add_parser(
        "prepare",
        parents=[common],
        help="turn Wikipedia dumps, books and text into balanced, tokenized Parquet shards",
        description="Read the inputs (any mix, each flag repeatable, in the order given; with none, the "
        "built-in corpus), clean and split them into sentences, tokenize them with a BERT vocab (given or "
        "trained on the corpus) and write token-balanced train/test Parquet shards, vocab.txt and "
        "prepare.json to the output folder. Rerunning the same command resumes. See docs/prepare.md.",
    )
    inputs = p.add_argument_group("inputs")
    for kind, metavar, text in (
        ("wiki", "DUMP", "a MediaWiki XML dump (.xml, .xml.bz2, multistream too); main-namespace articles"),
        ("books", "DIR", "a folder with one plain-text book per file"),
        ("text", "FILE", "plain text; a blank line separates documents"),
        ("hf-dataset", "NAME_OR_PATH", "a Hugging Face dataset: save_to_disk folder, data files, or hub name"),
    ):
        source_kind = "hf" if kind == "hf-dataset" else kind
        inputs.add_argument(f"--{kind}", dest="inputs", action="append", metavar=metavar, help=text,
                            type=lambda path, k=source_kind: (k, path))  # fmt: skip
    inputs.add_argument("--builtin", dest="inputs", action="append_const", const=("builtin", "python-stdlib"),
                        help="the built-in corpus: pydoc topics and standard-library docstrings (the default)")  # fmt: skip
    inputs.add_argument("--text-column", metavar="NAME", help=shown("text_column", "dataset column with the text"))
    inputs.add_argument("--hf-split", metavar="SPLIT", help=shown("hf_split", "dataset split to read"))
    vocab = p.add_argument_group("tokenization")
    choice = vocab.add_mutually_exclusive_group()
    choice.add_argument("--vocab", metavar="VOCAB_TXT", help="a BERT-style vocab.txt")
    choice.add_argument("--train-vocab", type=int, metavar="SIZE",
                        help=f"train a WordPiece vocab of SIZE tokens on the corpus (default {DEFAULT_TRAIN_VOCAB} "
                        "without --vocab)")  # fmt: skip
    case = vocab.add_mutually_exclusive_group()
    case.add_argument("--lowercase", dest="lowercase", action="store_const", const=True,
                      help="BERT uncased normalization: lowercase, strip accents (the default)")  # fmt: skip
    case.add_argument("--cased", dest="lowercase", action="store_const", const=False, help="BERT cased normalization")
    out = p.add_argument_group("output")
    out.add_argument("-o", "--output", required=True, metavar="PREPARED_DIR", help="output folder")
    out.add_argument("--num-train-shards", type=int, metavar="N", help=shown("num_train_shards", "train shards"))
    out.add_argument("--num-test-shards", type=int, metavar="N", help=shown("num_test_shards", "test shards (0: none)"))
    out.add_argument("--frac-test", type=float, metavar="F",
                     help=shown("frac_test", "fraction of documents held out for test (0 with --num-test-shards 0)"))  # fmt: skip
    out.add_argument("--seed", type=int, help=shown("seed", "seed of the train/test split and placement"))
    out.add_argument("--keep-text", action="store_true", default=None,
                     help="also store each sentence's text in the shards")  # fmt: skip
    out.add_argument("--overwrite", action="store_true", default=None,
                     help="replace the output of a different prepare run")  # fmt: skip
    out.add_argument(
        "--workers", type=int, metavar="N", help="processes (default: all cores); output is the same for any N"
    )
    _add_engine_flags(out, PrepareConfig)

    def run_prepare(args) -> int:
        from .pipeline.prepare.stage import prepare

        prepare(PrepareConfig(args.output, args.inputs or [], **given(args, _PREPARE_OPTIONS)))
        return 0

    p.set_defaults(func=run_prepare)


# ---------------------------------------------------------------- sharebert mask
def _add_mask(sub, common) -> None:
    from .pipeline.mask.config import MaskConfig

    p = sub.add_parser(
        "mask",
        parents=[common],
        help="turn prepared shards into duplicated, statically masked HDF5 samples (+ manifest.json)",
        description="Build pretraining samples from the shards of `sharebert prepare`: one HDF5 file per "
        "(shard, duplicate), checked, with a manifest.json that `sharebert pretrain` reads. Rerunning the "
        "same command resumes. With --validate-only, check an existing samples folder instead.",
    )
    shown = partial(_shown_default, MaskConfig)
    p.add_argument(
        "folder", metavar="PREPARED_DIR", help="output of `sharebert prepare` (SAMPLES_DIR with --validate-only)"
    )
    p.add_argument("-o", "--output", metavar="SAMPLES_DIR", help="folder for the samples and manifest.json")
    for dest, kind, metavar, text in (
        ("max_seq_length", int, "S", "tokens per sample incl. [CLS]/[SEP]"),
        ("max_predictions_per_seq", int, "M", "masked positions per sample at most"),
        ("masked_lm_prob", float, "P", "fraction of tokens masked"),
        ("short_seq_prob", float, "P", "chance a document aims at a shorter length"),
        ("dup_factor", int, "N", "masked copies of every shard, each with its own seed"),
    ):
        p.add_argument("--" + dest.replace("_", "-"), type=kind, metavar=metavar, help=shown(dest, text))
    p.add_argument("--seed", type=int, help=shown("seed", "seed of every random choice"))
    p.add_argument(
        "--nsp", action="store_true", default=None, help="sentence pairs with next-sentence labels (original BERT)"
    )
    p.add_argument("--whole-word-masking", action="store_true", default=None, help="mask whole words, not word pieces")
    p.add_argument(
        "--workers", type=int, metavar="N", help="processes (default: all cores); the output is the same for any N"
    )
    _add_engine_flags(p, MaskConfig)
    p.add_argument("--overwrite", action="store_true", default=None, help="replace samples made with other settings")
    p.add_argument("--gzip-level", type=int, metavar="L", help=shown("gzip_level", "HDF5 gzip level 0-9"))
    p.add_argument(
        "--validate-only", action="store_true", help="check the samples in the folder; exit 2 on any problem"
    )
    p.add_argument(
        "--vocab", metavar="VOCAB_TXT", help="with --validate-only: the vocab (needed without manifest.json)"
    )
    p.set_defaults(func=_run_mask)


def _add_engine_flags(group, config) -> None:
    from .pipeline.engines import ENGINES

    group.add_argument(
        "--engine",
        choices=ENGINES,
        help=with_default(
            "where tasks run: this machine's processes, or a Ray cluster (docs/cluster.md); same output",
            config,
            "engine",
        ),
    )
    group.add_argument("--ray-address", metavar="ADDRESS",
                       help="with --engine ray: the cluster to join (auto, HOST:PORT; default: RAY_ADDRESS, "
                       "else a cluster of this machine's cores)")  # fmt: skip


def given(args, names) -> dict:
    """The flags among `names` that were given (not None): the stage's config supplies the others' defaults."""
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def _shown_default(config, dest: str, text: str) -> str:
    return with_default(text, config, dest)


_PREPARE_OPTIONS = ("vocab", "train_vocab", "lowercase", "num_train_shards", "num_test_shards", "frac_test", "seed",
                    "workers", "engine", "ray_address", "keep_text", "overwrite", "text_column", "hf_split")  # fmt: skip
_MASK_ONLY_OPTIONS = ("output", "short_seq_prob", "dup_factor", "seed", "nsp", "overwrite", "gzip_level", "engine",
                      "ray_address")  # fmt: skip
_SHARED_MASK_OPTIONS = ("max_seq_length", "max_predictions_per_seq", "masked_lm_prob", "whole_word_masking")


def _run_mask(args) -> int:
    from .errors import ConfigError

    if args.validate_only:
        misplaced = given(args, _MASK_ONLY_OPTIONS)
        if misplaced:
            flags = ", ".join("--" + n.replace("_", "-") for n in misplaced)
            raise ConfigError(f"{flags}: not used with --validate-only")
        from .pipeline.mask.validate import ValidateConfig, validate_samples

        validate_samples(
            ValidateConfig(args.folder, vocab=args.vocab, workers=args.workers, **given(args, _SHARED_MASK_OPTIONS))
        )
        return 0
    if args.vocab is not None:
        raise ConfigError("--vocab: only used with --validate-only (mask takes the vocab of PREPARED_DIR)")
    if args.output is None:
        raise ConfigError("-o SAMPLES_DIR is required")
    from .pipeline.mask.stage import MaskConfig, mask

    options = given(args, _MASK_ONLY_OPTIONS + _SHARED_MASK_OPTIONS)
    mask(MaskConfig(prepared_dir=args.folder, output_dir=options.pop("output"), workers=args.workers, **options))
    return 0


# ---------------------------------------------------------------- sharebert model
def _add_model(sub, common) -> None:
    p = sub.add_parser(
        "model",
        parents=[common],
        help="print the parameter summary of a model preset or a saved model folder",
        description="Parameter counts per component (encoder without and with its heads) of a preset with "
        "overrides (counted without allocating the model) or of a saved model folder.",
    )
    source = p.add_mutually_exclusive_group()
    source.add_argument("--preset", default="base", help="tiny, small, base or large (default: base)")
    source.add_argument(
        "--folder", metavar="DIR", help="a model folder (config.json + weights), ours or the reference's"
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a config field of the preset, e.g. --set num_hidden_layers=6 (repeatable)",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=_run_model)


def _run_model(args) -> int:
    from .errors import ConfigError
    from .fileio import json_dumps
    from .trainer.model.config import ShareBertConfig, parse_overrides
    from .trainer.model.io import format_summary
    from .trainer.model.modeling import model_summary

    if args.folder:
        if args.overrides:
            raise ConfigError("--set applies to --preset, not to --folder")
        summary = model_summary(folder=args.folder)
    else:
        summary = model_summary(ShareBertConfig.from_preset(args.preset, **parse_overrides(args.overrides)))
        summary["source"] = f"preset {args.preset}" + (f" with {', '.join(args.overrides)}" if args.overrides else "")
    print(json_dumps(summary) if args.json else format_summary(summary), end="\n" if not args.json else "")
    return 0


# ---------------------------------------------------------------- sharebert export-hf
_EXPORT_HF_HELP = dict(
    help="write a model folder as a Hugging Face folder (transformers Auto classes, AutoTokenizer)",
    description="Convert a model folder sharebert loads (ours, an older one, or the reference's) into a "
    "complete Hugging Face folder: the same weights and keys, config.json with auto_map, the generated "
    "remote code and the tokenizer files. See docs/model.md.",
)


def _add_export_hf(sub, common) -> None:
    """`sharebert export-hf` (also reachable as `sharebert export hf`)."""
    _export_hf_arguments(sub.add_parser("export-hf", parents=[common], **_EXPORT_HF_HELP))


def _export_hf_arguments(p) -> None:
    p.add_argument("folder", metavar="MODEL_DIR", help="the model folder to convert")
    p.add_argument("-o", "--output", required=True, metavar="OUT_DIR", help="a new or empty folder (or a model folder)")
    p.add_argument("--vocab", metavar="VOCAB_TXT", help="the model's vocab.txt (default: MODEL_DIR/vocab.txt)")
    case = p.add_mutually_exclusive_group()
    case.add_argument("--lowercase", dest="lowercase", action="store_const", const=True,
                      help="uncased tokenizer (default: the casing MODEL_DIR records, else uncased)")  # fmt: skip
    case.add_argument("--cased", dest="lowercase", action="store_const", const=False, help="cased tokenizer")

    def run_export_hf(args) -> int:
        from .trainer.model.hf_export import export_hf

        print(export_hf(args.folder, args.output, vocab_file=args.vocab, lowercase=args.lowercase))
        return 0

    p.set_defaults(func=run_export_hf)


# ---------------------------------------------------------------- sharebert pretrain
def _add_pretrain(sub, common) -> None:
    # ~80 flags (the reference's names + every model field): declared in their own torch-free module.
    from .trainer.pretrain.cli import add_pretrain_parser

    add_pretrain_parser(sub, common)


# ---------------------------------------------------------------- sharebert finetune
def _add_finetune(sub, common) -> None:
    """Flags of Hugging Face's run_glue (the reference's fine-tuning script), spelled the same way."""
    from .trainer.finetune.config import EVALUATION_STRATEGIES, PRECISIONS, SCHEDULES, FinetuneConfig

    p = sub.add_parser(
        "finetune",
        parents=[common],
        help="fine-tune and evaluate on GLUE, write submission files",
        description="Fine-tune a ShareBERT model folder on GLUE tasks (defaults: the published settings, see "
        "docs/finetune.md), report GLUE's metrics per task and seed, save the best checkpoint and GLUE "
        "submission files.",
    )
    g = p.add_argument_group("model and data")
    add = partial(add_flag, g, config=FinetuneConfig)
    add(
        "model_name_or_path", required=True, metavar="DIR", help="model folder (sharebert pretrain output or reference)"
    )
    add(
        "task_name",
        dest="task_names",
        metavar="TASK_NAME",
        required=True,
        nargs="+",
        help="cola sst2 mrpc qqp stsb mnli qnli rte wnli, GLUE spellings (SST-2, STS-B, CoLA), or all",
    )
    add("data_dir", metavar="DIR", help="GLUE folder in the original TSV layout (CoLA/, SST-2/, ..., MNLI/)")
    add(
        "dataset_name",
        metavar="NAME_OR_DIR",
        help="Hugging Face dataset: a hub name (e.g. nyu-mll/glue, downloads) or a "
        "local folder of Parquet/Arrow files or save_to_disk output",
    )
    add("output_dir", required=True, metavar="DIR")
    add("overwrite_output_dir", **switch("rerun everything instead of reusing finished runs in output_dir"))
    case = g.add_mutually_exclusive_group()
    add_flag(
        case,
        "do_lower_case",
        dest="lowercase",
        action="store_const",
        const=True,
        help="lowercase the input (default: the model folder's setting, else uncased)",
    )
    add_flag(case, "cased", dest="lowercase", action="store_const", const=False, help="keep the case")
    add("max_seq_length", type=int)
    for split in ("train", "eval", "predict"):
        add(f"max_{split}_samples", type=int, help=f"use only the first N {split} examples")

    t = p.add_argument_group("training (defaults: the published settings, docs/finetune.md)")
    add = partial(add_flag, t, config=FinetuneConfig)
    for name in ("do_train", "do_eval", "do_predict"):
        add_flag(t, name, **switch("when none of the three is given, all three run"))
    add("per_device_train_batch_size", type=int)
    add("per_device_eval_batch_size", type=int)
    add("gradient_accumulation_steps", type=int)
    add("learning_rate", type=float)
    add("weight_decay", type=float)
    add("adam_beta1", type=float)
    add("adam_beta2", type=float)
    add("adam_epsilon", type=float)
    add("num_train_epochs", type=float)
    add("max_steps", type=int, help="> 0: train this many steps, overriding epochs")
    add("lr_scheduler_type", metavar="NAME", help=", ".join(SCHEDULES))
    add("warmup_steps", type=int)
    add("warmup_ratio", type=float, help="used when --warmup_steps is 0")
    add("lr_end", type=float, help="final LR of the polynomial schedule")
    add("max_grad_norm", type=float)
    add("early_stopping_patience", type=int)
    add_flag(t, "seed", type=int, help="one seed")
    add("seeds", type=int, nargs="+", help="several seeds: median and spread are reported")

    n = p.add_argument_group("precision and device")
    add = partial(add_flag, n, config=FinetuneConfig)
    add_flag(n, "fp16", **switch("fp16 mixed precision (GPU; the CPU always trains in fp32)"))
    add_flag(n, "bf16", **switch("bf16 mixed precision (GPU)"))
    add("precision", choices=PRECISIONS, help="auto: bf16 (fp16 where unsupported) on a GPU, fp32 on the CPU")
    add_flag(n, "fp16_backend", metavar="NAME", help="accepted for compatibility; torch.amp is always used")
    add_flag(n, "local_rank", type=int, help="accepted for compatibility (one process: -1 or 0)")
    add("device", help="auto, cpu, cuda or cuda:N")
    add("cpu_threads", type=int, help="CPU threads; 0: one for narrow models such as the tiny preset, else all")

    e = p.add_argument_group("evaluation, checkpoints, logging")
    add = partial(add_flag, e, config=FinetuneConfig)
    add("evaluation_strategy", "eval_strategy", metavar="WHEN", help=", ".join(EVALUATION_STRATEGIES))
    add("eval_steps", type=int)
    add("save_steps", type=int, help="resume checkpoint every N steps (0: none)")
    add("logging_steps", type=int)
    add("wandb", **switch("also log to Weights & Biases (offline unless WANDB_MODE=online)"))
    add_flag(e, "report_to", nargs="+", metavar="NAME", help="HF style: 'wandb' is the same as --wandb")
    add("wandb_project", "project_name", metavar="NAME")
    add("run_name", "group_name", metavar="NAME")

    def run_finetune(args) -> int:
        from .trainer.finetune.report import render_summary
        from .trainer.finetune.stage import finetune

        report = finetune(FinetuneConfig.from_flags(**command_flags(args)))
        print(render_summary(report), end="")
        return 0

    p.set_defaults(func=run_finetune)


# ---------------------------------------------------------------- sharebert export onnx, bench-infer
def _add_export(sub, common) -> None:
    from .deploy.config import QUANTIZATIONS, OnnxExportConfig

    p = sub.add_parser("export", help="export a model folder for deployment (see docs/deploy.md)")
    formats = p.add_subparsers(dest="format", metavar="FORMAT", required=True)
    onnx = formats.add_parser(
        "onnx",
        parents=[common],
        help="a masked-LM or classifier folder as an ONNX model for onnxruntime, with its tokenizer files",
        description="Export to OUT_DIR/model.onnx (dynamic batch and sequence axes), the tokenizer files and "
        "deploy.json. OUT_DIR must be new or empty. See docs/deploy.md.",
    )
    onnx.add_argument("model_dir", metavar="MODEL_DIR", help="a model folder (pretrain or finetune output)")
    onnx.add_argument("-o", "--output", required=True, metavar="OUT_DIR", help="the export folder to create")
    onnx.add_argument(
        "--quantize", choices=QUANTIZATIONS, help="dynamic int8 quantization of the matrix multiplications"
    )
    onnx.add_argument("--max-seq-length", type=int, metavar="S",
                      help=with_default("serving truncates to S tokens", OnnxExportConfig, "max_seq_length"))  # fmt: skip

    def run_export_onnx(args) -> int:
        from .deploy.export import export_onnx

        export_onnx(OnnxExportConfig(args.model_dir, args.output, **given(args, ("quantize", "max_seq_length"))))
        return 0

    onnx.set_defaults(func=run_export_onnx)
    _export_hf_arguments(formats.add_parser("hf", parents=[common], **_EXPORT_HF_HELP))


def _add_bench_infer(sub, common) -> None:
    from .deploy.config import BenchInferConfig

    shown = partial(_shown_default, BenchInferConfig)
    p = sub.add_parser(
        "bench-infer",
        parents=[common],
        help="size, load time, peak memory, latency p50/p99 and metrics of an ONNX export on a GLUE dev file",
        description="Predict a GLUE dev file with an export of `sharebert export onnx`, batch by batch, with "
        "onnxruntime only (no torch), and print what a deployment needs to know. See docs/deploy.md.",
    )
    p.add_argument("folder", metavar="OUT_DIR", help="output folder of `sharebert export onnx` (a classifier)")
    p.add_argument("--data", required=True, metavar="TSV", help="a labelled GLUE file, e.g. glue_data/SST-2/dev.tsv")
    p.add_argument("--task", help="GLUE task of --data (default: from its folder name)")
    p.add_argument("--batch-size", type=int, help=shown("batch_size", "examples per request"))
    p.add_argument("--threads", type=int, help=shown("threads", "onnxruntime threads, 0: all cores"))
    p.add_argument("--max-examples", type=int, metavar="N", help="only the first N examples")

    def run_bench_infer(args) -> int:
        from .deploy.bench import bench_infer, format_report

        options = given(args, ("task", "batch_size", "threads", "max_examples"))
        print(format_report(bench_infer(BenchInferConfig(args.folder, args.data, **options))))
        return 0

    p.set_defaults(func=run_bench_infer)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sharebert",
        description="Pretrain parameter-shared ShareBERT encoders from raw text and fine-tune them on GLUE.",
    )
    parser.add_argument("--version", action="version", version=f"sharebert {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    common = common_options()
    for register in (
        _add_prepare,
        _add_mask,
        _add_model,
        _add_export_hf,
        _add_export,
        _add_bench_infer,
        _add_pretrain,
        _add_finetune,
    ):
        register(sub, common)
    return parser


def subcommand_first(argv: list[str]) -> list[str]:
    """`argv` with a leading --local_rank=N / --local_rank N moved after the subcommand, which takes it:
    `deepspeed --module sharebert pretrain ...` runs `python -m sharebert --local_rank=N pretrain ...`."""
    if not argv or argv[0].split("=")[0] not in LOCAL_RANK_FLAGS:
        return list(argv)
    width = 1 if "=" in argv[0] else 2
    return [*argv[width : width + 1], *argv[:width], *argv[width + 1 :]]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(subcommand_first(sys.argv[1:] if argv is None else argv))
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
