# VLArena — every target installs what it needs first, so each is a one-command set-up.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
# CPU wheel by default. GPU users: make install TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=
LEROBOT_PYTEST_ARGS ?=  # for the LeRobot environment's run (tests/policies/lerobot)

.DEFAULT_GOAL := help
.PHONY: help install install-lerobot proto run test lint format bench ship ship-eval clean

help: ## Show the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Headless MuJoCo rendering needs EGL and Mesa's drivers (Debian packages).
GL_PACKAGES := libegl1 libgl1-mesa-dri

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	@ldconfig -p | grep -q libEGL.so.1 && ls /usr/lib/*/dri/swrast_dri.so >/dev/null 2>&1 || { \
	  echo "installing $(GL_PACKAGES)"; SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq $(GL_PACKAGES); }
	$(BIN)/pip install --quiet $(TORCH_SPEC)
	$(BIN)/pip install --quiet -e '.[dev]'
	@# The tests drive the websocket server with openpi's own client, unmodified. It pins numpy<2
	@# for openpi's JAX stack; its client code runs on numpy 2, so it is installed without its pins
	@# (msgpack and websockets, all it imports besides numpy, come with vlarena).
	$(BIN)/pip install --quiet --no-deps openpi-client==0.1.2
	touch $@

# The web UI (Vite + TypeScript), built into the package; the arena serves it (no Node at run time).
# Its API types are generated from web/openapi.json, the arena's schema as committed (regenerate
# it with `python -m vlarena.arena.openapi > web/openapi.json`; a test checks it is current).
WEB_BUILD := src/vlarena/arena/web/index.html
WEB_SOURCES := $(shell find web/src -type f -not -name api.gen.ts 2>/dev/null) web/index.html \
  web/vite.config.ts web/tsconfig.json web/openapi.json

web/node_modules/.package-lock.json: web/package-lock.json
	cd web && npm ci --no-audit --no-fund --loglevel=error

$(WEB_BUILD): web/node_modules/.package-lock.json $(WEB_SOURCES)
	cd web && npm run --silent build

# Browser tests drive Debian's chromium (Playwright's own download is not used).
CHROMIUM := /usr/bin/chromium

$(CHROMIUM):
	SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium

install: $(VENV)/.installed $(WEB_BUILD) ## Create .venv, install vlarena and its tools, build the web UI (idempotent)

# LeRobot checkpoints are served from a second environment: lerobot 0.6 needs Python >= 3.12 and
# torch < 2.12, the main one runs Python 3.11 and torch 2.13. `.venv-lerobot/bin/vlarena serve`
# loads them; the rest of the stack reaches that server over gRPC (docs/design/lerobot.md).
# PyPI's torch < 2.12 for Linux is a CUDA build: about 5 GB on disk, a few minutes to install.
LEROBOT_VENV ?= .venv-lerobot
# The first Python 3.12 that runs (pyenv's shim for an uninstalled version does not).
LEROBOT_PYTHON ?= $(firstword $(foreach p,$(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12) \
  $(shell command -v python3.12),$(shell $(p) -c 'import sys, venv, ensurepip; \
  assert sys.version_info[:2] == (3, 12)' >/dev/null 2>&1 && echo $(p))))
LEROBOT_SPEC ?= lerobot[smolvla,pi,diffusion]==0.6.1

$(LEROBOT_VENV)/.installed: pyproject.toml | $(VENV)/.installed
	@test -n "$(LEROBOT_PYTHON)" || { echo "install-lerobot needs Python 3.12: set LEROBOT_PYTHON"; exit 1; }
	$(LEROBOT_PYTHON) -m venv $(LEROBOT_VENV)
	$(LEROBOT_VENV)/bin/pip install --quiet --upgrade pip
	$(LEROBOT_VENV)/bin/pip install --quiet -e . '$(LEROBOT_SPEC)' 'pytest>=8,<10' \
	  'pytest-timeout>=2.3,<3' 'pytest-asyncio>=0.23,<2'
	touch $@

install-lerobot: $(LEROBOT_VENV)/.installed ## Create .venv-lerobot (Python 3.12, LeRobot) to serve LeRobot checkpoints

PROTOS := $(wildcard proto/vlarena/*/v1/*.proto)

proto: install ## Regenerate the gRPC stubs under src/ from proto/ (committed, so rarely needed)
	PATH=$(BIN):$$PATH $(BIN)/python -m grpc_tools.protoc -Iproto --python_out=src \
	  --grpc_python_out=src --mypy_out=src --mypy_grpc_out=src $(PROTOS)

run: install ## Start the whole stack on 127.0.0.1: arena + web UI on :8000 (Ctrl-C stops it)
	$(BIN)/vlarena up

lint: install ## ruff (format + lint) and mypy
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

format: install ## Apply ruff formatting and fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: install install-lerobot lint $(CHROMIUM) ## Lint, then run the whole test suite (Python, TypeScript, browser, LeRobot)
	cd web && npm test --silent
	VLA_LEROBOT_PYTHON=$(LEROBOT_VENV)/bin/python $(BIN)/pytest $(PYTEST_ARGS)
	VLA_LEROBOT_PYTHON=$(LEROBOT_VENV)/bin/python $(LEROBOT_VENV)/bin/pytest tests/policies/lerobot \
	  $(LEROBOT_PYTEST_ARGS)

bench: install install-lerobot ## Run the benchmarks and write docs/benchmarks.md
	VLA_LEROBOT_PYTHON=$(LEROBOT_VENV)/bin/python $(BIN)/python -m benchmarks

# The pipeline behind the shipped checkpoints (docs/models.md): 76 minutes measured on two fast
# CPU cores (about 74 alone), then 9 (here) to 25 minutes of evaluation (make ship-eval).
# Stage times: times.txt.
# The flow model learns from the expert's demonstrations, then in two DAgger rounds it drives
# and the expert's takeovers from the states it reached are added to the data (docs/training.md);
# the AR head learns on that trunk and all of the data. A last round for each model rolls out as
# it is deployed (asked every step, chunks ensembled), on the demonstrations plus its takeovers.
SHIP_DATA ?= data/demos
SHIP_RUNS ?= runs/ship
SHIP_TASKS := touch,push_left,push_right,lift,lift,stack,stack,next_to,next_to,bin,bin
DAGGER_TASKS := push_left,push_right,lift,stack,stack,stack,next_to,next_to,bin
LAST_DAGGER_TASKS := push_left,push_right,lift,stack,stack,stack,stack,next_to,next_to,bin
AR_DAGGER_TASKS := push_left,push_right,lift,stack,stack,stack,next_to,next_to,bin
SHIPPED := src/vlarena/policies/checkpoints
SHIP_EVAL := $(BIN)/vlarena eval --episodes 50
TIMED = start=$$(date +%s) && $(2) && echo "$(1) $$(( $$(date +%s) - start )) s" >> $(SHIP_RUNS)/times.txt
# Round $(1): the flow checkpoint $(2) drives on data $(3); writes $(SHIP_DATA)-dagger$(1) and
# trains $(SHIP_RUNS)/dagger$(1) from $(2) on it.
DAGGER_ROUND = $(call TIMED,dagger$(1),$(BIN)/vlarena dagger $(3) $(SHIP_DATA)-dagger$(1) \
	  --model $(2) --seed $$(( 400000 + 100000 * $(1) )) --episodes 300 --takeovers 3 --tasks $(DAGGER_TASKS)) && \
	$(call TIMED,flow-dagger$(1),$(BIN)/vlarena train $(SHIP_DATA)-dagger$(1) \
	  $(SHIP_RUNS)/dagger$(1) --recipe ship-dagger --family vla-flow --init $(2) --name vla-flow-small)

ship: install ## Regenerate the shipped checkpoints: datagen, both families, eval, docs/models.md
	rm -rf $(SHIP_DATA) $(SHIP_DATA)-dagger* $(SHIP_RUNS) && mkdir -p $(SHIP_RUNS)
	$(call TIMED,datagen,$(BIN)/vlarena datagen $(SHIP_DATA) --episodes 2750 --seed 100000 \
	  --image-size 64 --tasks $(SHIP_TASKS))
	$(call TIMED,flow,$(BIN)/vlarena train $(SHIP_DATA) $(SHIP_RUNS)/flow --recipe ship \
	  --family vla-flow --name vla-flow-small)
	$(call DAGGER_ROUND,1,$(SHIP_RUNS)/flow/full/checkpoint,$(SHIP_DATA))
	$(call DAGGER_ROUND,2,$(SHIP_RUNS)/dagger1/full/checkpoint,$(SHIP_DATA)-dagger1)
	rm -rf $(SHIP_DATA)-dagger1
	$(call TIMED,ar,$(BIN)/vlarena train $(SHIP_DATA)-dagger2 $(SHIP_RUNS)/ar --recipe ship-head \
	  --family vla-ar --init $(SHIP_RUNS)/dagger2/full/checkpoint --name vla-ar-small)
	rm -rf $(SHIP_DATA)-dagger2
	$(call TIMED,dagger3,$(BIN)/vlarena dagger $(SHIP_DATA) $(SHIP_DATA)-dagger3 \
	  --model $(SHIP_RUNS)/dagger2/full/checkpoint --seed 700000 --episodes 300 --takeovers 3 \
	  --horizon 1 --ensemble --tasks $(LAST_DAGGER_TASKS))
	$(call TIMED,flow-dagger3,$(BIN)/vlarena train $(SHIP_DATA)-dagger3 $(SHIP_RUNS)/dagger3 \
	  --recipe ship-dagger-ensembled --family vla-flow --init $(SHIP_RUNS)/dagger2/full/checkpoint \
	  --name vla-flow-small)
	rm -rf $(SHIP_DATA)-dagger3
	$(call TIMED,dagger-ar,$(BIN)/vlarena dagger $(SHIP_DATA) $(SHIP_DATA)-dagger-ar \
	  --model $(SHIP_RUNS)/ar/expert/checkpoint --seed 800000 --episodes 300 --takeovers 3 \
	  --horizon 1 --ensemble --tasks $(AR_DAGGER_TASKS))
	$(call TIMED,ar-dagger,$(BIN)/vlarena train $(SHIP_DATA)-dagger-ar $(SHIP_RUNS)/ar-dagger \
	  --recipe ship-head-dagger --family vla-ar --init $(SHIP_RUNS)/ar/expert/checkpoint \
	  --name vla-ar-small)
	rm -rf $(SHIP_DATA)-dagger-ar $(SHIPPED)/vla-flow-small $(SHIPPED)/vla-ar-small
	cp -r $(SHIP_RUNS)/dagger3/full/checkpoint $(SHIPPED)/vla-flow-small
	cp -r $(SHIP_RUNS)/ar-dagger/expert/checkpoint $(SHIPPED)/vla-ar-small
	$(MAKE) ship-eval

# The shipped checkpoints' scores (the evaluation's default execution: the model is asked every
# step and each step runs the mean of the chunks that predict it), written to docs/models.md with
# the training times and loss plots of the make ship run in $(SHIP_RUNS) (it needs times.txt).
ship-eval: install ## Evaluate the shipped checkpoints and regenerate docs/models.md
	for w in trained held-out; do for m in vla-flow-small vla-ar-small; do \
	  $(SHIP_EVAL) --model $$m --wordings $$w --out $(SHIP_RUNS)/eval/$$m-$$w || exit 1; done; done
	$(SHIP_EVAL) --model vla-flow-small --feature-reuse 3 \
	  --out $(SHIP_RUNS)/eval/vla-flow-small-reuse
	$(SHIP_EVAL) --model scripted-expert --out $(SHIP_RUNS)/eval/scripted-expert-trained
	$(BIN)/vlarena eval --episodes 10 --model vla-flow:film --out $(SHIP_RUNS)/eval/random-trained
	$(BIN)/python -m vlarena.evaluation.models_doc $(SHIP_RUNS) docs

clean: ## Remove the virtualenv and caches
	rm -rf $(VENV) $(LEROBOT_VENV) .pytest_cache .mypy_cache .ruff_cache build dist src/*.egg-info \
	  web/node_modules src/vlarena/arena/web test-artifacts
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
