"""R@1 of a model on synthetic photo queries, split by the photo's domain (day, night, fog...).

    python -m benchmarks.recall_by_domain --dataset_folder data/synthetic_demo \
        --resume_model data/runs/demo/best_model.pth [--split val] [--image_size 96]

The domain of each photo is not in its file name: it is replayed from the generator's plan
(preset and seed from the dataset's metadata.json). Tuning looks at --split val only.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

from benchmarks.table import print_table
from core.errors import UserError, user_errors
from core.model import model_from_checkpoint
from data_catalog.synthetic.domains import condition_label, photo_conditions
from training import distributed
from training.data import load_test_set
from training.eval import evaluate


def photo_domains(dataset_folder: Path, folder: str) -> dict[str, str]:
    """File name -> domain ("night", "fog", ...; "+grey" when the camera was grey)."""
    conditions = photo_conditions(dataset_folder, folder)
    if conditions is None:
        raise UserError(f"{dataset_folder} is not the synthetic city: its photos have no domain")
    return {name: condition_label(condition) for name, condition in conditions.items()}


@user_errors
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset_folder", type=Path, required=True)
    parser.add_argument("--resume_model", required=True)
    parser.add_argument("--split", choices=["val", "test"], default="val")
    parser.add_argument("--image_size", type=int, default=96, help="shorter side, as in eval")
    args = parser.parse_args(argv)
    domains = photo_domains(args.dataset_folder, f"{args.split}/queries_v1")
    test_set = load_test_set(args.dataset_folder / args.split, "queries_v1")
    model = model_from_checkpoint(args.resume_model)
    result = evaluate(distributed.setup("cpu"), model, test_set, 64, True, args.image_size)
    hits: dict[str, list[bool]] = defaultdict(list)
    for row, path in enumerate(result.test_set.queries_paths):
        domain = domains[Path(path).name]
        hit = bool(result.predictions[row, 0] in set(result.positives[row]))
        hits[domain.split("+")[0]].append(hit)
        if domain.endswith("+grey"):
            hits["(grey camera, any domain)"].append(hit)
    rows = [(d, len(v), 100 * sum(v) / len(v)) for d, v in sorted(hits.items())]
    rows.append(("all", len(result.test_set.queries_paths), result.recalls[1]))
    print_table(["domain", "photos", "R@1"], rows)


if __name__ == "__main__":
    main()
