# corun: `make run-examples` and `make test` set everything up on a fresh machine.
CARGO ?= cargo

.PHONY: all build hook run-examples test lint fmt-check clippy doc unit bench-check bench clean

all: build

build:
	$(CARGO) build --release --workspace

hook:
	$(CARGO) build --release -p corun-hook

## Build the hook and every example, run each under LD_PRELOAD and check its output.
run-examples:
	scripts/run-examples.sh

## Everything CI checks: formatting, clippy, rustdoc, every test, and the benchmark crate's.
test: lint unit bench-check

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

# The benchmark crate (bench/, its own workspace so that tokio, may & co. stay out of corun's
# dependency tree): formatting, clippy and its unit tests. It does not run the benchmarks.
bench-check:
	$(CARGO) fmt --manifest-path bench/Cargo.toml -- --check
	$(CARGO) clippy --manifest-path bench/Cargo.toml --target-dir bench/target --all-targets -- -D warnings
	$(CARGO) test --manifest-path bench/Cargo.toml --target-dir bench/target

## Benchmarks (not tests): the side-by-side suite against tokio, may, Go and OS threads
## (scripts/bench.sh: tables on stdout, target/bench/report.md and charts). The criterion
## benchmark of the core alone is `cargo bench --bench switch`.
bench:
	scripts/bench.sh

clean:
	$(CARGO) clean
