# plugboard: two commands do everything on a fresh machine with the Rust toolchain.
#   make run    build everything (release) and run the embedded default
#   make test   build and run every test
#   make test-e2e   end-to-end tests that need more than cargo (installs their Debian and PyPI packages)
# Other targets: build, install-plugins, bench, lint, fmt, clean.

CARGO   ?= cargo
PROFILE ?= release
# Plugins live in `plugins/` beside the plugboard binary (its default plugins_dir).
TARGET_DIR := target/$(PROFILE)
PLUGINS_DIR := $(TARGET_DIR)/plugins
CONTRIB := $(notdir $(wildcard contrib/*))
RELEASE_FLAG := $(if $(filter release,$(PROFILE)),--release,)

.PHONY: all build install-plugins run test test-unit bench lint fmt clean
.PHONY: test-e2e test-e2e-pipeline test-e2e-interop interop-go interop-python

all: build

build:
	$(CARGO) build $(RELEASE_FLAG) --workspace --bins
	@$(MAKE) --no-print-directory install-plugins PROFILE=$(PROFILE)

# Copies every contrib plugin binary into the plugins directory.
install-plugins:
	@mkdir -p $(PLUGINS_DIR)
	@for p in $(CONTRIB); do \
	  if [ -x $(TARGET_DIR)/plugboard-$$p ]; then cp -f $(TARGET_DIR)/plugboard-$$p $(PLUGINS_DIR)/; fi; \
	done
	@echo "plugins installed in $(PLUGINS_DIR): $$(ls $(PLUGINS_DIR) | tr '\n' ' ')"

run: build
	$(TARGET_DIR)/plugboard run

# Unit, integration and end-to-end tests (real processes). The e2e tests run
# the debug binaries, so build them all first.
test:
	$(CARGO) build --workspace --bins
	$(CARGO) test --workspace --all-targets
	$(CARGO) test --workspace --doc

# End-to-end tests that need more than cargo, in groups.
test-e2e: test-e2e-pipeline test-e2e-interop

# Interop (issue 6): Go plugins built with hashicorp/go-plugin from Debian's
# packages, Python plugins with grpcio from PyPI in a virtualenv, the Go
# kvpeer peer in both directions, AutoMTLS and `plugboard plugin check`.
E2E_DIR   := $(CURDIR)/target/e2e
SHARED    ?= $(CURDIR)/../shared
VENV      := $(E2E_DIR)/venv
PY_PKGS   := grpcio grpcio-tools grpcio-health-checking cryptography

test-e2e-interop: interop-go interop-python
	$(CARGO) build --workspace --bins
	PLUGBOARD_E2E_DIR=$(E2E_DIR) $(CARGO) test -p plugboard-tests --features e2e-interop --test interop

# The peer's build.sh installs the Debian packages (golang-go, go-plugin 1.0.1,
# grpc-go, golang-goprotobuf-dev, protobuf-compiler) when they are missing.
interop-go:
	OUT_DIR=$(E2E_DIR)/goplugin-peer bash $(SHARED)/peers/goplugin/build.sh
	bash contrib/go/build.sh $(E2E_DIR)/go

$(VENV)/.installed:
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check $(PY_PKGS)
	touch $@

interop-python: $(VENV)/.installed
	bash contrib/python/build.sh $(VENV) $(E2E_DIR)/python
	cp tests/plugins/broken.py $(E2E_DIR)/python/lib/

# End-to-end tests that need programs beyond cargo (tests/tests/e2e_*.rs, built
# with the plugboard-tests `e2e` feature). The Debian packages they need are
# installed first when missing (apt-get; root or sudo).
E2E_DEBS ?= sqlite3 prometheus-alertmanager
E2E_TESTS := $(basename $(notdir $(wildcard tests/tests/e2e_*.rs)))
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

test-e2e-pipeline:
	@missing=""; for p in $(E2E_DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	fi
	$(CARGO) build --workspace --bins
	$(CARGO) test -p plugboard-tests --features e2e $(addprefix --test ,$(E2E_TESTS))

bench:
	$(CARGO) build --release --workspace --bins
	$(CARGO) bench -p plugboard-host --bench plugin
	$(CARGO) bench -p plugboard-host --bench commands
	$(CARGO) bench -p plugboard-host --bench pipeline
	$(CARGO) bench -p plugboard-host --bench metrics

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --all-features -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
