# Offswitch: the two commands a newcomer needs are `make demo` and `make test`.
SWIFT  ?= swift
CONFIG ?= debug
CC     ?= cc
BIN     = $(shell $(SWIFT) build -c $(CONFIG) --show-bin-path 2>/dev/null)

BPF_CC ?= clang

.PHONY: deps build next-question recorder-bpf test demo bench palisade-image clean

## deps: install the system packages the build and tests need (apt, only when missing)
deps:
	@scripts/deps.sh

## build: compile offswitch, offswitch-init, offswitchd and next-question
build: deps
	$(SWIFT) build -c $(CONFIG)
	@$(MAKE) --no-print-directory next-question recorder-bpf BIN=$(BIN)

## next-question: the scenarios' trigger binary, static C (SwiftPM would link the Swift runtime in)
next-question:
	$(CC) -static -O2 -s -Wall -Werror -o $(BIN)/next-question Sources/next-question/main.c

## recorder-bpf: the kernel recorder's BPF program, compiled against this kernel's BTF (CO-RE), next to the binaries
recorder-bpf:
	@mkdir -p .build/bpf
	bpftool btf dump file /sys/kernel/btf/vmlinux format c > .build/bpf/vmlinux.h
	$(BPF_CC) -g -O2 -Wall -Werror -target bpf -D__TARGET_ARCH_x86 -I.build/bpf -ISources/COffswitchBPF/include \
		-c Sources/offswitch-recorder/recorder.bpf.c -o $(BIN)/offswitch-recorder.bpf.o

## test: build, then run every test (root-only tests say so when they skip): Swift, then the Inspect integration in a venv
test: build
	@scripts/deps.sh --test
	$(SWIFT) test -c $(CONFIG)
	@scripts/test-inspect.sh $(BIN)

## demo: show a sandbox at work: what the agent sees, a change that vanishes, a real shutdown
demo: build
	@OFFSWITCH=$(BIN)/offswitch scripts/demo.sh

## bench: measure offswitch beside bubblewrap, runc, nsenter and strace, as ratios (bench/results/latest.md)
bench: deps
	$(SWIFT) build -c release
	@$(MAKE) --no-print-directory next-question recorder-bpf BIN=$$($(SWIFT) build -c release --show-bin-path)
	@OFFSWITCH=$$($(SWIFT) build -c release --show-bin-path)/offswitch scripts/bench.sh

## palisade-image: build a Palisade-like Debian 12 image offline from this machine's mirror (debootstrap) and import it as offswitch/palisade:bookworm (docs/images.md)
palisade-image: build
	@OFFSWITCH=$(BIN)/offswitch scripts/palisade-image.sh

clean:
	rm -rf .build
