# raftlite: `make cluster` to play, `make test` to check everything.
N ?= 3
NODE ?=
TIME ?= 600
SEEDS ?= 10000
SEED ?= $(shell date +%s)
# Test builds with planted bugs live apart, so they never replace the real binaries.
PLANTED = CARGO_TARGET_DIR=target/planted

.PHONY: build cluster restart status stop kill clean test test-planted lint jepsen bench bench-compare sim

build:
	cargo build --release --bins

cluster: build
	tools/cluster.sh start $(N)

# Stops NODE if it runs (SIGTERM, SIGKILL after 5 s), then starts it again.
restart: build
	@test -n "$(NODE)" || { echo "usage: make restart NODE=A"; exit 2; }
	@tools/cluster.sh restart "$(NODE)"

status:
	@tools/cluster.sh status

# Every node, or just NODE: SIGTERM, waiting (5 s at most) for each to exit.
stop:
	@tools/cluster.sh stop "$(NODE)"

kill:
	@test -n "$(NODE)" || { echo "usage: make kill NODE=A"; exit 2; }
	@tools/kill_node.sh "$(NODE)"

clean:
	rm -rf run

lint:
	@if cargo fmt --version >/dev/null 2>&1; then cargo fmt --all -- --check; else echo "rustfmt missing: skipped"; fi
	@if cargo clippy --version >/dev/null 2>&1; then \
		cargo clippy --release --all-targets -- -D warnings && \
		$(PLANTED) cargo clippy --release --all-targets --features planted-bugs -- -D warnings; \
	else echo "clippy missing: skipped"; fi

test: lint
	cargo test --release
	$(MAKE) test-planted

# The same checks against builds with known bugs planted: they must fail.
test-planted:
	$(PLANTED) cargo test --release --features planted-bugs --lib planted
	$(PLANTED) cargo test --release --features planted-bugs --test simulation planted
	$(PLANTED) cargo test --release --features planted-bugs --test jepsen

# The fault-injection bench: TIME seconds of faults with seed SEED.
jepsen: build
	target/release/jepsen --time $(TIME) --seed $(SEED)

# A long simulation sweep: SEEDS seeds across cluster sizes 1, 3, 5, 7.
sim:
	cargo run --release --bin sim -- --seeds $(SEEDS)

# The benchmark suite: throughput rows, failover trials, catch-up.
bench: build
	target/release/bench-suite

# The same, plus the throughput rows against a local 3-member etcd 3.4
# (installed from the distribution's packages when missing).
bench-compare: build
	@command -v etcd >/dev/null || { apt-get update && apt-get install -y etcd-server etcd-client; }
	target/release/bench-suite --compare-etcd
