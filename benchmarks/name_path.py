"""From a list of SF-XL names to groups ready for training (and to a test set), at city scale.

Generates SF-XL names (benchmarks.catalog_ingest's street-grid city, ~SF-XL raw's density)
into `train_images_paths.txt` beside an (almost empty) `train/` folder, then times, each in
its own process so that its peak memory is its own (ru_maxrss of that process):
  - ours, first start: `training.data.load_train_set(folder, params, cache_dir)` with an
    empty cache: the bulk parse, the zone check and the partition, then the cache written;
  - ours, second start: the same call again, reading the cache;
  - with --reference PATH (a checkout of github.com/gmberton/CosPlace, never committed
    here): the reference's `TrainDataset.initialize` on the same list, the call alone,
    and a check that its groups are ours, in the same order;
  - `training.data.load_test_set` on a 2.8M-image test database listed in
    `database_images_paths.txt` (SF-XL test's size), with 1,000 listed queries.
Sizes: 1M, 5.6M (SF-XL processed); --raw adds 41.2M (SF-XL raw; a few minutes).
Timings on a shared machine are noisy: compare the rows of one run.

    python -m benchmarks.name_path [--reference /tmp/CosPlace] [--raw] [--keep DIR]
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from benchmarks.catalog_ingest import generate_names, run_measured
from benchmarks.table import print_table, work_folder

SIZES = (1_000_000, 5_600_000)
RAW_SIZE = 41_200_000
TEST_DATABASE_SIZE = 2_800_000
TEST_QUERIES = 1_000


def _make_listed_folder(folder: Path, num_names: int) -> Path:
    """folder/ with folder_images_paths.txt beside it; only the first listed file exists."""
    listing = folder.with_name(folder.name + "_images_paths.txt")
    if not listing.is_file():
        folder.parent.mkdir(parents=True, exist_ok=True)
        generate_names(num_names, listing, prefix="")
    with open(listing) as file:
        first = folder / next(file).rstrip("\n")
    first.parent.mkdir(parents=True, exist_ok=True)
    first.touch()  # both sides check that the first listed image exists
    return folder


_IMPORTS_RSS = "_imported_gb = _resource.getrusage(_resource.RUSAGE_SELF).ru_maxrss / 1e6\n"


def measure_ours(folder: Path, cache: Path) -> dict:
    return run_measured(
        f"""
        import time
        import numpy as np
        from core.partition import PartitionParams
        from training.data import load_train_set
        {_IMPORTS_RSS}
        start = time.perf_counter()
        train = load_train_set({str(folder)!r}, PartitionParams(), {str(cache)!r}, False)
        part = train.partition
        _result = {{"seconds": time.perf_counter() - start, "imported_gb": _imported_gb,
                    "classes": part.num_classes, "entry": str(train.cache_entry),
                    "groups": int((np.diff(part.group_offsets) > 0).sum())}}
        """
    )


def measure_reference(reference: Path, folder: Path, out: Path) -> dict:
    return run_measured(
        f"""
        import sys, time
        sys.path.insert(0, {str(reference)!r})
        from datasets.train_dataset import TrainDataset
        {_IMPORTS_RSS}
        start = time.perf_counter()
        TrainDataset.initialize({str(folder)!r}, 10, 5, 30, 2, 10, {str(out)!r})
        _result = {{"seconds": time.perf_counter() - start, "imported_gb": _imported_gb}}
        """
    )


def compare_with_reference(reference_file: Path, entry: Path) -> dict:
    """Do the reference's groups, in its order, hold the same classes as ours?"""
    return run_measured(
        f"""
        import glob
        import numpy as np
        import torch
        classes_per_group, images_per_class = torch.load({str(reference_file)!r},
                                                          weights_only=False)
        stored = np.load(glob.glob({str(entry)!r} + "/partition-*.npz")[0])
        keys, offsets = stored["class_keys"], stored["group_offsets"]
        ids = keys * np.array([10, 10, 30])
        ours = [set(map(tuple, ids[offsets[g]:offsets[g + 1]].tolist()))
                for g in range(len(offsets) - 1) if offsets[g + 1] > offsets[g]]
        theirs = [set(group) for group in classes_per_group]
        sizes_ok = all(len(images_per_class[c]) == n for c, n in
                       zip(map(tuple, ids.tolist()), stored["class_sizes"].tolist()))
        _result = {{"same_groups_same_order": ours == theirs, "same_class_sizes": sizes_ok,
                    "first8_in_common": sum(a == b for a, b in zip(ours[:8], theirs[:8]))}}
        """
    )


def measure_test_set(folder: Path) -> dict:
    return run_measured(
        f"""
        import time
        from training.data import load_test_set
        {_IMPORTS_RSS}
        start = time.perf_counter()
        test = load_test_set({str(folder)!r}, "queries_v1")
        _result = {{"seconds": time.perf_counter() - start, "imported_gb": _imported_gb,
                    "database": len(test.database_paths)}}
        """
    )


def _row(what: str, names: int, result: dict, extra: str = "") -> list:
    return [
        what,
        f"{names:,}",
        result["seconds"],
        result["cpu_seconds"],
        result["peak_rss_gb"],
        result["imported_gb"],
        f"{result['classes']:,}" if "classes" in result else "",
        extra,
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, help="a checkout of gmberton/CosPlace")
    parser.add_argument("--raw", action="store_true", help=f"also {RAW_SIZE:,} names")
    parser.add_argument("--sizes", type=int, nargs="*", default=list(SIZES))
    parser.add_argument("--keep", type=Path, help="work (and keep the lists) in this folder")
    parser.add_argument("--no_test_set", action="store_true", help="skip the 2.8M test set")
    args = parser.parse_args()
    sizes = [*args.sizes, *([RAW_SIZE] if args.raw else [])]

    with work_folder(args.keep, "name_path_") as work:
        rows, notes = [], []
        for size in sizes:
            start = time.perf_counter()
            folder = _make_listed_folder(work / f"sfxl_{size}" / "train", size)
            print(f"{size:,} names listed in {time.perf_counter() - start:.0f} s", flush=True)
            cache = work / f"cache_{size}"
            shutil.rmtree(cache, ignore_errors=True)  # the first start finds no cache
            cold = measure_ours(folder, cache)
            warm = measure_ours(folder, cache)
            groups = f"{cold['groups']} non-empty groups"
            rows.append(_row("ours, first start (parse + partition)", size, cold, groups))
            rows.append(_row("ours, second start (cache)", size, warm))
            notes.append(
                f"{size:,} names: second start {cold['seconds'] / warm['seconds']:.0f}x faster "
                "than the first"
            )
            if args.reference and size <= SIZES[0]:
                out = work / f"reference_{size}.torch"
                ref = measure_reference(args.reference, folder, out)
                rows.append(_row("reference TrainDataset.initialize", size, ref))
                same = compare_with_reference(out, Path(cold["entry"]))
                notes.append(
                    f"{size:,} names: ours is {ref['seconds'] / cold['seconds']:.1f}x faster "
                    f"than the reference's initialize, at "
                    f"{cold['peak_rss_gb'] / ref['peak_rss_gb']:.2f}x its peak RSS; same "
                    f"groups in the same order: {same['same_groups_same_order']}, same "
                    f"images per class: {same['same_class_sizes']}, first 8 groups in "
                    f"common: {same['first8_in_common']}/8"
                )
        if not args.no_test_set:
            root = work / "sfxl_test" / "test"
            _make_listed_folder(root / "database", TEST_DATABASE_SIZE)
            _make_listed_folder(root / "queries_v1", TEST_QUERIES)
            result = measure_test_set(root)
            rows.append(_row("ours, load_test_set (listed database)", TEST_DATABASE_SIZE, result))
        headers = ["what", "names", "time (s)", "CPU (s)", "peak RSS (GB)", "after imports (GB)"]
        print_table([*headers, "classes", ""], rows)
        for note in notes:
            print(note)


if __name__ == "__main__":
    main()
