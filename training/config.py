"""The one argument parser, with the reference implementation's flag names and defaults.

A command written for the reference CosPlace code runs here unchanged. The partition
defaults come from core.partition, their single home.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

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
from core.recall import DEFAULT_POSITIVE_DIST_THRESHOLD

DEFAULT_WORKSPACE = "data"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="CosPlace training and evaluation",
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
    parser.add_argument(
        "--amp_cpu_bf16", action="store_true", help="bf16 autocast + channels_last on the CPU"
    )
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--epochs_num", type=int, default=50)
    parser.add_argument("--iterations_per_epoch", type=int, default=10_000)
    parser.add_argument("--lr", type=float, default=0.00001, help="network learning rate")
    parser.add_argument("--classifiers_lr", type=float, default=0.01)
    parser.add_argument("--head", default="cosface", choices=["cosface", "arcface"])
    # Data augmentation
    parser.add_argument("--brightness", type=float, default=0.7)
    parser.add_argument("--contrast", type=float, default=0.7)
    parser.add_argument("--saturation", type=float, default=0.7)
    parser.add_argument("--hue", type=float, default=0.5)
    parser.add_argument("--random_resized_crop", type=float, default=0.5)
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
    return parser


def finish(args: argparse.Namespace) -> argparse.Namespace:
    """Derive folders from --dataset_folder, check what can be checked before any work."""
    if args.dataset_folder:
        root = Path(args.dataset_folder)
        args.train_set_folder = args.train_set_folder or str(root / "train")
        args.val_set_folder = args.val_set_folder or str(root / "val")
        args.test_set_folder = args.test_set_folder or str(root / "test")
    for name in ("train_set_folder", "val_set_folder", "test_set_folder"):
        folder = getattr(args, name)
        if folder and not os.path.isdir(folder):
            raise SystemExit(f"--{name} {folder} is not a folder")
    args.catalog = args.catalog or str(Path(args.workspace) / "catalog.duckdb")
    args.run_folder = str(Path(args.workspace) / "runs" / args.save_dir)
    return args


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    return finish(build_parser().parse_args(argv))


def partition_params(args: argparse.Namespace) -> PartitionParams:
    return PartitionParams(
        args.M, args.alpha, args.N, args.L, args.min_images_per_class, args.group_order
    )
