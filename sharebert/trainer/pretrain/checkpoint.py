"""Training checkpoints of a pretraining run.

RUN_DIR/checkpoints/
  step00001000/        DeepSpeed's files (model, optimizer, loss scale, sharebert's client state)
                       + sharebert-rank00000.pt ... (each rank's RNG states and data position)
  latest               the tag of the newest complete checkpoint, replaced atomically
`latest` moves only after every rank has finished writing, so a run killed while saving resumes from
the previous checkpoint; the last `keep` checkpoints are kept. A full disk while saving is one line
(fileio.disk_full_error); the unfinished checkpoint is removed when the run resumes.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

import torch

from ...errors import file_error
from ...fileio import atomic_path, disk_full_as_error, space_needed, write_bytes_atomic
from ..runtime import capture_rng, restore_rng
from .engine import TrainingEngine, load_as_data

log = logging.getLogger(__name__)

CHECKPOINTS_DIR = "checkpoints"
LATEST_FILE = "latest"
_TAG = re.compile(r"^step(\d+)$")


def tag_for(step: int) -> str:
    return f"step{step:08d}"


def rank_file(rank: int) -> str:
    return f"sharebert-rank{rank:05d}.pt"


def latest_tag(folder: Path) -> str | None:
    """The tag `latest` names in a checkpoints folder, None when there is none."""
    path = Path(folder) / LATEST_FILE
    if not path.exists():
        return None
    tag = path.read_text(encoding="utf-8").strip()
    if not tag or not (Path(folder) / tag).is_dir():
        raise file_error(path, f"names checkpoint {tag!r}, which is missing")
    return tag


def locate_checkpoint(path: Path, tag: str | None = None) -> tuple[Path, str]:
    """(checkpoints folder, tag) from a run folder, a checkpoints folder or one checkpoint's folder."""
    path = Path(path)
    if not path.is_dir():
        raise file_error(path, "no such checkpoint folder")
    if tag is None and (path / CHECKPOINTS_DIR).is_dir():
        path = path / CHECKPOINTS_DIR
    if tag is not None:
        if (path / CHECKPOINTS_DIR / tag).is_dir():
            path = path / CHECKPOINTS_DIR
        if not (path / tag).is_dir():
            raise file_error(path / tag, "no such checkpoint")
        return path, tag
    found = latest_tag(path)
    if found is not None:
        return path, found
    if _TAG.match(path.name) and any(path.glob("*model_states.pt")):
        return path.parent, path.name
    raise file_error(path, f"holds no checkpoint (no {LATEST_FILE} file, not a checkpoint folder)")


def read_rank_state(path: Path) -> dict:
    """A rank file, loaded as data (torch.load(weights_only=True): tensors and plain values only) and
    checked: a dict whose "rng" the random generators accept. Anything else is one line naming the file."""
    state = load_as_data(path, map_location="cpu")
    if not isinstance(state, dict) or not isinstance(state.get("rng"), dict):
        raise file_error(path, 'not a sharebert rank file (no "rng" state)')
    _check_rng_state(path, state["rng"])
    return state


def _check_rng_state(path: Path, rng: dict) -> None:
    """Try the state on the generators, then put theirs back: restoring it later cannot fail."""
    current = capture_rng()
    try:
        restore_rng(rng)
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as e:
        raise file_error(path, f"holds a malformed RNG state ({type(e).__name__})") from None
    finally:
        restore_rng(current)


# Besides the weights, a checkpoint holds Adam's two moments and, in mixed precision, fp32 master weights.
OPTIMIZER_BYTES_PER_PARAMETER = 12


def checkpoint_bytes(module: torch.nn.Module) -> int:
    """About the size of one checkpoint of `module` (for the message of a full disk)."""
    return sum(p.numel() * (p.element_size() + OPTIMIZER_BYTES_PER_PARAMETER) for p in module.parameters())


class Checkpoints:
    """Saves and restores checkpoints in one folder for every rank of a run."""

    def __init__(self, folder: Path, engine: TrainingEngine, keep: int):
        self.folder, self.engine, self.keep = Path(folder), engine, keep

    def save(self, step: int, client_state: dict, rank_state: dict) -> Path:
        """Every rank calls this with the same step; returns the checkpoint's folder."""
        tag, env = tag_for(step), self.engine.env
        target = self.folder / tag
        if env.rank == 0 and target.exists():  # left by a run that died after this step: not `latest`
            shutil.rmtree(target)
        self.engine.barrier()
        with space_needed(self.folder, lambda: checkpoint_bytes(self.engine.module)), disk_full_as_error(self.folder):
            self.engine.save(self.folder, tag, client_state)
            target.mkdir(parents=True, exist_ok=True)  # DeepSpeed creates it on the ranks that write model files
            with atomic_path(target / rank_file(env.rank)) as tmp:
                torch.save(rank_state, tmp)
        self.engine.barrier()  # every rank's files are complete: point `latest` at them
        if env.local_rank == 0:  # one writer per node, so node-local checkpoint folders work too
            write_bytes_atomic(self.folder / LATEST_FILE, f"{tag}\n".encode())
        if env.rank == 0:
            self._prune(keep_tag=tag)
        self.engine.barrier()
        log.info("checkpoint saved: %s", target)
        return target

    def load(self, folder: Path, tag: str) -> tuple[dict, dict | None]:
        """(client state, this rank's state or None when the checkpoint was written by fewer ranks)."""
        client_state = self.engine.load(folder, tag)
        path = Path(folder) / tag / rank_file(self.engine.env.rank)
        return client_state, (read_rank_state(path) if path.exists() else None)

    def _prune(self, keep_tag: str) -> None:
        tags = sorted((int(m.group(1)), p) for p in self.folder.iterdir() if p.is_dir() and (m := _TAG.match(p.name)))
        for _, path in tags[: -self.keep] if self.keep > 0 else []:
            if path.name != keep_tag:
                shutil.rmtree(path, ignore_errors=True)
