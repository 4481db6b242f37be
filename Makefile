# Developer entry points; `make` alone lists them. Tests always go through
# scripts/test.sh, which makes sure Redis and PostgreSQL are up first.

GO ?= go

.DEFAULT_GOAL := help
.PHONY: help test test-race test-short lint services build dev fuzz bench

help: ## List the targets
	@awk 'BEGIN { FS = ":.*## " } /^[a-zA-Z0-9_-]+:.*## / { printf "  %-11s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

test: ## Run all tests with the race detector (scripts/test.sh; ARGS=... passes go test flags)
	scripts/test.sh $(ARGS)

test-race: test ## Same as test: -race is always on

test-short: ## Quick run: go test -short ./... without the race detector
	$(GO) test -short ./...

lint: ## Run golangci-lint (.golangci.yml: gofmt, vet, staticcheck, layering...) on every module (scripts/lint.sh)
	scripts/lint.sh

services: ## Install and start the local Redis and PostgreSQL if needed
	scripts/ensure-services.sh

build: ## Build bin/bufferd
	$(GO) build -o bin/bufferd ./cmd/bufferd

dev: ## Run bufferd dev (simulated chain, local services)
	$(GO) run ./cmd/bufferd dev

FUZZTIME ?= 10s

fuzz: ## Explore every fuzz target for FUZZTIME each (their seed corpora run in every test run)
	@for pkg in ./chain ./handlers ./lockmgr; do \
		for target in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
			echo "== $$pkg $$target"; \
			$(GO) test -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
		done; \
	done

bench: build ## Run bufferd bench --local 2 against the local services (report in bench-report.md)
	bin/bufferd bench --local 2 --out bench-report.md \
		--database-url postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable --redis-url redis://127.0.0.1:6379/0
