"""The fine-tuning loop on the CPU: it learns, it is reproducible, it resumes, it loads both folder kinds."""

import json

import numpy as np
import pytest
import torch
from finetune_fixtures import VOCAB_SIZE, sentiment_examples, similarity_examples, write_task, write_vocab

from sharebert.errors import ShareBertError
from sharebert.trainer.finetune import stage as ft
from sharebert.trainer.finetune.glue import GLUE_TASKS
from sharebert.trainer.model.modeling import ShareBertConfig, ShareBertForMaskedLM, load_model_folder, save_model_folder

LR = 3e-3  # a randomly initialized tiny model needs a larger step than a pretrained one (5e-5)


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _unlabelled(examples):
    return [(a, b) for a, b, _ in examples]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A `sharebert pretrain`-style folder (MLM model) and small SST-2 / STS-B style tasks."""
    root = tmp_path_factory.mktemp("finetune")
    vocab = write_vocab(root / "vocab.txt")
    config = ShareBertConfig.from_preset("tiny", vocab_size=VOCAB_SIZE)
    save_model_folder(ShareBertForMaskedLM(config, seed=0), root / "pretrained", vocab)
    rng = np.random.default_rng(0)
    write_task(
        root / "glue",
        "sst2",
        sentiment_examples(rng, 640),
        sentiment_examples(rng, 200),
        _unlabelled(sentiment_examples(rng, 30)),
    )
    write_task(
        root / "glue",
        "stsb",
        similarity_examples(rng, 480),
        similarity_examples(rng, 120),
        _unlabelled(similarity_examples(rng, 25)),
    )
    return root


def _config(root, out, tasks=("sst2",), model=None, **overrides):
    """Settings for fine-tuning `model` (default: the workspace's pretrained one) on the workspace's tasks."""
    settings = dict(per_device_train_batch_size=32, learning_rate=LR, warmup_steps=10, eval_steps=25, seeds=[1])
    settings.update(overrides)
    return ft.FinetuneConfig(model or root / "pretrained", out, list(tasks), data_dir=root / "glue", **settings)


@pytest.fixture(scope="module")
def sst2_run(workspace):
    out = workspace / "sst2-run"
    return out, ft.finetune(_config(workspace, out))


def test_learns_a_classification_task(sst2_run):
    out, report = sst2_run
    run = report["tasks"]["sst2"]["runs"][0]
    assert run["total_steps"] == 100  # 640 examples / 32 = 20 steps per epoch, 5 epochs (the default)
    assert [h["step"] for h in run["history"]] == [25, 50, 75, 100]
    best = max(h["score"] for h in run["history"])
    assert run["best_step"] == next(h["step"] for h in run["history"] if h["score"] == best)
    assert run["metrics"]["validation"]["accuracy"] == pytest.approx(best)
    assert best > 0.75, run["history"]  # chance is 0.5, the majority class about 0.55


def test_outputs_of_a_run(sst2_run):
    out, report = sst2_run
    assert json.loads((out / "eval_results.json").read_text()) == json.loads(json.dumps(report))
    summary = (out / "summary.md").read_text()
    assert "| SST-2 | acc " in summary and "GLUE average" in summary
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {r["event"] for r in records} == {"train", "eval", "final"}
    assert [r["step"] for r in records if r["event"] == "eval"] == [25, 50, 75, 100]
    lines = (out / "submission" / "SST-2.tsv").read_text().splitlines()
    assert lines[0] == "index\tprediction" and len(lines) == 31
    assert {line.split("\t")[1] for line in lines[1:]} <= {"0", "1"}
    assert (out / "sst2" / "seed-1" / "predictions" / "SST-2.tsv").read_bytes() == (
        out / "submission" / "SST-2.tsv"
    ).read_bytes()
    assert not (out / "sst2" / "seed-1" / "checkpoint.pt").exists()
    tokenizer_config = json.loads((out / "sst2" / "seed-1" / "model" / "tokenizer_config.json").read_text())
    assert tokenizer_config["do_lower_case"] is True  # the casing travels with the fine-tuned weights
    assert tokenizer_config["tokenizer_class"] == "BertTokenizer"
    assert not list(out.rglob(".*.part"))


def test_best_checkpoint_is_a_classifier_folder(sst2_run, workspace):
    out, report = sst2_run
    folder = out / "sst2" / "seed-1" / "model"
    from safetensors.torch import load_file

    keys = load_file(str(folder / "model.safetensors")).keys()
    assert "classifier.weight" in keys and not any(k.startswith("cls.") for k in keys)  # MLM head dropped
    assert (folder / "vocab.txt").read_bytes() == (workspace / "vocab.txt").read_bytes()
    # Evaluating the saved folder alone reproduces the reported dev accuracy.
    again = ft.finetune(
        ft.FinetuneConfig(
            folder, workspace / "eval-only", ["sst2"], data_dir=workspace / "glue", do_train=False, do_predict=False
        )
    )
    assert again["tasks"]["sst2"]["runs"][0]["score"] == pytest.approx(report["tasks"]["sst2"]["runs"][0]["score"])


def test_regression_task_trains_with_mse(workspace):
    out = workspace / "stsb-run"
    report = ft.finetune(_config(workspace, out, tasks=("stsb",), num_train_epochs=6))
    run = report["tasks"]["stsb"]["runs"][0]
    assert load_model_folder(out / "stsb" / "seed-1" / "model", task="sequence-classification").config.num_labels == 1
    assert run["metrics"]["validation"]["pearson"] > 0.8 and run["metrics"]["validation"]["spearman"] > 0.8
    losses = [
        json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines() if '"train"' in line
    ]
    assert losses[-1] < 0.5 * losses[0]  # squared error on 0..5 scores falls
    scores = [float(line.split("\t")[1]) for line in (out / "submission" / "STS-B.tsv").read_text().splitlines()[1:]]
    assert len(scores) == 25 and all(0.0 <= s <= 5.0 for s in scores)


def test_same_seed_same_bytes_other_seed_differs(workspace):
    def run(out, seed):
        ft.finetune(_config(workspace, out, max_steps=12, eval_steps=6, seeds=[seed]))
        return (out / "submission" / "SST-2.tsv").read_bytes(), json.loads((out / "eval_results.json").read_text())

    a, ra = run(workspace / "det-a", 7)
    b, rb = run(workspace / "det-b", 7)
    c, rc = run(workspace / "det-c", 8)
    assert a == b
    assert ra["tasks"]["sst2"]["runs"] == rb["tasks"]["sst2"]["runs"]
    assert ra["tasks"]["sst2"]["runs"][0]["history"] != rc["tasks"]["sst2"]["runs"][0]["history"]


def test_interrupted_run_resumes_to_the_same_result(workspace, monkeypatch):
    settings = dict(max_steps=30, eval_steps=10, save_steps=10)
    ft.finetune(_config(workspace, workspace / "straight", **settings))

    original = ft.FineTuner.train_step

    def interrupted(self, micro_batches):
        if self.state.step == 23:
            raise KeyboardInterrupt
        return original(self, micro_batches)

    out = workspace / "resumed"
    monkeypatch.setattr(ft.FineTuner, "train_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ft.finetune(_config(workspace, out, **settings))
    assert (out / "sst2" / "seed-1" / "checkpoint.pt").exists()
    assert not (out / "sst2" / "seed-1" / "result.json").exists()
    monkeypatch.setattr(ft.FineTuner, "train_step", original)
    report = ft.finetune(_config(workspace, out, **settings))
    straight = json.loads((workspace / "straight" / "eval_results.json").read_text())
    assert report["tasks"]["sst2"]["runs"][0]["history"] == straight["tasks"]["sst2"]["runs"][0]["history"]
    assert (out / "submission" / "SST-2.tsv").read_bytes() == (
        workspace / "straight" / "submission" / "SST-2.tsv"
    ).read_bytes()


def test_finished_runs_are_reused_and_other_settings_refused(workspace, monkeypatch):
    out = workspace / "reuse"
    ft.finetune(_config(workspace, out, max_steps=6, eval_steps=3))
    trained = []
    original = ft.FineTuner.train
    monkeypatch.setattr(ft.FineTuner, "train", lambda self: trained.append(self.seed) or original(self))
    report = ft.finetune(_config(workspace, out, max_steps=6, eval_steps=3, seeds=[1, 2]))
    assert trained == [2]  # seed 1 was finished
    assert [r["seed"] for r in report["tasks"]["sst2"]["runs"]] == [1, 2]
    assert set(report["tasks"]["sst2"]["score"]) >= {"median", "min", "max", "std"}
    with pytest.raises(ShareBertError, match="result.json: a finished run of other settings"):
        ft.finetune(_config(workspace, out, max_steps=6, eval_steps=3, learning_rate=1e-4))
    ft.finetune(_config(workspace, out, max_steps=6, eval_steps=3, learning_rate=1e-4, overwrite_output_dir=True))
    assert trained == [2, 1]


def test_early_stopping(workspace):
    report = ft.finetune(
        _config(
            workspace,
            workspace / "early",
            learning_rate=1e-9,
            lr_scheduler_type="constant",
            max_steps=40,
            eval_steps=5,
            early_stopping_patience=2,
        )
    )
    run = report["tasks"]["sst2"]["runs"][0]
    assert run["best_step"] == 5 and run["steps"] == 15  # no gain at steps 10 and 15: stop


def test_reference_checkpoint_folder(workspace):
    """pytorch_model.bin with the reference's keys and a reference-style config.json (no safetensors)."""
    folder = workspace / "reference"
    folder.mkdir()
    config = ShareBertConfig.from_preset("tiny", vocab_size=VOCAB_SIZE)
    state = ShareBertForMaskedLM(config, seed=3).state_dict()
    torch.save(state, folder / "pytorch_model.bin")
    reference_config = {
        "architectures": ["BertForPreTraining"],
        "model_type": "bert",
        "attention_probs_dropout_prob": 0.1,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": 64,
        "initializer_range": 0.02,
        "intermediate_size": 128,
        "layer_norm_eps": 1e-12,
        "max_position_embeddings": 128,
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "type_vocab_size": 2,
        "vocab_size": VOCAB_SIZE,
        "pad_token_id": 0,
        "factor_size": 32,
        "encoder_ln_mode": "pre-ln",
        "layer_norm_type": "pytorch",
        "sparse_mask_prediction": True,
        "fused_linear_layer": True,
        "useLN": True,
        "transformers_version": "4.5.1",
        "position_embedding_type": "absolute",
        "use_cache": True,
    }
    (folder / "config.json").write_text(json.dumps(reference_config))
    (folder / "vocab.txt").write_bytes((workspace / "vocab.txt").read_bytes())
    out = workspace / "from-reference"
    settings = dict(learning_rate=1e-6, max_steps=2, warmup_steps=0, eval_steps=1, per_device_train_batch_size=8)
    ft.finetune(_config(workspace, out, model=folder, **settings))
    tuned = load_model_folder(out / "sst2" / "seed-1" / "model", task="sequence-classification")
    word = "bert.embeddings.word_embeddings.weight"
    assert torch.allclose(tuned.state_dict()[word], state[word], atol=1e-4)  # the encoder was loaded, not re-drawn


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_paths(workspace, precision):
    """The autocast and (fp16) loss-scaling code of the GPU path, exercised with the CPU's autocast."""
    from sharebert.trainer.finetune.glue import TsvSource
    from sharebert.trainer.finetune.loop import Numerics

    config = _config(workspace, workspace / "amp", max_steps=10, eval_steps=5)
    tokenizer, pad_id = ft.load_tokenizer(config)
    data = ft.load_task_data(config, GLUE_TASKS["sst2"], TsvSource(workspace / "glue"), tokenizer)
    model = load_model_folder(workspace / "pretrained", task="sequence-classification", num_labels=2, seed=1)
    before = [p.detach().clone() for p in model.parameters()]
    events = []
    log = type("Log", (), {"write": lambda self, record: events.append(record)})()
    trainer = ft.FineTuner(
        model, config, data, 1, Numerics(torch.device("cpu"), precision), pad_id, workspace / "amp", log
    )
    state = trainer.train()
    assert state.step == 10 and state.skipped_steps == 0 and (trainer.scaler is not None) == (precision == "fp16")
    assert [e["step"] for e in events if e["event"] == "eval"] == [5, 10]
    assert all(np.isfinite(e["loss"]) for e in events if e["event"] == "train")
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))  # it did update


def test_gradient_accumulation_matches_one_big_batch(workspace):
    config = _config(workspace, workspace / "unused", per_device_train_batch_size=32)
    tokenizer, pad_id = ft.load_tokenizer(config)
    from sharebert.trainer.finetune.glue import TsvSource

    data = ft.load_task_data(config, GLUE_TASKS["sst2"], TsvSource(workspace / "glue"), tokenizer)
    numerics = ft.choose_numerics("cpu", "fp32")
    rows = np.arange(32)
    params = []
    for micro in ([rows], [rows[:16], rows[16:]]):
        model = load_model_folder(workspace / "pretrained", task="sequence-classification", num_labels=2, seed=1)
        model.eval()  # no dropout: the two must match exactly up to float rounding
        trainer = ft.FineTuner(model, config, data, 1, numerics, pad_id, workspace / "unused", metrics_log=None)
        trainer.train_step(micro)
        params.append(torch.cat([p.detach().reshape(-1) for p in model.parameters()]))
    assert torch.allclose(params[0], params[1], atol=1e-6)


def test_plan_and_schedule():
    config = ft.FinetuneConfig(
        "m",
        "o",
        ["rte"],
        data_dir="d",
        per_device_train_batch_size=64,
        gradient_accumulation_steps=2,
        num_train_epochs=3,
    )
    plan = ft.make_plan(config, examples=1000, seed=5)
    assert plan.micro_batches_per_epoch == 16 and plan.steps_per_epoch == 8 and plan.total_steps == 24
    order = plan.epoch_order(0)
    assert sorted(order) == list(range(1000)) and not np.array_equal(order, plan.epoch_order(1))
    last = plan.micro_batches(7, order)
    assert [len(m) for m in last] == [64, 40]  # the epoch's last step takes the remainder
    # Hugging Face's polynomial schedule: linear warm-up from 0, then decay to lr_end.
    plan = ft.make_plan(config, examples=64 * 2 * 100, seed=5)  # 300 steps, 50 of warm-up
    assert plan.total_steps == 300
    assert ft.lr_factor(config, 0, plan) == 0.0
    assert ft.lr_factor(config, 10, plan) == pytest.approx(0.2)
    assert ft.lr_factor(config, 50, plan) == pytest.approx(1.0)
    end = config.lr_end / config.learning_rate
    assert ft.lr_factor(config, 175, plan) == pytest.approx(0.5 * (1 - end) + end)
    assert ft.lr_factor(config, 300, plan) == pytest.approx(end)
    ratio = ft.FinetuneConfig("m", "o", ["rte"], data_dir="d", warmup_steps=0, warmup_ratio=0.1, max_steps=200)
    assert ft.make_plan(ratio, examples=10, seed=1).warmup_steps == 20


def test_cpu_threads(workspace):
    config = _config(workspace, workspace / "unused")
    assert ft.cpu_threads(config) == 1  # the tiny preset (hidden 64) trains on one thread
    assert ft.cpu_threads(_config(workspace, workspace / "unused", cpu_threads=3)) == 3


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"learning_rate": 0.0}, "learning_rate=0.0 must be > 0"),
        ({"per_device_train_batch_size": 0}, "per_device_train_batch_size=0"),
        ({"lr_scheduler_type": "cosine_with_restarts"}, "lr_scheduler_type"),
        ({"seeds": [1, 1]}, "repeats a seed"),
        ({"do_train": False, "do_eval": False, "do_predict": False}, "nothing to do"),
        ({"data_dir": None}, "exactly one data source"),
    ],
)
def test_config_errors(overrides, message):
    settings = {"data_dir": "d", **overrides}
    with pytest.raises(ShareBertError, match=message):
        ft.FinetuneConfig("m", "o", ["rte"], **settings)


@pytest.mark.parametrize("damage", ["state", "model"])
def test_a_damaged_resume_checkpoint_is_one_error_naming_it(workspace, monkeypatch, damage):
    settings = dict(max_steps=12, eval_steps=5, save_steps=5)
    original = ft.FineTuner.train_step

    def interrupted(self, micro_batches):
        if self.state.step == 7:
            raise KeyboardInterrupt
        return original(self, micro_batches)

    out = workspace / f"damaged-{damage}"
    monkeypatch.setattr(ft.FineTuner, "train_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ft.finetune(_config(workspace, out, **settings))
    monkeypatch.setattr(ft.FineTuner, "train_step", original)
    checkpoint = out / "sst2" / "seed-1" / "checkpoint.pt"
    payload = torch.load(checkpoint, weights_only=True)
    payload[damage] = {"no": 1} if damage == "state" else {"unknown.weight": torch.zeros(1)}
    torch.save(payload, checkpoint)
    with pytest.raises(ShareBertError, match=r"checkpoint\.pt: a damaged resume checkpoint \((TypeError|RuntimeError)"):
        ft.finetune(_config(workspace, out, **settings))
