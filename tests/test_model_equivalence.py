"""The fast model against the plain implementation of its definition (tests/reference_sharebert.py)."""

from __future__ import annotations

import pytest
import reference_sharebert as plain
import torch

from sharebert.trainer.model.modeling import ShareBertConfig, ShareBertForMaskedLM, ShareBertForSequenceClassification

V = 1000  # small vocabulary: every carved matrix then spans several columns of E (g=5, gf=9 for tiny)
B, S = 3, 16


def tiny(**overrides) -> ShareBertConfig:
    return ShareBertConfig.from_preset(
        "tiny", vocab_size=V, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, **overrides
    )


def randomize(model, scale=0.1, seed=0):
    """Move every weight away from its init (so biases, norms and the carving all matter)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * scale)
    return model


def inputs(padded: bool, seed=0):
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, V, (B, S), generator=gen)
    types = (torch.arange(S) >= S // 2).long().expand(B, S).clone()
    mask = torch.ones(B, S, dtype=torch.long)
    if padded:
        mask[1, 10:] = 0
        mask[2, 5:] = 0
    positions = torch.tensor([[1, 4, 7, 0], [2, 3, 9, 0], [1, 3, 0, 0]])
    labels = torch.randint(5, V, positions.shape, generator=gen)
    return dict(
        input_ids=ids,
        token_type_ids=types,
        attention_mask=mask if padded else None,
        masked_lm_positions=positions,
        labels=labels,
    )


def relative_error(a, b) -> float:
    return ((a - b).norm() / b.norm()).item()


def gradients(model, loss):
    model.zero_grad()
    loss.backward()
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def assert_same_gradients(fast, ref, rtol):
    assert fast.keys() == ref.keys()
    scale = torch.cat([g.flatten() for g in ref.values()]).norm()
    for name, g in ref.items():
        if name.endswith("key_bias"):
            # Exactly zero in exact arithmetic (softmax is shift-invariant), so both are rounding noise.
            assert fast[name].norm() <= rtol * scale and g.norm() <= rtol * scale, name
        else:
            assert relative_error(fast[name], g) < rtol, name


@pytest.mark.parametrize("ln_mode", ["pre-ln", "post-ln"])
@pytest.mark.parametrize("padded", [False, True])
def test_masked_lm_matches_plain_implementation(ln_mode, padded):
    model = randomize(ShareBertForMaskedLM(tiny(encoder_ln_mode=ln_mode), seed=1)).eval()
    batch = inputs(padded)
    out = model(**batch)
    fast_grads = gradients(model, out.loss)
    ref_loss, ref_logits = plain.masked_lm(dict(model.named_parameters()), model.config, **batch)
    assert out.logits.shape == (B, 4, V)
    assert relative_error(out.logits, ref_logits) < 1e-5
    assert relative_error(out.loss, ref_loss) < 1e-5
    assert_same_gradients(fast_grads, gradients(model, ref_loss), rtol=1e-5)
    # Every parameter gets a gradient except the unused decoder bias, the pooler (no NSP) and, post-LN, the
    # final LayerNorm (the reference keeps it in the checkpoint but does not apply it).
    unused = {"cls.predictions.bias", "bert.pooler.bias"}
    if ln_mode == "post-ln":
        unused |= {"bert.encoder.FinalLayerNorm.weight", "bert.encoder.FinalLayerNorm.bias"}
    assert set(dict(model.named_parameters())) - set(fast_grads) == unused


@pytest.mark.parametrize("num_labels", [1, 3])
def test_classifier_matches_plain_implementation(num_labels):
    model = randomize(ShareBertForSequenceClassification(tiny(num_labels=num_labels), seed=2)).eval()
    batch = inputs(padded=True)
    del batch["masked_lm_positions"], batch["labels"]
    # Regression targets well away from the predictions: the bias gradients are sums of residuals, and
    # residuals that cancel would make a relative comparison meaningless.
    labels = torch.tensor([2.5, -1.5, 3.0]) if num_labels == 1 else torch.tensor([0, 2, 1])
    out = model(**batch, labels=labels)
    assert out.logits.shape == (B, num_labels)
    ref_logits = plain.classify(dict(model.named_parameters()), model.config, **batch)
    if num_labels == 1:
        ref_loss = torch.nn.functional.mse_loss(ref_logits.view(-1), labels)
    else:
        ref_loss = torch.nn.functional.cross_entropy(ref_logits, labels)
    assert relative_error(out.logits, ref_logits) < 1e-5
    fast_grads = gradients(model, out.loss)
    assert "bert.pooler.bias" in fast_grads and "classifier.weight" in fast_grads
    assert_same_gradients(fast_grads, gradients(model, ref_loss), rtol=1e-5)


@pytest.mark.parametrize(
    "overrides",
    [
        dict(layer_norm_type="rms_norm", hidden_act="relu"),
        dict(sparse_mask_prediction=False, layernorm_embedding=True),
        dict(attention_scale_exponent=0.5),
    ],
)
def test_options_match_plain_implementation_in_float64(overrides):
    """In float64 the two agree to rounding noise: same function, not merely close."""
    model = randomize(ShareBertForMaskedLM(tiny(**overrides), seed=3), scale=0.3).double().eval()
    batch = inputs(padded=True)
    out = model(**batch)
    ref_loss, ref_logits = plain.masked_lm(dict(model.named_parameters()), model.config, **batch)
    assert relative_error(out.logits, ref_logits) < 1e-12
    assert_same_gradients(gradients(model, out.loss), gradients(model, ref_loss), rtol=1e-10)


def test_labels_path_equals_positions_path():
    model = randomize(ShareBertForMaskedLM(tiny(), seed=4)).eval()
    batch = inputs(padded=True)
    full_labels = torch.full((B, S), -100)
    for row in range(B):
        for slot, position in enumerate(batch["masked_lm_positions"][row].tolist()):
            if position > 0:
                full_labels[row, position] = batch["labels"][row, slot]
    by_positions = model(**batch)
    del batch["masked_lm_positions"]
    batch["labels"] = full_labels
    by_labels = model(**batch)
    used = (full_labels != -100).sum().item()
    assert by_labels.logits.shape == (used, V)
    assert torch.allclose(by_labels.loss, by_positions.loss, rtol=1e-6)
    # Unused slots (position 0) are ignored even when their label is a real token id.
    assert torch.isfinite(by_positions.loss)


def test_padded_tokens_do_not_change_real_positions():
    model = randomize(ShareBertForMaskedLM(tiny(), seed=5)).eval()
    batch = inputs(padded=True)
    del batch["masked_lm_positions"], batch["labels"]
    before = model.bert(**batch).last_hidden_state
    changed = batch["input_ids"].clone()
    pad = batch["attention_mask"] == 0
    changed[pad] = torch.randint(5, V, (int(pad.sum()),), generator=torch.Generator().manual_seed(9))
    after = model.bert(**{**batch, "input_ids": changed}).last_hidden_state
    real = ~pad
    assert not torch.equal(before[pad], after[pad])
    assert torch.allclose(before[real], after[real], rtol=0, atol=1e-6)


def test_gradients_reach_word_embeddings_through_the_carved_weights():
    model = ShareBertForMaskedLM(tiny(), seed=6)
    batch = inputs(padded=False)
    model(**batch).loss.backward()
    emb = model.bert.embeddings
    seen = torch.zeros(V, dtype=torch.bool)
    seen[batch["input_ids"].flatten()] = True
    # Rows of tokens absent from the batch learn only through E (the carved hidden-layer weights).
    # Each carved block keeps the first rows*cols elements of its V x c slice of E, i.e. its first
    # ceil(rows*cols / c) rows; rows of E below every block's cut are never used.
    layout = model.bert.layout
    rows_used = [-(-b.shape[0] * b.shape[1] // (b.stop - b.start)) for b in layout.blocks]
    row_grad = emb.word_embeddings.weight.grad.abs().sum(dim=1)
    row = torch.arange(V)
    assert (row_grad[~seen & (row < min(rows_used))] > 0).all()
    assert (row_grad[~seen & (row >= max(rows_used))] == 0).all()
    assert min(rows_used) < max(rows_used) < V  # the tiny config exercises both cases
    # Only the columns of E that hold a matrix in use get gradient (W_pool is unused without NSP); they are
    # the rows of factor_linear_all's (out, in) weight.
    pool = layout.block("pool")
    column_grad = emb.factor_linear_all.weight.grad.abs().sum(dim=1)
    assert (column_grad[pool.stop :] > 0).all() and (column_grad[: pool.stop] == 0).all()


def test_nsp_head():
    model = randomize(ShareBertForMaskedLM(tiny(nsp=True), seed=7)).eval()
    batch = inputs(padded=True)
    nsp_labels = torch.tensor([0, 1, 1])
    out = model(**batch, next_sentence_label=nsp_labels)
    params = dict(model.named_parameters())
    hidden, E = plain.encoder(
        params, model.config, batch["input_ids"], batch["token_type_ids"], batch["attention_mask"]
    )
    ref_nsp = (
        plain.pooled(params, model.config, hidden, E) @ params["cls.seq_relationship.weight"].T
        + params["cls.seq_relationship.bias"]
    )
    assert out.nsp_logits.shape == (B, 2)
    assert relative_error(out.nsp_logits, ref_nsp) < 1e-5
    assert torch.allclose(out.loss, out.mlm_loss + out.nsp_loss)
    expected = torch.nn.functional.cross_entropy(ref_nsp, nsp_labels)
    assert torch.allclose(out.nsp_loss, expected, rtol=1e-5)
