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

The default budget (64 px crops, batch 10, 3 epochs of 300 iterations, 9 trainings, and a
validation on a third of the val panoramas and a quarter of its queries, built once as
WORKSPACE/subsets/<city>_claims_val) took 19.4 min on an idle 2-core CPU;
claims.json records the CPU seconds each step took. Any training flag given on the command
line overrides it and applies to every point, e.g. `--iterations_per_epoch 2` for a smoke run.
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
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from core import files
from core.errors import UserError, user_errors
from core.recall import RECALL_VALUES
from data_catalog import runs
from data_catalog.name_table import parse_paths
from training import ablation, config
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
VAL_PANORAMA_STEP = 3
VAL_QUERY_STEP = 4


@dataclass(frozen=True)
class Planned:
    grid: str  # the ablation grid whose point this is
    point: ablation.Point
    fraction: float


def results_file(workspace: str | Path) -> Path:
    return runs.claims_file(workspace)


def grid_name(grid: str) -> str:
    return f"claims_{grid}"


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
    out = Path(workspace) / "subsets" / f"{val_folder.parent.name}_claims_val"
    listing = out / "subset.txt"
    database = sorted(p.name for p in (val_folder / "database").iterdir() if p.is_file())
    queries = sorted(p.name for p in (val_folder / "queries").iterdir() if p.is_file())
    names, rows = parse_paths(database, extra=("pano_id",))
    panorama_of = dict(zip((database[i] for i in rows), names.extra["pano_id"], strict=True))
    kept = set(sorted(set(panorama_of.values()))[::VAL_PANORAMA_STEP])
    chosen = [f"database/{n}" for n in database if panorama_of.get(n) in kept]
    chosen += [f"queries/{n}" for n in queries[::VAL_QUERY_STEP]]
    content = "\n".join(chosen) + "\n"
    if listing.is_file() and listing.read_text() == content:
        return out
    for sub in ("database", "queries"):
        (out / sub).mkdir(parents=True, exist_ok=True)
        for link in (out / sub).iterdir():
            link.unlink()
    for relative in chosen:
        (out / relative).symlink_to((val_folder / relative).resolve())
    files.write_text(listing, content)  # last: a half-built folder is rebuilt next time
    return out


def base_arguments(dataset_folder: str, workspace: str, extra: list[str]) -> list[str]:
    """The budget, then the user's flags (argparse keeps the last). No test set for train:
    each point is evaluated once afterwards, with its predictions saved."""
    root = Path(dataset_folder)
    val = small_val_folder(root / "val", workspace)
    argv = [f"--{k}={v}" for k, v in BUDGET.items()] + list(FLAGS)
    argv += ["--train_set_folder", str(root / "train"), "--val_set_folder", str(val)]
    return [*argv, "--workspace", workspace, *extra]


def plan(claims: list[str], base: argparse.Namespace) -> list[Planned]:
    """The trainings the claims need, each once."""
    table5 = ablation.grid_points("table5", base)
    cosplace = next(p for p in table5 if p.name == COSPLACE_POINT)
    planned = []
    if "groups" in claims or {"dimension", "train_size"} & set(claims):
        chosen = table5 if "groups" in claims else [cosplace]
        planned += [Planned("table5", p, 1.0) for p in chosen]
    if "dimension" in claims:
        dims = [d for d in DIMENSIONS if d != base.fc_output_dim]
        for d in dims:
            point = ablation.Point(f"dim{d}", {**cosplace.flags, "fc_output_dim": d})
            planned.append(Planned("dimension", point, 1.0))
    if "train_size" in claims:
        planned += [
            Planned("train_size", ablation.Point(f"fraction{f:g}", cosplace.flags, f), f)
            for f in TRAIN_FRACTIONS
            if f < 1
        ]
    return planned


def evaluate_point(
    row: dict, test_set_folder: str, queries_folder: str, overwrite: bool
) -> dict[int, float]:
    """Test the point's best model; eval saves predictions.csv in the run folder."""
    args = argparse.Namespace(**row["args"])
    args.overwrite = overwrite  # a retrained point replaces its earlier evaluation
    args.test_set_folder = test_set_folder
    args.queries_folder = queries_folder
    args.resume_model = str(Path(args.run_folder) / runs.BEST_MODEL)
    return evaluation.run(args).recalls


def train_points(
    planned: list[Planned],
    base_argv: list[str],
    test_folder: str,
    queries: str,
    rerun: bool,
    after_point=lambda tables, failed: None,
) -> tuple[dict[str, dict[str, dict]], list[str]]:
    """Train and test every planned point; a grid's table is saved after each point, then
    after_point(tables, failed) runs (main writes claims.json there)."""
    workspace = config.parse_arguments(base_argv).workspace
    tables = {
        grid: ablation.load_results(ablation.results_path(workspace, grid_name(grid)))
        for grid in {p.grid for p in planned}
    }
    failed = []
    progress = tqdm(planned, desc="claims", unit="training", ncols=100, position=0)
    for item in progress:
        progress.set_postfix_str(f"{item.grid} {item.point.name}")
        rows = tables[item.grid]
        done = rows.get(item.point.name)
        if done and not rerun and done.get("test_r1") is not None:
            log.info("claims: %s %s already recorded, skipped", item.grid, item.point.name)
            continue
        cpu_start = cpu_seconds()
        try:
            row = ablation.run_point(
                grid_name(item.grid), item.point, base_argv, item.fraction, rerun
            )
            recalls = evaluate_point(row, test_folder, queries, rerun)
        except (SystemExit, UserError, ValueError) as error:  # a point the data cannot hold
            log.error("claims: %s %s failed: %s", item.grid, item.point.name, error)
            failed.append(f"{item.grid}/{item.point.name}: {error}")
            after_point(tables, failed)
            continue
        row.update({f"test_r{n}": recalls.get(n) for n in RECALL_VALUES})
        row.update(test_queries=queries, cpu_seconds=cpu_seconds() - cpu_start)
        rows[item.point.name] = row
        ablation.save_results(rows, ablation.results_path(workspace, grid_name(item.grid)))
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
            raise SystemExit(f"memory benchmark {name} failed: {done.stderr.strip()[-500:]}")
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return results


def r1_of(row: dict | None, key: str) -> float | None:
    return None if row is None else row.get(key)


def verdict_groups(table5: dict[str, dict]) -> dict:
    """Table 5: CosPlace's row beats every naive partition on val R@1."""
    rows = [
        {"point": name, "val_r1": r.get("val_r1"), "test_r1": r.get("test_r1"),
         "paper_val_r1": r.get("paper_val_r1")}
        for name, r in table5.items()
    ]  # fmt: skip
    cosplace = table5.get(COSPLACE_POINT)
    others = [r["val_r1"] for r in rows if r["point"] != COSPLACE_POINT]
    holds = None
    if cosplace and len(others) == len(ablation.TABLE5) - 1:
        holds = bool(cosplace["val_r1"] > max(others))
    return {"metric": "val R@1", "rows": rows, "holds": holds}


def verdict_memory(measured: list[dict], train_images: int | None, dim: int) -> dict:
    by = {m["config"]: m for m in measured}
    cosplace, triplet = by.get("cosplace"), by.get("triplet_equal_queries")
    holds = None
    if cosplace and triplet:
        holds = bool(cosplace["step_rss_mib"] < triplet["step_rss_mib"])
    cache_mib = None if train_images is None else train_images * dim * 4 / 2**20
    return {
        "metric": "peak RSS rise of a training step, MiB",
        "rows": measured,
        "triplet_cache_mib": cache_mib,
        "holds": holds,
    }


def verdict_series(rows: list[tuple[float, dict | None]], strict: bool) -> dict:
    """Test R@1 rises along the series (strictly, or never falls), x ascending."""
    values = sorted((x, r1_of(r, "test_r1"), r1_of(r, "val_r1")) for x, r in rows)
    known = [(x, t) for x, t, _ in values if t is not None]
    holds = None
    if len(known) == len(rows) and len(rows) > 1:
        ordered = [t for _, t in sorted(known)]
        pairs = list(zip(ordered, ordered[1:], strict=False))
        holds = all(b > a for a, b in pairs) if strict else all(b >= a for a, b in pairs)
    return {
        "metric": "test R@1",
        "rows": [{"x": x, "test_r1": t, "val_r1": v} for x, t, v in values],
        "holds": holds,
    }


def verdicts(tables: dict, memory: list[dict] | None, base) -> dict:
    table5 = tables.get("table5", {})
    cosplace = table5.get(COSPLACE_POINT)
    out = {}
    if memory is not None:
        images = cosplace["train_images"] if cosplace else None
        out["memory"] = verdict_memory(memory, images, base.fc_output_dim)
    if "groups" in tables.get("_claims", []):
        out["groups"] = verdict_groups(table5)
    if "dimension" in tables.get("_claims", []):
        dims = tables.get("dimension", {})
        series = [(d, dims.get(f"dim{d}")) for d in DIMENSIONS if d != base.fc_output_dim]
        out["dimension"] = verdict_series([*series, (base.fc_output_dim, cosplace)], strict=False)
    if "train_size" in tables.get("_claims", []):
        sizes = tables.get("train_size", {})
        series = [(f, sizes.get(f"fraction{f:g}")) for f in TRAIN_FRACTIONS if f < 1]
        out["train_size"] = verdict_series([*series, (1.0, cosplace)], strict=True)
    return out


def save_claims(claims: dict, path: Path) -> None:
    files.write_json(path, claims)


def print_verdicts(claims: dict) -> None:
    for name, claim in claims["claims"].items():
        holds = {True: "holds", False: "does NOT hold", None: "not measured"}[claim["holds"]]
        print(f"({name}) {claim['metric']}: {holds}")
        for row in claim["rows"]:
            print("    " + ", ".join(f"{k}={_short(v)}" for k, v in row.items()))
    print(f"recorded in {claims['path']}")


def _short(value) -> str:
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="The paper's claims at a reduced budget; training flags apply to every point",
        allow_abbrev=False,
    )
    parser.add_argument("--dataset_folder", required=True, help="SF-XL layout: train, val, test")
    parser.add_argument("--workspace", default=config.DEFAULT_WORKSPACE)
    parser.add_argument("--claims", nargs="+", choices=CLAIMS, default=list(CLAIMS))
    parser.add_argument("--queries_folder", default="queries_v1", help="test queries' subfolder")
    parser.add_argument("--rerun", action="store_true", help="retrain points already recorded")
    parser.add_argument("--memory_threads", type=int, default=min(2, os.cpu_count() or 1))
    return parser


@user_errors
def main(argv: list[str] | None = None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
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
    path = results_file(options.workspace)
    budget = {k: getattr(base, k) for k in BUDGET} | {"fc_output_dim": base.fc_output_dim}
    memory = None
    if "memory" in options.claims:  # first: minutes, where the trainings take the hour
        memory = recorded_memory(path, budget) if not options.rerun else None
        memory = memory or measure_memory(base, options.memory_threads)

    def write(tables: dict, failed: list[str]) -> dict:
        claims = {
            "path": str(path),
            "dataset_folder": str(root),
            "queries_folder": options.queries_folder,
            "budget": budget,
            "seconds": time.perf_counter() - start,
            "cpu_seconds": cpu_seconds() - cpu_start,
            "failed": failed,
            "claims": verdicts({**tables, "_claims": options.claims}, memory, base),
        }
        save_claims(claims, path)
        return claims

    planned = plan(options.claims, base)
    tables, failed = train_points(
        planned, base_argv, str(root / "test"), options.queries_folder, options.rerun, write
    )
    claims = write(tables, failed)
    print_verdicts(claims)
    if failed:
        raise SystemExit(f"{len(failed)} trainings failed ({failed[0]}); fix and run again")
    return claims


def recorded_memory(path: Path, budget: dict) -> list[dict] | None:
    """The memory measured by an earlier run with the same budget, if any."""
    earlier = json.loads(path.read_text()) if path.is_file() else {}
    if earlier.get("budget") != budget:
        return None
    return earlier.get("claims", {}).get("memory", {}).get("rows")


if __name__ == "__main__":
    main()
