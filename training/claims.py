"""The paper's claims on a small city, at a reduced budget, recorded for the Results page.

    python -m training.claims --dataset_folder data/synthetic_demo --workspace data

Four grids, each a set of CosPlace trainings made by training.ablation (same flags, same
run folders, same resume), then an evaluation of each point's best model that saves its
predictions (the Results page recomputes recall for any threshold from them):

    (a) groups      paper Table 5: CosPlace groups against the naive partitions
    (b) memory      training memory of CosPlace against the triplet baseline at equal batch
                    (benchmarks.training_memory, each configuration in its own process)
    (c) dimension   recall against descriptor dimension (paper Fig. 5)
    (d) train_size  recall as the training set shrinks (paper Table 6)

Points with the same settings are trained once: CosPlace's Table 5 row is also the 512-D
point of (c) and the full-size point of (d). Runs are WORKSPACE/runs/ablation_claims_<grid>_
<point>, each grid's table WORKSPACE/runs/ablation_claims_<grid>.csv/.json, the verdicts
WORKSPACE/runs/claims.json. Running it again skips what is recorded (--rerun retrains).

Every point is trained once per seed (--seeds, 0 1 2 by default) and evaluated on val/queries,
test/queries_v2 and test/queries_v1, as is the untrained network of each seed; claims.json
holds the mean and standard deviation over seeds, and each claim is decided only by a margin
larger than that spread (training.claims_verdicts), otherwise reported undecided.

The default budget: 64 px crops, batch 10, 3 epochs of 300 iterations, 9 trainings per seed,
and a validation on a third of the val panoramas and a quarter of its queries, built once as
WORKSPACE/subsets/<city>_claims_val. claims.json records the wall and CPU seconds. Any
training flag given on the command line overrides the budget and applies to every point,
e.g. `--iterations_per_epoch 2` for a smoke run. python -m training.release claims copies
the results into the repo (records/claims) with their provenance.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from tqdm import tqdm

from core import files
from core.errors import UserError, user_errors
from data_catalog import runs
from data_catalog.name_table import parse_paths
from training import ablation, config
from training import claims_verdicts as cv
from training import eval as evaluation

log = logging.getLogger(__name__)
CLAIMS = ("groups", "memory", "dimension", "train_size")
# Small enough for 2 CPU cores, large enough that every demo-city group holds a batch:
# with alpha=360 and N=5 the first demo-city group has 10 classes, hence batch 10.
# min_images_per_class 2 keeps the classes of the 10% subset (the full city has ~13 per class).
# 3 x 300 iterations per point: the 9 trainings and their evaluations took 19.4 min on an
# idle 2-core CPU (60 iterations per epoch left every recall at chance).
BUDGET = {
    "image_size": 64,
    "batch_size": 10,
    "groups_num": 3,
    "epochs_num": 3,
    "iterations_per_epoch": 300,
    "min_images_per_class": 2,
    "lr": 0.001,
    "infer_batch_size": 64,
    "num_workers": 0,
    "device": "cpu",
}
FLAGS = ("--train_all_layers", "--resize_test_imgs")  # no ImageNet weights offline
DIMENSIONS = (32, 128, 512)
TRAIN_FRACTIONS = (1.0, 0.3, 0.1)
COSPLACE_POINT = "M10_alpha30_N5_L2"  # the Table 5 row with CosPlace's settings
MEMORY_CONFIGS = ("cosplace", "triplet_equal_queries", "triplet_equal_images")
SEEDS = (0, 1, 2)
VAL_PANORAMA_STEP = 3
VAL_QUERY_STEP = 4


@dataclass(frozen=True)
class Planned:
    grid: str  # the ablation grid whose point this is
    point: ablation.Point  # named <base>_seed<seed>, with the seed among its flags
    fraction: float
    base: str = ""  # the point's name without the seed: seeds of one base are aggregated
    seed: int = 0


def grid_name(grid: str) -> str:
    return f"claims_{grid}"


def grid_table(workspace: str | Path, grid: str) -> Path:
    """The table of one claims grid (training.ablation's results file of that grid)."""
    return runs.grid_file(workspace, grid_name(grid))


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (user + system)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def small_val_folder(val_folder: Path, workspace: str | Path) -> Path:
    """Symlinks to every VAL_PANORAMA_STEP-th val database panorama (all its crops) and
    every VAL_QUERY_STEP-th val query: validation after each epoch at a fraction of the cost.

    Panoramas are kept whole so that every query still has database images within 25 m
    (the demo's database has a panorama every 10 m).
    """
    database = sorted(p.name for p in (val_folder / "database").iterdir() if p.is_file())
    queries = sorted(p.name for p in (val_folder / "queries").iterdir() if p.is_file())
    names, rows = parse_paths(database, extra=("pano_id",))
    panorama_of = dict(zip((database[i] for i in rows), names.extra["pano_id"], strict=True))
    kept = set(sorted(set(panorama_of.values()))[::VAL_PANORAMA_STEP])
    chosen = [f"database/{n}" for n in database if panorama_of.get(n) in kept]
    chosen += [f"queries/{n}" for n in queries[::VAL_QUERY_STEP]]
    name = f"{val_folder.parent.name}_claims_val"
    return ablation.link_subset(workspace, name, val_folder.resolve(), chosen)


def base_arguments(dataset_folder: str, workspace: str, extra: list[str]) -> list[str]:
    """The budget, then the user's flags (argparse keeps the last). No test set for train:
    each point is evaluated once afterwards, with its predictions saved."""
    root = Path(dataset_folder)
    val = small_val_folder(root / "val", workspace)
    argv = [f"--{k}={v}" for k, v in BUDGET.items()] + list(FLAGS)
    argv += ["--train_set_folder", str(root / "train"), "--val_set_folder", str(val)]
    return [*argv, "--workspace", workspace, *extra]


def plan(claims: list[str], base: argparse.Namespace, seeds=(0,)) -> list[Planned]:
    """The trainings the claims need, each once per seed (all points of a seed, then the
    next seed: a run cut short still has whole seeds to aggregate)."""
    table5 = ablation.grid_points("table5", base)
    cosplace = next(p for p in table5 if p.name == COSPLACE_POINT)
    points: list[tuple[str, ablation.Point, float]] = []
    if "groups" in claims or {"dimension", "train_size"} & set(claims):
        chosen = table5 if "groups" in claims else [cosplace]
        points += [("table5", p, 1.0) for p in chosen]
    if "dimension" in claims:
        points += [
            ("dimension", ablation.Point(f"dim{d}", {**cosplace.flags, "fc_output_dim": d}), 1.0)
            for d in DIMENSIONS
            if d != base.fc_output_dim
        ]
    if "train_size" in claims:
        points += [
            ("train_size", ablation.Point(f"fraction{f:g}", cosplace.flags, f), f)
            for f in TRAIN_FRACTIONS
            if f < 1
        ]
    return [
        Planned(grid, seeded(point, seed), fraction, point.name, seed)
        for seed in seeds
        for grid, point, fraction in points
    ]


def seeded(point: ablation.Point, seed: int) -> ablation.Point:
    return replace(point, name=f"{point.name}_seed{seed}", flags={**point.flags, "seed": seed})


def evaluate_point(row: dict, dataset_folder: Path, overwrite: bool) -> dict[str, float]:
    """Test the point's best model on every EVAL_SETS; eval saves each predictions.csv in
    the run folder. {metric: recall}, e.g. test_queries_v2_r1."""
    args = argparse.Namespace(**row["args"])
    args.overwrite = overwrite  # a retrained point replaces its earlier evaluations
    args.resume_model = str(Path(args.run_folder) / runs.BEST_MODEL)
    return evaluate_sets(args, dataset_folder)


def evaluate_sets(args: argparse.Namespace, dataset_folder: Path) -> dict[str, float]:
    recalls = {}
    for subset, queries in cv.EVAL_SETS:
        args.test_set_folder, args.queries_folder = str(dataset_folder / subset), queries
        result = evaluation.run(args).recalls
        recalls |= {cv.metric_name(subset, queries, n): result.get(n) for n in (1, 5)}
    return recalls


def evaluate_untrained(base_argv: list[str], seed: int, dataset_folder: Path, overwrite: bool):
    """The randomly initialised network of `seed` on EVAL_SETS: the floor a point must beat."""
    args = config.parse_arguments([*base_argv, "--seed", str(seed)])
    args.save_dir = f"ablation_{grid_name('untrained')}_seed{seed}"
    args.run_folder = str(runs.runs_folder(args.workspace) / args.save_dir)
    args.overwrite, args.resume_model = overwrite, None
    return {"point": f"untrained_seed{seed}", "base_point": "untrained", "seed": seed,
            **evaluate_sets(args, dataset_folder)}  # fmt: skip


def train_points(
    planned: list[Planned],
    base_argv: list[str],
    dataset_folder: Path,
    rerun: bool,
    after_point=lambda tables, failed: None,
) -> tuple[dict[str, dict[str, dict]], list[str]]:
    """Train and test every planned point, and the untrained network of each seed; a grid's
    table is saved after each point, then after_point(tables, failed) runs (main writes
    claims.json there)."""
    workspace = config.parse_arguments(base_argv).workspace
    grids = {p.grid for p in planned} | {"untrained"}
    tables = {g: ablation.load_results(grid_table(workspace, g)) for g in grids}
    failed = []
    progress = tqdm(planned, desc="claims", unit="training", ncols=100, position=0)
    for item in progress:
        progress.set_postfix_str(f"{item.grid} {item.point.name}")
        untrained = tables["untrained"]
        if f"untrained_seed{item.seed}" not in untrained or rerun and item is planned[0]:
            row = evaluate_untrained(base_argv, item.seed, dataset_folder, rerun)
            untrained[row["point"]] = row
            ablation.save_results(untrained, grid_table(workspace, "untrained"))
        rows = tables[item.grid]
        done = rows.get(item.point.name)
        if done and not rerun and done.get(cv.METRICS[0]) is not None:
            log.info("claims: %s %s already recorded, skipped", item.grid, item.point.name)
            continue
        cpu_start = cpu_seconds()
        try:
            row = ablation.run_point(
                grid_name(item.grid), item.point, base_argv, item.fraction, rerun
            )
            recalls = evaluate_point(row, dataset_folder, rerun)
        except (SystemExit, UserError, ValueError) as error:  # a point the data cannot hold
            log.error("claims: %s %s failed: %s", item.grid, item.point.name, error)
            failed.append(f"{item.grid}/{item.point.name}: {error}")
            after_point(tables, failed)
            continue
        row.update(recalls, base_point=item.base, seed=item.seed)
        row.update(cpu_seconds=cpu_seconds() - cpu_start)
        rows[item.point.name] = row
        ablation.save_results(rows, grid_table(workspace, item.grid))
        after_point(tables, failed)
    return tables, failed


def measure_memory(base: argparse.Namespace, threads: int) -> list[dict]:
    """benchmarks.training_memory's configurations at the claims' batch and image size."""
    root = Path(__file__).resolve().parents[1]
    results = []
    for name in tqdm(MEMORY_CONFIGS, desc="memory", ncols=100):
        command = [
            sys.executable, "-m", "benchmarks.training_memory", "--config", name,
            "--batch_size", str(base.batch_size), "--image_size", str(base.image_size),
            "--fc_output_dim", str(base.fc_output_dim), "--iterations", "2",
            "--threads", str(threads),
        ]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
        if done.returncode:
            raise UserError(f"memory benchmark {name} failed: {done.stderr.strip()[-500:]}")
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return results


def verdicts(tables: dict, memory: list[dict] | None, base) -> dict:
    table5 = cv.by_base(tables.get("table5", {}))
    cosplace = table5.get(COSPLACE_POINT, [])
    claims = tables.get("_claims", [])
    out = {}
    if memory is not None:
        images = cosplace[0]["train_images"] if cosplace else None
        out["memory"] = cv.verdict_memory(memory, images, base.fc_output_dim)
    if "groups" in claims:
        out["groups"] = cv.groups_verdict(table5, COSPLACE_POINT)
    if "dimension" in claims:
        dims = cv.by_base(tables.get("dimension", {}))
        series = [(d, dims.get(f"dim{d}", [])) for d in DIMENSIONS if d != base.fc_output_dim]
        out["dimension"] = cv.series_verdict(
            "dimension", [*series, (base.fc_output_dim, cosplace)], strict=False
        )
    if "train_size" in claims:
        sizes = cv.by_base(tables.get("train_size", {}))
        series = [(f, sizes.get(f"fraction{f:g}", [])) for f in TRAIN_FRACTIONS if f < 1]
        out["train_size"] = cv.series_verdict("train_size", [*series, (1.0, cosplace)], strict=True)
    return out


def print_verdicts(claims: dict) -> None:
    for name, claim in claims["claims"].items():
        print(f"({name}) {claim['metric']}: {claim['verdict']}")
        for row in claim["rows"]:
            print("    " + ", ".join(f"{k}={_short(v)}" for k, v in row.items()))
    print(f"recorded in {claims['path']}")


def _short(value) -> str:
    if isinstance(value, dict) and "mean" in value:
        return f"{value['mean']:.1f}±{value['std']:.1f} ({value['seeds']} seeds)"
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="The paper's claims at a reduced budget; training flags apply to every point",
        allow_abbrev=False,
    )
    parser.add_argument("--dataset_folder", required=True, help="SF-XL layout: train, val, test")
    parser.add_argument("--workspace", default=config.DEFAULT_WORKSPACE)
    parser.add_argument("--claims", nargs="+", choices=CLAIMS, default=list(CLAIMS))
    parser.add_argument("--rerun", action="store_true", help="retrain points already recorded")
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=list(SEEDS), help="each point once per seed"
    )
    parser.add_argument("--memory_threads", type=int, default=min(2, os.cpu_count() or 1))
    return parser


@user_errors
def main(argv: list[str] | None = None) -> dict:
    options, extra = build_parser().parse_known_args(argv)
    root = Path(options.dataset_folder)
    missing = [s for s in ("train", "val", "test") if not (root / s).is_dir()]
    if missing:
        raise UserError(
            f"{root} has no {'/'.join(missing)} folder: point --dataset_folder at an SF-XL "
            "layout (make demo-data builds data/synthetic_demo)"
        )
    base_argv = base_arguments(str(root), options.workspace, extra)
    base = config.parse_arguments(base_argv)
    start, cpu_start = time.perf_counter(), cpu_seconds()
    path = runs.claims_file(options.workspace)
    budget = {k: getattr(base, k) for k in BUDGET} | {"fc_output_dim": base.fc_output_dim}
    budget["seeds"] = options.seeds
    memory = None
    if "memory" in options.claims:  # first: minutes, where the trainings take the hour
        memory = recorded_memory(path, budget) if not options.rerun else None
        memory = memory or measure_memory(base, options.memory_threads)

    def write(tables: dict, failed: list[str]) -> dict:
        claims = {
            "path": str(path),
            "dataset_folder": str(root),
            "evaluated_on": [f"{s}/{q}" for s, q in cv.EVAL_SETS],
            "budget": budget,
            "seconds": time.perf_counter() - start,
            "cpu_seconds": cpu_seconds() - cpu_start,
            "failed": failed,
            "untrained": cv.point_stats(list(tables.get("untrained", {}).values())),
            "claims": verdicts({**tables, "_claims": options.claims}, memory, base),
        }
        files.write_json(path, claims)
        return claims

    planned = plan(options.claims, base, options.seeds)
    tables, failed = train_points(planned, base_argv, root, options.rerun, write)
    claims = write(tables, failed)
    print_verdicts(claims)
    if failed:
        raise UserError(f"{len(failed)} trainings failed ({failed[0]}); fix and run again")
    return claims


def recorded_memory(path: Path, budget: dict) -> list[dict] | None:
    """The memory measured by an earlier run with the same budget, if any."""
    earlier = json.loads(path.read_text()) if path.is_file() else {}
    if earlier.get("budget") != budget:
        return None
    return earlier.get("claims", {}).get("memory", {}).get("rows")


if __name__ == "__main__":
    main()
