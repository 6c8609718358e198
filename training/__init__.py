"""Command lines that make models and results: train, eval, build_index, ablation, claims,
release.

train's parts: run_folder (refuse, overwrite, resume), checkpoints, schedule (lr and
precision), unreadable (skipped images), validation; shared: config (the one parser), data
(datasets from SF-XL folders), distributed. ablation's link_subset makes every subset folder
(train-size points, the claims' small val). release ships the demo model and the claims'
records, each with its provenance (commit, machine, when). baselines/ holds the triplet
baseline.
"""
