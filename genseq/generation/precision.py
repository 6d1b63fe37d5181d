"""The decoding step in the precision a call asks for, built once per model and weights.

fp32 is model.stepper() as trained. A one-token step on a CPU is bound by the
bytes of weights it reads, so bf16 (half the bytes) and int8 (a quarter:
dynamic quantization with per-row int8 weights, each input row quantized as
it comes) make it faster at a small cost in perplexity; README.generation.md
has the measured figures. Only the step's matrix products change precision:
the embedding, the gates and the carried state stay fp32.
"""

from __future__ import annotations

import warnings
import weakref

import torch
from torch import Tensor

from ..errors import ConfigError
from ..model import PackedLinear
from .config import PRECISIONS


class BF16Linear:
    """x W^T + b with W and b in bfloat16; the input is rounded to bf16, the output returned in fp32."""

    def __init__(self, weight: Tensor, bias: Tensor):
        self.inner = PackedLinear(weight.to(torch.bfloat16), bias.to(torch.bfloat16))

    def __call__(self, x: Tensor) -> Tensor:
        return self.inner(x.to(torch.bfloat16)).float()


class Int8Linear:
    """x W^T + b by fbgemm's dynamic quantization: int8 W with one scale per output row (CPU only)."""

    def __init__(self, weight: Tensor, bias: Tensor):
        if weight.device.type != "cpu":
            raise ConfigError("precision int8 runs on the CPU only; use bf16 on a GPU")
        weight = weight.float()
        scales = (weight.abs().amax(1) / 127).clamp(min=1e-12).double()  # (out,)
        zero_points = torch.zeros(weight.size(0), dtype=torch.long)
        try:
            with warnings.catch_warnings():  # PyTorch flags its quantized-tensor API for a future move, not a fault
                warnings.simplefilter("ignore")
                quantized = torch.quantize_per_channel(weight, scales, zero_points, 0, torch.qint8)
                self.packed = torch.ops.quantized.linear_prepack(quantized, bias.float())
        except (AttributeError, RuntimeError, NotImplementedError) as error:
            raise ConfigError(
                f"precision int8 needs PyTorch's fbgemm quantized kernels, which this build lacks ({type(error).__name__}); "
                "use bf16 or fp32"
            ) from None

    def __call__(self, x: Tensor) -> Tensor:
        # reduce_range keeps activations to 7 bits so that int8 products cannot saturate on
        # CPUs without VNNI, the setting PyTorch's own dynamic quantization uses on x86.
        return torch.ops.quantized.linear_dynamic(x.float().contiguous(), self.packed, True)


LINEAR_KINDS = {"fp32": PackedLinear, "bf16": BF16Linear, "int8": Int8Linear}
assert tuple(LINEAR_KINDS) == PRECISIONS

# model -> {precision: (weights fingerprint, step)}. Packing the weights costs about as much
# as ten decoding steps of the default model, so one step is kept per model and precision
# and rebuilt only when a parameter was replaced or changed in place since (training).
_steps: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def decoding_step(model, precision: str = "fp32"):
    """model.stepper() with its matrix products in precision ("fp32", "bf16" or "int8")."""
    if precision not in LINEAR_KINDS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    fingerprint = tuple((p.data_ptr(), p._version) for p in model.parameters())
    cached = _steps.setdefault(model, {})
    if precision in cached and cached[precision][0] == fingerprint:
        return cached[precision][1]
    step = model.stepper(LINEAR_KINDS[precision])
    cached[precision] = (fingerprint, step)
    return step
