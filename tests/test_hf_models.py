"""Model folders loaded by `transformers` (trust_remote_code) compute what sharebert computes (docs/model.md)."""

from __future__ import annotations

import json

import pytest
import torch
from hf_fixtures import V, padded_batch, tiny, tiny_mlm_folder, transformers, write_vocab

from sharebert.trainer.model.modeling import (
    ShareBertForMaskedLM,
    ShareBertForSequenceClassification,
    load_model_folder,
    save_model_folder,
)

ATOL = 1e-5


@pytest.fixture(scope="module")
def mlm_folder(tmp_path_factory):
    return tiny_mlm_folder(tmp_path_factory.mktemp("mlm"))


@pytest.fixture(scope="module")
def classifier_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clf") / "model"
    vocab = write_vocab(folder.parent / "vocab.txt")
    save_model_folder(ShareBertForSequenceClassification(tiny(num_labels=3), seed=2), folder, vocab)
    return folder


def auto(kind: str, folder, **kwargs):
    return getattr(transformers, kind).from_pretrained(str(folder), trust_remote_code=True, **kwargs).eval()


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return (a - b).abs().max().item()


def mlm_labels(batch: dict) -> torch.Tensor:
    labels = torch.full_like(batch["input_ids"], -100)
    labels[0, [2, 9]] = torch.tensor([7, 11])
    labels[1, 3] = 20
    labels[2, 1] = 5
    return labels


def test_the_folder_names_the_auto_classes(mlm_folder):
    config = json.loads((mlm_folder / "config.json").read_text())
    assert config["model_type"] == "bert"
    assert config["auto_map"] == {
        "AutoConfig": "modeling_sharebert.ShareBertHfConfig",
        "AutoModel": "modeling_sharebert.ShareBertHfModel",
        "AutoModelForMaskedLM": "modeling_sharebert.ShareBertHfForMaskedLM",
        "AutoModelForSequenceClassification": "modeling_sharebert.ShareBertHfForSequenceClassification",
    }
    hf_config = transformers.AutoConfig.from_pretrained(str(mlm_folder), trust_remote_code=True)
    assert type(hf_config).__name__ == "ShareBertHfConfig"
    assert hf_config.sharebert().to_dict() == load_model_folder(mlm_folder).config.to_dict()


def test_masked_lm_logits_loss_and_hidden_states_equal_sharebert(mlm_folder):
    ours = load_model_folder(mlm_folder, task="masked-lm").eval()
    theirs = auto("AutoModelForMaskedLM", mlm_folder)
    batch = padded_batch()
    labels = mlm_labels(batch)
    with torch.no_grad():
        out = theirs(**batch, labels=labels, output_hidden_states=True)
        expected_logits = ours(**batch).logits
        expected_loss = ours(**batch, labels=labels).loss
    assert type(out).__name__ == "MaskedLMOutput"
    assert out.logits.shape == (3, 12, V)
    assert max_diff(out.logits, expected_logits) <= ATOL
    assert abs(out.loss.item() - expected_loss.item()) <= ATOL
    assert len(out.hidden_states) == ours.config.num_hidden_layers + 1  # embeddings, then each layer
    with torch.no_grad():
        hidden, _ = ours.bert.encode(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
    assert max_diff(out.hidden_states[-1], hidden) <= ATOL
    assert theirs(**batch).hidden_states is None


def test_classifier_logits_and_loss_equal_sharebert(classifier_folder):
    ours = load_model_folder(classifier_folder, task="sequence-classification").eval()
    theirs = auto("AutoModelForSequenceClassification", classifier_folder)
    batch = padded_batch(seed=1)
    labels = torch.tensor([0, 2, 1])
    with torch.no_grad():
        out = theirs(**batch, labels=labels)
        expected = ours(**batch, labels=labels)
    assert type(out).__name__ == "SequenceClassifierOutput"
    assert max_diff(out.logits, expected.logits) <= ATOL
    assert abs(out.loss.item() - expected.loss.item()) <= ATOL
    assert theirs.config.num_labels == 3


def test_padding_does_not_change_the_real_tokens(mlm_folder):
    theirs = auto("AutoModelForMaskedLM", mlm_folder)
    batch = padded_batch()
    with torch.no_grad():
        padded = theirs(**batch).logits[1, :8]
        alone = theirs(**{k: v[1:2, :8] for k, v in batch.items()}).logits[0]
    assert max_diff(padded, alone) <= ATOL


def test_auto_model_is_the_encoder(mlm_folder):
    ours = load_model_folder(mlm_folder, task="base").eval()
    theirs = auto("AutoModel", mlm_folder)
    batch = padded_batch()
    with torch.no_grad():
        out, expected = theirs(**batch), ours(**batch)
    assert max_diff(out.last_hidden_state, expected.last_hidden_state) <= ATOL
    assert max_diff(out.pooler_output, expected.pooler_output) <= ATOL


def test_a_pretraining_folder_loads_as_a_classifier_with_a_new_head(mlm_folder):
    theirs = auto("AutoModelForSequenceClassification", mlm_folder, num_labels=4)
    weight = theirs.classifier.weight
    assert weight.shape == (4, 64) and weight.std().item() == pytest.approx(0.02, rel=0.3)  # sharebert's init
    assert torch.all(theirs.classifier.bias == 0)
    ours = load_model_folder(mlm_folder, task="masked-lm")
    assert torch.equal(theirs.bert.embeddings.word_embeddings.weight, ours.bert.embeddings.word_embeddings.weight)


def test_fill_mask_pipeline_returns_sharebert_argmax(mlm_folder):
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(mlm_folder))
    model = auto("AutoModelForMaskedLM", mlm_folder)
    fill = transformers.pipeline("fill-mask", model=model, tokenizer=tokenizer)
    text = "paris is the [MASK] of france."
    top = fill(text)[0]
    ours = load_model_folder(mlm_folder, task="masked-lm").eval()
    ids = tokenizer(text, return_tensors="pt")
    position = (ids["input_ids"][0] == tokenizer.mask_token_id).nonzero().item()
    with torch.no_grad():
        logits = ours(input_ids=ids["input_ids"], token_type_ids=ids["token_type_ids"]).logits
    assert top["token"] == logits[0, position].argmax().item()


def test_the_unfused_reference_layout_loads_and_saves_in_its_spelling(tmp_path):
    vocab = write_vocab(tmp_path / "vocab.txt")
    model = ShareBertForMaskedLM(tiny(fused_linear_layer=False, sparse_mask_prediction=False), seed=3).eval()
    with torch.no_grad():
        model.cls.predictions.bias.normal_()
    save_model_folder(model, tmp_path / "model", vocab)
    theirs = auto("AutoModelForMaskedLM", tmp_path / "model")
    batch = padded_batch()
    with torch.no_grad():
        assert max_diff(theirs(**batch).logits, model(**batch).logits) <= ATOL
    theirs.save_pretrained(str(tmp_path / "saved"))
    from safetensors.torch import load_file

    assert "cls.predictions.transform.dense_act.dense.weight" in load_file(
        str(tmp_path / "saved" / "model.safetensors")
    )
    again = load_model_folder(tmp_path / "saved", task="masked-lm").eval()
    with torch.no_grad():
        assert max_diff(again(**batch).logits, model(**batch).logits) <= ATOL
