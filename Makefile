# Pure-Rust Kafka producer Job and consumer Deployment.
# `make help` lists the targets; each one documents itself with `## text`.

SHELL := /bin/bash
.DEFAULT_GOAL := help
CARGO ?= cargo

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build the workspace (debug)
	$(CARGO) build --workspace

.PHONY: release
release: ## Build both services in release mode for this host
	$(CARGO) build --release -p producer -p consumer

.PHONY: build-static
build-static: ## Build static musl binaries into target/static and check they are static
	scripts/build-static.sh target/static

.PHONY: broker
broker: ## Start the local Apache Kafka broker (KRaft, 4 listeners on 127.0.0.1)
	scripts/kafka-local.sh start

.PHONY: broker-stop
broker-stop: ## Stop the local broker and remove its data
	scripts/kafka-local.sh stop

.PHONY: broker-status
broker-status: ## Is the local broker up?
	scripts/kafka-local.sh status

.PHONY: demo
demo: ## Start a local broker, run the consumer and the producer, show the records flowing
	scripts/demo.sh

.PHONY: test
test: ## Start the broker, run every test tier and the linters, stop the broker
	scripts/test.sh

.PHONY: unit
unit: ## Unit tests only (no broker needed)
	$(CARGO) test --workspace --lib --bins

.PHONY: lint
lint: ## cargo fmt --check, clippy -D warnings, shellcheck
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	@if command -v shellcheck >/dev/null 2>&1; then shellcheck scripts/*.sh .ci/run; else echo "lint: shellcheck not installed (apt-get install -y shellcheck)" >&2; exit 1; fi

.PHONY: fmt
fmt: ## Format the code
	$(CARGO) fmt --all

.PHONY: clean
clean: ## Remove build output
	$(CARGO) clean
