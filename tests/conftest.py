"""Shared fixtures. Every input the tests need is written by the tests themselves: a fresh clone runs them all."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from wikidump import GeneratedDump, write_wiki_dump

# Keep library thread pools small: the suite runs on 2 cores.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def _environment_as_it_was():
    """A test leaves the environment as it found it: an in-process pretraining run sets RANK, WORLD_SIZE and
    MASTER_PORT, which a later subprocess (torchrun, `sharebert pretrain`) would otherwise inherit."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


WIKI_ARTICLES = 120
WIKI_VOCAB_SIZE = 2000  # more than the generated text supports: the trainer stops when nothing is left to merge


@pytest.fixture(scope="session")
def wiki_dump(tmp_path_factory) -> GeneratedDump:
    """A MediaWiki dump shaped like an enwiki pages-articles dump (one bz2 stream), see wikidump.py."""
    return write_wiki_dump(tmp_path_factory.mktemp("wiki") / "enwiki-generated.xml.bz2", articles=WIKI_ARTICLES)


@pytest.fixture(scope="session")
def wiki_vocab(wiki_dump, tmp_path_factory) -> Path:
    """A BERT-style WordPiece vocab.txt that `sharebert prepare --train-vocab` trained on the dump."""
    from sharebert.cli import main
    from sharebert.pipeline import formats

    out = tmp_path_factory.mktemp("wiki-vocab") / "prepared"
    argv = ["prepare", "--wiki", str(wiki_dump.path), "--train-vocab", str(WIKI_VOCAB_SIZE), "-o", str(out), "-q"]
    assert main([*argv, "--workers", "1"]) == 0
    return out / formats.VOCAB_FILE


@pytest.fixture
def torch_one_thread():
    """One torch thread: tiny models train fastest so, and the suite shares two cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
