"""Writing Hugging Face folders never imports transformers; only loading them does (docs/model.md)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from launcher_env import subprocess_env
from samples_fixture import pretrain_argv, write_samples

ROOT = Path(__file__).resolve().parents[1]


def test_writing_hugging_face_folders_needs_no_transformers(tmp_path):
    """`sharebert --help`, a pretraining run and export-hf in a fresh interpreter never import transformers."""
    samples = write_samples(tmp_path / "samples", [16], [])
    run_flags = "--preset tiny --train_batch_size 8 --train_micro_batch_size_per_gpu 8 --max_steps 1 -q"
    script = f"""
import contextlib, io, sys
from sharebert.cli import main
with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
    main(["--help"])
assert main({pretrain_argv(samples, tmp_path / "run", run_flags)!r}) == 0
assert main(["export-hf", {str(tmp_path / "run" / "model")!r}, "-o", {str(tmp_path / "hf")!r}, "-q"]) == 0
print("transformers" in sys.modules)
"""
    env = subprocess_env(PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "False"
    assert (tmp_path / "hf" / "modeling_sharebert.py").exists()
