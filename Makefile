# corun: `make run-examples` and `make test` set everything up on a fresh machine.
CARGO ?= cargo

.PHONY: all build hook run-examples test lint fmt-check clippy doc unit bench clean

all: build

build:
	$(CARGO) build --release --workspace

hook:
	$(CARGO) build --release -p corun-hook

## Build the hook and every example, run each under LD_PRELOAD and check its output.
run-examples:
	scripts/run-examples.sh

## Everything CI checks: formatting, clippy, rustdoc, and every test.
test: lint unit

lint: fmt-check clippy doc

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

doc:
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps --quiet

# The hook library and the plain example binaries are built first: the tests run programs
# under LD_PRELOAD, and tests/debugger.rs runs examples under gdb and valgrind.
unit:
	$(CARGO) build --workspace --lib --examples
	$(CARGO) test --workspace --all-targets
	$(CARGO) test -p corun --doc

## Benchmarks (not tests): corun's core against corosensei, ratios printed at the end.
bench:
	$(CARGO) bench --bench switch

clean:
	$(CARGO) clean
