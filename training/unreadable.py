"""Train images that could not be decoded: skipped, logged once each, counted for summary.json."""

from __future__ import annotations

import logging

import torch

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
