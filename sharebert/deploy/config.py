"""The settings of `sharebert export onnx` and `sharebert bench-infer` (torch-free: the CLI reads their defaults)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError

QUANTIZATIONS = ("int8",)
CARVINGS = ("initializers", "factors")  # where the shared matrices live (docs/deploy.md, "The shared matrices")


@dataclass(frozen=True)
class OnnxExportConfig:
    model_dir: Path
    output_dir: Path
    quantize: str | None = None  # "int8": dynamic int8 quantization of the matmuls
    max_seq_length: int = 128  # serving truncates to this; at most the model's max_position_embeddings
    carved: str = "initializers"  # or "factors", measured by bench/infer.py

    def __post_init__(self):
        object.__setattr__(self, "model_dir", Path(self.model_dir))
        object.__setattr__(self, "output_dir", Path(self.output_dir))
        if self.quantize not in (None, *QUANTIZATIONS):
            raise ConfigError(f"--quantize {self.quantize}: supported: {', '.join(QUANTIZATIONS)}")
        if self.carved not in CARVINGS:
            raise ConfigError(f"carved={self.carved!r} must be one of {', '.join(CARVINGS)}")
        if self.max_seq_length < 2:
            raise ConfigError(f"--max-seq-length {self.max_seq_length}: must be at least 2 ([CLS] and [SEP])")


@dataclass(frozen=True)
class BenchInferConfig:
    folder: Path
    data: Path
    task: str | None = None  # None: from the data file's folder name (GLUE's SST-2/dev.tsv layout)
    batch_size: int = 1
    threads: int = 0  # onnxruntime intra-op threads; 0: all cores
    max_examples: int | None = None

    def __post_init__(self):
        object.__setattr__(self, "folder", Path(self.folder))
        object.__setattr__(self, "data", Path(self.data))
        if self.batch_size < 1 or self.threads < 0 or (self.max_examples is not None and self.max_examples < 1):
            raise ConfigError("--batch-size and --max-examples must be >= 1, --threads >= 0")
