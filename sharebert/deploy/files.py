"""What an ONNX export folder holds, and reading it back (torch-free: serving and bench-infer use it)."""

from __future__ import annotations

from pathlib import Path

from ..errors import file_error
from ..fileio import read_json
from ..pipeline.formats import VOCAB_FILE
from ..tokenization import bert_tokenizer, read_vocab, special_ids
from ..trainer.model.tokenizer_files import TOKENIZER_CONFIG_FILE, TOKENIZER_JSON_FILE

ONNX_FILE = "model.onnx"
DEPLOY_INFO_FILE = "deploy.json"  # what was exported and how; written last, so its presence means complete
INPUT_NAMES = ("input_ids", "token_type_ids", "attention_mask")
OUTPUT_NAME = "logits"


def read_deploy_info(folder: Path) -> dict:
    """deploy.json of an export folder; DataError when the folder is not one."""
    folder = Path(folder)
    if not (folder / DEPLOY_INFO_FILE).is_file():
        raise file_error(folder, f"not an ONNX export of sharebert (no {DEPLOY_INFO_FILE})")
    info = read_json(folder / DEPLOY_INFO_FILE)
    if not isinstance(info, dict) or not (folder / ONNX_FILE).is_file():
        raise file_error(folder / DEPLOY_INFO_FILE, f"not an export description, or {ONNX_FILE} is missing")
    return info


def load_tokenizer(folder: Path, max_length: int):
    """The export's tokenizer: tokenizer.json when present, else vocab.txt with tokenizer_config.json's casing.

    Truncates to `max_length` tokens; returns (tokenizer, [PAD] id).
    """
    from tokenizers import Tokenizer

    folder = Path(folder)
    if (folder / TOKENIZER_JSON_FILE).is_file():
        tokenizer = Tokenizer.from_file(str(folder / TOKENIZER_JSON_FILE))
        tokenizer.enable_truncation(max_length=max_length, strategy="longest_first")
        return tokenizer, tokenizer.token_to_id("[PAD]")
    settings = read_json(folder / TOKENIZER_CONFIG_FILE) if (folder / TOKENIZER_CONFIG_FILE).is_file() else {}
    lowercase = settings.get("do_lower_case", True) if isinstance(settings, dict) else True
    tokenizer = bert_tokenizer(folder / VOCAB_FILE, bool(lowercase), max_length=max_length)
    return tokenizer, special_ids(read_vocab(folder / VOCAB_FILE)).pad


def open_session(folder: Path, threads: int = 0):
    """An onnxruntime CPU session of the export (threads 0: onnxruntime's default, all cores)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    if threads == 1:
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(Path(folder) / ONNX_FILE), options, providers=["CPUExecutionProvider"])
