# collector: build, run, test, bench. `make help` lists the targets.
#
#   make run    build everything (installing the wasm targets if missing) and run
#               the daemon on its embedded default config
#   make test   everything CI runs: fmt, clippy, plugin builds, all tests

SHELL := /bin/bash
CARGO ?= cargo
PLUGIN_DIR := target/plugins
WASM_PROFILE := wasm
RUST_PLUGINS_WASI := file tagger
RUST_PLUGINS_PURE := noop misbehave http influx prometheus gnocchi

.PHONY: help run build plugins rust-plugins wat-plugins toolchain test test-deps sdk-tests rabbitmq lint bench clean fuzz fuzz-smoke fuzz-tools

help:
	@grep -E '^[a-z-]+:.*' Makefile | sed 's/:.*//' | sort -u | tr '\n' ' '; echo

## toolchain: wasm targets for the Rust plugins (no-op when present)
toolchain:
	@installed=$$(rustup target list --installed); \
	for t in wasm32-unknown-unknown wasm32-wasip1; do \
	  grep -qx $$t <<<"$$installed" || rustup target add $$t; \
	done

## plugins: every plugin of plugins/ in every language (Rust, C, Zig, AssemblyScript, Go, WAT,
## Python and JavaScript components), into target/plugins/; installs the toolchains it needs
## (clang/lld/wasi-libc, Zig, Go and componentize-py from PyPI, AssemblyScript and
## componentize-js from npm, wabt)
plugins: rust-plugins wat-plugins
	plugins/c-threshold/build.sh $(CURDIR)/$(PLUGIN_DIR)
	plugins/c-http-post/build.sh $(CURDIR)/$(PLUGIN_DIR)
	plugins/zig-forwarder/build.sh $(CURDIR)/$(PLUGIN_DIR)
	plugins/as-summary/build.sh $(CURDIR)/$(PLUGIN_DIR)
	plugins/go-meter-totals/build.sh $(CURDIR)/$(PLUGIN_DIR)
	plugins/py-file/build.sh $(CURDIR)/$(PLUGIN_DIR)
	plugins/py-misbehave/build.sh $(CURDIR)/$(PLUGIN_DIR)
	plugins/py-http/build.sh $(CURDIR)/$(PLUGIN_DIR)
	plugins/js-file/build.sh $(CURDIR)/$(PLUGIN_DIR)
	plugins/js-misbehave/build.sh $(CURDIR)/$(PLUGIN_DIR)
	plugins/js-http/build.sh $(CURDIR)/$(PLUGIN_DIR)
	@ls -l $(PLUGIN_DIR)

## wat-plugins: the hand-written WAT plugins, assembled with wabt's wat2wasm
wat-plugins:
	@command -v wat2wasm >/dev/null || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends wabt >/dev/null; }
	@mkdir -p $(PLUGIN_DIR)
	@for f in plugins/wat/*.wat; do n=$$(basename $$f .wat); wat2wasm $$f -o $(PLUGIN_DIR)/wat-$$n.wasm; done

## rust-plugins: the Rust plugins (the binary embeds file and noop)
rust-plugins: toolchain
	$(CARGO) build --target wasm32-wasip1 --profile $(WASM_PROFILE) $(foreach p,$(RUST_PLUGINS_WASI),-p collector-plugin-$(p))
	$(CARGO) build --target wasm32-unknown-unknown --profile $(WASM_PROFILE) $(foreach p,$(RUST_PLUGINS_PURE),-p collector-plugin-$(p))
	@mkdir -p $(PLUGIN_DIR)
	@for p in $(RUST_PLUGINS_WASI); do cp target/wasm32-wasip1/$(WASM_PROFILE)/collector_plugin_$$p.wasm $(PLUGIN_DIR)/$$p.wasm; done
	@for p in $(RUST_PLUGINS_PURE); do cp target/wasm32-unknown-unknown/$(WASM_PROFILE)/collector_plugin_$$p.wasm $(PLUGIN_DIR)/$$p.wasm; done
	@cp plugins/fixtures/*.wat $(PLUGIN_DIR)/

## build: the Rust plugins first (the binary embeds file and noop), then the daemon
build: rust-plugins
	$(CARGO) build -p collector

## run: the daemon on its embedded default config (UDP 127.0.0.1:4952 -> ./collector-data/samples.jsonl)
run: build
	./target/debug/collector run

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## test-deps: RabbitMQ (Debian) and a virtualenv with Ceilometer 27.0.0, for the AMQP tests
test-deps:
	./scripts/install-test-deps.sh

rabbitmq:
	SKIP_CEILOMETER_VENV=1 ./scripts/install-test-deps.sh

## sdk-tests: each language SDK decodes every golden vector, in its own test
sdk-tests:
	$(MAKE) -C plugin-sdk/c test wasm-test
	plugin-sdk/zig/test.sh
	plugin-sdk/go/test.sh
	cd plugin-sdk/assemblyscript && npm test
	cd plugin-sdk/python && python3 -m unittest discover -s tests
	cd plugin-sdk/js && npm test

## test: what CI runs
test: test-deps plugins build lint sdk-tests fuzz-smoke
	$(CARGO) test --workspace

# Coverage-guided fuzzing (fuzz/, docs/fuzzing.md): cargo-fuzz and libFuzzer on
# the stable toolchain (RUSTC_BOOTSTRAP=1 lets it pass the sanitizer flags).
FUZZ_TARGETS := msgpack_datagram oslo_message http_body batch_view batch_differential config_toml
FUZZ_SECONDS ?= 300
FUZZ_SMOKE_SECONDS ?= 15
FUZZ := cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz

## fuzz-tools: cargo-fuzz from crates.io, when missing
fuzz-tools:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked

## fuzz: every target for FUZZ_SECONDS (default 300) each; new inputs go to fuzz/corpus/TARGET
fuzz: fuzz-tools
	@for t in $(FUZZ_TARGETS); do \
	  echo "== fuzz $$t for $(FUZZ_SECONDS) s"; \
	  ( $(FUZZ) run $$t corpus/$$t -- -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 ) || exit 1; \
	done

## fuzz-smoke: every target briefly, from its corpus (CI); the corpus is not changed
fuzz-smoke: fuzz-tools
	$(FUZZ) build
	@for t in $(FUZZ_TARGETS); do \
	  scratch=$$(mktemp -d); \
	  echo "== fuzz-smoke $$t for $(FUZZ_SMOKE_SECONDS) s"; \
	  ( $(FUZZ) run $$t $$scratch corpus/$$t -- -max_total_time=$(FUZZ_SMOKE_SECONDS) -rss_limit_mb=2048 ) || exit 1; \
	  rm -rf $$scratch; \
	done

## bench: dispatch-path and end-to-end figures (release build)
bench: test-deps plugins
	$(CARGO) build --release -p collector
	$(CARGO) bench -p collector --bench dispatch
	$(CARGO) bench -p collector --bench decode
	$(CARGO) bench -p collector --bench stages
	./scripts/bench-e2e.sh
	./scripts/bench-backends.sh
	./scripts/bench-inputs.sh
	./scripts/bench-rss.sh
	COLLECTOR_BIN=$(CURDIR)/target/release/collector $(CARGO) bench -p collector-e2e --bench amqp
	COLLECTOR_BIN=$(CURDIR)/target/release/collector $(CARGO) bench -p collector-e2e --bench reload

clean:
	$(CARGO) clean
