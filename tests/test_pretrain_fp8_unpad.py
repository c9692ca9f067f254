"""--fp8 and --unpad: which matmuls FP8 converts (run emulated on the CPU), the refusals, the flags; on a GPU of
compute capability 8.9+, FP8 learning against bf16."""

from __future__ import annotations

import json

import pytest
import torch
from samples_fixture import write_samples

from sharebert.cli import main
from sharebert.errors import ConfigError
from sharebert.trainer.model.modeling import ShareBertConfig, ShareBertForMaskedLM, SharedMatmul
from sharebert.trainer.pretrain import fp8
from sharebert.trainer.pretrain.config import EngineConfig

pytest.importorskip("torchao.float8")

V, B, S = 1000, 8, 32


def tiny() -> ShareBertConfig:
    return ShareBertConfig.from_preset("tiny", vocab_size=V, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def batch(device="cpu", seed=0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(8, S + 1, (B,), generator=gen)
    real = torch.arange(S)[None, :] < lengths[:, None]
    positions = torch.stack([torch.randperm(int(n) - 2, generator=gen)[:4] + 1 for n in lengths]).sort(1).values
    out = dict(
        input_ids=torch.randint(5, V, (B, S), generator=gen).masked_fill(~real, 0),
        attention_mask=real.long(),
        masked_lm_positions=positions,
        labels=torch.randint(5, V, positions.shape, generator=gen),
    )
    return {k: v.to(device) for k, v in out.items()}


@pytest.mark.parametrize("recipe", ["tensorwise", "rowwise"])
def test_only_the_shared_layer_matmuls_are_converted(recipe):
    model = ShareBertForMaskedLM(tiny(), seed=0)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    converted = fp8.convert_to_float8(model, recipe, emulate=True)
    assert converted == [f"bert.encoder.layer.{i}.matmul" for i in range(model.config.num_hidden_layers)]
    assert not any(isinstance(m, SharedMatmul) for m in model.modules())
    assert model.state_dict().keys() == state.keys()  # no parameter added, renamed or cast
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights stay fp32
    assert isinstance(model.bert.embeddings.factor_linear_all, torch.nn.Linear)  # the carving is not converted
    assert type(model.cls.predictions.decoder) is torch.nn.Linear
    assert not model.bert.encoder.layer[0].matmul.config.pad_inner_dim


def test_unpadded_batches_pad_the_fp8_inner_dimension():
    """--unpad makes the token count (the weight gradient GEMM's inner dimension) any number: torch._scaled_mm
    needs multiples of 16, so the FP8 matmuls are told to pad it."""
    from sharebert.trainer.pretrain.stage import apply_speedups

    model = ShareBertForMaskedLM(tiny(), seed=0)
    apply_speedups(model, EngineConfig(fp8=True, unpad=True, fp8_recipe="rowwise"))
    assert model.bert.unpad
    configs = [layer.matmul.config for layer in model.bert.encoder.layer]
    assert all(c.pad_inner_dim and not c.emulate for c in configs)


@pytest.mark.parametrize("unpad", [False, True])
def test_emulated_fp8_learns_like_fp32(unpad):
    """The FP8 casts (computed in fp32 by torchao's emulation) change the loss by little, and gradients still
    reach the embedding through the carving."""
    reference = ShareBertForMaskedLM(tiny(), seed=0)
    model = ShareBertForMaskedLM(tiny(), seed=0)
    fp8.convert_to_float8(model, "tensorwise", emulate=True)
    model.set_unpad(unpad)
    inputs = batch()
    expected, loss = reference(**inputs).loss, model(**inputs).loss
    assert loss != expected  # the casts did something
    assert abs(loss.item() - expected.item()) < 0.01 * expected.item()
    loss.backward()
    grad = model.bert.embeddings.word_embeddings.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_refused_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"--fp8 needs a CUDA GPU with FP8 tensor cores \(compute capability 8.9"):
        fp8.check_fp8_supported()


def test_refused_on_an_older_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (8, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA A100")
    with pytest.raises(ConfigError, match=r"compute capability 8.9 or newer .*NVIDIA A100 is 8.0: drop --fp8"):
        fp8.check_fp8_supported()


def test_refused_without_torchao(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_torchao(name, *args, **kwargs):
        if name.startswith("torchao"):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (9, 0))
    monkeypatch.setattr(builtins, "__import__", no_torchao)
    with pytest.raises(ConfigError, match=r"--fp8 needs torchao .*pip install 'sharebert\[fp8\]'"):
        fp8.check_fp8_supported()


def test_config_validation():
    assert EngineConfig(fp8=True).fp8_recipe == "tensorwise"
    EngineConfig(fp8=True, precision="bf16", fp8_recipe="rowwise")
    for precision in ("fp16", "fp32"):
        with pytest.raises(ConfigError, match=f"--fp8 runs beside bf16 autocast, not --{precision}"):
            EngineConfig(fp8=True, precision=precision)
    with pytest.raises(ConfigError, match="fp8_recipe='blockwise' must be one of tensorwise, rowwise"):
        EngineConfig(fp8_recipe="blockwise")


def test_command_line_refuses_fp8_on_this_machine_in_one_line(tmp_path, capsys, monkeypatch):
    samples_dir = write_samples(tmp_path / "samples")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    argv = ["pretrain", "--dataset_path", str(samples_dir), "--output_dir", str(tmp_path / "r"), "--preset", "tiny"]
    status = main([*argv, "--fp8"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert err == [
        "sharebert pretrain: error: --fp8 needs a CUDA GPU with FP8 tensor cores (compute capability 8.9+: "
        "Ada, Hopper or newer); none is available here"
    ]
    assert not (tmp_path / "r").exists()


def test_flags_reach_the_config():
    from sharebert.cli import build_parser
    from sharebert.trainer.pretrain.cli import build_config

    args = build_parser().parse_args(
        ["pretrain", "--dataset_path", "s", "--output_dir", "r", "--fp8", "--fp8-recipe", "rowwise", "--unpad"]
    )
    engine = build_config(args).engine
    assert (engine.fp8, engine.fp8_recipe, engine.unpad) == (True, "rowwise", True)
    engine = build_config(build_parser().parse_args(["pretrain", "--dataset_path", "s", "--output_dir", "r"])).engine
    assert (engine.fp8, engine.fp8_recipe, engine.unpad) == (False, "tensorwise", False)


def _losses(tmp_path, samples, name: str, *flags: str) -> list[float]:
    out = tmp_path / name
    argv = ["pretrain", "--dataset_path", str(samples), "--output_dir", str(out), *LOOP_FLAGS, *flags, "-q"]
    assert main(argv) == 0
    return [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]


LOOP_FLAGS = [
    "--preset", "tiny", "--fp32", "--seed", "1", "--train_batch_size", "16", "--train_micro_batch_size_per_gpu", "8",
    "--max_steps", "4", "--log_steps", "1", "--checkpoint_steps", "1000", "--finetune_checkpoint_at_end", "false",
    "--hidden_dropout_prob", "0", "--attention_probs_dropout_prob", "0",
]  # fmt: skip


@pytest.mark.usefixtures("torch_one_thread")
def test_unpadded_training_loop_matches_the_padded_one(tmp_path):
    """`sharebert pretrain --unpad` on padded samples (without dropout, whose draws differ): the same losses."""
    samples = write_samples(tmp_path / "samples", train_rows=[64], test_rows=[16])
    padded = _losses(tmp_path, samples, "padded")
    unpadded = _losses(tmp_path, samples, "unpadded", "--unpad")
    assert len(padded) == 4 and padded[0] != padded[-1]
    assert unpadded == pytest.approx(padded, rel=1e-5)


def _fp8_gpu() -> bool:
    return torch.cuda.is_available() and torch.cuda.get_device_capability() >= fp8.MIN_CAPABILITY


@pytest.mark.skipif(not _fp8_gpu(), reason="needs a CUDA GPU of compute capability 8.9+")
@pytest.mark.parametrize("recipe", ["tensorwise", "rowwise"])
def test_fp8_training_follows_bf16_on_the_gpu(recipe):
    """Small (H 2048, I 4096, 4 layers), 60 AdamW steps on fixed random batches: FP8's final loss within 1% of
    bf16's (both bf16 autocast, fp32 master weights)."""
    cfg = ShareBertConfig.from_preset("small", num_hidden_layers=4)
    losses = {}
    for name in ("bf16", "fp8"):
        model = ShareBertForMaskedLM(cfg, seed=0, device="cuda").train()
        if name == "fp8":
            fp8.convert_to_float8(model, recipe)
        optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4, betas=(0.9, 0.98), eps=1e-6, fused=True)
        batches = [_gpu_batch(cfg, seed) for seed in range(4)]
        for step in range(60):
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = model(**batches[step % 4]).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        losses[name] = loss.item()
    assert abs(losses["fp8"] - losses["bf16"]) <= 0.01 * losses["bf16"], losses


def _gpu_batch(cfg: ShareBertConfig, seed: int) -> dict:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 2000, (64, 128), generator=gen)  # a small active vocabulary: learnable in 60 steps
    positions = torch.stack([torch.randperm(126, generator=gen)[:20] + 1 for _ in range(64)]).sort(1).values
    labels = torch.gather(ids, 1, positions)
    masked = ids.scatter(1, positions, 103)
    out = dict(input_ids=masked, masked_lm_positions=positions, labels=labels)
    return {k: v.cuda() for k, v in out.items()}


@pytest.mark.skipif(not _fp8_gpu(), reason="needs a CUDA GPU of compute capability 8.9+")
@pytest.mark.parametrize("recipe", ["tensorwise", "rowwise"])
def test_fp8_with_unpadded_batches_on_the_gpu(recipe):
    """Compiled, FP8 with unpadded batches whose token counts (the weight gradients' inner dimension) change and
    are not multiples of 16: close to bf16 every time."""
    model = ShareBertForMaskedLM(tiny(), seed=0, device="cuda")
    batches = [batch("cuda", seed) for seed in range(3)]
    counts = [int(b["attention_mask"].sum()) for b in batches]
    assert len(set(counts)) == 3 and all(n % 16 for n in counts)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        expected = [model(**b).loss.item() for b in batches]
    fp8.convert_to_float8(model, recipe, pad_inner_dim=True)
    model.set_unpad(True)
    compiled = torch.compile(model)
    for inputs, bf16_loss in zip(batches, expected):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = compiled(**inputs).loss
        loss.backward()
        assert abs(loss.item() - bf16_loss) < 0.02 * bf16_loss
    assert torch.isfinite(model.bert.embeddings.word_embeddings.weight.grad).all()
