"""Writes small SAMPLES_DIR folders (HDF5 sample files + manifest.json + vocab.txt) for the pretrain tests.

The samples follow the layout of `formats.SAMPLE_DATASETS` exactly, but their text is generated: each
sequence walks through a small vocabulary with a fixed stride, so a masked token is predictable from its
neighbours and a model's loss falls quickly. Used where `sharebert mask` output is not wanted (speed) or
where a test needs a particular shape (uneven files, a wrong vocab size, a damaged file). `pretrain_argv` is
the command line that trains on such a folder.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from sharebert.fileio import sha256_file
from sharebert.pipeline import formats

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PAD, UNK, CLS, SEP, MASK = range(5)


def write_vocab(path: Path, vocab_size: int) -> Path:
    words = [f"w{i}" for i in range(vocab_size - len(SPECIALS))]
    path.write_text("\n".join(SPECIALS + words) + "\n", encoding="utf-8")
    return path


def make_samples(rows: int, seq_len: int, max_pred: int, vocab_size: int, rng: np.random.Generator) -> dict:
    """`rows` masked samples as the arrays of formats.SAMPLE_DATASETS."""
    first_word, n_words = len(SPECIALS), min(vocab_size - len(SPECIALS), 200)
    lengths = rng.integers(seq_len // 2, seq_len + 1, size=rows)
    starts = rng.integers(0, n_words, size=rows)
    strides = rng.integers(1, 4, size=rows)
    cols = np.arange(seq_len)
    words = first_word + (starts[:, None] + strides[:, None] * cols[None, :]) % n_words
    ids = np.where(cols[None, :] < lengths[:, None] - 1, words, PAD)
    ids[:, 0] = CLS
    ids[np.arange(rows), lengths - 1] = SEP
    input_mask = (cols[None, :] < lengths[:, None]).astype(np.int8)
    positions = np.zeros((rows, max_pred), np.int32)
    labels = np.zeros((rows, max_pred), np.int32)
    for r in range(rows):
        n = min(max_pred, max(1, round(0.15 * (lengths[r] - 2))))
        chosen = np.sort(rng.choice(np.arange(1, lengths[r] - 1), size=n, replace=False))
        positions[r, :n] = chosen
        labels[r, :n] = ids[r, chosen]
        ids[r, chosen] = MASK
    segments = np.zeros((rows, seq_len), np.int8)
    return {
        "input_ids": ids.astype(np.int32),
        "input_mask": input_mask,
        "segment_ids": segments,
        "masked_lm_positions": positions,
        "masked_lm_ids": labels,
    }


def write_sample_file(path: Path, arrays: dict) -> None:
    with h5py.File(path, "w") as f:
        for name, (dtype, _) in formats.SAMPLE_DATASETS.items():
            data = np.asarray(arrays[name], dtype=dtype)
            chunks = (min(formats.HDF5_CHUNK_ROWS, max(1, len(data))),) + data.shape[1:]
            f.create_dataset(name, data=data, chunks=chunks, compression="gzip", compression_opts=1)


def write_samples(
    folder,
    train_rows: Sequence[int] = (300, 120, 700),
    test_rows: Sequence[int] = (200,),
    *,
    seq_len: int = 32,
    max_pred: int = 5,
    vocab_size: int = 1024,
    seed: int = 0,
    manifest_vocab_size: int | None = None,
) -> Path:
    """Write a complete SAMPLES_DIR; `manifest_vocab_size` lets a test record a vocab size that disagrees."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    vocab = write_vocab(folder / formats.VOCAB_FILE, vocab_size)
    files = []
    for split, counts in (("train", train_rows), ("test", test_rows)):
        for k, rows in enumerate(counts):
            name = formats.sample_file_name(split, k)
            write_sample_file(folder / name, make_samples(rows, seq_len, max_pred, vocab_size, rng))
            path = folder / name
            files.append(
                formats.SampleFile(
                    name=name,
                    split=split,
                    rows=int(rows),
                    bytes=path.stat().st_size,
                    sha256=sha256_file(path),
                    source_shard=f"{split}-{k}",
                    duplicate=0,
                )
            )
    totals = {
        s: {
            "files": sum(f.split == s for f in files),
            "samples": sum(f.rows for f in files if f.split == s),
            "bytes": sum(f.bytes for f in files if f.split == s),
        }
        for s in formats.SPLITS
    }
    manifest = formats.Manifest(
        settings={
            "max_seq_length": seq_len,
            "max_predictions_per_seq": max_pred,
            "masked_lm_prob": 0.15,
            "short_seq_prob": 0.1,
            "dup_factor": 1,
            "seed": seed,
            "nsp": False,
            "lowercase": True,
        },
        vocab={
            "sha256": sha256_file(vocab),
            "size": manifest_vocab_size or vocab_size,
            "special_ids": {"pad": PAD, "unk": UNK, "cls": CLS, "sep": SEP, "mask": MASK},
        },
        prepare={},
        files=files,
        totals=totals,
        sharebert_version="test",
    )
    formats.write_manifest(folder, manifest)
    return folder


def write_numbered_samples(
    folder, train_rows: Sequence[int], test_rows: Sequence[int] = (), *, seq_len: int = 8, max_pred: int = 2
) -> Path:
    """Samples whose input_ids[:, 1] is a number unique in the folder (train and test), to trace each row."""
    total = sum(train_rows) + sum(test_rows)
    folder = write_samples(
        folder, train_rows, test_rows, seq_len=seq_len, max_pred=max_pred, vocab_size=total + len(SPECIALS) + 8
    )
    manifest = formats.read_manifest(folder, check="none")
    number = len(SPECIALS)
    for f in manifest.files:
        path = folder / f.name
        with h5py.File(path, "r+") as h:
            ids = h["input_ids"][:]
            ids[:, 1] = np.arange(number, number + f.rows)
            positions = h["masked_lm_positions"][:]
            labels = h["masked_lm_ids"][:]
            labels[positions == 1] = 0  # position 1 carries the number: never masked
            positions[positions == 1] = 0
            h["input_ids"][:] = ids
            h["masked_lm_positions"][:] = positions
            h["masked_lm_ids"][:] = labels
        number += f.rows
    files = [
        formats.SampleFile(
            **{**f.__dict__, "bytes": (folder / f.name).stat().st_size, "sha256": sha256_file(folder / f.name)}
        )
        for f in manifest.files
    ]
    manifest.files = files
    formats.write_manifest(folder, manifest)
    return folder


def pretrain_argv(samples: Path, out: Path, flags: str = "") -> list[str]:
    """`sharebert pretrain` arguments that train on `samples` into `out`, then `flags` (split as a shell would)."""
    return ["pretrain", "--dataset_path", str(samples), "--output_dir", str(out), *shlex.split(flags)]


def row_numbers(input_ids) -> list[int]:
    """The numbers written by write_numbered_samples, from a batch of input_ids."""
    return [int(x) - len(SPECIALS) for x in np.asarray(input_ids)[:, 1]]
