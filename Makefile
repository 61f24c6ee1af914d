# plugboard: two commands do everything on a fresh machine with the Rust toolchain.
#   make run    build everything (release) and run the embedded default
#   make test   build and run every test
# Other targets: build, install-plugins, bench, lint, fmt, clean.

CARGO   ?= cargo
PROFILE ?= release
# Plugins live in `plugins/` beside the plugboard binary (its default plugins_dir).
TARGET_DIR := target/$(PROFILE)
PLUGINS_DIR := $(TARGET_DIR)/plugins
CONTRIB := $(notdir $(wildcard contrib/*))
RELEASE_FLAG := $(if $(filter release,$(PROFILE)),--release,)

.PHONY: all build install-plugins run test test-unit bench lint fmt clean

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

bench:
	$(CARGO) build --release --workspace --bins
	$(CARGO) bench -p plugboard-host --bench plugin
	$(CARGO) bench -p plugboard-host --bench commands

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
