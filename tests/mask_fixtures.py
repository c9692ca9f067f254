"""Test helpers for `sharebert mask`: a small generated vocab and PREPARED_DIR folders written directly.

A PREPARED_DIR made here follows CONTRACTS.md (Parquet shards with formats.parquet_schema, vocab.txt,
prepare.json with the keys mask relies on), so the mask tests do not depend on `sharebert prepare`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sharebert.fileio import sha256_file, write_json_atomic
from sharebert.pipeline import formats
from sharebert.tokenization import SPECIAL_TOKENS

WORDS = [f"w{i}" for i in range(300)]
PIECES = [f"##p{i}" for i in range(100)]
SMALL_VOCAB = list(SPECIAL_TOKENS) + [f"[unused{i}]" for i in range(5)] + WORDS + PIECES


def write_vocab(path: Path, tokens: list[str] = SMALL_VOCAB) -> Path:
    path.write_text("".join(t + "\n" for t in tokens), encoding="utf-8")
    return path


def random_documents(
    rng: np.random.Generator, n_docs: int, token_ids: np.ndarray, max_sentences: int = 25, max_len: int = 40
):
    """Documents as lists of sentences of token ids (never empty)."""
    return [
        [
            rng.choice(token_ids, size=int(rng.integers(1, max_len + 1))).tolist()
            for _ in range(int(rng.integers(1, max_sentences + 1)))
        ]
        for _ in range(n_docs)
    ]


def write_prepared_dir(
    folder: Path, vocab_file: Path, shards: dict[tuple[str, int], list], lowercase: bool = True
) -> Path:
    """shards: {(split, index): documents}; writes Parquet shards, vocab.txt and prepare.json."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    counts = {split: sum(1 for s, _ in shards if s == split) for split in formats.SPLITS}
    entries = []
    for (split, index), docs in sorted(shards.items(), key=lambda kv: (formats.SPLITS.index(kv[0][0]), kv[0][1])):
        name = formats.shard_file_name(split, index, counts[split])
        table = pa.Table.from_pydict(
            {
                "id": [f"doc:{split}:{index}:{i}" for i in range(len(docs))],
                "source": ["test:generated"] * len(docs),
                "sentences": docs,
            },
            schema=formats.parquet_schema(False),
        )
        pq.write_table(table, folder / name)
        entries.append(
            {
                "file": name,
                "split": split,
                "index": index,
                "documents": len(docs),
                "sentences": sum(len(d) for d in docs),
                "tokens": sum(len(s) for d in docs for s in d),
                "bytes": (folder / name).stat().st_size,
                "sha256": sha256_file(folder / name),
            }
        )
    (folder / formats.VOCAB_FILE).write_bytes(Path(vocab_file).read_bytes())
    vocab_size = len((folder / formats.VOCAB_FILE).read_text(encoding="utf-8").splitlines())
    totals = {
        split: {
            "shards": counts[split],
            **{k: sum(e[k] for e in entries if e["split"] == split) for k in ("documents", "sentences", "tokens")},
        }
        for split in formats.SPLITS
    }
    write_json_atomic(
        folder / formats.PREPARE_INFO_FILE,
        {
            "format_version": formats.PREPARE_FORMAT_VERSION,
            "sharebert_version": "test",
            "vocab": {
                "file": formats.VOCAB_FILE,
                "sha256": sha256_file(folder / formats.VOCAB_FILE),
                "size": vocab_size,
                "lowercase": lowercase,
                "trained": False,
            },
            "shards": entries,
            "totals": totals,
            "settings": {"seed": 0, "num_train_shards": counts["train"], "num_test_shards": counts["test"]},
            "inputs": [{"kind": "generated", "path": "-", "bytes": 0}],
            "versions": {},
        },
    )
    return folder


def small_prepared_dir(
    folder: Path, vocab_file: Path, seed: int = 0, train_shards: int = 2, test_shards: int = 1, docs: int = 30
) -> Path:
    from sharebert.tokenization import read_vocab, replacement_token_ids

    rng = np.random.default_rng(seed)
    ids = replacement_token_ids(read_vocab(vocab_file))
    shards = {("train", i): random_documents(rng, docs, ids) for i in range(train_shards)}
    shards.update({("test", i): random_documents(rng, docs // 2 + 1, ids) for i in range(test_shards)})
    return write_prepared_dir(folder, vocab_file, shards)
