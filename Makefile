# Set-up and checks. `make test` builds .venv on a fresh machine, then lints and runs the tests.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

WORKSPACE := data
DEMO_CITY := $(WORKSPACE)/synthetic_demo
# The demo's model: ResNet-18 from scratch on the synthetic demo city, about 10 minutes on a
# 2-core CPU (no ImageNet weights can be downloaded, hence all layers train, at lr 1e-3).
# num_workers 0: on 2 cores a loader process halves the throughput (66 vs 39 img/s).
DEMO_TRAIN_FLAGS := --image_size 96 --resize_test_imgs --batch_size 32 --groups_num 8 \
	--epochs_num 8 --iterations_per_epoch 150 --train_all_layers --lr 0.001 \
	--device cpu --num_workers 0 --infer_batch_size 64

.PHONY: install lint format test test-slow bench demo-data demo-model

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: lint
	$(PY) -m pytest

test-slow: install
	$(PY) -m pytest -m slow

bench: install
	$(PY) -m benchmarks.exact_search
	$(PY) -m benchmarks.fast_index
	$(PY) -m benchmarks.descriptor_extraction
	$(PY) -m benchmarks.training_memory

# The synthetic city is written last to metadata.json, so its presence means a whole build.
$(DEMO_CITY)/metadata.json: | $(STAMP)
	$(PY) -m data_catalog.synthetic --preset demo --seed 0 --out $(DEMO_CITY) --overwrite
	$(PY) -m data_catalog.ingest $(DEMO_CITY) --db $(WORKSPACE)/catalog.duckdb

demo-data: $(DEMO_CITY)/metadata.json

demo-model: demo-data
	$(PY) -m training.train --dataset_folder $(DEMO_CITY) $(DEMO_TRAIN_FLAGS) \
		--workspace $(WORKSPACE) --save_dir demo
