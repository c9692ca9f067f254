"""Tokenization: the fast paths give exactly BERT's ids; vocabulary training is deterministic."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prepare_fixtures import write_vocab

from sharebert.pipeline.prepare.encode import SentenceEncoder, train_vocabulary
from sharebert.tokenization import SPECIAL_TOKENS, bert_tokenizer, read_vocab

SENTENCES = [
    "The Quick brown fox, jumped over 3 lazy dogs!",
    "Émile Zola wrote «Germinal» in 1885 — naïve café.",
    "Pilcrow ¶ inside, twice ¶¶ here.",
    "中文字符 and 日本語 mixed with English.",
    "",
    "   ",
    "\u0301\u0302",  # only combining marks: nothing left after accent stripping
    "ÀÉÎÕÜ ß ø œ",
    "tab\tand  spaces",
    "nul\x00inside and\x07bell",  # control characters: never from `segment`, still encoded like BERT
    "a" * 150 + " long word",
]


@pytest.fixture(scope="module")
def vocabs(tmp_path_factory, wiki_vocab):
    """A hand-made vocab (every ASCII character, a few words) and a WordPiece vocab trained by prepare."""
    return [write_vocab(tmp_path_factory.mktemp("vocab") / "vocab.txt"), wiki_vocab]


@pytest.mark.parametrize("lowercase", [True, False])
def test_encoder_matches_bert_tokenizer(vocabs, lowercase):
    for vocab in vocabs:
        encoder = SentenceEncoder(vocab, lowercase)
        reference = bert_tokenizer(vocab, lowercase)
        expected = [e.ids for e in reference.encode_batch(SENTENCES * 3, add_special_tokens=False)]
        assert encoder.encode(SENTENCES * 3) == expected
        flat, lengths = encoder.encode_flat(SENTENCES)
        assert flat.dtype.name == "int32" and lengths.tolist() == [len(e) for e in expected[: len(SENTENCES)]]


def test_encoder_without_a_separator_in_the_vocab(tmp_path):
    vocab = write_vocab(tmp_path / "v.txt")
    lines = [t for t in vocab.read_text(encoding="utf-8").splitlines() if t not in "¶§¦※‡†¤•¡¿·"]
    vocab.write_text("\n".join(lines) + "\n", encoding="utf-8")
    encoder = SentenceEncoder(vocab, True)
    assert encoder.separator is None
    expected = [e.ids for e in bert_tokenizer(vocab, True).encode_batch(SENTENCES, add_special_tokens=False)]
    assert encoder.encode(SENTENCES) == expected


def test_encoder_is_exact_once_its_word_cache_is_full(vocabs, monkeypatch):
    from sharebert.pipeline.prepare import encode

    for vocab in vocabs:
        encoder = SentenceEncoder(vocab, True)
        monkeypatch.setattr(encode, "WORD_CACHE_SIZE", len(encoder._words) + 5)  # room for 5 more words
        sentences = [f"{i} Wanderers rivers' kingdoms, unknownish {i}x{i}y {'b' * (i % 3)}." for i in range(40)]
        sentences += [s for s in SENTENCES if s.isprintable()]  # non-ASCII ones take the full tokenizer
        expected = [e.ids for e in bert_tokenizer(vocab, True).encode_batch(sentences, add_special_tokens=False)]
        assert encoder.encode(sentences) == expected
        assert encoder.encode(sentences[::-1]) == expected[::-1]  # cached and uncached words mixed
        assert len(encoder._words) == encode.WORD_CACHE_SIZE


_piece = st.sampled_from(list("abcXYZ019 .,;'\"-()[]{}¶éÉüßø中\t\u00a0\u0301\x00\x1f") + ["word", "Word", "##", "  "])
_text = st.lists(_piece, max_size=30).map("".join)


@given(st.lists(_text, min_size=1, max_size=20))
@settings(max_examples=60, deadline=None)
def test_encoder_matches_on_random_text(sentences):
    vocab = _hypothesis_vocab()
    encoder = _encoder_cache.setdefault("e", SentenceEncoder(vocab, True))
    reference = _encoder_cache.setdefault("r", bert_tokenizer(vocab, True))
    assert encoder.encode(sentences) == [e.ids for e in reference.encode_batch(sentences, add_special_tokens=False)]


_encoder_cache: dict = {}


def _hypothesis_vocab() -> Path:
    import tempfile

    if "vocab" not in _encoder_cache:
        _encoder_cache["vocab"] = write_vocab(Path(tempfile.mkdtemp()) / "vocab.txt", extra_words=["word"])
    return _encoder_cache["vocab"]


CORPUS = [
    f"Sentence {i} tells of the river and the town, of kings, queens and ships: story {i % 7}." for i in range(300)
] + ["Ünïcödé wörds and café crème.", "数字 and symbols ¶ § ©."]


def _train(out: Path, size: int = 200) -> bytes:
    alphabet = "".join(sorted(set("".join(CORPUS))))
    train_vocabulary(iter(CORPUS), size, True, alphabet, out, total=len(CORPUS), parallel=False)
    return out.read_bytes()


def test_trained_vocab_is_a_bert_vocab(tmp_path):
    _train(tmp_path / "vocab.txt")
    vocab = read_vocab(tmp_path / "vocab.txt")
    assert vocab[: len(SPECIAL_TOKENS)] == list(SPECIAL_TOKENS)
    assert 150 <= len(vocab) <= 200
    assert "river" in vocab and "##s" in vocab


def test_trained_vocab_is_the_same_in_every_process(tmp_path):
    # tokenizers' trainer alone orders pieces by hash-map order, which changes from process to process.
    script = (
        "import sys; sys.path[:0] = [sys.argv[2]]; from pathlib import Path;"
        "import test_prepare_tokenize as t; t._train(Path(sys.argv[1]))"
    )
    tests_dir = str(Path(__file__).resolve().parent)
    outputs = []
    for k in range(3):
        out = tmp_path / f"vocab{k}.txt"
        subprocess.run([sys.executable, "-c", script, str(out), tests_dir], check=True)
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1] == outputs[2]
