"""CosPlace training: one epoch per group, a CosFace head per group, val R@1 after each epoch.

    python -m training.train --dataset_folder DIR [reference flags...]
    torchrun --nproc_per_node K -m training.train --dataset_folder DIR ...

Checkpoints, the best model and summary.json are written whole (core.files); --resume_train
RUN/last_checkpoint.pth continues to the same result as an uninterrupted run with the same
seed. An existing run folder is never replaced without --overwrite. An unreadable train
image is skipped (another of its class is drawn), logged, and counted in summary.json.
"""

from __future__ import annotations

import argparse
import logging
import math
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, RandomSampler
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from core import files
from core.errors import UserError, one_line, user_errors
from core.heads import HEADS
from core.images import ImageError
from core.model import describe_state_dict, load_checkpoint, load_trusted_types
from core.recall import format_recalls
from data_catalog import runs
from training import config, distributed
from training.data import (
    GroupDataset,
    TestSet,
    TrainSet,
    load_test_set,
    load_train_set,
    train_transform,
)
from training.eval import (
    EvalResult,
    build_model,
    evaluate,
    left_out_note,
    record_in_catalog,
    test_result,
)

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def continues_run(args: argparse.Namespace) -> bool:
    """True when --resume_train names a checkpoint inside this run's own folder."""
    if not args.resume_train:
        return False
    return Path(args.resume_train).resolve().parent == Path(args.run_folder).resolve()


def check_run_folder(args: argparse.Namespace) -> None:
    """Refuse to replace an earlier run unless --overwrite or --resume_train continues it."""
    folder = Path(args.run_folder)
    found = runs.run_contents(folder)
    if not found or continues_run(args) or args.overwrite:
        return
    shown = ", ".join(found[:4]) + (f" and {len(found) - 4} more" if len(found) > 4 else "")
    raise UserError(
        f"{folder} already holds a run ({shown}); keep both by choosing another --save_dir, "
        f"continue it with --resume_train {folder / runs.LAST_CHECKPOINT}, or replace it with "
        "--overwrite"
    )


def prepare_run_folder(args: argparse.Namespace, context) -> Path:
    """Check on every rank (before any writes), then clear (--overwrite) and create it."""
    check_run_folder(args)
    distributed.barrier(context)
    folder = Path(args.run_folder)
    if context.is_main:
        if args.overwrite and runs.run_contents(folder) and not continues_run(args):
            log.warning("--overwrite: removing the earlier run in %s", folder)
            shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
        runs.write_args(folder, args)
    distributed.barrier(context)
    return folder


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


class UnreadableImages:
    """Train images that could not be decoded: logged once each, counted for summary.json."""

    def __init__(self, recorded: dict | None = None) -> None:
        # path -> {"reason": str, "skips": int}; `recorded` comes from a resumed checkpoint.
        self.files: dict[str, dict] = {k: dict(v) for k, v in (recorded or {}).items()}

    def add(self, skipped: str) -> None:
        """One item's "path<TAB>reason" lines (GroupDataset.__getitem__), empty for none."""
        for line in filter(None, skipped.split("\n")):
            path, _, reason = line.partition("\t")
            if path not in self.files:
                log.warning(
                    "unreadable train image skipped, another of its class drawn: %s", reason
                )
                self.files[path] = {"reason": reason, "skips": 0}
            self.files[path]["skips"] += 1

    def merge(self, other: dict) -> None:
        for path, entry in other.items():
            mine = self.files.setdefault(path, {"reason": entry["reason"], "skips": 0})
            mine["skips"] = max(mine["skips"], entry["skips"])

    def summary(self) -> dict:
        return {
            "count": len(self.files),
            "skips": sum(entry["skips"] for entry in self.files.values()),
            "files": dict(sorted(self.files.items())),
        }


def train_epoch(
    args, context, trainee, optimizers, train_set, group, epoch, unreadable=None
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
    for _ in progress:
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
        progress.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}")
    seconds = time.perf_counter() - start
    images_seen = args.iterations_per_epoch * per_rank_batch * context.world_size
    return {
        "loss": float(np.mean(losses)),
        "seconds": seconds,
        "images_per_s": images_seen / seconds,
    }


def augmentation(args):
    return train_transform(
        args.image_size,
        args.brightness,
        args.contrast,
        args.saturation,
        args.hue,
        args.random_resized_crop,
        args.grayscale,
        args.blur,
        args.weather,
    )


def build_training(args, train_set: TrainSet, device: torch.device):
    model = build_model(args, device)
    model_optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    sizes = np.diff(train_set.partition.group_offsets)[: args.groups_num]
    heads = [HEADS[args.head](args.fc_output_dim, int(n)) for n in sizes]
    head_optimizers = [torch.optim.Adam(h.parameters(), lr=args.classifiers_lr) for h in heads]
    return model, model_optimizer, heads, head_optimizers


def checkpoint_state(
    epoch, model, model_optimizer, heads, head_optimizers, best, history, args, unreadable=None
):
    """The resumable checkpoint: tensors, dicts, lists, numbers and strings only, so that
    --resume_train can load it with weights_only=True."""
    return {
        "epoch_num": epoch,
        "model_state_dict": model.state_dict(),
        "optimizer_state_dict": model_optimizer.state_dict(),
        "classifiers_state_dict": [h.state_dict() for h in heads],
        "optimizers_state_dict": [o.state_dict() for o in head_optimizers],
        "best_val_recall1": best,
        "history": history,
        "args": runs.plain_args(args),
        "unreadable_images": unreadable.files if unreadable is not None else {},
    }


RESUME_KEYS = ("epoch_num", "model_state_dict", "optimizer_state_dict", "classifiers_state_dict")


@dataclass
class Resumed:
    epoch: int
    best: float
    history: list
    unreadable: dict


def read_resumable(path, args) -> dict:
    """The training checkpoint at `path`, checked against the flags; UserError if unusable."""
    checkpoint = load_trusted_types(path)
    if isinstance(checkpoint, dict) and not all(key in checkpoint for key in RESUME_KEYS):
        if checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
            raise UserError(
                f"{path} holds only a network's weights (like best_model.pth), not a training "
                f"checkpoint; give RUN/{runs.LAST_CHECKPOINT} to --resume_train, or pass this file "
                "to --resume_model to start a new training from these weights"
            )
    if not isinstance(checkpoint, dict) or not all(key in checkpoint for key in RESUME_KEYS):
        raise UserError(
            f"{path} is not a training checkpoint (it lacks {', '.join(RESUME_KEYS)}); "
            f"give the {runs.LAST_CHECKPOINT} of a run to --resume_train"
        )
    state = checkpoint["model_state_dict"]
    found = describe_state_dict(state) if isinstance(state, dict) else None
    if found is None or (found.backbone, found.fc_output_dim) != (
        args.backbone,
        args.fc_output_dim,
    ):
        saved = f"{found.backbone} with {found.fc_output_dim}-D" if found else "another network"
        raise UserError(
            f"{path} was trained with {saved} descriptors, these flags ask for "
            f"{args.backbone} with {args.fc_output_dim}-D; give the checkpoint's --backbone "
            "and --fc_output_dim, or start a new run"
        )
    return checkpoint


def resume(path, model, model_optimizer, heads, head_optimizers, args=None) -> Resumed:
    """Load a last_checkpoint.pth (weights_only) into the training objects."""
    args = args or argparse.Namespace(
        backbone=model.backbone_name, fc_output_dim=model.fc_output_dim
    )
    checkpoint = read_resumable(path, args)
    sizes = [h.out_features for h in heads]
    try:
        saved = [int(s["weight"].shape[0]) for s in checkpoint["classifiers_state_dict"]]
    except (KeyError, TypeError, AttributeError, IndexError) as error:
        raise UserError(
            f"{path} has damaged classifier heads; resume from another checkpoint"
        ) from error
    if saved != sizes:
        raise UserError(
            f"{path} was trained with classes per group {saved}, this partition has {sizes}: "
            "give the same dataset and --M --alpha --N --L --min_images_per_class --groups_num"
        )
    try:
        model.load_state_dict(checkpoint["model_state_dict"])
        model_optimizer.load_state_dict(checkpoint["optimizer_state_dict"])
        for head, state in zip(heads, checkpoint["classifiers_state_dict"], strict=True):
            head.load_state_dict(state)
        optimizers = checkpoint.get("optimizers_state_dict", [])
        for optimizer, state in zip(head_optimizers, optimizers, strict=True):
            optimizer.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError, TypeError) as error:
        first_line = str(error).strip().splitlines()[0][:160] if str(error).strip() else ""
        raise UserError(
            f"{path} does not fit the network these flags describe ({first_line}); give the "
            "checkpoint's --pooling, --head and --train_all_layers"
        ) from error
    return Resumed(
        int(checkpoint["epoch_num"]),
        float(checkpoint.get("best_val_recall1", -1.0)),
        list(checkpoint.get("history", [])),
        dict(checkpoint.get("unreadable_images", {})),
    )


def validate(args, context, model, val_set) -> dict[int, float]:
    return evaluate_set(args, context, model, val_set).recalls


def evaluate_set(args, context, model, test_set) -> EvalResult:
    return evaluate(
        context,
        model,
        test_set,
        args.infer_batch_size,
        args.resize_test_imgs,
        args.image_size,
        args.positive_dist_threshold,
        args.num_workers,
    )


def test_best_model(args, context, model, run_folder: Path) -> dict:
    """Load the run's best model, test it on the test set, print the recalls on rank 0.

    Returns the summary entries: "test" (R@N) and "test_result" (what the catalog records).
    """
    if not (run_folder / runs.BEST_MODEL).is_file():
        raise UserError(
            f"{run_folder} has no {runs.BEST_MODEL} to test; train at least one epoch, or test "
            "a model with python -m training.eval --resume_model FILE"
        )
    load_checkpoint(model, run_folder / runs.BEST_MODEL)
    try:
        test_set = load_test_set(args.test_set_folder, args.queries_folder)
    except ValueError as error:
        raise UserError(one_line(error)) from error
    result = evaluate_set(args, context, model, test_set)
    if context.is_main:
        print(
            f"Test {test_set.name} / {args.queries_folder}: "
            f"{format_recalls(result.recalls)}{left_out_note(result)}"
        )
    return {
        "test": {f"R@{n}": v for n, v in result.recalls.items()},
        "test_result": test_result(args, test_set, result),
    }


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


def adopt_best_model(args, run_folder: Path) -> None:
    """Resuming into a new folder: bring the checkpoint's best_model.pth along."""
    source = Path(args.resume_train).resolve().parent / runs.BEST_MODEL
    target = run_folder / runs.BEST_MODEL
    if source.is_file() and not target.exists():
        files.write_bytes(target, source.read_bytes())


def gather_unreadable(context, unreadable: UnreadableImages) -> UnreadableImages:
    """Every rank skips its own files; rank 0 writes the summary, so it collects them all."""
    if context.distributed:
        everyone: list = [None] * context.world_size
        torch.distributed.all_gather_object(everyone, unreadable.files)
        for files_of_rank in everyone:
            unreadable.merge(files_of_rank)
    return unreadable


def train(args) -> dict:
    context = distributed.setup(args.device)
    if args.batch_size % context.world_size:
        raise UserError(
            f"--batch_size {args.batch_size} does not divide among {context.world_size} "
            "processes; give a multiple of the process count"
        )
    run_folder = prepare_run_folder(args, context)
    kind = getattr(args, "run_kind", "train")  # the ablation runner sets "ablation"
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
        )
        heads[group] = head.cpu()
        move_optimizer(head_optimizers[group], torch.device("cpu"))
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
            run_folder / runs.SUMMARY,
        )
    if args.test_set_folder:
        summary.update(test_best_model(args, context, model, run_folder))
    if context.is_main:
        runs.write_summary(run_folder, summary)  # the run folder first, whole
        record_in_catalog(args, kind, summary.get("test_result"))
    distributed.teardown()
    return summary


@user_errors
def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = config.parse_arguments(argv)
    if not args.train_set_folder or not args.val_set_folder:
        raise config.BadFlagError(
            "--train_set_folder and --val_set_folder (or --dataset_folder) are required"
        )
    if args.device == "cuda" and not torch.cuda.is_available():
        log.warning("CUDA is not available: training on the CPU")
    train(args)


if __name__ == "__main__":
    main()
