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

.PHONY: help bootstrap images collection lint sanity units system lab lab-image faults molecule test bench ee demo demo-down clean

help:
	@echo "make demo    build everything, bring up a local fleet of Engines and show its health"
	@echo "make test    every test and lint gate (what CI runs)"
	@echo "make images  the reference Engine images only (engine:2.3.0 ... engine:3.0.0)"
	@echo "make ee      the AWX execution environment's build context (build/ee/context, see docs/awx.md)"
	@echo "make bench   the scale benchmarks of issue 11 (not part of make test; BENCH_SIZES=\"20 50 100\")"
	@echo "make faults  the fault matrix of docs/faults.md (CI runs it after make test)"
	@echo "steps: bootstrap collection lint sanity units system lab molecule demo-down clean"

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

# The test kit's own Docker tests (tests/harness/tests/system) run in `make system`, not here.
units: collection
	$(BIN)/pytest tests/unit tests/harness/tests --ignore=tests/harness/tests/system $(PYTEST_ARGS)

# The rollouts (tests/system/rollout: fleets of 4 to 12 Engines, mostly waiting on drains, bakes and health) run in a
# second pytest alongside the other system tests; their fleets use their own ports and names, and the shared Docker
# network is made here so that no fleet's teardown removes it under another. SYSTEM_SERIAL=1: one pytest.
# A group that PYTEST_ARGS (-k ...) leaves without tests is not a failure (pytest exit code 5).
# The test kit's own Docker tests (tests/harness/tests/system: the reference Engine, the fleet, the load generator)
# run with the other system tests.
SYSTEM_LOG := build/system-rollout.log
HARNESS_SYSTEM := tests/harness/tests/system
system: collection
	docker network inspect engine_net >/dev/null 2>&1 || docker network create engine_net >/dev/null
ifeq ($(SYSTEM_SERIAL),1)
	$(BIN)/pytest tests/system $(HARNESS_SYSTEM) --ignore=tests/system/lab --ignore=tests/system/faults $(PYTEST_ARGS)
else
	@mkdir -p build
	@echo "==> tests/system/rollout runs alongside (its output: $(SYSTEM_LOG), shown at the end)"
	@$(BIN)/pytest tests/system/rollout $(PYTEST_ARGS) > $(SYSTEM_LOG) 2>&1 & roll=$$!; \
	  $(BIN)/pytest tests/system $(HARNESS_SYSTEM) --ignore=tests/system/rollout --ignore=tests/system/lab \
	    --ignore=tests/system/faults $(PYTEST_ARGS) 2>&1 | tee build/system-main.log && rest=0 || rest=$$?; \
	  wait $$roll && rollrc=0 || rollrc=$$?; \
	  echo "==> tests/system/rollout (ran alongside), exit $$rollrc:"; cat $(SYSTEM_LOG); \
	  echo "==> make system, by group (exit codes: tests/system $$rest, rollout $$rollrc):"; \
	  for log in build/system-main.log $(SYSTEM_LOG); do echo "$$log: $$(tail -n 1 $$log)"; \
	    grep -E '^(FAILED|ERROR) ' $$log || true; done; \
	  for rc in $$rest $$rollrc; do [ $$rc -eq 0 ] || [ $$rc -eq 5 ] || exit 1; done
endif

# The lab of Docker hosts over SSH (tests/system/lab, tests/harness/lab): two lab hosts, each a container running
# its own dockerd and sshd with Engines of both hosting models inside, plus local Engines; the playbooks reach them
# over SSH as users do. The image is built once (debootstrap, about a minute) and kept while its recipe is unchanged.
lab-image:
	bash tests/harness/bootstrap.sh lab-image

lab: collection lab-image
	docker network inspect engine_net >/dev/null 2>&1 || docker network create engine_net >/dev/null
	$(BIN)/pytest tests/system/lab --ignore=tests/system/lab/test_faults_lab.py $(PYTEST_ARGS)

# The fault matrix of docs/faults.md (tests/system/faults, tests/system/lab/test_faults_lab.py): faults injected on
# real containers and lab hosts (kill -9 at each step, full disks, Docker API errors, a host lost mid-switch, two runs
# at once ...) and bad input, each with what the collection promises afterwards. Four pytest groups side by side (most
# of the time is waiting on drains, bakes and SSH timeouts). CI runs it after `make test`.
FAULTS := tests/system/faults
FAULTS_A := $(FAULTS)/test_bad_input.py $(FAULTS)/test_refused.py $(FAULTS)/test_restore.py \
            $(FAULTS)/test_rollback_playbook.py $(FAULTS)/test_matrix.py
FAULTS_LOG := build/faults
faults: collection lab-image
	docker network inspect engine_net >/dev/null 2>&1 || docker network create engine_net >/dev/null
	@mkdir -p $(FAULTS_LOG)
	@$(BIN)/pytest $(FAULTS)/test_kill.py $(PYTEST_ARGS) > $(FAULTS_LOG)/kill.log 2>&1 & k=$$!; \
	  $(BIN)/pytest tests/system/lab/test_faults_lab.py $(PYTEST_ARGS) > $(FAULTS_LOG)/lab.log 2>&1 & l=$$!; \
	  $(BIN)/pytest $(FAULTS_A) $(PYTEST_ARGS) > $(FAULTS_LOG)/a.log 2>&1 & a=$$!; \
	  $(BIN)/pytest $(FAULTS) --ignore=$(FAULTS)/test_kill.py $(addprefix --ignore=,$(FAULTS_A)) $(PYTEST_ARGS) 2>&1 \
	    | tee $(FAULTS_LOG)/b.log && b=0 || b=$$?; \
	  wait $$k && krc=0 || krc=$$?; wait $$l && lrc=0 || lrc=$$?; wait $$a && arc=0 || arc=$$?; \
	  for g in kill lab a; do echo "==> $(FAULTS_LOG)/$$g.log:"; cat $(FAULTS_LOG)/$$g.log; done; \
	  echo "==> make faults, by group (exit codes: b $$b, kill $$krc, lab $$lrc, a $$arc):"; \
	  for g in b kill lab a; do echo "$$g: $$(tail -n 1 $(FAULTS_LOG)/$$g.log)"; \
	    grep -E '^(FAILED|ERROR) ' $(FAULTS_LOG)/$$g.log || true; done; \
	  for rc in $$b $$krc $$lrc $$arc; do [ $$rc -eq 0 ] || [ $$rc -eq 5 ] || exit 1; done

# The roles' Molecule scenarios (extensions/molecule/: default, rollback, check_mode) on real reference Engines.
molecule: collection
	$(BIN)/molecule test --all

test: bootstrap lint sanity units system lab molecule
	@echo "make test: every gate passed"

# The benchmarks of issue 11 (tests/bench/README.md): figures and ratios measured side by side in one run, next to
# the scale targets, also in build/bench/results.json. Not part of `make test`, asserts no timing; long (about half
# an hour at the default sizes): run it on a quiet machine. BENCH_FORKS overrides min(50, fleet size).
BENCH_SIZES ?= 20 50 100
BENCH_REPEAT ?= 3
BENCH_BRAIN_MB ?= 500
BENCH_ONLY ?= snapshot,rollback,fleet
bench: bootstrap collection
	docker network inspect engine_net >/dev/null 2>&1 || docker network create engine_net >/dev/null
	$(PY) tests/bench/run.py --sizes "$(BENCH_SIZES)" --repeat $(BENCH_REPEAT) --brain-mb $(BENCH_BRAIN_MB) \
	  --only $(BENCH_ONLY) $(if $(BENCH_FORKS),--forks $(BENCH_FORKS))

# The AWX / Tower execution environment (execution-environment.yml): the collection tarball, then the build context.
# Offline: nothing is fetched. Build the image with `docker build -t september-engine-ee build/ee/context`.
EE_DIR := $(ROOT)/build/ee
ee:
	rm -rf $(EE_DIR) && mkdir -p $(EE_DIR)
	$(BIN)/ansible-galaxy collection build --force --output-path $(EE_DIR) $(ROOT)
	mv $(EE_DIR)/september-engine-*.tar.gz $(EE_DIR)/september-engine.tar.gz
	$(BIN)/ansible-builder create -f execution-environment.yml -c $(EE_DIR)/context

DEMO_ENGINES ?= 8
DEMO_FROM ?= 2.3.0
DEMO_TO ?= 2.4.0

# The demo: a fresh local fleet (both hosting models) under load, upgraded canary first by
# playbooks/upgrade.yml, then every acknowledged write looked for, and each Engine's version and health.
# `make demo DEMO_TO=2.4.1` shows the canary failing its health gate and rolling itself back; `DEMO_TO=2.4.2` a
# canary that stays healthy but fails its post-upgrade checks (error rate, latency) and is rolled back.
demo: bootstrap collection
	$(PY) -m engine_testkit demo --name demo --count $(DEMO_ENGINES) --from $(DEMO_FROM) --to $(DEMO_TO)

demo-down:
	$(PY) -m engine_testkit down --name demo

clean:
	-$(PY) -m engine_testkit sweep
	-$(PY) -m engine_testkit.dockerhosts sweep
	rm -rf build tests/output
