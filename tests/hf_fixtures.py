"""Tiny model folders and an offline, quiet `transformers` for the Hugging Face tests (docs/model.md).

Import `transformers` through this module: it first points the remote-code cache at a temporary folder
and keeps the Hub out of reach.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
if "HF_MODULES_CACHE" not in os.environ:
    os.environ["HF_MODULES_CACHE"] = tempfile.mkdtemp(prefix="sharebert-hf-modules-")
    atexit.register(shutil.rmtree, os.environ["HF_MODULES_CACHE"], True)

import transformers

from sharebert.trainer.model.modeling import ShareBertConfig

transformers.logging.set_verbosity_error()

V = 1000  # the tiny preset's carving needs a vocab of about this size
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = ["the", "a", "of", "is", "paris", "capital", "france", "good", "bad", "day", "film", ".", ",", "!", "##s"]


def write_vocab(path: Path, words=WORDS) -> Path:
    """A vocab.txt of exactly V tokens: the specials, `words`, then [unusedN] fillers."""
    tokens = SPECIALS + list(words)
    tokens += [f"[unused{i}]" for i in range(V - len(tokens))]
    path.write_text("\n".join(tokens) + "\n", encoding="utf-8")
    return path


def tiny(**overrides) -> ShareBertConfig:
    return ShareBertConfig.from_preset("tiny", **{"vocab_size": V, **overrides})


def tiny_mlm_folder(parent: Path) -> Path:
    """PARENT/model: a tiny masked-LM folder as sharebert writes it (seed 1), its vocab in PARENT."""
    from sharebert.trainer.model.modeling import ShareBertForMaskedLM, save_model_folder

    folder = parent / "model"
    save_model_folder(ShareBertForMaskedLM(tiny(), seed=1), folder, write_vocab(parent / "vocab.txt"))
    return folder


def padded_batch(seed: int = 0) -> dict:
    """Three sequences of 12 tokens, the last two padded, the first a pair (segment ids 0 then 1)."""
    gen = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, V, (3, 12), generator=gen)
    attention_mask = torch.ones(3, 12, dtype=torch.long)
    attention_mask[1, 8:] = 0
    attention_mask[2, 5:] = 0
    input_ids[attention_mask == 0] = 0
    token_type_ids = torch.zeros(3, 12, dtype=torch.long)
    token_type_ids[0, 6:] = 1
    return dict(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
