# yaowei — the two commands a newcomer types:
#   make run    installs what is missing, builds, starts the three services and runs the main job
#   make test   installs what is missing, builds, runs every test (unit, integration, asan)
# Bazel is the build; this file only installs Debian packages and calls it.

SHELL := /bin/bash
BAZEL ?= bazel
PY ?= /usr/bin/python3

# Everything the build, the tests and the benchmarks need, from Debian 12.
APT_PACKAGES := bazel-bootstrap bazel-rules-java libgrpc-dev libprotobuf-c-dev \
	protobuf-c-compiler libuv1-dev libsqlite3-dev grpc-proto libprotobuf-dev \
	protobuf-compiler python3-grpcio python3-protobuf python3-pytest nghttp2-client \
	sqlite3 gcc g++ make libmicrohttpd-dev libsystemd-dev python3-yaml systemd
# Trust (issue 7): libcrypto checks TLS files and hashes bearer tokens, jansson reads
# --auth-config, the openssl CLI makes the tests' certificates.
APT_PACKAGES += libssl-dev libjansson-dev openssl
# Attribution's cluster mode: the NATS C client, and nats-server for the tests and the
# cluster main job (CLUSTER=1).
APT_PACKAGES += libnats-dev nats-server
# Creator profile and tier scoring on PostgreSQL: libpq for the store's PostgreSQL
# backend (common/store_pg*.c), the server for its tests (tests/integration/pg_server.py)
# and for `make run STORE=postgres`.
APT_PACKAGES += postgresql libpq-dev

# `make run` (tools/demo/run.sh): QUICK=1 a first look in well under a minute; SERVE=1
# keeps the services up after the report (Ctrl-C stops them); CLUSTER=1 runs attribution
# as a cluster (three nats-server and three attribution nodes, the demo's calls spread
# over them); SEED the workload's seed; DEMO_ARGS more flags for the demo
# (bazel-bin/tools/demo/demo --help), e.g.
# DEMO_ARGS='--ctr 0.03,0.03,0.03,0.03 --cvr 0.05,0.05,0.05,0.05'. STORE=postgres runs
# creator profile and tier scoring on a PostgreSQL of the run's own (initdb in a temp dir
# on a free port, one database for both; stopped and removed at the end); without it,
# each on SQLite in its data dir.
SEED ?= 42
DEMO_ARGS ?=

.PHONY: all deps build run test unit integration integration-release asan bench check-deploy clean

all: build

# Installs the Debian packages named in $(1) that are not installed yet (as root, or
# through sudo). Every package the project needs is installed by this file.
define apt_install
	@missing=$$(for p in $(1); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
		echo "installing: $$missing"; \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi
endef

# Installs only what is missing; needs root (or sudo) the first time.
deps:
	$(call apt_install,$(APT_PACKAGES))

build: deps
	$(BAZEL) build //...

# The main job: the three services on free loopback ports with fresh data under a temp
# dir, a realistic workload through their gRPC APIs, the tier report, a clean stop.
run: build
	tools/demo/run.sh --bin-dir $(CURDIR)/bazel-bin $(if $(filter-out 0,$(QUICK)),--quick) \
		$(if $(filter-out 0,$(SERVE)),--serve) $(if $(filter-out 0,$(CLUSTER)),--cluster) \
		$(if $(STORE),--store $(STORE)) -- --seed $(SEED) $(DEMO_ARGS)

unit: deps
	$(BAZEL) test //...

# --durations: the slowest tests of each pass in the log, to keep `make test` within 15 min.
# `make integration`: the whole suite against the release binaries (`make test` runs it
# under the sanitizers, then only the tests marked `release` here: integration-release).
# INTEGRATION_STORES: the stores of the store-parametrized suites (creator profile, tier
# scoring, page tokens) in a release pass; the sanitizer pass runs them on both.
# `make integration INTEGRATION_STORES=sqlite,postgres` runs everything.
# `make integration-release`, `make test`'s release pass: the same with only the tests
# marked `release` (tests/integration/conftest.py, RELEASE_PASS, says which and why); the
# sanitizer pass before it ran every test.
INTEGRATION_STORES ?= sqlite
integration-release: INTEGRATION_SELECT = -m release
integration integration-release: build
	YW_BIN_DIR=$(CURDIR)/bazel-bin YW_TEST_STORES=$(INTEGRATION_STORES) $(PY) -m pytest -q \
		-p no:cacheprovider --durations=15 $(INTEGRATION_SELECT) tests/integration

# The whole suite under AddressSanitizer and UndefinedBehaviorSanitizer: the unit
# tests, then the integration tests against sanitized binaries (a leak or a UB report
# makes the service exit non-zero at SIGTERM, which the harness asserts). `make test`
# runs it first, so that the normal build that follows leaves release binaries in
# bazel-bin/.
asan: deps
	$(BAZEL) test --config=asan //...
	$(BAZEL) build --config=asan //...
	YW_BIN_DIR=$(CURDIR)/bazel-bin YW_SANITIZED=1 $(PY) -m pytest -q -p no:cacheprovider \
		--durations=15 tests/integration

# Packages only the benchmarks need (`make bench` installs them; `make test` does not):
# the PostgreSQL peer and its client library (in APT_PACKAGES too, kept here so the list
# stays complete), the C++ gRPC peer, h2load.
BENCH_PACKAGES := postgresql libpq-dev libgrpc++-dev protobuf-compiler-grpc nghttp2-client

# Benchmarks (never part of `make test`): every figure of issue 5, medians of 3 runs,
# written to bench/results/ (README "Benchmarks"). `make bench QUICK=1`: 1M exposures
# instead of 10M and shorter runs, a few minutes. CLUSTER=1 adds the attribution cluster
# of issue 14 (README "Running a cluster": 3 nats-server + 2 nodes beside a standalone,
# R3 and R1, failover), CLUSTER=only runs just that (no PostgreSQL, no C++ peer); BATCH=N
# sets the events per RecordExposures call of its rounds (default 1000), PARTITIONS=N the
# clusters' --partitions (default 64).
bench: build
ifneq ($(CLUSTER),only)
	$(call apt_install,$(BENCH_PACKAGES))
	$(BAZEL) build //bench/peer_cpp:get_creator_server //bench:pg_copy_exposures
endif
	$(PY) bench/bench.py $(if $(filter-out 0,$(QUICK)),--quick) \
		$(if $(filter only,$(CLUSTER)),--cluster-only,$(if $(filter-out 0,$(CLUSTER)),--cluster)) \
		$(if $(BATCH),--cluster-batch $(BATCH)) \
		$(if $(PARTITIONS),--cluster-partitions $(PARTITIONS))

# ---- Stress (never part of `make test`) ------------------------------------------------
# `make stress`: the long versions of tests whose short versions `make test` runs.
# stress-flow: attribution's client-stream flow control (tests/integration/
# test_attribution_flow.py) with STRESS_EXPOSURES exposures through one IngestExposures
# stream from a client that never waits, while the disk under --data-dir stalls (needs
# root: a loop mount and fsfreeze); about 2 minutes.
STRESS_EXPOSURES ?= 5000000
STRESS_GROWTH_BOUND_MB ?= 128

.PHONY: stress stress-diff stress-flow

# Both long runs: the differential test with many seeds (below), then the stream flood.
stress: stress-diff stress-flow

stress-flow: build
	YW_BIN_DIR=$(CURDIR)/bazel-bin YW_STREAM_EXPOSURES=$(STRESS_EXPOSURES) \
		YW_STREAM_GROWTH_BOUND_MB=$(STRESS_GROWTH_BOUND_MB) $(PY) -m pytest -q -s \
		-p no:cacheprovider tests/integration/test_attribution_flow.py

# deploy/ without a container engine or a cluster: YAML, flags, kustomize renderings,
# compose, the attribution cluster's files (nats-server -t on the NATS configurations),
# the Containerfiles' shell steps, systemd-analyze verify (tools/check_deploy.py); then
# tests/deploy, which breaks copies of those files and expects the checks to fail.
check-deploy: deps
	$(PY) tools/check_deploy.py
	$(PY) -m pytest -q -p no:cacheprovider tests/deploy

test: check-deploy asan unit integration-release

clean:
	$(BAZEL) clean

# ---- Trust (issue 7): fuzzing and soak -------------------------------------------------
# libFuzzer targets are built with clang outside Bazel (tests/fuzz/build.sh) against the
# protobuf-c code Bazel generates; `make test` runs each for FUZZ_SMOKE_SECONDS, `make
# fuzz` for FUZZ_SECONDS (corpora: tests/fuzz/corpus/<target>/). `make soak` holds each
# service under load for SOAK_SECONDS (tests/integration/test_load.py), then holds the
# big-message and wide-exposure cases of issue 12 as long (test_hostile_memory.py).
FUZZ_PACKAGES := clang libclang-rt-14-dev
FUZZ_OUT ?= /tmp/yaowei-fuzz
FUZZ_SECONDS ?= 60
FUZZ_SMOKE_SECONDS ?= 10
SOAK_SECONDS ?= 180
# `make soak`: how long a small call from another client may wait under the hostile-memory
# load (the requirement is 1 s; on a loaded shared machine pass more).
PROBE_BOUND_S ?= 1.0

.PHONY: fuzz-deps fuzz-build fuzz fuzz-smoke soak

fuzz-deps:
	$(call apt_install,$(FUZZ_PACKAGES))

fuzz-build: deps fuzz-deps
	BAZEL=$(BAZEL) tests/fuzz/build.sh $(FUZZ_OUT)

fuzz: fuzz-build
	YW_FUZZ_OUT=$(FUZZ_OUT) tests/fuzz/run.sh $(FUZZ_SECONDS)

fuzz-smoke: fuzz-build
	YW_FUZZ_OUT=$(FUZZ_OUT) tests/fuzz/run.sh $(FUZZ_SMOKE_SECONDS)

soak: build
	YW_BIN_DIR=$(CURDIR)/bazel-bin YW_LOAD_SECONDS=$(SOAK_SECONDS) $(PY) -m pytest -q -s \
		-p no:cacheprovider tests/integration/test_load.py
	YW_BIN_DIR=$(CURDIR)/bazel-bin YW_HOSTILE_SECONDS=$(SOAK_SECONDS) \
		YW_PROBE_BOUND_S=$(PROBE_BOUND_S) $(PY) -m pytest -q -s \
		-p no:cacheprovider tests/integration/test_hostile_memory.py
	YW_BIN_DIR=$(CURDIR)/bazel-bin YW_FLOOD_SECONDS=$(SOAK_SECONDS) $(PY) -m pytest -q -s \
		-p no:cacheprovider tests/integration/test_flood.py -k again_and_again

test: fuzz-smoke

# ---- Attribution against its reference model (issue 11) --------------------------------
# tests/integration/test_attribution_differential.py with many seeds, one pytest item each
# (`make test` runs 3 of 800 events): `make stress SEEDS=500`; STRESS_EVENTS events a seed,
# from seed STRESS_SEED_BASE. A failure names its seed and how to run it alone.
SEEDS ?= 50
STRESS_EVENTS ?= 1500
STRESS_SEED_BASE ?= 1

stress-diff: deps
	$(BAZEL) build //services/attribution:attribution
	YW_BIN_DIR=$(CURDIR)/bazel-bin YW_DIFF_SEEDS=$(SEEDS) YW_DIFF_SEED_BASE=$(STRESS_SEED_BASE) \
		YW_DIFF_EVENTS=$(STRESS_EVENTS) $(PY) -m pytest -q -p no:cacheprovider \
		tests/integration/test_attribution_differential.py
