"""The unpadded path (`set_unpad`): the layers on the real tokens only, equivalent to the padded path."""

from __future__ import annotations

import pytest
import torch

from sharebert.trainer.model.modeling import ShareBertConfig, ShareBertForMaskedLM, ShareBertForSequenceClassification

V, B, S = 1000, 4, 16
TOLERANCE = 1e-5  # relative, fp32


def config(**overrides) -> ShareBertConfig:
    return ShareBertConfig.from_preset(
        "tiny", vocab_size=V, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, **overrides
    )


def batch(seed: int = 0, nsp: bool = False) -> dict:
    """Four samples: one full, three ending in padding; four mask slots each (0 = unused)."""
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([S, 11, 6, 3])
    real = torch.arange(S)[None, :] < lengths[:, None]
    positions = torch.tensor([[1, 4, 7, 14], [2, 3, 9, 0], [1, 3, 0, 0], [1, 0, 0, 0]])
    out = dict(
        input_ids=torch.randint(5, V, (B, S), generator=gen).masked_fill(~real, 0),
        token_type_ids=((torch.arange(S)[None, :] >= lengths[:, None] // 2) & real).long(),
        attention_mask=real.long(),
        masked_lm_positions=positions,
        labels=torch.randint(5, V, positions.shape, generator=gen),
    )
    if nsp:
        out["next_sentence_label"] = torch.tensor([0, 1, 1, 0])
    return out


def randomized(model):
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.1)
    return model


def loss_and_gradients(model, inputs, unpad: bool):
    model.set_unpad(unpad)
    model.zero_grad()
    out = model(**inputs)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out, grads


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm().clamp(min=1e-30)).item()


def assert_equivalent(model, inputs) -> float:
    """Same loss, logits and gradients of every parameter (relative, fp32); returns the largest error."""
    padded, padded_grads = loss_and_gradients(model, inputs, unpad=False)
    packed, packed_grads = loss_and_gradients(model, inputs, unpad=True)
    assert padded_grads.keys() == packed_grads.keys()
    errors = [relative_error(packed.loss, padded.loss), relative_error(packed.logits, padded.logits)]
    scale = torch.cat([g.flatten() for g in padded_grads.values()]).norm()
    for name, g in padded_grads.items():
        if name.endswith("key_bias"):  # zero in exact arithmetic (softmax is shift-invariant): rounding noise
            errors.append(max(packed_grads[name].norm(), g.norm()).item() / scale.item())
        else:
            errors.append(relative_error(packed_grads[name], g))
    assert max(errors) < TOLERANCE, max(errors)
    return max(errors)


@pytest.mark.parametrize("ln_mode", ["pre-ln", "post-ln"])
def test_masked_lm_loss_and_gradients_match_the_padded_path(ln_mode):
    model = randomized(ShareBertForMaskedLM(config(encoder_ln_mode=ln_mode), seed=0))
    assert_equivalent(model, batch())


def test_masked_lm_with_nsp_matches():
    model = randomized(ShareBertForMaskedLM(config(nsp=True), seed=0))
    inputs = batch(nsp=True)
    assert_equivalent(model, inputs)
    model.set_unpad(True)
    assert model(**inputs).nsp_loss is not None


def test_hugging_face_labels_and_classifier_match():
    model = randomized(ShareBertForMaskedLM(config(), seed=0))
    inputs = batch()
    labels = torch.full((B, S), -100)
    labels[0, 3], labels[1, 10], labels[2, 5] = 7, 8, 9  # the last real token of samples 1 and 2
    hf = {k: v for k, v in inputs.items() if k not in ("masked_lm_positions", "labels")}
    assert_equivalent(model, {**hf, "labels": labels})
    classifier = randomized(ShareBertForSequenceClassification(config(num_labels=3), seed=0))
    assert_equivalent(classifier, {**hf, "labels": torch.tensor([0, 2, 1, 1])})


def test_real_positions_match_and_padding_is_zero():
    model = randomized(ShareBertForMaskedLM(config(), seed=0)).bert.eval()
    inputs = {k: v for k, v in batch().items() if k in ("input_ids", "token_type_ids", "attention_mask")}
    padded = model(**inputs).last_hidden_state
    model.set_unpad(True)
    packed = model(**inputs).last_hidden_state
    real = inputs["attention_mask"].bool()
    assert relative_error(packed[real], padded[real]) < TOLERANCE
    hidden, _ = model.encode(**inputs)  # before the final LayerNorm
    assert not hidden[~real].any()
    model.set_unpad(False)
    assert torch.equal(model(**inputs).last_hidden_state, padded)  # switching back is the padded path again


def test_without_a_mask_or_padding_it_is_the_padded_path():
    model = randomized(ShareBertForMaskedLM(config(), seed=0))
    inputs = batch()
    inputs["attention_mask"] = torch.ones(B, S, dtype=torch.long)
    assert_equivalent(model, inputs)
    model.set_unpad(True)
    no_mask = {k: v for k, v in inputs.items() if k != "attention_mask"}
    unpadded = model(**no_mask).loss
    model.set_unpad(False)
    assert torch.equal(unpadded, model(**no_mask).loss)


def test_gradient_checkpointing_and_bf16_autocast_run():
    model = randomized(ShareBertForMaskedLM(config(gradient_checkpointing=True), seed=0))
    assert_equivalent(model, batch())
    model.set_unpad(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(**batch()).loss
    loss.backward()
    assert torch.isfinite(loss)


def test_the_padded_path_does_not_change(monkeypatch):
    """With unpad off nothing of the packed path runs (the default path's numbers are the loss-curve test's)."""
    model = ShareBertForMaskedLM(config(), seed=0)
    monkeypatch.setattr(torch.Tensor, "nonzero", lambda *a, **k: pytest.fail("the packed path ran"))
    model(**batch()).loss.backward()
