# vmfault: the three things a user does are `make run`, `make test` and
# `make gdb`.  Each installs what a fresh Debian machine lacks (QEMU, GRUB,
# xorriso, mtools, gdb through apt-get; rust-src through rustup) or says
# exactly what to install.
#
#   make run  [PAGING=2level|pae] [VMALLOC_FAULT=legacy|cli|sync|eager] [CMDLINE=...] [SMP=N]
#   make test [TEST=glob] [CMDLINE=...]
#                                 every test kernel, both paging modes
#   make gdb  [PAGING=...] [VMALLOC_FAULT=...] [GDB_PORT=...] [GDB_STOP=vmalloc_fault|start|reset]
#   make iso                      target/vmfault.iso with the GRUB menu
#   make bench                    fault-path instruction counts, vmalloc
#                                 scaling, lazy vs eager -> target/bench/
#   make experiments [KERNEL=ktest|dev]
#                                 the race explorers and stress, all versions
#                                 and modes -> target/experiments/race.md
#                                 (KERNEL=dev: the unoptimised kernel)
#   make mutants [FILES="src/mm/fault.rs ..."] [IN_DIFF=1|REF]
#                                 cargo-mutants over the mm files, each
#                                 judged by the suites that cover it
#                                 -> docs/mutants.md; IN_DIFF: only lines
#                                 changed since main (or REF)
#   make mutants-list             how many mutants per file
#   make soak [SOAK_OPS=N] [SOAK_SEED=S] [SOAK_PREEMPT=none|full]
#                                 1,000,000 random operations per version
#                                 and mode (the broken ones may oops, must
#                                 not leak) -> target/soak/results.md

PAGING ?=
SMP ?=
VMALLOC_FAULT ?=
CMDLINE ?=
TEST ?=
RACE ?=
KERNEL ?=
FILES ?=
IN_DIFF ?=
PYTHON ?= python3
RUNNER := $(PYTHON) tests/host/runner.py

RUN_CMDLINE := $(strip $(if $(VMALLOC_FAULT),vmalloc_fault=$(VMALLOC_FAULT)) $(CMDLINE))

.PHONY: all build run test iso gdb experiments bench soak mutants mutants-list clippy fmt check clean

all: build

build:
	cargo build

run:
	$(RUNNER) run $(if $(RACE),--race '$(RACE)') $(if $(PAGING),--paging $(PAGING)) $(if $(SMP),--smp $(SMP)) --cmdline "$(RUN_CMDLINE)"

test:
	$(RUNNER) test $(if $(TEST),--filter '$(TEST)') $(if $(CMDLINE),--cmdline '$(CMDLINE)')

iso:
	$(RUNNER) iso

bench:
	$(PYTHON) tests/host/bench.py

experiments:
	$(PYTHON) tests/host/experiments.py $(if $(KERNEL),--kernel $(KERNEL))

soak:
	$(PYTHON) tests/host/soak.py

# cargo-mutants is a host tool: `cargo install cargo-mutants --locked`.
mutants:
	$(PYTHON) tests/host/mutants.py $(if $(IN_DIFF),--in-diff $(if $(filter 1,$(IN_DIFF)),main,$(IN_DIFF))) $(FILES)

mutants-list:
	$(PYTHON) tests/host/mutants.py --list $(FILES)

gdb:
	$(RUNNER) gdb $(if $(RACE),--race '$(RACE)') $(if $(filter 1,$(REVERSE)),--reverse) $(if $(PAGING),--paging $(PAGING)) --cmdline "$(RUN_CMDLINE)"

clippy:
	cargo clippy --all-targets -- -D warnings

fmt:
	cargo fmt --check

check: fmt clippy

clean:
	cargo clean
