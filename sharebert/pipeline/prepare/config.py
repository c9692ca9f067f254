"""The settings of `sharebert prepare` (`PrepareConfig`), checked when made: what the stage reads and how
it shards. docs/prepare.md lists the options.

Kept light (no numpy, blingfire): the command line reads its defaults from here."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import ConfigError
from .. import formats
from ..engines import check_engine
from ..parallel import default_workers

INPUT_KINDS = ("wiki", "books", "text", "hf", "builtin")
DEFAULT_TRAIN_VOCAB = 30522
MIN_TRAIN_VOCAB = 32
MAX_SHARDS = 99999  # shard names carry five digits


@dataclass(frozen=True)
class InputSpec:
    kind: str  # one of INPUT_KINDS
    path: str  # as the user gave it (a hub name for hf, ignored for builtin)


@dataclass
class PrepareConfig:
    output_dir: Path
    inputs: list[InputSpec] = field(default_factory=list)  # empty: the built-in corpus
    vocab: Path | None = None  # a BERT vocab.txt; None: train one (train_vocab tokens)
    train_vocab: int | None = None
    lowercase: bool = True
    num_train_shards: int = 16
    num_test_shards: int = 2
    frac_test: float = 0.1
    seed: int = 42
    workers: int | None = None  # None: every core (parallel.default_workers), every CPU of a Ray cluster
    engine: str = "local"  # engines.ENGINES: this machine's process pool, or a Ray cluster (docs/cluster.md)
    ray_address: str | None = None  # --engine ray: the cluster ("auto", host:port); None: RAY_ADDRESS, or start one
    keep_text: bool = False
    overwrite: bool = False
    text_column: str = "text"
    hf_split: str = "train"

    def __post_init__(self):
        self.output_dir = Path(self.output_dir)
        self.inputs = [i if isinstance(i, InputSpec) else InputSpec(*i) for i in self.inputs]
        self.used_default_input = not self.inputs
        if not self.inputs:
            self.inputs = [InputSpec("builtin", "python-stdlib")]
        for spec in self.inputs:
            if spec.kind not in INPUT_KINDS:
                raise ConfigError(f"input kind {spec.kind!r} is not one of {', '.join(INPUT_KINDS)}")
        seen = set()
        for spec in self.inputs:
            key = (spec.kind, spec.path if spec.kind in ("hf", "builtin") else os.path.realpath(spec.path))
            if key in seen:
                raise ConfigError(f"input --{spec.kind} {spec.path} is given twice")
            seen.add(key)
        if self.vocab is not None and self.train_vocab is not None:
            raise ConfigError("give either --vocab FILE or --train-vocab SIZE, not both")
        if self.vocab is None and self.train_vocab is None:
            self.train_vocab = DEFAULT_TRAIN_VOCAB
        if self.vocab is not None:
            self.vocab = Path(self.vocab)
        if self.train_vocab is not None and not (
            isinstance(self.train_vocab, int) and self.train_vocab >= MIN_TRAIN_VOCAB
        ):
            raise ConfigError(f"--train-vocab must be an integer >= {MIN_TRAIN_VOCAB}, got {self.train_vocab!r}")
        _check_int("--num-train-shards", self.num_train_shards, 1, MAX_SHARDS)
        _check_int("--num-test-shards", self.num_test_shards, 0, MAX_SHARDS)
        _check_int("--seed", self.seed, 0, 2**63 - 1)
        check_engine(self.engine, self.ray_address)
        if self.workers is None and self.engine == "local":
            self.workers = default_workers()
        if self.workers is not None:
            _check_int("--workers", self.workers, 1, 4096)
        if not (isinstance(self.frac_test, (int, float)) and 0.0 <= self.frac_test < 1.0):
            raise ConfigError(f"--frac-test must be in [0, 1), got {self.frac_test!r}")
        if self.num_test_shards > 0 and self.frac_test == 0:
            raise ConfigError(f"--num-test-shards {self.num_test_shards} needs --frac-test > 0")
        if self.num_test_shards == 0 and self.frac_test > 0:
            raise ConfigError(f"--frac-test {self.frac_test} needs --num-test-shards >= 1 (or use --frac-test 0)")
        if not self.text_column:
            raise ConfigError("--text-column must not be empty")

    def settings(self) -> dict:
        """Every setting that shapes the output (not --workers or --overwrite: they never change it)."""
        # Imported here: the command line reads this module's defaults without loading numpy and blingfire.
        from .balance import MAX_IMBALANCE
        from .segment import MAX_SENTENCE_CHARS

        return {
            "seed": self.seed,
            "num_train_shards": self.num_train_shards,
            "num_test_shards": self.num_test_shards,
            "frac_test": self.frac_test,
            "lowercase": self.lowercase,
            "vocab": str(self.vocab) if self.vocab is not None else None,
            "train_vocab": self.train_vocab,
            "keep_text": self.keep_text,
            "text_column": self.text_column,
            "hf_split": self.hf_split,
            "max_imbalance": MAX_IMBALANCE,
            "max_sentence_chars": MAX_SENTENCE_CHARS,
            "row_group_rows": formats.ROW_GROUP_ROWS,
            "row_group_tokens": formats.ROW_GROUP_TOKENS,
            "compression": formats.SHARD_COMPRESSION,
        }


def _check_int(name: str, value, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
