# september.engine: the two commands that matter are `make demo` and `make test` (see README.md).
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

ROOT := $(abspath .)
VENV := $(ROOT)/.venv
BIN := $(VENV)/bin
PY := $(BIN)/python
# ansible finds the collection through this folder: build/collections/ansible_collections/september/engine -> .
COLLECTIONS := $(ROOT)/build/collections
SANITY_TREE := $(ROOT)/build/sanity/ansible_collections/september/engine
export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS)
export PYTHONPATH := $(ROOT)/tests/harness
export PATH := $(BIN):$(PATH)
export ANSIBLE_NOCOLOR := 1
PYTEST_ARGS ?=

.PHONY: help bootstrap images collection lint sanity units system test demo demo-down clean

help:
	@echo "make demo    build everything, bring up a local fleet of Engines and show its health"
	@echo "make test    every test and lint gate (what CI runs)"
	@echo "make images  the reference Engine images only (engine:2.3.0 ... engine:3.0.0)"
	@echo "steps: bootstrap collection lint sanity units system demo-down clean"

bootstrap:
	bash tests/harness/bootstrap.sh all

images:
	bash tests/harness/bootstrap.sh docker base images

collection:
	@mkdir -p $(COLLECTIONS)/ansible_collections/september
	@ln -sfn $(ROOT) $(COLLECTIONS)/ansible_collections/september/engine

lint: collection
	$(BIN)/ruff check .
	$(BIN)/ansible-lint
	$(BIN)/antsibull-changelog lint

# ansible-test needs the collection under ansible_collections/<namespace>/<name>: sanity runs on a
# copy of the files git knows about (tracked, or new and not ignored), in a git repo of its own so
# that ansible-test does not see it as ignored files of this one.
sanity:
	rm -rf $(SANITY_TREE) && mkdir -p $(SANITY_TREE)
	git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t $(SANITY_TREE)
	cd $(SANITY_TREE) && git init -q && git add -A && \
	  $(BIN)/ansible-test sanity --requirements --python 3.11 --color no

units: collection
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

system: collection
	$(BIN)/pytest tests/system $(PYTEST_ARGS)

test: bootstrap lint sanity units system
	@echo "make test: every gate passed"

DEMO_ENGINES ?= 8
DEMO_FROM ?= 2.3.0
DEMO_TO ?= 2.4.0

# The demo: a fresh local fleet (both hosting models) under load, upgraded canary first by
# playbooks/upgrade.yml, then every acknowledged write looked for, and each Engine's version and health.
# `make demo DEMO_TO=2.4.1` shows the canary failing its health gate and rolling itself back.
demo: bootstrap collection
	$(PY) -m engine_testkit demo --name demo --count $(DEMO_ENGINES) --from $(DEMO_FROM) --to $(DEMO_TO)

demo-down:
	$(PY) -m engine_testkit down --name demo

clean:
	-$(PY) -m engine_testkit sweep
	rm -rf build tests/output
