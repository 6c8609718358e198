"""User mistakes as one sentence: the UserError base class and the command-line wrapper.

A UserError's str() names the problem and the fix. `user_errors` wraps a main(argv)
function so that such an error (and the other known "your input is wrong" errors below)
ends the command with that sentence on stderr and a non-zero exit, without a traceback.
`--debug` on the command line (or COSPLACE_DEBUG=1) lets the traceback through. The
wrapper also starts the command's log lines on stderr (time, level, message).
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
from collections.abc import Callable
from typing import TypeVar

# Exit codes: 1 for a user error, 2 for a bad flag (argparse's own), 130 for Ctrl-C.
USER_ERROR_EXIT = 1
BAD_FLAG_EXIT = 2
INTERRUPTED_EXIT = 130
LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"

Main = TypeVar("Main", bound=Callable)


class UserError(Exception):
    """A mistake the user can fix; str() is one sentence naming the problem and the fix."""

    exit_code = USER_ERROR_EXIT


def one_line(error: BaseException) -> str:
    """The error's message on one line (a multi-line message would hide its first line)."""
    text = " ".join(str(error).split())
    return text or type(error).__name__


def with_debug_flag(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The parser with --debug, the flag debug_requested looks for."""
    parser.add_argument("--debug", action="store_true", help="show tracebacks of user errors")
    return parser


def debug_requested(argv: list[str] | None) -> bool:
    words = sys.argv[1:] if argv is None else argv
    return "--debug" in words or os.environ.get("COSPLACE_DEBUG", "") not in ("", "0")


INTERRUPTED = (
    "interrupted: checkpoints and results already written are whole; "
    "a training run continues with --resume_train RUN/last_checkpoint.pth"
)


def user_errors(main: Main, interrupted: str = INTERRUPTED, logs: bool = True) -> Main:
    """Decorate main(argv=None): known user errors end in one sentence and an exit code.

    With `logs`, INFO log lines go to stderr as time, level and message (LOG_FORMAT).

    UserError and FileNotFoundError/NotADirectoryError (a path the user gave) are caught;
    any other exception is a bug and keeps its traceback. Ctrl-C prints `interrupted`, what
    the command leaves behind (functools.partial(user_errors, interrupted=...) to change it).
    """

    @functools.wraps(main)
    def wrapper(argv: list[str] | None = None, *rest, **kwargs):
        if logs:
            logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
        try:
            return main(argv, *rest, **kwargs)
        except (UserError, FileNotFoundError, NotADirectoryError) as error:
            if debug_requested(argv):
                raise
            print(f"error: {one_line(error)}", file=sys.stderr)
            raise SystemExit(getattr(error, "exit_code", USER_ERROR_EXIT)) from None
        except KeyboardInterrupt:
            if debug_requested(argv):
                raise
            print(interrupted, file=sys.stderr)
            raise SystemExit(INTERRUPTED_EXIT) from None

    return wrapper  # type: ignore[return-value]
