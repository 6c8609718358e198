"""Command lines that make models and results: train, eval, build_index, ablation, claims.

train's parts: run_folder (refuse, overwrite, resume), checkpoints, schedule (lr and
precision), unreadable (skipped images), validation; shared: config (the one parser), data
(datasets from SF-XL folders), distributed. baselines/ holds the triplet baseline.
"""
