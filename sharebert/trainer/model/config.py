"""ShareBERT's configuration: sizes, presets, validation, the carving layout and config.json.

Kept free of torch so that the CLI and the data stages can read and check a model configuration
cheaply. `sharebert.trainer.model.modeling` re-exports `ShareBertConfig`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from pathlib import Path

from ...errors import ConfigError, file_error
from ...fileio import read_json, write_json_atomic
from ...flags import parse_bool

log = logging.getLogger(__name__)

# Every LayerNorm of the model uses this epsilon, whatever a reference config.json's layer_norm_eps says
# (the reference ignores that field too).
LAYER_NORM_EPS = 1e-5

ACTIVATIONS = ("gelu", "relu", "swish", "silu", "tanh")
LN_MODES = ("pre-ln", "post-ln")
# "apex" is the reference's fused LayerNorm: the same function as "pytorch", computed by torch here.
LAYER_NORM_TYPES = ("pytorch", "apex", "rms_norm")

# (F, H, I, L, A): the sizes that differ between presets; every other field keeps its default (V=30522, ...).
PRESETS: dict[str, dict] = {
    name: dict(factor_size=f, hidden_size=h, intermediate_size=i, num_hidden_layers=layers, num_attention_heads=a)
    for name, (f, h, i, layers, a) in {
        "tiny": (32, 64, 128, 2, 4),
        "small": (128, 2048, 4096, 12, 16),
        "base": (384, 2048, 4096, 12, 16),
        "large": (768, 2048, 4096, 6, 16),
    }.items()
}

# Keys a Hugging Face / reference config.json carries that mean nothing to this model; read silently.
HF_BOILERPLATE_KEYS = frozenset(
    [
        "architectures",
        "model_type",
        "auto_map",
        "transformers_version",
        "dtype",
        "torch_dtype",
        "use_cache",
        "position_embedding_type",
        "layer_norm_eps",
        "useLN",
        "classifier_dropout",
        "chunk_size_feed_forward",
        "output_hidden_states",
        "output_attentions",
        "torchscript",
        "use_bfloat16",
        "pruned_heads",
        "tie_word_embeddings",
        "is_encoder_decoder",
        "is_decoder",
        "add_cross_attention",
        "tie_encoder_decoder",
        "return_dict",
        "problem_type",
        "finetuning_task",
        "tokenizer_class",
        "bos_token_id",
        "eos_token_id",
        "sep_token_id",
        "decoder_start_token_id",
        "prefix",
        "task_specific_params",
        "label2id",
        "id2label",
        "num_labels",
        "_name_or_path",
        "_commit_hash",
    ]
)

# Other spellings of the LN mode that reference-era configs and users write.
_LN_MODE_ALIASES = {"preln": "pre-ln", "pre": "pre-ln", "postln": "post-ln", "post": "post-ln"}


@dataclass(frozen=True)
class CarvedBlock:
    """One weight matrix carved out of the virtual matrix E: columns [start, stop) reshaped to shape."""

    name: str
    start: int
    stop: int
    shape: tuple[int, int]


@dataclass(frozen=True)
class CarveLayout:
    """Which columns of E (V x H) hold which shared matrix (docs/specification.md section 4)."""

    g: int  # columns per H x H matrix
    gf: int  # columns per H x I matrix
    blocks: tuple[CarvedBlock, ...]  # in ascending column order

    @property
    def first_column(self) -> int:
        return self.blocks[0].start

    @property
    def used_columns(self) -> int:
        return self.blocks[-1].stop - self.blocks[0].start

    def block(self, name: str) -> CarvedBlock:
        return next(b for b in self.blocks if b.name == name)


def carve_layout(hidden_size: int, intermediate_size: int, vocab_size: int) -> CarveLayout:
    h, i, v = hidden_size, intermediate_size, vocab_size
    g, gf = math.ceil(h * h / v), math.ceil(h * i / v)
    # (name, width, shape) from the right end of E leftwards: q, k, v, ff1, ff2, o, pool.
    spec = [
        ("q", g, (h, h)),
        ("k", g, (h, h)),
        ("v", g, (h, h)),
        ("ff1", gf, (h, i)),
        ("ff2", gf, (i, h)),
        ("o", g, (h, h)),
        ("pool", g, (h, h)),
    ]
    blocks, stop = [], h
    for name, width, shape in spec:
        blocks.append(CarvedBlock(name, stop - width, stop, shape))
        stop -= width
    return CarveLayout(g, gf, tuple(reversed(blocks)))


@dataclass
class ShareBertConfig:
    """Every setting of a ShareBERT model. Field names are those of a Hugging Face BERT config.json."""

    vocab_size: int = 30522
    hidden_size: int = 2048
    num_hidden_layers: int = 12
    num_attention_heads: int = 16
    intermediate_size: int = 4096
    factor_size: int = 384
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 128
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    # scores = q k^T / head_dim ** attention_scale_exponent (2/3 in ShareBERT, 1/2 in BERT)
    attention_scale_exponent: float = 2.0 / 3.0
    encoder_ln_mode: str = "pre-ln"
    layer_norm_type: str = "pytorch"
    layernorm_embedding: bool = False  # an extra LayerNorm on the embedding sum (reference option)
    sparse_mask_prediction: bool = True  # True: the V-sized decoder bias is unused (reference default)
    fused_linear_layer: bool = True  # reference checkpoint layout of the MLM dense layer (and its init)
    num_labels: int = 2
    nsp: bool = False  # next-sentence-prediction head on the pooled output (cls.seq_relationship)
    pad_token_id: int = 0
    gradient_checkpointing: bool = False  # recompute each layer's activations in the backward pass

    _INTS = (
        "vocab_size",
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "intermediate_size",
        "factor_size",
        "max_position_embeddings",
        "type_vocab_size",
        "num_labels",
    )

    def __post_init__(self) -> None:
        self.encoder_ln_mode = _normalize_ln_mode(self.encoder_ln_mode)
        for name in self._INTS:
            _check_positive_int(name, getattr(self, name))
        _check_int("pad_token_id", self.pad_token_id)
        for name in (
            "layernorm_embedding",
            "sparse_mask_prediction",
            "fused_linear_layer",
            "nsp",
            "gradient_checkpointing",
        ):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name}={getattr(self, name)!r} must be true or false")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            p = _check_number(name, getattr(self, name))
            if not 0.0 <= p < 1.0:
                raise ConfigError(f"{name}={p} must be in [0, 1)")
        if _check_number("initializer_range", self.initializer_range) <= 0:
            raise ConfigError(f"initializer_range={self.initializer_range} must be > 0")
        _check_number("attention_scale_exponent", self.attention_scale_exponent)
        _check_choice("hidden_act", self.hidden_act, ACTIVATIONS)
        _check_choice("layer_norm_type", self.layer_norm_type, LAYER_NORM_TYPES)
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                f"hidden_size={self.hidden_size} is not divisible by num_attention_heads={self.num_attention_heads}"
            )
        if self.pad_token_id >= self.vocab_size or self.pad_token_id < 0:
            raise ConfigError(f"pad_token_id={self.pad_token_id} is not an id of a vocabulary of {self.vocab_size}")
        layout = self.carve_layout()
        if layout.used_columns > self.hidden_size:
            raise ConfigError(
                f"the shared weights need 5*ceil(H*H/V) + 2*ceil(H*I/V) = {layout.used_columns} columns of the "
                f"virtual matrix but hidden_size={self.hidden_size} has only {self.hidden_size} "
                f"(vocab_size={self.vocab_size}, intermediate_size={self.intermediate_size}): "
                "raise vocab_size or lower hidden_size / intermediate_size"
            )

    # ------------------------------------------------------------------ derived values
    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def attention_scale(self) -> float:
        return float(self.head_dim) ** (-self.attention_scale_exponent)

    @property
    def is_regression(self) -> bool:
        return self.num_labels == 1

    def carve_layout(self) -> CarveLayout:
        return carve_layout(self.hidden_size, self.intermediate_size, self.vocab_size)

    # ------------------------------------------------------------------ construction
    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_preset(cls, name: str, **overrides) -> ShareBertConfig:
        if name not in PRESETS:
            raise ConfigError(f"unknown model preset {name!r} (choose from {', '.join(PRESETS)})")
        unknown = sorted(set(overrides) - set(cls.field_names()))
        if unknown:
            raise ConfigError(f"unknown model setting {unknown[0]!r} (settings: {', '.join(cls.field_names())})")
        return cls(**{**PRESETS[name], **overrides})

    def replace(self, **changes) -> ShareBertConfig:
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ JSON (config.json)
    def to_dict(self) -> dict:
        """A Hugging-Face-style config.json dict that the reference implementation also reads."""
        d = dataclasses.asdict(self)
        d.update(
            model_type="bert",
            useLN=True,  # the reference's switch for its LayerNorms; always on
            layer_norm_eps=LAYER_NORM_EPS,
            id2label={str(i): f"LABEL_{i}" for i in range(self.num_labels)},
            label2id={f"LABEL_{i}": i for i in range(self.num_labels)},
        )
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ShareBertConfig:
        """Read our config.json or the reference's (its extra Hugging Face fields are ignored)."""
        if not isinstance(d, dict):
            raise ConfigError("a model config must be a JSON object")
        if d.get("useLN", True) is not True:
            raise ConfigError(f"useLN={d['useLN']!r} is not supported (the reference always sets it to true)")
        known = set(cls.field_names())
        values = {k: v for k, v in d.items() if k in known}
        if "num_labels" not in values and isinstance(d.get("id2label"), dict) and d["id2label"]:
            values["num_labels"] = len(d["id2label"])
        ignored = sorted(k for k in d if k not in known and k not in HF_BOILERPLATE_KEYS)
        if ignored:
            log.info("model config: ignoring unknown fields %s", ", ".join(ignored))
        return cls(**values)

    def to_json_file(self, path) -> None:
        write_json_atomic(path, self.to_dict())

    @classmethod
    def from_json_file(cls, path) -> ShareBertConfig:
        d = read_json(path)
        try:
            return cls.from_dict(d)
        except (ConfigError, TypeError) as e:
            raise file_error(Path(path), f"bad model config: {e}") from None


def parse_overrides(items: list[str]) -> dict:
    """Turn ["hidden_size=1024", "encoder_ln_mode=post-ln", ...] into typed config overrides."""
    types = {f.name: f.type for f in dataclasses.fields(ShareBertConfig)}
    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in types:
            raise ConfigError(f"bad model setting {item!r}: expected NAME=VALUE with NAME one of {', '.join(types)}")
        out[key] = _parse_value(key, types[key], text.strip())
    return out


def _parse_value(key: str, type_name: str, text: str):
    try:
        if type_name == "int":
            return int(text)
        if type_name == "float":
            return _parse_fraction(text)
    except ValueError:
        raise ConfigError(f"{key}={text!r} is not a {type_name}") from None
    if type_name == "bool":
        try:
            return parse_bool(text)
        except ValueError:
            raise ConfigError(f"{key}={text!r} must be true or false") from None
    return text


def _parse_fraction(text: str) -> float:
    """'0.5' -> 0.5, '2/3' -> 0.666..."""
    num, sep, den = text.partition("/")
    return float(num) / float(den) if sep else float(num)


def _normalize_ln_mode(value) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"encoder_ln_mode={value!r} must be one of {', '.join(LN_MODES)}")
    key = value.strip().lower().replace("-", "").replace("_", "")
    mode = _LN_MODE_ALIASES.get(key)
    if mode is None:
        raise ConfigError(f"encoder_ln_mode={value!r} must be one of {', '.join(LN_MODES)}")
    return mode


def _check_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name}={value!r} must be an integer")
    return value


def _check_positive_int(name: str, value) -> int:
    if _check_int(name, value) < 1:
        raise ConfigError(f"{name}={value} must be >= 1")
    return value


def _check_number(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name}={value!r} must be a finite number")
    return float(value)


def _check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ConfigError(f"{name}={value!r} must be one of {', '.join(choices)}")
