"""torchrun support: process group set-up and sharded descriptor extraction.

Without torchrun every function here degrades to the single-process case.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset

from core.descriptors import extract_descriptors


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup(device_name: str) -> Context:
    """Join torchrun's process group if launched by it; pick this process's device."""
    use_cuda = device_name == "cuda" and torch.cuda.is_available()
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if use_cuda:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return Context(rank, world_size, device)


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier(context: Context) -> None:
    if context.distributed:
        dist.barrier()


def from_main(context: Context, value):
    """The main process's `value`, on every process (a folder name only it chose)."""
    if not context.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class _Shard(Dataset):
    """Rows `indices` of a dataset, renumbered 0..len-1 as extract_descriptors expects."""

    def __init__(self, dataset: Dataset, indices: range) -> None:
        self.dataset = dataset
        self.indices = indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int):
        tensor, _ = self.dataset[self.indices[position]]
        return tensor, position


def sharded_descriptors(
    context: Context, model: nn.Module, dataset: Dataset, **kwargs
) -> np.ndarray:
    """Each rank extracts rows rank::world_size; every rank gets the whole array back."""
    if not context.distributed:
        return extract_descriptors(model, dataset, device=context.device, **kwargs)
    shard = _Shard(dataset, range(context.rank, len(dataset), context.world_size))
    kwargs["progress"] = kwargs.get("progress", True) and context.is_main
    local = extract_descriptors(model, shard, device=context.device, **kwargs)
    # Pad every shard to the same row count so all_gather can exchange equal tensors.
    rows = -(-len(dataset) // context.world_size)
    padded = torch.zeros(rows, local.shape[1])
    padded[: len(local)] = torch.from_numpy(local)
    padded = padded.to(context.device)
    gathered = [torch.empty_like(padded) for _ in range(context.world_size)]
    dist.all_gather(gathered, padded)
    output = np.empty((len(dataset), local.shape[1]), dtype=np.float32)
    for rank, shard in enumerate(gathered):
        count = len(range(rank, len(dataset), context.world_size))
        output[rank :: context.world_size] = shard[:count].cpu().numpy()
    return output
