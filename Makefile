# yaowei — the two commands a newcomer types:
#   make run    installs what is missing, builds, runs creator profile on the embedded store
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

DATA_DIR ?= $(CURDIR)/.data
LISTEN ?= 127.0.0.1:50051

.PHONY: all deps build run test unit integration asan bench check-deploy clean

all: build

# Installs only what is missing; needs root (or sudo) the first time.
deps:
	@missing=$$(for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
		echo "installing: $$missing"; \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

build: deps
	$(BAZEL) build //...

run: build
	@mkdir -p $(DATA_DIR)
	@echo "creator profile on $(LISTEN), data in $(DATA_DIR); Ctrl-C stops it."
	@echo "try: grpcurl -plaintext $(LISTEN) list"
	./bazel-bin/services/creator_profile/creator_profile --listen $(LISTEN) --data-dir $(DATA_DIR)

unit: deps
	$(BAZEL) test //...

integration: build
	YW_BIN_DIR=$(CURDIR)/bazel-bin $(PY) -m pytest -q -p no:cacheprovider tests/integration

# The whole suite under AddressSanitizer and UndefinedBehaviorSanitizer: the unit
# tests, then the integration tests against sanitized binaries (a leak or a UB report
# makes the service exit non-zero at SIGTERM, which the harness asserts). `make test`
# runs it first, so that the normal build that follows leaves release binaries in
# bazel-bin/.
asan: deps
	$(BAZEL) test --config=asan //...
	$(BAZEL) build --config=asan //...
	YW_BIN_DIR=$(CURDIR)/bazel-bin YW_SANITIZED=1 $(PY) -m pytest -q -p no:cacheprovider tests/integration

# Benchmarks (never part of `make test`): medians of several runs, see bench/.
bench: build
	bench/h2load_get_creator.sh 3

# deploy/ without a container engine or a cluster: YAML, kustomize references, compose,
# the Containerfile's shell steps, systemd-analyze verify (tools/check_deploy.py).
check-deploy: deps
	$(PY) tools/check_deploy.py

test: check-deploy asan unit integration

clean:
	$(BAZEL) clean
