"""A `transformers` Trainer fine-tunes a classifier loaded from a sharebert folder (docs/model.md)."""

from __future__ import annotations

import math

import pytest
import torch
from hf_fixtures import padded_batch, tiny_mlm_folder, transformers

from sharebert.trainer.model.modeling import load_model_folder


@pytest.fixture
def mlm_folder(tmp_path):
    return tiny_mlm_folder(tmp_path)


ATOL = 1e-5


def auto(kind: str, folder, **kwargs):
    return getattr(transformers, kind).from_pretrained(str(folder), trust_remote_code=True, **kwargs).eval()


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return (a - b).abs().max().item()


SENTIMENT = {"good": 1, "bad": 0}


def sentiment_task(tokenizer, n: int, seed: int) -> list[dict]:
    """Sentences of three 'good' or three 'bad' among filler words, in random order: the label is which."""
    gen = torch.Generator().manual_seed(seed)
    filler = ["the", "a", "day", "film", "is", "of"]
    examples = []
    for i in range(n):
        word = "good" if i % 2 else "bad"
        words = [word] * 3 + [filler[j] for j in torch.randint(0, len(filler), (3,), generator=gen).tolist()]
        words = [words[j] for j in torch.randperm(len(words), generator=gen).tolist()]
        encoded = tokenizer(" ".join(words), padding="max_length", max_length=10)
        examples.append({**encoded, "labels": SENTIMENT[word]})
    return examples


@pytest.mark.usefixtures("torch_one_thread")
def test_a_transformers_trainer_fine_tunes_the_classifier(mlm_folder, tmp_path):
    pytest.importorskip("accelerate", reason="transformers' Trainer needs accelerate (in sharebert[transformers])")
    torch.manual_seed(0)
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(mlm_folder))
    model = auto("AutoModelForSequenceClassification", mlm_folder, num_labels=2).train()
    train = sentiment_task(tokenizer, 64, seed=0)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "trainer"),
        max_steps=40,
        per_device_train_batch_size=16,
        learning_rate=2e-3,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
    )
    trainer = transformers.Trainer(model=model, args=args, train_dataset=train)
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 40 and all(math.isfinite(x) for x in losses)
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5
    trainer.save_model(str(tmp_path / "tuned"))
    batch = padded_batch()
    model.eval()
    with torch.no_grad():
        expected = model(**batch).logits
        reloaded = auto("AutoModelForSequenceClassification", tmp_path / "tuned")
        assert max_diff(reloaded(**batch).logits, expected) <= ATOL
        in_sharebert = load_model_folder(tmp_path / "tuned", task="sequence-classification").eval()
        assert max_diff(in_sharebert(**batch).logits, expected) <= ATOL
