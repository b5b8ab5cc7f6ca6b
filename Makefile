# shotfarm operational Makefile (GNU make).
# Common targets: make run | make test | make bench | make fuzz | make chaos | make check-config | make clean-var

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build

export PATH := $(HOME)/.cargo/bin:$(PATH)

CARGO        ?= cargo
CONFIG       ?= config/shotfarm.toml
REDIS_URL    ?= redis://127.0.0.1:6379/0
TEST_THREADS ?= 2
# The integration tests that also run on the other engine (test-name filters).
OTHER_ENGINE_TESTS := capture:: isolation:: hostile_pages:: egress:: lifecycle:: error_pages:: emulation:: interaction:: blocking:: filter_lists:: pdf:: html::
BIN          := ./target/release/shotfarm
REDIS_PIDFILE := var/redis/redis.pid

# Optional listen-address overrides, e.g. `make run LISTEN=127.0.0.1:8081 METRICS=127.0.0.1:9465`.
# They are passed to the daemon as its --listen / --metrics-listen / --redis-url flags.
LISTEN  ?=
METRICS ?=
API_ADDR     := $(if $(LISTEN),$(LISTEN),127.0.0.1:8080)
METRICS_ADDR := $(if $(METRICS),$(METRICS),127.0.0.1:9464)
# REDIS_URL is forwarded to the daemon only when overridden (command line/environment),
# so the default run relies purely on $(CONFIG).
OPS_FLAGS := --config '$(CONFIG)' $(if $(filter-out default file,$(origin REDIS_URL)),--redis-url '$(REDIS_URL)')
DEMO_EMAIL ?= demo@shotfarm.localhost
# The demo serves its page on loopback, which the shipped egress policy refuses: allow it here
# (and only here). Set DEMO_EGRESS= to run with the production policy.
DEMO_EGRESS ?= 127.0.0.0/8
RUN_FLAGS := $(if $(DEMO_EGRESS),--allow-egress '$(DEMO_EGRESS)') $(if $(filter-out default file,$(origin REDIS_URL)),--redis-url '$(REDIS_URL)') \
	$(if $(LISTEN),--listen '$(LISTEN)') \
	$(if $(METRICS),--metrics-listen '$(METRICS)')

.PHONY: all deps deps-test build run test fmt-check clippy unit bench bench-fleet bench-isolation soak fuzz chaos check-config clean-var

all: build

deps:
	scripts/install-deps.sh

# What `deps` installs, plus what only the tests need (schemathesis and moto, each in its own venv).
deps-test:
	scripts/install-deps.sh --test

build: deps
	@# A cold release build compiles every dependency: say so before the wait.
	@[[ -x $(BIN) ]] || echo 'first build: ~260 crates, about 7–8 minutes on 2 cores (later builds only recompile shotfarm)'
	$(CARGO) build --release

run: build
	scripts/ensure-redis.sh '$(REDIS_URL)'
	@# A demo account (100 credits, created once), a fresh API key for it, and a dashboard
	@# password: generated on the first run into var/demo-password (0600) and kept on later runs
	@# (set again each run, so it also holds after the Redis was replaced).
	@mkdir -p var
	@$(BIN) accounts show --account '$(DEMO_EMAIL)' $(OPS_FLAGS) >/dev/null 2>&1 || \
		$(BIN) accounts create --email '$(DEMO_EMAIL)' --credits 95 $(OPS_FLAGS) >/dev/null
	@[[ -s var/demo-password ]] || (umask 077 && head -c 18 /dev/urandom | base64 | tr '+/' 'xy' > var/demo-password)
	@chmod 0600 var/demo-password
	@$(BIN) accounts set-password --account '$(DEMO_EMAIL)' --password-file var/demo-password $(OPS_FLAGS) >/dev/null
	@$(BIN) keys create --account '$(DEMO_EMAIL)' --name 'make run' $(OPS_FLAGS) | sed -n 2p > var/demo-key
	@echo
	@echo '================================ shotfarm ================================'
	@echo ' config   : $(CONFIG)'
	@echo ' redis    : $(REDIS_URL)'
	@echo " demo key : $$(cat var/demo-key)  (account $(DEMO_EMAIL); also in var/demo-key)"
	@echo ' dashboard: http://$(API_ADDR)/dashboard'
	@echo "            log in as $(DEMO_EMAIL), password $$(cat var/demo-password)  (also in var/demo-password)"
	@echo ' API      : http://$(API_ADDR)/api/v1/screenshot?url=…  (header x-api-key: <key>)'
	@echo '            (this machine has no internet; for a local demo, in another shell:)'
	@echo '              mkdir -p /tmp/shotfarm-demo && echo "<h1>hello shotfarm</h1>" > /tmp/shotfarm-demo/index.html'
	@echo '              python3 -m http.server 8000 --bind 127.0.0.1 --directory /tmp/shotfarm-demo &'
	@echo '              curl -fsS -G -o /tmp/shot.png -H "x-api-key: $$(cat var/demo-key)" \'
	@echo '                   --data-urlencode url=http://127.0.0.1:8000/ \'
	@echo '                   http://$(API_ADDR)/api/v1/screenshot && ls -l /tmp/shot.png'
	@echo ' credits  : curl -H "x-api-key: $$(cat var/demo-key)" http://$(API_ADDR)/api/v1/credits'
	@echo ' accounts : $(BIN) accounts show --account $(DEMO_EMAIL)'
	@echo ' health   : http://$(API_ADDR)/readyz'
	@echo ' metrics  : http://$(METRICS_ADDR)/metrics'
	@echo '=========================================================================='
	@echo
	exec $(BIN) serve --config '$(CONFIG)' $(RUN_FLAGS)

test: deps-test
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) test --all-targets -- --test-threads=$(TEST_THREADS)
	@# The default engine is the headless shell; the capture, isolation and lifecycle tests run
	@# once more on full new-headless Chromium (farm.engine = "chromium").
	SHOTFARM_FARM__ENGINE=chromium $(CARGO) test --test integration -- --test-threads=$(TEST_THREADS) \
		$(OTHER_ENGINE_TESTS)

bench: deps
	$(CARGO) bench --bench capture_load
	$(CARGO) bench --bench png_encoding
	$(CARGO) bench --bench ledger
	$(CARGO) bench --bench blocking
	$(CARGO) bench --bench cache
	$(CARGO) bench --bench replica_acks
	$(CARGO) bench --bench async_jobs

# Throughput with 1, 2 and 3 daemons (the same browsers in all) sharing one Redis, then a
# three-primary Redis Cluster; audits the ledger at the end. About 6 minutes on 2 cores; knobs
# (FLEET_SIZES, FLEET_CLUSTER_SIZES, FLEET_CAPTURES, ...) in benches/fleet.rs.
bench-fleet: deps
	$(CARGO) bench --bench fleet

# What the browsers' own network namespace and Chromium's sandbox cost a capture: the daemon as
# an unprivileged user in three settings, one run (about 3 minutes; knobs in the script).
bench-isolation: build
	python3 benches/isolation_cost.py

# The soak: 10,000 captures through one daemon, whose memory (with its Chromium processes) must
# end within 10 % of where it settled after the first 1,000. Hours on 2 cores, so not part of
# `make bench`; `make soak SOAK_CAPTURES=2000` is a shorter check (knobs in benches/soak.rs).
soak: deps
	$(CARGO) bench --bench soak

# Property tests on capture options and the egress checks, with many more cases than `make test`
# runs, bounded in time (FUZZ_CASES per property, FUZZ_SECONDS in all).
FUZZ_CASES   ?= 50000
FUZZ_SECONDS ?= 600
fuzz: deps
	PROPTEST_CASES=$(FUZZ_CASES) timeout $(FUZZ_SECONDS) $(CARGO) test --release --test fuzz

# The long chaos run (not part of `make test`, which runs the same test's short plan): a schedule
# of CHAOS_FAULTS faults generated from a seed (Chromium browser and renderer kills, Redis stalls,
# daemon SIGKILLs, Redis node restarts, primary kills with Sentinel failover) under load from
# several accounts against two daemons on a primary, two replicas and three Sentinels
# (CHAOS_SENTINEL=0: one Redis), with Polar webhooks arriving; the ledger audited after every
# fault window, every charge matched to a delivered image, every paid order granted once. About
# 20 minutes on 2 cores.
# It prints the seed and a report (also in report.txt of the log directory it names);
# `CHAOS_SEED=<n> make chaos` replays a run.
CHAOS_FAULTS ?= 1000
chaos: deps-test
	CHAOS_FAULTS=$(CHAOS_FAULTS) $(CARGO) test --test integration chaos:: -- --nocapture --test-threads=1

check-config:
	$(CARGO) run --release -- check-config --config '$(CONFIG)'

clean-var:
	@if [[ -f $(REDIS_PIDFILE) ]]; then \
		pid=$$(cat $(REDIS_PIDFILE)); \
		if kill -0 "$$pid" 2>/dev/null && grep -q redis-server /proc/$$pid/comm 2>/dev/null; then \
			echo "stopping redis-server (pid $$pid)"; \
			kill -TERM "$$pid"; \
			for _ in $$(seq 1 50); do kill -0 "$$pid" 2>/dev/null || break; sleep 0.1; done; \
			if kill -0 "$$pid" 2>/dev/null; then echo "redis-server $$pid did not exit within 5 s" >&2; exit 1; fi; \
		else \
			echo "stale pidfile $(REDIS_PIDFILE) (pid $$pid not a running redis-server)"; \
		fi; \
	fi
	rm -rf ./var

# --- install / uninstall -----------------------------------------------------------------------
# `make install` (as root) builds in release mode unless NOBUILD=1, then installs the binary, the
# config (an existing one is never overwritten: the new one goes next to it as shotfarm.toml.dist),
# the systemd unit (its paths rewritten for PREFIX and SYSCONFDIR), the secrets template and the
# Grafana/Prometheus files. Staged installs: `make install NOBUILD=1 DESTDIR=/tmp/root PREFIX=/usr`.
# `make uninstall` removes the same files, never the config or the secrets.
PREFIX     ?= /usr/local
DESTDIR    ?=
SYSCONFDIR ?= /etc
UNITDIR    ?= /lib/systemd/system
DATADIR    ?= $(PREFIX)/share
NOBUILD    ?=
INSTALL_BIN  := $(DESTDIR)$(PREFIX)/bin/shotfarm
INSTALL_ETC  := $(DESTDIR)$(SYSCONFDIR)/shotfarm
INSTALL_UNIT := $(DESTDIR)$(UNITDIR)/shotfarm.service
INSTALL_DATA := $(DESTDIR)$(DATADIR)/shotfarm

.PHONY: install uninstall

install: $(if $(NOBUILD),,build)
	@test -x '$(BIN)' || { echo "install: no binary at $(BIN): run 'make build' (or pass BIN=...)" >&2; exit 1; }
	install -d -m 0755 '$(DESTDIR)$(PREFIX)/bin' '$(INSTALL_ETC)' '$(DESTDIR)$(UNITDIR)' \
		'$(INSTALL_DATA)/dashboards'
	install -m 0755 '$(BIN)' '$(INSTALL_BIN)'
	@# The daemon runs as a transient user (DynamicUser=yes): the config must be world-readable,
	@# so it holds no secrets; those go in shotfarm.env (0600, read by systemd as root).
	@if [[ -e '$(INSTALL_ETC)/shotfarm.toml' ]]; then \
		install -m 0644 config/shotfarm.toml '$(INSTALL_ETC)/shotfarm.toml.dist'; \
		echo "install: kept the existing $(SYSCONFDIR)/shotfarm/shotfarm.toml; the shipped one is shotfarm.toml.dist"; \
	else \
		install -m 0644 config/shotfarm.toml '$(INSTALL_ETC)/shotfarm.toml'; \
	fi
	install -m 0644 systemd/shotfarm.env.example '$(INSTALL_ETC)/shotfarm.env.example'
	sed -e 's#/usr/local/bin/shotfarm#$(PREFIX)/bin/shotfarm#g' \
		-e 's#/etc/shotfarm\([/ :]\|$$\)#$(SYSCONFDIR)/shotfarm\1#g' \
		systemd/shotfarm.service > '$(INSTALL_UNIT).tmp'
	chmod 0644 '$(INSTALL_UNIT).tmp'
	mv -f '$(INSTALL_UNIT).tmp' '$(INSTALL_UNIT)'
	@shopt -s nullglob; for f in dashboards/*.json dashboards/*.yml; do \
		echo "install -m 0644 $$f $(INSTALL_DATA)/dashboards/"; \
		install -m 0644 "$$f" '$(INSTALL_DATA)/dashboards/'; \
	done
	@# Grafana provisioning (optional): its dashboard provider points at /usr/share/shotfarm/dashboards,
	@# rewritten to where this install puts them.
	@if [[ -d dashboards/provisioning ]]; then \
		cd dashboards/provisioning && find . -type f -name '*.y*ml' | sort | while read -r f; do \
			dest='$(INSTALL_DATA)/grafana-provisioning/'"$${f#./}"; \
			echo "install -m 0644 dashboards/provisioning/$${f#./} $$dest"; \
			install -d -m 0755 "$$(dirname "$$dest")"; \
			sed -e 's#/usr/share/shotfarm/dashboards#$(DATADIR)/shotfarm/dashboards#g' "$$f" > "$$dest"; \
			chmod 0644 "$$dest"; \
		done; \
	fi
	@if [[ -z '$(DESTDIR)' ]]; then \
		echo; \
		echo 'shotfarm installed. Next:'; \
		echo '  1. edit $(SYSCONFDIR)/shotfarm/shotfarm.toml   (check: $(PREFIX)/bin/shotfarm check-config --config $(SYSCONFDIR)/shotfarm/shotfarm.toml)'; \
		echo '  2. secrets: install -m 0600 $(SYSCONFDIR)/shotfarm/shotfarm.env.example $(SYSCONFDIR)/shotfarm/shotfarm.env, then fill it in'; \
		echo '  3. systemctl daemon-reload && systemctl enable --now shotfarm'; \
		echo '  4. systemctl status shotfarm; journalctl -u shotfarm -f'; \
	fi

uninstall:
	@if [[ -z '$(DESTDIR)' ]] && command -v systemctl >/dev/null 2>&1 && \
		{ systemctl is-active --quiet shotfarm 2>/dev/null || systemctl is-enabled --quiet shotfarm 2>/dev/null; }; then \
		echo "uninstall: shotfarm.service is active or enabled: run 'systemctl disable --now shotfarm' first" >&2; \
		exit 1; \
	fi
	rm -f '$(INSTALL_BIN)' '$(INSTALL_UNIT)' '$(INSTALL_ETC)/shotfarm.env.example' \
		'$(INSTALL_ETC)/shotfarm.toml.dist'
	rm -rf '$(INSTALL_DATA)/dashboards' '$(INSTALL_DATA)/grafana-provisioning'
	rmdir '$(INSTALL_DATA)' 2>/dev/null || true
	@if [[ -e '$(INSTALL_ETC)/shotfarm.toml' || -e '$(INSTALL_ETC)/shotfarm.env' ]]; then \
		echo "uninstall: kept $(SYSCONFDIR)/shotfarm (config and secrets); remove it by hand if unwanted"; \
	else \
		rmdir '$(INSTALL_ETC)' 2>/dev/null || true; \
	fi
	@if [[ -z '$(DESTDIR)' ]] && command -v systemctl >/dev/null 2>&1; then \
		echo 'next: systemctl daemon-reload'; \
	fi
