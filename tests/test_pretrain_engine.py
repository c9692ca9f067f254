"""The DeepSpeed wrapper: generated config, batch arithmetic, parameter groups, and a real step on the CPU."""

from __future__ import annotations

import json

import pytest
import torch

from sharebert.errors import ConfigError, DataError
from sharebert.trainer.model.modeling import ShareBertConfig, ShareBertForMaskedLM
from sharebert.trainer.pretrain import engine as eng

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def tiny_model(seed=0):
    return ShareBertForMaskedLM(ShareBertConfig.from_preset("tiny", vocab_size=1024), seed=seed)


def mlm_batch(generator: torch.Generator | None = None) -> dict:
    """A masked-LM micro-batch for tiny_model: 4 random sequences of 16 tokens, positions 1 and 2 masked."""
    ids = torch.randint(5, 1024, (4, 16), generator=generator)
    return {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "token_type_ids": torch.zeros_like(ids),
        "masked_lm_positions": torch.tensor([[1, 2]] * 4),
        "labels": ids[:, 1:3].clone(),
    }


def test_accumulation_is_derived_and_a_mismatch_names_the_numbers():
    assert eng.accumulation_steps(4000, 250, 1) == 16
    assert eng.accumulation_steps(4000, 250, 4) == 4
    with pytest.raises(ConfigError, match=r"train_batch_size=4000 is not a multiple of .*=250 x world size 3"):
        eng.accumulation_steps(4000, 250, 3)
    with pytest.raises(
        ConfigError,
        match=r"train_batch_size=4000 is not .*250 x gradient_accumulation_steps=8 x "
        r"world size 1 \(= 2000\)",
    ):
        eng.accumulation_steps(4000, 250, 1, given=8)


def test_deepspeed_config_is_generated_and_a_file_overrides_it(tmp_path):
    cfg = eng.EngineConfig(train_batch_size=64, micro_batch_size=8, gradient_clipping=0.5, zero_stage=1)
    ds = eng.deepspeed_config(cfg, world_size=2, precision="fp16")
    assert ds["gradient_accumulation_steps"] == 4 and ds["zero_optimization"] == {"stage": 1}
    assert ds["fp16"]["enabled"] and ds["fp16"]["loss_scale"] == 0  # dynamic loss scaling
    assert "bf16" not in ds and ds["gradient_clipping"] == 0.5
    override = tmp_path / "ds.json"
    override.write_text(json.dumps({"train_micro_batch_size_per_gpu": 16, "zero_optimization": {"stage": 2}}))
    ds = eng.deepspeed_config(
        eng.EngineConfig(train_batch_size=64, micro_batch_size=8, deepspeed_config=override),
        world_size=1,
        precision="fp32",
    )
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


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(lr=0.0),
        dict(adam_beta2=1.0),
        dict(zero_stage=3),
        dict(precision="fp8"),
        dict(train_batch_size=0),
        dict(gradient_clipping=-1.0),
    ],
)
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
    assert {
        "bert.embeddings.word_embeddings.weight",
        "bert.embeddings.factor_linear_all.weight",
        "cls.predictions.decoder.weight",
    } <= decay_names
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
    engine = eng.TrainingEngine(
        model, eng.EngineConfig(train_batch_size=8, micro_batch_size=4, precision="fp32"), eng.LaunchEnvironment()
    )
    assert engine.accumulation_steps == 2 and engine.device.type == "cpu"
    inputs = mlm_batch()
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


def test_bf16_forward_through_the_engine_really_runs_in_bf16():
    """DeepSpeed's engine switches off an autocast entered outside it; bf16 must come from its own config."""
    model = tiny_model()
    seen = []
    model.cls.predictions.register_forward_hook(lambda mod, args, out: seen.append(out.dtype))
    engine = eng.TrainingEngine(
        model, eng.EngineConfig(train_batch_size=4, micro_batch_size=4, precision="bf16"), eng.LaunchEnvironment()
    )
    inputs = mlm_batch()
    loss = engine.forward_backward(inputs)
    engine.optimizer_step(lr=1e-3)
    assert seen == [torch.bfloat16] and torch.isfinite(loss)
    # On a GPU the engine turns an outside autocast off (it checks CUDA's autocast only, so the CPU run above
    # cannot show that): the autocast must be the engine's own.
    assert engine.ds.torch_autocast_enabled() and engine.ds.torch_autocast_dtype() == torch.bfloat16
    assert all(p.dtype == torch.float32 and p.grad is None for p in engine.module.parameters())  # fp32 master weights
    with engine.autocast():  # calls of the module outside the engine (validation) autocast too
        engine.module(**inputs)
    assert seen[-1] == torch.bfloat16


def test_a_deepspeed_config_with_its_own_half_precision_drops_the_autocast(tmp_path):
    override = tmp_path / "ds.json"
    override.write_text(json.dumps({"bf16": {"enabled": True}}))
    cfg = eng.EngineConfig(train_batch_size=8, micro_batch_size=8)
    assert eng.deepspeed_config(cfg, 1, "bf16")["torch_autocast"]["lower_precision_safe_modules"] == []
    ds = eng.deepspeed_config(
        eng.EngineConfig(train_batch_size=8, micro_batch_size=8, deepspeed_config=override), 1, "bf16"
    )
    assert "torch_autocast" not in ds and ds["bf16"]["enabled"]


@pytest.mark.parametrize("zero_stage", [0, 1])
def test_fp16_updates_with_the_true_gradients(monkeypatch, zero_stage):
    """DeepSpeed 0.19's plain fp16 optimizer unscales gradients its backward never scaled (a 65536x shrink that
    stalls Adam); the engine scales the loss itself. Half-precision matmuls run on the CPU, so this runs here."""
    from deepspeed.accelerator import get_accelerator

    monkeypatch.setattr(type(get_accelerator()), "is_fp16_supported", lambda self: True)
    monkeypatch.setattr(eng, "resolve_precision", lambda requested, **kwargs: requested)
    config = ShareBertConfig.from_preset(
        "tiny", vocab_size=1024, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0
    )
    inputs = mlm_batch(torch.Generator().manual_seed(0))
    reference = ShareBertForMaskedLM(config, seed=0)
    reference(**inputs).loss.backward()
    true_norm = float(torch.nn.utils.get_total_norm([p.grad for p in reference.parameters() if p.grad is not None]))
    engine = eng.TrainingEngine(
        ShareBertForMaskedLM(config, seed=0),
        eng.EngineConfig(
            train_batch_size=4, micro_batch_size=4, precision="fp16", gradient_clipping=0.0, zero_stage=zero_stage
        ),
        eng.LaunchEnvironment(),
    )
    assert engine.fp16 and next(engine.module.parameters()).dtype == torch.float16
    for _ in range(20):  # the first steps overflow at scale 2^16 and lower it; skipped steps change nothing
        engine.forward_backward(inputs)
        report = engine.optimizer_step(lr=1e-3)
        if not report.skipped:
            break
    assert not report.skipped and report.loss_scale >= 1.0
    assert report.grad_norm == pytest.approx(true_norm, rel=2e-2)
    first_moments = torch.cat([s["exp_avg"].flatten() for s in engine._optimizer.state.values()])
    assert float(torch.linalg.vector_norm(first_moments)) == pytest.approx(0.1 * true_norm, rel=2e-2)  # (1-b1) g
