"""WordPiece vocabularies and the fast `tokenizers` BERT tokenizer built from them.

Used by `prepare` (text to token ids) and `finetune` (GLUE sentences and pairs to model inputs).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import file_error

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
MIN_VOCAB_SIZE = 16


@dataclass(frozen=True)
class SpecialIds:
    pad: int
    unk: int
    cls: int
    sep: int
    mask: int

    def as_dict(self) -> dict:
        return {"pad": self.pad, "unk": self.unk, "cls": self.cls, "sep": self.sep, "mask": self.mask}

    @classmethod
    def from_dict(cls, d: dict) -> SpecialIds:
        return cls(**{k: int(d[k]) for k in ("pad", "unk", "cls", "sep", "mask")})


def read_vocab(path: str | Path) -> list[str]:
    """Read a BERT-style vocab.txt (one token per line, line number = id) and check it is one."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise file_error(path, "vocab file not found") from None
    except OSError as e:
        raise file_error(path, f"cannot read vocab file ({e.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise file_error(path, "not a vocab file (not UTF-8 text)") from None
    tokens = text.split("\n")
    if tokens and tokens[-1] == "":
        tokens.pop()
    tokens = [t.rstrip("\r") for t in tokens]
    if len(tokens) < MIN_VOCAB_SIZE:
        raise file_error(path, f"not a vocab file ({len(tokens)} lines; expected one token per line)")
    if not all(tokens) or len("".join(tokens).split()) != 1:  # some line is empty or holds whitespace
        for line_no, token in enumerate(tokens, 1):
            if token.split() != [token]:
                raise file_error(path, f"not a vocab file (line {line_no} is {token!r}, not a single token)")
    distinct = set(tokens)
    missing = [t for t in SPECIAL_TOKENS if t not in distinct]
    if missing:
        raise file_error(path, f"not a BERT vocab file (missing special tokens {', '.join(missing)})")
    if len(distinct) != len(tokens):
        raise file_error(path, "not a vocab file (a token appears twice)")
    return tokens


def special_ids(vocab: list[str]) -> SpecialIds:
    index = {tok: i for i, tok in enumerate(vocab)}
    return SpecialIds(*(index[t] for t in SPECIAL_TOKENS))


def replacement_token_ids(vocab: list[str]):
    """Ids a masked token may be replaced with at random: every token that is not special.

    Special means the five BERT specials, `[unusedN]` placeholders and any other `[...]` token.
    """
    import numpy as np

    keep = [i for i, tok in enumerate(vocab) if not (tok.startswith("[") and tok.endswith("]"))]
    return np.asarray(keep, dtype=np.int32)


def bert_tokenizer(vocab_path: str | Path, lowercase: bool, max_length: int | None = None):
    """A fast WordPiece tokenizer with BERT's normalization (uncased when `lowercase`).

    Encodings of single texts come out as [CLS] a [SEP] and of pairs as [CLS] a [SEP] b [SEP]
    with segment ids 0/1; pass add_special_tokens=False for bare word pieces.
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    vocab = read_vocab(vocab_path)
    ids = special_ids(vocab)
    tokenizer = Tokenizer(
        models.WordPiece({tok: i for i, tok in enumerate(vocab)}, unk_token="[UNK]", max_input_chars_per_word=100)
    )
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase
    )
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A:0 [SEP]:0",
        pair="[CLS] $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", ids.cls), ("[SEP]", ids.sep)],
    )
    if max_length is not None:
        tokenizer.enable_truncation(max_length=max_length, strategy="longest_first")
    return tokenizer
