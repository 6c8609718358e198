"""Training's evaluations: val recall after each epoch, the best model on the test set."""

from __future__ import annotations

from pathlib import Path

from core.errors import UserError, one_line
from core.model import load_checkpoint
from data_catalog import runs
from training.data import load_test_set
from training.eval import evaluate_with_flags, recalls_line, test_result


def validate(args, context, model, val_set) -> dict[int, float]:
    return evaluate_with_flags(args, context, model, val_set).recalls


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
    result = evaluate_with_flags(args, context, model, test_set)
    if context.is_main:
        print(f"Test {recalls_line(result, args.queries_folder)}")
    return {
        "test": {f"R@{n}": v for n, v in result.recalls.items()},
        "test_result": test_result(args, result),
    }
