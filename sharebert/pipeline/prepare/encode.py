"""Sentences to WordPiece ids with the fast `tokenizers` library, as flat numpy arrays.

Three measured shortcuts, all giving exactly the ids of `bert_tokenizer` (tests check it):
- ASCII sentences (most of an English corpus) skip the tokenizer's pipeline altogether. On ASCII
  text without control characters, BERT's normalizer only lowercases and its pre-tokenizer splits
  into runs of letters and digits plus single punctuation characters: a regular expression does
  both, and each distinct word is WordPiece-tokenized once and cached (words follow Zipf's law, so
  the cache soon answers nearly every word). About twice as fast as the tokenizer itself.
- Other sentences go through the full BERT tokenizer, several sentences per call: they are joined
  with a separator, a non-ASCII punctuation character that is a token of its own in the vocab (the
  pre-tokenizer always isolates punctuation, so words never merge across it), and the ids are cut
  at the separator's id. Encoding sentences one by one costs ~30% more. Sentences that contain
  the separator character are encoded on their own.
- Words missing from the cache go through the WordPiece model alone (they are normalized and
  pre-tokenized already), one call per distinct word.
Control characters never reach the encoder from `segment` (it replaces them); a text that has
some anyway takes the full tokenizer.
"""

from __future__ import annotations

import os
import re
from itertools import chain, pairwise
from pathlib import Path

import numpy as np

from ...tokenization import bert_tokenizer

JOIN_SENTENCES = 256  # sentences per joined text
WORD_CACHE_SIZE = 300_000  # distinct words remembered per process (~45 MB)
# Separator candidates, in order of preference (rare in text, isolated by BERT's pre-tokenizer).
_SEPARATOR_CANDIDATES = "¶§¦※‡†¤•¡¿·"
# BERT's pre-tokenizer on ASCII: whitespace separates, every non-alphanumeric character stands alone.
_ASCII_WORDS = {True: re.compile(r"[a-z0-9]+|[^a-z0-9\s]"), False: re.compile(r"[A-Za-z0-9]+|[^A-Za-z0-9\s]")}
_SENTENCE_END = "\x00"  # joins ASCII sentences; a control character, so never inside one
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class SentenceEncoder:
    """Turns batches of sentences into token ids (no [CLS]/[SEP])."""

    def __init__(self, vocab_path: str | Path, lowercase: bool, tokenizer=None):
        """`tokenizer`, when given, is `bert_tokenizer(vocab_path, lowercase)` already built (or rebuilt
        from its JSON), which spares the workers reading and checking the vocab file again."""
        # One core per worker: the tokenizer must not start a thread pool of its own.
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
        self.lowercase = lowercase
        self.full = tokenizer if tokenizer is not None else bert_tokenizer(vocab_path, lowercase)
        self.separator, self.separator_id = _find_separator(self.full)
        self._words = _WordCache(self.full.model.tokenize)
        self._words.update(_whole_word_pieces(self.full.get_vocab(with_added_tokens=False), lowercase))
        self._words[_SENTENCE_END] = (-1,)

    def encode_flat(self, sentences: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(all ids as one int32 array, the number of ids of each sentence as int64), in order."""
        ascii_at = [i for i, s in enumerate(sentences) if s.isascii()]
        if len(ascii_at) == len(sentences):
            return self._encode_ascii(sentences)
        other_at = [i for i, s in enumerate(sentences) if not s.isascii()]
        groups = [
            (ascii_at, self._encode_ascii([sentences[i] for i in ascii_at])),
            (other_at, self._encode_group(self.full, [sentences[i] for i in other_at])),
        ]
        return _interleave(len(sentences), groups)

    def encode(self, sentences: list[str]) -> list[list[int]]:
        """Token ids of each sentence, as Python lists."""
        flat, lengths = self.encode_flat(sentences)
        bounds = np.concatenate([[0], np.cumsum(lengths)])
        return [flat[a:b].tolist() for a, b in pairwise(bounds)]

    def _encode_ascii(self, sentences: list[str]) -> tuple[np.ndarray, np.ndarray]:
        if not sentences:
            return np.zeros(0, np.int32), np.zeros(0, np.int64)
        text = _SENTENCE_END.join(sentences)
        if text.count(_SENTENCE_END) != len(sentences) - 1 or _CONTROL.search(text.replace(_SENTENCE_END, " ")):
            return self._encode_group(self.full, sentences)  # control characters: BERT's normalizer decides
        words = _ASCII_WORDS[self.lowercase].findall(text.lower() if self.lowercase else text)
        pieces = list(map(self._words.__getitem__, words))
        counts = np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces))
        ids = np.fromiter(chain.from_iterable(pieces), dtype=np.int32, count=int(counts.sum()))
        ends = np.flatnonzero(ids == -1)
        lengths = np.diff(np.concatenate([[-1], ends, [len(ids)]])) - 1
        return np.delete(ids, ends), lengths.astype(np.int64)

    def _encode_group(self, tokenizer, sentences: list[str]) -> tuple[np.ndarray, np.ndarray]:
        if self.separator is None:
            return _encode_one_by_one(tokenizer, sentences)
        alone = [i for i, s in enumerate(sentences) if self.separator in s]
        if alone:
            joinable = [i for i, s in enumerate(sentences) if self.separator not in s]
            return _interleave(
                len(sentences),
                [
                    (joinable, self._encode_joined(tokenizer, [sentences[i] for i in joinable])),
                    (alone, _encode_one_by_one(tokenizer, [sentences[i] for i in alone])),
                ],
            )
        return self._encode_joined(tokenizer, sentences)

    def _encode_joined(self, tokenizer, sentences: list[str]) -> tuple[np.ndarray, np.ndarray]:
        joiner = f" {self.separator} "
        chunks = [sentences[i : i + JOIN_SENTENCES] for i in range(0, len(sentences), JOIN_SENTENCES)]
        encodings = tokenizer.encode_batch_fast([joiner.join(c) for c in chunks], add_special_tokens=False)
        flats, lengths = [], []
        for chunk, encoding in zip(chunks, encodings):
            ids = np.array(encoding.ids, dtype=np.int32)
            cuts = np.flatnonzero(ids == self.separator_id)
            if len(cuts) != len(chunk) - 1:  # cannot happen (see the module doc); stay correct anyway
                flat, chunk_lengths = _encode_one_by_one(tokenizer, chunk)
            else:
                chunk_lengths = np.diff(np.concatenate([[-1], cuts, [len(ids)]])) - 1
                flat = np.delete(ids, cuts)
            flats.append(flat)
            lengths.append(chunk_lengths.astype(np.int64))
        if not flats:
            return np.zeros(0, np.int32), np.zeros(0, np.int64)
        return np.concatenate(flats), np.concatenate(lengths)


def _encode_one_by_one(tokenizer, sentences: list[str]) -> tuple[np.ndarray, np.ndarray]:
    ids = [e.ids for e in tokenizer.encode_batch_fast(sentences, add_special_tokens=False)]
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    flat = np.fromiter((i for sentence in ids for i in sentence), dtype=np.int32, count=int(lengths.sum()))
    return flat, lengths


def _interleave(count: int, groups) -> tuple[np.ndarray, np.ndarray]:
    """Merge per-group (flat ids, lengths) back into the original sentence order.

    `groups` is [(original positions, (flat, lengths)), ...]; the positions partition range(count).
    """
    lengths = np.zeros(count, dtype=np.int64)
    for positions, (_, group_lengths) in groups:
        lengths[np.asarray(positions, dtype=np.int64)] = group_lengths
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if count else np.zeros(0, np.int64)
    flat = np.empty(int(lengths.sum()), dtype=np.int32)
    for positions, (group_flat, group_lengths) in groups:
        if not len(group_flat):
            continue
        group_starts = np.concatenate([[0], np.cumsum(group_lengths)[:-1]])
        shift = np.repeat(starts[np.asarray(positions, dtype=np.int64)] - group_starts, group_lengths)
        flat[np.arange(len(group_flat)) + shift] = group_flat
    return flat, lengths


class _WordCache(dict):
    """Word -> its WordPiece ids. A lookup of a word not yet seen (C's dict lookup calls `__missing__`, so
    hits cost no Python code) asks the WordPiece model alone: the words are already normalized and
    pre-tokenized. At most WORD_CACHE_SIZE words are kept; later ones are tokenized each time."""

    def __init__(self, tokenize):
        super().__init__()
        self._tokenize = tokenize

    def __missing__(self, word: str) -> tuple[int, ...]:
        ids = tuple(token.id for token in self._tokenize(word))
        if len(self) < WORD_CACHE_SIZE:
            self[word] = ids
        return ids


def _whole_word_pieces(vocab: dict[str, int], lowercase: bool) -> dict[str, tuple[int, ...]]:
    """The word cache's first entries: a word that is itself a vocab token is that one piece
    (WordPiece matches the longest prefix first), for every token the ASCII word pattern yields whole."""
    word = _ASCII_WORDS[lowercase]
    return {token: (i,) for token, i in vocab.items() if len(token) <= 100 and word.fullmatch(token)}


def _find_separator(full) -> tuple[str | None, int | None]:
    """A character both tokenizers keep as one token of its own, whatever surrounds it."""
    for char in _SEPARATOR_CANDIDATES:
        token_id = full.token_to_id(char)
        if token_id is None:
            continue
        probe = f"a{char}b {char} c"
        expected = [*_ids(full, "a"), token_id, *_ids(full, "b"), token_id, *_ids(full, "c")]
        if _ids(full, probe) == expected:
            return char, token_id
    return None, None


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False).ids


def train_vocabulary(
    sentences, vocab_size: int, lowercase: bool, alphabet: str, out_path: Path, total: int | None, parallel: bool
) -> None:
    """Train a WordPiece vocabulary on an iterator of sentences and write it as a BERT vocab.txt.

    Same normalizer and pre-tokenizer as `bert_tokenizer`; the five BERT special tokens come first.
    tokenizers' trainer numbers continuation pieces ("##x") in hash-map order, which differs from
    process to process and changes which merges win ties; declaring every continuation piece of
    the corpus alphabet up front, in sorted order, makes the result depend on the corpus only.
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    from ...fileio import write_bytes_atomic
    from ...progress import progress_enabled
    from ...tokenization import SPECIAL_TOKENS

    os.environ["TOKENIZERS_PARALLELISM"] = "true" if parallel else "false"
    normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None,
                                            lowercase=lowercase)  # fmt: skip
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=100))
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        special_tokens=[*SPECIAL_TOKENS, *continuation_pieces(alphabet, normalizer)],
        continuing_subword_prefix="##",
        show_progress=progress_enabled(),
    )
    tokenizer.train_from_iterator(sentences, trainer=trainer, length=total)
    vocab = sorted(tokenizer.get_vocab(with_added_tokens=False).items(), key=lambda item: item[1])
    write_bytes_atomic(out_path, "".join(f"{token}\n" for token, _ in vocab).encode("utf-8"))


def continuation_pieces(alphabet: str, normalizer) -> list[str]:
    """ "##c" for every character c the normalized corpus can have inside a word, sorted."""
    normalized = sorted({c for ch in alphabet for c in normalizer.normalize_str(ch)})
    return [f"##{c}" for c in normalized if not (c.isspace() or _is_bert_punctuation(c) or _is_cjk(c))]


def _is_bert_punctuation(c: str) -> bool:
    import unicodedata

    code = ord(c)
    if 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126:
        return True
    return unicodedata.category(c).startswith("P")


def _is_cjk(c: str) -> bool:
    code = ord(c)
    return any(lo <= code <= hi for lo, hi in _CJK_RANGES)


# The CJK blocks BERT's normalizer surrounds with spaces (so their characters never continue a word).
_CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F), (0x2B740, 0x2B81F),
               (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))  # fmt: skip
