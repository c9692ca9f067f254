"""The tokenizer files of a model folder, in Hugging Face's layout (docs/model.md, "Hugging Face folders").

`tokenizer.json` is sharebert's own tokenizer (`bert_tokenizer`) serialized by `tokenizers`, so a loader of
that file tokenizes exactly as sharebert does; `tokenizer_config.json` and `special_tokens_map.json` name
the class and the special tokens for `transformers.AutoTokenizer`. Writing them needs only `tokenizers`.
This module owns the names of these files.
"""

from __future__ import annotations

from pathlib import Path

from ...fileio import atomic_path, write_json_atomic
from ...pipeline.formats import VOCAB_FILE
from ...tokenization import bert_tokenizer, read_vocab

TOKENIZER_JSON_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"  # do_lower_case (Hugging Face's name and key)
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"
SPECIAL_TOKEN_ROLES = {
    "unk_token": "[UNK]",
    "sep_token": "[SEP]",
    "pad_token": "[PAD]",
    "cls_token": "[CLS]",
    "mask_token": "[MASK]",
}


def write_tokenizer_files(
    folder: Path, vocab: Path | list[str], lowercase: bool, *, max_length: int | None = None
) -> list[str]:
    """Write vocab.txt, tokenizer.json, tokenizer_config.json and special_tokens_map.json into `folder`.

    `vocab` is a vocab.txt (copied byte for byte) or its tokens; `lowercase` is the casing the model was
    trained with (BERT uncased normalization when true); `max_length`, when given, becomes the tokenizer's
    model_max_length. Each file is written under a temporary name and renamed. Returns the names written.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / VOCAB_FILE) as tmp:
        if isinstance(vocab, list):
            tmp.write_text("".join(f"{token}\n" for token in vocab), encoding="utf-8")
        else:
            tmp.write_bytes(Path(vocab).read_bytes())
    read_vocab(folder / VOCAB_FILE)  # checks it is a BERT vocab
    with atomic_path(folder / TOKENIZER_JSON_FILE) as tmp:
        tmp.write_text(bert_tokenizer(folder / VOCAB_FILE, lowercase).to_str(pretty=True), encoding="utf-8")
    write_json_atomic(folder / SPECIAL_TOKENS_MAP_FILE, SPECIAL_TOKEN_ROLES)
    write_json_atomic(folder / TOKENIZER_CONFIG_FILE, tokenizer_config(lowercase, max_length))
    return [TOKENIZER_JSON_FILE, TOKENIZER_CONFIG_FILE, SPECIAL_TOKENS_MAP_FILE, VOCAB_FILE]


def tokenizer_config(lowercase: bool, max_length: int | None) -> dict:
    """tokenizer_config.json: BertTokenizer with the normalization `bert_tokenizer` uses."""
    settings = {
        "tokenizer_class": "BertTokenizer",
        "do_lower_case": lowercase,
        "strip_accents": None,  # None: accents are stripped exactly when lowercasing (BERT's rule)
        "tokenize_chinese_chars": True,
        "clean_up_tokenization_spaces": False,
        **SPECIAL_TOKEN_ROLES,
    }
    if max_length is not None:
        settings["model_max_length"] = max_length
    return settings
