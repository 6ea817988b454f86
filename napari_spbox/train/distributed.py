"""Several processes under ``torchrun`` (DDP): one per GPU, or gloo processes on a CPU. Without
``WORLD_SIZE`` > 1 in the environment, training is one process and none of this does anything."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def init_distributed() -> tuple[bool, int, int]:
    """Join the process group ``torchrun`` set up (NCCL with CUDA, else gloo).

    Returns ``(distributed, rank, world size)``; ``(False, 0, 1)`` for a single process.
    """
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank = dist.get_rank() if distributed else 0
    world = dist.get_world_size() if distributed else 1
    return distributed, rank, world


def training_device(device: str | None) -> torch.device:
    """The device asked for (default: CUDA if there is one, else the CPU); a bare ``cuda`` is this
    rank's GPU (``LOCAL_RANK`` under torchrun), made the current one."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and device.index is None:  # set_device needs an index; under torchrun,
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))  # this rank's
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def wrap_model(model, device: torch.device):
    """``model`` under DistributedDataParallel (gradients averaged over the processes)."""
    return torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[device] if device.type == "cuda" else None
    )


def finish_distributed() -> None:
    dist.destroy_process_group()
