# Two entry points for a fresh machine:
#   make run    set everything up and run a development KBS (embedded default config)
#   make test   set everything up and run every check and test
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.deps-stamp
CARGO_DIR = rust/verifier
# What the extension and the package are built from; the Python sources need no rebuild (the
# install is editable). The extension itself is a prerequisite only while it is missing.
BUILT        = $(VENV)/.built-stamp
BUILD_LOG    = $(VENV)/develop.log
BUILD_INPUTS = pyproject.toml $(shell find $(CARGO_DIR) -path $(CARGO_DIR)/target -prune -o -type f -print)
CORE_MISSING = $(if $(wildcard python/trustee/_core*.so),,FORCE)

.PHONY: run test develop lint rust-check py-check pytest bench clean grpc-stubs FORCE

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "maturin>=1.12.1,<2"
	touch $@

# Builds the Rust extension (release) and installs the package with its dev dependencies, when
# one of BUILD_INPUTS changed since the last build; pip's output goes to BUILD_LOG, shown when
# the build fails.
develop: $(BUILT)

$(BUILT): $(STAMP) $(BUILD_INPUTS) $(CORE_MISSING)
	@echo "building the Rust extension and installing the package (log: $(BUILD_LOG))"
	@VIRTUAL_ENV=$(abspath $(VENV)) $(BIN)/maturin develop --release --extras dev -q \
		>$(BUILD_LOG) 2>&1 || { cat $(BUILD_LOG); exit 1; }
	@touch $@

run: develop
	$(BIN)/trustee serve

rust-check:
	cd $(CARGO_DIR) && cargo fmt --all -- --check
	cd $(CARGO_DIR) && PYO3_PYTHON=$(abspath $(BIN)/python) cargo clippy --workspace --all-targets -q -- -D warnings
	cd $(CARGO_DIR) && cargo test -q --workspace --exclude trustee-py-binding

py-check: develop
	$(BIN)/ruff check python tests benches
	$(BIN)/ruff format --check python tests benches
	$(BIN)/mypy

pytest: develop
	$(BIN)/pytest -q -p no:cacheprovider

test: develop rust-check py-check pytest

bench: develop
	$(BIN)/python benches/flow.py

# The gRPC stubs in python/trustee/grpc_api, generated from proto/ and committed.
grpc-stubs: develop
	$(BIN)/python proto/generate.py

clean:
	rm -rf $(VENV) $(CARGO_DIR)/target
