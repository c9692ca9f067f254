"""Every on-disk detail of sharebert's data, defined once.

Stage folders:
  PREPARED_DIR  (sharebert prepare)  {split}-{K:05d}-of-{N:05d}.parquet, vocab.txt, prepare.json
  SAMPLES_DIR   (sharebert mask)     {split}_shard_{K}.hdf5, manifest.json
Also the scratch files prepare keeps in its work folder (spills, the placement), the Parquet
columns, writer settings and token dtype, and the HDF5 dataset names and dtypes.
tests/test_formats_ownership.py fails when one of these names is written out in another module.

`prepare.json` and `manifest.json` are written last, atomically; their presence means the folder
is complete. Both carry a format version that readers check. docs/prepare.md (Parquet shards,
prepare.json) and docs/mask.md (HDF5 samples, manifest.json) describe them.
This module never imports torch; pyarrow and h5py are imported where they are used.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import DataError, file_error
from ..fileio import read_json, write_json_atomic

SPLITS = ("train", "test")


# ---------------------------------------------------------------- what prepare.json and manifest.json may hold
def listed_path(folder: str | Path, name: str, listed_in: str) -> Path:
    """FOLDER/name for a file that FOLDER/listed_in lists. Only a plain file name whose file (symlinks
    followed) lies inside the folder is accepted: a listing never makes a reader open a file elsewhere."""
    folder = Path(folder)
    problem = _listed_name_problem(name)
    if problem is None:
        try:
            target = (folder / name).resolve()
            if not target.is_relative_to(folder.resolve()):
                problem = f"leads to {target}, outside the folder"
        except (OSError, RuntimeError) as e:  # RuntimeError: a symlink loop
            problem = f"cannot be resolved ({e})"
    if problem is not None:
        raise file_error(
            folder / listed_in, f"lists {name!r}, which {problem}: listed files must be plain file names in the folder"
        )
    return folder / name


def _listed_name_problem(name: str) -> str | None:
    if name.startswith("/"):
        return "is an absolute path"
    if name in ("", ".", "..") or "/" in name or "\0" in name:
        return "is not a plain file name"
    return None


# JSON field types, by name: a description and a test. bool is an int in Python, never in these files.
_KINDS = {
    "string": ("a string", lambda v: isinstance(v, str)),
    "integer": ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    "count": ("an integer >= 0", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0),
    "positive": ("an integer >= 1", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1),
    "number": ("a number", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)),
    "boolean": ("true or false", lambda v: isinstance(v, bool)),
    "object": ("a JSON object", lambda v: isinstance(v, dict)),
    "split": (f"one of {', '.join(map(repr, SPLITS))}", lambda v: isinstance(v, str) and v in SPLITS),
}


def check_json_fields(path: str | Path, value, fields: dict) -> None:
    """Check the fields a reader relies on against `fields`: {name: kind of _KINDS, {nested fields} or
    [fields of every item of a list]}; a name ending in "?" may be absent or null. Other fields are not
    looked at. DataError naming the file and the field on the first mismatch."""
    problem = _fields_problem(value, fields, "")
    if problem is not None:
        raise file_error(path, problem)


def _fields_problem(value, spec, where: str) -> str | None:
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            return _type_problem(where, "a JSON object", value)
        for key, field_spec in spec.items():
            name = key.rstrip("?")
            inner = f"{where}.{name}" if where else name
            if value.get(name) is None:
                if key.endswith("?"):
                    continue
                return f"field {inner} is {'null' if name in value else 'missing'}"
            problem = _fields_problem(value[name], field_spec, inner)
            if problem is not None:
                return problem
        return None
    if isinstance(spec, list):
        if not isinstance(value, list):
            return _type_problem(where, "a JSON list", value)
        for i, item in enumerate(value):
            problem = _fields_problem(item, spec[0], f"{where}[{i}]")
            if problem is not None:
                return problem
        return None
    description, fits = _KINDS[spec]
    return None if fits(value) else _type_problem(where, description, value)


def _type_problem(where: str, expected: str, value) -> str:
    shown = json.dumps(value, ensure_ascii=False)
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    return f"field {where or '(the whole file)'} must be {expected}, not {shown}"


# ---------------------------------------------------------------- prepared shards (Parquet)
PREPARE_FORMAT_VERSION = 1
PREPARE_INFO_FILE = "prepare.json"
VOCAB_FILE = "vocab.txt"
SHARD_SUFFIX = ".parquet"
TOKEN_DTYPE = "int32"  # of every token id in the shards (and the spills)

# Columns of a shard, in schema order (the spills of prepare carry them too).
ID_COLUMN = "id"
SOURCE_COLUMN = "source"
SENTENCES_COLUMN = "sentences"
TEXT_COLUMN = "text"  # only with --keep-text

# Parquet writer settings (prepare.json records them under "settings").
SHARD_COMPRESSION = "zstd"
SHARD_COMPRESSION_LEVEL = 3
ROW_GROUP_ROWS = 1024  # a row group closes at this many documents or tokens, whichever comes first
ROW_GROUP_TOKENS = 1 << 19

_SHARD_NAME = re.compile(r"^(train|test)-(\d{5})-of-(\d{5})" + re.escape(SHARD_SUFFIX) + "$")


def shard_file_name(split: str, index: int, count: int) -> str:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}")
    return f"{split}-{index:05d}-of-{count:05d}{SHARD_SUFFIX}"


def parse_shard_file_name(name: str) -> tuple[str, int, int] | None:
    """(split, index, count) for a shard file name, None for any other name."""
    m = _SHARD_NAME.match(name)
    return (m.group(1), int(m.group(2)), int(m.group(3))) if m else None


def token_arrow_type():
    """TOKEN_DTYPE as a pyarrow type."""
    import pyarrow as pa

    return pa.type_for_alias(TOKEN_DTYPE)


def sentences_arrow_type():
    """The type of the sentences column: one list of token ids per sentence, a list of those per document."""
    import pyarrow as pa

    return pa.list_(pa.list_(token_arrow_type()))


def shard_columns(keep_text: bool) -> list[str]:
    return [ID_COLUMN, SOURCE_COLUMN, SENTENCES_COLUMN] + ([TEXT_COLUMN] if keep_text else [])


def parquet_schema(keep_text: bool):
    """One row per document: id, source, sentences as lists of token ids, optionally their text."""
    import pyarrow as pa

    types = {
        ID_COLUMN: pa.string(),
        SOURCE_COLUMN: pa.string(),
        SENTENCES_COLUMN: sentences_arrow_type(),
        TEXT_COLUMN: pa.list_(pa.string()),
    }
    return pa.schema([pa.field(name, types[name], nullable=False) for name in shard_columns(keep_text)])


def parquet_writer_options() -> dict:
    """Keyword arguments of pyarrow.parquet.ParquetWriter for a shard (row groups are cut by the writer)."""
    return {
        "compression": SHARD_COMPRESSION,
        "compression_level": SHARD_COMPRESSION_LEVEL,
        "use_dictionary": [SOURCE_COLUMN],
        "write_statistics": False,
    }


# The fields of prepare.json its readers rely on, with their types (check_json_fields; docs/prepare.md).
_PREPARE_INFO_FIELDS = {
    "format_version": "integer",
    "vocab?": {"sha256?": "string", "size?": "positive", "lowercase?": "boolean"},
    "shards": [
        {
            "file": "string",
            "split": "split",
            "index": "count",
            "bytes": "count",
            "sha256?": "string",
            "documents?": "count",
            "sentences?": "count",
            "tokens?": "count",
        }
    ],
    "totals?": "object",
    "settings?": "object",
}


def read_prepare_info(folder: str | Path) -> dict:
    """Load and check PREPARED_DIR/prepare.json: present, of our format version and field types, its
    shards plain file names in the folder, present and of their listed sizes."""
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
    check_json_fields(path, info, _PREPARE_INFO_FIELDS)
    for shard in info["shards"]:
        shard_path = listed_path(folder, shard["file"], PREPARE_INFO_FILE)
        if not shard_path.exists():
            raise file_error(shard_path, "listed in prepare.json but missing")
        if shard_path.stat().st_size != shard["bytes"]:
            raise file_error(shard_path, "size differs from prepare.json (file changed after prepare)")
    if not (folder / VOCAB_FILE).exists():
        raise file_error(folder / VOCAB_FILE, "missing: prepare always copies the vocab here")
    return info


# ---------------------------------------------------------------- scratch files of `sharebert prepare`
# Inside its work folder, removed when the run completes; a resumed run reuses them.
PLACEMENT_FILE = "placement.npz"  # numpy arrays of balance.Placement (phase 2)
SPILL_SUFFIX = ".arrow"  # Arrow IPC files: no Parquet encoding to pay for, read back memory-mapped
SPILL_COMPRESSION = "lz4"
SPILL_TOKENS_COLUMN = "tokens"  # token spills only: the token count of each document (int64)


def spill_file_name(index: int, tokenized: bool) -> str:
    """The spill of batch `index`: a token spill, or a text spill (sentences as strings, before a vocab)."""
    return f"{'batch' if tokenized else 'text'}-{index:06d}{SPILL_SUFFIX}"


# ---------------------------------------------------------------- pretraining samples (HDF5)
MANIFEST_FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
SAMPLE_SUFFIX = ".hdf5"

# HDF5 dataset names. The trainer's model takes keyword arguments of the same names, which are its own.
INPUT_IDS = "input_ids"
INPUT_MASK = "input_mask"
SEGMENT_IDS = "segment_ids"
MASKED_LM_POSITIONS = "masked_lm_positions"
MASKED_LM_IDS = "masked_lm_ids"
NEXT_SENTENCE_LABELS = "next_sentence_labels"

HDF5_CHUNK_ROWS = 1024
HDF5_COMPRESSION = "gzip"
HDF5_COMPRESSION_LEVEL = 1  # measured: level 4 writes ~1.5x slower for ~3% smaller files (docs/mask.md)
HDF5_SHUFFLE = True  # byte-shuffle filter before gzip (built into HDF5): smaller and faster

# name -> (numpy dtype, shape after the row axis: "S" = max_seq_length, "M" = max_predictions_per_seq)
SAMPLE_DATASETS = {
    INPUT_IDS: ("int32", "S"),
    INPUT_MASK: ("int8", "S"),
    SEGMENT_IDS: ("int8", "S"),
    MASKED_LM_POSITIONS: ("int32", "M"),
    MASKED_LM_IDS: ("int32", "M"),
}
NSP_DATASET = (NEXT_SENTENCE_LABELS, "int8")  # shape [N], only when NSP is on

_SAMPLE_NAME = re.compile(r"^(train|test)_shard_(\d+)" + re.escape(SAMPLE_SUFFIX) + "$")


def sample_datasets(nsp: bool) -> dict[str, tuple[str, str | None]]:
    """The datasets of a sample file: name -> (numpy dtype, width "S" / "M" as in SAMPLE_DATASETS, or
    None for one value per row)."""
    datasets: dict[str, tuple[str, str | None]] = dict(SAMPLE_DATASETS)
    if nsp:
        name, dtype = NSP_DATASET
        datasets[name] = (dtype, None)
    return datasets


def sample_shapes(nsp: bool, max_seq_length: int, max_predictions_per_seq: int) -> dict[str, tuple[str, tuple]]:
    """name -> (numpy dtype, shape after the row axis) of the datasets of a sample file."""
    widths = {"S": (max_seq_length,), "M": (max_predictions_per_seq,), None: ()}
    return {name: (dtype, widths[width]) for name, (dtype, width) in sample_datasets(nsp).items()}


def sample_file_name(split: str, index: int) -> str:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}")
    return f"{split}_shard_{index}{SAMPLE_SUFFIX}"


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


# The fields of manifest.json its readers rely on, with their types (check_json_fields; docs/mask.md).
_MANIFEST_FIELDS = {
    "format_version": "integer",
    "settings": {
        "max_seq_length": "positive",
        "max_predictions_per_seq": "positive",
        "masked_lm_prob": "number",
        "nsp?": "boolean",
        "whole_word_masking?": "boolean",
    },
    "vocab": {
        "sha256?": "string",
        "size": "positive",
        "special_ids": dict.fromkeys(("pad", "unk", "cls", "sep", "mask"), "count"),
    },
    "prepare": "object",
    "files": [
        {
            "name": "string",
            "split": "split",
            "rows": "count",
            "bytes": "count",
            "sha256": "string",
            "source_shard": "string",
            "duplicate": "count",
        }
    ],
    "totals?": "object",
    "stats?": "object",
    "sharebert_version?": "string",
}


def write_manifest(folder: str | Path, manifest: Manifest) -> None:
    write_json_atomic(Path(folder) / MANIFEST_FILE, manifest.to_dict())


def read_manifest(folder: str | Path, check: str = "size") -> Manifest:
    """Load SAMPLES_DIR/manifest.json and check the files against it.

    Always: the fields have their types and every listed file is a plain name in the folder (listed_path).
    check: "none" (nothing more), "size" (files exist with the listed byte sizes; fast), or "sha256"
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
    check_json_fields(path, raw, _MANIFEST_FIELDS)
    try:
        manifest = Manifest.from_dict(raw)
    except (KeyError, TypeError) as e:
        raise file_error(path, f"malformed manifest ({e})") from None
    for f in manifest.files:
        listed_path(folder, f.name, MANIFEST_FILE)
    if check != "none":
        verify_manifest_files(folder, manifest, hash_files=(check == "sha256"))
    return manifest


def verify_manifest_files(folder: Path, manifest: Manifest, hash_files: bool) -> None:
    from ..fileio import sha256_file

    for f in manifest.files:
        p = listed_path(folder, f.name, MANIFEST_FILE)
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
    "ID_COLUMN",
    "INPUT_IDS",
    "INPUT_MASK",
    "MANIFEST_FILE",
    "MANIFEST_FORMAT_VERSION",
    "MASKED_LM_IDS",
    "MASKED_LM_POSITIONS",
    "MASK_STATE_DIR",
    "NEXT_SENTENCE_LABELS",
    "NSP_DATASET",
    "PLACEMENT_FILE",
    "PREPARE_FORMAT_VERSION",
    "PREPARE_INFO_FILE",
    "ROW_GROUP_ROWS",
    "ROW_GROUP_TOKENS",
    "SAMPLE_DATASETS",
    "SAMPLE_SUFFIX",
    "SEGMENT_IDS",
    "SENTENCES_COLUMN",
    "SHARD_COMPRESSION",
    "SHARD_COMPRESSION_LEVEL",
    "SHARD_SUFFIX",
    "SOURCE_COLUMN",
    "SPILL_COMPRESSION",
    "SPILL_SUFFIX",
    "SPILL_TOKENS_COLUMN",
    "SPLITS",
    "TEXT_COLUMN",
    "TOKEN_DTYPE",
    "VOCAB_FILE",
    "DataError",
    "Manifest",
    "SampleFile",
    "check_json_fields",
    "listed_path",
    "parquet_schema",
    "parquet_writer_options",
    "parse_sample_file_name",
    "parse_shard_file_name",
    "read_manifest",
    "read_prepare_info",
    "sample_datasets",
    "sample_file_name",
    "sample_shapes",
    "sentences_arrow_type",
    "shard_columns",
    "shard_file_name",
    "spill_file_name",
    "token_arrow_type",
    "write_manifest",
]
