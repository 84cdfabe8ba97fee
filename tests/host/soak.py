#!/usr/bin/env python3
"""make soak: the long soak, for every handler version meant to be correct
(sync, eager), in both paging modes, and for comparison the broken ones.

Each run boots the kernel with `experiment=soak soak_ops=N soak_seed=S`;
the kernel runs N random operations (vmalloc, vfree, touches, address
spaces, threads) under timer preemption and a vmalloc-touching APIC timer
interrupt, checks them against its model, frees everything and prints one
`SOAK|` line.  This script prints a table and target/soak/results.md, and
exits non-zero unless every run of a correct version did all its
operations with zero oopses, model errors, corrupted reads, leaked frames
and leaked areas.  The 2.4.1 handler (legacy) and the seed's patch (cli)
may oops - the soak stops at the first oops and says at which operation -
but even then the kernel must exit on its own, with nothing corrupted and
nothing leaked.

  SOAK_OPS=1000000 SOAK_SEED=0x20010223 python3 tests/host/soak.py
"""
import concurrent.futures
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import runner  # noqa: E402

VERSIONS = ("sync", "eager")
BROKEN = ("legacy", "cli")
OUT = os.path.join(runner.TARGET, "soak")
FIELDS = ("ops", "oopses", "model_errors", "corruptions", "leaked_frames", "leaked_areas", "lazy_faults",
          "irq_touches", "thread_touches", "switches", "checks", "oops_at")


def parse(log):
    m = re.search(r"^SOAK\|(\w+)\|(\w+)\|seed=(0x[0-9a-f]+)\|(.*)$", log, re.M)
    if not m:
        return None
    kv = dict(p.split("=", 1) for p in m.group(4).strip().split("|"))
    return {k: int(kv[k]) for k in FIELDS}


def main():
    ops = int(os.environ.get("SOAK_OPS", "1000000"))
    seed = os.environ.get("SOAK_SEED", "0x20010223")
    timeout = int(os.environ.get("SOAK_TIMEOUT", "3600"))
    runner.ensure_tools()
    # Release build, as for make bench: the debug kernel runs the same
    # code about ten times slower under TCG (make test soaks it briefly).
    bins, _ = runner.build_kernels(release=True)
    kernel = next(p for n, p, _ in bins if n == "vmfault")
    jobs = [(m, v) for m in runner.MODES for v in VERSIONS + BROKEN]

    def run(job):
        m, v = job
        b = runner.boot(kernel, f"paging={m} vmalloc_fault={v} experiment=soak soak_ops={ops} soak_seed={seed}",
                        f"soak-{m}-{v}", timeout=timeout)
        return job, b

    failed = 0
    rows = []
    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        for (m, v), b in pool.map(run, jobs):
            r = parse(b.log)
            if v in VERSIONS:
                ok = (r is not None and b.status == runner.EXIT_SUCCESS and r["ops"] == ops
                      and all(r[k] == 0 for k in ("oopses", "model_errors", "corruptions", "leaked_frames",
                                                  "leaked_areas"))
                      # The stress really happened: the timer handler read
                      # areas, and two-level sync took lazy faults.
                      and r["irq_touches"] > 0
                      and (r["lazy_faults"] > 0 or not (m == "2level" and v == "sync")))
            else:
                # An oops is allowed; a hang, a reset, a corruption or a
                # leak is not.
                ok = (r is not None and b.status in (runner.EXIT_SUCCESS, runner.EXIT_FAILED)
                      and (r["oopses"] > 0 or r["ops"] == ops)
                      and all(r[k] == 0 for k in ("model_errors", "corruptions", "leaked_frames", "leaked_areas")))
            failed += not ok
            rows.append((m, v, r, b, ok))
            print(f"soak: {m} {v}: {'ok' if ok else 'FAILED: ' + b.verdict()} in {b.seconds:.0f} s "
                  f"(log target/ktest/soak-{m}-{v}.log)", flush=True)
    md = ["# vmfault soak", "",
          f"`make soak` ({time.strftime('%Y-%m-%d')}, qemu-system-i386 TCG, release kernel, seed {seed}, "
          f"{ops} operations per run, {time.monotonic() - start:.0f} s in all).", "",
          "| paging | version | ops | oopses | model errors | corrupted reads | leaked frames | leaked areas "
          "| lazy faults | touches in interrupts | touches by threads | context switches | model checks "
          "| first oops at op | time |",
          "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for m, v, r, b, ok in rows:
        if r is None:
            md.append(f"| {m} | {v} | run failed: {b.verdict()} |" + " |" * 12)
            continue
        cells = [str(r[k]) for k in FIELDS[:-1]] + [str(r["oops_at"]) if r["oops_at"] >= 0 else "-"]
        md.append(f"| {m} | {v} | " + " | ".join(cells) + f" | {b.seconds:.0f} s |")
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "results.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    print("\n".join(md[4:]))
    print(f"soak: table in {os.path.relpath(os.path.join(OUT, 'results.md'), runner.ROOT)}")
    print(f"{len(rows) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
