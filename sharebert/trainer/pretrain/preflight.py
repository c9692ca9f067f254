"""Setting up a pretraining run: the model config and samples checked together, where to resume from,
and the model folder export. Used by pretrain.py."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from ...errors import ConfigError, DataError
from ...fileio import disk_full_as_error, remove_stale_folders, replacing_folder, sha256_file, space_needed
from ...pipeline import formats
from ..model.io import MODEL_DIR
from .checkpoint import CHECKPOINTS_DIR, latest_tag, locate_checkpoint
from .config import KNOWN_TOKENIZERS, PretrainConfig
from .data import TrainingSamples, open_training_samples

log = logging.getLogger(__name__)


def load_model_config_and_samples(config: PretrainConfig):
    """The model's config (vocab size from the manifest unless given) and the samples, checked against it."""
    from ..model.modeling import ShareBertConfig

    manifest = formats.read_manifest(config.dataset_path, check="none")
    overrides = dict(config.model_overrides)
    overrides.setdefault("vocab_size", manifest.vocab_size)
    overrides.setdefault("pad_token_id", int(manifest.vocab.get("special_ids", {}).get("pad", 0)))
    nsp = config.model_type == "bert-mlm-nsp"
    if overrides.setdefault("nsp", nsp) != nsp:
        raise ConfigError(f"--nsp {overrides['nsp']} disagrees with --model_type {config.model_type}")
    model_config = ShareBertConfig.from_preset(config.model_preset, **overrides)
    samples = open_training_samples(
        config.dataset_path,
        model_config.vocab_size,
        model_config.max_position_embeddings,
        nsp=model_config.nsp,
        need_test=config.validation.do_validation,
    )
    check_tokenizer_name(config.tokenizer_name, samples)
    samples.vocab_file()  # the model export needs it: check now, not after training
    return model_config, samples


def check_tokenizer_name(name: str | None, samples: TrainingSamples) -> None:
    """--tokenizer_name only names the vocab the samples must have been made with; nothing is downloaded."""
    if name is None:
        return
    manifest_path = samples.folder / formats.MANIFEST_FILE
    path = Path(name)
    if path.is_dir():
        path = path / formats.VOCAB_FILE
    if path.is_file():
        expected, what = sha256_file(path), str(path)
    elif name in KNOWN_TOKENIZERS:
        expected, what = KNOWN_TOKENIZERS[name], f"the {name} vocab"
    else:
        raise ConfigError(
            f"--tokenizer_name {name!r}: sharebert takes the vocab from {manifest_path}; give one of "
            f"{', '.join(KNOWN_TOKENIZERS)} or the path of a vocab.txt to check it against, "
            "or leave it out"
        )
    if samples.manifest.vocab.get("sha256") != expected:
        raise DataError(
            f"{manifest_path}: the samples were made with another vocab than {what} "
            f"(--tokenizer_name {name}); leave --tokenizer_name out to use the samples' vocab"
        )


def find_resume_point(config: PretrainConfig) -> tuple[Path, str] | None:
    """(checkpoints folder, tag) to continue from, or None for a fresh start; refuses to overwrite a run."""
    ck = config.checkpoint
    if ck.load_training_checkpoint is not None:
        return locate_checkpoint(ck.load_training_checkpoint, ck.load_checkpoint_id)
    own = config.output_dir / CHECKPOINTS_DIR
    tag = ck.load_checkpoint_id or (latest_tag(own) if own.is_dir() else None)
    if ck.resume or ck.export_only:
        remove_stale_folders(config.output_dir / MODEL_DIR)
        if tag is None:
            if ck.export_only:
                raise ConfigError(f"{own}: no checkpoint to export a model from")
            log.info("%s: no checkpoint yet, starting a new run", own)
            return None
        return locate_checkpoint(own, tag)
    if tag is not None:
        raise ConfigError(
            f"{config.output_dir} already holds a run (checkpoint {tag}): pass --resume to continue it "
            "or choose another --output_dir"
        )
    return None


def check_same_model(saved: dict, current: dict, where: Path) -> None:
    differ = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
    if differ:
        details = ", ".join(f"{k}: checkpoint {saved.get(k)!r} vs now {current.get(k)!r}" for k in differ[:4])
        raise ConfigError(f"{where}: the checkpoint's model differs from the one configured now ({details})")


def model_bytes(module: torch.nn.Module) -> int:
    """The size of `module`'s weights as a model folder stores them (for the message of a full disk)."""
    return sum(t.numel() * t.element_size() for t in module.state_dict().values())


def write_model_folder(
    module: torch.nn.Module, model_config, folder: Path, vocab_file: Path, lowercase: bool = True
) -> None:
    """save_model_folder on an fp32 CPU copy, into a temporary folder that then replaces `folder`."""
    from ..model.modeling import ShareBertForMaskedLM, save_model_folder, unwrap_model

    state = {k: v.detach().to("cpu", torch.float32) for k, v in unwrap_model(module).state_dict().items()}
    copy = ShareBertForMaskedLM(model_config, device="meta")
    copy.load_state_dict(state, assign=True)
    with (
        replacing_folder(folder) as partial,
        space_needed(folder.parent, lambda: model_bytes(copy)),
        disk_full_as_error(folder.parent),
    ):
        save_model_folder(copy, partial, vocab_file, lowercase=lowercase)


def jsonable(value):
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return str(value) if isinstance(value, Path) else value
