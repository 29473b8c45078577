# raftlite: `make cluster` to play, `make test` to check everything.
N ?= 3
NODE ?=

.PHONY: build cluster restart status stop kill clean test lint

build:
	cargo build --release --bins

cluster: build
	tools/cluster.sh start $(N)

restart: build
	@test -n "$(NODE)" || { echo "usage: make restart NODE=A"; exit 2; }
	tools/cluster.sh restart $(NODE)

status:
	@tools/cluster.sh status

stop:
	@tools/cluster.sh stop

kill:
	@test -n "$(NODE)" || { echo "usage: make kill NODE=A"; exit 2; }
	tools/kill_node.sh $(NODE)

clean:
	rm -rf run

lint:
	@if cargo fmt --version >/dev/null 2>&1; then cargo fmt --all -- --check; else echo "rustfmt missing: skipped"; fi
	@if cargo clippy --version >/dev/null 2>&1; then cargo clippy --release --all-targets -- -D warnings; else echo "clippy missing: skipped"; fi

test: lint
	cargo test --release
