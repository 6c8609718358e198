# Set-up and checks. `make test` builds .venv on a fresh machine, then lints and runs the tests.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

WORKSPACE := data
DEMO_CITY := $(WORKSPACE)/synthetic_demo
DEMO_IMAGE_SIZE := 96

# The shipped demo model (models/demo/): the same network and groups at about 12x the budget
# (32 epochs of 350 iterations), with stronger augmentation for the photos of other domains
# (grey, blurred, hazy, dark). `make demo-train` trains it in WORKSPACE/runs/demo_train
# (resumable: an interrupted run goes on from its last checkpoint); `make demo-release` then
# evaluates it and writes the weights and their record into models/demo/.
RELEASE_TRAIN_FLAGS := --image_size $(DEMO_IMAGE_SIZE) --resize_test_imgs --batch_size 32 \
	--groups_num 16 --group_order size --epochs_num 32 --iterations_per_epoch 350 \
	--train_all_layers --lr 0.001 --lr_schedule cosine \
	--brightness 0.5 --contrast 0.5 --saturation 0.5 --hue 0.1 --random_resized_crop 0.3 \
	--grayscale 0.15 --blur 0.2 --weather 0.4 --device cpu --num_workers 0 --infer_batch_size 64

.PHONY: chromium install lint format test test-slow bench demo demo-data demo-model demo-eval demo-index demo-app \
	demo-train demo-release

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

test: lint chromium
	$(PY) -m pytest

# The browser test (tests/test_browser.py) drives Debian's chromium with Playwright;
# Playwright's own browser builds cannot be downloaded here.
chromium:
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)

test-slow: install
	$(PY) -m pytest -m slow

bench: install demo-data
	$(PY) -m benchmarks.exact_search
	$(PY) -m benchmarks.fast_index
	$(PY) -m benchmarks.descriptor_extraction
	$(PY) -m benchmarks.training_memory
	$(PY) -m benchmarks.training_throughput
	$(PY) -m benchmarks.training_progress
	$(PY) -m benchmarks.city_scale

# `make demo`: install, build and catalog the synthetic city, install the shipped demo model,
# evaluate it on both query sets (recorded in the catalog), build its retrieval index, start the app. Each step
# leaves a file that make checks, so a second `make demo` skips to the app.
DEMO_RUN := $(WORKSPACE)/runs/demo
DEMO_MODEL := $(DEMO_RUN)/summary.json
DEMO_EVALS := $(DEMO_RUN)/eval_test_queries_v1/results.json $(DEMO_RUN)/eval_test_queries_v2/results.json
DEMO_INDEX := $(DEMO_RUN)/index/index.faiss
DEMO_INFER_FLAGS := --resize_test_imgs --image_size $(DEMO_IMAGE_SIZE) --infer_batch_size 64 --device cpu \
	--num_workers 0
APP_PORT ?= 8501
# The renders are independent: one process per core.
RENDER_WORKERS ?= $(shell nproc 2>/dev/null || echo 1)

# The synthetic city is written last to metadata.json, so its presence means a whole build.
$(DEMO_CITY)/metadata.json: | $(STAMP)
	$(PY) -m data_catalog.synthetic --preset demo --seed 0 --out $(DEMO_CITY) --overwrite \
		--workers $(RENDER_WORKERS)
	$(PY) -m data_catalog.ingest $(DEMO_CITY) --db $(WORKSPACE)/catalog.duckdb

demo-data: $(DEMO_CITY)/metadata.json

# The shipped model (models/demo/, made by `make demo-release`) goes into the demo's run folder
# once its sha256 and the rendered city's checksum match its record. A run folder that holds
# another model is kept: DEMO_OVERWRITE=--overwrite replaces it.
DEMO_RELEASE := models/demo
DEMO_OVERWRITE ?=
$(DEMO_MODEL): $(DEMO_CITY)/metadata.json $(DEMO_RELEASE)/record.json $(DEMO_RELEASE)/demo_model.pth
	$(PY) -m training.release install --run_dir $(DEMO_RUN) --out $(DEMO_RELEASE) \
		--dataset_folder $(DEMO_CITY) --workspace $(WORKSPACE) $(DEMO_OVERWRITE)

demo-model: $(DEMO_MODEL)

# The shipped model's recipe (RELEASE_TRAIN_FLAGS), trained on train/ and validated on val/:
# test/ is evaluated once, by demo-release.
DEMO_TRAIN_RUN := $(WORKSPACE)/runs/demo_train
$(DEMO_TRAIN_RUN)/summary.json: | $(DEMO_CITY)/metadata.json
	$(PY) -m training.train --train_set_folder $(DEMO_CITY)/train --val_set_folder $(DEMO_CITY)/val \
		$(RELEASE_TRAIN_FLAGS) --workspace $(WORKSPACE) --save_dir demo_train \
		$$(if [ -f $(DEMO_TRAIN_RUN)/last_checkpoint.pth ]; then \
		echo --resume_train $(DEMO_TRAIN_RUN)/last_checkpoint.pth; fi)

# Trains the recipe (resuming an interrupted run), then prints its val curve beside the record's.
demo-train: $(DEMO_TRAIN_RUN)/summary.json
	$(PY) -m training.release compare --run_dir $(DEMO_TRAIN_RUN) --out $(DEMO_RELEASE)

# Evaluates the trained run's fp16 weights on val and test (once), then writes them and their
# record into models/demo/; RELEASE_OVERWRITE=--overwrite replaces a release already there.
RELEASE_OVERWRITE ?=
demo-release: $(DEMO_TRAIN_RUN)/summary.json
	$(PY) -m training.release export --run_dir $(DEMO_TRAIN_RUN) --out $(DEMO_RELEASE) \
		--dataset_folder $(DEMO_CITY) --workspace $(WORKSPACE) $(RELEASE_OVERWRITE)

# The queries_v1 evaluation also saves the app's index from the database descriptors it has
# extracted (--build_index); the index rule rebuilds it alone if it has gone missing.
$(DEMO_RUN)/eval_test_queries_v1/results.json: EVAL_EXTRA := --build_index
$(DEMO_RUN)/eval_test_%/results.json: $(DEMO_MODEL)
	$(PY) -m training.eval --test_set_folder $(DEMO_CITY)/test --queries_folder $* \
		--resume_model $(DEMO_RUN)/best_model.pth --backbone ResNet18 --fc_output_dim 512 \
		$(DEMO_INFER_FLAGS) --num_preds_to_save 5 --workspace $(WORKSPACE) --save_dir demo \
		--overwrite $(EVAL_EXTRA)

demo-eval: $(DEMO_EVALS)

$(DEMO_INDEX): $(DEMO_RUN)/eval_test_queries_v1/results.json
	test -f $@ || $(PY) -m training.build_index --run_dir $(DEMO_RUN) \
		--database_folder $(DEMO_CITY)/test/database $(DEMO_INFER_FLAGS)
	touch $@

demo-index: $(DEMO_INDEX)

demo-app: | $(STAMP)
	@if [ -f app/main.py ]; then \
		echo "CosPlace Explorer on http://localhost:$(APP_PORT) (Ctrl-C stops it)"; \
		$(VENV)/bin/streamlit run app/main.py --server.port $(APP_PORT) \
			--server.headless true -- --workspace $(WORKSPACE); \
	else \
		echo "app/main.py is not in this checkout yet: the model, results and index are ready" \
			"in $(DEMO_RUN)"; \
	fi

demo: demo-eval demo-index
	$(MAKE) --no-print-directory demo-app
