"""CosPlace training: one epoch per group, a CosFace head per group, val R@1 after each epoch.

    python -m training.train --dataset_folder DIR [reference flags...]
    torchrun --nproc_per_node K -m training.train --dataset_folder DIR ...

Checkpoints are written atomically; --resume_train RUN/last_checkpoint.pth continues to the
same result as an uninterrupted run with the same seed.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, RandomSampler
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from core.heads import HEADS
from core.model import CosPlaceNet, load_checkpoint
from core.recall import format_recalls
from training import config, distributed
from training.data import GroupDataset, TrainSet, load_test_set, load_train_set, train_transform
from training.eval import evaluate, record_in_catalog

log = logging.getLogger(__name__)
LAST_CHECKPOINT = "last_checkpoint.pth"
BEST_MODEL = "best_model.pth"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def atomic_save(obj, path: Path) -> None:
    """Write to a temporary file, flush to disk, then rename: a kill leaves old or new, whole."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as file:
        torch.save(obj, file)
        file.flush()
        os.fsync(file.fileno())
    os.replace(tmp, path)


class Trainee(nn.Module):
    """The network and the current group's head, as one module for DistributedDataParallel."""

    def __init__(self, model: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.head = head

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.head(self.model(images), labels), labels)


def check_groups(train_set: TrainSet, groups_num: int, batch_size: int) -> None:
    if train_set.partition.num_classes == 0:
        raise SystemExit(
            f"no class of {train_set.root} has --min_images_per_class "
            f"{train_set.partition.params.min_images_per_class} images"
        )
    sizes = np.diff(train_set.partition.group_offsets)[:groups_num]
    if len(sizes) < groups_num:
        raise SystemExit(f"--groups_num {groups_num} > the {len(sizes)} groups of N*N*L")
    small = [(g, int(s)) for g, s in enumerate(sizes) if s < batch_size]
    if small:
        raise SystemExit(
            f"groups {small} (group, classes) have fewer classes than the batch of {batch_size}: "
            "a batch takes one image of distinct classes; lower --batch_size, --groups_num "
            "or --min_images_per_class"
        )


def move_optimizer(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    for state in optimizer.state.values():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                state[key] = value.to(device)


def group_batches(dataset, batch_size, context, epoch_seed, num_workers):
    """Endless batches of distinct classes of one group, reproducible from epoch_seed."""
    generator = torch.Generator().manual_seed(epoch_seed)
    if context.distributed:
        sampler = DistributedSampler(dataset, context.world_size, context.rank, True, epoch_seed)
    else:
        sampler = RandomSampler(dataset, generator=generator)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=True,
        pin_memory=context.device.type == "cuda",
        generator=generator,
        persistent_workers=False,
    )
    pass_number = 0
    while True:
        if context.distributed:
            sampler.set_epoch(epoch_seed + pass_number)
        yield from loader
        pass_number += 1


def amp_dtype(args, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: fp16/bf16 on CUDA, bf16 on a CPU with --amp_cpu_bf16, else none."""
    if device.type == "cuda":
        return torch.float16 if args.use_amp16 else torch.bfloat16
    # bf16 on CPUs with AVX-512 bf16/AMX runs about 2x fp32; without them it is slower.
    return torch.bfloat16 if getattr(args, "amp_cpu_bf16", False) else None


def train_epoch(args, context, trainee, optimizers, train_set, group, epoch) -> dict:
    dataset = GroupDataset(train_set, group, augmentation(args))
    per_rank_batch = args.batch_size // context.world_size
    epoch_seed = args.seed * 100_003 + epoch
    seed_everything(epoch_seed + context.rank)
    batches = group_batches(dataset, per_rank_batch, context, epoch_seed, args.num_workers)
    dtype = amp_dtype(args, context.device)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    module = trainee
    if context.distributed:
        module = DistributedDataParallel(
            trainee, device_ids=[context.device.index] if context.device.type == "cuda" else None
        )
    module.train()
    losses = []
    start = time.perf_counter()
    progress = tqdm(
        range(args.iterations_per_epoch),
        desc=f"epoch {epoch:02d} group {group}",
        disable=not context.is_main,
        ncols=100,
    )
    for _ in progress:
        images, labels = next(batches)
        images = images.to(context.device, non_blocking=True)
        labels = labels.to(context.device, non_blocking=True)
        if context.device.type == "cuda" or dtype is not None:
            # channels_last is what cuDNN and oneDNN's bf16 convolutions run fastest on.
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(context.device.type, dtype=dtype, enabled=dtype is not None):
            loss = module(images, labels)
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        for optimizer in optimizers:
            scaler.step(optimizer)
        scaler.update()
        losses.append(loss.item())
        progress.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}")
    seconds = time.perf_counter() - start
    images_seen = args.iterations_per_epoch * per_rank_batch * context.world_size
    return {
        "loss": float(np.mean(losses)),
        "seconds": seconds,
        "images_per_s": images_seen / seconds,
    }


def build_model(args, device: torch.device) -> CosPlaceNet:
    """The network the flags describe, from --resume_model if given, on `device`."""
    model = CosPlaceNet(
        args.backbone,
        args.fc_output_dim,
        args.pooling,
        args.train_all_layers,
        args.imagenet_weights,
    )
    if args.resume_model:
        load_checkpoint(model, args.resume_model)
    model = model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model


def augmentation(args):
    return train_transform(
        args.image_size,
        args.brightness,
        args.contrast,
        args.saturation,
        args.hue,
        args.random_resized_crop,
    )


def build_training(args, train_set: TrainSet, device: torch.device):
    model = build_model(args, device)
    model_optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    sizes = np.diff(train_set.partition.group_offsets)[: args.groups_num]
    heads = [HEADS[args.head](args.fc_output_dim, int(n)) for n in sizes]
    head_optimizers = [torch.optim.Adam(h.parameters(), lr=args.classifiers_lr) for h in heads]
    return model, model_optimizer, heads, head_optimizers


def checkpoint_state(epoch, model, model_optimizer, heads, head_optimizers, best, history, args):
    return {
        "epoch_num": epoch,
        "model_state_dict": model.state_dict(),
        "optimizer_state_dict": model_optimizer.state_dict(),
        "classifiers_state_dict": [h.state_dict() for h in heads],
        "optimizers_state_dict": [o.state_dict() for o in head_optimizers],
        "best_val_recall1": best,
        "history": history,
        "args": {k: v for k, v in vars(args).items()},
    }


def resume(path, model, model_optimizer, heads, head_optimizers):
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    sizes = [h.out_features for h in heads]
    saved = [s["weight"].shape[0] for s in checkpoint["classifiers_state_dict"]]
    if saved != sizes:
        raise SystemExit(
            f"{path} was trained with classes per group {saved}, this partition has {sizes}: "
            "same dataset and --M --alpha --N --L --min_images_per_class --groups_num needed"
        )
    model.load_state_dict(checkpoint["model_state_dict"])
    model_optimizer.load_state_dict(checkpoint["optimizer_state_dict"])
    for head, state in zip(heads, checkpoint["classifiers_state_dict"], strict=True):
        head.load_state_dict(state)
    for optimizer, state in zip(head_optimizers, checkpoint["optimizers_state_dict"], strict=True):
        optimizer.load_state_dict(state)
    return checkpoint["epoch_num"], checkpoint["best_val_recall1"], checkpoint["history"]


def validate(args, context, model, val_set) -> dict[int, float]:
    return evaluate(
        context,
        model,
        val_set,
        args.infer_batch_size,
        args.resize_test_imgs,
        args.image_size,
        args.positive_dist_threshold,
        args.num_workers,
    ).recalls


def train(args) -> dict:
    context = distributed.setup(args.device)
    run_folder = Path(args.run_folder)
    if context.is_main:
        run_folder.mkdir(parents=True, exist_ok=True)
        (run_folder / "args.json").write_text(json.dumps(vars(args), indent=2))
    if args.batch_size % context.world_size:
        raise SystemExit(
            f"--batch_size {args.batch_size} must divide by {context.world_size} ranks"
        )
    seed_everything(args.seed)
    train_set = load_train_set(
        args.train_set_folder,
        config.partition_params(args),
        cache_dir=Path(args.workspace) / "cache",
        progress=context.is_main,
    )
    check_groups(train_set, args.groups_num, args.batch_size // context.world_size)
    val_set = load_test_set(args.val_set_folder, "queries")
    model, model_optimizer, heads, head_optimizers = build_training(args, train_set, context.device)
    start_epoch, best, history = 0, -1.0, []
    if args.resume_train:
        start_epoch, best, history = resume(
            args.resume_train, model, model_optimizer, heads, head_optimizers
        )
        move_optimizer(model_optimizer, context.device)
        log.info("resumed from %s at epoch %d", args.resume_train, start_epoch)
    if context.is_main:
        log.info(
            "%d train images, %d classes in %d groups; training on %d groups",
            len(train_set.paths),
            train_set.partition.num_classes,
            train_set.partition.num_groups,
            args.groups_num,
        )

    for epoch in range(start_epoch, args.epochs_num):
        group = epoch % args.groups_num
        head = heads[group].to(context.device)  # only the current group's head on the device
        move_optimizer(head_optimizers[group], context.device)
        stats = train_epoch(
            args,
            context,
            Trainee(model, head),
            [model_optimizer, head_optimizers[group]],
            train_set,
            group,
            epoch,
        )
        heads[group] = head.cpu()
        move_optimizer(head_optimizers[group], torch.device("cpu"))
        recalls = validate(args, context, model, val_set)
        stats.update(epoch=epoch, group=group, val={f"R@{n}": v for n, v in recalls.items()})
        history.append(stats)
        is_best = recalls[1] > best
        best = max(best, recalls[1])
        if context.is_main:
            log.info(
                "epoch %d group %d loss %.4f %.1f img/s val %s",
                epoch,
                group,
                stats["loss"],
                stats["images_per_s"],
                format_recalls(recalls),
            )
            if is_best:
                atomic_save(model.state_dict(), run_folder / BEST_MODEL)
            atomic_save(
                checkpoint_state(
                    epoch + 1, model, model_optimizer, heads, head_optimizers, best, history, args
                ),
                run_folder / LAST_CHECKPOINT,
            )
        distributed.barrier(context)

    summary = {"best_val_recall1": best, "history": history}
    if args.test_set_folder:
        load_checkpoint(model, run_folder / BEST_MODEL)
        test_set = load_test_set(args.test_set_folder, args.queries_folder)
        recalls = validate(args, context, model, test_set)
        summary["test"] = {f"R@{n}": v for n, v in recalls.items()}
        if context.is_main:
            print(f"Test {test_set.name} / {args.queries_folder}: {format_recalls(recalls)}")
            record_in_catalog(args, "train", test_set, recalls, None)
    if context.is_main:
        (run_folder / "summary.json").write_text(json.dumps(summary, indent=2))
    distributed.teardown()
    return summary


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = config.parse_arguments(argv)
    if not args.train_set_folder or not args.val_set_folder:
        raise SystemExit("--train_set_folder and --val_set_folder (or --dataset_folder) needed")
    if args.device == "cuda" and not torch.cuda.is_available():
        log.warning("CUDA is not available: training on the CPU")
    train(args)


if __name__ == "__main__":
    main()
