"""Model folders: save/load round trips, reference checkpoints, head changes and clear errors."""

from __future__ import annotations

import json
import logging
import re

import pytest
import reference_sharebert as plain
import torch

from sharebert.errors import DataError
from sharebert.trainer.model.modeling import (
    ShareBertConfig,
    ShareBertForMaskedLM,
    ShareBertForSequenceClassification,
    ShareBertModel,
    load_model_folder,
    save_model_folder,
)

V = 1000


def tiny(**overrides) -> ShareBertConfig:
    return ShareBertConfig.from_preset("tiny", vocab_size=V, **overrides)


@pytest.fixture
def vocab_file(tmp_path):
    path = tmp_path / "vocab.txt"
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    path.write_text("\n".join(specials + [f"tok{i}" for i in range(V - len(specials))]) + "\n")
    return path


def inputs():
    gen = torch.Generator().manual_seed(0)
    mask = torch.ones(2, 10, dtype=torch.long)
    mask[1, 6:] = 0
    return dict(
        input_ids=torch.randint(5, V, (2, 10), generator=gen),
        attention_mask=mask,
        token_type_ids=torch.zeros(2, 10, dtype=torch.long),
    )


@pytest.fixture(scope="module")
def saved_mlm(tmp_path_factory):
    """A masked-LM model folder written with both weight formats."""
    folder = tmp_path_factory.mktemp("mlm")
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = folder.parent / "mlm-vocab.txt"
    vocab.write_text("\n".join(specials + [f"w{i}" for i in range(50)]) + "\n")
    model = ShareBertForMaskedLM(tiny(), seed=1).eval()
    save_model_folder(model, folder, vocab, pytorch_bin=True)
    return folder, model


def test_save_then_load_gives_identical_outputs(saved_mlm):
    folder, model = saved_mlm
    assert {p.name for p in folder.iterdir()} == {
        "config.json",
        "model.safetensors",
        "pytorch_model.bin",
        "vocab.txt",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "modeling_sharebert.py",
    }
    loaded = load_model_folder(folder, task="masked-lm").eval()
    assert loaded.config == model.config
    assert torch.equal(loaded(**inputs()).logits, model(**inputs()).logits)
    assert json.loads((folder / "config.json").read_text())["architectures"] == ["ShareBertLMHeadModel"]


def test_pytorch_bin_alone_loads(saved_mlm, tmp_path):
    folder, model = saved_mlm
    for name in ("config.json", "pytorch_model.bin"):
        (tmp_path / name).write_bytes((folder / name).read_bytes())
    loaded = load_model_folder(tmp_path, task="masked-lm").eval()
    assert torch.equal(loaded(**inputs()).logits, model(**inputs()).logits)


def test_reference_checkpoint_loads(tmp_path):
    """A folder as the reference writes it: its config fields, its key spellings, pytorch_model.bin."""
    source = ShareBertForMaskedLM(tiny(fused_linear_layer=False, sparse_mask_prediction=False), seed=2)
    with torch.no_grad():
        source.cls.predictions.bias.normal_()  # used when sparse_mask_prediction is false
    state = {}
    for key, tensor in source.state_dict().items():
        state[key.replace("transform.dense_act.", "transform.dense_act.dense.")] = tensor.half()  # fp16 run
    state["cls.predictions.decoder.bias"] = state["cls.predictions.bias"]
    torch.save(state, tmp_path / "pytorch_model.bin")
    config = {k: v for k, v in source.config.to_dict().items() if k not in ("nsp", "attention_scale_exponent")}
    config.update(
        layer_norm_eps=1e-12,
        layer_norm_type="apex",
        encoder_ln_mode="pre-ln",
        architectures=["ShareBertLMHeadModel"],
        transformers_version="4.6.0",
        gradient_checkpointing=False,
    )
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded = load_model_folder(tmp_path, task="masked-lm").eval()
    assert not loaded.config.fused_linear_layer and not loaded.config.sparse_mask_prediction
    params = {k: v.float() for k, v in state.items()}
    for kind in ("weight", "bias"):
        params[f"cls.predictions.transform.dense_act.{kind}"] = params.pop(
            f"cls.predictions.transform.dense_act.dense.{kind}"
        )
    batch = inputs()
    hidden, _ = plain.encoder(params, loaded.config, **batch)
    expected = plain.mlm_logits(params, loaded.config, hidden)
    got = loaded(**batch).logits
    assert ((got - expected).norm() / expected.norm()) < 1e-5
    # Saved again, the keys are the reference's spellings.
    save_model_folder(loaded, tmp_path / "again", None, pytorch_bin=True)
    again = torch.load(tmp_path / "again" / "pytorch_model.bin", weights_only=True)
    assert set(again) == set(state)


def test_pretraining_folder_loads_as_classifier_and_says_so(saved_mlm, caplog):
    folder, model = saved_mlm
    with caplog.at_level(logging.INFO):
        clf = load_model_folder(folder, task="sequence-classification", num_labels=3, seed=5).eval()
    assert isinstance(clf, ShareBertForSequenceClassification) and clf.config.num_labels == 3
    assert "dropped (not used by a sequence-classification model): cls.predictions.* (6 tensors)" in caplog.text
    assert "created (newly initialized): classifier.bias, classifier.weight" in caplog.text
    assert torch.equal(clf.bert.embeddings.word_embeddings.weight, model.bert.embeddings.word_embeddings.weight)
    assert clf(**inputs()).logits.shape == (2, 3)


class _Engine(torch.nn.Module):
    """Stands for a DeepSpeed engine / DDP wrapper: the model is its `module`."""

    def __init__(self, module):
        super().__init__()
        self.module = module


def test_classifier_folder_round_trip_and_relabel(tmp_path, vocab_file, caplog):
    clf = ShareBertForSequenceClassification(tiny(num_labels=1), seed=3).eval()
    save_model_folder(_Engine(clf), tmp_path, vocab_file)  # wrappers (DeepSpeed, DDP, compile) are unwrapped
    assert not (tmp_path / "pytorch_model.bin").exists()
    loaded = load_model_folder(tmp_path, task="sequence-classification").eval()
    assert torch.equal(loaded(**inputs()).logits, clf(**inputs()).logits)
    with caplog.at_level(logging.INFO):
        relabeled = load_model_folder(tmp_path, task="sequence-classification", num_labels=2)
    assert "classifier.weight has shape [1, 64] but the model needs [2, 64]" in caplog.text
    assert relabeled.classifier.weight.shape == (2, 64)
    encoder = load_model_folder(tmp_path, task="base")
    assert isinstance(encoder, ShareBertModel)
    save_model_folder(encoder, tmp_path / "encoder", None)  # a bare encoder's keys have no "bert." prefix
    assert torch.equal(
        load_model_folder(tmp_path / "encoder", task="sequence-classification", num_labels=1).bert.pooler.bias,
        clf.bert.pooler.bias,
    )


def write_folder(folder, state, config: ShareBertConfig):
    folder.mkdir(exist_ok=True)
    torch.save(state, folder / "pytorch_model.bin")
    config.to_json_file(folder / "config.json")


@pytest.mark.parametrize(
    "change, message",
    [
        ("shape", "bert.encoder.layer.0.output.bias has shape [7] but config.json needs [64]"),
        ("missing", "missing key bert.encoder.FinalLayerNorm.bias"),
        ("unknown", "unexpected key bert.encoder.layer.9.output.bias"),
        ("not_a_tensor", "bert.pooler.bias is not a tensor"),
    ],
)
def test_bad_weights_name_file_and_key(tmp_path, change, message):
    model = ShareBertForMaskedLM(tiny(), seed=0)
    state = dict(model.state_dict())
    if change == "shape":
        state["bert.encoder.layer.0.output.bias"] = torch.zeros(7)
    elif change == "missing":
        del state["bert.encoder.FinalLayerNorm.bias"]
    elif change == "unknown":
        state["bert.encoder.layer.9.output.bias"] = torch.zeros(64)
    else:
        state["bert.pooler.bias"] = [1.0, 2.0]
    write_folder(tmp_path, state, model.config)
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'pytorch_model.bin'}: {message}")):
        load_model_folder(tmp_path, task="masked-lm")


def test_masked_lm_from_classifier_folder_is_an_error(tmp_path):
    clf = ShareBertForSequenceClassification(tiny(), seed=0)
    save_model_folder(clf, tmp_path, None)
    with pytest.raises(DataError, match="missing key cls.predictions.bias and 5 more"):
        load_model_folder(tmp_path, task="masked-lm")


def test_broken_folders(tmp_path, vocab_file):
    with pytest.raises(DataError, match="model folder not found"):
        load_model_folder(tmp_path / "nowhere")
    with pytest.raises(DataError, match="config.json: file not found"):
        load_model_folder(tmp_path)
    tiny().to_json_file(tmp_path / "config.json")
    with pytest.raises(DataError, match="no weights file"):
        load_model_folder(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(DataError, match="model.safetensors: cannot read safetensors weights"):
        load_model_folder(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    (tmp_path / "pytorch_model.bin").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="pytorch_model.bin: cannot read PyTorch weights"):
        load_model_folder(tmp_path)
    small = ShareBertForMaskedLM(ShareBertConfig.from_preset("tiny", vocab_size=600), seed=0)
    with pytest.raises(DataError, match="1000 tokens do not fit the model's vocab_size=600"):
        save_model_folder(small, tmp_path / "small", vocab_file)
    with pytest.raises(ValueError, match="task must be one of"):
        load_model_folder(tmp_path, task="question-answering")
