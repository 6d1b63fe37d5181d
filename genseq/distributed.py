"""Data-parallel training on PyTorch's own engine: torchrun starts the processes, DDP syncs the gradients.

    torchrun --nproc_per_node=2 -m genseq train completion --data corpus.txt --out runs/lm

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK and the rendezvous variables; World
reads them and joins the process group (gloo on CPU, nccl on CUDA). A run
started without torchrun is a world of one and touches nothing distributed.

The global batch is --batch-size: each of the N processes trains its own
batch_size / N rows of it, the gradients are averaged by DistributedDataParallel,
and clipping and the learning-rate schedule then see the same gradients on every
rank as a single process would with the whole batch. Only rank 0 writes
checkpoints, metrics and the progress bar; the ranks agree on when to validate,
checkpoint and stop through small all-reduces, so none waits forever.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .errors import ConfigError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def rows(self, batch_size: int, flag: str = "--batch-size") -> range:
        """This rank's rows of a global batch of batch_size rows (flag: the option that gave their number)."""
        if batch_size % self.size:
            raise ConfigError(
                f"{flag} {batch_size} does not split evenly over {self.size} processes; "
                f"use a multiple of {self.size}"
            )
        share = batch_size // self.size
        return range(self.rank * share, (self.rank + 1) * share)

    def device(self, device: torch.device) -> torch.device:
        """The GPU of this process on a multi-GPU node (one process per GPU), else device unchanged."""
        if self.distributed and device.type == "cuda" and device.index is None:
            return torch.device("cuda", self.local_rank)
        return device

    # ---- collectives (no-ops in a world of one) ---------------------------------------
    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    @contextlib.contextmanager
    def main_first(self):
        """Rank 0 runs the block before the others do: it fills a cache that they then only read."""
        if not self.is_main:
            self.barrier()
        yield
        if self.is_main:
            self.barrier()

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum over the ranks."""
        if not self.distributed:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.float64, device=_collective_device())
        dist.all_reduce(tensor)
        return tensor.tolist()

    def from_main(self, value: float) -> float:
        """Rank 0's value, on every rank."""
        return self.sum([value if self.is_main else 0.0])[0]

    def broadcast_bytes(self, data: bytes | None) -> bytes:
        """Rank 0's bytes on every rank (others pass None)."""
        if not self.distributed:
            return data
        device = _collective_device()
        size = torch.tensor([len(data) if self.is_main else 0], dtype=torch.long, device=device)
        dist.broadcast(size, 0)
        buffer = torch.empty(int(size), dtype=torch.uint8, device=device)
        if self.is_main:
            buffer.copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
        dist.broadcast(buffer, 0)
        return bytes(buffer.cpu().numpy())

    def gather_bytes(self, data: bytes) -> list[bytes]:
        """Every rank's bytes, in rank order."""
        if not self.distributed:
            return [data]
        sizes = self.gather_rows(torch.tensor([len(data)]), 0).tolist()
        padded = torch.zeros(max(sizes), dtype=torch.uint8)
        padded[: len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else padded[:0]
        parts = self.gather_rows(padded[None], 0)
        return [bytes(part[:size].numpy()) for part, size in zip(parts, sizes)]

    def gather_rows(self, tensor: torch.Tensor, dim: int) -> torch.Tensor:
        """Every rank's tensor concatenated along dim, in rank order (each rank's share has the same shape)."""
        if not self.distributed:
            return tensor
        device = _collective_device()
        parts = [torch.empty_like(tensor, device=device) for _ in range(self.size)]
        dist.all_gather(parts, tensor.to(device).contiguous())
        return torch.cat(parts, dim).to(tensor.device)


def _collective_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


_world: World | None = None


def world(device: torch.device | None = None) -> World:
    """This process's place in the run; the first call under torchrun joins the process group
    (nccl when device is a GPU, gloo otherwise)."""
    global _world
    if _world is None:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        if size > 1:
            if not dist.is_initialized():
                backend = "nccl" if device is not None and device.type == "cuda" else "gloo"
                if backend == "nccl":
                    torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
                dist.init_process_group(backend)
            _world = World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
        else:
            _world = World()
    return _world


def shutdown() -> None:
    """Leave the process group (at the end of a distributed command)."""
    global _world
    if dist.is_available() and dist.is_initialized():
        import gc

        gc.collect()  # DistributedDataParallel wrappers no longer used go before the group they use
        # Every process reaches this point before any tears its connections down: a process that
        # left while another still used the group could abort it.
        try:
            dist.barrier()
        finally:
            dist.destroy_process_group()
    _world = None
