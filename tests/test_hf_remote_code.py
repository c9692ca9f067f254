"""The remote code of a model folder: generated from sharebert's source, deterministic, standalone (docs/model.md)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys

import pytest
import torch
from hf_fixtures import padded_batch, tiny_mlm_folder

from sharebert.trainer.model.modeling import load_model_folder
from sharebert.trainer.model.remote_code import INCLUDED_MODULES, PACKAGE_ROOT, remote_code_source


@pytest.fixture(scope="module")
def mlm_folder(tmp_path_factory):
    return tiny_mlm_folder(tmp_path_factory.mktemp("mlm"))


def test_loads_where_sharebert_is_not_installed(mlm_folder, tmp_path):
    """A fresh interpreter that cannot import sharebert runs the folder's own code."""
    script = f"""
import importlib.abc, json, sys, torch
class NoSharebert(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "sharebert":
            raise ImportError("sharebert is not installed here")
sys.meta_path.insert(0, NoSharebert())
try:
    import sharebert
    raise SystemExit("sharebert was importable")
except ImportError:
    pass
import transformers
model = transformers.AutoModelForMaskedLM.from_pretrained({str(mlm_folder)!r}, trust_remote_code=True).eval()
batch = {{k: torch.tensor(v) for k, v in json.loads(sys.argv[1]).items()}}
with torch.no_grad():
    print(json.dumps(model(**batch).logits.tolist()))
"""
    batch = padded_batch()
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"}
    env.pop("PYTHONPATH", None)
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps({k: v.tolist() for k, v in batch.items()})],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    logits = torch.tensor(json.loads(done.stdout.strip().splitlines()[-1]))
    ours = load_model_folder(mlm_folder, task="masked-lm").eval()
    with torch.no_grad():
        assert (logits - ours(**batch).logits).abs().max().item() <= 1e-5


def test_remote_code_is_generated_deterministically_from_the_package(mlm_folder):
    source = remote_code_source()
    assert source == remote_code_source()
    assert (mlm_folder / "modeling_sharebert.py").read_text(encoding="utf-8") == source
    imported = [
        (node.level, node.module or "") if isinstance(node, ast.ImportFrom) else (0, alias.name)
        for node in ast.walk(ast.parse(source))
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    ]
    assert any(name.startswith("transformers") for _, name in imported)
    assert not [(level, name) for level, name in imported if level or name.split(".")[0] == "sharebert"]


def copy_of_the_model_sources(root):
    """The modules the remote code is made of, copied under `root`; returns the copy's modeling.py."""
    for name in INCLUDED_MODULES:
        relative = os.path.join(*name.split(".")) + ".py"
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text((PACKAGE_ROOT / relative).read_text())
    return root / "sharebert" / "trainer" / "model" / "modeling.py"


def test_remote_code_follows_new_model_code(tmp_path):
    """Whatever modeling.py gains comes along, unless it needs what only sharebert has (its file I/O)."""
    modeling = copy_of_the_model_sources(tmp_path)
    modeling.write_text(
        modeling.read_text()
        + "\n\ndef _new_unpadded_helper(x: Tensor) -> Tensor:\n    return x * math.sqrt(2.0)\n"
        + "\n\ndef _needs_files(folder):\n    return read_model_folder(folder)\n"
        + "\n\ndef _needs_that(folder):\n    return _needs_files(folder)\n"
    )
    source = remote_code_source(tmp_path)
    assert "def _new_unpadded_helper(x: Tensor) -> Tensor:" in source
    assert "_needs_files" not in source and "_needs_that" not in source
    assert source.replace("    return x * math.sqrt(2.0)\n", "").count("\n") < remote_code_source().count("\n") + 5
    compile(source, "modeling_sharebert.py", "exec")


def test_remote_code_refuses_to_lose_a_model_class(tmp_path):
    """A model class that came to need a module left out would drop the classes built on it: an error."""
    modeling = copy_of_the_model_sources(tmp_path)
    text = modeling.read_text()
    modeling.write_text(
        text.replace(
            '        self.pre_ln = config.encoder_ln_mode == "pre-ln"\n',
            '        self.pre_ln = config.encoder_ln_mode == "pre-ln"\n        TASKS\n',
            1,
        )
    )
    with pytest.raises(RuntimeError, match="ShareBertHfForMaskedLM"):
        remote_code_source(tmp_path)
