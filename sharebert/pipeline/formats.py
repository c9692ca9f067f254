"""Every on-disk detail of sharebert's data, defined once.

Stage folders:
  PREPARED_DIR  (sharebert prepare)  {split}-{K:05d}-of-{N:05d}.parquet, vocab.txt, prepare.json
  SAMPLES_DIR   (sharebert mask)     {split}_shard_{K}.hdf5, manifest.json

`prepare.json` and `manifest.json` are written last, atomically; their presence means the folder
is complete. Both carry a format version that readers check. docs/prepare.md (Parquet shards,
prepare.json) and docs/mask.md (HDF5 samples, manifest.json) describe them.
This module never imports torch; pyarrow and h5py are imported where they are used.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import DataError, file_error
from ..fileio import read_json, write_json_atomic

SPLITS = ("train", "test")

# ---------------------------------------------------------------- prepared shards (Parquet)
PREPARE_FORMAT_VERSION = 1
PREPARE_INFO_FILE = "prepare.json"
VOCAB_FILE = "vocab.txt"
TOKEN_DTYPE = "int32"

_SHARD_NAME = re.compile(r"^(train|test)-(\d{5})-of-(\d{5})\.parquet$")


def shard_file_name(split: str, index: int, count: int) -> str:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}")
    return f"{split}-{index:05d}-of-{count:05d}.parquet"


def parse_shard_file_name(name: str) -> tuple[str, int, int] | None:
    """(split, index, count) for a shard file name, None for any other name."""
    m = _SHARD_NAME.match(name)
    return (m.group(1), int(m.group(2)), int(m.group(3))) if m else None


def parquet_schema(keep_text: bool):
    """One row per document: id, source, sentences as lists of token ids, optionally their text."""
    import pyarrow as pa

    fields = [
        pa.field("id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("sentences", pa.list_(pa.list_(pa.int32())), nullable=False),
    ]
    if keep_text:
        fields.append(pa.field("text", pa.list_(pa.string()), nullable=False))
    return pa.schema(fields)


def read_prepare_info(folder: str | Path) -> dict:
    """Load and check PREPARED_DIR/prepare.json: present, of our format version, its shards present."""
    folder = Path(folder)
    path = folder / PREPARE_INFO_FILE
    if not folder.is_dir():
        raise file_error(folder, "not a folder (expected the output of `sharebert prepare`)")
    if not path.exists():
        raise file_error(path, "missing: the folder is not a complete `sharebert prepare` output")
    info = read_json(path)
    version = info.get("format_version") if isinstance(info, dict) else None
    if version != PREPARE_FORMAT_VERSION:
        raise file_error(path, f"format version {version!r} is not the supported {PREPARE_FORMAT_VERSION}")
    for shard in info.get("shards", []):
        shard_path = folder / shard["file"]
        if not shard_path.exists():
            raise file_error(shard_path, "listed in prepare.json but missing")
        if shard_path.stat().st_size != shard["bytes"]:
            raise file_error(shard_path, "size differs from prepare.json (file changed after prepare)")
    if not (folder / VOCAB_FILE).exists():
        raise file_error(folder / VOCAB_FILE, "missing: prepare always copies the vocab here")
    return info


# ---------------------------------------------------------------- pretraining samples (HDF5)
MANIFEST_FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
HDF5_CHUNK_ROWS = 1024
HDF5_COMPRESSION = "gzip"
HDF5_COMPRESSION_LEVEL = 1  # measured: level 4 writes ~1.5x slower for ~3% smaller files (docs/mask.md)
HDF5_SHUFFLE = True  # byte-shuffle filter before gzip (built into HDF5): smaller and faster

# name -> (numpy dtype, shape after the row axis: "S" = max_seq_length, "M" = max_predictions_per_seq)
SAMPLE_DATASETS = {
    "input_ids": ("int32", "S"),
    "input_mask": ("int8", "S"),
    "segment_ids": ("int8", "S"),
    "masked_lm_positions": ("int32", "M"),
    "masked_lm_ids": ("int32", "M"),
}
NSP_DATASET = ("next_sentence_labels", "int8")  # shape [N], only when NSP is on

_SAMPLE_NAME = re.compile(r"^(train|test)_shard_(\d+)\.hdf5$")


def sample_file_name(split: str, index: int) -> str:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}")
    return f"{split}_shard_{index}.hdf5"


def parse_sample_file_name(name: str) -> tuple[str, int] | None:
    m = _SAMPLE_NAME.match(name)
    return (m.group(1), int(m.group(2))) if m else None


@dataclass(frozen=True)
class SampleFile:
    """One HDF5 file as the manifest lists it."""

    name: str
    split: str
    rows: int
    bytes: int
    sha256: str
    source_shard: str  # the prepared Parquet shard it was made from
    duplicate: int  # duplicate index in [0, dup_factor)


@dataclass
class Manifest:
    """SAMPLES_DIR/manifest.json: the only description `sharebert pretrain` is given."""

    settings: dict  # max_seq_length, max_predictions_per_seq, masked_lm_prob, short_seq_prob,
    # dup_factor, seed, nsp, whole_word_masking, lowercase, ...
    vocab: dict  # {"sha256", "size", "special_ids": {"pad","unk","cls","sep","mask"}}
    prepare: dict  # the source prepare.json, verbatim
    files: list[SampleFile]
    totals: dict = field(default_factory=dict)  # per split: files, samples, bytes
    stats: dict = field(default_factory=dict)  # sample statistics, per split
    format_version: int = MANIFEST_FORMAT_VERSION
    sharebert_version: str = ""

    # Convenience accessors the trainer relies on.
    @property
    def max_seq_length(self) -> int:
        return int(self.settings["max_seq_length"])

    @property
    def max_predictions_per_seq(self) -> int:
        return int(self.settings["max_predictions_per_seq"])

    @property
    def vocab_size(self) -> int:
        return int(self.vocab["size"])

    @property
    def nsp(self) -> bool:
        return bool(self.settings.get("nsp", False))

    def files_of(self, split: str) -> list[SampleFile]:
        return [f for f in self.files if f.split == split]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["files"] = [asdict(f) for f in self.files]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Manifest:
        d = dict(d)
        d["files"] = [SampleFile(**f) for f in d["files"]]
        return cls(**d)


def write_manifest(folder: str | Path, manifest: Manifest) -> None:
    write_json_atomic(Path(folder) / MANIFEST_FILE, manifest.to_dict())


def read_manifest(folder: str | Path, check: str = "size") -> Manifest:
    """Load SAMPLES_DIR/manifest.json and check the files against it.

    check: "none" (only parse), "size" (files exist with the listed byte sizes; fast), or "sha256"
    (also hash every file). Any mismatch raises DataError naming the file.
    """
    folder = Path(folder)
    path = folder / MANIFEST_FILE
    if not folder.is_dir():
        raise file_error(folder, "not a folder (expected the output of `sharebert mask`)")
    if not path.exists():
        raise file_error(path, "missing: the folder is not a complete `sharebert mask` output")
    raw = read_json(path)
    version = raw.get("format_version") if isinstance(raw, dict) else None
    if version != MANIFEST_FORMAT_VERSION:
        raise file_error(path, f"format version {version!r} is not the supported {MANIFEST_FORMAT_VERSION}")
    try:
        manifest = Manifest.from_dict(raw)
    except (KeyError, TypeError) as e:
        raise file_error(path, f"malformed manifest ({e})") from None
    if check != "none":
        verify_manifest_files(folder, manifest, hash_files=(check == "sha256"))
    return manifest


def verify_manifest_files(folder: Path, manifest: Manifest, hash_files: bool) -> None:
    from ..fileio import sha256_file

    for f in manifest.files:
        p = Path(folder) / f.name
        if not p.exists():
            raise file_error(p, f"listed in {MANIFEST_FILE} but missing")
        size = p.stat().st_size
        if size != f.bytes:
            raise file_error(p, f"{size} bytes but {MANIFEST_FILE} says {f.bytes}: file changed after `sharebert mask`")
        if hash_files and sha256_file(p) != f.sha256:
            raise file_error(p, f"sha256 differs from {MANIFEST_FILE}: file changed after `sharebert mask`")


# ---------------------------------------------------------------- work and state files of a run folder
# Hidden inside a stage's output folder: what a rerun needs to resume, or to refuse another run.
# pipeline/run_folder.py manages them; docs/prepare.md and docs/mask.md describe them.
# PREPARED_DIR/.prepare-work/ holds the run file, the records and the run's scratch files; it is removed
# when prepare finishes.
PREPARE_WORK_DIR = ".prepare-work"
PREPARE_RUN_FILE = "run.json"  # {"identity": ..., "resume_key": ...}
PREPARE_RECORDS_DIR = "shards"  # one NAME.json per finished shard: its prepare.json entry
# SAMPLES_DIR/.mask-state/ stays after mask finishes: a rerun checks every file against its record.
MASK_STATE_DIR = ".mask-state"
MASK_RUN_FILE = "settings.json"  # the run's identity: settings, sha256 of prepare.json and of the vocab
MASK_RECORDS_DIR = "done"  # one NAME.json per finished file: its SampleFile entry and counts


__all__ = [
    "HDF5_CHUNK_ROWS",
    "HDF5_COMPRESSION",
    "HDF5_COMPRESSION_LEVEL",
    "HDF5_SHUFFLE",
    "MANIFEST_FILE",
    "MANIFEST_FORMAT_VERSION",
    "MASK_STATE_DIR",
    "NSP_DATASET",
    "PREPARE_FORMAT_VERSION",
    "PREPARE_INFO_FILE",
    "SAMPLE_DATASETS",
    "SPLITS",
    "VOCAB_FILE",
    "DataError",
    "Manifest",
    "SampleFile",
    "parquet_schema",
    "parse_sample_file_name",
    "parse_shard_file_name",
    "read_manifest",
    "read_prepare_info",
    "sample_file_name",
    "shard_file_name",
    "write_manifest",
]
