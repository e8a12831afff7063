# casare-robot: common tasks. `make test` is what CI runs (via .ci/run).
CARGO ?= cargo

.PHONY: build release test lint lint-windows fmt bench run demo windows clean

build:
	$(CARGO) build

release:
	$(CARGO) build --release

# All tests: unit, integration (real binary, real files), conformance against the CasareRPA fixtures
# when ../shared/fixtures exists.
test:
	$(CARGO) test --all-targets --no-fail-fast

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

# The same lint for the main target, Windows (needs `rustup target add x86_64-pc-windows-gnu` and
# the mingw-w64 C compiler; ../shared/tools/wine/setup.sh installs both).
lint-windows:
	$(CARGO) clippy --target x86_64-pc-windows-gnu --all-targets -- -D warnings

fmt:
	$(CARGO) fmt

bench:
	$(CARGO) bench --bench engine --bench checkpoint --bench io --bench dispatch --bench durable

# Run the example workflow (pass another with WORKFLOW=path).
WORKFLOW ?= examples/hello.json
run:
	$(CARGO) run --release -- run $(WORKFLOW)

windows:
	$(CARGO) build --release --target x86_64-pc-windows-gnu

clean:
	$(CARGO) clean

# The whole loop on one machine: a local orchestrator stand-in, the daemon, the example jobs, a
# failing job, a cancelled job and a reconnect.
demo:
	$(CARGO) build --release
	$(CARGO) run --release --example demo
