"""Batched descriptor extraction on CPU or CUDA, at native size or with the shorter side resized.

Images of different sizes may share a batch request: each batch is split by shape, so
native-size queries (every size a phone makes) and fixed-size database crops both work.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
import torchvision.transforms as T
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from core.images import ImageError, load_image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def inference_transform(resize_shorter_side: int | None = None) -> T.Compose:
    """ToTensor + ImageNet normalisation, optionally resizing the shorter side first."""
    # Resizing the PIL image before ToTensor moves fewer pixels than resizing the tensor.
    steps: list = [T.Resize(resize_shorter_side)] if resize_shorter_side else []
    steps += [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    return T.Compose(steps)


class ImagePathsDataset(Dataset):
    """Images read from disk with core.images.load_image; yields (tensor, index).

    With skip_unreadable, an image that cannot be decoded yields (None, index) instead of
    raising ImageError: extract_descriptors then leaves its row NaN, so that a long
    extraction survives one corrupt file and the caller can name the files left out.
    """

    def __init__(
        self, paths: Sequence[str | os.PathLike], transform=None, skip_unreadable: bool = False
    ) -> None:
        self.paths = list(paths)
        self.transform = transform or inference_transform()
        self.skip_unreadable = skip_unreadable

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor | None, int]:
        try:
            image = load_image(self.paths[index])
        except ImageError:
            if self.skip_unreadable:
                return None, index
            raise
        return self.transform(image), index


def collate_by_shape(batch: list[tuple[torch.Tensor, int]]):
    """Split a batch into stacks of equally shaped images: [(indices, tensor), ...]."""
    by_shape: dict[tuple[int, ...], list[tuple[torch.Tensor, int]]] = {}
    for tensor, index in batch:
        if tensor is None:  # an unreadable image (ImagePathsDataset skip_unreadable)
            continue
        by_shape.setdefault(tuple(tensor.shape), []).append((tensor, index))
    return [
        (torch.tensor([i for _, i in items]), torch.stack([t for t, _ in items]))
        for items in by_shape.values()
    ]


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The mixed-precision type for inference on a device (None on CPU: fp32 there)."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def extract_descriptors(
    model: nn.Module,
    dataset: Dataset,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    num_workers: int = 0,
    amp: bool = True,
    progress: bool = True,
    desc: str = "Extracting descriptors",
) -> np.ndarray:
    """Descriptors [len(dataset), dim] as float32, row i for dataset item with index i.

    The dataset yields (image tensor, index); rows of items whose tensor is None (images
    skipped as unreadable) stay NaN. On CUDA the model runs channels_last under
    autocast (bf16 where supported, else fp16) unless amp=False.
    """
    device = torch.device(device)
    was_training = model.training
    model = model.to(device).eval()
    dtype = autocast_dtype(device) if amp else None
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=collate_by_shape,
        pin_memory=device.type == "cuda",
    )
    output: np.ndarray | None = None
    try:
        with torch.inference_mode():
            for groups in tqdm(loader, desc=desc, disable=not progress, unit="batch"):
                for indices, images in groups:
                    images = images.to(device, non_blocking=True)
                    if device.type == "cuda":
                        images = images.contiguous(memory_format=torch.channels_last)
                    with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                        descriptors = model(images)
                    if output is None:
                        output = np.full((len(dataset), descriptors.shape[1]), np.nan, np.float32)
                    output[indices.numpy()] = descriptors.float().cpu().numpy()
    finally:
        model.train(was_training)
    if output is None:
        raise ValueError(
            "cannot extract descriptors from an empty dataset"
            if len(dataset) == 0
            else f"none of the {len(dataset)} images could be read"
        )
    return output


def extract_from_paths(
    model: nn.Module,
    paths: Sequence[str | os.PathLike],
    resize_shorter_side: int | None = None,
    skip_unreadable: bool = False,
    **kwargs,
) -> np.ndarray:
    """Descriptors of image files, in the order given (NaN rows for the unreadable ones
    with skip_unreadable, else ImageError)."""
    transform = inference_transform(resize_shorter_side)
    dataset = ImagePathsDataset(paths, transform, skip_unreadable)
    return extract_descriptors(model, dataset, **kwargs)
