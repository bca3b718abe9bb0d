# One-command set-up: `make run` (main job on the embedded sample) and `make test` (the suite).
# Every target sets up what it needs first; `make setup` is idempotent.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(BIN):$(PATH)
# No telemetry calls to hubs from this machine.
export DVC_NO_ANALYTICS := 1
export DO_NOT_TRACK := true
export MLFLOW_DISABLE_TELEMETRY := true
export YOLO_OFFLINE := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
# Prefect's database, results cache and settings stay inside the project.
export PREFECT_HOME ?= $(CURDIR)/.prefect
# Prefect's temporary server gets 20 s to start by default; a busy 2-core machine can need more.
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 120

.DEFAULT_GOAL := help
.PHONY: help setup data run realdata report browser qemu flow ui deploy serve serve-model predict labels export deploy-pool worker mlflow-server lint test bench clean

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-13s %s\n", $$1, $$2}'

setup: $(STAMP) ## Create .venv and install the pinned stack (requirements.lock); idempotent

MKL_INTEL_CPU := $(VENV)/lib/cvpipe/libmkl_intel_cpu.so

$(STAMP): pyproject.toml requirements.lock cvpipe/core/mkl_intel_cpu.c
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || \
		{ echo "error: Python 3.11 is required (found $$($(PYTHON) --version)); set PYTHON=/path/to/python3.11"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@# MKL's Intel code path on AMD processors too (cvpipe/core/mkl_intel_cpu.c): the same CPU-trained bytes on both
	mkdir -p $(dir $(MKL_INTEL_CPU)) && $(CC) -shared -fPIC -O2 -o $(MKL_INTEL_CPU).tmp cvpipe/core/mkl_intel_cpu.c \
		&& mv $(MKL_INTEL_CPU).tmp $(MKL_INTEL_CPU) \
		|| echo "warning: no C compiler ($(CC)): on a non-Intel CPU, MKL's own code paths give other trained bytes than dvc.lock's"
	touch $(STAMP)

data: setup ## Generate any missing sample dataset under data/raw and track it with DVC
	$(BIN)/python -m stages.samples --out data/raw
	$(BIN)/dvc add --quiet $$(find data/raw -mindepth 1 -maxdepth 1 -type d | sort)  # folders, not the links of make realdata

run: data ## Main job: `dvc repro` on the embedded sample, then one line per registered model
	$(BIN)/dvc repro
	$(BIN)/python -m stages.summary

realdata: setup ## The pipeline on the real extracts of ../shared/realdata, each its own dataset (params.realdata.yaml), as a Prefect flow
	$(BIN)/python -m flows.pipeline --params params.realdata.yaml
	$(BIN)/python -m stages.summary --params params.realdata.yaml

report: setup ## reports/index.html: every dataset's gate, metrics, pictures, model and history on one offline page
	$(BIN)/python -m stages.report

flow: setup ## The same pipeline as one Prefect flow run (temporary local server unless PREFECT_API_URL is set)
	$(BIN)/python -m flows.pipeline

ui: setup ## MLflow UI and Prefect UI on 127.0.0.1, deployments of params.yaml's schedules registered (Ctrl-C stops)
	$(BIN)/python -m flows.ui

deploy: setup ## Register the deployments of params.yaml's schedules on the Prefect server (PREFECT_API_URL)
	$(BIN)/python -m flows.deploy

serve: setup ## Register and run the scheduled deployments until Ctrl-C (starts a local Prefect server if none)
	$(BIN)/python -m flows.deploy --serve

PORT ?= 5001
serve-model: setup ## Serve model NAME's @champion over HTTP on 127.0.0.1:PORT (5001) until Ctrl-C: NAME=fruits360-classifier
	$(BIN)/python -m cvpipe.mlops.serve $(NAME) --port $(PORT)

predict: setup ## Predict IMAGES (a folder or a glob) with model MODEL (NAME[@ALIAS|/VERSION], default @champion) into predictions/<NAME>
	@test -n "$(MODEL)" -a -n "$(IMAGES)" || { echo "error: set MODEL and IMAGES, e.g. make predict MODEL=coco-detector IMAGES=photos/"; exit 1; }
	$(BIN)/python -m stages.predict --model $(MODEL) --images '$(IMAGES)' --out predictions/$(firstword $(subst @, ,$(subst /, ,$(MODEL))))

labels: setup ## A queue of DATASET's labels most likely wrong, with pictures, into reports/labels/<DATASET> (after make run)
	@test -n "$(DATASET)" || { echo "error: set DATASET, e.g. make labels DATASET=fruits360"; exit 1; }
	@test -d data/validated/$(DATASET) || { echo "error: data/validated/$(DATASET) is missing: run make run (or dvc repro validate@$(DATASET)) first"; exit 1; }
	$(BIN)/python -m stages.labels --dataset $(DATASET) --out reports/labels/$(DATASET)

FORMAT ?= onnx
export: setup ## Export model MODEL (NAME[@ALIAS|/VERSION], default @champion) as FORMAT (onnx|torchscript) to exports/<NAME>-<FORMAT>
	@test -n "$(MODEL)" || { echo "error: set MODEL, e.g. make export MODEL=fruits360-classifier@champion FORMAT=onnx"; exit 1; }
	$(BIN)/python -m stages.export --model $(MODEL) --format $(FORMAT) --out exports/$(firstword $(subst @, ,$(subst /, ,$(MODEL))))-$(FORMAT)

POOL ?= cvpipe
deploy-pool: setup ## The scheduled deployments on the process work pool POOL (prefect.yaml, prefect deploy; PREFECT_API_URL)
	@test -n "$$PREFECT_API_URL" || { echo "error: set PREFECT_API_URL to the team's Prefect server (http://host:4200/api)"; exit 1; }
	$(BIN)/python -m flows.deploy --write-prefect-yaml
	$(BIN)/prefect work-pool inspect $(POOL) >/dev/null 2>&1 || $(BIN)/prefect work-pool create $(POOL) --type process
	$(BIN)/prefect --no-prompt deploy --all --pool $(POOL)

worker: setup ## A worker of the work pool POOL: runs deployment runs in this checkout until Ctrl-C (PREFECT_API_URL)
	@test -n "$$PREFECT_API_URL" || { echo "error: set PREFECT_API_URL to the team's Prefect server (http://host:4200/api)"; exit 1; }
	CVPIPE_PROJECT_DIR=$(CURDIR) $(BIN)/prefect worker start --pool $(POOL) --type process

MLFLOW_HOST ?= 127.0.0.1
MLFLOW_PORT ?= 5000
mlflow-server: setup ## Shared MLflow on MLFLOW_HOST:MLFLOW_PORT (127.0.0.1:5000): PostgreSQL + S3 (ARTIFACTS=s3://bucket/prefix; else a sandbox)
	$(BIN)/python -m flows.mlflow_server --host $(MLFLOW_HOST) --port $(MLFLOW_PORT) $(if $(ARTIFACTS),--artifacts-destination $(ARTIFACTS))

lint: setup ## Ruff over the whole tree (rules in pyproject.toml); must report nothing
	$(BIN)/ruff check .

test: lint browser qemu ## Lint, then run the test suite (slow end-to-end tests included)
	$(BIN)/python -m pytest

browser: ## Headless Chromium for the tests that open the HTML pages (Debian's package; installed when run as root)
	@command -v chromium >/dev/null || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing Debian's chromium for the browser tests"; \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null \
			|| { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; }; \
		else echo "note: no chromium on PATH; the browser tests will be skipped (apt-get install chromium)"; fi; }

qemu: ## QEMU's user-mode x86-64 emulator, for the test that trains on an emulated AMD processor (Debian's qemu-user)
	@command -v qemu-x86_64 >/dev/null || [ "$$(uname -m)" != x86_64 ] || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing Debian's qemu-user for the cross-vendor CPU test"; \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-user >/dev/null \
			|| { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-user >/dev/null; }; \
		else echo "note: no qemu-x86_64 on PATH; the cross-vendor CPU test will be skipped (apt-get install qemu-user)"; fi; }

bench: setup ## Run the benchmarks (each prints ratios against a baseline measured in the same run)
	$(BIN)/python bench/ingest_probe.py
	$(BIN)/python bench/validate.py
	$(BIN)/python bench/convert.py
	$(BIN)/python bench/train.py
	$(BIN)/python bench/detect.py
	$(BIN)/python bench/segment.py
	$(BIN)/python bench/predict.py
	$(BIN)/python bench/scale.py
	$(BIN)/python bench/evidence.py
	$(BIN)/python bench/heldout.py

clean: ## Remove pipeline outputs (not the raw data, the DVC cache or .venv)
	rm -rf data/manifests data/validated data/yolo data/tfrecord reports/validate/*/ models/*/ reports/register
	find reports/evaluate -type f ! -name .gitignore -delete 2>/dev/null || true
