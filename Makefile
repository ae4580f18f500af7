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
build-static: ## Static musl binaries for this host's CPU into target/static, checked with file (ARCH=arm64|amd64: another CPU, into target/static-ARCH)
	scripts/build-static.sh $(if $(ARCH),--arch $(ARCH) target/static-$(ARCH),target/static)

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
test: ## Install what is missing, start the broker, run every test tier and the linters, stop the broker
	scripts/test.sh

.PHONY: install-tools
install-tools: ## Install what make test needs (Debian packages as root or with sudo, Python tools, zig); a no-op when present
	scripts/install-tools.sh

.PHONY: unit
unit: ## Unit tests only (no broker needed), the vendored rskafka's included
	$(CARGO) test --workspace --lib --bins
	$(CARGO) test --manifest-path vendor/rskafka/Cargo.toml --lib --target-dir target/rskafka \
		-- --exact --skip client::consumer::tests::test_consumer

.PHONY: lint
lint: ## cargo fmt --check, clippy -D warnings, cargo machete (unused dependencies), shellcheck (and POSIX sh for what macOS runs), cargo deny
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p e2e --test cluster -- -D warnings # test = false: not in --all-targets
	@command -v cargo-machete >/dev/null 2>&1 || { echo "lint: cargo-machete not installed: scripts/install-tools.sh (make install-tools)" >&2; exit 1; }
	$(CARGO) machete
	@command -v shellcheck >/dev/null 2>&1 || { echo "lint: shellcheck not installed: scripts/install-tools.sh (make install-tools)" >&2; exit 1; }
	shellcheck scripts/*.sh .ci/run
	shellcheck --shell=sh scripts/deploy.sh scripts/lib.sh
	scripts/deny.sh

.PHONY: deny
deny: ## cargo deny: licenses, bans, sources; advisories where the RustSec database could be fetched (deny.toml)
	scripts/deny.sh

.PHONY: fmt
fmt: ## Format the code
	$(CARGO) fmt --all

.PHONY: clean
clean: ## Remove the kind cluster and the registry deploy.sh created (when kind and docker exist), stop the local broker, remove build output
	@if command -v kind >/dev/null 2>&1 && command -v docker >/dev/null 2>&1; then \
		scripts/deploy.sh clean || echo "clean: could not remove the kind cluster/registry (is Docker running?)"; \
	else \
		echo "clean: kind or docker not installed: no cluster to remove"; \
	fi
	-scripts/kafka-local.sh stop
	-scripts/kafka-cluster.sh stop
	$(CARGO) clean

# --- Containers and Kubernetes (issue 5) ---
# The kind targets need Docker 23+ with buildx, kind 0.28+ and kubectl 1.27+;
# scripts/deploy.sh says in one line what is missing or too old. MESSAGES=N
# sets the producer Job's record count; PLATFORMS=linux/amd64,linux/arm64
# builds both architectures (default: the Docker host's).
TOOLS_DIR ?= $(HOME)/.cache/kind-kafka-rs

.PHONY: cluster
cluster: ## kind cluster (control plane + 2 workers) and a local registry on 127.0.0.1:5001
	scripts/deploy.sh cluster

.PHONY: images
images: ## docker buildx build both images for the Docker host's platform (PLATFORMS=linux/amd64,linux/arm64 for both); verifies the pinned builder digest
	scripts/deploy.sh images

.PHONY: push
push: ## Push both images to localhost:5001 and record their digests
	scripts/deploy.sh push

.PHONY: kafka
kafka: ## Single-node Apache Kafka (KRaft) on the cluster, wait for the topic
	scripts/deploy.sh kafka

.PHONY: deploy
deploy: ## cluster + images + push + kafka, then the services pinned by digest; runs the producer Job and shows the records
	scripts/deploy.sh deploy

.PHONY: monitoring
monitoring: ## Prometheus (Prometheus Operator) and Grafana on the kind cluster, dashboard and alerts provisioned, the services monitored (after make deploy); prints the port-forwards
	scripts/deploy.sh monitoring

.PHONY: logs
logs: ## Logs of the producer Job and the consumer pods on the cluster
	scripts/deploy.sh logs

.PHONY: undeploy
undeploy: ## Delete the services and Kafka from the cluster (the cluster stays)
	scripts/deploy.sh undeploy

.PHONY: clean-cluster
clean-cluster: ## Delete the kind cluster and the registry deploy.sh created (never one it did not)
	scripts/deploy.sh clean

.PHONY: test-images
test-images: ## The Dockerfiles built for real without Docker (buildah, amd64 + arm64, builder stage on a local stand-in base) -> registry -> runc and qemu against the local broker
	scripts/image-test.sh

.PHONY: deploy-check
deploy-check: ## scripts/deploy.sh's logic (version gates, Secret, registry, port-forward, make monitoring) against stub docker/kind/kubectl, under dash and bash
	scripts/deploy-check.sh

.PHONY: k8s-check
k8s-check: ## Render k8s/ (kustomize), validate the schemas (KEDA and operator CRDs too), checkov + hadolint, compose spec
	scripts/k8s-check.sh

.PHONY: sbom
sbom: ## CycloneDX SBOMs (JSON) of producer, consumer and common into target/sbom
	@command -v cargo-cyclonedx >/dev/null 2>&1 || $(MAKE) --no-print-directory tools
	$(CARGO) cyclonedx --format json --spec-version 1.5 --target x86_64-unknown-linux-musl
	@mkdir -p target/sbom
	@for p in common producer consumer; do mv "$$p/$$p.cdx.json" target/sbom/; done
	@ls -l target/sbom

.PHONY: tools
tools: install-tools ## make install-tools, plus cargo-auditable and cargo-cyclonedx (make sbom) in ~/.cargo/bin
	@command -v cargo-auditable >/dev/null 2>&1 || $(CARGO) install --locked cargo-auditable --version 0.7.7
	@command -v cargo-cyclonedx >/dev/null 2>&1 || $(CARGO) install --locked cargo-cyclonedx --version 0.5.9

# --- Faults (issue 8) ---
.PHONY: test-faults
test-faults: ## Fault tests alone (broker restarts, kill -9, scaling, stuck handler, topic deletion); make test runs them too
	scripts/kafka-local.sh status >/dev/null 2>&1 || scripts/kafka-local.sh start
	$(CARGO) test -p consumer --test faults --test members -- --nocapture

.PHONY: cluster-up cluster-down test-cluster
cluster-up: ## Start the 3-broker KRaft cluster on 127.0.0.1:19191-19193 (RF 3, min.insync.replicas 2) beside the local broker
	scripts/kafka-cluster.sh start

cluster-down: ## Stop the 3-broker cluster and remove its data
	scripts/kafka-cluster.sh stop

test-cluster: ## Faults of the 3-broker cluster under load (kill -9 of a leader and of the coordinator, rolling restart, NOT_ENOUGH_REPLICAS, leader moves); make test runs them too
	scripts/cluster-test.sh

# --- Benchmarks (issue 7) ---
.PHONY: bench bench-smoke bench-rebalance
bench: ## Benchmark vs Kafka's perf tools, librdkafka, kafka-python; writes BENCHMARKS.md + docs/bench/ (~40 min)
	scripts/bench.sh full

bench-smoke: ## The benchmark harness with tiny counts (seconds): every tool runs, no speed asserted
	scripts/bench.sh smoke

bench-rebalance: ## Rebalance pause, ours vs the Java consumer (range, cooperative-sticky, KIP-848); BENCHMARKS.md section (~10 min)
	scripts/bench.sh rebalance

# Conformance vectors of the sticky/cooperative-sticky assignors, computed by
# Kafka's own classes (Java 17+ and Maven, like the broker; no broker needed).
.PHONY: sticky-vectors
sticky-vectors: ## Regenerate group/tests/data/sticky-vectors.jsonl with Kafka's own assignors
	scripts/sticky-vectors.sh

# --- Reliability (issue 8) ---
# Fuzzing needs the nightly toolchain; scripts/fuzz.sh installs cargo-fuzz
# when it is missing. test-load needs the local broker (make broker) and wrk;
# test-network needs root and iproute2 (it runs its own broker in a network
# namespace).
FUZZ_SECONDS ?= 60

.PHONY: fuzz
fuzz: ## Run every cargo-fuzz target for FUZZ_SECONDS (default 60) each; a crash fails
	FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz.sh

.PHONY: test-load
test-load: ## wrk on /metrics, /healthz, /readyz while the consumer drains a backlog: p99 and records/s
	scripts/load-test.sh

.PHONY: soak
soak: ## The continuous canary against the local broker for SECS seconds (default 600): sent/acked/lost/duplicated, latency, RSS
	SECS=$(or $(SECS),600) scripts/soak.sh

.PHONY: test-network
test-network: ## Fault 7: broker in a network namespace, netem delay+loss then a cut; nothing lost
	scripts/netns-fault.sh

# --- Monitoring (issue 6) ---
.PHONY: monitoring-check
monitoring-check: ## Validate k8s/monitoring (promtool, schemas) and that every metric it uses is really exported
	scripts/monitoring-check.sh
