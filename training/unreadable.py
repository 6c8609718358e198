"""Images that could not be decoded: train images skipped, logged once each and counted for
summary.json; evaluation and index images left out of the descriptors, each with its reason.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from core.images import ImageError, load_image

log = logging.getLogger(__name__)


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


def gather_unreadable(context, unreadable: UnreadableImages) -> UnreadableImages:
    """Every rank skips its own files; rank 0 writes the summary, so it collects them all."""
    if context.distributed:
        everyone: list = [None] * context.world_size
        torch.distributed.all_gather_object(everyone, unreadable.files)
        for files_of_rank in everyone:
            unreadable.merge(files_of_rank)
    return unreadable


def unreadable_reason(path: str | os.PathLike) -> str:
    """Why an image cannot be decoded (core.images' sentence, which names the file)."""
    try:
        load_image(path)
    except ImageError as error:
        return str(error)
    return f"{path}: could not be read during the extraction"


def left_out_rows(
    root: str | os.PathLike, paths: Sequence[str], descriptors: np.ndarray
) -> tuple[np.ndarray, dict[str, str]]:
    """The rows of `descriptors` to keep, and {path: reason} of the images left out.

    Rows of unreadable images are NaN (core.descriptors.ImagePathsDataset skip_unreadable);
    each such image is read once more here, in this process, for the reason to report.
    """
    bad = np.isnan(descriptors).any(axis=1)
    reasons = {
        paths[row]: unreadable_reason(Path(root) / paths[row]) for row in np.flatnonzero(bad)
    }
    return np.flatnonzero(~bad), reasons
