# pipeworks — `make demo` runs the main demo, `make test` runs every test (installing what they need).
SHELL := /bin/bash
CARGO ?= cargo
RELEASE := target/release

.PHONY: build release test test-deps lint bench demo install clean

build:
	$(CARGO) build

release:
	$(CARGO) build --release

# System packages the tests start for real: memcached, redis-server, chromium (+ its driver).
TEST_PACKAGES := memcached redis-server chromium chromium-driver jq
test-deps:
	@missing=""; for p in $(TEST_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

test: test-deps
	$(CARGO) build --bins
	if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --no-fail-fast; \
	else \
		$(CARGO) test --no-fail-fast; \
	fi

# Every benches/*.sh prints its figures with the command that produced them.
bench: release
	@for script in benches/*.sh; do echo "== $$script"; bash $$script || exit 1; done

demo: release
	@echo '$$ minute-stats examples/metrics.jsonl | jq -c .'
	@$(RELEASE)/minute-stats examples/metrics.jsonl | jq -c .

install:
	$(CARGO) install --path . --locked

clean:
	$(CARGO) clean

# chat-bench: 300 clients chatting by the challenge's rule against chat-relay (2 workers), then a
# short capacity search with a plot. The full comparison with the Python stack: `make bench-chat`.
.PHONY: demo-chat-bench bench-chat
demo-chat-bench: release
	@set -e; port=$$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'); \
	$(RELEASE)/chat-relay --listen 127.0.0.1:$$port --workers 2 </dev/null >/dev/null & relay=$$!; \
	mkdir -p bench-out; trap "kill $$relay" EXIT; \
	for i in $$(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$$port) 2>/dev/null && break; sleep 0.1; done; \
	echo "\$$ chat-bench --url ws://127.0.0.1:$$port/chat --clients 300 --duration 9s --server-pid $$relay"; \
	$(RELEASE)/chat-bench --url ws://127.0.0.1:$$port/chat --clients 300 --duration 9s --server-pid $$relay; \
	echo "\$$ chat-bench --url ws://127.0.0.1:$$port/chat --search --start 100 --max 800 --duration 6s --plot bench-out/chat-bench-demo.svg"; \
	$(RELEASE)/chat-bench --url ws://127.0.0.1:$$port/chat --search --start 100 --max 800 --duration 6s --plot bench-out/chat-bench-demo.svg; \
	echo "latency plot: bench-out/chat-bench-demo.svg"

bench-chat: release
	bash benches/chat-bench.sh
