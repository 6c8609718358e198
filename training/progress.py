"""The training as it happens, in RUN/progress.json (data_catalog.runs writes it whole).

The trainer records the epochs done so far (the same entries as summary.json's history),
the current epoch's iterations, loss and images/s, and the time of the record, so that a
reader (the app's Training page) can follow a run without touching the training:

- after each epoch, before its validation, before the final test and at the end;
- within an epoch at most every `every_s` seconds (one small JSON file renamed into place:
  benchmarks/training_progress.py measures what it costs).

`updated` (seconds since 1970, this machine's clock), `pid` and `host` tell a reader whether
the trainer is still alive: a killed training leaves state "training", and only the
record's age (or, on the same host, the dead pid) tells. `longest_gap_s` is the longest
wait between two records so far (validation included), so a reader knows how long a quiet
spell may be normal.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from data_catalog import runs

PROGRESS_EVERY_S = 5.0
FORMAT = 1


class ProgressRecord:
    """Writes a run's progress.json; every method is a no-op when disabled (other ranks)."""

    def __init__(
        self,
        run_folder: Path,
        args,
        history: list[dict],
        enabled: bool = True,
        every_s: float = PROGRESS_EVERY_S,
        clock=time.time,
    ) -> None:
        self.run_folder = Path(run_folder)
        self.enabled = enabled
        self.every_s = every_s
        self.clock = clock
        self.history = history
        self.current: dict | None = None
        self.started = clock()
        self.last_write: float | None = None
        self.longest_gap_s = 0.0
        self.writes = 0
        self.fixed = {
            "format": FORMAT,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": self.started,
            "epochs_num": args.epochs_num,
            "iterations_per_epoch": args.iterations_per_epoch,
            "batch_size": args.batch_size,
            "every_s": every_s,
        }

    def write(self, state: str = "training") -> None:
        if not self.enabled:
            return
        now = self.clock()
        if self.last_write is not None:
            self.longest_gap_s = max(self.longest_gap_s, now - self.last_write)
        self.last_write = now
        record = {
            **self.fixed,
            "state": state,
            "updated": now,
            "longest_gap_s": round(self.longest_gap_s, 3),
            "history": self.history,
            "current": self.current,
        }
        runs.write_progress(self.run_folder, record)
        self.writes += 1

    def start(self) -> None:
        self.write()

    def iteration(self, epoch: int, group: int, done: int, loss: float, seconds: float) -> None:
        """Called after every iteration; writes only when `every_s` has passed since the last
        record (one clock read otherwise)."""
        if not self.enabled or (
            self.last_write is not None and self.clock() - self.last_write < self.every_s
        ):
            return
        self.current = {
            "phase": "training",
            "epoch": epoch,
            "group": group,
            "iterations_done": done,
            "loss": loss,
            "seconds": round(seconds, 3),
            "images_per_s": done * self.fixed["batch_size"] / seconds if seconds > 0 else None,
        }
        self.write()

    def phase(self, phase: str, epoch: int | None = None) -> None:
        """A step with no iterations (validating, testing), so a reader knows what is slow."""
        self.current = {**(self.current or {}), "phase": phase}
        if epoch is not None:
            self.current.update(epoch=epoch, iterations_done=self.fixed["iterations_per_epoch"])
        self.write()

    def epoch_done(self, history: list[dict]) -> None:
        self.history = history
        self.current = None
        self.write()

    def finish(self) -> None:
        self.current = None
        self.write("finished")
