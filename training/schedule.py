"""Per step of training: the network's learning rate (constant or cosine) and the autocast
precision.
"""

from __future__ import annotations

import math

import torch


def learning_rate_factor(args, step: int) -> float:
    """The factor on the network's lr at a global step (epoch * iterations + i).

    A function of the step alone, so a resumed run goes on exactly where it stopped.
    """
    if args.lr_schedule == "constant":
        return 1.0
    total = args.epochs_num * args.iterations_per_epoch
    return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))


def set_network_lr(args, network_optimizer, step: int) -> None:
    """The network's lr follows the schedule; the classifiers keep --classifiers_lr.

    A group's classifier starts from scratch in the group's first epoch, also late in
    training, so a decayed lr would leave it (and the gradients it sends into the network)
    untrained.
    """
    for param_group in network_optimizer.param_groups:
        param_group["lr"] = args.lr * learning_rate_factor(args, step)


def amp_dtype(args, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: fp16/bf16 on CUDA, bf16 on a CPU with --amp_cpu_bf16, else none."""
    if device.type == "cuda":
        return torch.float16 if args.use_amp16 else torch.bfloat16
    # Opt-in: on this project's 2-vCPU AVX-512-bf16 machine the real loop ran 0.73-0.79x fp32
    # per CPU-second (benchmarks/training_throughput.py); CPUs with AMX tiles may gain.
    return torch.bfloat16 if getattr(args, "amp_cpu_bf16", False) else None
