"""Initialization, precision, activation checkpointing and torch.compile of the ShareBERT models."""

from __future__ import annotations

import math

import pytest
import torch

from sharebert.errors import ConfigError
from sharebert.trainer.model.modeling import ShareBertConfig, ShareBertForMaskedLM, ShareBertForSequenceClassification

V, B, S = 1000, 2, 12


def tiny(**overrides) -> ShareBertConfig:
    return ShareBertConfig.from_preset("tiny", vocab_size=V, **overrides)


def batch(padded=True):
    gen = torch.Generator().manual_seed(0)
    mask = torch.ones(B, S, dtype=torch.long)
    if padded:
        mask[1, 7:] = 0
    return dict(
        input_ids=torch.randint(5, V, (B, S), generator=gen),
        token_type_ids=torch.zeros(B, S, dtype=torch.long),
        attention_mask=mask,
        masked_lm_positions=torch.tensor([[1, 3, 0], [2, 5, 6]]),
        labels=torch.randint(5, V, (B, 3), generator=gen),
    )


def test_init_is_seeded_and_leaves_the_global_rng_alone():
    state = torch.get_rng_state()
    a = ShareBertForMaskedLM(tiny(), seed=3).state_dict()
    assert torch.equal(torch.get_rng_state(), state)
    b = ShareBertForMaskedLM(tiny(), seed=3).state_dict()
    c = ShareBertForMaskedLM(tiny(), seed=4).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["bert.embeddings.word_embeddings.weight"], c["bert.embeddings.word_embeddings.weight"])


def test_init_follows_section_7():
    model = ShareBertForMaskedLM(ShareBertConfig.from_preset("tiny"), seed=0)
    p = dict(model.named_parameters())
    for name in (
        "bert.embeddings.word_embeddings.weight",
        "bert.embeddings.factor_linear_all.weight",
        "bert.embeddings.position_embeddings.weight",
        "cls.predictions.decoder.weight",
    ):
        assert p[name].mean().abs() < 0.002 and p[name].std().item() == pytest.approx(0.02, rel=0.05), name
    for name in ("bert.embeddings.factor_linear.bias", "cls.predictions.bias"):
        assert (p[name] == 0).all(), name
    for name in ("bert.encoder.FinalLayerNorm.weight", "bert.encoder.layer.1.PreAttentionLayerNorm.weight"):
        assert (p[name] == 1).all(), name
    standalone = torch.cat(
        [
            p[n].flatten()
            for n in p
            if n.startswith("bert.encoder.layer.") and n.endswith(("_bias", "intermediate.bias", "output.bias"))
        ]
        + [p["bert.pooler.bias"]]
    )
    assert standalone.std().item() == pytest.approx(1.0, rel=0.05)
    dense = p["cls.predictions.transform.dense_act.weight"]  # PyTorch's default: U(-1/sqrt(H), 1/sqrt(H))
    bound = 1 / math.sqrt(64)
    assert dense.abs().max() <= bound and dense.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.1)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_forward_and_backward(dtype):
    model = ShareBertForMaskedLM(tiny(), seed=0)
    reference = model(**batch()).loss.detach()
    with torch.autocast("cpu", dtype=dtype):
        out = model(**batch())
    assert out.logits.dtype == dtype and out.loss.dtype == torch.float32
    out.loss.backward()
    assert model.bert.embeddings.factor_linear_all.weight.grad.dtype == torch.float32
    assert torch.isclose(out.loss, reference, rtol=2e-2)


def test_low_precision_weights():
    """DeepSpeed's bf16 mode runs the model with bf16 weights (no autocast)."""
    model = ShareBertForSequenceClassification(tiny(), seed=0).to(torch.bfloat16)
    data = batch()
    del data["masked_lm_positions"], data["labels"]
    out = model(**data, labels=torch.tensor([0, 1]))
    assert out.logits.dtype == torch.bfloat16 and torch.isfinite(out.loss)


def test_activation_checkpointing_gives_the_same_gradients():
    grads = []
    for checkpointing in (False, True):
        model = ShareBertForMaskedLM(
            tiny(gradient_checkpointing=checkpointing, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0),
            seed=0,
        )
        model(**batch()).loss.backward()
        grads.append({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    assert all(torch.allclose(grads[0][k], grads[1][k], rtol=1e-5, atol=1e-7) for k in grads[0])


def test_masked_lm_and_classifier_compile_without_graph_breaks():
    torch._dynamo.reset()
    mlm = ShareBertForMaskedLM(tiny(), seed=0)
    explained = torch._dynamo.explain(mlm)(**batch())
    assert explained.graph_break_count == 0 and explained.graph_count == 1
    clf = ShareBertForSequenceClassification(tiny(num_labels=1), seed=0)
    data = batch(padded=False)
    del data["masked_lm_positions"], data["labels"]
    data["attention_mask"] = None  # the mask-free path (flash attention on a GPU)
    explained = torch._dynamo.explain(clf)(**data, labels=torch.randn(B))
    assert explained.graph_break_count == 0 and explained.graph_count == 1


def test_compiled_training_step_with_checkpointing_under_autocast():
    torch._dynamo.reset()
    model = ShareBertForMaskedLM(tiny(gradient_checkpointing=True), seed=0).train()
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = compiled(**batch()).loss
    loss.backward()
    assert torch.isfinite(loss) and model.bert.embeddings.word_embeddings.weight.grad is not None


def test_dropout_only_in_training_mode():
    model = ShareBertForMaskedLM(tiny(hidden_dropout_prob=0.5), seed=0)
    data = batch()
    model.eval()
    assert torch.equal(model(**data).logits, model(**data).logits)
    model.train()
    assert not torch.equal(model(**data).logits, model(**data).logits)


def test_sequence_longer_than_positions_is_a_config_error():
    model = ShareBertForMaskedLM(tiny(max_position_embeddings=8), seed=0)
    with pytest.raises(ConfigError, match="sequence length 12 exceeds max_position_embeddings=8"):
        model(input_ids=torch.zeros(1, 12, dtype=torch.long))


def test_unused_slots_and_empty_targets():
    model = ShareBertForMaskedLM(tiny(), seed=0).eval()
    data = batch()
    data["masked_lm_positions"] = torch.zeros(B, 3, dtype=torch.long)  # no masked token at all
    out = model(**data)
    assert out.loss.item() == 0.0 and out.logits.shape == (B, 3, V)
    del data["masked_lm_positions"], data["labels"]
    assert model(**data).logits.shape == (B, S, V)  # no labels: every position
    int_inputs = {k: v.to(torch.int32) for k, v in batch().items()}  # HDF5 dtypes work as they are
    assert torch.isfinite(model(**int_inputs).loss)
