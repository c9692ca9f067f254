"""The settings of `sharebert mask` (`MaskConfig`), checked when made. docs/mask.md lists the options.

Kept free of numpy and h5py, so that the command line reads its defaults without loading them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ...errors import ConfigError
from .. import formats
from ..engines import check_engine
from ..parallel import default_workers

MIN_SEQ_LENGTH = 8


@dataclass(frozen=True)
class MaskConfig:
    prepared_dir: Path
    output_dir: Path
    max_seq_length: int = 128
    max_predictions_per_seq: int = 20
    masked_lm_prob: float = 0.15
    short_seq_prob: float = 0.1
    dup_factor: int = 5
    seed: int = 42
    nsp: bool = False
    whole_word_masking: bool = False
    workers: int | None = None  # None: every core (parallel.default_workers), every CPU of a Ray cluster
    engine: str = "local"  # engines.ENGINES: this machine's process pool, or a Ray cluster (docs/cluster.md)
    ray_address: str | None = None  # --engine ray: the cluster ("auto", host:port); None: RAY_ADDRESS, or start one
    overwrite: bool = False
    gzip_level: int = formats.HDF5_COMPRESSION_LEVEL

    def __post_init__(self):
        object.__setattr__(self, "prepared_dir", Path(self.prepared_dir))
        object.__setattr__(self, "output_dir", Path(self.output_dir))
        check_engine(self.engine, self.ray_address)
        if self.workers is None and self.engine == "local":
            object.__setattr__(self, "workers", default_workers())
        if self.max_seq_length < MIN_SEQ_LENGTH:
            raise ConfigError(f"max_seq_length must be at least {MIN_SEQ_LENGTH}, got {self.max_seq_length}")
        if not 1 <= self.max_predictions_per_seq <= self.max_seq_length - 2:
            raise ConfigError(
                f"max_predictions_per_seq must be in [1, max_seq_length - 2 = {self.max_seq_length - 2}], "
                f"got {self.max_predictions_per_seq}"
            )
        if not 0 < self.masked_lm_prob <= 1:
            raise ConfigError(f"masked_lm_prob must be in (0, 1], got {self.masked_lm_prob}")
        if not 0 <= self.short_seq_prob <= 1:
            raise ConfigError(f"short_seq_prob must be in [0, 1], got {self.short_seq_prob}")
        if self.dup_factor < 1:
            raise ConfigError(f"dup_factor must be at least 1, got {self.dup_factor}")
        if self.seed < 0:
            raise ConfigError(f"seed must be non-negative, got {self.seed}")
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"workers must be at least 1, got {self.workers}")
        if not 0 <= self.gzip_level <= 9:
            raise ConfigError(f"gzip_level must be in [0, 9], got {self.gzip_level}")
        if self.prepared_dir.resolve() == self.output_dir.resolve():
            raise ConfigError(f"the output folder must differ from the prepared folder ({self.prepared_dir})")

    def settings(self) -> dict:
        """Everything that decides the bytes of the files (not workers, not paths)."""
        return {
            "max_seq_length": self.max_seq_length,
            "max_predictions_per_seq": self.max_predictions_per_seq,
            "masked_lm_prob": self.masked_lm_prob,
            "short_seq_prob": self.short_seq_prob,
            "dup_factor": self.dup_factor,
            "seed": self.seed,
            "nsp": self.nsp,
            "whole_word_masking": self.whole_word_masking,
            "random_replacement": "non-special",
            "gzip_level": self.gzip_level,
            "shuffle_filter": formats.HDF5_SHUFFLE,
            "chunk_rows": formats.HDF5_CHUNK_ROWS,
            "file_index": "shard_index * dup_factor + duplicate",
        }
