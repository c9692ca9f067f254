"""`sharebert prepare` and `sharebert mask` never import the training stack (docs/architecture.md, Boundaries).

The stages run through the CLI in a fresh interpreter, in-process (--workers 1), on the generated dump;
the interpreter then reports which of the watched modules it has loaded: none of the training ones, and
the data libraries the stages do use (so the report is seen to work).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

TRAINING_MODULES = ["datasets", "deepspeed", "torch", "transformers", "wandb"]
DATA_MODULES = ["h5py", "pyarrow", "tokenizers"]
ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import json, sys
from sharebert.cli import main

for argv in json.loads(sys.argv[1]):
    assert main(argv) == 0, argv
print(json.dumps(sorted(name for name in json.loads(sys.argv[2]) if name in sys.modules)))
"""


def loaded_modules(stages: list[list[str]], watched: list[str]) -> list[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(stages), json.dumps(watched)],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_prepare_and_mask_import_no_training_module(wiki_dump, tmp_path):
    prepared, samples = str(tmp_path / "prepared"), str(tmp_path / "samples")
    stages = [
        ["prepare", "--wiki", str(wiki_dump.path), "--train-vocab", "500", "-o", prepared, "--workers", "1", "-q"],
        ["mask", prepared, "-o", samples, "--dup-factor", "1", "--workers", "1", "-q"],
        ["mask", "--validate-only", samples, "--workers", "1", "-q"],
    ]
    assert loaded_modules(stages, TRAINING_MODULES + DATA_MODULES) == DATA_MODULES
