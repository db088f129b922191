"""Training under ``torchrun``: each rank trains on its share of every epoch's batches (DDP, gloo on CPU,
NCCL on CUDA); only rank 0 reads and writes files."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from lstmtext.progress import set_rank


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup(device: torch.device) -> Dist:
    """The process group of a torchrun launch (one process without one)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    if device.type == "cpu":  # the ranks share the cores
        torch.set_num_threads(max(1, (os.cpu_count() or 2) // dist.get_world_size()))
    set_rank(dist.get_rank())  # notes and progress on rank 0 alone
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def teardown(d: Dist) -> None:
    if d.world > 1:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
        set_rank(None)


def broadcast_bytes(data: bytes | None, d: Dist) -> bytes:
    """Rank 0's bytes on every rank (the tokenizer model), through tensors: no pickle."""
    if d.world == 1:
        return data  # type: ignore[return-value]
    import torch.distributed as dist

    n = torch.tensor([len(data) if d.main else 0], dtype=torch.long)
    dist.broadcast(n, 0)
    buf = torch.frombuffer(bytearray(data), dtype=torch.uint8) if d.main else torch.empty(int(n), dtype=torch.uint8)
    dist.broadcast(buf, 0)
    return bytes(buf.numpy().tobytes())


def all_flags(flags: list[int], d: Dist, device) -> list[int]:
    """Max of small integer flags over ranks, so every rank stops at the same step."""
    if d.world == 1:
        return flags
    import torch.distributed as dist

    t = torch.tensor(flags, dtype=torch.long, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.tolist()


def rank_batches(batches: list, rank: int, world: int) -> list:
    """This rank's share of an epoch's batches: every world-th one from its rank on, the same count on every
    rank (or DDP's all-reduce would wait forever), so ranks read disjoint windows of the data."""
    return batches[: len(batches) // world * world][rank::world]
