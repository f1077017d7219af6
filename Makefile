# Offswitch: the two commands a newcomer needs are `make demo` and `make test`.
SWIFT  ?= swift
CONFIG ?= debug
BIN     = $(shell $(SWIFT) build -c $(CONFIG) --show-bin-path 2>/dev/null)

.PHONY: deps build test demo bench clean

## deps: install the system packages the build and tests need (apt, only when missing)
deps:
	@scripts/deps.sh

## build: compile offswitch and offswitch-init
build: deps
	$(SWIFT) build -c $(CONFIG)

## test: build, then run every test (root-only tests say so when they skip)
test: build
	$(SWIFT) test -c $(CONFIG)

## demo: show a sandbox at work: what the agent sees, a change that vanishes, a real shutdown
demo: build
	@OFFSWITCH=$(BIN)/offswitch scripts/demo.sh

## bench: measure offswitch beside bubblewrap, as ratios
bench: deps
	$(SWIFT) build -c release
	@OFFSWITCH=$$($(SWIFT) build -c release --show-bin-path)/offswitch scripts/bench.sh

clean:
	rm -rf .build
