"""`sharebert export-hf`: any model folder sharebert loads, as a complete Hugging Face folder (docs/model.md).

The folder is loaded as the model its weights make (classifier, masked LM or bare encoder) and saved
again by `save_model_folder`, which writes the same weights under the same keys plus the tokenizer files
and the remote code. The output appears whole or not at all: it is written beside its place and renamed.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ...errors import ConfigError, file_error
from ...fileio import disk_full_as_error, replacing_folder
from .io import (
    CONFIG_FILE,
    PYTORCH_FILE,
    REMOTE_CODE_FILE,
    SAFETENSORS_FILE,
    TOKENIZER_FILES,
    VOCAB_FILE,
    recorded_lowercase,
    weight_shapes,
)

log = logging.getLogger(__name__)

# What a model folder may hold: an output folder with anything else is refused, not replaced.
MODEL_FOLDER_FILES = frozenset(
    [CONFIG_FILE, SAFETENSORS_FILE, PYTORCH_FILE, VOCAB_FILE, REMOTE_CODE_FILE, *TOKENIZER_FILES]
)


def export_hf(source, output, *, vocab_file=None, lowercase: bool | None = None) -> Path:
    """Write `source` (a model folder, ours or the reference's) to `output` as a Hugging Face folder.

    `vocab_file` defaults to the source's vocab.txt; `lowercase` to the casing recorded in the source
    (tokenizer_config.json's or config.json's do_lower_case), else uncased. `output` must be new, empty or
    a model folder (replaced). Bad input raises a ShareBertError and leaves `output` as it was.
    """
    from .modeling import load_model_folder, save_model_folder

    source, output = Path(source), Path(output)
    _, shapes, weights_path = weight_shapes(source)  # DataError unless sharebert can read the folder
    vocab_file = Path(vocab_file) if vocab_file is not None else source / VOCAB_FILE
    if not vocab_file.is_file():
        raise file_error(vocab_file, "missing: a Hugging Face folder needs the vocab (pass --vocab)")
    _check_output(output)
    if lowercase is None:
        found = recorded_lowercase(source)
        lowercase = True if found is None else found
    model = load_model_folder(source, task=task_of(shapes))
    with replacing_folder(output) as partial, disk_full_as_error(output.parent):
        save_model_folder(
            model, partial, vocab_file, pytorch_bin=weights_path.name == PYTORCH_FILE, lowercase=lowercase
        )
    log.info("exported %s to %s (%s)", source, output, "uncased" if lowercase else "cased")
    return output


def task_of(shapes: dict) -> str:
    """The model a folder's weights (normalized keys) make: its heads decide."""
    if any(key.startswith("classifier.") for key in shapes):
        return "sequence-classification"
    if any(key.startswith("cls.predictions.") for key in shapes):
        return "masked-lm"
    return "base"


def _check_output(output: Path) -> None:
    if output.exists() and not output.is_dir():
        raise ConfigError(f"{output}: not a folder")
    others = sorted(p.name for p in output.iterdir() if p.name not in MODEL_FOLDER_FILES) if output.is_dir() else []
    if others:
        more = f" and {len(others) - 1} more" if len(others) > 1 else ""
        raise ConfigError(f"{output}: holds {others[0]}{more}, not a model folder: choose a new or empty folder")
