"""CosPlace training: one epoch per group, a CosFace head per group, val R@1 after each epoch.

    python -m training.train --dataset_folder DIR [reference flags...]
    torchrun --nproc_per_node K -m training.train --dataset_folder DIR ...

Checkpoints, the best model, summary.json and progress.json (what the Training page follows:
training.progress) are written whole (core.files); --resume_train
RUN/last_checkpoint.pth continues to the same result as an uninterrupted run with the same
seed. An existing run folder is never replaced without --overwrite, nor before the new run
has a model (training.run_folder). An unreadable train image is skipped (another of its
class is drawn), logged, and counted in summary.json.
"""

from __future__ import annotations

import logging
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

from core.errors import UserError, one_line, user_errors
from core.heads import HEADS
from core.images import ImageError
from core.recall import format_recalls
from data_catalog import runs
from training import config, distributed
from training.checkpoints import checkpoint_state, move_optimizer, resume
from training.data import (
    GroupDataset,
    TestSet,
    TrainSet,
    load_test_set,
    load_train_set,
    train_transform,
)
from training.eval import build_model, record_in_catalog
from training.progress import ProgressRecord
from training.run_folder import adopt_best_model, run_folder_of
from training.schedule import amp_dtype, set_network_lr
from training.unreadable import UnreadableImages, gather_unreadable
from training.validation import test_best_model, validate

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


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
        raise UserError(
            f"no class of {train_set.root} has --min_images_per_class "
            f"{train_set.partition.params.min_images_per_class} images"
        )
    sizes = np.diff(train_set.partition.group_offsets)[:groups_num]
    if len(sizes) < groups_num:
        raise UserError(
            f"--groups_num {groups_num} asks for more groups than the {len(sizes)} that hold "
            "classes in this dataset; lower --groups_num"
        )
    small = [(g, int(s)) for g, s in enumerate(sizes) if s < batch_size]
    if small:
        raise UserError(
            f"groups {small} (group, classes) have fewer classes than the batch of {batch_size}: "
            "a batch takes one image of distinct classes; lower --batch_size, --groups_num "
            "or --min_images_per_class"
        )


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


def train_epoch(
    args, context, trainee, optimizers, train_set, group, epoch, unreadable=None, recorder=None
) -> dict:
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
    unreadable = unreadable if unreadable is not None else UnreadableImages()
    step = epoch * args.iterations_per_epoch
    for done, _ in enumerate(progress, start=1):
        try:
            images, labels, skipped = next(batches)
        except ImageError as error:  # a class with no readable image left (GroupDataset)
            # From a DataLoader worker the message carries the worker's traceback: keep
            # only its last line, the sentence itself.
            sentence = str(error).strip().splitlines()[-1].split("ImageError: ", 1)[-1]
            raise UserError(sentence) from error
        for lines in skipped:
            unreadable.add(lines)
        images = images.to(context.device, non_blocking=True)
        labels = labels.to(context.device, non_blocking=True)
        # channels_last is what cuDNN and oneDNN convolutions run fastest on (the model too).
        images = images.contiguous(memory_format=torch.channels_last)
        set_network_lr(args, optimizers[0], step)  # optimizers = [network, head]
        step += 1
        with torch.autocast(context.device.type, dtype=dtype, enabled=dtype is not None):
            loss = module(images, labels)
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        for optimizer in optimizers:
            scaler.step(optimizer)
        scaler.update()
        losses.append(loss.item())
        recent = float(np.mean(losses[-50:]))
        progress.set_postfix(loss=f"{recent:.3f}")
        if recorder is not None:  # writes at most every few seconds (training.progress)
            recorder.iteration(epoch, group, done, recent, time.perf_counter() - start)
    seconds = time.perf_counter() - start
    images_seen = args.iterations_per_epoch * per_rank_batch * context.world_size
    return {
        "loss": float(np.mean(losses)),
        "seconds": seconds,
        "images_per_s": images_seen / seconds,
    }


# train_transform's parameters, in its order: the flags of the same names.
AUGMENTATION_FLAGS = (
    "image_size", "brightness", "contrast", "saturation", "hue", "random_resized_crop",
    *config.AUGMENTATION_PROBABILITIES,
)  # fmt: skip


def augmentation(args):
    return train_transform(*(getattr(args, name) for name in AUGMENTATION_FLAGS))


def build_training(args, train_set: TrainSet, device: torch.device):
    model = build_model(args, device)
    model_optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    sizes = np.diff(train_set.partition.group_offsets)[: args.groups_num]
    heads = [HEADS[args.head](args.fc_output_dim, int(n)) for n in sizes]
    head_optimizers = [torch.optim.Adam(h.parameters(), lr=args.classifiers_lr) for h in heads]
    return model, model_optimizer, heads, head_optimizers


def load_datasets(args, context) -> tuple[TrainSet, TestSet]:
    """The train and val sets; a folder the partition cannot use is a UserError."""
    try:
        train_set = load_train_set(
            args.train_set_folder,
            config.partition_params(args),
            cache_dir=Path(args.workspace) / "cache",
            progress=context.is_main,
        )
        val_set = load_test_set(args.val_set_folder, "queries")
    except ValueError as error:  # no usable names, missing headings, mixed UTM zones...
        raise UserError(one_line(error)) from error
    check_groups(train_set, args.groups_num, args.batch_size // context.world_size)
    return train_set, val_set


def train(args) -> dict:
    context = distributed.setup(args.device)
    if args.batch_size % context.world_size:
        raise UserError(
            f"--batch_size {args.batch_size} does not divide among {context.world_size} "
            "processes; give a multiple of the process count"
        )
    kind = getattr(args, "run_kind", "train")  # the ablation runner sets "ablation"
    # Replacing a run (--overwrite) trains beside it; the earlier run goes only once this
    # one has a model (training.run_folder).
    with run_folder_of(args, context) as run_folder:
        summary = fit(args, context, run_folder, kind)
    if context.is_main:
        record_in_catalog(args, kind, summary.get("test_result"))
    distributed.teardown()
    return summary


def fit(args, context, run_folder: Path, kind: str) -> dict:
    """Train into run_folder (the run folder, or its replacement) up to summary.json."""
    seed_everything(args.seed)
    train_set, val_set = load_datasets(args, context)
    model, model_optimizer, heads, head_optimizers = build_training(args, train_set, context.device)
    start_epoch, best, history, unreadable = 0, -1.0, [], UnreadableImages()
    if args.resume_train:
        resumed = resume(args.resume_train, model, model_optimizer, heads, head_optimizers, args)
        start_epoch, best, history = resumed.epoch, resumed.best, resumed.history
        unreadable = UnreadableImages(resumed.unreadable)
        move_optimizer(model_optimizer, context.device)
        if context.is_main:
            adopt_best_model(args, run_folder)
        log.info("resumed from %s at epoch %d", args.resume_train, start_epoch)
        if start_epoch >= args.epochs_num:
            log.info("the checkpoint has all %d epochs already: nothing to train", start_epoch)
    if context.is_main:
        log.info(
            "%d train images, %d classes in %d groups; training on %d groups",
            len(train_set.paths),
            train_set.partition.num_classes,
            train_set.partition.num_groups,
            args.groups_num,
        )

    # Wall time of the whole run, validation included, carried across resumes: the x axis of
    # the val curve (recall against training minutes).
    wall_before, wall_start = (history[-1].get("wall_s", 0.0) if history else 0.0), time.monotonic()
    record = ProgressRecord(run_folder, args, history, enabled=context.is_main)
    record.start()
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
            unreadable,
            record,
        )
        heads[group] = head.cpu()
        move_optimizer(head_optimizers[group], torch.device("cpu"))
        record.phase("validating", epoch)
        recalls = validate(args, context, model, val_set)
        stats.update(epoch=epoch, group=group, val={f"R@{n}": v for n, v in recalls.items()})
        stats["wall_s"] = round(wall_before + time.monotonic() - wall_start, 1)
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
                runs.save_best_model(run_folder, model.state_dict())
            runs.save_checkpoint(
                run_folder,
                checkpoint_state(
                    epoch + 1,
                    model,
                    model_optimizer,
                    heads,
                    head_optimizers,
                    best,
                    history,
                    args,
                    unreadable,
                ),
            )
            record.epoch_done(history)
        distributed.barrier(context)

    unreadable = gather_unreadable(context, unreadable)
    summary = {
        "kind": kind,
        "best_val_recall1": best,
        "history": history,
        "unreadable_images": unreadable.summary(),
    }
    if unreadable.files and context.is_main:
        log.warning(
            "%d unreadable train images were skipped (%d draws); they are listed in %s",
            len(unreadable.files),
            unreadable.summary()["skips"],
            Path(args.run_folder) / runs.SUMMARY,
        )
    if args.test_set_folder:
        record.phase("testing")
        summary.update(test_best_model(args, context, model, run_folder))
    if context.is_main:
        runs.write_summary(run_folder, summary)  # the run folder first, whole
        record.finish()
    return summary


def check_training_flags(args) -> None:
    """The flags every training command needs (this one and the baselines')."""
    if not args.train_set_folder or not args.val_set_folder:
        raise config.BadFlagError(
            "--train_set_folder and --val_set_folder (or --dataset_folder) are required"
        )
    if args.device == "cuda" and not torch.cuda.is_available():
        log.warning("CUDA is not available: training on the CPU")


@user_errors
def main(argv: list[str] | None = None) -> None:
    args = config.parse_arguments(argv)
    check_training_flags(args)
    train(args)


if __name__ == "__main__":
    main()
