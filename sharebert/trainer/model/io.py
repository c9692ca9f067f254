"""Model folders on disk: config.json + weights + vocab.txt, with the reference's state-dict key names.

A folder holds `config.json` (Hugging-Face-style, see `ShareBertConfig.to_dict`, plus `auto_map`),
`model.safetensors` and/or `pytorch_model.bin` (the reference's format), `vocab.txt` with Hugging Face's
tokenizer files, and the remote-code module `transformers` loads it with (docs/model.md). This module works
on state dicts and key names only; `sharebert.trainer.model.modeling` builds the models. It owns the names
of a model folder's files and of the folder in run folders (MODEL_DIR); vocab.txt's name is
pipeline.formats.VOCAB_FILE and the tokenizer files' names are tokenizer_files.py's, re-exported here.
"""

from __future__ import annotations

import logging
import math
import pickle
import zipfile
from collections import Counter
from pathlib import Path

import torch

from ...errors import ConfigError, file_error
from ...fileio import atomic_path, read_json, write_json_atomic
from ...pipeline.formats import VOCAB_FILE
from ...tokenization import read_vocab
from .config import ShareBertConfig
from .remote_code import auto_map, remote_code_source
from .tokenizer_files import SPECIAL_TOKENS_MAP_FILE, TOKENIZER_CONFIG_FILE, TOKENIZER_JSON_FILE, write_tokenizer_files

log = logging.getLogger(__name__)

MODEL_DIR = "model"  # the model folder inside a pretraining run folder and a fine-tuning run's folder
CONFIG_FILE = "config.json"
SAFETENSORS_FILE = "model.safetensors"
PYTORCH_FILE = "pytorch_model.bin"  # what the reference writes and reads
REMOTE_CODE_FILE = "modeling_sharebert.py"  # what transformers runs with trust_remote_code (remote_code.py)
# Hugging Face's tokenizer files, named in tokenizer_files.py (which writes them) and re-exported here.
TOKENIZER_FILES = (TOKENIZER_JSON_FILE, TOKENIZER_CONFIG_FILE, SPECIAL_TOKENS_MAP_FILE)

TASKS = ("base", "masked-lm", "sequence-classification")
HEAD_PREFIXES = ("cls.predictions.", "cls.seq_relationship.", "classifier.")
ENCODER_PREFIX = "bert."
# Heads a task may create when a folder lacks them (a pretraining checkpoint has no classifier).
CREATABLE_HEADS = {"sequence-classification": ("classifier.",)}
# The reference's class names, written to config.json "architectures".
REFERENCE_ARCHITECTURES = {
    "base": "ShareBertModel",
    "masked-lm": "ShareBertLMHeadModel",
    "sequence-classification": "ShareBertForSequenceClassification",
}


# ---------------------------------------------------------------------------------------- key names
def to_reference_state_dict(state: dict, config: ShareBertConfig) -> dict:
    """Our state dict as the reference names it (identical except two reference options)."""
    out = {}
    for key, tensor in state.items():
        if not config.fused_linear_layer and ".transform.dense_act." in key:
            key = key.replace(".transform.dense_act.", ".transform.dense_act.dense.")
        out[key] = tensor.detach().to("cpu").contiguous()
    if not config.sparse_mask_prediction and "cls.predictions.bias" in out:
        # The reference's decoder then shares the V-sized bias and saves it under both names.
        out["cls.predictions.decoder.bias"] = out["cls.predictions.bias"].clone()
    return out


def normalize_keys(state: dict) -> dict:
    """Reference or wrapped-model keys -> ours: strip wrapper prefixes, fold aliases, prefix bare encoders."""
    out = {}
    for key, tensor in state.items():
        for prefix in ("module.", "_orig_mod."):
            while key.startswith(prefix):
                key = key[len(prefix) :]
        if key.endswith("position_ids"):  # a Hugging Face buffer, not a parameter
            continue
        key = key.replace(".transform.dense_act.dense.", ".transform.dense_act.")
        if key.startswith(("embeddings.", "encoder.", "pooler.")):  # saved from a bare encoder
            key = ENCODER_PREFIX + key
        out[key] = tensor
    alias = out.pop("cls.predictions.decoder.bias", None)
    if alias is not None and "cls.predictions.bias" not in out:
        out["cls.predictions.bias"] = alias
    return out


def reconcile_state_dict(found: dict, expected: dict, task: str, path) -> tuple[dict, list[str]]:
    """Check a checkpoint against the keys and shapes a `task` model expects.

    Returns (the state dict to load, the keys the model must create). Heads the task does not use are
    dropped (logged); anything else that does not match raises DataError naming `path` and the key.
    """
    found = normalize_keys(found)
    bare = task == "base"
    if bare:
        found = {k[len(ENCODER_PREFIX) :] if k.startswith(ENCODER_PREFIX) else k: v for k, v in found.items()}
    creatable = CREATABLE_HEADS.get(task, ())
    state, dropped, created = {}, Counter(), []
    for key, tensor in found.items():
        if not isinstance(tensor, torch.Tensor):
            raise file_error(path, f"{key} is not a tensor")
        if key not in expected:
            head = next((h for h in HEAD_PREFIXES if key.startswith(h)), None)
            if head is None:
                raise file_error(
                    path, f"unexpected key {key} (not a parameter of a ShareBERT {task} model with this config.json)"
                )
            dropped[head + "*"] += 1
            continue
        if tuple(tensor.shape) != expected[key]:
            if key.startswith(creatable):  # e.g. a classifier for another number of labels
                log.warning(
                    "%s: %s has shape %s but the model needs %s: creating it anew",
                    path,
                    key,
                    list(tensor.shape),
                    list(expected[key]),
                )
                created.append(key)
                continue
            raise file_error(path, f"{key} has shape {list(tensor.shape)} but config.json needs {list(expected[key])}")
        state[key] = tensor
    missing = [k for k in expected if k not in state and k not in created]
    created += [k for k in missing if k.startswith(creatable)]
    missing = [k for k in missing if not k.startswith(creatable)]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise file_error(path, f"missing key {missing[0]}{more} (needed by a ShareBERT {task} model)")
    if dropped:
        log.info(
            "%s: dropped (not used by a %s model): %s",
            path,
            task,
            ", ".join(f"{h} ({n} tensors)" for h, n in sorted(dropped.items())),
        )
    return state, sorted(created)


# ---------------------------------------------------------------------------------------- files
def write_model_folder(
    folder,
    config: ShareBertConfig,
    state: dict,
    vocab_file,
    task: str,
    *,
    pytorch_bin: bool = False,
    lowercase: bool = True,
) -> Path:
    """Write a model folder, complete for sharebert, the reference and `transformers` (docs/model.md).

    `lowercase` is the casing the model was trained with, written into the tokenizer files.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / SAFETENSORS_FILE) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
    if pytorch_bin:
        with atomic_path(folder / PYTORCH_FILE) as tmp:
            torch.save(state, tmp)
    else:
        (folder / PYTORCH_FILE).unlink(missing_ok=True)  # never leave weights of an earlier save beside
    if vocab_file is not None:
        _check_vocab_fits(vocab_file, len(read_vocab(vocab_file)), config)
        write_tokenizer_files(folder, Path(vocab_file), lowercase, max_length=config.max_position_embeddings)
    with atomic_path(folder / REMOTE_CODE_FILE) as tmp:
        tmp.write_text(remote_code_source(), encoding="utf-8")
    d = config.to_dict()
    d["architectures"] = [
        REFERENCE_ARCHITECTURES[task] if not (task == "masked-lm" and config.nsp) else "ShareBertForPreTraining"
    ]
    d["auto_map"] = auto_map(REMOTE_CODE_FILE)
    write_json_atomic(folder / CONFIG_FILE, d)  # last: its presence means the folder is complete
    log.info("saved %s model to %s", task, folder)
    return folder


def read_model_folder(folder) -> tuple[ShareBertConfig, dict, Path]:
    """(config, raw state dict, weights path) of a model folder; DataError for anything missing or broken."""
    folder = Path(folder)
    if not folder.is_dir():
        raise file_error(folder, "model folder not found")
    config = ShareBertConfig.from_json_file(folder / CONFIG_FILE)
    vocab_path = folder / VOCAB_FILE
    if vocab_path.exists():
        _check_vocab_fits(vocab_path, len(read_vocab(vocab_path)), config)
    for name, reader in ((SAFETENSORS_FILE, _read_safetensors), (PYTORCH_FILE, _read_pytorch_bin)):
        path = folder / name
        if path.exists():
            return config, reader(path), path
    raise file_error(folder, f"no weights file ({SAFETENSORS_FILE} or {PYTORCH_FILE})")


def recorded_lowercase(folder) -> bool | None:
    """do_lower_case from the folder's tokenizer_config.json or config.json (Hugging Face's key), if set."""
    for name in (TOKENIZER_CONFIG_FILE, CONFIG_FILE):
        path = Path(folder) / name
        if path.exists():
            settings = read_json(path)
            value = settings.get("do_lower_case") if isinstance(settings, dict) else None
            if isinstance(value, bool):
                return value
    return None


def weight_shapes(folder) -> tuple[ShareBertConfig, dict, Path]:
    """(config, {key: shape} with normalized keys, weights path) of a folder, for summaries."""
    config, state, path = read_model_folder(folder)
    return config, {k: tuple(v.shape) for k, v in normalize_keys(state).items()}, path


def _read_safetensors(path: Path) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise file_error(path, f"cannot read safetensors weights ({e})") from None


def _read_pytorch_bin(path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, OSError, ValueError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise file_error(path, f"cannot read PyTorch weights ({reason})") from None
    if not isinstance(state, dict):
        raise file_error(path, f"expected a state dict, found {type(state).__name__}")
    return state


def _check_vocab_fits(path, vocab_len: int, config: ShareBertConfig) -> None:
    if vocab_len > config.vocab_size:
        raise file_error(path, f"{vocab_len} tokens do not fit the model's vocab_size={config.vocab_size}")


# ---------------------------------------------------------------------------------------- summary
# (component, key prefix) in display order; the first matching prefix wins.
COMPONENTS = (
    ("embeddings.word_embeddings", "bert.embeddings.word_embeddings."),
    ("embeddings.factor_linear", "bert.embeddings.factor_linear."),
    ("embeddings.factor_linear_all (virtual E)", "bert.embeddings.factor_linear_all."),
    ("embeddings.position_embeddings", "bert.embeddings.position_embeddings."),
    ("embeddings.token_type_embeddings", "bert.embeddings.token_type_embeddings."),
    ("embeddings norms", "bert.embeddings."),
    ("encoder layers (norms + biases)", "bert.encoder.layer."),
    ("encoder.FinalLayerNorm", "bert.encoder.FinalLayerNorm."),
    ("pooler (bias)", "bert.pooler."),
    ("MLM head transform", "cls.predictions.transform."),
    ("MLM head decoder", "cls.predictions.decoder."),
    ("MLM head bias (unused when sparse)", "cls.predictions.bias"),
    ("NSP head", "cls.seq_relationship."),
    ("classifier", "classifier."),
)


def parameter_summary(shapes: dict) -> list[tuple[str, int]]:
    """Parameter counts per component, from {key: shape} with normalized keys."""
    counts = Counter()
    for key, shape in shapes.items():
        component = next((name for name, prefix in COMPONENTS if key.startswith(prefix)), None)
        if component is None:
            raise ConfigError(f"unknown parameter {key}")
        counts[component] += math.prod(shape)
    return [(name, counts[name]) for name, _ in COMPONENTS if name in counts]


def encoder_parameter_count(shapes: dict) -> int:
    return sum(math.prod(s) for k, s in shapes.items() if k.startswith(ENCODER_PREFIX))


HEADS = (("MLM", "cls.predictions."), ("NSP", "cls.seq_relationship."), ("classifier", "classifier."))


def summarize(config: ShareBertConfig, shapes: dict, source: str) -> dict:
    """Parameter counts of a model given its {key: shape}, plus how its shared matrices are carved."""
    components = parameter_summary(shapes)
    layout = config.carve_layout()
    h, i = config.hidden_size, config.intermediate_size
    return {
        "source": source,
        "config": config.to_dict(),
        "components": dict(components),
        "encoder_parameters": encoder_parameter_count(shapes),
        "total_parameters": sum(n for _, n in components),
        "heads": [head for head, prefix in HEADS if any(k.startswith(prefix) for k in shapes)],
        "carving": {
            "g": layout.g,
            "gf": layout.gf,
            "used_columns": layout.used_columns,
            "hidden_size": h,
            "shared_weights_per_layer": 4 * h * h + 2 * h * i,
            "layers": config.num_hidden_layers,
        },
    }


def format_summary(s: dict) -> str:
    c, carve = s["config"], s["carving"]
    lines = [
        f"ShareBERT from {s['source']}: V={c['vocab_size']} F={c['factor_size']} H={c['hidden_size']} "
        f"I={c['intermediate_size']} L={c['num_hidden_layers']} A={c['num_attention_heads']} "
        f"P={c['max_position_embeddings']} ({c['encoder_ln_mode']})",
        "",
    ]
    width = max(len(name) for name in s["components"]) + 2
    per_layer = s["components"].get("encoder layers (norms + biases)", 0) // carve["layers"]
    lines += [
        f"  {name:<{width}}{n:>14,}"
        + (f"   ({carve['layers']} x {per_layer:,})" if name.startswith("encoder layers") else "")
        for name, n in s["components"].items()
    ]
    heads = " + ".join(s["heads"]) or "none"
    lines += [
        "",
        f"  {'encoder (no heads)':<{width}}{s['encoder_parameters']:>14,}",
        f"  {'total (encoder + heads)':<{width}}{s['total_parameters']:>14,}   heads: {heads}",
        "",
        f"Shared matrices carved from the virtual matrix E (V x H) in every forward pass: "
        f"{carve['used_columns']:,} of {carve['hidden_size']:,} columns (g={carve['g']}, gf={carve['gf']}); "
        f"{carve['shared_weights_per_layer']:,} weights per layer, reused by all {carve['layers']} layers.",
    ]
    return "\n".join(lines)
