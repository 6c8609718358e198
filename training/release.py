"""The shipped demo model: a trained run exported as fp16 weights with the record of how it was
made, checked and installed by `make demo`.

    python -m training.release export --run_dir data/runs/demo_train \
        --dataset_folder data/synthetic_demo --out models/demo [--overwrite]
    python -m training.release install --out models/demo --dataset_folder data/synthetic_demo \
        --run_dir data/runs/demo [--overwrite]
    python -m training.release compare --run_dir data/runs/demo_train --out models/demo

export: halves the run's best_model.pth to fp16, evaluates those very weights once on val
(queries, queries_v1) and test (queries_v1, queries_v2) in WORKSPACE/runs/<run>_release
(derived files, always replaced), then writes `demo_model.pth` and `record.json` into --out:
the command and flags, the commit and machine, date, wall time, iterations, the val curve,
val and test recalls, the sha256 of the weights and a checksum of a sample of the rendered
city. install: checks the weights' sha256 and the city's checksum against the record, then
puts the model and its training summary into a run folder for training.eval and the app.
compare: prints a retrained run's val recalls beside the record's.

    python -m training.release claims --workspace data --out records/claims [--overwrite]

claims: copies what training.claims measured (claims.json, the grid tables, and per point
summary.json, args.json, each evaluation's results.json and predictions.csv: text, no
weights) into --out in a workspace's layout, so the app reads it like a workspace and labels
it recorded; --out/record.json, written last, names the command, commit, machine, date, wall
and CPU time, the verdicts and the sha256 of every copied file.
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import hashlib
import json
import logging
import sys
from pathlib import Path

import torch

from core import files
from core.errors import UserError, user_errors, with_debug_flag
from core.index import file_sha256
from core.model import load_trusted_types
from data_catalog import runs
from data_catalog.catalog import DEFAULT_WORKSPACE
from data_catalog.name_source import walk_images
from data_catalog.runs import BEST_MODEL, LAST_CHECKPOINT, SUMMARY
from training import eval as evaluation
from training.provenance import provenance

log = logging.getLogger(__name__)

WEIGHTS = "demo_model.pth"
RECORD = "record.json"
# (set folder, queries folder): val for the curve and tuning, test evaluated once here.
EVALUATIONS = (
    ("val", "queries"),
    ("val", "queries_v1"),
    ("test", "queries_v1"),
    ("test", "queries_v2"),
)
CITY_SAMPLE_EVERY = 250  # every 250th image of the sorted city: about 100 files to hash


class ReleaseError(UserError):
    """A release, record or rendered city that does not match what it should."""


def city_checksum(dataset_folder: str | Path) -> dict:
    """sha256 over the relative paths and bytes of every CITY_SAMPLE_EVERY-th image (sorted):
    equal on two machines only if both rendered the same city, byte for byte."""
    root = Path(dataset_folder)
    paths, _ = walk_images(root)
    sample = paths[::CITY_SAMPLE_EVERY]
    digest = hashlib.sha256()
    for relative in sample:
        digest.update(relative.encode("utf-8") + b"\0")
        digest.update((root / relative).read_bytes())
    return {"images": len(paths), "sampled": len(sample), "sha256": digest.hexdigest()}


def half_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The weights of a best_model.pth with every floating tensor in fp16 (half the bytes)."""
    state = load_trusted_types(path)
    return {k: v.half() if v.is_floating_point() else v for k, v in state.items()}


def read_json(path: Path) -> dict:
    """A release file's JSON object; a missing or malformed one is a ReleaseError naming it."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ReleaseError(
            f"{path} is missing or not readable JSON ({error}); restore it with git checkout"
        ) from error
    if not isinstance(data, dict):
        raise ReleaseError(f"{path} holds no JSON object; restore it with git checkout")
    return data


def val_curve(history: list[dict]) -> list[dict]:
    """Val recall after each epoch against the run's wall-clock minutes."""
    return [
        {
            "epoch": entry["epoch"],
            "minutes": round(entry.get("wall_s", 0.0) / 60, 2),
            "loss": round(entry["loss"], 4),
            "images_per_s": round(entry["images_per_s"], 1),
            **entry["val"],
        }
        for entry in history
    ]


def read_run(run_dir: Path) -> tuple[dict, dict]:
    """(summary.json, the flags it was trained with) of a finished training run."""
    summary_path, checkpoint = run_dir / SUMMARY, run_dir / LAST_CHECKPOINT
    if not summary_path.is_file() or not (run_dir / BEST_MODEL).is_file():
        raise ReleaseError(
            f"{run_dir} is not a finished training run (no {SUMMARY} or {BEST_MODEL}); "
            "train it with make demo-train"
        )
    summary = read_json(summary_path)
    flags = load_trusted_types(checkpoint).get("args", {}) if checkpoint.is_file() else {}
    return summary, flags


def evaluate_release(weights: Path, dataset_folder: Path, flags: dict, run_name: str, workspace):
    """training.eval on each of EVALUATIONS with the released weights; {set/queries: recalls}."""
    recalls = {}
    for subset, queries in EVALUATIONS:
        argv = [
            "--test_set_folder", str(dataset_folder / subset), "--queries_folder", queries,
            "--resume_model", str(weights), "--backbone", flags["backbone"],
            "--fc_output_dim", str(flags["fc_output_dim"]), "--pooling", flags["pooling"],
            "--image_size", str(flags["image_size"]), "--infer_batch_size",
            str(flags["infer_batch_size"]), "--device", "cpu", "--num_workers", "0",
            "--workspace", str(workspace), "--save_dir", run_name, "--overwrite",
        ]  # fmt: skip
        argv += ["--resize_test_imgs"] if flags.get("resize_test_imgs") else []
        args = evaluation.config.parse_arguments(argv)
        result = evaluation.run(args)
        recalls[f"{subset}/{queries}"] = {f"R@{n}": v for n, v in result.recalls.items()}
    return recalls


def export(args: argparse.Namespace) -> dict:
    run_dir, out, dataset = Path(args.run_dir), Path(args.out), Path(args.dataset_folder)
    if (out / RECORD).exists() and not args.overwrite:
        raise ReleaseError(
            f"{out / RECORD} already describes a released model; keep it, or replace it "
            "with --overwrite"
        )
    summary, flags = read_run(run_dir)
    history = summary.get("history", [])
    wall_s = history[-1].get("wall_s", 0.0) if history else 0.0
    # The workspace's own run folder holds the halved weights while they are evaluated: the
    # shipped file is replaced only once its record is complete.
    release_run = f"{run_dir.name}_release"
    release_dir = Path(args.workspace) / "runs" / release_run
    weights = files.torch_save(half_state_dict(run_dir / BEST_MODEL), release_dir / BEST_MODEL)
    recalls = evaluate_release(weights, dataset, flags, release_run, args.workspace)
    iterations = flags.get("epochs_num", 0) * flags.get("iterations_per_epoch", 0)
    record = {
        "what": "CosPlace demo model for the synthetic city (seed 0, preset demo)",
        "weights": WEIGHTS,
        "weights_sha256": file_sha256(weights),
        "weights_bytes": weights.stat().st_size,
        "dtype": "float16",
        "command": "make demo-release (make demo-train, then python -m training.release export)",
        "train_flags": flags,
        **provenance(run_dir / SUMMARY, wall_s, ("trained_from", "trained_until")),
        "released": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "wall_time_s": wall_s,
        "iterations": iterations,
        "images_seen": iterations * flags.get("batch_size", 0),
        "best_val_recall1_during_training": summary.get("best_val_recall1"),
        "val_curve": val_curve(history),
        "recalls": recalls,
        "city": {"dataset": dataset.name, **city_checksum(dataset)},
    }
    out.mkdir(parents=True, exist_ok=True)
    files.write_bytes(out / WEIGHTS, weights.read_bytes())
    files.write_json(out / SUMMARY, summary)
    files.write_json(out / RECORD, record)  # last: a record always describes the weights beside it
    log.info("released %s (sha256 %s)", out / WEIGHTS, record["weights_sha256"])
    return record


def read_record(out: Path) -> dict:
    if not (out / RECORD).exists():
        raise ReleaseError(
            f"{out / RECORD} is missing: restore it with git checkout {out}, or ship a model "
            "there with make demo-release"
        )
    return read_json(out / RECORD)


def check_release(out: Path, dataset: Path) -> dict:
    """The record, once the weights and the rendered city are the ones it describes."""
    record = read_record(out)
    weights = out / record["weights"]
    if not weights.is_file() or file_sha256(weights) != record["weights_sha256"]:
        raise ReleaseError(
            f"{weights} is missing or is not the file its record describes (sha256 differs); "
            f"restore it with git checkout {out} (or git lfs pull)"
        )
    city = city_checksum(dataset)
    expected = record["city"]
    if (city["images"], city["sha256"]) != (expected["images"], expected["sha256"]):
        raise ReleaseError(
            f"the city in {dataset} ({city['images']} images, sample sha256 {city['sha256'][:12]}) "
            f"is not the one the shipped model was trained on ({expected['images']} images, "
            f"{expected['sha256'][:12]}); render it again (make demo-data after removing "
            f"{dataset}), or train a model on this render with make demo-train"
        )
    return record


def install(args: argparse.Namespace) -> None:
    out, run_dir = Path(args.out), Path(args.run_dir)
    record = check_release(out, Path(args.dataset_folder))
    target = run_dir / BEST_MODEL
    same = target.is_file() and file_sha256(target) == record["weights_sha256"]
    if target.exists() and not same and not args.overwrite:
        raise ReleaseError(
            f"{run_dir} holds another model; move it away (or choose another run folder), "
            "or replace it with --overwrite"
        )
    summary = {**read_json(out / SUMMARY), "release": release_note(record)}
    if not same:
        files.write_bytes(target, (out / record["weights"]).read_bytes())
    files.write_json(run_dir / SUMMARY, summary)
    print(
        f"{run_dir}: the shipped demo model (sha256 {record['weights_sha256'][:12]}, trained "
        f"{record['trained_until'][:10]} on {record['machine']['cpu']}); city checksum matches"
    )


def release_note(record: dict) -> dict:
    """What a run folder keeps of its record, so the app can say the model is recorded."""
    keys = ("commit", "machine", "trained_until", "wall_time_s", "iterations", "command")
    return {key: record[key] for key in keys} | {"test": test_recalls(record)}


def test_recalls(record: dict) -> dict:
    return {k: v for k, v in record["recalls"].items() if k.startswith("test/")}


def compare(args: argparse.Namespace) -> None:
    """A retrained run's val curve beside the record's, epoch by epoch (printed)."""
    record = read_record(Path(args.out))
    summary, _ = read_run(Path(args.run_dir))
    ours = val_curve(summary.get("history", []))
    print(f"{'epoch':>5} {'recorded R@1':>12} {'this run R@1':>12} {'minutes':>8} {'recorded':>8}")
    for theirs, mine in zip(record["val_curve"], ours, strict=False):
        print(
            f"{mine['epoch']:>5} {theirs['R@1']:>12.1f} {mine['R@1']:>12.1f} "
            f"{mine['minutes']:>8.1f} {theirs['minutes']:>8.1f}"
        )
    best, recorded = summary.get("best_val_recall1"), record["best_val_recall1_during_training"]
    print(f"best val R@1: this run {best:.1f}, recorded {recorded:.1f}")
    print(f"the record's test recalls: {test_recalls(record)}")


# --- recorded claims -------------------------------------------------------------------------

RUN_FILES = (
    runs.SUMMARY,
    runs.ARGS,
    f"{runs.EVALUATION_PREFIX}*/{runs.RESULTS}",
    f"{runs.EVALUATION_PREFIX}*/{runs.PREDICTIONS}",
)
CLAIMS_COMMAND = "python -m training.claims --dataset_folder data/synthetic_demo --workspace data"


def recorded_files(folder: Path) -> list[Path]:
    """The claims' files under WORKSPACE/runs, relative to it."""
    found = [folder / runs.claims_file(folder.parent).name]
    found += sorted(folder.glob("ablation_claims_*.json"))
    found += sorted(folder.glob("ablation_claims_*.csv"))
    for run in sorted(p for p in folder.glob("ablation_claims_*") if p.is_dir()):
        for pattern in RUN_FILES:
            found += sorted(run.glob(pattern))
    return [p.relative_to(folder) for p in found if p.is_file()]


def claims_command(workspace: Path, claims: dict) -> str:
    """The training.claims command that made `claims` (claims.json): its folders, and a flag
    for each budget value that differs from the default budget."""
    from training.claims import BUDGET

    budget = claims.get("budget") or {}
    flags = [f"--{key} {value}" for key, value in budget.items() if BUDGET.get(key, value) != value]
    dataset = claims.get("dataset_folder", "data/synthetic_demo")
    return " ".join(
        ["python -m training.claims --dataset_folder", dataset, "--workspace", str(workspace)]
        + flags
    )


def record_claims(workspace: Path, out: Path, overwrite: bool) -> dict:
    """Copy training.claims' results (text, no weights) into `out`, then their record."""
    folder, claims_path = runs.runs_folder(workspace), runs.claims_file(workspace)
    if not claims_path.is_file():
        raise ReleaseError(f"{claims_path} is missing: run {CLAIMS_COMMAND} first")
    if (out / RECORD).exists() and not overwrite:
        raise ReleaseError(
            f"{out / RECORD} already records claims; keep it, or replace with --overwrite"
        )
    claims = json.loads(claims_path.read_text())
    copied = {}
    for relative in recorded_files(folder):
        data = (folder / relative).read_bytes()
        if relative.name == runs.PREDICTIONS:  # the bulk of it: gzipped, read as they are
            relative, data = relative.with_name(runs.PREDICTIONS_GZ), gzip.compress(data, mtime=0)
        target = runs.runs_folder(out) / relative
        files.write_bytes(target, data)
        copied[relative.as_posix()] = file_sha256(target)
    record = {
        "what": "the paper's claims on the synthetic demo city, over seeds",
        "command": claims_command(workspace, claims),
        **provenance(claims_path, float(claims.get("seconds", 0))),
        "wall_time_s": claims.get("seconds"),
        "cpu_seconds": claims.get("cpu_seconds"),
        "budget": claims.get("budget"),
        "verdicts": {name: claim.get("verdict") for name, claim in claims["claims"].items()},
        "files": copied,
    }
    files.write_json(out / RECORD, record)  # last: a record describes the files beside it
    log.info("recorded %d files of the claims in %s", len(copied), out)
    return record


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="ship the demo model or the claims' records")
    parser.add_argument("action", choices=["export", "install", "compare", "claims"])
    parser.add_argument("--run_dir", help="the run folder to export or fill (not for claims)")
    parser.add_argument(
        "--out", help="the shipped folder (default models/demo; records/claims for claims)"
    )
    parser.add_argument("--dataset_folder", default="data/synthetic_demo")
    parser.add_argument("--workspace", default=DEFAULT_WORKSPACE)
    parser.add_argument("--overwrite", action="store_true", help="replace a release or a model")
    return with_debug_flag(parser)


@user_errors
def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.action == "claims":
        record_claims(Path(args.workspace), Path(args.out or "records/claims"), args.overwrite)
        return
    if not args.run_dir:
        parser.error(f"{args.action} needs --run_dir")
    args.out = args.out or "models/demo"
    {"export": export, "install": install, "compare": compare}[args.action](args)


if __name__ == "__main__":
    main(sys.argv[1:])
