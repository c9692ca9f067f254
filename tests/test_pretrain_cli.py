"""`sharebert pretrain` on the command line: the published flags, and one-line errors for bad input."""

from __future__ import annotations

import dataclasses
import os
import shlex
import subprocess
import sys

import pytest
from samples_fixture import pretrain_argv, write_samples

from sharebert.cli import build_parser, main, subcommand_first
from sharebert.trainer.model.config import ShareBertConfig
from sharebert.trainer.pretrain.cli import MODEL_FLAG_PREFIX, build_config
from sharebert.trainer.pretrain.config import PretrainConfig

# The published ShareBERT Base command as docs/pretrain.md (Quick start) shows it, paths aside.
PUBLISHED = """--local_rank=0 --model_type bert-mlm --tokenizer_name bert-base-uncased --hidden_act gelu
 --hidden_size 2048 --factor_size 384 --num_hidden_layers 12 --num_attention_heads 16 --intermediate_size 4096
 --hidden_dropout_prob 0.1 --attention_probs_dropout_prob 0.1 --encoder_ln_mode pre-ln --lr 1e-3
 --train_batch_size 4000 --train_micro_batch_size_per_gpu 250 --lr_schedule step --curve linear
 --warmup_proportion 0.06 --gradient_clipping 0.5 --optimizer_type adamw --weight_decay 0.01 --adam_beta1 0.9
 --adam_beta2 0.98 --adam_eps 1e-6 --max_steps 23000 --dataset_path SAMPLES --output_dir RUN --print_steps 100
 --num_epochs_between_checkpoints 3000 --job_name pretraining_experiment --project_name sharebert-pretraining
 --validation_epochs 6 --validation_epochs_begin 1 --validation_epochs_end 1 --validation_begin_proportion 0.05
 --validation_end_proportion 0.01 --validation_micro_batch 16 --deepspeed --data_loader_type dist --do_validation
 --seed 42 --fp16 --fp16_backend ds --layer_norm_type pytorch --total_training_time 3000.0
 --early_exit_time_marker 3000.0"""


def parse(argv: str):
    return build_config(build_parser().parse_args(["pretrain", *shlex.split(argv)]))


def test_the_published_command_parses_with_the_reference_meanings():
    c = parse(PUBLISHED)
    assert c.model_overrides == dict(
        hidden_act="gelu",
        hidden_size=2048,
        factor_size=384,
        num_hidden_layers=12,
        num_attention_heads=16,
        intermediate_size=4096,
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
        encoder_ln_mode="pre-ln",
        layer_norm_type="pytorch",
    )
    e = c.engine
    assert (e.train_batch_size, e.micro_batch_size, e.lr, e.gradient_clipping) == (4000, 250, 1e-3, 0.5)
    assert e.precision == "fp16"
    assert (e.weight_decay, e.adam_beta1, e.adam_beta2, e.adam_eps) == (0.01, 0.9, 0.98, 1e-6)
    assert (c.schedule.lr_schedule, c.schedule.curve, c.schedule.warmup_proportion) == ("step", "linear", 0.06)
    assert (c.stop.max_steps, c.stop.total_training_time, c.stop.budget_hours) == (23000, 3000.0, 3000.0)
    v = c.validation
    assert v.do_validation and (v.validation_epochs, v.validation_epochs_begin, v.validation_micro_batch) == (6, 1, 16)
    assert (v.validation_begin_proportion, v.validation_end_proportion) == (0.05, 0.01)
    assert c.checkpoint.num_epochs_between_checkpoints == 3000
    assert (c.seed, c.tokenizer_name, c.local_rank, c.log.print_steps) == (42, "bert-base-uncased", 0, 100)


def test_kebab_case_aliases_and_every_model_field_have_flags():
    c = parse(
        "--dataset-path S --output-dir R --preset tiny --train-micro-batch-size-per-gpu 8 --max-steps 5 "
        "--fused_linear_layer false --attention_scale_exponent 1/2 --bf16"
    )
    assert c.engine.micro_batch_size == 8 and c.stop.max_steps == 5 and c.engine.precision == "bf16"
    assert c.model_overrides == {"fused_linear_layer": False, "attention_scale_exponent": 0.5}
    dests = {a.dest for a in build_parser()._subparsers._group_actions[0].choices["pretrain"]._actions}
    assert {MODEL_FLAG_PREFIX + f.name for f in dataclasses.fields(ShareBertConfig)} <= dests


def pretrain_parser():
    return build_parser()._subparsers._group_actions[0].choices["pretrain"]


def test_the_defaults_are_the_configs():
    assert parse("--dataset_path S --output_dir R") == PretrainConfig("S", "R")
    own = {"help", "quiet", "verbose"}
    assert all(a.default is None for a in pretrain_parser()._actions if a.dest not in own)


@pytest.mark.parametrize(
    "flag, shown",
    [("--train_batch_size", "4000"), ("--adam_eps", "1e-6"), ("--lr_schedule", "step"), ("--preset", "base")],
)
def test_the_help_shows_the_configs_defaults(flag, shown):
    action = next(a for a in pretrain_parser()._actions if flag in a.option_strings)
    assert action.help.endswith(f"(default {shown})") or action.help == f"default {shown}"


@pytest.mark.parametrize("launcher", [["--local_rank=1"], ["--local_rank", "1"], ["--local-rank=1"]])
def test_a_leading_local_rank_is_moved_after_the_subcommand(launcher):
    argv = subcommand_first([*launcher, "pretrain", "--dataset_path", "S", "--output_dir", "R"])
    assert argv[0] == "pretrain"
    assert build_config(build_parser().parse_args(argv)).local_rank == 1


def run_entry_point(args: list[str]):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=300)


def test_python_m_sharebert_takes_the_deepspeed_launchers_leading_local_rank(tmp_path):
    """`deepspeed --module sharebert pretrain ...` runs `python -m sharebert --local_rank=N pretrain ...`."""
    (tmp_path / "empty").mkdir()
    argv = ["--local_rank=0", "pretrain", "--dataset_path", str(tmp_path / "empty"), "--output_dir", str(tmp_path)]
    proc = run_entry_point(["-m", "sharebert", *argv])
    assert proc.returncode == 2 and "sharebert pretrain: error: " in proc.stderr
    assert "empty/manifest.json: missing" in proc.stderr


def test_the_pretrain_cli_entry_point_runs_without_the_sharebert_command(tmp_path):
    """`deepspeed --module sharebert.trainer.pretrain.cli FLAGS` (docs/pretrain.md), without importing cli.py."""
    (tmp_path / "empty").mkdir()
    run_as_main = (
        "import runpy, sys\n"
        "try:\n"
        "    runpy.run_module('sharebert.trainer.pretrain.cli', run_name='__main__')\n"
        "except SystemExit as e:\n"
        "    print(e.code, 'sharebert.cli' in sys.modules)\n"
    )
    flags = ["--local_rank=0", "--dataset_path", str(tmp_path / "empty"), "--output_dir", str(tmp_path)]
    proc = run_entry_point(["-c", run_as_main, *flags])
    assert proc.stdout.split() == ["2", "False"], proc.stderr[-2000:]
    assert "sharebert pretrain: error: " in proc.stderr and "empty/manifest.json: missing" in proc.stderr


@pytest.fixture()
def samples(tmp_path):
    return write_samples(tmp_path / "samples", [64, 40], [32])


def run_cli(samples, out, extra: str):
    tiny = "--preset tiny --train_batch_size 16 --train_micro_batch_size_per_gpu 8 --max_steps 3"
    return main(pretrain_argv(samples, out, f"{tiny} {extra}"))


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            "--vocab_size 2048",
            "manifest.json: the samples use a vocab of 1024 tokens but the model's vocab_size is 2048",
        ),
        (
            "--max_position_embeddings 16",
            "samples are 32 tokens long but the model has only max_position_embeddings=16",
        ),
        ("--train_batch_size 30", "train_batch_size=30 is not a multiple of train_micro_batch_size_per_gpu=8 x world"),
        (
            "--train_batch_size 32 --gradient_accumulation_steps 2",
            "train_batch_size=32 is not train_micro_batch_size_per_gpu=8 x gradient_accumulation_steps=2 x world size 1",
        ),
        ("--fp16", "--fp16 needs a CUDA GPU"),
        (
            "--tokenizer_name bert-base-uncased",
            "the samples were made with another vocab than the bert-base-uncased vocab",
        ),
        ("--tokenizer_name roberta-base", "--tokenizer_name 'roberta-base': sharebert takes the vocab from"),
        ("--optimizer_type lamb", "only adamw is supported"),
        ("--fp16_backend apex", "only ds (DeepSpeed's loss scaler) is supported"),
        ("--lr_schedule time", "--lr_schedule time needs --total_training_time"),
        ("--model_type bert-mlm-nsp", "the samples have no next-sentence labels"),
        ("--do_validation --seed -1", "seed=-1 must be an integer >= 0"),
        ("--nsp true", "--nsp True disagrees with --model_type bert-mlm"),
    ],
)
def test_bad_settings_fail_with_one_line(samples, tmp_path, capsys, extra, message):
    assert run_cli(samples, tmp_path / "run", extra) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sharebert pretrain: error: ") and message in err and "\n" not in err


def test_a_folder_without_manifest_is_refused(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert run_cli(tmp_path / "empty", tmp_path / "run", "") == 2
    assert "empty/manifest.json: missing" in capsys.readouterr().err


def test_a_run_folder_with_checkpoints_needs_resume(samples, tmp_path, capsys):
    ck = tmp_path / "run" / "checkpoints"
    (ck / "step00000002").mkdir(parents=True)
    (ck / "latest").write_text("step00000002\n")
    assert run_cli(samples, tmp_path / "run", "") == 2
    assert "already holds a run (checkpoint step00000002): pass --resume" in capsys.readouterr().err


def test_samples_without_their_vocab_are_refused_before_training(samples, tmp_path, capsys):
    (samples / "vocab.txt").unlink()
    assert run_cli(samples, tmp_path / "run", "") == 2
    assert "vocab.txt: missing: `sharebert mask` copies the vocab next to the samples" in capsys.readouterr().err
