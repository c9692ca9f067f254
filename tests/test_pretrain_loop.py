"""The pretraining loop on the CPU: exact resume, metrics, model export, time budget, signals, non-finite loss."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time

import pytest
import torch
from fake_wandb import install_fake_wandb, set_wandb_credentials
from samples_fixture import pretrain_argv, write_samples

from sharebert.cli import build_parser, main
from sharebert.trainer.model.modeling import load_model_folder
from sharebert.trainer.pretrain.cli import build_config
from sharebert.trainer.pretrain.stage import pretrain

TINY = "--preset tiny --train_batch_size 16 --train_micro_batch_size_per_gpu 8 --checkpoint_steps 1000"


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    return write_samples(tmp_path_factory.mktemp("samples"), [300, 90, 500], [120])


def run(samples, out, extra: str):
    args = build_parser().parse_args(pretrain_argv(samples, out, f"{TINY} {extra}"))
    return pretrain(build_config(args))


def records(out):
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return [r for r in lines if "loss" in r], [r for r in lines if "val_loss" in r]


def deterministic(record):
    return {k: v for k, v in record.items() if k not in ("elapsed_s", "samples_per_s")}


def test_a_resumed_run_matches_an_uninterrupted_one_bit_for_bit(samples, tmp_path):
    common = "--max_steps 8 --log_steps 1 --validation_steps 4"  # tiny has dropout 0.1: RNG state matters
    straight = run(samples, tmp_path / "a", common)
    first = run(samples, tmp_path / "b", common + " --exit_at_step 3")
    assert (first.stop_reason, first.step) == ("exit_at_step", 3)
    resumed = run(samples, tmp_path / "b", common + " --resume")
    assert (straight.stop_reason, straight.step, resumed.step) == ("max_steps", 8, 8)
    (steps_a, vals_a), (steps_b, vals_b) = records(tmp_path / "a"), records(tmp_path / "b")
    assert [r["step"] for r in steps_b] == list(range(1, 9))
    assert [deterministic(r) for r in steps_a] == [deterministic(r) for r in steps_b]
    assert [deterministic(r) for r in vals_a] == [deterministic(r) for r in vals_b]
    model_a, model_b = (load_model_folder(p / "model").state_dict() for p in (tmp_path / "a", tmp_path / "b"))
    assert all(torch.equal(model_a[k], model_b[k]) for k in model_a)


def test_metrics_checkpoints_and_the_exported_model(samples, tmp_path):
    result = run(
        samples,
        tmp_path / "r",
        "--max_steps 6 --log_steps 2 --validation_steps 3 --checkpoint_steps 2 --keep_checkpoints 2",
    )
    steps, vals = records(tmp_path / "r")
    assert [r["step"] for r in steps] == [2, 4, 6] and [r["step"] for r in vals] == [3, 6]
    assert set(steps[0]) == {
        "step",
        "samples",
        "loss",
        "lr",
        "grad_norm",
        "loss_scale",
        "samples_per_s",
        "elapsed_s",
        "epoch",
    }
    assert steps[-1]["samples"] == 6 * 16 and steps[0]["grad_norm"] > 0 and steps[0]["loss_scale"] is None
    assert 0 <= vals[0]["val_mlm_acc"] <= 1 and vals[0]["val_samples"] == 120
    assert vals[-1]["val_loss"] == result.val_loss
    checkpoints = tmp_path / "r" / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["latest", "step00000004", "step00000006"]
    assert (checkpoints / "latest").read_text().strip() == "step00000006"
    assert result.model_dir == tmp_path / "r" / "model"
    assert (result.model_dir / "vocab.txt").read_bytes() == (samples / "vocab.txt").read_bytes()
    classifier = load_model_folder(result.model_dir, task="sequence-classification", num_labels=3)
    assert classifier.config.vocab_size == 1024 and classifier.config.hidden_size == 64
    run_config = json.loads((tmp_path / "r" / "run_config.json").read_text())
    assert run_config["deepspeed"]["gradient_accumulation_steps"] == 2 and run_config["precision"] == "fp32"
    weights = (result.model_dir / "model.safetensors").read_bytes()
    shutil.rmtree(result.model_dir)
    exported = run(samples, tmp_path / "r", "--max_steps 6 --export_only")
    assert exported.stop_reason == "export_only" and exported.step == 6
    assert (result.model_dir / "model.safetensors").read_bytes() == weights


def test_wandb_mirrors_the_metrics_offline_despite_credentials(samples, tmp_path, monkeypatch):
    set_wandb_credentials(monkeypatch, tmp_path)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    fake = install_fake_wandb(monkeypatch)
    run(samples, tmp_path / "r", "--max_steps 2 --log_steps 1 --validation_steps 2 --wandb")
    lines = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert fake.modes == ["offline"] and fake.runs[0].finished
    assert fake.runs[0].logged == [
        (r["step"], {k: v for k, v in r.items() if k != "step" and v is not None}) for r in lines
    ]


def test_a_failed_online_wandb_start_falls_back_to_offline_and_resumes_the_run(samples, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "online")
    fake = install_fake_wandb(monkeypatch, fail_online=True)
    assert run(samples, tmp_path / "r", "--max_steps 2 --wandb").step == 2
    assert fake.modes == ["online", "offline"] and fake.runs[0].logged
    assert run(samples, tmp_path / "r", "--max_steps 3 --wandb --resume").step == 3
    assert fake.modes[2:] == ["online", "offline"]
    assert (fake.inits[-1]["id"], fake.inits[-1]["resume"]) == (fake.runs[0].id, "allow")


def test_the_time_budget_stops_with_a_checkpoint_that_resumes(samples, tmp_path):
    out = tmp_path / "r"
    first = run(samples, out, "--max_steps 100000 --total_training_time 0.0003 --finetune_time_markers 0.5")  # ~1 s
    assert first.stop_reason == "time_budget" and first.step > 0
    assert first.checkpoint == out / "checkpoints" / f"step{first.step:08d}"
    assert (out / "checkpoints" / "latest").read_text().strip() == first.checkpoint.name
    assert (first.model_dir / "config.json").exists()
    [marker_export] = (out / "exports").iterdir()  # at half the budget
    assert (marker_export / "model.safetensors").exists() and marker_export.name <= first.checkpoint.name
    more = run(samples, out, f"--max_steps 100000 --total_training_time 1 --resume --exit_at_step {first.step + 2}")
    assert (more.stop_reason, more.step) == ("exit_at_step", first.step + 2)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_after_the_step_with_a_checkpoint(samples, tmp_path, signum):
    out, done = tmp_path / "r", threading.Event()

    def send_when_training():
        metrics = out / "metrics.jsonl"
        while not done.is_set():
            if metrics.exists() and len(metrics.read_text().splitlines()) >= 2:
                os.kill(os.getpid(), signum)
                return
            time.sleep(0.02)

    sender = threading.Thread(target=send_when_training, daemon=True)
    sender.start()
    try:
        result = run(samples, out, "--max_steps 100000 --exit_at_step 400 --log_steps 1")
    finally:
        done.set()
        sender.join()
    assert result.stop_reason == signum.name and result.exit_status == 128 + signum
    assert 2 <= result.step < 400 and result.model_dir is None
    assert (out / "checkpoints" / "latest").read_text().strip() == f"step{result.step:08d}"
    assert signal.getsignal(signum) is not None and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_a_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(samples, tmp_path, monkeypatch, capsys):
    from sharebert.trainer.pretrain.engine import TrainingEngine

    original, calls = TrainingEngine.forward_backward, []

    def poisoned(self, inputs):
        calls.append(1)
        loss = original(self, inputs)
        return loss * float("nan") if len(calls) == 7 else loss  # step 4's first micro-batch

    monkeypatch.setattr(TrainingEngine, "forward_backward", poisoned)
    out = tmp_path / "r"
    status = main(pretrain_argv(samples, out, f"{TINY} --max_steps 10 --checkpoint_steps 2"))
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert status == 2
    assert "non-finite loss nan at step 4 (fp32)" in err and "step00000002" in err
    assert (out / "checkpoints" / "latest").read_text().strip() == "step00000002"
    assert not (out / "model").exists()


def test_reference_epochs_map_to_steps_for_validation_and_checkpoints(samples, tmp_path):
    # Train files of 300, 90 and 500 rows at 8 x 2 samples per rank and step: a reference epoch is 19 steps.
    run(
        samples,
        tmp_path / "r",
        "--max_steps 80 --log_steps 100 --do_validation --validation_epochs 3 "
        "--validation_epochs_begin 1 --validation_begin_proportion 0.3 "
        "--validation_epochs_end 1 --validation_end_proportion 0.1 "
        "--num_epochs_between_checkpoints 2 --keep_checkpoints 5",
    )
    assert json.loads((tmp_path / "r" / "run_config.json").read_text())["shard_epoch_steps"] == 19
    _, vals = records(tmp_path / "r")
    # 19: first stage (every epoch); 38, 57: middle (every 3rd epoch, not due); 76: last 10%; 80: the end.
    assert [v["step"] for v in vals] == [19, 76, 80]
    tags = sorted(p.name for p in (tmp_path / "r" / "checkpoints").iterdir() if p.is_dir())
    assert tags == ["step00000038", "step00000076", "step00000080"]
