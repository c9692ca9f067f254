"""`sharebert export onnx`: a masked-LM or classifier folder as an ONNX model, optionally int8 (docs/deploy.md).

The shared matrices are never carved from the embedding per call (docs/deploy.md, "The shared matrices"):
  * carved="initializers" (the default): the seven matrices are stored once and every layer references them.
    onnxruntime's quantizer only quantizes matmuls whose weights are initializers, and a session's peak
    memory is half that of the other placement.
  * carved="factors" (measured by bench/infer.py): the graph keeps word_embeddings and factor_linear_all and
    carves with nodes whose inputs are all initializers; onnxruntime folds them once when the session
    starts. The fp32 file is 9x smaller, but the folding doubles the session's peak memory.
The output folder is built under a temporary name and renamed: a failed export leaves nothing.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from .. import __version__
from ..errors import ConfigError, file_error
from ..fileio import replacing_folder, write_json_atomic
from ..pipeline.formats import VOCAB_FILE
from ..trainer.model.io import CONFIG_FILE, recorded_lowercase, weight_shapes
from ..trainer.model.modeling import (
    PADDING_SCORE,
    CarvedWeights,
    ShareBertForSequenceClassification,
    load_model_folder,
)
from ..trainer.model.tokenizer_files import write_tokenizer_files
from .config import OnnxExportConfig
from .files import (
    DEPLOY_INFO_FILE,
    INPUT_NAMES,
    ONNX_FILE,
    OUTPUT_NAME,
)

log = logging.getLogger(__name__)

OPSET = 17  # LayerNormalization is a single op from 17 on
EXPORT_FORMAT = "sharebert-onnx"


class OnnxForward(nn.Module):
    """(input_ids, token_type_ids, attention_mask) [B, S] int64 -> logits: [B, num_labels] or [B, S, V]."""

    def __init__(self, model: nn.Module, materialize: bool):
        super().__init__()
        self.model = model
        self.carved = None
        if materialize:
            with torch.no_grad():
                self.carved = nn.ParameterList(
                    nn.Parameter(w.detach().clone(), requires_grad=False) for w in model.bert.carved_weights()
                )

    def forward(self, input_ids, token_type_ids, attention_mask):
        bert = self.model.bert
        w = bert.carved_weights() if self.carved is None else CarvedWeights(*self.carved)
        mask = ((1.0 - attention_mask.to(torch.float32)) * PADDING_SCORE)[:, None, None, :]
        hidden = bert.encoder(bert.embeddings(input_ids, token_type_ids), w, mask)
        if isinstance(self.model, ShareBertForSequenceClassification):
            return self.model.classifier(bert.pool(hidden, w))
        return self.model.cls.predictions(bert.encoder.final_norm(hidden))


def export_onnx(config: OnnxExportConfig) -> dict:
    """Write OUTPUT_DIR/{model.onnx, tokenizer files, deploy.json}; return deploy.json's content."""
    task = model_task(config.model_dir)
    _check_output_dir(config.output_dir)
    model = load_model_folder(config.model_dir, task).eval()
    if config.max_seq_length > model.config.max_position_embeddings:
        raise ConfigError(
            f"--max-seq-length {config.max_seq_length} exceeds the model's max_position_embeddings="
            f"{model.config.max_position_embeddings}"
        )
    if not (config.model_dir / VOCAB_FILE).is_file():
        raise file_error(config.model_dir / VOCAB_FILE, "missing: the export carries the model's vocab")
    with replacing_folder(config.output_dir) as staging:  # (an existing folder was checked empty above)
        staging.mkdir()
        info = _write_export(config, task, model, staging)
    log.info("exported %s (%s) to %s", config.model_dir, config.quantize or "fp32", config.output_dir)
    return info


def model_task(model_dir: Path) -> str:
    """The head to export: the classifier, else the masked-LM head; DataError for anything else."""
    if not (model_dir / CONFIG_FILE).is_file():
        raise file_error(model_dir, f"not a model folder (no {CONFIG_FILE})")
    _, shapes, path = weight_shapes(model_dir)
    if "classifier.weight" in shapes:
        return "sequence-classification"
    if "cls.predictions.decoder.weight" in shapes:
        return "masked-lm"
    raise file_error(path, "unsupported head: neither a classifier nor a masked-LM head to export")


def _check_output_dir(folder: Path) -> None:
    if (folder / DEPLOY_INFO_FILE).exists() or (folder / ONNX_FILE).exists():
        raise file_error(folder, "holds another export: remove it or choose another output folder")
    if folder.exists() and not (folder.is_dir() and not any(folder.iterdir())):
        raise file_error(folder, "exists and is not an empty folder: choose a new output folder")


def _write_export(config: OnnxExportConfig, task: str, model: nn.Module, folder: Path) -> dict:
    fp32_path = folder / (f"fp32-{ONNX_FILE}" if config.quantize else ONNX_FILE)
    _torch_export(OnnxForward(model, config.carved == "initializers").eval(), task, fp32_path)
    if config.quantize:
        _quantize_int8(fp32_path, folder / ONNX_FILE)
        fp32_path.unlink()
    tokenizer_files = sorted(
        write_tokenizer_files(
            folder, config.model_dir / VOCAB_FILE, _folder_lowercase(config.model_dir), max_length=config.max_seq_length
        )
    )
    info = {
        "format": EXPORT_FORMAT,
        "task": task,
        "num_labels": model.config.num_labels if task == "sequence-classification" else None,
        "vocab_size": model.config.vocab_size,
        "max_seq_length": config.max_seq_length,
        "quantize": config.quantize,
        "carved_weights": config.carved,
        "onnx_file": ONNX_FILE,
        "inputs": list(INPUT_NAMES),
        "output": OUTPUT_NAME,
        "opset": OPSET,
        "tokenizer_files": tokenizer_files,
        "source": str(config.model_dir),
        "sharebert_version": __version__,
    }
    write_json_atomic(folder / DEPLOY_INFO_FILE, info)
    return info


def _torch_export(module: nn.Module, task: str, path: Path) -> None:
    ids = torch.full((2, 16), 5, dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, 10:] = 0
    axes = {name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES}
    axes[OUTPUT_NAME] = {0: "batch"} if task == "sequence-classification" else {0: "batch", 1: "sequence"}
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript exporter (onnxscript, which the dynamo exporter needs, is not a dependency)
        # warns about its deprecation and about traced shape arithmetic; neither applies here.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (ids, torch.zeros_like(ids), mask),
            str(path),
            dynamo=False,
            input_names=list(INPUT_NAMES),
            output_names=[OUTPUT_NAME],
            dynamic_axes=axes,
            opset_version=OPSET,
        )


def _quantize_int8(source: Path, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer's advice to pre-process is printed on the root logger
    try:
        # 7-bit weights (reduce_range): without VNNI, x86's u8 x s8 multiply-add saturates in int16 and
        # flipped 4.7% of the demo task's predictions; with it 0.7% (docs/deploy.md).
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, reduce_range=True)
    finally:
        root.setLevel(level)


def _folder_lowercase(model_dir: Path) -> bool:
    found = recorded_lowercase(model_dir)
    return True if found is None else found
