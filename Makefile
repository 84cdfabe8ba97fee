# vmfault: the three things a user does are `make run`, `make test` and
# `make gdb`.  Each installs what a fresh Debian machine lacks (QEMU, GRUB,
# xorriso, mtools, gdb through apt-get; rust-src through rustup) or says
# exactly what to install.
#
#   make run  [PAGING=2level|pae] [VMALLOC_FAULT=legacy|cli|sync|eager] [CMDLINE=...]
#   make test [TEST=glob] [CMDLINE=...]
#                                 every test kernel, both paging modes
#   make gdb  [PAGING=...] [VMALLOC_FAULT=...] [GDB_PORT=...] [GDB_STOP=vmalloc_fault|start|reset]
#   make iso                      target/vmfault.iso with the GRUB menu
#   make bench                    fault-path instruction counts, vmalloc
#                                 scaling, lazy vs eager -> target/bench/
#   make experiments              the race explorer and stress, all versions
#                                 and modes -> target/experiments/race.md
#   make soak [SOAK_OPS=N] [SOAK_SEED=S]
#                                 1,000,000 random operations per version
#                                 and mode (the broken ones may oops, must
#                                 not leak) -> target/soak/results.md

PAGING ?= 2level
VMALLOC_FAULT ?=
CMDLINE ?=
TEST ?=
PYTHON ?= python3
RUNNER := $(PYTHON) tests/host/runner.py

RUN_CMDLINE := $(strip $(if $(VMALLOC_FAULT),vmalloc_fault=$(VMALLOC_FAULT)) $(CMDLINE))

.PHONY: all build run test iso gdb experiments bench soak clippy fmt check clean

all: build

build:
	cargo build

run:
	$(RUNNER) run --paging $(PAGING) --cmdline "$(RUN_CMDLINE)"

test:
	$(RUNNER) test $(if $(TEST),--filter '$(TEST)') $(if $(CMDLINE),--cmdline '$(CMDLINE)')

iso:
	$(RUNNER) iso

bench:
	$(PYTHON) tests/host/bench.py

experiments:
	$(PYTHON) tests/host/experiments.py

soak:
	$(PYTHON) tests/host/soak.py

gdb:
	$(RUNNER) gdb --paging $(PAGING) --cmdline "$(RUN_CMDLINE)"

clippy:
	cargo clippy --all-targets -- -D warnings

fmt:
	cargo fmt --check

check: fmt clippy

clean:
	cargo clean
