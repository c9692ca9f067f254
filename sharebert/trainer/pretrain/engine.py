"""The one class that wraps DeepSpeed: forward/backward, optimizer step, save, load.

Nothing else in sharebert imports deepspeed (and this module imports it only when an engine is built),
so the DeepSpeed-specific details live here:
  * the DeepSpeed config is generated from typed settings (an optional JSON file may override keys);
    train_batch_size = micro-batch x gradient accumulation x world size is checked first;
  * the optimizer is torch's AdamW (fused on GPUs), so no DeepSpeed op has to be compiled; biases,
    LayerNorm weights and every other 1-D parameter get no weight decay;
  * precision: fp32; bf16 = torch autocast around the forward pass with fp32 weights and optimizer
    (exports are exact fp32); fp16 = DeepSpeed's half-precision module with dynamic loss scaling.
    The bf16 autocast must be DeepSpeed's own `torch_autocast` section: its engine switches off any
    autocast entered outside it, so a model called through the engine would silently run in fp32;
  * the learning rate is set by the caller before each optimizer step (a pure function of progress),
    so nothing about the schedule needs saving;
  * checkpoints are data, never code: DeepSpeed's files are read with torch.load(weights_only=True),
    which allows tensors, plain Python values and only the few DeepSpeed types listed in
    `deepspeed_checkpoint_types` (docs/pretrain.md, "What a checkpoint may hold").
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import os
import pickle
import re
import socket
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ...errors import ConfigError, DataError, file_error
from ...fileio import read_json
from .config import ZERO_STAGES, EngineConfig

log = logging.getLogger(__name__)

# How torch's weights-only unpickler names what it refused.
_REFUSED_GLOBAL = re.compile(r"Unsupported global: GLOBAL (\S+)")
# Keys of a --deepspeed_config file that would fight sharebert's own optimizer and LR schedule.
_FORBIDDEN_OVERRIDES = ("optimizer", "scheduler")


# ------------------------------------------------------------------------------------ pure helpers
@dataclass(frozen=True)
class LaunchEnvironment:
    """Where this process stands among the processes a launcher (torchrun, deepspeed) started."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls, local_rank_flag: int | None = None) -> LaunchEnvironment:
        def env_int(name: str, default: int) -> int:
            value = os.environ.get(name, "")
            try:
                return int(value) if value else default
            except ValueError:
                raise ConfigError(f"environment variable {name}={value!r} is not an integer") from None

        local = env_int("LOCAL_RANK", local_rank_flag if local_rank_flag is not None and local_rank_flag >= 0 else 0)
        env = cls(env_int("RANK", 0), env_int("WORLD_SIZE", 1), local)
        if not 0 <= env.rank < env.world_size:
            raise ConfigError(f"RANK={env.rank} is outside [0, WORLD_SIZE={env.world_size})")
        return env


def accumulation_steps(train_batch_size: int, micro_batch_size: int, world_size: int, given: int | None = None) -> int:
    """Gradient accumulation steps so that train_batch_size = micro x accumulation x world size."""
    per_pass = micro_batch_size * world_size
    if given is not None:
        if given * per_pass != train_batch_size:
            raise ConfigError(
                f"train_batch_size={train_batch_size} is not train_micro_batch_size_per_gpu={micro_batch_size} x "
                f"gradient_accumulation_steps={given} x world size {world_size} (= {given * per_pass})"
            )
        return given
    if train_batch_size % per_pass:
        raise ConfigError(
            f"train_batch_size={train_batch_size} is not a multiple of train_micro_batch_size_per_gpu="
            f"{micro_batch_size} x world size {world_size} (= {per_pass}): change one of them so that "
            "train_batch_size = micro-batch x accumulation steps x world size"
        )
    return train_batch_size // per_pass


def resolve_precision(requested: str, cuda: bool | None = None, bf16_supported: bool | None = None) -> str:
    if cuda is None:
        cuda = torch.cuda.is_available()
    if requested == "auto":
        if bf16_supported is None:
            bf16_supported = cuda and torch.cuda.is_bf16_supported()
        return "bf16" if bf16_supported else "fp32"
    if requested == "fp16" and not cuda:
        raise ConfigError("--fp16 needs a CUDA GPU (use --bf16 or fp32 on the CPU)")
    return requested


def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def deepspeed_config(config: EngineConfig, world_size: int, precision: str) -> dict:
    """The DeepSpeed config: generated from `config`, then overridden by config.deepspeed_config's keys."""
    generated = {
        "train_batch_size": config.train_batch_size,
        "train_micro_batch_size_per_gpu": config.micro_batch_size,
        "gradient_clipping": config.gradient_clipping,
        "zero_optimization": {"stage": config.zero_stage},
        "zero_allow_untested_optimizer": True,  # torch's AdamW is fine with ZeRO 1/2
        "steps_per_print": 2**62,  # sharebert logs progress itself
        "wall_clock_breakdown": False,
    }
    if precision == "fp16":
        generated["fp16"] = {
            "enabled": True,
            "loss_scale": 0,
            "initial_scale_power": 16,
            "loss_scale_window": 1000,
            "hysteresis": 2,
            "min_loss_scale": 1,
        }
    if precision == "bf16":
        # An empty list of "lower precision safe" modules keeps gradients and their all-reduce in fp32.
        generated["torch_autocast"] = {"enabled": True, "dtype": "bfloat16", "lower_precision_safe_modules": []}
    override = {}
    if config.deepspeed_config is not None:
        override = read_json(config.deepspeed_config)
        if not isinstance(override, dict):
            raise file_error(config.deepspeed_config, "a DeepSpeed config must be a JSON object")
        bad = [k for k in _FORBIDDEN_OVERRIDES if k in override]
        if bad:
            raise file_error(
                config.deepspeed_config,
                f"remove {', '.join(map(repr, bad))}: the optimizer and the LR schedule come from sharebert's flags",
            )
    merged = _merge(generated, override)
    given = override.get("gradient_accumulation_steps", config.gradient_accumulation_steps)
    merged["gradient_accumulation_steps"] = accumulation_steps(
        int(merged["train_batch_size"]), int(merged["train_micro_batch_size_per_gpu"]), world_size, given
    )
    stage = merged.get("zero_optimization", {}).get("stage", 0)
    if stage not in ZERO_STAGES:
        raise ConfigError(f"ZeRO stage {stage} is not supported (0, 1 or 2)")
    if merged.get("fp16", {}).get("enabled") and merged.get("bf16", {}).get("enabled"):
        raise ConfigError("the DeepSpeed config enables both fp16 and bf16")
    if (
        merged.get("fp16", {}).get("enabled") or merged.get("bf16", {}).get("enabled")
    ) and "torch_autocast" in generated:
        del merged["torch_autocast"]  # the file chose DeepSpeed's own half-precision weights instead
    return merged


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: matrices and embeddings decay; biases, LayerNorm weights (every 1-D parameter) do not."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


@contextlib.contextmanager
def _quiet_deepspeed():
    """DeepSpeed prints to stdout while it starts and warns when it picks the CPU: keep that in the debug log."""
    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        yield
    if captured.getvalue().strip():
        log.debug("deepspeed: %s", captured.getvalue().strip())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------ the engine
@dataclass(frozen=True)
class StepReport:
    grad_norm: float | None  # before clipping; None where DeepSpeed does not report it
    loss_scale: float | None  # fp16 only
    skipped: bool  # fp16 overflow: DeepSpeed skipped the update and lowered the loss scale


class TrainingEngine:
    """A model under DeepSpeed with sharebert's optimizer: one object to step, save and load."""

    def __init__(self, model: torch.nn.Module, config: EngineConfig, env: LaunchEnvironment):
        self.env = env
        self.precision = resolve_precision(config.precision)
        self.ds_config = deepspeed_config(config, env.world_size, self.precision)
        with _quiet_deepspeed():
            self.device = self._init_distributed()
            import deepspeed

            model.to(self.device)
            self._optimizer = torch.optim.AdamW(
                parameter_groups(model, config.weight_decay),
                lr=config.lr,
                betas=(config.adam_beta1, config.adam_beta2),
                eps=config.adam_eps,
                fused=self.device.type == "cuda",
            )
            self.ds, _, _, _ = deepspeed.initialize(model=model, optimizer=self._optimizer, config=self.ds_config)
            if config.compile:
                self.ds.compile()
        self.accumulation_steps = self.ds.gradient_accumulation_steps()
        self.micro_batch_size = self.ds.train_micro_batch_size_per_gpu()
        self.fp16 = self.ds.fp16_enabled()
        self._autocast = self.precision == "bf16" and not self.ds.bfloat16_enabled()
        if self._autocast and not getattr(self.ds, "torch_autocast_enabled", lambda: False)():
            raise ConfigError(
                f"bf16 autocast needs DeepSpeed >= 0.17 (this is {deepspeed.__version__}): use --fp32 "
                "or upgrade DeepSpeed"
            )
        # DeepSpeed (0.19) applies the fp16 loss scale in its backward only for ZeRO optimizers, yet its plain
        # fp16 optimizers divide the gradients by that scale before the update: without ZeRO, scale here.
        self._scale_loss_here = self.fp16 and not self.ds.zero_optimization()
        # Without ZeRO or fp16, DeepSpeed clips without reporting the norm; compute it here (grads are whole).
        self._own_grad_norm = not (self.fp16 or self.ds.bfloat16_enabled() or self.ds.zero_optimization())

    def _init_distributed(self) -> torch.device:
        import deepspeed

        if not log.isEnabledFor(logging.DEBUG):
            deepspeed.utils.logger.setLevel(logging.WARNING)
        if "WORLD_SIZE" not in os.environ:  # a plain `python`/`sharebert` start: a world of one
            os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK=str(self.env.local_rank))
            os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
            os.environ.setdefault("MASTER_PORT", str(_free_port()))
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(self.env.local_rank)
        if not torch.distributed.is_initialized():
            deepspeed.init_distributed(dist_backend="nccl" if cuda else "gloo", auto_mpi_discovery=False, verbose=False)
        return torch.device("cuda", self.env.local_rank) if cuda else torch.device("cpu")

    @property
    def module(self) -> torch.nn.Module:
        return self.ds.module

    def train(self, mode: bool = True) -> None:
        self.ds.train(mode)

    def autocast(self):
        """bf16 autocast for calls of `module` outside the engine (the engine's own forward has its own)."""
        if self._autocast:
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def to_device(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.to(self.device, non_blocking=True) for k, v in inputs.items()}

    # ---------------------------------------------------------------- training
    def forward_backward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """One micro-batch: forward, backward (DeepSpeed all-reduces at the last one); returns the loss."""
        loss = self.ds(**self.to_device(inputs)).loss  # under the engine's own autocast where bf16
        self.ds.backward(loss.float() * self.loss_scale() if self._scale_loss_here else loss)
        if not self.ds.is_gradient_accumulation_boundary():
            self.ds.step()  # only advances DeepSpeed's micro-step counter
        return loss.detach()

    def grad_norm_tensor(self) -> torch.Tensor | None:
        """The global gradient norm before the step (a device tensor: no sync), where gradients are whole on
        every rank; None under ZeRO or fp16, where DeepSpeed computes and reports it in `optimizer_step`."""
        if not self._own_grad_norm:
            return None
        grads = [p.grad for p in self.module.parameters() if p.grad is not None]
        return torch.nn.utils.get_total_norm(grads) if grads else torch.zeros((), device=self.device)

    def optimizer_step(self, lr: float, grad_norm: float | None = None) -> StepReport:
        """Clip, update with learning rate `lr`, zero the gradients. Call after the last micro-batch."""
        if not self.ds.is_gradient_accumulation_boundary():
            raise RuntimeError("optimizer_step called before the last micro-batch of the step")
        for group in self._optimizer.param_groups:
            group["lr"] = lr
        skipped_before, scale = self.ds.skipped_steps, self.loss_scale()
        self.ds.step()
        if grad_norm is None:
            reported = self.ds.get_global_grad_norm()
            grad_norm = None if reported is None else float(reported)
            if grad_norm is not None and self._scale_loss_here:
                grad_norm /= scale  # the plain fp16 optimizer reports the norm of the scaled gradients
        return StepReport(grad_norm, self.loss_scale(), self.ds.skipped_steps > skipped_before)

    def loss_scale(self) -> float | None:
        if not self.fp16:
            return None
        optimizer = self.ds.optimizer
        scale = getattr(optimizer, "cur_scale", None)
        return float(scale if scale is not None else optimizer.loss_scale)

    # ---------------------------------------------------------------- collectives
    def all_reduce_sum(self, values: list | torch.Tensor) -> list[float]:
        """Sum numbers (floats or 0-d tensors) over all ranks in one collective; one host sync."""
        if torch.is_tensor(values):
            t = values.to(device=self.device, dtype=torch.float64)
        else:
            t = torch.stack([torch.as_tensor(v, dtype=torch.float64, device=self.device) for v in values])
        if self.env.world_size > 1:
            torch.distributed.all_reduce(t)
        return t.tolist()

    def barrier(self) -> None:
        if self.env.world_size > 1:
            torch.distributed.barrier()

    # ---------------------------------------------------------------- checkpoints
    def save(self, folder: Path, tag: str, client_state: dict) -> None:
        """DeepSpeed state (model, optimizer, loss scale) into folder/tag; every rank must call it."""
        self.ds.save_checkpoint(str(folder), tag=tag, client_state=client_state, save_latest=False)

    def load(self, folder: Path, tag: str) -> dict:
        """Restore folder/tag written by `save`; returns its client state."""
        checkpoint = Path(folder) / tag
        if self.ds.load_universal_checkpoint():
            raise ConfigError("DeepSpeed's universal checkpoints are not supported: they are read as pickled code")
        # Every file DeepSpeed reads goes through its checkpoint engine's `load`.
        self.ds.checkpoint_engine.load = functools.partial(load_as_data, allowed=deepspeed_checkpoint_types())
        try:
            path, client_state = self.ds.load_checkpoint(
                str(folder), tag=tag, load_optimizer_states=True, load_lr_scheduler_states=False
            )
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError) as e:
            raise file_error(checkpoint, f"does not fit this run's model and optimizer ({_first_line(e)})") from None
        if path is None:
            raise DataError(f"{checkpoint}: not a complete checkpoint (DeepSpeed could not load it)")
        if not isinstance(client_state, dict):
            raise file_error(checkpoint, "not a checkpoint of this run (its client state is not a dict)")
        return client_state


def deepspeed_checkpoint_types() -> list[type]:
    """The classes DeepSpeed (0.19) pickles into its checkpoint files besides tensors and plain values:
    ZeRO's stage and fragment addresses, and the fp16 loss scalers (plain attributes only)."""
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return [ZeroStageEnum, fragment_address, LossScaler, DynamicLossScaler]


def load_as_data(path: str | os.PathLike, map_location=None, allowed: Sequence[type] = ()):
    """torch.load that never runs code: tensors, plain Python values and the classes in `allowed` load;
    anything else (a pickled function or class that could run code) is refused. Any failure is one line
    naming the file."""
    try:
        # torch warns about a file it cannot read before raising; the error below says it in one line.
        with torch.serialization.safe_globals(list(allowed)), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        refused = _REFUSED_GLOBAL.search(str(e))
        if refused is None:
            raise file_error(path, "unreadable (not a torch file of tensors and plain values)") from None
        raise file_error(
            path,
            f"holds objects other than tensors and plain values ({refused.group(1)}): refused, a checkpoint "
            "is loaded as data, never as code (docs/pretrain.md)",
        ) from None
    except Exception as e:  # truncated, not a torch file, unreadable: torch's own words, first line only
        raise file_error(path, f"unreadable ({_first_line(e)})") from None


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
