"""Memory the user's sizes will need, estimated before anything is allocated, and out-of-memory diagnosis.

The estimates are lower bounds built from the sizes alone (float32 weights,
their gradients and Adam's two moments, and the largest activations of one
batch), so a refusal is certain while a run that fits is never refused. The
memory available is what the kernel says a new allocation can take
(MemAvailable), or the free memory of the CUDA device that will be used.
"""

from __future__ import annotations

import os

from .errors import ConfigError

FLOAT_BYTES = 4
TRAINING_COPIES = 4  # weights, gradients, and Adam's two moments, each a float32 per parameter
GATES = {"lstm": 4, "gru": 3, "rnn": 1}  # weight blocks of a recurrent layer: one per gate


def available_bytes(device=None) -> int | None:
    """Bytes a new allocation can take on device (None: main memory); None when the system does not say."""
    if device is not None and str(device).startswith("cuda"):
        import torch

        if torch.cuda.is_available():
            free, _ = torch.cuda.mem_get_info(torch.device(device))
            return free
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def check_fits(needed: int, what: str, advice: str, device=None) -> None:
    """Raise ConfigError when needed bytes exceed what device has available."""
    available = available_bytes(device)
    if available is not None and needed > available:
        raise ConfigError(f"{what} needs at least {byte_size(needed)} of memory but this machine has {byte_size(available)} "
                          f"available; {advice}")


def recurrent_parameters(cell: str, input_size: int, hidden_size: int, num_layers: int) -> int:
    """Parameters of a stack of torch recurrent layers: input and recurrent weights and two biases per gate."""
    gates = GATES[cell] * hidden_size
    first = gates * (input_size + hidden_size + 2)
    return first + (num_layers - 1) * gates * (2 * hidden_size + 2)


def recurrent_activations(cell: str, batch_size: int, steps: int, hidden_size: int, num_layers: int) -> int:
    """Values a recurrent stack keeps for the backward pass: its gates and its state at every step."""
    return batch_size * steps * num_layers * hidden_size * (GATES[cell] + 2)


def language_model_parameters(config) -> int:
    """Parameters of a genseq.model.LanguageModel of this ModelConfig."""
    embedding = config.vocab_size * config.embedding_size
    core = recurrent_parameters(config.cell, config.embedding_size, config.hidden_size, config.num_layers)
    projection = config.projection_size * (config.hidden_size + 1)
    output = config.vocab_size * (1 if config.tie_weights else config.output_input_size + 1)
    return embedding + core + projection + output


def language_model_training_bytes(config, batch_size: int, bptt: int) -> int:
    """Training one (batch_size, bptt) window: the parameters four times over, activations, and the logits twice
    (the logits and their gradient, (B, T, V) each)."""
    tokens = batch_size * bptt
    activations = (tokens * config.embedding_size
                   + recurrent_activations(config.cell, batch_size, bptt, config.hidden_size, config.num_layers)
                   + 2 * tokens * config.vocab_size)
    return FLOAT_BYTES * (TRAINING_COPIES * language_model_parameters(config) + activations)


def check_language_model_training(config, batch_size: int, bptt: int, device=None) -> None:
    """Refuse a language model and batch whose training cannot fit in memory, before anything is built."""
    check_fits(language_model_training_bytes(config, batch_size, bptt),
               f"training a {config.num_layers} x {config.hidden_size} {config.cell} with embedding size "
               f"{config.embedding_size} and a vocabulary of {config.vocab_size} on batches of {batch_size} x {bptt}",
               "use smaller --hidden-size, --embedding-size, --layers, --vocab-size, --batch-size or --bptt", device)


def is_out_of_memory(error: BaseException) -> bool:
    """Whether error is an allocation failure (Python's, torch's CPU allocator's, or CUDA's)."""
    if isinstance(error, MemoryError):
        return True
    if not isinstance(error, RuntimeError):
        return False
    text = str(error)
    return any(sign in text for sign in ("out of memory", "can't allocate memory", "Cannot allocate memory",
                                         "DefaultCPUAllocator", "not enough memory"))


def byte_size(count: int) -> str:
    """A number of bytes for a message: 512 bytes, 1.5 MiB, 2.0 GiB ..."""
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if count < 1024:
            return f"{count} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"
