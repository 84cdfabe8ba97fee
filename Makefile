# vmfault: the three things a user does are `make run`, `make test` and
# `make gdb`.  Each installs what a fresh Debian machine lacks (QEMU, GRUB,
# xorriso, mtools, gdb, qemu-utils through apt-get; rust-src through
# rustup) or says exactly what to install.  `make help` prints this with
# the values the built kernel takes.
#
#   make run  [PAGING=2level|pae] [VMALLOC_FAULT=legacy|cli|cr3|sync|eager|eager-lazy]
#             [CMDLINE=...] [SMP=2]
#                                 boot the kernel, its console on the terminal
#   make run  RACE=HANDLE[,HANDLE...]
#                                 replay explored runs, narrated, then exit
#                                 (status 0: each ended as the explorer's did);
#                                 HANDLE is SCENARIO:VERSION:MODE:NCPU:K, as in
#                                 race.md's replay column
#   make test [TEST=glob] [CMDLINE=...] [VMFAULT_VERSIONS=a,b]
#                                 every test kernel, both paging modes (the CI
#                                 command); TEST narrows the cases, VMFAULT_VERSIONS
#                                 the vmalloc_fault= versions booted
#   make gdb  [PAGING=...] [VMALLOC_FAULT=...] [GDB_PORT=...] [GDB_STOP=vmalloc_fault|start|reset]
#   make gdb  RACE=HANDLE [REVERSE=1] [GDB_BATCH=file.gdb]
#                                 stop at that replay's boundary (REVERSE=1:
#                                 under record/replay, one CPU); GDB_BATCH runs
#                                 a gdb script after the stop and exits
#   make iso                      target/vmfault.iso with the GRUB menu
#   make bench [QUICK=1]          fault-path instruction counts, vmalloc
#                                 scaling, lazy vs eager -> target/bench/
#                                 (QUICK=1: the in-kernel items alone, no
#                                 host timings, no make test inside)
#   make experiments [KERNEL=ktest|dev]
#                                 the race explorers and stress, all versions
#                                 and modes -> target/experiments/race.md
#                                 (KERNEL=dev: the unoptimised kernel)
#   EMU=bochs                     run, test, experiments (EMU=both: side by
#                                 side) and soak on Bochs 2.7 instead of QEMU;
#                                 gdb stays QEMU's
#   make quantum                  Bochs's quantum swept against the two-CPU
#                                 answers -> target/experiments/bochs/quantum.md
#   make mutants [FILES="src/mm/fault.rs ..."] [IN_DIFF=1|REF]
#                                 cargo-mutants over the mm files, each
#                                 judged by the suites that cover it
#                                 -> docs/mutants.md; IN_DIFF: only lines
#                                 changed since main (or REF)
#   make mutants-list             how many mutants per file
#   make soak [SOAK_OPS=N] [SOAK_SEED=S] [SOAK_PREEMPT=none|full] [SOAK_SMP=1]
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
REVERSE ?=
EMU ?=
QUICK ?=
PYTHON ?= python3
# EMU=bochs: the boots of run, test, experiments and soak on Bochs 2.7
# (tests/host/vmfault_host/bochs.py); EMU=both for experiments.
ifneq ($(EMU),)
export VMFAULT_EMU := $(EMU)
endif
RUNNER := $(PYTHON) tests/host/runner.py

RUN_CMDLINE := $(strip $(if $(VMALLOC_FAULT),vmalloc_fault=$(VMALLOC_FAULT)) $(CMDLINE))

.PHONY: all build run test iso gdb experiments quantum bench soak mutants mutants-list clippy fmt check clean help

all: build

help:
	@sed -n '/^#   make/,/^$$/p' Makefile | sed 's/^# \{0,1\}//'
	@$(RUNNER) help

build:
	cargo build

run:
	$(RUNNER) run $(if $(RACE),--race '$(RACE)') $(if $(PAGING),--paging $(PAGING)) $(if $(SMP),--smp $(SMP)) --cmdline "$(RUN_CMDLINE)"

test:
	$(RUNNER) test $(if $(TEST),--filter '$(TEST)') $(if $(CMDLINE),--cmdline '$(CMDLINE)')

iso:
	$(RUNNER) iso

bench:
	$(PYTHON) tests/host/bench.py $(if $(filter 1,$(QUICK)),--quick)

experiments:
	$(PYTHON) tests/host/experiments.py $(if $(KERNEL),--kernel $(KERNEL))

soak:
	$(PYTHON) tests/host/soak.py

quantum:
	$(PYTHON) tests/host/quantum.py

# cargo-mutants is a host tool: `cargo install cargo-mutants --locked`.
mutants:
	$(PYTHON) tests/host/mutants.py $(if $(IN_DIFF),--in-diff $(if $(filter 1,$(IN_DIFF)),main,$(IN_DIFF))) $(FILES)

mutants-list:
	$(PYTHON) tests/host/mutants.py --list $(FILES)

gdb:
	$(RUNNER) gdb $(if $(RACE),--race '$(RACE)') $(if $(filter 1,$(REVERSE)),--reverse) $(if $(PAGING),--paging $(PAGING)) --cmdline "$(RUN_CMDLINE)"

clippy:
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --check

check: fmt clippy

clean:
	cargo clean
