"""The ShareBERT encoder and its heads (masked LM with optional NSP, sequence classification).

The hidden-layer weights are not parameters: they are carved out of a virtual matrix
E = factor_linear_all(word_embeddings.weight) (V x H) and shared by every layer (docs/specification.md sections 3-5).
Written for speed on a GPU:
  * E is computed once per forward pass, and only for the 5g + 2gf columns the carving uses; the seven
    matrices are formed once (q, k and v concatenated into one H x 3H matrix) and every layer reuses them.
    Under autocast they are formed directly in the low-precision dtype, so no layer casts weights.
  * matmuls run on [B*S, H] activations with the bias fused (addmm); attention is
    `scaled_dot_product_attention` with the spec's scale head_dim**(-2/3) and the additive -10000 padding mask
    (no mask at all when attention_mask is None, which lets the flash kernel run).
  * the masked-LM head sees only the masked positions, gathered with static shapes ([B, M] positions), and
    the final LayerNorm, being per token, is applied to those positions only.
  * no `.item()` and no branching on tensor values in forward: the models compile with fullgraph=True
    (the unpadded path below breaks the graph where it finds the real tokens).
  * optionally (`set_unpad`), the dense work skips padding: the layers' matmuls, norms and activations run on
    the real tokens only, packed as [N, H]; attention scatters them back per sequence (docs/model.md).
  * the shared matmuls go through `SharedMatmul` modules, which a caller may swap (FP8 training does).
Parameter names equal the reference implementation's state-dict keys, so `state_dict()` is directly
loadable there and reference checkpoints load here (see `load_model_folder`).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ...errors import ConfigError
from .config import LAYER_NORM_EPS, CarveLayout, ShareBertConfig
from .io import (
    TASKS,
    read_model_folder,
    reconcile_state_dict,
    summarize,
    to_reference_state_dict,
    weight_shapes,
    write_model_folder,
)

__all__ = [
    "BaseModelOutput",
    "CarvedWeights",
    "ClassifierOutput",
    "MaskedLMOutput",
    "PackedTokens",
    "ShareBertConfig",
    "ShareBertForMaskedLM",
    "ShareBertForSequenceClassification",
    "ShareBertModel",
    "SharedMatmul",
    "load_model_folder",
    "model_summary",
    "save_model_folder",
    "unwrap_model",
]

log = logging.getLogger(__name__)

IGNORE_INDEX = -100
PADDING_SCORE = -10000.0  # added to attention scores of padded keys (the reference's value)


class BaseModelOutput(NamedTuple):
    last_hidden_state: Tensor  # [B, S, H]
    pooler_output: Tensor  # [B, H]


class MaskedLMOutput(NamedTuple):
    loss: Tensor | None  # mlm_loss (+ nsp_loss when next_sentence_label is given)
    logits: Tensor  # [B, M, V] with masked_lm_positions; [N, V] with labels [B, S]; else [B, S, V]
    mlm_loss: Tensor | None = None
    nsp_logits: Tensor | None = None  # [B, 2] when the model has the NSP head
    nsp_loss: Tensor | None = None


class ClassifierOutput(NamedTuple):
    loss: Tensor | None
    logits: Tensor  # [B, num_labels]


class CarvedWeights(NamedTuple):
    """The shared matrices of one forward pass, applied as x @ W."""

    qkv: Tensor  # H x 3H: [W_q | W_k | W_v]
    o: Tensor  # H x H
    ff1: Tensor  # H x I
    ff2: Tensor  # I x H
    pool: Tensor  # H x H


class PackedTokens(NamedTuple):
    """Where the real tokens of a padded [B, S] batch sit, for layers that run on them packed as [N, H]."""

    index: Tensor  # [N]: the flat positions b * S + s of the real tokens
    batch: int
    seq_len: int
    mask: Tensor  # [B, 1, 1, S]: the additive key padding mask, as in the padded path


# ---------------------------------------------------------------------------------------- small parts
def _activation(name: str):
    return {"gelu": F.gelu, "relu": F.relu, "swish": F.silu, "silu": F.silu, "tanh": torch.tanh}[name]


class RMSNorm(nn.Module):
    """The reference's RMSNorm (layer_norm_type="rms_norm"): x / (rms(x) + eps) * scale."""

    def __init__(self, dim: int, eps: float = LAYER_NORM_EPS):
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(torch.empty(dim))

    def forward(self, x: Tensor) -> Tensor:
        rms = x.norm(2, dim=-1, keepdim=True) * x.shape[-1] ** -0.5
        return self.scale * (x / (rms + self.eps))


def _embedding(num: int, dim: int) -> nn.Embedding:
    # Passing the (empty) weight skips nn.Embedding's own normal_ init, which on the meta device imports
    # torch._dynamo (seconds); init_weights fills it anyway.
    return nn.Embedding(num, dim, _weight=torch.empty(num, dim))


def _norm(config: ShareBertConfig, dim: int) -> nn.Module:
    if config.layer_norm_type == "rms_norm":
        return RMSNorm(dim)
    return nn.LayerNorm(dim, eps=LAYER_NORM_EPS)


class _StandaloneBiases(nn.Module):
    """Holds biases of carved matrices; the reference draws them from N(0, 1) (docs/specification.md section 7)."""

    def __init__(self, **sizes: int):
        super().__init__()
        for name, size in sizes.items():
            self.register_parameter(name, nn.Parameter(torch.empty(size)))


class _DenseAct(nn.Module):
    """The MLM head's dense layer with its activation (reference: LinearActivation, key `dense_act`)."""

    def __init__(self, config: ShareBertConfig):
        super().__init__()
        h = config.hidden_size
        self.weight = nn.Parameter(torch.empty(h, h))
        self.bias = nn.Parameter(torch.empty(h))
        self.act = _activation(config.hidden_act)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(F.linear(x, self.weight, self.bias))


def _addmm(bias: Tensor, x: Tensor, weight: Tensor) -> Tensor:
    """x[..., K] @ weight[K, N] + bias as one 2-D GEMM with the bias in its epilogue."""
    out = torch.addmm(bias, x.reshape(-1, x.shape[-1]), weight)
    return out.view(*x.shape[:-1], weight.shape[1])


class SharedMatmul(nn.Module):
    """x @ W + b for a carved matrix W: a parameter-free module, so that a caller can swap how the layers'
    matmuls run (e.g. in FP8) without touching the weights, their carving or the state dict."""

    def forward(self, bias: Tensor, x: Tensor, weight: Tensor) -> Tensor:
        return _addmm(bias, x, weight)


def _pad(x: Tensor, packed: PackedTokens) -> Tensor:
    """Packed [N, C] rows -> [B, S, C] with zeros at the padding."""
    out = x.new_zeros(packed.batch * packed.seq_len, x.shape[-1]).index_copy(0, packed.index, x)
    return out.view(packed.batch, packed.seq_len, x.shape[-1])


# ---------------------------------------------------------------------------------------- encoder
class ShareBertEmbeddings(nn.Module):
    def __init__(self, config: ShareBertConfig):
        super().__init__()
        f, h = config.factor_size, config.hidden_size
        self.word_embeddings = _embedding(config.vocab_size, f)
        self.factor_linear = nn.Linear(f, h)
        self.factor_linear_all = nn.Linear(f, h)
        self.pre_factor_norm = _norm(config, f)
        self.pos_factor_norm = _norm(config, h)
        self.position_embeddings = _embedding(config.max_position_embeddings, h)
        self.token_type_embeddings = _embedding(config.type_vocab_size, h)
        if config.layernorm_embedding:
            self.LayerNorm = _norm(config, h)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None) -> Tensor:
        seq_len = input_ids.shape[1]
        input_ids = input_ids.long()  # int32 / int8 straight from the HDF5 samples are fine too
        words = self.pos_factor_norm(self.factor_linear(self.pre_factor_norm(self.word_embeddings(input_ids))))
        x = words + self.position_embeddings.weight[:seq_len]
        if token_type_ids is None:
            x = x + self.token_type_embeddings.weight[0]
        else:
            x = x + self.token_type_embeddings(token_type_ids.long())
        if hasattr(self, "LayerNorm"):
            x = self.LayerNorm(x)
        return self.dropout(x)

    def carve(self, layout: CarveLayout) -> CarvedWeights:
        """Form the shared matrices from the columns of E = factor_linear_all(word_embeddings) they use."""
        lo = layout.first_column
        lin = self.factor_linear_all
        used = F.linear(self.word_embeddings.weight, lin.weight[lo:], lin.bias[lo:])  # V x (5g + 2gf)
        blocks = used.split([b.stop - b.start for b in layout.blocks], dim=1)
        # Each V x c slice is flattened row-major, its tail dropped, and reshaped (docs/specification.md section 4).
        m = {
            b.name: block.reshape(-1)[: b.shape[0] * b.shape[1]].view(b.shape)
            for b, block in zip(layout.blocks, blocks)
        }
        return CarvedWeights(torch.cat([m["q"], m["k"], m["v"]], dim=1), m["o"], m["ff1"], m["ff2"], m["pool"])


class _AttentionBlock(nn.Module):
    """Key holder matching the reference (`block.self.{query,key,value}_bias`, `block.output.bias`)."""

    def __init__(self, h: int):
        super().__init__()
        self.self = _StandaloneBiases(query_bias=h, key_bias=h, value_bias=h)
        self.output = _StandaloneBiases(bias=h)


class ShareBertLayer(nn.Module):
    """One transformer layer; its only own parameters are two LayerNorms and six biases."""

    def __init__(self, config: ShareBertConfig):
        super().__init__()
        h = config.hidden_size
        self.block = _AttentionBlock(h)
        self.PreAttentionLayerNorm = _norm(config, h)
        self.PostAttentionLayerNorm = _norm(config, h)
        self.intermediate = _StandaloneBiases(bias=config.intermediate_size)
        self.output = _StandaloneBiases(bias=h)
        self.pre_ln = config.encoder_ln_mode == "pre-ln"
        self.num_heads = config.num_attention_heads
        self.scale = config.attention_scale
        self.hidden_dropout = config.hidden_dropout_prob
        self.attention_dropout = config.attention_probs_dropout_prob
        self.act = _activation(config.hidden_act)
        self.matmul = SharedMatmul()

    def forward(self, x: Tensor, w: CarvedWeights, mask: Tensor | PackedTokens | None) -> Tensor:
        if self.pre_ln:
            x = x + self._attention(self.PreAttentionLayerNorm(x), w, mask)
            return x + self._feed_forward(self.PostAttentionLayerNorm(x), w)
        x = self.PreAttentionLayerNorm(x + self._attention(x, w, mask))
        return self.PostAttentionLayerNorm(x + self._feed_forward(x, w))

    def _attention(self, x: Tensor, w: CarvedWeights, mask: Tensor | PackedTokens | None) -> Tensor:
        h = x.shape[-1]
        biases = self.block.self
        qkv = self.matmul(torch.cat([biases.query_bias, biases.key_bias, biases.value_bias]), x, w.qkv)
        packed = mask if isinstance(mask, PackedTokens) else None
        if packed is not None:  # packed rows: attention runs per sequence, on the padded layout
            qkv, mask = _pad(qkv, packed), packed.mask
        b, s = qkv.shape[:2]
        q, k, v = qkv.view(b, s, 3, self.num_heads, h // self.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
        ctx = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.attention_dropout if self.training else 0.0, scale=self.scale
        )
        ctx = ctx.transpose(1, 2).reshape(b, s, h)
        if packed is not None:
            ctx = ctx.reshape(b * s, h).index_select(0, packed.index)
        return F.dropout(self.matmul(self.block.output.bias, ctx, w.o), self.hidden_dropout, self.training)

    def _feed_forward(self, x: Tensor, w: CarvedWeights) -> Tensor:
        inner = self.act(self.matmul(self.intermediate.bias, x, w.ff1))
        return F.dropout(self.matmul(self.output.bias, inner, w.ff2), self.hidden_dropout, self.training)


class ShareBertEncoder(nn.Module):
    def __init__(self, config: ShareBertConfig):
        super().__init__()
        self.FinalLayerNorm = _norm(config, config.hidden_size)
        self.layer = nn.ModuleList(ShareBertLayer(config) for _ in range(config.num_hidden_layers))
        self.pre_ln = config.encoder_ln_mode == "pre-ln"
        self.gradient_checkpointing = config.gradient_checkpointing

    def forward(self, x: Tensor, w: CarvedWeights, mask: Tensor | PackedTokens | None) -> Tensor:
        """The hidden states before the final LayerNorm (see `final_norm`): [B, S, H], or [N, H] when `mask`
        is a PackedTokens."""
        for layer in self.layer:
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(layer, x, w, mask, use_reentrant=False)
            else:
                x = layer(x, w, mask)
        return x

    def final_norm(self, x: Tensor) -> Tensor:
        """The pre-LN encoder's last LayerNorm; per token, so heads apply it to the positions they read."""
        return self.FinalLayerNorm(x) if self.pre_ln else x


class ShareBertPooler(nn.Module):
    def __init__(self, config: ShareBertConfig):
        super().__init__()
        self.bias = nn.Parameter(torch.empty(config.hidden_size))

    def forward(self, first_token: Tensor, w: CarvedWeights) -> Tensor:
        return _addmm(self.bias, first_token, w.pool)  # no tanh (docs/specification.md section 6)


# ---------------------------------------------------------------------------------------- initialization
class _ShareBertBase(nn.Module):
    """Builds the modules on the meta device, then allocates them once and initializes them from `seed`.

    Construction never touches the global RNG. Under `with torch.device("meta")` (or device="meta") the
    model stays on the meta device: a free way to count parameters.
    """

    def __init__(self, config: ShareBertConfig, seed: int = 0, device=None):
        super().__init__()
        if not isinstance(config, ShareBertConfig):
            raise TypeError(f"config must be a ShareBertConfig, not {type(config).__name__}")
        self.config = config
        target = torch.device(device) if device is not None else torch.empty(0).device
        with torch.device("meta"):
            self._build(config)
        if target.type != "meta":
            self._allocate(target)
            self.init_weights(seed)

    def _allocate(self, device: torch.device) -> None:
        # Like nn.Module.to_empty, without its first-call cost (empty_like on meta imports sympy).
        for module in self.modules():
            for name, p in module.named_parameters(recurse=False):
                module.register_parameter(name, nn.Parameter(torch.empty(p.shape, dtype=p.dtype, device=device)))

    def _build(self, config: ShareBertConfig) -> None:
        raise NotImplementedError

    @torch.no_grad()
    def init_weights(self, seed: int = 0) -> None:
        """docs/specification.md section 7, drawn from a torch.Generator seeded with `seed` (same values on any device)."""
        gen = torch.Generator().manual_seed(int(seed))
        std = self.config.initializer_range
        done = 0
        for module in self.modules():
            for name, p in module.named_parameters(recurse=False):
                p.copy_(_initial_value(module, name, p, gen, std, self.config))
                done += 1
        assert done == len(list(self.parameters())), "a parameter was left uninitialized"

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def set_unpad(self, enabled: bool = True) -> None:
        """Run the layers on the real tokens only when an attention_mask is given (docs/model.md): the same
        outputs at real positions (to rounding; dropout draws differ); the encoder's hidden states at padded
        positions are zeros (before the final LayerNorm)."""
        for module in self.modules():
            if isinstance(module, ShareBertModel):
                module.unpad = enabled


def _initial_value(
    module: nn.Module, name: str, p: Tensor, gen: torch.Generator, std: float, config: ShareBertConfig
) -> Tensor:
    shape = p.shape
    if isinstance(module, (nn.LayerNorm, RMSNorm)):
        return torch.ones(shape) if name in ("weight", "scale") else torch.zeros(shape)
    if isinstance(module, (_StandaloneBiases, ShareBertPooler)):
        return torch.randn(shape, generator=gen)
    if isinstance(module, _DenseAct) and config.fused_linear_layer:
        bound = 1.0 / math.sqrt(config.hidden_size)  # PyTorch's default Linear init (kaiming-uniform, a=sqrt 5)
        return torch.empty(shape).uniform_(-bound, bound, generator=gen)
    if name == "bias":  # nn.Linear biases, the unused MLM decoder bias
        return torch.zeros(shape)
    return torch.empty(shape).normal_(0.0, std, generator=gen)  # nn.Linear / nn.Embedding weights


# ---------------------------------------------------------------------------------------- models
class ShareBertModel(_ShareBertBase):
    """The encoder with its pooler: forward returns `last_hidden_state` [B,S,H] and `pooler_output` [B,H]."""

    unpad = False  # see set_unpad

    def _build(self, config: ShareBertConfig) -> None:
        self.embeddings = ShareBertEmbeddings(config)
        self.encoder = ShareBertEncoder(config)
        self.pooler = ShareBertPooler(config)
        self.layout = config.carve_layout()

    def carved_weights(self) -> CarvedWeights:
        return self.embeddings.carve(self.layout)

    def encode(
        self, input_ids: Tensor, token_type_ids: Tensor | None = None, attention_mask: Tensor | None = None
    ) -> tuple[Tensor, CarvedWeights]:
        """Hidden states before the final LayerNorm, and this pass's shared matrices (for the heads)."""
        if input_ids.shape[1] > self.config.max_position_embeddings:
            raise ConfigError(
                f"sequence length {input_ids.shape[1]} exceeds max_position_embeddings="
                f"{self.config.max_position_embeddings}"
            )
        w = self.carved_weights()
        mask = None
        if attention_mask is not None:
            # [B, 1, 1, S]: 0 for real keys, -10000 for padding; in the dtype attention computes in.
            mask = ((1.0 - attention_mask.to(w.qkv.dtype)) * PADDING_SCORE)[:, None, None, :]
        x = self.embeddings(input_ids, token_type_ids)
        if self.unpad and attention_mask is not None:
            return self._encode_packed(x, w, attention_mask, mask), w
        return self.encoder(x, w, mask), w

    def _encode_packed(self, x: Tensor, w: CarvedWeights, attention_mask: Tensor, mask: Tensor) -> Tensor:
        """The encoder on the real tokens only (a data-dependent N), scattered back to [B, S, H]."""
        b, s, h = x.shape
        index = attention_mask.reshape(-1).nonzero().squeeze(1)
        packed = PackedTokens(index, b, s, mask)
        return _pad(self.encoder(x.reshape(b * s, h).index_select(0, index), w, packed), packed)

    def pool(self, hidden: Tensor, w: CarvedWeights) -> Tensor:
        return self.pooler(self.encoder.final_norm(hidden[:, 0]), w)

    def forward(
        self, input_ids: Tensor, token_type_ids: Tensor | None = None, attention_mask: Tensor | None = None
    ) -> BaseModelOutput:
        hidden, w = self.encode(input_ids, token_type_ids, attention_mask)
        return BaseModelOutput(self.encoder.final_norm(hidden), self.pool(hidden, w))


class _MLMTransform(nn.Module):
    def __init__(self, config: ShareBertConfig):
        super().__init__()
        self.dense_act = _DenseAct(config)
        self.LayerNorm = _norm(config, config.hidden_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.LayerNorm(self.dense_act(x))


class _MLMPredictions(nn.Module):
    def __init__(self, config: ShareBertConfig):
        super().__init__()
        self.transform = _MLMTransform(config)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=False)  # not tied
        self.bias = nn.Parameter(torch.empty(config.vocab_size))  # used only if not sparse_mask_prediction
        self.use_bias = not config.sparse_mask_prediction

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(self.transform(x), self.decoder.weight, self.bias if self.use_bias else None)


class _PretrainingHeads(nn.Module):
    def __init__(self, config: ShareBertConfig):
        super().__init__()
        self.predictions = _MLMPredictions(config)
        if config.nsp:
            self.seq_relationship = nn.Linear(config.hidden_size, 2)


def _at_least_fp32(x: Tensor) -> Tensor:
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _mean_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy averaged over labels != -100, in float32 or wider; 0 (not NaN) when there are none."""
    total = F.cross_entropy(
        _at_least_fp32(logits.reshape(-1, logits.shape[-1])),
        labels.reshape(-1).long(),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )
    return total / (labels != IGNORE_INDEX).sum().clamp(min=1)


class ShareBertForMaskedLM(_ShareBertBase):
    """Masked-LM pretraining model (keys `bert.*`, `cls.predictions.*`, `cls.seq_relationship.*` with nsp).

    Fast path (static shapes, compiles): masked_lm_positions [B, M] (0 = unused slot) with labels [B, M]
    (-100 or an unused slot = no target). Hugging Face path: labels [B, S] with -100 where there is no
    target (boolean indexing: a data-dependent shape). Without either, logits for every position.
    """

    def _build(self, config: ShareBertConfig) -> None:
        self.bert = ShareBertModel(config)
        self.cls = _PretrainingHeads(config)

    def forward(
        self,
        input_ids: Tensor,
        token_type_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        masked_lm_positions: Tensor | None = None,
        labels: Tensor | None = None,
        next_sentence_label: Tensor | None = None,
    ) -> MaskedLMOutput:
        hidden, w = self.bert.encode(input_ids, token_type_ids, attention_mask)
        final_norm = self.bert.encoder.final_norm
        if masked_lm_positions is not None:
            positions = masked_lm_positions.long()
            index = positions.unsqueeze(-1).expand(-1, -1, hidden.shape[-1])
            logits = self.cls.predictions(final_norm(torch.gather(hidden, 1, index)))
            if labels is not None:
                labels = labels.masked_fill(positions == 0, IGNORE_INDEX)
        elif labels is not None:
            has_target = labels != IGNORE_INDEX
            logits = self.cls.predictions(final_norm(hidden[has_target]))
            labels = labels[has_target]
        else:
            logits = self.cls.predictions(final_norm(hidden))
        mlm_loss = None if labels is None else _mean_loss(logits, labels)
        if not self.config.nsp:
            return MaskedLMOutput(mlm_loss, logits, mlm_loss)
        nsp_logits = self.cls.seq_relationship(self.bert.pool(hidden, w))
        nsp_loss = None if next_sentence_label is None else _mean_loss(nsp_logits, next_sentence_label)
        losses = [x for x in (mlm_loss, nsp_loss) if x is not None]
        return MaskedLMOutput(sum(losses) if losses else None, logits, mlm_loss, nsp_logits, nsp_loss)


class ShareBertForSequenceClassification(_ShareBertBase):
    """Pooled output -> dropout -> Linear(H, num_labels); cross-entropy, or MSE when num_labels == 1."""

    def _build(self, config: ShareBertConfig) -> None:
        self.bert = ShareBertModel(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)

    def forward(
        self,
        input_ids: Tensor,
        token_type_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        labels: Tensor | None = None,
    ) -> ClassifierOutput:
        hidden, w = self.bert.encode(input_ids, token_type_ids, attention_mask)
        logits = self.classifier(self.dropout(self.bert.pool(hidden, w)))
        loss = None
        if labels is not None:
            if self.config.is_regression:
                logits32 = _at_least_fp32(logits.reshape(-1))
                loss = F.mse_loss(logits32, labels.reshape(-1).to(logits32.dtype))
            else:
                loss = F.cross_entropy(_at_least_fp32(logits), labels.reshape(-1).long())
        return ClassifierOutput(loss, logits)


MODEL_CLASSES = {
    "base": ShareBertModel,
    "masked-lm": ShareBertForMaskedLM,
    "sequence-classification": ShareBertForSequenceClassification,
}
assert set(MODEL_CLASSES) == set(TASKS)


# ---------------------------------------------------------------------------------------- save / load
def unwrap_model(model: nn.Module) -> _ShareBertBase:
    """The ShareBERT model inside a torch.compile, DDP or DeepSpeed wrapper."""
    while not isinstance(model, _ShareBertBase):
        inner = getattr(model, "_orig_mod", None) or getattr(model, "module", None)
        if inner is None:
            raise TypeError(f"not a ShareBERT model: {type(model).__name__}")
        model = inner
    return model


def save_model_folder(
    model: nn.Module, folder, vocab_file, *, pytorch_bin: bool = False, lowercase: bool = True
) -> Path:
    """Write config.json, model.safetensors (and pytorch_model.bin if asked), vocab.txt with the tokenizer
    files for the casing `lowercase`, and the remote code `transformers` runs, into `folder` (docs/model.md).

    Keys are the reference's, so the folder loads here and (with pytorch_bin=True) in the reference code.
    Each file is written under a temporary name and renamed; config.json comes last.
    """
    model = unwrap_model(model)
    task = next(t for t, cls in MODEL_CLASSES.items() if type(model) is cls)
    # fp32 files whatever the training precision (DeepSpeed's fp16 mode keeps a half-precision module).
    state = {
        k: v.float() if v.is_floating_point() else v
        for k, v in to_reference_state_dict(model.state_dict(), model.config).items()
    }
    return write_model_folder(
        folder, model.config, state, vocab_file, task, pytorch_bin=pytorch_bin, lowercase=lowercase
    )


def load_model_folder(
    folder, task: str = "masked-lm", num_labels: int | None = None, *, seed: int = 0, device=None
) -> nn.Module:
    """Load a folder written by `save_model_folder` or by the reference implementation as a `task` model.

    Heads the task does not use are dropped and missing task heads are created (initialized from `seed`);
    both are logged. Unknown keys, missing encoder keys or wrong shapes raise DataError naming the file.
    """
    if task not in MODEL_CLASSES:
        raise ValueError(f"task must be one of {', '.join(MODEL_CLASSES)}, not {task!r}")
    config, state, weights_path = read_model_folder(folder)
    changes = {}
    if num_labels is not None:
        changes["num_labels"] = num_labels
    if task == "masked-lm" and not config.nsp and any(k.startswith("cls.seq_relationship.") for k in state):
        changes["nsp"] = True  # a reference bert-mlm-nsp checkpoint
    config = config.replace(**changes)
    model = MODEL_CLASSES[task](config, seed=seed, device="meta")
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    state, created = reconcile_state_dict(state, expected, task, weights_path)
    model = MODEL_CLASSES[task](config, seed=seed, device=device)  # initialized: created heads keep their init
    result = model.load_state_dict(state, strict=False)
    assert not result.unexpected_keys and sorted(result.missing_keys) == created, result
    if created:
        log.info("%s: created (newly initialized): %s", weights_path, ", ".join(created))
    log.info("loaded a %s model (%s parameters) from %s", task, f"{model.num_parameters():,}", weights_path)
    return model


def model_summary(config: ShareBertConfig | None = None, folder=None) -> dict:
    """Parameter counts per component: of `config` as a masked-LM model, or of a saved model folder."""
    if folder is not None:
        config, shapes, path = weight_shapes(folder)
        return summarize(config, shapes, str(path))
    model = ShareBertForMaskedLM(config, device="meta")
    return summarize(config, {k: tuple(v.shape) for k, v in model.state_dict().items()}, "config")
