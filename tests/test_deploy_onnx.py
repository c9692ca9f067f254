"""`sharebert export onnx`: outputs equal PyTorch's, the carving is folded once, bad input leaves nothing,
and docs/deploy.md's serving example runs without torch. int8 and bench-infer: test_deploy_int8.py."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from finetune_fixtures import VOCAB_SIZE, write_vocab

from sharebert.cli import main
from sharebert.deploy import export as export_module
from sharebert.deploy.config import OnnxExportConfig
from sharebert.deploy.export import export_onnx
from sharebert.deploy.files import INPUT_NAMES, load_tokenizer, open_session
from sharebert.trainer.model.modeling import (
    ShareBertConfig,
    ShareBertForMaskedLM,
    ShareBertForSequenceClassification,
    ShareBertModel,
    load_model_folder,
    save_model_folder,
)

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
pytestmark = pytest.mark.usefixtures("torch_one_thread")
TINY = ShareBertConfig.from_preset("tiny", vocab_size=VOCAB_SIZE)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Tiny masked-LM and classifier folders with the tests' vocab, and their fp32 exports."""
    root = tmp_path_factory.mktemp("deploy")
    vocab = write_vocab(root / "vocab.txt")
    save_model_folder(ShareBertForMaskedLM(TINY, seed=1), root / "mlm", vocab)
    save_model_folder(ShareBertForSequenceClassification(TINY.replace(num_labels=3), seed=2), root / "clf", vocab)
    for name in ("mlm", "clf"):
        assert main(["export", "onnx", str(root / name), "-o", str(root / f"{name}-onnx"), "-q"]) == 0
    return root


def _padded_batch(rng, batch: int, seq: int) -> dict[str, np.ndarray]:
    """Random ids with [CLS] ... [SEP], the first row full length, the others padded at random lengths."""
    lengths = np.concatenate([[seq], rng.integers(3, seq + 1, batch - 1)])[:batch]
    ids = np.zeros((batch, seq), dtype=np.int64)
    types = np.zeros_like(ids)
    mask = np.zeros_like(ids)
    for row, n in enumerate(lengths):
        ids[row, :n] = rng.integers(6, VOCAB_SIZE, n)
        ids[row, 0], ids[row, n - 1] = 3, 4
        types[row, n // 2 : n] = 1
        mask[row, :n] = 1
    return {"input_ids": ids, "token_type_ids": types, "attention_mask": mask}


def _torch_logits(model, feeds) -> np.ndarray:
    with torch.no_grad():
        return model(**{name: torch.from_numpy(feeds[name]) for name in INPUT_NAMES}).logits.numpy()


@pytest.mark.parametrize("name, task", [("mlm", "masked-lm"), ("clf", "sequence-classification")])
def test_fp32_logits_equal_pytorch_with_padding(folders, name, task):
    model = load_model_folder(folders / name, task).eval()
    session = open_session(folders / f"{name}-onnx", threads=1)
    rng = np.random.default_rng(0)
    for batch in (1, 7):
        for seq in (16, 128):
            feeds = _padded_batch(rng, batch, seq)
            expected = _torch_logits(model, feeds)
            got = session.run(None, feeds)[0]
            assert got.shape == expected.shape
            assert np.abs(got - expected).max() < 1e-4, (batch, seq)


def test_both_carvings_give_the_same_logits_and_the_factors_are_folded_once(folders, tmp_path):
    """The default export stores the shared matrices; the factors export carves them with initializer-only
    nodes, which onnxruntime folds into constants when the session starts: its optimized graph holds them."""
    import onnx
    import onnxruntime as ort

    out = tmp_path / "factors"
    export_onnx(OnnxExportConfig(folders / "clf", out, carved="factors"))
    h, i = TINY.hidden_size, TINY.intermediate_size
    feeds = _padded_batch(np.random.default_rng(1), 7, 32)
    for name, folder in (("initializers", folders / "clf-onnx"), ("factors", out)):
        assert json.loads((folder / "deploy.json").read_text())["carved_weights"] == name
        options = ort.SessionOptions()
        options.optimized_model_filepath = str(tmp_path / f"{name}-optimized.onnx")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        session = ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
        optimized = {tuple(t.dims) for t in onnx.load(options.optimized_model_filepath).graph.initializer}
        stored = {tuple(t.dims) for t in onnx.load(str(folder / "model.onnx")).graph.initializer}
        assert ((h, 3 * h) in stored) == (name == "initializers")
        assert {(h, 3 * h), (h, i), (i, h)} <= optimized, name
        np.testing.assert_allclose(session.run(None, feeds)[0], _torch_logits(_classifier(folders), feeds), atol=1e-4)


def _classifier(folders):
    return load_model_folder(folders / "clf", "sequence-classification").eval()


def test_serving_example_of_the_docs_runs_without_torch(folders):
    """docs/deploy.md's example, in a process where importing torch fails, gives PyTorch's logits."""
    doc = (ROOT / "docs" / "deploy.md").read_text()
    example = re.search(r"<!-- serving-example -->\n```python\n(.*?)```", doc, re.S).group(1)
    assert 'folder = "deploy/sst2"' in example
    no_torch = (
        "import sys\n"
        "class NoTorch:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'torch':\n"
        "            raise ImportError('torch is blocked here')\n"
        "sys.meta_path.insert(0, NoTorch())\n"
    )
    report = "\nprint(json.dumps({'sentences': sentences, 'logits': logits.tolist()}))\n"
    code = no_torch + example.replace('"deploy/sst2"', repr(str(folders / "clf-onnx"))) + report
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False, env=ENV
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    tokenizer, pad = load_tokenizer(folders / "clf-onnx", 128)
    tokenizer.enable_padding(pad_id=pad, pad_token="[PAD]")
    encodings = tokenizer.encode_batch(result["sentences"])
    feeds = {
        "input_ids": np.array([e.ids for e in encodings]),
        "token_type_ids": np.array([e.type_ids for e in encodings]),
        "attention_mask": np.array([e.attention_mask for e in encodings]),
    }
    np.testing.assert_allclose(result["logits"], _torch_logits(_classifier(folders), feeds), atol=1e-4)


def test_export_folder_layout(folders):
    out = folders / "clf-onnx"
    assert sorted(p.name for p in out.iterdir()) == [
        "deploy.json", "model.onnx", "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt"
    ]  # fmt: skip
    info = json.loads((out / "deploy.json").read_text())
    assert (info["task"], info["num_labels"], info["quantize"], info["max_seq_length"]) == (
        "sequence-classification",
        3,
        None,
        128,
    )
    tokenizer_config = json.loads((out / "tokenizer_config.json").read_text())
    assert (tokenizer_config["do_lower_case"], tokenizer_config["model_max_length"]) == (True, 128)
    assert (out / "vocab.txt").read_bytes() == (folders / "vocab.txt").read_bytes()
    assert json.loads((folders / "mlm-onnx" / "deploy.json").read_text())["task"] == "masked-lm"


def _bad_export(argv, capsys) -> str:
    assert main(["export", "onnx", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("sharebert export: error: "), err
    return err


def test_bad_input_is_one_line_and_leaves_nothing(folders, tmp_path, capsys):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("not a model")
    save_model_folder(ShareBertModel(TINY, seed=0), tmp_path / "encoder", folders / "vocab.txt")
    out = tmp_path / "out"
    assert "not a model folder" in _bad_export([str(tmp_path / "notes"), "-o", str(out)], capsys)
    assert "unsupported head" in _bad_export([str(tmp_path / "encoder"), "-o", str(out)], capsys)
    assert "max_position_embeddings=128" in _bad_export(
        [str(folders / "clf"), "-o", str(out), "--max-seq-length", "129"], capsys
    )
    before = {p.name: p.read_bytes() for p in (folders / "mlm-onnx").iterdir()}
    assert "holds another export" in _bad_export([str(folders / "clf"), "-o", str(folders / "mlm-onnx")], capsys)
    assert {p.name: p.read_bytes() for p in (folders / "mlm-onnx").iterdir()} == before
    assert "not an empty folder" in _bad_export([str(folders / "clf"), "-o", str(tmp_path / "notes")], capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["encoder", "notes"]


def test_a_failure_during_the_export_leaves_nothing(folders, tmp_path, monkeypatch):
    def fail(source, target):
        raise RuntimeError("quantizer crashed")

    monkeypatch.setattr(export_module, "_quantize_int8", fail)
    with pytest.raises(RuntimeError, match="quantizer crashed"):
        export_onnx(OnnxExportConfig(folders / "clf", tmp_path / "out", quantize="int8"))
    assert list(tmp_path.iterdir()) == []


def test_bench_infer_refuses_what_it_cannot_measure(folders, tmp_path, capsys):
    dev = tmp_path / "SST-2" / "dev.tsv"
    dev.parent.mkdir()
    dev.write_text("sentence\tlabel\ngood film\t1\n")
    cases = [
        ([str(folders / "mlm-onnx"), "--data", str(dev)], "a masked-lm export"),
        ([str(folders / "clf"), "--data", str(dev)], "not an ONNX export"),
        ([str(folders / "clf-onnx"), "--data", str(dev)], "3 outputs, but sst2 has 2"),
        ([str(folders / "clf-onnx"), "--data", str(tmp_path / "dev.tsv")], "cannot tell the GLUE task"),
    ]
    for argv, message in cases:
        assert main(["bench-infer", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err


def test_sharebert_help_imports_neither_onnx_nor_torch():
    code = (
        "import sys\nfrom sharebert.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('onnx', 'onnxruntime', 'torch') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False, env=ENV
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
