# SPDX-License-Identifier: MIT
"""Many processes: the launch read from the environment, the process group, and the few
collectives the studies need.

A command runs the same under ``torchrun --nproc_per_node N -m thoughtgrad ...`` and
``accelerate launch -m thoughtgrad ...`` as alone: both launchers set ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` (and ``MASTER_ADDR`` / ``MASTER_PORT``), :func:`from_env`
reads them, and :func:`launched` starts the process group (``nccl`` on CUDA, ``gloo`` on
CPU) and ends it. Without those variables everything here is the identity: one process,
rank 0, no collective. No scheduler of our own.

Work is split by a *key* (a sample's ``(source, sample_id)``), never by arrival:
:func:`owner` is a stable hash of the key modulo the number of processes, the same on
every machine and in every run, so a resumed run with another process count still
measures every sample exactly once (the done set comes from the tables).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import gc
import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

TIMEOUT = _dt.timedelta(minutes=60)
"""How long a collective waits for a slow rank (a long batch) before the group fails."""


@dataclass(frozen=True)
class World:
    """This process's place in the job: ``rank`` of ``size`` processes, ``local_rank`` on
    its machine (its GPU index)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        """Rank 0: owns the manifest, the final counts and the progress shown."""
        return self.rank == 0

    @property
    def writer(self) -> str:
        """The tag in this rank's shard names (``r003``); empty for one process, whose
        shards keep the plain ``part-NNNNN`` names."""
        return f"r{self.rank:03d}" if self.distributed else ""


SINGLE = World()


def from_env(environ: dict[str, str] | None = None) -> World:
    """The launch described by ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` (torchrun,
    accelerate launch); one process when they are absent."""
    env = os.environ if environ is None else environ
    size = int(env.get("WORLD_SIZE", "1"))
    if size <= 1:
        return SINGLE
    rank = int(env["RANK"])
    return World(rank=rank, size=size, local_rank=int(env.get("LOCAL_RANK", rank)))


def device_for(world: World, requested: str) -> str:
    """The device of this rank: ``cuda:LOCAL_RANK`` when ``requested`` is ``auto`` or
    ``cuda`` and CUDA is present, else ``requested`` unchanged (one process, or CPU)."""
    if world.distributed and requested in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{world.local_rank}"
    return requested


@contextlib.contextmanager
def launched(world: World | None = None) -> Iterator[World]:
    """Start the process group of a launched job (``nccl`` when CUDA is present, else
    ``gloo``), yield the world, and end the group; one process: nothing to start."""
    world = from_env() if world is None else world
    if not world.distributed or torch.distributed.is_initialized():
        yield world
        return
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(world.local_rank)
    torch.distributed.init_process_group("nccl" if cuda else "gloo", rank=world.rank,
                                         world_size=world.size, timeout=TIMEOUT)
    try:
        yield world
        # A clean end: free what still holds the group (DistributedDataParallel's reducer
        # sits in reference cycles) while the group is alive, and let no rank tear the group
        # down while another still works in it. A rank that ended early and tore it down
        # at once aborted at exit under gloo ("terminate called without an active
        # exception", exit -6) now and then, and the launcher called the whole job failed.
        gc.collect()
        with contextlib.suppress(RuntimeError):  # a peer that failed has closed its side
            barrier(world)
    finally:
        torch.distributed.destroy_process_group()


def owner(key: tuple[str, int], size: int) -> int:
    """The rank that measures ``key`` among ``size`` processes: the first 8 bytes of the
    SHA-256 of ``source NUL sample_id``, modulo ``size`` (Python's ``hash`` is salted per
    process, so it cannot be used)."""
    if size <= 1:
        return 0
    digest = hashlib.sha256(f"{key[0]}\0{int(key[1])}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % size


def barrier(world: World) -> None:
    if world.distributed:
        torch.distributed.barrier()


def _device() -> torch.device:
    """Where collectives' buffers live: the current CUDA device under nccl, else CPU."""
    backend = torch.distributed.get_backend()
    return torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" \
        else torch.device("cpu")


def sum_counts(world: World, values: Sequence[float]) -> list[float]:
    """Element-wise sum of ``values`` over the ranks (in fp64; exact for counts)."""
    if not world.distributed:
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=_device())
    torch.distributed.all_reduce(t)
    return t.cpu().tolist()


def max_count(world: World, value: int) -> int:
    """The largest ``value`` over the ranks."""
    if not world.distributed:
        return int(value)
    t = torch.tensor([int(value)], dtype=torch.int64, device=_device())
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return int(t.item())


def sum_tensors(world: World, tensors: Sequence[Tensor]) -> list[Tensor]:
    """The element-wise sum of each tensor over the ranks, as new tensors (inputs are not
    changed). The tensors are flattened into one buffer, so there is one collective."""
    if not world.distributed or not tensors:
        return [t.clone() for t in tensors]
    dev = _device()
    flat = torch.cat([t.detach().reshape(-1).to(dev, torch.float64) for t in tensors])
    torch.distributed.all_reduce(flat)
    out, start = [], 0
    for t in tensors:
        out.append(flat[start:start + t.numel()].view(t.shape).to(t.device, t.dtype))
        start += t.numel()
    return out
