# dh-deployer: `make help` lists the targets.
SHELL   := /bin/bash
GO      ?= go
PREFIX  ?= /usr/local
DESTDIR ?=
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS := -s -w -X github.com/dh-deployer/dh-deployer/pkg/cli.Version=$(VERSION)
TOOLS   := dh-receive dh-route dh-deploy dh-nginx dh-cert
GOBIN   := $(shell $(GO) env GOPATH)/bin
STATICCHECK_VERSION := v0.8.2

# Where make install puts things (docs/operations.md has the table).
SYSCONFDIR  ?= /etc
BINDIR      ?= $(PREFIX)/bin
LIBDIR      ?= $(PREFIX)/lib/dh-deployer
SHAREDIR    ?= $(PREFIX)/share/dh-deployer
DOCDIR      ?= $(PREFIX)/share/doc/dh-deployer
MANDIR      ?= $(PREFIX)/share/man
UNITDIR     ?= $(SYSCONFDIR)/systemd/system
SYSUSERSDIR ?= /usr/lib/sysusers.d
TMPFILESDIR ?= /usr/lib/tmpfiles.d
SUDOERSDIR  ?= $(SYSCONFDIR)/sudoers.d
POLKITDIR   ?= $(SYSCONFDIR)/polkit-1/rules.d
UNITS       := $(notdir $(wildcard systemd/*.service systemd/*.socket systemd/*.timer))
SUDOERS     := $(notdir $(wildcard sudoers/dh-*))
DOCS        := README.md $(wildcard docs/*.md) docs/config.example.toml

.PHONY: all build test lint bench chaos crash demo install uninstall deb deps help clean fuzz

all: build

build: ## build the five binaries into bin/, and the manual pages into bin/man/
	@mkdir -p bin/man
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/ $(addprefix ./cmd/,$(TOOLS))
	@# Each page is the program's own help (TOOL --man; the ACL script's --help through
	@# cmd/dh-manpage), gzip -9n for a reproducible package.
	@for t in $(TOOLS); do bin/$$t --man > bin/man/$$t.1 && gzip -9nf bin/man/$$t.1 || exit 1; done
	@set -o pipefail; acl/dh-deployer-acl --help | $(GO) run ./cmd/dh-manpage dh-deployer-acl 8 > bin/man/dh-deployer-acl.8
	@gzip -9nf bin/man/dh-deployer-acl.8

deps: ## install what the tests need (Debian packages as root, Go tools)
	@.ci/deps

test: deps build ## run every test against real components
	@unformatted=$$(gofmt -l cmd pkg sql); if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	$(GO) vet ./...
	@mkdir -p bin/artifacts
	DH_STATUS_SCREENSHOT=$(CURDIR)/bin/artifacts/status.png DH_DELIVERY_SCREENSHOT=$(CURDIR)/bin/artifacts/delivery.png \
		$(GO) test -count=1 ./...   # the pages' screenshots are kept in bin/artifacts
	DH_TEST_STRATEGY=in-place $(GO) test -count=1 ./pkg/deploy   # the deploy tests again, strategy "in-place"

lint: ## gofmt, go vet, staticcheck
	@test -z "$$(gofmt -l cmd pkg sql)" || { gofmt -l cmd pkg sql; exit 1; }
	$(GO) vet ./...
	@test -x $(GOBIN)/staticcheck || $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	$(GOBIN)/staticcheck ./...

# make bench gives each benchmark a fixed amount of work (-benchtime Nx), so
# that two runs compare; docs/development.md says what each one measures.
# PACKAGE:BENCHMARK:BENCHTIME, run in this order; 6 to 14 minutes in all
# (the last three fill a million runs each, 20 to 90 s).
BENCHES     := ./pkg/receive:BenchmarkReceive:1000x ./pkg/route:BenchmarkRouteBacklog:1x \
               ./pkg/receive:BenchmarkReceiveCPU:2000x ./pkg/route:BenchmarkRouteDeployments:1x \
               ./pkg/deploy:BenchmarkCoalesce:1x ./pkg/deploy:BenchmarkManyDeployments:1x \
               ./pkg/demo:BenchmarkPushToStep:1x ./pkg/demo:BenchmarkDaemons:5x \
               ./pkg/status:BenchmarkStatus:20x ./cmd/dh-deploy:BenchmarkHistory:5x \
               ./pkg/store:BenchmarkPrune:1x \
               ./pkg/deploy:BenchmarkPrepareRelease:5x
BENCH_COUNT ?= 1
BENCH_OUT   ?= bin/bench-$(VERSION).txt

bench: deps ## benchmarks: one report; the raw output in bin/bench-COMMIT.txt (BENCH_OUT)
	@mkdir -p $(dir $(BENCH_OUT))
	@{ echo "# commit: $(VERSION)"; echo "# date: $$(date -u '+%F %T UTC')"; echo "# nproc: $$(nproc)"; \
	  echo "# cpu model: $$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"; \
	  echo "# kernel: $$(uname -sr)"; echo "# go: $$($(GO) env GOVERSION)"; \
	  echo "# load start: $$(cut -d' ' -f1-3 /proc/loadavg)"; } > $(BENCH_OUT)
	@for b in $(BENCHES); do IFS=: read -r pkg name n <<< "$$b"; \
	  echo "make bench: $$name -benchtime $$n -count $(BENCH_COUNT) $$pkg" >&2; \
	  $(GO) test -run '^$$' -bench "^$$name\$$" -benchtime $$n -count $(BENCH_COUNT) $$pkg >> $(BENCH_OUT) 2>&1 || \
	    { tail -n 40 $(BENCH_OUT); exit 1; }; \
	done
	@echo "# load end: $$(cut -d' ' -f1-3 /proc/loadavg)" >> $(BENCH_OUT)
	@$(GO) run ./cmd/dh-benchreport $(BENCH_OUT)

FUZZTIME ?= 30s
fuzz: ## run every fuzz target in turn for FUZZTIME each (go test runs the seed corpora already)
	@set -e; for dir in $$(grep -rl --include='*_test.go' '^func Fuzz' pkg | xargs -n1 dirname | sort -u); do \
	  for t in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go | cut -d' ' -f2 | sort); do \
	    echo "== $$t ./$$dir"; \
	    $(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) ./$$dir; \
	  done; \
	done

chaos: deps build ## the end-to-end chaos and database-outage tests with the full numbers (2,000 deliveries, 30 kills, 30 s outage)
	DH_E2E_FULL=1 $(GO) test -count=1 -timeout 30m -v -run '^(TestChaos|TestPostgresOutage)$$' ./pkg/e2e

# make crash runs the power-loss tests (pkg/powerloss, on the crash file
# system of pkg/crashfs) for CRASH_ROUNDS rounds or CRASH_TIME per stage,
# whichever ends first, and prints what each broken writer of
# TestBrokenWritersCaught lost, then one line per stage: rounds,
# acknowledged, lost, corrupt; the raw output goes to bin/crash.txt.
CRASH_ROUNDS ?= 50
CRASH_TIME   ?= 3m

crash: deps ## power-loss tests, many rounds: prints rounds, acknowledged, lost, corrupt per stage
	@mkdir -p bin
	@DH_CRASH_ROUNDS=$(CRASH_ROUNDS) DH_CRASH_TIME=$(CRASH_TIME) $(GO) test -count=1 -timeout 30m -v \
	  -run '^(TestBrokenWritersCaught|Test[A-Za-z]*PowerLoss)$$' ./pkg/crashfs ./pkg/powerloss > bin/crash.txt 2>&1; \
	  status=$$?; \
	  grep -E -- '^--- (PASS|FAIL): TestBrokenWritersCaught' bin/crash.txt; \
	  sed -n 's/.*\(crashfs: writer .*\)/\1/p' bin/crash.txt; \
	  sed -n 's/.*\(powerloss: dh-[a-z-]*: rounds=[^(]*[^( ]\).*/\1/p' bin/crash.txt; \
	  if [ $$status -ne 0 ]; then tail -n 40 bin/crash.txt; exit $$status; fi

demo: build ## run the main job end to end on a throwaway setup (DH_DEMO_KEEP=1 keeps it)
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/ ./cmd/dh-demo
	bin/dh-demo --bin bin

install: build ## install tools, manual pages, units, users, polkit rules, sudoers, ACL script, roles.sql, docs under $(DESTDIR)
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(TMPFILESDIR) \
	  $(DESTDIR)$(LIBDIR) $(DESTDIR)$(SHAREDIR) $(DESTDIR)$(DOCDIR) $(DESTDIR)$(SYSCONFDIR)/dh-deployer
	test -d $(DESTDIR)$(SUDOERSDIR) || install -d -m 0750 $(DESTDIR)$(SUDOERSDIR)
	test -d $(DESTDIR)$(POLKITDIR) || install -d -m 0755 $(DESTDIR)$(POLKITDIR)
	install -m 0755 $(addprefix bin/,$(TOOLS)) $(DESTDIR)$(BINDIR)/
	install -m 0644 $(patsubst %,bin/man/%.1.gz,$(TOOLS)) $(DESTDIR)$(MANDIR)/man1/
	install -m 0644 bin/man/dh-deployer-acl.8.gz $(DESTDIR)$(MANDIR)/man8/
	for u in $(UNITS); do \
	  sed -e 's|/usr/local/bin/|$(BINDIR)/|g' -e 's|/usr/local/share/doc/dh-deployer|$(DOCDIR)|g' \
	      -e 's|/etc/dh-deployer/|$(SYSCONFDIR)/dh-deployer/|g' systemd/$$u > $(DESTDIR)$(UNITDIR)/$$u && \
	  chmod 0644 $(DESTDIR)$(UNITDIR)/$$u || exit 1; \
	done
	install -m 0644 systemd/dh-deployer.sysusers $(DESTDIR)$(SYSUSERSDIR)/dh-deployer.conf
	install -m 0644 systemd/dh-deployer.tmpfiles $(DESTDIR)$(TMPFILESDIR)/dh-deployer.conf
	install -m 0440 $(addprefix sudoers/,$(SUDOERS)) $(DESTDIR)$(SUDOERSDIR)/
	# polkitd (user polkitd) must be able to read it.
	install -m 0644 systemd/polkit/dh-deployer.rules $(DESTDIR)$(POLKITDIR)/50-dh-deployer.rules
	install -m 0755 acl/dh-deployer-acl $(DESTDIR)$(LIBDIR)/
	install -m 0644 sql/roles.sql $(DESTDIR)$(SHAREDIR)/
	install -m 0644 $(DOCS) $(DESTDIR)$(DOCDIR)/
	test -e $(DESTDIR)$(SYSCONFDIR)/dh-deployer/config.toml || \
	  install -m 0640 $$(getent group dh-deployer >/dev/null && echo -g dh-deployer) \
	    docs/config.example.toml $(DESTDIR)$(SYSCONFDIR)/dh-deployer/config.toml

uninstall: ## remove what install put (keeps $(SYSCONFDIR)/dh-deployer, queues, state, database)
	rm -f $(addprefix $(DESTDIR)$(BINDIR)/,$(TOOLS)) $(patsubst %,$(DESTDIR)$(MANDIR)/man1/%.1.gz,$(TOOLS)) \
	  $(DESTDIR)$(MANDIR)/man8/dh-deployer-acl.8.gz $(addprefix $(DESTDIR)$(UNITDIR)/,$(UNITS)) \
	  $(addprefix $(DESTDIR)$(SUDOERSDIR)/,$(SUDOERS)) $(DESTDIR)$(POLKITDIR)/50-dh-deployer.rules \
	  $(DESTDIR)$(SYSUSERSDIR)/dh-deployer.conf $(DESTDIR)$(TMPFILESDIR)/dh-deployer.conf
	rm -rf $(DESTDIR)$(LIBDIR) $(DESTDIR)$(SHAREDIR) $(DESTDIR)$(DOCDIR)

deb: ## build bin/dh-deployer_VERSION_ARCH.deb (dpkg-deb; version from git describe, see deb/version)
	@deb/build bin

clean: ## remove build output
	rm -rf bin

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'
