# pipeworks — `make demo` runs the main demo, `make test` runs every test (installing what they need).
SHELL := /bin/bash
CARGO ?= cargo
RELEASE := target/release

.PHONY: build release test test-deps lint bench soak chaos demo demo-stats docs install clean

build:
	$(CARGO) build

release:
	$(CARGO) build --release

# System packages the tests start for real: memcached, redis-server, chromium (+ its driver).
TEST_PACKAGES := memcached redis-server chromium chromium-driver prometheus jq mandoc
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

# The `docs` feature adds the man-page and completion generator (tests/docs.rs runs it); the
# tests are built with it too, so the library is compiled once.
test: test-deps
	$(CARGO) build --bins --features docs
	if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --no-fail-fast --features docs; \
	else \
		$(CARGO) test --no-fail-fast --features docs; \
	fi

# Every benches/*.sh prints its figures with the command that produced them, and appends its
# tables to bench-out/tables.md (benches/lib.sh), printed at the end in the shape of
# BENCHMARKS.md's sections. The hour-long repricing soak is separate: `make soak`.
bench: release
	@mkdir -p bench-out && : > bench-out/tables.md
	@for script in benches/*.sh; do \
		case $$script in *-soak.sh|*/lib.sh) continue;; esac; \
		echo "== $$script"; bash $$script || exit 1; \
	done
	@echo; echo "== bench-out/tables.md"; cat bench-out/tables.md

soak: release
	bash benches/reprice-soak.sh

# The fault sweep of issue 13 (tests/chaos.rs): hostile lines into every program, kill -9 of each
# component, memcached and redis restarts, a full 1 MB tmpfs (mounting it needs root; without,
# those rows say so), 2,000 idle connections and slowloris per server. Prints one table (fault,
# program, what happened, what was lost) and fails if a row is not as the docs promise. ~2 min.
chaos: test-deps
	$(CARGO) test --release --test chaos -- --ignored --nocapture --test-threads 1

# The main demo is the toolkit's headline pipeline (gen-events | window-agg, see demo-window).
demo: demo-window

demo-stats: release
	@echo '$$ minute-stats examples/metrics.jsonl | jq -c .'
	@$(RELEASE)/minute-stats examples/metrics.jsonl | jq -c .

# Man pages and bash/zsh/fish completions, generated from the programs' clap definitions.
DOCS := target/docs
docs:
	$(CARGO) build --release --features docs --bin pipeworks-docs
	$(RELEASE)/pipeworks-docs $(DOCS)

# `make install PREFIX=DIR` (default ~/.local): programs, man pages and completions.
PREFIX ?= $(HOME)/.local
PROGRAMS := $(filter-out pipeworks-docs,$(basename $(notdir $(wildcard bin/*.rs))))
install: release docs
	install -d $(PREFIX)/bin $(PREFIX)/share/man/man1 $(PREFIX)/share/bash-completion/completions \
		$(PREFIX)/share/zsh/site-functions $(PREFIX)/share/fish/vendor_completions.d
	for p in $(PROGRAMS); do \
		install -m 755 $(RELEASE)/$$p $(PREFIX)/bin/$$p; \
		install -m 644 $(DOCS)/man/man1/$$p.1 $(PREFIX)/share/man/man1/$$p.1; \
		install -m 644 $(DOCS)/bash/$$p.bash $(PREFIX)/share/bash-completion/completions/$$p; \
		install -m 644 $(DOCS)/zsh/_$$p $(PREFIX)/share/zsh/site-functions/_$$p; \
		install -m 644 $(DOCS)/fish/$$p.fish $(PREFIX)/share/fish/vendor_completions.d/$$p.fish; \
	done
	@echo "installed $(words $(PROGRAMS)) programs, man pages and completions under $(PREFIX)"

clean:
	$(CARGO) clean

# load-monitor: start the service, post a day of simulated load for 50 servers in batches, check
# every server's report against what was sent, and show one report's size.
.PHONY: demo-load
demo-load: release
	@set -e; log=$$(mktemp); \
	$(RELEASE)/load-monitor --listen 127.0.0.1:0 --clock records 2>$$log & pid=$$!; \
	trap "kill $$pid 2>/dev/null; rm -f $$log" EXIT; \
	until grep -q 'listening on' $$log; do sleep 0.1; done; \
	url=$$(grep -o 'http://[0-9.:]*' $$log); \
	echo "\$$ gen-events --profile load --servers 50 --simulated --start 2016-04-10T00:00:00Z --rate 5 --count 432000 --seed 1 --post $$url/records --batch 500 --concurrency 4 --check"; \
	$(RELEASE)/gen-events --profile load --servers 50 --simulated --start 2016-04-10T00:00:00Z --rate 5 --count 432000 --seed 1 --post $$url/records --batch 500 --concurrency 4 --check; \
	echo "\$$ curl -s $$url/report/server0005 | jq -c '{servername, minutes: (.\"1hourdata\" | length), hours: (.\"24hourdata\" | length), last: .\"1hourdata\"[-1]}'"; \
	curl -s $$url/report/server0005 | jq -c '{servername, minutes: (."1hourdata" | length), hours: (."24hourdata" | length), last: ."1hourdata"[-1]}'

# The headline pipeline of seed 002: a steady event stream and its sliding 5-minute summary.
# Runs for DEMO_SECONDS (default 25 s: two 10 s bucket boundaries and the end-of-input line).
DEMO_SECONDS ?= 25
.PHONY: demo-window
demo-window: release
	@echo "# $(RELEASE)/gen-events --rate 100 --duration $(DEMO_SECONDS)s | $(RELEASE)/window-agg --minutes 5"
	@$(RELEASE)/gen-events --rate 100 --duration $(DEMO_SECONDS)s | $(RELEASE)/window-agg --minutes 5

# allocate: the seed's problems, then orders drawn from one inventory kept in a state file.
.PHONY: demo-allocate bench-allocate
demo-allocate: release
	@echo "# $(RELEASE)/allocate examples/allocate-problems.jsonl"
	@$(RELEASE)/allocate examples/allocate-problems.jsonl
	@rm -f bench-out/demo-stock.json
	@mkdir -p bench-out
	@echo "# $(RELEASE)/allocate --inventory examples/warehouses.json --state bench-out/demo-stock.json --partial examples/orders.jsonl"
	@$(RELEASE)/allocate --inventory examples/warehouses.json --state bench-out/demo-stock.json --partial examples/orders.jsonl
	@echo "# remaining: bench-out/demo-stock.json"
	@jq -c '.warehouses[]' bench-out/demo-stock.json 2>/dev/null || cat bench-out/demo-stock.json

bench-allocate: release
	bash benches/allocate.sh

# chat-relay: 4 workers on port 8000 (CHAT_LISTEN=0.0.0.0:8000 to reach it from other machines).
# Type a line to speak as the relay's bot; every message in the room is printed here. Ctrl-C stops.
CHAT_LISTEN ?= 127.0.0.1:8000
.PHONY: demo-chat
demo-chat: release
	@echo "chat-relay: open http://$(subst 0.0.0.0,localhost,$(CHAT_LISTEN))/ in a browser (two tabs to chat);"
	@echo "type a line here to speak as the bot; Ctrl-C stops the relay."
	@echo '$$ $(RELEASE)/chat-relay --listen $(CHAT_LISTEN) --workers 4'
	@$(RELEASE)/chat-relay --listen $(CHAT_LISTEN) --workers 4

# The repricing loop (issue 6): price-api, ticker into a FIFO, reprice on examples/data.csv; kills
# and restarts the data manager, reprice and price-api in turn while the rest keep going.
.PHONY: demo-reprice
demo-reprice: release
	@bash examples/demo-reprice.sh

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
