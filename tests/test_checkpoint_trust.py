"""Checkpoints are data, never code (engine.load_as_data, checkpoint.read_rank_state): a file holding a pickled
object that would run code, or a malformed rank file, is refused with one line naming the file, exit status 2."""

from __future__ import annotations

import shutil

import pytest
import torch
from samples_fixture import pretrain_argv, write_samples

from sharebert.cli import main
from sharebert.errors import DataError
from sharebert.trainer.pretrain.engine import deepspeed_checkpoint_types, load_as_data

TINY = "--preset tiny --train_batch_size 16 --train_micro_batch_size_per_gpu 8 --checkpoint_steps 1000 --max_steps 4"
STEP = "step00000002"

pytestmark = pytest.mark.usefixtures("torch_one_thread")


class RunsCode:
    """Unpickling it would create `marker` (what a hostile checkpoint could do with any command)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickle_that_would_run_code_is_refused_and_runs_nothing(tmp_path):
    marker, path = tmp_path / "marker", tmp_path / "mp_rank_00_model_states.pt"
    torch.save({"module": RunsCode(marker)}, path)
    with pytest.raises(DataError) as error:
        load_as_data(str(path), map_location="cpu")
    assert str(error.value).startswith(f"{path}: holds objects other than tensors and plain values")
    assert "\n" not in str(error.value) and not marker.exists()


def test_the_deepspeed_types_of_zero_and_fp16_states_load(tmp_path):
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    state = {
        "zero_stage": ZeroStageEnum.gradients,
        "address": fragment_address(numel=4, start=8),
        "static": LossScaler(scale=128.0),
        "dynamic": DynamicLossScaler(
            2.0**16, 1000, min_scale=1, delayed_shift=2, consecutive_hysteresis=False, dtype=torch.half
        ),
    }
    torch.save(state, tmp_path / "optim_states.pt")
    loaded = load_as_data(tmp_path / "optim_states.pt", allowed=deepspeed_checkpoint_types())
    assert loaded["zero_stage"] is ZeroStageEnum.gradients and loaded["address"] == state["address"]
    assert vars(loaded["static"]) == vars(state["static"]) and vars(loaded["dynamic"]) == vars(state["dynamic"])


@pytest.fixture(scope="module")
def interrupted_run(tmp_path_factory):
    """(samples, a run folder stopped at step 2 with a checkpoint)."""
    root = tmp_path_factory.mktemp("trust")
    samples = write_samples(root / "samples", [300, 90, 500], [120])
    assert main(pretrain_argv(samples, root / "run", f"{TINY} --exit_at_step 2")) == 0
    return samples, root / "run"


def _resume_fails_with_one_line(interrupted_run, tmp_path, capsys, damage) -> str:
    samples, original = interrupted_run
    run = tmp_path / "run"
    shutil.copytree(original, run)
    damaged = damage(run / "checkpoints" / STEP)
    capsys.readouterr()
    assert main(pretrain_argv(samples, run, f"{TINY} --resume")) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"sharebert pretrain: error: {damaged}: "), lines
    return lines[0]


def test_resuming_from_a_model_state_that_would_run_code_fails_without_running_it(interrupted_run, tmp_path, capsys):
    marker = tmp_path / "marker"

    def hostile_model_state(checkpoint):
        path = checkpoint / "mp_rank_00_model_states.pt"
        torch.save({"module": RunsCode(marker), "sharebert": {}}, path)
        return path

    line = _resume_fails_with_one_line(interrupted_run, tmp_path, capsys, hostile_model_state)
    assert "holds objects other than tensors and plain values" in line
    assert not marker.exists()


def _truncated(path):
    path.write_bytes(path.read_bytes()[:100])


def _garbage(path):
    path.write_bytes(b"\x00garbage\xff" * 50)


def _wrong_structure(path):
    torch.save([1, 2, 3], path)


def _malformed_rng(path):
    state = torch.load(path, weights_only=True)
    state["rng"]["python"] = (3, (1, 2), None)
    torch.save(state, path)


def _rng_without_torch_state(path):
    state = torch.load(path, weights_only=True)
    del state["rng"]["torch"]
    torch.save(state, path)


def _code_in_rank_file(path):
    torch.save({"rng": RunsCode(path.parent / "marker")}, path)


@pytest.mark.parametrize(
    "damage", [_truncated, _garbage, _wrong_structure, _malformed_rng, _rng_without_torch_state, _code_in_rank_file]
)
def test_a_malformed_rank_file_fails_with_one_line_naming_it(interrupted_run, tmp_path, capsys, damage):
    def damage_rank_file(checkpoint):
        path = checkpoint / "sharebert-rank00000.pt"
        damage(path)
        return path

    _resume_fails_with_one_line(interrupted_run, tmp_path, capsys, damage_rank_file)
    assert not (tmp_path / "run" / "checkpoints" / STEP / "marker").exists()


def test_a_zero_checkpoint_resumes_bit_for_bit_when_loaded_as_data(interrupted_run, tmp_path):
    """ZeRO's optimizer file holds DeepSpeed's own types: the allow-list must cover them (0.19)."""
    from sharebert.trainer.model.modeling import load_model_folder

    samples, _ = interrupted_run
    zero = f"{TINY} --zero_stage 1"
    assert main(pretrain_argv(samples, tmp_path / "straight", zero)) == 0
    assert main(pretrain_argv(samples, tmp_path / "resumed", f"{zero} --exit_at_step 2")) == 0
    assert list((tmp_path / "resumed" / "checkpoints" / STEP).glob("*optim_states.pt"))
    assert main(pretrain_argv(samples, tmp_path / "resumed", f"{zero} --resume")) == 0
    straight, resumed = (load_model_folder(tmp_path / p / "model").state_dict() for p in ("straight", "resumed"))
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)


@pytest.mark.parametrize("change", [{"step": "abc"}, {"data": None}, {"elapsed_s": [1]}])
def test_a_malformed_saved_state_fails_with_one_line_naming_the_checkpoint(interrupted_run, tmp_path, capsys, change):
    def damage_saved_state(checkpoint):
        path = checkpoint / "mp_rank_00_model_states.pt"
        state = torch.load(path, weights_only=False)  # our own file, made by the fixture
        state["sharebert"].update(change)
        torch.save(state, path)
        return checkpoint

    line = _resume_fails_with_one_line(interrupted_run, tmp_path, capsys, damage_saved_state)
    assert f"field sharebert.{next(iter(change))}" in line
