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

.PHONY: all build test lint bench demo install deps help clean

all: build

build: ## build the five binaries into bin/
	@mkdir -p bin
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/ $(addprefix ./cmd/,$(TOOLS))

deps: ## install what the tests need (Debian packages as root, Go tools)
	@.ci/deps

test: deps build ## run every test against real components
	@unformatted=$$(gofmt -l cmd pkg sql); if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) test -count=1 ./...

lint: ## gofmt, go vet, staticcheck
	@test -z "$$(gofmt -l cmd pkg sql)" || { gofmt -l cmd pkg sql; exit 1; }
	$(GO) vet ./...
	@test -x $(GOBIN)/staticcheck || $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	$(GOBIN)/staticcheck ./...

bench: deps ## benchmarks (speed and memory targets live here, not in tests)
	$(GO) test -run '^$$' -bench . -benchmem ./...

demo: build ## run the main job end to end on a throwaway setup (DH_DEMO_KEEP=1 keeps it)
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/ ./cmd/dh-demo
	bin/dh-demo --bin bin

install: build ## install binaries into $(DESTDIR)$(PREFIX)/bin
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(addprefix bin/,$(TOOLS)) $(DESTDIR)$(PREFIX)/bin/

clean: ## remove build output
	rm -rf bin

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'
