"""sharebert/tokenization.py: vocab checks, special ids, replacement ids and the BERT tokenizer."""

from __future__ import annotations

import pytest

from sharebert.errors import DataError
from sharebert.tokenization import SPECIAL_TOKENS, bert_tokenizer, read_vocab, replacement_token_ids, special_ids

WORDS = ["the", "cat", "sat", "on", "mat", "##s", "un", "##aff", "##able", ",", ".", "!", "hello", "world"]


def write_vocab(path, tokens) -> str:
    path.write_text("".join(f"{t}\n" for t in tokens), encoding="utf-8")
    return str(path)


@pytest.fixture
def vocab(tmp_path):
    return write_vocab(tmp_path / "vocab.txt", list(SPECIAL_TOKENS) + ["[unused0]"] + WORDS)


def test_reads_a_vocab_and_its_special_ids(vocab):
    tokens = read_vocab(vocab)
    assert tokens[:5] == list(SPECIAL_TOKENS)
    assert special_ids(tokens).as_dict() == {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4}


def test_replacement_ids_exclude_every_bracketed_token(vocab):
    tokens = read_vocab(vocab)
    ids = replacement_token_ids(tokens)
    assert [tokens[i] for i in ids] == WORDS


@pytest.mark.parametrize(
    "bad_line, problem",
    [
        ("two words", "line 8 is 'two words'"),
        (" lead", "line 8 is ' lead'"),
        ("nbsp\u00a0", "line 8"),
        ("", "line 8 is ''"),
    ],
)
def test_a_line_that_is_not_one_token_is_named(tmp_path, bad_line, problem):
    path = write_vocab(tmp_path / "v.txt", list(SPECIAL_TOKENS) + ["a", "b", bad_line] + WORDS)
    with pytest.raises(DataError, match=f"v.txt: not a vocab file.*{problem}"):
        read_vocab(path)


@pytest.mark.parametrize(
    "tokens, problem",
    [
        (WORDS + ["x", "y"], "missing special tokens \\[PAD\\], \\[UNK\\]"),
        (list(SPECIAL_TOKENS) + WORDS + ["cat"], "a token appears twice"),
        (list(SPECIAL_TOKENS) + ["a"], "lines; expected one token per line"),
    ],
)
def test_files_that_are_not_bert_vocabs(tmp_path, tokens, problem):
    with pytest.raises(DataError, match=problem):
        read_vocab(write_vocab(tmp_path / "v.txt", tokens))


def test_missing_and_binary_files(tmp_path):
    with pytest.raises(DataError, match="vocab file not found"):
        read_vocab(tmp_path / "absent.txt")
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(DataError, match="not UTF-8"):
        read_vocab(tmp_path / "bin.txt")


def test_bert_tokenizer_uncased_pairs_and_truncation(vocab):
    tokenizer = bert_tokenizer(vocab, lowercase=True)
    encoding = tokenizer.encode("Héllo, WORLD!", "The cats")
    assert encoding.tokens == ["[CLS]", "hello", ",", "world", "!", "[SEP]", "the", "cat", "##s", "[SEP]"]
    assert encoding.type_ids == [0] * 6 + [1] * 4
    assert tokenizer.encode("unaffable", add_special_tokens=False).tokens == ["un", "##aff", "##able"]
    cased = bert_tokenizer(vocab, lowercase=False)
    assert cased.encode("Hello", add_special_tokens=False).tokens == ["[UNK]"]
    short = bert_tokenizer(vocab, lowercase=True, max_length=6)
    assert len(short.encode("the cat sat on the mat", "hello world").ids) == 6
