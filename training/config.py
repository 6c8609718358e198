"""The one argument parser, with the reference implementation's flag names and defaults.

A command written for the reference CosPlace code runs here unchanged. The partition
defaults come from core.partition, their single home.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from core.errors import BAD_FLAG_EXIT, UserError, with_debug_flag
from core.model import BACKBONE_CHANNELS, POOLINGS
from core.partition import (
    DEFAULT_ALPHA,
    DEFAULT_GROUP_ORDER,
    DEFAULT_GROUPS_NUM,
    DEFAULT_L,
    DEFAULT_M,
    DEFAULT_MIN_IMAGES_PER_CLASS,
    DEFAULT_N,
    GROUP_ORDERS,
    PartitionParams,
)
from core.recall import DEFAULT_POSITIVE_DIST_THRESHOLD, RECALL_VALUES
from data_catalog.catalog import DEFAULT_WORKSPACE, catalog_file

# training.augment's own augmentations, each applied to a train image with a probability.
AUGMENTATION_PROBABILITIES = {
    "grayscale": "a grey train image",
    "blur": "a Gaussian-blurred train image",
    "weather": "simulated haze, low light or overcast on a train image",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="CosPlace training and evaluation",
        # A short usage line: a mistake then ends in two lines, not a screen of flags.
        usage="%(prog)s [--flag value ...] (--help lists every flag)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    # CosPlace groups (paper Sec. 4.1)
    parser.add_argument("--M", type=float, default=DEFAULT_M, help="cell side in metres")
    parser.add_argument("--alpha", type=float, default=DEFAULT_ALPHA, help="heading bin, degrees")
    parser.add_argument("--N", type=int, default=DEFAULT_N, help="cells between same-group classes")
    parser.add_argument("--L", type=int, default=DEFAULT_L, help="heading bins between them")
    parser.add_argument("--groups_num", type=int, default=DEFAULT_GROUPS_NUM)
    parser.add_argument("--min_images_per_class", type=int, default=DEFAULT_MIN_IMAGES_PER_CLASS)
    parser.add_argument(
        "--group_order",
        default=DEFAULT_GROUP_ORDER,
        choices=GROUP_ORDERS,
        help="reference: groups in order of first appearance in the (sorted or listed) paths, "
        "as the reference numbers them; size: largest group first",
    )
    # Model
    parser.add_argument("--backbone", default="ResNet18", choices=list(BACKBONE_CHANNELS))
    parser.add_argument("--fc_output_dim", type=int, default=512, help="descriptor dimension")
    parser.add_argument("--pooling", default="gem", choices=POOLINGS)
    parser.add_argument("--train_all_layers", action="store_true")
    parser.add_argument("--imagenet_weights", default=None, help="torchvision weights file")
    # Training
    parser.add_argument("--use_amp16", action="store_true", help="fp16 AMP on CUDA (else bf16)")
    parser.add_argument("--amp_cpu_bf16", action="store_true", help="bf16 autocast on the CPU")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--epochs_num", type=int, default=50)
    parser.add_argument("--iterations_per_epoch", type=int, default=10_000)
    parser.add_argument("--lr", type=float, default=0.00001, help="network learning rate")
    parser.add_argument("--classifiers_lr", type=float, default=0.01)
    parser.add_argument(
        "--lr_schedule",
        default="constant",
        choices=["constant", "cosine"],
        help="constant (the reference) or cosine decay of the network's lr to 0 at the end",
    )
    parser.add_argument("--head", default="cosface", choices=["cosface", "arcface"])
    # Data augmentation
    parser.add_argument("--brightness", type=float, default=0.7)
    parser.add_argument("--contrast", type=float, default=0.7)
    parser.add_argument("--saturation", type=float, default=0.7)
    parser.add_argument("--hue", type=float, default=0.5)
    parser.add_argument("--random_resized_crop", type=float, default=0.5)
    for name, what in AUGMENTATION_PROBABILITIES.items():
        parser.add_argument(f"--{name}", type=float, default=0.0, help=f"probability of {what}")
    parser.add_argument("--image_size", type=int, default=512, help="training crops' side")
    # Validation / test
    parser.add_argument("--resize_test_imgs", action="store_true")
    parser.add_argument("--infer_batch_size", type=int, default=16)
    parser.add_argument(
        "--positive_dist_threshold", type=float, default=DEFAULT_POSITIVE_DIST_THRESHOLD
    )
    parser.add_argument("--queries_folder", default="queries_v1", help="test queries' subfolder")
    # Resume
    parser.add_argument("--resume_train", default=None, help="last_checkpoint.pth to continue")
    parser.add_argument("--resume_model", default=None, help="weights to start from / test")
    # Other
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num_workers", type=int, default=8)
    parser.add_argument("--num_preds_to_save", type=int, default=0)
    parser.add_argument("--save_only_wrong_preds", action="store_true")
    parser.add_argument("--save_descriptors", action="store_true")
    # Paths
    parser.add_argument("--dataset_folder", default=None, help="SF-XL root (sets the three below)")
    parser.add_argument("--train_set_folder", default=None)
    parser.add_argument("--val_set_folder", default=None)
    parser.add_argument("--test_set_folder", default=None)
    parser.add_argument("--save_dir", default="default", help="run name under WORKSPACE/runs")
    parser.add_argument("--workspace", default=DEFAULT_WORKSPACE, help="datasets, catalog, runs")
    parser.add_argument("--catalog", default=None, help="DuckDB file (default WORKSPACE/catalog)")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing run folder (training) or evaluation results (eval)",
    )
    return with_debug_flag(parser)


class BadFlagError(UserError):
    """A flag value no run can use; exits 2 like argparse's own errors."""

    exit_code = BAD_FLAG_EXIT


# Smallest allowed value of each integer flag (0 for counts where 0 means "none").
AT_LEAST = {
    "batch_size": 1,
    "image_size": 1,
    "infer_batch_size": 1,
    "epochs_num": 1,
    "iterations_per_epoch": 1,
    "N": 1,
    "L": 1,
    "min_images_per_class": 1,
    "fc_output_dim": 1,
    "num_workers": 0,
    "num_preds_to_save": 0,
    "seed": 0,
}
POSITIVE = ("M", "lr", "classifiers_lr", "positive_dist_threshold")
NON_NEGATIVE = ("brightness", "contrast", "saturation")
FILE_FLAGS = ("resume_train", "resume_model", "imagenet_weights")


def flag_problem(args: argparse.Namespace) -> str | None:
    """The first flag value that cannot work, as a sentence with its fix; None if all can."""
    for name, low in AT_LEAST.items():
        value = getattr(args, name, None)
        if value is not None and value < low:
            if name == "epochs_num":
                return (
                    f"--epochs_num {value} trains nothing: give at least 1 (to test a model "
                    "without training, run python -m training.eval --resume_model FILE)"
                )
            return f"--{name} {value} is too small: give a value of at least {low}"
    for name in POSITIVE:
        value = getattr(args, name, None)
        if value is not None and not value > 0:  # also refuses nan
            return f"--{name} {value} must be a positive number"
    for name in NON_NEGATIVE:
        value = getattr(args, name, None)
        if value is not None and not value >= 0:
            return f"--{name} {value} must be 0 or more"
    if not 0 < args.alpha <= 360:
        return f"--alpha {args.alpha} must lie in (0, 360] degrees (360: no heading classes)"
    if not 0 <= args.hue <= 0.5:
        return f"--hue {args.hue} must lie in [0, 0.5] (torchvision's ColorJitter range)"
    for name in AUGMENTATION_PROBABILITIES:
        value = getattr(args, name)
        if not 0 <= value <= 1:
            return f"--{name} {value} is a probability: give a value in [0, 1]"
    if not 0 <= args.random_resized_crop < 1:
        return f"--random_resized_crop {args.random_resized_crop} must lie in [0, 1)"
    groups = args.N * args.N * args.L
    if not 1 <= args.groups_num <= groups:
        return (
            f"--groups_num {args.groups_num} is out of range: give 1 to N*N*L = {groups} "
            f"(--N {args.N}, --L {args.L})"
        )
    if args.num_preds_to_save > max(RECALL_VALUES):
        return (
            f"--num_preds_to_save {args.num_preds_to_save}: at most {max(RECALL_VALUES)} are kept"
        )
    if args.save_dir in ("", ".", "..") or any(sep in args.save_dir for sep in "/\\"):
        return f"--save_dir {args.save_dir!r} must be a plain folder name, without slashes"
    for name in FILE_FLAGS:
        path = getattr(args, name, None)
        if path and not os.path.isfile(path):
            return f"--{name} {path} is not a file; check the path"
    for name in ("train_set_folder", "val_set_folder", "test_set_folder"):
        folder = getattr(args, name)
        if folder and not os.path.isdir(folder):
            return f"--{name} {folder} is not a folder; check the path (or --dataset_folder)"
    return None


def finish(
    args: argparse.Namespace, parser: argparse.ArgumentParser | None = None
) -> argparse.Namespace:
    """Derive folders from --dataset_folder, check every flag before any work.

    A bad value ends in parser.error (one line, exit 2), or BadFlagError without a parser.
    """
    if args.dataset_folder:
        root = Path(args.dataset_folder)
        if not root.is_dir():
            problem = f"--dataset_folder {root} is not a folder; check the path"
            _refuse(problem, parser)
        args.train_set_folder = args.train_set_folder or str(root / "train")
        args.val_set_folder = args.val_set_folder or str(root / "val")
        args.test_set_folder = args.test_set_folder or str(root / "test")
    problem = flag_problem(args)
    if problem:
        _refuse(problem, parser)
    args.catalog = args.catalog or str(catalog_file(args.workspace))
    args.run_folder = str(Path(args.workspace) / "runs" / args.save_dir)
    return args


def _refuse(problem: str, parser: argparse.ArgumentParser | None) -> None:
    if parser is not None:
        parser.error(problem)
    raise BadFlagError(problem)


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    return finish(parser.parse_args(argv), parser)


def partition_params(args: argparse.Namespace) -> PartitionParams:
    return PartitionParams(
        args.M, args.alpha, args.N, args.L, args.min_images_per_class, args.group_order
    )
