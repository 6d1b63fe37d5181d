"""What this machine's PyTorch can run, found by trying it once per process, never assumed from the CPU's name.

Each probe runs a tiny version of the real work (a bf16 LSTM step under
autocast, a bf16 or int8 matrix product) inside try/except and caches the
answer per device. CPUs differ: without AVX512-BF16 or AMX, oneDNN has no bf16
LSTM kernel at all, and its bf16 matrix products are emulated and slow; a build
may lack fbgemm. The precision choices in genseq.train and
genseq.generation.precision ask here, and tests replace these functions to
exercise both answers.
"""

from __future__ import annotations

import functools
import time
import warnings

import torch
from torch import nn

# Errors a missing kernel raises: oneDNN's "could not create a primitive descriptor" is a
# RuntimeError, an absent operator an AttributeError or NotImplementedError.
KERNEL_ERRORS = (RuntimeError, NotImplementedError, AttributeError)


def probe(function):
    """Cache function's answer per arguments, and leave torch's global random state as it was:
    a probe runs on first use, wherever that falls, and must not change a seeded run's weights."""

    @functools.cache
    @functools.wraps(function)
    def cached(*args):
        with torch.random.fork_rng(devices=[]):
            return function(*args)

    return cached


def native_bf16_hint() -> bool:
    """oneDNN's own answer to "does this CPU multiply bf16 natively" (AVX512-BF16 or AMX); a hint only."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except KERNEL_ERRORS:
        return False


@probe
def bf16_training(device: str) -> bool:
    """Whether an LSTM runs forward and backward under bf16 autocast on device ("cpu", "cuda", "cuda:1")."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    try:
        _lstm_step(device, torch.bfloat16, batch=2, steps=3, size=8)
    except KERNEL_ERRORS:
        return False
    return True


@probe
def bf16_training_is_faster(device: str) -> bool:
    """Whether bf16 autocast trains a small LSTM faster than fp32 on device; False where it cannot run.

    On CUDA bf16 is taken as faster where supported (tensor cores); on a CPU it is
    timed, since emulated bf16 is several times slower than fp32.
    """
    if not bf16_training(device):
        return False
    device = torch.device(device)
    if device.type == "cuda":
        return True
    fp32 = best_seconds(lambda: _lstm_step(device, None, batch=16, steps=32, size=256), calls=3)
    bf16 = best_seconds(lambda: _lstm_step(device, torch.bfloat16, batch=16, steps=32, size=256), calls=3)
    return bf16 < 0.9 * fp32  # a clear win only: measurement noise must not pick the slower one


def _lstm_step(device: torch.device, dtype, batch: int, steps: int, size: int) -> None:
    """One training step's work: LSTM and output layer forward under autocast (dtype None: fp32), backward."""
    generator = torch.Generator().manual_seed(0)
    lstm, output = nn.LSTM(size, size, batch_first=True).to(device), nn.Linear(size, size).to(device)
    inputs = torch.randn(batch, steps, size, generator=generator).to(device)  # (B, T, H)
    with torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        features, _ = lstm(inputs)
        loss = output(features).float().square().mean()
    loss.backward()


@probe
def bf16_decoding(device: str) -> bool:
    """Whether the decoding step's bf16 matrix products (packed oneDNN on CPU, addmm on CUDA) run on device."""
    from .model import PackedLinear

    device = torch.device(device)
    if device.type == "cuda" and not (torch.cuda.is_available() and torch.cuda.is_bf16_supported()):
        return False
    weight, bias = torch.randn(8, 16, device=device), torch.zeros(8, device=device)
    try:
        linear = PackedLinear(weight.bfloat16(), bias.bfloat16())
        linear(torch.randn(2, 16, device=device).bfloat16())
    except KERNEL_ERRORS:
        return False
    return True


@probe
def bf16_decoding_is_faster(device: str) -> bool:
    """Whether a bf16 matrix product of one decoding row beats fp32 on device; False where bf16 cannot run.

    Without native bf16 a CPU emulates it at 10-50x the time of fp32, so auto
    decoding leaves bf16 out instead of paying for that in its measurement.
    """
    from .model import PackedLinear

    if not bf16_decoding(device):
        return False
    device = torch.device(device)
    if device.type == "cuda":
        return True
    generator = torch.Generator().manual_seed(0)
    weight, bias, x = torch.randn(2048, 512, generator=generator), torch.zeros(2048), torch.randn(1, 512, generator=generator)
    fp32, bf16 = PackedLinear(weight, bias), PackedLinear(weight.bfloat16(), bias.bfloat16())
    return best_seconds(lambda: bf16(x.bfloat16())) < 0.9 * best_seconds(lambda: fp32(x))


def best_seconds(function, calls: int = 5) -> float:
    """The fastest of a few calls of function() after one warm-up: other processes only ever add time."""
    function()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


@probe
def int8_decoding() -> bool:
    """Whether fbgemm's dynamic int8 linear (per-row int8 weights) is in this PyTorch build and runs."""
    engines = torch.backends.quantized.supported_engines
    if "fbgemm" not in engines and "x86" not in engines:
        return False
    weight = torch.randn(8, 16)
    scales, zero_points = (weight.abs().amax(1) / 127).double(), torch.zeros(8, dtype=torch.long)
    try:
        with warnings.catch_warnings():  # PyTorch flags its quantized-tensor API for a future move, not a fault
            warnings.simplefilter("ignore")
            quantized = torch.quantize_per_channel(weight, scales, zero_points, 0, torch.qint8)
            packed = torch.ops.quantized.linear_prepack(quantized, torch.zeros(8))
            torch.ops.quantized.linear_dynamic(torch.randn(2, 16), packed, True)
    except KERNEL_ERRORS:
        return False
    return True


def describe(device: str = "cpu") -> dict:
    """Every probe's answer for device, for reports and the benchmarks' headers."""
    return {
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "native_bf16_hint": native_bf16_hint(),
        "bf16_training": bf16_training(device),
        "bf16_decoding": bf16_decoding(device),
        "bf16_decoding_is_faster": bf16_decoding_is_faster(device),
        "int8_decoding": int8_decoding(),
    }
