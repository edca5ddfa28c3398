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
