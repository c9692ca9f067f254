"""Shared fixtures. `../shared/data` holds real test data; tests that need it skip when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
ENWIKI_SAMPLE = SHARED_DATA / "enwiki-sample.xml.bz2"
BERT_VOCAB = SHARED_DATA / "bert-base-uncased-vocab.txt"

# Keep library thread pools small: the suite runs on 2 cores.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def enwiki_sample() -> Path:
    if not ENWIKI_SAMPLE.exists():
        pytest.skip(f"{ENWIKI_SAMPLE} is absent")
    return ENWIKI_SAMPLE


@pytest.fixture(scope="session")
def bert_vocab() -> Path:
    if not BERT_VOCAB.exists():
        pytest.skip(f"{BERT_VOCAB} is absent")
    return BERT_VOCAB


@pytest.fixture
def torch_one_thread():
    """One torch thread: tiny models train fastest so, and the suite shares two cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
