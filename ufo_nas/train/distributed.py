"""One process or many under torchrun: rank, world size, device, DDP and reductions."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ufo_nas.errors import UfoError


@dataclass(frozen=True)
class Processes:
    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def start_processes(device: str = "cpu") -> Processes:
    """This process's place: one process, or torchrun's (WORLD_SIZE, RANK, LOCAL_RANK),
    joined in a gloo (CPU) or NCCL (CUDA) process group."""
    if device not in ("cpu", "cuda"):
        raise UfoError(f"unknown training device '{device}'; allowed: cpu, cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise UfoError("--device cuda: this machine has no CUDA GPU that torch can use")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    where = torch.device("cuda", local) if device == "cuda" else torch.device("cpu")
    if device == "cuda":
        torch.cuda.set_device(where)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device == "cuda" else "gloo")
    return Processes(rank, world, where)


def wrap(model: nn.Module, procs: Processes) -> nn.Module:
    """DDP over the process group when there is more than one process, else the model."""
    if procs.world == 1:
        return model
    ids = [procs.device.index] if procs.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, broadcast_buffers=False)


def mean_over_processes(values: torch.Tensor, procs: Processes) -> torch.Tensor:
    """The mean of `values` over every process (itself with one process)."""
    if procs.world > 1:
        values = values.clone()
        dist.all_reduce(values)
        values /= procs.world
    return values


def replica_difference(model: nn.Module, procs: Processes) -> float:
    """The largest difference of any weight between this process and rank 0, over all
    processes (0.0 means every rank holds the same model)."""
    if procs.world == 1:
        return 0.0
    worst = torch.zeros((), device=procs.device)
    for tensor in model.state_dict().values():
        reference = tensor.detach().clone()
        dist.broadcast(reference, src=0)
        worst = torch.maximum(worst, (reference - tensor).abs().max().float())
    dist.all_reduce(worst, op=dist.ReduceOp.MAX)
    return float(worst)


def barrier(procs: Processes) -> None:
    if procs.world > 1:
        dist.barrier()


def stop_processes(procs: Processes) -> None:
    if procs.world > 1 and dist.is_initialized():
        dist.destroy_process_group()
