# plugboard: two commands do everything on a fresh machine with the Rust toolchain.
#   make run    build everything (release) and run the embedded default
#   make test   build and run every test
#   make test-e2e  install what the e2e tests need beyond cargo, then run them
# Other targets: build, install-plugins, bench, lint, fmt, clean.

CARGO   ?= cargo
PROFILE ?= release
# Plugins live in `plugins/` beside the plugboard binary (its default plugins_dir).
TARGET_DIR := target/$(PROFILE)
PLUGINS_DIR := $(TARGET_DIR)/plugins
CONTRIB := $(notdir $(wildcard contrib/*))
RELEASE_FLAG := $(if $(filter release,$(PROFILE)),--release,)

.PHONY: all build install-plugins run test test-unit test-e2e bench lint fmt clean

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

# End-to-end tests that need programs beyond cargo (tests/tests/e2e_*.rs, built
# with the plugboard-tests `e2e` feature). The Debian packages they need are
# installed first when missing (apt-get; root or sudo).
E2E_DEBS ?= sqlite3
E2E_TESTS := $(basename $(notdir $(wildcard tests/tests/e2e_*.rs)))
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

test-e2e:
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
	$(CARGO) bench -p plugboard-host --bench pipeline

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p plugboard-tests --features e2e --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
