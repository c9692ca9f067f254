"""The DeepSpeed wrapper: generated config, batch arithmetic, parameter groups, and a real step on the CPU."""

from __future__ import annotations

import json

import pytest
import torch

from sharebert.errors import ConfigError, DataError
from sharebert.trainer import engine as eng
from sharebert.trainer.model import ShareBertConfig, ShareBertForMaskedLM


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def tiny_model(seed=0):
    return ShareBertForMaskedLM(ShareBertConfig.from_preset("tiny", vocab_size=1024), seed=seed)


def test_accumulation_is_derived_and_a_mismatch_names_the_numbers():
    assert eng.accumulation_steps(4000, 250, 1) == 16
    assert eng.accumulation_steps(4000, 250, 4) == 4
    with pytest.raises(ConfigError, match=r"train_batch_size=4000 is not a multiple of .*=250 x world size 3"):
        eng.accumulation_steps(4000, 250, 3)
    with pytest.raises(ConfigError, match=r"train_batch_size=4000 is not .*250 x gradient_accumulation_steps=8 x "
                                          r"world size 1 \(= 2000\)"):
        eng.accumulation_steps(4000, 250, 1, given=8)


def test_deepspeed_config_is_generated_and_a_file_overrides_it(tmp_path):
    cfg = eng.EngineConfig(train_batch_size=64, micro_batch_size=8, gradient_clipping=0.5, zero_stage=1)
    ds = eng.deepspeed_config(cfg, world_size=2, precision="fp16")
    assert ds["gradient_accumulation_steps"] == 4 and ds["zero_optimization"] == {"stage": 1}
    assert ds["fp16"]["enabled"] and ds["fp16"]["loss_scale"] == 0  # dynamic loss scaling
    assert "bf16" not in ds and ds["gradient_clipping"] == 0.5
    override = tmp_path / "ds.json"
    override.write_text(json.dumps({"train_micro_batch_size_per_gpu": 16, "zero_optimization": {"stage": 2}}))
    ds = eng.deepspeed_config(eng.EngineConfig(train_batch_size=64, micro_batch_size=8, deepspeed_config=override),
                              world_size=1, precision="fp32")
    assert ds["train_micro_batch_size_per_gpu"] == 16 and ds["gradient_accumulation_steps"] == 4
    assert ds["zero_optimization"]["stage"] == 2


def test_a_deepspeed_config_cannot_bring_its_own_optimizer(tmp_path):
    override = tmp_path / "ds.json"
    override.write_text(json.dumps({"optimizer": {"type": "Adam"}}))
    with pytest.raises(DataError, match="ds.json: remove 'optimizer'"):
        config = eng.EngineConfig(train_batch_size=8, micro_batch_size=8, deepspeed_config=override)
        eng.deepspeed_config(config, 1, "fp32")


def test_precision_defaults_to_bf16_only_where_supported():
    assert eng.resolve_precision("auto", cuda=False) == "fp32"
    assert eng.resolve_precision("auto", cuda=True, bf16_supported=True) == "bf16"
    assert eng.resolve_precision("auto", cuda=True, bf16_supported=False) == "fp32"
    with pytest.raises(ConfigError, match="--fp16 needs a CUDA GPU"):
        eng.resolve_precision("fp16", cuda=False)


@pytest.mark.parametrize("kwargs", [dict(lr=0.0), dict(adam_beta2=1.0), dict(zero_stage=3), dict(precision="fp8"),
                                    dict(train_batch_size=0), dict(gradient_clipping=-1.0)])
def test_engine_config_rejects_bad_values(kwargs):
    with pytest.raises(ConfigError, match=next(iter(kwargs))):
        eng.EngineConfig(**kwargs)


def test_no_weight_decay_on_biases_and_layer_norms():
    model = tiny_model()
    decay, no_decay = eng.parameter_groups(model, 0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    decay_names = {names[id(p)] for p in decay["params"]}
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert "bert.encoder.layer.0.block.self.query_bias" in no_decay_names  # a standalone per-layer bias
    assert "bert.embeddings.pre_factor_norm.weight" in no_decay_names
    assert "bert.encoder.layer.1.intermediate.bias" in no_decay_names
    assert {"bert.embeddings.word_embeddings.weight", "bert.embeddings.factor_linear_all.weight",
            "cls.predictions.decoder.weight"} <= decay_names
    assert all("bias" in n or "norm" in n.lower() for n in no_decay_names)
    assert len(decay_names) + len(no_decay_names) == len(list(model.parameters()))


def test_launch_environment_comes_from_the_launcher(monkeypatch):
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert eng.LaunchEnvironment.from_env(local_rank_flag=0) == eng.LaunchEnvironment(3, 8, 1)
    monkeypatch.delenv("LOCAL_RANK")
    assert eng.LaunchEnvironment.from_env(local_rank_flag=2).local_rank == 2
    monkeypatch.setenv("RANK", "8")
    with pytest.raises(ConfigError, match="RANK=8"):
        eng.LaunchEnvironment.from_env()


def test_engine_accumulates_steps_with_the_given_lr_and_round_trips_a_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = tiny_model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    engine = eng.TrainingEngine(model, eng.EngineConfig(train_batch_size=8, micro_batch_size=4, precision="fp32"),
                                eng.LaunchEnvironment())
    assert engine.accumulation_steps == 2 and engine.device.type == "cpu"
    ids = torch.randint(5, 1024, (4, 16))
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids),
              "masked_lm_positions": torch.tensor([[1, 2]] * 4), "labels": ids[:, 1:3].clone()}
    for _ in range(2):
        loss = engine.forward_backward(inputs)
    norm = float(engine.grad_norm_tensor())
    assert torch.isfinite(loss) and norm > 0
    report = engine.optimizer_step(lr=0.0, grad_norm=norm)
    assert report.grad_norm == norm and report.loss_scale is None and not report.skipped
    assert all(torch.equal(before[n], p) for n, p in engine.module.named_parameters())  # lr 0: no change
    for _ in range(2):
        engine.forward_backward(inputs)
    engine.optimizer_step(lr=1e-2)
    changed = {n: p.detach().clone() for n, p in engine.module.named_parameters()}
    assert not torch.equal(before["cls.predictions.decoder.weight"], changed["cls.predictions.decoder.weight"])
    engine.save(tmp_path, "t", {"hello": 1})
    for _ in range(2):
        engine.forward_backward(inputs)
    engine.optimizer_step(lr=1e-2)
    assert engine.load(tmp_path, "t")["hello"] == 1
    assert all(torch.equal(changed[n], p) for n, p in engine.module.named_parameters())
    with pytest.raises(RuntimeError, match="before the last micro-batch"):
        engine.optimizer_step(lr=1e-3)  # no micro-batch since the last step
