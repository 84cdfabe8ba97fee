#!/usr/bin/env python3
"""make soak: the long soak, for every handler version, in both paging
modes, on two CPUs (SOAK_SMP=1 for one).

Each run boots the kernel with `experiment=soak soak_ops=N soak_seed=S`
under `-smp SOAK_SMP`; the kernel runs N random operations (vmalloc,
vfree, touches, address spaces, threads), from one driver per CPU on one
model, under a vmalloc-touching APIC timer interrupt on each CPU, checks
them against its model, frees everything and prints one `SOAK|` line.
This script prints a table and target/soak/results.md, and exits non-zero
unless every run of a version meant to be correct did all its operations
with zero oopses, model errors, corrupted reads, leaked frames and leaked
areas.  The others may oops - the 2.4.1 handler (legacy), the seed's
patch (cli), 2.4.5-pre1 (cr3) and, on two CPUs, 5.8's eager sync (the
2020 regression) - and the soak then stops and says at which operation,
but even then the kernel must exit on its own, with nothing corrupted and
nothing leaked.

  SOAK_OPS=N SOAK_SEED=S SOAK_SMP=C python3 tests/host/soak.py
                        (default: the kernel's soak_ops= and soak_seed=,
                        two CPUs)

Which versions are meant to be correct (on one CPU, on two), and the
defaults, are read from the kernel (src/host_abi.rs).
"""
import concurrent.futures
import os
import re
import sys
import time

from vmfault_host import build, deps, elf
from vmfault_host.paths import ROOT, TARGET
from vmfault_host.qemu import boot, emulator

OUT = os.path.join(TARGET, "soak")
FIELDS = ("ops", "oopses", "model_errors", "corruptions", "leaked_frames", "leaked_areas", "lazy_faults",
          "irq_touches", "thread_touches", "switches", "checks", "cpus", "cross_cpu", "oops_at")


def parse(log):
    m = re.search(r"^SOAK\|(\w+)\|([\w-]+)\|seed=(0x[0-9a-f]+)\|(.*)$", log, re.M)
    if not m:
        return None
    kv = dict(p.split("=", 1) for p in m.group(4).strip().split("|"))
    return {k: int(kv[k]) for k in FIELDS}


def first_oops(log):
    """"op N, CPU c: what" of the first oops the kernel reported, or "-"."""
    m = re.search(r"^soak: op (\d+) on CPU (\d+) \(seed [^)]*\): (.*)$", log, re.M)
    return f"op {m.group(1)}, CPU {m.group(2)}: {m.group(3).strip()}" if m else "-"


def main():
    timeout = int(os.environ.get("SOAK_TIMEOUT", "3600"))
    deps.ensure_tools()
    # Release build, as for make bench: the debug kernel runs the same
    # code about ten times slower under TCG (make test soaks it briefly).
    bins, _ = build.build_kernels(release=True)
    kernel = build.main_kernel(bins)
    k = elf.constants(kernel)
    ops = int(os.environ.get("SOAK_OPS", str(k.soak_ops_default)))
    seed = os.environ.get("SOAK_SEED", f"{k.soak_seed_default:#x}")
    # none: 2.4's figures (kernel code runs until it yields); full: the
    # timer preempts kernel code too, inside vmalloc_fault and inside 5.8's
    # map-then-sync window.
    preempt = os.environ.get("SOAK_PREEMPT", "none")
    smp = int(os.environ.get("SOAK_SMP", "2"))
    correct = k.smp_correct_versions if smp > 1 else k.correct_versions
    # The others (2.4.1's handler, the seed's cli patch, 2.4.5-pre1, and
    # on two CPUs 5.8's eager sync) for comparison.
    broken = tuple(v for v in k.versions if v not in correct)
    jobs = [(m, v) for m in k.modes for v in correct + broken]

    def run(job):
        m, v = job
        b = boot(kernel, f"paging={m} vmalloc_fault={v} preempt={preempt} experiment=soak soak_ops={ops} "
                         f"soak_seed={seed}", f"soak-{m}-{v}-{emulator()}", timeout=timeout, smp=smp if smp > 1 else None)
        return job, b

    failed = 0
    rows = []
    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        for (m, v), b in pool.map(run, jobs):
            r = parse(b.log)
            if v in correct:
                ok = (r is not None and b.status == b.success and r["ops"] == ops
                      and all(r[k] == 0 for k in ("oopses", "model_errors", "corruptions", "leaked_frames",
                                                  "leaked_areas"))
                      # The stress really happened: the timer handler read
                      # areas, and two-level sync took lazy faults.
                      and r["irq_touches"] > 0
                      and r["cpus"] == smp
                      and (r["lazy_faults"] > 0 or not (m == "2level" and v == "sync")))
            else:
                # An oops is allowed; a hang, a reset, a corruption or a
                # leak is not.
                ok = (r is not None and b.status in (b.success, b.failure)
                      and (r["oopses"] > 0 or r["ops"] == ops)
                      and all(r[k] == 0 for k in ("model_errors", "corruptions", "leaked_frames", "leaked_areas")))
            failed += not ok
            rows.append((m, v, r, b, ok))
            print(f"soak: {m} {v}: {'ok' if ok else 'FAILED: ' + b.verdict()} in {b.seconds:.0f} s "
                  f"(log target/ktest/soak-{m}-{v}-{emulator()}.log)", flush=True)
    md = ["# vmfault soak", "",
          f"`make soak{' EMU=bochs' if emulator() == 'bochs' else ''}` ({time.strftime('%Y-%m-%d')}, "
          f"{'Bochs 2.7' if emulator() == 'bochs' else 'qemu-system-i386 TCG'}, release kernel, {smp} CPU(s), "
          f"preempt={preempt}, seed {seed}, {ops} operations per run, {time.monotonic() - start:.0f} s in all).",
          "",
          "| paging | version | ops | oopses | model errors | corrupted reads | leaked frames | leaked areas "
          "| lazy faults | touches in interrupts | touches by threads | context switches | model checks "
          "| CPUs | cross-CPU touches | first oops (operation, CPU, what) | time |",
          "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for m, v, r, b, ok in rows:
        if r is None:
            md.append(f"| {m} | {v} | run failed: {b.verdict()} |" + " |" * 14)
            continue
        cells = [str(r[k]) for k in FIELDS[:-1]] + [first_oops(b.log).replace("|", "\\|")]
        md.append(f"| {m} | {v} | " + " | ".join(cells) + f" | {b.seconds:.0f} s |")
    out = OUT if emulator() == "qemu" else os.path.join(OUT, emulator())
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    print("\n".join(md[4:]))
    print(f"soak: table in {os.path.relpath(os.path.join(out, 'results.md'), ROOT)}")
    print(f"{len(rows) - failed} passed, {failed} failed")
    return 1 if failed else 0
