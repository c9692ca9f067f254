"""FP8 training of the shared layers' matmuls with torchao's float8 recipes, applied from outside the model.

Every `SharedMatmul` of the model (x @ W + b for the carved q/k/v, output and feed-forward matrices; L per
model) is swapped for `Float8SharedMatmul`, which casts its two operands to FP8 with dynamic scales (per
tensor or per row) and runs the GEMM in FP8, forward and backward (torchao's `matmul_with_hp_or_float8_args`,
which torch.compile fuses with the casts). What stays in higher precision: the fp32 master weights and AdamW,
the carving of the matrices from the embedding (formed once per pass in the autocast dtype), attention,
norms, the input path and the heads. torchao is imported only here, only when --fp8 is given
(docs/pretrain.md, "FP8 and unpadded").
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from ...errors import ConfigError
from ..model.modeling import SharedMatmul
from .config import FP8_RECIPES

MIN_CAPABILITY = (8, 9)  # FP8 tensor cores: Ada (8.9), Hopper (9.0) and newer
INSTALL_HINT = "pip install 'sharebert[fp8]' (or pip install torchao)"


def check_fp8_supported() -> None:
    """Raise ConfigError (one line) where --fp8 cannot run: no CUDA, a GPU older than 8.9, or no torchao."""
    if not torch.cuda.is_available():
        raise ConfigError(
            "--fp8 needs a CUDA GPU with FP8 tensor cores (compute capability 8.9+: Ada, Hopper or newer); "
            "none is available here"
        )
    capability = torch.cuda.get_device_capability()
    if capability < MIN_CAPABILITY:
        raise ConfigError(
            f"--fp8 needs a GPU of compute capability 8.9 or newer (Ada, Hopper or newer); "
            f"{torch.cuda.get_device_name()} is {capability[0]}.{capability[1]}: drop --fp8"
        )
    _torchao_float8()


def _torchao_float8():
    try:
        import torchao.float8 as float8
        from torchao.float8.float8_linear import matmul_with_hp_or_float8_args
    except ImportError as e:
        raise ConfigError(f"--fp8 needs torchao ({e}): {INSTALL_HINT}") from None
    return float8, matmul_with_hp_or_float8_args


def float8_config(recipe: str, emulate: bool = False, pad_inner_dim: bool = False):
    """torchao's Float8LinearConfig of `recipe`; `emulate` computes the FP8 matmuls in fp32 (CPU tests);
    `pad_inner_dim` zero-pads GEMM inner dimensions to a multiple of 16, as torch._scaled_mm requires: needed
    when the token count is not a multiple of 16 (unpadded batches), since the weight gradient's GEMM sums
    over the tokens."""
    if recipe not in FP8_RECIPES:
        raise ConfigError(f"fp8 recipe {recipe!r} must be one of {', '.join(FP8_RECIPES)}")
    float8, _ = _torchao_float8()
    config = float8.Float8LinearConfig.from_recipe_name(recipe)
    return dataclasses.replace(config, emulate=emulate, pad_inner_dim=pad_inner_dim)


class Float8SharedMatmul(nn.Module):
    """x @ W + b with both operands cast to FP8 (dynamic scales), as torchao's Float8Linear computes x @ W.T."""

    def __init__(self, config):
        super().__init__()
        from torchao.float8.float8_training_tensor import LinearMMConfig, ScaledMMConfig

        self.config = config
        gemm = (config.gemm_config_output, config.gemm_config_grad_input, config.gemm_config_grad_weight)
        self.mm_config = LinearMMConfig(
            *(ScaledMMConfig(config.emulate, g.use_fast_accum, False, config.pad_inner_dim) for g in gemm)
        )
        self._matmul = _torchao_float8()[1]

    def forward(self, bias: Tensor, x: Tensor, weight: Tensor) -> Tensor:
        if torch.is_autocast_enabled(x.device.type):  # the GEMM's high-precision side: the autocast dtype
            dtype = torch.get_autocast_dtype(x.device.type)
            x, weight = x.to(dtype), weight.to(dtype)
        out = self._matmul.apply(x.reshape(-1, x.shape[-1]), weight, self.mm_config, self.config)
        return (out + bias.to(out.dtype)).view(*x.shape[:-1], weight.shape[1])

    def extra_repr(self) -> str:
        c = self.config
        return f"input {c.cast_config_input.short_str()}, weight {c.cast_config_weight.short_str()}"


def convert_to_float8(
    model: nn.Module, recipe: str = "tensorwise", emulate: bool = False, pad_inner_dim: bool = False
) -> list[str]:
    """Swap every SharedMatmul of `model` for a Float8SharedMatmul (see `float8_config` for the options);
    returns their names. Parameters, the state dict and the carving are untouched."""
    config = float8_config(recipe, emulate, pad_inner_dim)
    converted = []
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, SharedMatmul):
                setattr(module, child_name, Float8SharedMatmul(config))
                converted.append(f"{name}.{child_name}" if name else child_name)
    if not converted:
        raise ValueError(f"{type(model).__name__} has no shared matmul to convert to FP8")
    return converted
