"""The decoding step in the precision a call asks for, with the kernel measured fastest on this machine.

fp32 is model.stepper() as trained. A one-token step on a CPU is bound by the
bytes of weights it reads, so bf16 (half the bytes) and int8 (a quarter:
dynamic quantization with per-row int8 weights, each input row quantized as
it comes) can make it faster at a small cost in perplexity; docs/generation.md
has the measured figures. Only the step's matrix products change precision: the
embedding, the gates and the carried state stay fp32.

Which kernel is fastest depends on the CPU: oneDNN's packed layout wins on
AVX-512 machines, a plain addmm over the transposed weight can win on AVX2
ones, and bf16 is fast only where the CPU has bf16 instructions. So each
precision has candidate kinds (KERNELS), and each matrix product of the step
times them on its first call for each batch size class and keeps the fastest
(FastestLinear).
auto takes the fastest of fp32 and bf16 (outputs equal to rounding); int8,
which moves perplexity by about 0.3%, only when asked for.
"""

from __future__ import annotations

import functools
import math
import time
import warnings
import weakref

import torch
from torch import Tensor

from .. import capabilities
from ..errors import ConfigError
from ..model import PackedLinear
from .config import PRECISIONS
from .protocol import DecodableModel


class AddmmLinear:
    """x W^T + b as one addmm over a contiguous W^T (in, out): the BLAS's own kernel, no packing."""

    def __init__(self, weight: Tensor, bias: Tensor):
        self.weight, self.bias = weight.t().contiguous(), bias

    def __call__(self, x: Tensor) -> Tensor:
        return torch.addmm(self.bias, x, self.weight)


class BF16Linear:
    """x W^T + b with W and b in bfloat16; the input is rounded to bf16, the output returned in fp32."""

    inner_kind = PackedLinear

    def __init__(self, weight: Tensor, bias: Tensor):
        self.inner = self.inner_kind(weight.to(torch.bfloat16), bias.to(torch.bfloat16))

    def __call__(self, x: Tensor) -> Tensor:
        return self.inner(x.to(torch.bfloat16)).float()


class BF16AddmmLinear(BF16Linear):
    """BF16Linear through a plain addmm instead of oneDNN's packed layout."""

    inner_kind = AddmmLinear


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
                "use --precision fp32, bf16 or auto"
            ) from None

    def __call__(self, x: Tensor) -> Tensor:
        # reduce_range keeps activations to 7 bits so that int8 products cannot saturate on
        # CPUs without VNNI, the setting PyTorch's own dynamic quantization uses on x86.
        return torch.ops.quantized.linear_dynamic(x.float().contiguous(), self.packed, True)


# precision -> the kinds of matrix product that compute it, timed against each other at first use
KERNELS = {
    "fp32": (PackedLinear, AddmmLinear),
    "bf16": (BF16Linear, BF16AddmmLinear),
    "int8": (Int8Linear,),
}
assert tuple(KERNELS) + ("auto",) == PRECISIONS


class FastestLinear:
    """x W^T + b by whichever candidate kind was measured fastest for this weight and batch size class.

    On the first call of a batch size class (1, 2-7, 8-31, 32-127 rows, ...) every
    candidate computes the product a few times on that very input and the fastest
    is kept; its result is returned, and it computes every later call of the class,
    so a process's results do not depend on when they were asked for. The classes
    differ because a single row is bound by reading the weights and a batch by
    arithmetic, and the kernels rank differently on the two.
    """

    ROUNDS = 4  # the first is a warm-up (oneDNN builds its primitives then); the best of the others counts

    def __init__(self, kinds: tuple, weight: Tensor, bias: Tensor):
        self.candidates = [kind(weight, bias) for kind in kinds]
        self.chosen: dict[int, object] = {}  # batch size class -> the fastest candidate

    def __call__(self, x: Tensor) -> Tensor:
        size_class = x.size(0).bit_length() // 2
        linear = self.chosen.get(size_class)
        if linear is None:
            linear = self.chosen[size_class] = self._fastest(x)
        return linear(x)

    def _fastest(self, x: Tensor):
        best = [math.inf] * len(self.candidates)
        for round in range(self.ROUNDS):
            for index, candidate in enumerate(self.candidates):
                start = time.perf_counter()
                candidate(x)
                if round:  # other processes only ever add time, so the fastest call is the measure
                    best[index] = min(best[index], time.perf_counter() - start)
        return self.candidates[best.index(min(best))]


# model -> {precision: (weights fingerprint, step)}. Packing the weights costs about as much
# as ten decoding steps of the default model, so one step is kept per model and precision
# and rebuilt only when a parameter was replaced or changed in place since (training).
_steps: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def decoding_step(model: DecodableModel, precision: str = "fp32"):
    """model.stepper() with its matrix products in precision ("fp32", "bf16", "int8" or "auto").

    The step is cached per model.network, which outlives a model that is built
    per call (a captioner bound to a batch of images: its decoder).
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    owner = model.network
    fingerprint = tuple((p.data_ptr(), p._version) for p in owner.parameters())
    cached = _steps.setdefault(owner, {})
    if precision in cached and cached[precision][0] == fingerprint:
        return cached[precision][1]
    kinds = candidate_kinds(precision, _device(owner))
    step = model.stepper(kinds[0] if len(kinds) == 1 else functools.partial(FastestLinear, kinds))
    cached[precision] = (fingerprint, step)
    return step


def candidate_kinds(precision: str, device: torch.device) -> tuple:
    """The kinds of matrix product worth timing for precision on device; refuses one that cannot run there."""
    if precision == "auto":
        faster = capabilities.bf16_decoding_is_faster(str(device))
        if device.type == "cuda":
            return candidate_kinds("bf16" if faster else "fp32", device)
        return KERNELS["fp32"] + (KERNELS["bf16"] if faster else ())
    if precision == "bf16" and not capabilities.bf16_decoding(str(device)):
        raise ConfigError(f"precision bf16 cannot decode on this machine's {device.type.upper()}, which has no bf16 "
                          "kernel for it; use --precision fp32 or auto")
    if precision == "int8" and device.type == "cpu" and not capabilities.int8_decoding():
        raise ConfigError("precision int8 needs PyTorch's fbgemm int8 kernels, which this build lacks; "
                          "use --precision fp32, bf16 or auto")
    if device.type != "cpu":  # on a GPU every kind is the same addmm: nothing to choose between
        return KERNELS[precision][:1]
    return KERNELS[precision]


def _device(model) -> torch.device:
    parameter = next(iter(model.parameters()), None)
    return parameter.device if parameter is not None else torch.device("cpu")
