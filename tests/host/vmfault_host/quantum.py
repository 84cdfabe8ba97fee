"""`make quantum`: Bochs's `quantum` (how many instructions one guest CPU
runs before Bochs's single host thread turns to the next) against the
two-CPU answers.

The deterministic explorers must not care: CPU A waits at its boundary
while CPU B runs its whole access (crates/lab/src/race/handoff.rs), so which CPU
Bochs happens to run is a matter of how many instructions each spins, not
of what each does.  Each quantum boots the two-CPU `experiment=race` of
2.4.1's handler and 2.4.5-pre2's, and every row's counts (the fields
`make experiments EMU=both` compares) must be equal across quanta.  The
free-running stress is the soak with two CPUs: its counts are what the
quantum does to a race no one steers, reported, not judged, except that
a correct version must stay clean.

Writes target/experiments/bochs/quantum.md.
"""
import concurrent.futures
import os
import sys
import time

from vmfault_host import bochs, build, deps, elf, experiments, soak
from vmfault_host.paths import TARGET

# Bochs takes 1 to 32 ("out of range 1 to 32" past that).
QUANTA = (1, 4, 16, 32)
VERSIONS = ("legacy", "sync")
SOAK_OPS = 20000
OUT = os.path.join(TARGET, "experiments", "bochs", "quantum.md")
SOAK_FIELDS = ("ops", "oopses", "lazy_faults", "irq_touches", "thread_touches", "switches", "cross_cpu")


def main():
    deps.ensure_tools()
    if not bochs.available():
        sys.exit(f"quantum: needs Bochs: {bochs.APT}")
    kernel = build.build_main(profile="ktest")
    rel = build.main_kernel(build.build_kernels(release=True)[0])
    k = elf.constants(kernel)
    start = time.monotonic()

    def race(job):
        q, v = job
        b = bochs.boot(kernel, f"paging=2level vmalloc_fault={v} experiment=race", f"quantum-{q}-{v}",
                       timeout=3000, smp=2, quantum=q)
        return job, experiments.parse(b.log), b

    def free(job):
        q, v = job
        b = bochs.boot(rel, f"paging=2level vmalloc_fault={v} experiment=soak soak_ops={SOAK_OPS} "
                            f"soak_seed={k.soak_seed_default:#x}", f"quantum-soak-{q}-{v}",
                       timeout=3000, smp=2, quantum=q)
        return job, soak.parse(b.log), b

    jobs = [(q, v) for q in QUANTA for v in VERSIONS]
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        races = list(pool.map(race, jobs))
        frees = list(pool.map(free, jobs))

    md = ["# Bochs's quantum against the two-CPU answers", "",
          f"`make quantum` ({time.strftime('%Y-%m-%d')}, Bochs 2.7, two CPUs, quanta {', '.join(map(str, QUANTA))}; "
          f"{time.monotonic() - start:.0f} s in all).", "",
          "Deterministic explorers (the two-CPU `experiment=race` rows): every compared count per quantum.", "",
          "| version | scenario | " + " | ".join(f"quantum {q}" for q in QUANTA) + " | same |",
          "|---|---|" + "---|" * len(QUANTA) + "---|"]
    failed = 0
    for v in VERSIONS:
        per_q = {q: (rows, complete, b) for (q, vv), (rows, _, complete), b in races if vv == v}
        names = sorted(set().union(*(set(r) for r, _, _ in per_q.values())))
        for name in names:
            cells = []
            for q in QUANTA:
                rows, complete, b = per_q[q]
                r = rows.get(name)
                cells.append("; ".join(f"{label} {r[f]}" for f, label in experiments.COMPARED if r and f in r)
                             if r else f"missing ({b.verdict()})")
            same = len(set(cells)) == 1
            failed += not same
            md.append(f"| {v} | {name} | " + " | ".join(cells if not same else [cells[0]] + ["="] * (len(QUANTA) - 1))
                      + f" | {'yes' if same else '**no**'} |")
    md += ["", f"Free-running: `make soak`'s mix with two CPUs, {SOAK_OPS} operations, the same seed, per quantum.", "",
           "| version | quantum | " + " | ".join(SOAK_FIELDS) + " | boot |", "|---|---:|" + "---:|" * len(SOAK_FIELDS) + "---:|"]
    for (q, v), r, b in sorted(frees, key=lambda x: (x[0][1], x[0][0])):
        if r is None:
            md.append(f"| {v} | {q} | run failed: {b.verdict()} |" + " |" * len(SOAK_FIELDS))
            failed += v in k.smp_correct_versions
            continue
        if v in k.smp_correct_versions and r["oopses"]:
            failed += 1
        md.append(f"| {v} | {q} | " + " | ".join(str(r.get(f, "-")) for f in SOAK_FIELDS) + f" | {b.seconds:.0f} s |")
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        f.write("\n".join(md) + "\n")
    print("\n".join(md))
    print(f"written: {os.path.relpath(OUT)}")
    return 1 if failed else 0
