"""A deliberately plain ShareBERT, written line by line from the model's definition (docs/model.md).

No fusion, no caching: the virtual matrix E is computed in full, every layer slices its weights out of
it again, attention is an explicit softmax. It works on a dict {reference key name: tensor}, so it runs
on the parameters of a fast model (`dict(model.named_parameters())`) and the tests can compare outputs
and gradients. bench/model.py times it as the baseline.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

EPS = 1e-5


def layer_norm(x, params, name):
    if name + ".scale" in params:  # the reference's RMSNorm
        rms = x.norm(2, dim=-1, keepdim=True) * x.shape[-1] ** -0.5
        return params[name + ".scale"] * (x / (rms + EPS))
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + EPS) * params[name + ".weight"] + params[name + ".bias"]


def gelu(x):
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def virtual_matrix(p):
    """E = Linear_all(word_embeddings.weight): V x H."""
    return (
        p["bert.embeddings.word_embeddings.weight"] @ p["bert.embeddings.factor_linear_all.weight"].T
        + p["bert.embeddings.factor_linear_all.bias"]
    )


def carve(E, cfg, which):
    """Columns counted from the right end of E, flattened row-major, tail dropped, reshaped."""
    V, H, I = cfg.vocab_size, cfg.hidden_size, cfg.intermediate_size
    n = H
    g = math.ceil(H * H / V)
    gf = math.ceil(H * I / V)
    columns = {
        "q": (n - g, n),
        "k": (n - 2 * g, n - g),
        "v": (n - 3 * g, n - 2 * g),
        "ff1": (n - 3 * g - gf, n - 3 * g),
        "ff2": (n - 3 * g - 2 * gf, n - 3 * g - gf),
        "o": (n - 4 * g - 2 * gf, n - 3 * g - 2 * gf),
        "pool": (n - 5 * g - 2 * gf, n - 4 * g - 2 * gf),
    }
    shape = {"ff1": (H, I), "ff2": (I, H)}.get(which, (H, H))
    start, stop = columns[which]
    flat = E[:, start:stop].flatten()
    return flat[: shape[0] * shape[1]].reshape(shape)


def embeddings(p, cfg, input_ids, token_type_ids, training):
    B, S = input_ids.shape
    if token_type_ids is None:
        token_type_ids = torch.zeros_like(input_ids)
    x = p["bert.embeddings.word_embeddings.weight"][input_ids]
    x = layer_norm(x, p, "bert.embeddings.pre_factor_norm")
    x = x @ p["bert.embeddings.factor_linear.weight"].T + p["bert.embeddings.factor_linear.bias"]
    x = layer_norm(x, p, "bert.embeddings.pos_factor_norm")
    positions = torch.arange(S, device=input_ids.device)
    x = (
        x
        + p["bert.embeddings.position_embeddings.weight"][positions]
        + p["bert.embeddings.token_type_embeddings.weight"][token_type_ids]
    )
    if cfg.layernorm_embedding:
        x = layer_norm(x, p, "bert.embeddings.LayerNorm")
    return F.dropout(x, cfg.hidden_dropout_prob, training)


def attention(p, cfg, E, x, attention_mask, n, training):
    B, S, H = x.shape
    A = cfg.num_attention_heads
    d = H // A
    pre = f"bert.encoder.layer.{n}.block."
    q = x @ carve(E, cfg, "q") + p[pre + "self.query_bias"]
    k = x @ carve(E, cfg, "k") + p[pre + "self.key_bias"]
    v = x @ carve(E, cfg, "v") + p[pre + "self.value_bias"]
    q, k, v = (t.view(B, S, A, d).permute(0, 2, 1, 3) for t in (q, k, v))
    scores = q @ k.transpose(-1, -2) / d**cfg.attention_scale_exponent
    if attention_mask is not None:
        scores = scores + (1.0 - attention_mask[:, None, None, :].to(scores.dtype)) * -10000.0
    probs = torch.softmax(scores, dim=-1)
    probs = F.dropout(probs, cfg.attention_probs_dropout_prob, training)
    ctx = (probs @ v).permute(0, 2, 1, 3).reshape(B, S, H)
    out = ctx @ carve(E, cfg, "o") + p[pre + "output.bias"]
    return F.dropout(out, cfg.hidden_dropout_prob, training)


def feed_forward(p, cfg, E, x, n, training):
    pre = f"bert.encoder.layer.{n}."
    act = {"gelu": gelu, "relu": torch.relu, "swish": F.silu, "silu": F.silu, "tanh": torch.tanh}[cfg.hidden_act]
    h = act(x @ carve(E, cfg, "ff1") + p[pre + "intermediate.bias"])
    out = h @ carve(E, cfg, "ff2") + p[pre + "output.bias"]
    return F.dropout(out, cfg.hidden_dropout_prob, training)


def encoder(p, cfg, input_ids, token_type_ids=None, attention_mask=None, training=False):
    """(final hidden states [B, S, H], E)."""
    E = virtual_matrix(p)
    x = embeddings(p, cfg, input_ids, token_type_ids, training)
    for n in range(cfg.num_hidden_layers):
        ln1, ln2 = f"bert.encoder.layer.{n}.PreAttentionLayerNorm", f"bert.encoder.layer.{n}.PostAttentionLayerNorm"
        if cfg.encoder_ln_mode == "pre-ln":
            x = x + attention(p, cfg, E, layer_norm(x, p, ln1), attention_mask, n, training)
            x = x + feed_forward(p, cfg, E, layer_norm(x, p, ln2), n, training)
        else:
            x = layer_norm(x + attention(p, cfg, E, x, attention_mask, n, training), p, ln1)
            x = layer_norm(x + feed_forward(p, cfg, E, x, n, training), p, ln2)
    if cfg.encoder_ln_mode == "pre-ln":
        x = layer_norm(x, p, "bert.encoder.FinalLayerNorm")
    return x, E


def pooled(p, cfg, hidden, E):
    return hidden[:, 0] @ carve(E, cfg, "pool") + p["bert.pooler.bias"]


def mlm_logits(p, cfg, hidden):
    act = {"gelu": gelu, "relu": torch.relu, "swish": F.silu, "silu": F.silu, "tanh": torch.tanh}[cfg.hidden_act]
    pre = "cls.predictions."
    h = act(hidden @ p[pre + "transform.dense_act.weight"].T + p[pre + "transform.dense_act.bias"])
    h = layer_norm(h, p, pre + "transform.LayerNorm")
    logits = h @ p[pre + "decoder.weight"].T
    if not cfg.sparse_mask_prediction:
        logits = logits + p[pre + "bias"]
    return logits


def masked_lm(p, cfg, input_ids, token_type_ids, attention_mask, masked_lm_positions, labels, training=False):
    """(loss, logits [B, M, V]) for the static-shape positions path."""
    hidden, _ = encoder(p, cfg, input_ids, token_type_ids, attention_mask, training)
    rows = torch.arange(input_ids.shape[0])[:, None]
    logits = mlm_logits(p, cfg, hidden[rows, masked_lm_positions])
    used = (masked_lm_positions > 0) & (labels != -100)
    loss = F.cross_entropy(logits[used], labels[used])
    return loss, logits


def classify(p, cfg, input_ids, token_type_ids, attention_mask, training=False):
    hidden, E = encoder(p, cfg, input_ids, token_type_ids, attention_mask, training)
    x = F.dropout(pooled(p, cfg, hidden, E), cfg.hidden_dropout_prob, training)
    return x @ p["classifier.weight"].T + p["classifier.bias"]


class PlainMaskedLM(nn.Module):
    """The plain implementation running on the parameters of a fast ShareBertForMaskedLM (for bench/)."""

    def __init__(self, fast_model):
        super().__init__()
        self.fast = fast_model
        self.config = fast_model.config

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, masked_lm_positions=None, labels=None):
        params = dict(self.fast.named_parameters())
        loss, logits = masked_lm(
            params, self.config, input_ids, token_type_ids, attention_mask, masked_lm_positions, labels, self.training
        )
        return loss, logits
