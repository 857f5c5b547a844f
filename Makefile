# OrderFlow developer entry points (run `make help`).
# Local services need no Docker: `make infra-up` starts PostgreSQL 15, Apache Kafka 4 (KRaft)
# and an OpenSSH SFTP server on 127.0.0.1 and writes $(INFRA_DIR)/endpoints.env.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed
INFRA_DIR := $(if $(ORDERFLOW_INFRA_DIR),$(ORDERFLOW_INFRA_DIR),$(CURDIR)/.infra)
ENDPOINTS := $(INFRA_DIR)/endpoints.env
PYTEST_ARGS ?=
# Where `make demo` exports to: dropzone (SFTP) or tryton (a local Tryton ERP).
ERP ?= dropzone

# Run a command with the endpoints of `make infra-up` exported.
WITH_ENDPOINTS = set -a && source "$(ENDPOINTS)" && set +a &&

.PHONY: help venv deps-system infra-up infra-down infra-status infra-clean migrate test lint demo demo-sync \
	bench bench-quick bench-readme profile-relay chaos chaos-quick

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-13s %s\n", $$1, $$2}'

venv: $(STAMP) ## create .venv and install the project with dev extras (pinned)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@touch $@

deps-system: ## install Debian packages postgresql, openssh-server (and java, maven) if missing
	@bash infra/deps_system.sh

infra-up: venv deps-system ## start (or reuse) local PostgreSQL, Kafka and SFTP
	$(PY) -m infra up

infra-down: ## stop the local services
	@if [ -x $(PY) ]; then $(PY) -m infra down; else python3 -m infra down; fi

infra-status: ## show the local services
	@if [ -x $(PY) ]; then $(PY) -m infra status; else python3 -m infra status; fi

infra-clean: infra-down ## stop the local services and delete their state (data, keys, logs)
	rm -rf "$(INFRA_DIR)"

migrate: venv ## apply database migrations (to DATABASE_URL, else the local PostgreSQL)
	@if [ -z "$${DATABASE_URL:-}" ] && [ -f "$(ENDPOINTS)" ]; then set -a; source "$(ENDPOINTS)"; set +a; fi; \
	$(PY) -m entrypoints.cli db upgrade

test: venv deps-system infra-up ## run the whole test suite against the local services
	@set -a; source "$(ENDPOINTS)"; set +a; \
	rc=0; $(PY) -m pytest $(PYTEST_ARGS) || rc=$$?; \
	if [ "$$rc" -eq 5 ]; then echo "make test: pytest ran no tests (exit 5): failing" >&2; exit 1; fi; \
	exit $$rc

lint: venv ## ruff (lint and format) + mypy --strict + the import contracts (layers)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(VENV)/bin/lint-imports

demo: venv deps-system infra-up ## the pipeline end to end: approvals -> relay -> Kafka -> worker -> ERP (ERP=dropzone|tryton, DEMO_ORDERS=N, DEMO_ARGS="--rate R")
	$(WITH_ENDPOINTS) $(PY) -m entrypoints.demo --erp $(ERP) $(DEMO_ARGS)

demo-sync: venv deps-system infra-up ## the connector framework without Kafka (PushOrchestrator, DEMO_ORDERS=N)
	$(WITH_ENDPOINTS) $(PY) -m entrypoints.sync_demo $(DEMO_ARGS)

$(BENCH_STAMP): $(STAMP) pyproject.toml constraints.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,bench]'
	@touch $@

BENCH_ARGS ?=

bench: $(BENCH_STAMP) deps-system infra-up ## benchmarks of issue 6, full size (bench/results/summary.json, plots, README table)
	$(WITH_ENDPOINTS) $(PY) -m bench --mode full --command "make bench" --update-readme $(BENCH_ARGS)

bench-quick: $(BENCH_STAMP) deps-system infra-up ## the same benchmarks, smaller (under 5 minutes)
	$(WITH_ENDPOINTS) $(PY) -m bench --mode quick --command "make bench-quick" --update-readme $(BENCH_ARGS)

bench-readme: venv ## print the Benchmarks table of bench/results/summary.json and write it into README.md
	$(PY) -m bench.readme_table --update-readme

PROFILE_EVENTS ?= 100000

profile-relay: $(BENCH_STAMP) deps-system infra-up ## py-spy flame graph of the relay draining PROFILE_EVENTS events (bench/results/profile-relay.svg)
	$(WITH_ENDPOINTS) $(PY) -m bench.profile_relay --events $(PROFILE_EVENTS)

chaos: venv deps-system ## 10,000 orders through the real pipeline under kills and outages (own infra in .infra-chaos/; CHAOS_ARGS="--seed S")
	$(PY) -m chaos $(CHAOS_ARGS)

chaos-quick: venv deps-system ## the chaos harness with 2,000 orders, under 10 minutes (CI runs it)
	$(PY) -m chaos --quick $(CHAOS_ARGS)
