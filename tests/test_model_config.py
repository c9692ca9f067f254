"""ShareBertConfig: presets, parameter counts, validation, config.json round trips."""

from __future__ import annotations

import json

import pytest
import torch

from sharebert.errors import ConfigError, DataError
from sharebert.trainer.model.config import carve_layout, parse_overrides
from sharebert.trainer.model.modeling import ShareBertConfig, ShareBertForMaskedLM

# docs/model.md, Configuration (the presets' table): encoder parameters, and totals with the MLM head.
SPEC_COUNTS = {"small": (4_982_272, 71_722_298), "base": (13_844_992, 80_585_018), "large": (27_003_904, 93_743_930)}


@pytest.mark.parametrize("preset", sorted(SPEC_COUNTS))
def test_preset_parameter_counts_equal_the_spec(preset):
    model = ShareBertForMaskedLM(ShareBertConfig.from_preset(preset), device="meta")
    encoder, total = SPEC_COUNTS[preset]
    assert model.bert.num_parameters() == encoder
    assert model.num_parameters() == total


def test_meta_context_builds_without_allocating():
    with torch.device("meta"):
        model = ShareBertForMaskedLM(ShareBertConfig.from_preset("base"))
    assert all(p.is_meta for p in model.parameters())


def test_presets_and_defaults():
    tiny = ShareBertConfig.from_preset("tiny")
    assert (
        tiny.factor_size,
        tiny.hidden_size,
        tiny.intermediate_size,
        tiny.num_hidden_layers,
        tiny.num_attention_heads,
        tiny.max_position_embeddings,
    ) == (32, 64, 128, 2, 4, 128)
    base = ShareBertConfig.from_preset("base", vocab_size=30528)
    assert base.vocab_size == 30528 and base.encoder_ln_mode == "pre-ln"
    assert base.attention_scale == pytest.approx(128 ** (-2 / 3))
    assert ShareBertConfig.from_preset("large").num_hidden_layers == 6


def test_carve_layout_follows_the_spec_table():
    layout = carve_layout(2048, 4096, 30522)
    assert (layout.g, layout.gf) == (138, 275)
    n, g, gf = 2048, 138, 275
    spans = {b.name: (b.start, b.stop, b.shape) for b in layout.blocks}
    assert spans == {
        "q": (n - g, n, (2048, 2048)),
        "k": (n - 2 * g, n - g, (2048, 2048)),
        "v": (n - 3 * g, n - 2 * g, (2048, 2048)),
        "ff1": (n - 3 * g - gf, n - 3 * g, (2048, 4096)),
        "ff2": (n - 3 * g - 2 * gf, n - 3 * g - gf, (4096, 2048)),
        "o": (n - 4 * g - 2 * gf, n - 3 * g - 2 * gf, (2048, 2048)),
        "pool": (n - 5 * g - 2 * gf, n - 4 * g - 2 * gf, (2048, 2048)),
    }
    assert layout.used_columns == 5 * g + 2 * gf == 1240


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(hidden_size=2040), "hidden_size=2040 is not divisible by num_attention_heads=16"),
        (dict(vocab_size=4000), "columns"),
        (dict(hidden_dropout_prob=1.0), "hidden_dropout_prob=1.0"),
        (dict(encoder_ln_mode="middle-ln"), "encoder_ln_mode='middle-ln'"),
        (dict(hidden_act="softplus"), "hidden_act='softplus'"),
        (dict(num_hidden_layers=0), "num_hidden_layers=0"),
        (dict(num_hidden_layers=2.5), "num_hidden_layers=2.5"),
        (dict(layernorm_embedding="yes"), "layernorm_embedding='yes'"),
        (dict(layer_norm_type="fused"), "layer_norm_type='fused'"),
        (dict(pad_token_id=40000), "pad_token_id=40000"),
        (dict(attention_scale_exponent=float("nan")), "attention_scale_exponent"),
    ],
)
def test_validation_names_the_bad_value(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ShareBertConfig.from_preset("base", **overrides)


def test_unknown_preset_and_setting():
    with pytest.raises(ConfigError, match="unknown model preset 'huge'"):
        ShareBertConfig.from_preset("huge")
    with pytest.raises(ConfigError, match="unknown model setting 'hiden_size'"):
        ShareBertConfig.from_preset("base", hiden_size=3)


def test_json_round_trip(tmp_path):
    cfg = ShareBertConfig.from_preset(
        "small", encoder_ln_mode="post-ln", num_labels=3, nsp=True, attention_scale_exponent=0.5
    )
    cfg.to_json_file(tmp_path / "config.json")
    assert ShareBertConfig.from_json_file(tmp_path / "config.json") == cfg
    assert ShareBertConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_reads_a_reference_config_json():
    reference = {
        "architectures": ["ShareBertLMHeadModel"],
        "attention_probs_dropout_prob": 0.1,
        "encoder_ln_mode": "PreLN",
        "factor_size": 384,
        "fused_linear_layer": True,
        "gradient_checkpointing": False,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": 2048,
        "initializer_range": 0.02,
        "intermediate_size": 4096,
        "layer_norm_eps": 1e-12,
        "layer_norm_type": "apex",
        "layernorm_embedding": False,
        "max_position_embeddings": 128,
        "model_type": "bert",
        "num_attention_heads": 16,
        "num_hidden_layers": 12,
        "pad_token_id": 0,
        "position_embedding_type": "absolute",
        "sparse_mask_prediction": True,
        "transformers_version": "4.6.0",
        "type_vocab_size": 2,
        "useLN": True,
        "use_cache": True,
        "vocab_size": 30528,
        "id2label": {"0": "A", "1": "B", "2": "C"},
    }
    cfg = ShareBertConfig.from_dict(reference)
    assert cfg.encoder_ln_mode == "pre-ln" and cfg.layer_norm_type == "apex" and cfg.num_labels == 3
    assert cfg.vocab_size == 30528
    with pytest.raises(ConfigError, match="useLN"):
        ShareBertConfig.from_dict({**reference, "useLN": False})


def test_bad_config_file_names_the_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"hidden_size": 100, "num_attention_heads": 16}')
    with pytest.raises(DataError, match=f"{path}: bad model config: hidden_size=100"):
        ShareBertConfig.from_json_file(path)
    path.write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        ShareBertConfig.from_json_file(path)


def test_parse_overrides_types():
    got = parse_overrides(
        [
            "hidden_size=1024",
            "attention_scale_exponent=1/2",
            "nsp=true",
            "encoder-ln-mode=post-ln",
            "hidden_dropout_prob=0.05",
        ]
    )
    assert got == dict(
        hidden_size=1024, attention_scale_exponent=0.5, nsp=True, encoder_ln_mode="post-ln", hidden_dropout_prob=0.05
    )
    for bad in ("hidden_size", "hidden_size=big", "nsp=maybe", "colour=red"):
        with pytest.raises(ConfigError):
            parse_overrides([bad])
