#!/usr/bin/env python3
"""make experiments: boot the kernel with `experiment=race` under every
vmalloc_fault version in both paging modes, collect its EXP lines, and
write target/experiments/race.md (also printed)."""
import argparse
import concurrent.futures
import os
import shutil
import sys
import time

from vmfault_host import bochs, build, deps, elf, q1, replay, strips
from vmfault_host.paths import ROOT, TARGET
from vmfault_host.qemu import MEMORY, boot

OUT = os.path.join(TARGET, "experiments")
# The pictures docs/experiments.md and the README show: regenerated here.
PICTURES = os.path.join(ROOT, "docs", "pictures")


# An EXP row's scenario as a replay handle names it (crates/lab/src/race/replay.rs
# SCENARIOS), and its CPUs; torn<i> is the i-th torn scenario.
REPLAY_SCENARIOS = {"thread": ("thread", 1), "irq": ("irq", 1), "depth2": ("nested2", 1),
                    "window": ("switch", 1), "window_kthread": ("switch_kthread", 1), "r2020": ("r2020", 1),
                    "cpu2_threads": ("threads", 2), "cpu2_processes": ("processes", 2), "cpu2_r2020": ("r2020", 2),
                    "fork": ("fork", 2), "fork_sleep": ("fork_sleep", 1)}


def replay_scenario(k, name):
    """(scenario, CPUs) of EXP row `name`, or None."""
    if name in REPLAY_SCENARIOS:
        return REPLAY_SCENARIOS[name]
    if name.startswith("point3_") and name in k.race_scenarios:
        return name, 2
    if name.startswith("torn") and name[4:].isdigit():
        torn = [s for s in k.race_scenarios if s.startswith("torn_")]
        i = int(name[4:])
        return (torn[i], 2) if i < len(torn) else None
    return None


def first_boundary(strip):
    """The first failing boundary of a strip, else its first clean one."""
    for want in (strips.FAILING, "c"):
        for start, code, _ in strip.runs:
            if code in want:
                return start
    return None


def replay_handle(k, m, v, cpus, name, strips_of_boot, r=None):
    """The replay handle of row `name` (its first failing boundary, or its
    first clean one), or None for a row with no boundary."""
    sc = replay_scenario(k, name)
    if sc is None:
        return None
    if name == "fork_sleep":
        # Its boundaries are sleep points: no strip, the row says where.
        first = int((r or {}).get("first", "-1"))
        return f"{sc[0]}:{v}:{m}:{cpus}cpu:{max(first, 0)}" if r and int(r.get("stepped", 0)) else None
    if name.startswith("torn"):
        first = (r or {}).get("first_torn", "-")
        kk = int(first.split(":")[0]) if first not in ("-", "") else 0
        return f"{sc[0]}:{v}:{m}:{cpus}cpu:{kk}" if r and int(r.get("stepped", 0)) else None
    st = strips_of_boot.get(name)
    kk = first_boundary(st) if st else None
    return None if kk is None else f"{sc[0]}:{v}:{m}:{cpus}cpu:{kk}"


def boundaries(k, results, results2, strips_of):
    """Each row's boundary count and the spans its runs use, by handle row
    (replay.save_boundaries): what `make run RACE=` checks before it boots."""
    out = {}
    for cpus, res in ((1, results), (2, results2)):
        for (m, v), (rows, _, _, _) in res.items():
            for name, r in rows.items():
                sc = replay_scenario(k, name)
                if sc is None:
                    continue
                key = f"{sc[0]}:{v}:{m}:{sc[1]}cpu"
                st = strips_of.get((m, v, cpus), {}).get(name)
                if st is not None:
                    spans = [[a, e - 1] for (a, code, _), e in zip(st.runs, st.ends()) if code in "cfbxh"]
                    out[key] = {"n": st.total, "runnable": spans}
                elif name.startswith("torn") or name == "fork_sleep":
                    n = int(r.get("stepped", 0))
                    out[key] = {"n": n, "runnable": [[0, n - 1]] if n else []}
                elif "stepped" in r:
                    out[key] = {"n": int(r["stepped"]), "runnable": []}
    return out


def collapsed(quiet, table):
    """The PAE rows of a table with nothing to show, as one sentence."""
    versions = sorted({v for t, m, v in quiet if t == table})
    if not versions:
        return []
    return ["", f"PAE: no vmalloc fault under any version ({', '.join(versions)}): the kernel PMD page is shared, so",
            "nothing is stale; 0 in every column, and no boundary to replay."]


def span(row):
    """A row's first..last failing boundary, or `-`."""
    return f"{row['first']}..{row['last']}" if row["first"] != "-1" else "-"


def parse(log):
    rows, groups = {}, {}
    for line in log.splitlines():
        if line.startswith("EXP|") and not line.startswith(("EXP|begin", "EXP|end")):
            parts = line.split("|")
            rows[parts[1]] = dict(p.split("=", 1) for p in parts[2:])
        elif line.startswith("EXPG|"):
            _, name, text = line.split("|", 2)
            groups.setdefault(name, []).append(text)
    return rows, groups, "EXP|end" in log


def rows_named(res, name):
    """(paging, version, row) of every boot of `res` that measured `name`,
    in the boots' order: one table line each."""
    for (m, v), (rows, _, _, _) in res.items():
        r = rows.get(name)
        if r:
            yield m, v, r


def windows_section(results, results2, kernel):
    """Each failure window of each strip, by boundary and by source line
    (addr2line on the kernel ELF): where the race opens and closes."""
    found = []
    for cpus, res in ((1, results), (2, results2)):
        for (m, v), (rows, groups, complete, b) in res.items():
            for name, st in strips.parse(b.log).items():
                ws = strips.windows(st)
                # A fragmented strip (point 3 under low memory): its first
                # windows and its last, and how many lie between.
                shown = ws if len(ws) <= 4 else ws[:3] + [None] + ws[-1:]
                for w in shown:
                    if w is None:
                        found.append((m, v, cpus, name, st.total, None, len(ws) - 4, None, None))
                        continue
                    first, end, open_eip, close_eip = w
                    found.append((m, v, cpus, name, st.total, first, end, open_eip, close_eip))
    labels = strips.addr2line(kernel, [w[i] for w in found for i in (7, 8) if w[i] is not None])
    md = ["", "## Where each window opens and closes", "",
          "Every span of failing boundaries in every strip, with the source line of its first boundary and of the",
          "first boundary after it (inside a library helper: the kernel line that called it).", "",
          "| paging | version | CPUs | scenario | boundaries | window | opens at | closes at |",
          "|---|---|---:|---|---:|---|---|---|"]
    for m, v, cpus, name, total, first, end, o, c in found[:200]:
        if first is None:
            md.append(f"| {m} | {v} | {cpus} | {name} | {total} | ... {end} more windows | | |")
            continue
        md.append(f"| {m} | {v} | {cpus} | {name} | {total} | {first}..{end - 1} | {labels.get(o, hex(o))} | "
                  f"{labels.get(c, hex(c)) if c is not None else 'the end'} |")
    if len(found) > 200:
        md.append(f"| ... {len(found) - 200} more | | | | | | | |")
    return md


def checks_section(results, results2):
    """What every run checked of itself (the engine's `misplaced`, the
    stepper's `entered`), summed over every scenario of every boot."""
    void = retried = unmeasured = outside = 0
    worst = []
    for (m, v), (rows, _, _, _) in list(results.items()) + list(results2.items()):
        for name, r in rows.items():
            retried += int(r.get("retried", 0))
            unmeasured += int(r.get("misplaced", 0))
            outside += int(r.get("not_entered", 0))
            if int(r.get("retried", 0)):
                worst.append(f"{m} {v} {name} {r['retried']}")
    void = retried + unmeasured
    return ["", "Checks: each run that reaches its boundary through DR0's counted hits also checks it is the dry",
            "run's boundary (the same stack depth below the trigger); a run that is not lets nobody in, is void,",
            f"and is run again (up to `engine::RETRIES` times). Void runs: {void} ({', '.join(worst) or 'none'});",
            f"boundaries left unmeasured: {unmeasured}; runs where the other party did not get in inside the path: {outside}."]


def point3_rows(results2):
    """The point-3 strips, one row per get_pte_kernel_slow and memory state."""
    for (m, v), (rows, groups, complete, b) in results2.items():
        st = strips.parse(b.log)
        if "point3_242" in st:
            return [(label, st[name]) for name, label in (
                ("point3_242", "2.4.2, plentiful"), ("point3_242_low", "2.4.2, low memory"),
                ("point3_seed", "seed, plentiful"), ("point3_seed_low", "seed, low memory")) if name in st]
    return []


def fork_section(results, results2, cell):
    """Scenario 8, the race that ended set_pgdir: race.md's two tables."""
    md = ["", "The race that ended set_pgdir (scenario 8): 2.4.0-test10-pre1's fork copies the kernel part of",
          "swapper_pg_dir in `get_pgd_slow` and links the child into the task list at `SET_LINKS`; its vmalloc writes a",
          "new pgd entry into every linked task (`set_pgdir`). Two CPUs: B's vmalloc of a fresh slot at every boundary of",
          "A's fork. Missed: the child's directory lacks the entry afterwards (for good: test10-pre1 has no vmalloc",
          "fault). The child's touch then runs the booted `vmalloc_fault=`. B waited: for `tasklist_lock`.", "",
          "| paging | version | boundaries | runs | child missed | window | parent missed | set_pgdir ran | child's touch: oops | repaired | outcome | B waited | replay |",
          "|---|---|---:|---:|---:|---|---:|---:|---:|---:|---|---:|---|"]
    for m, v, r in rows_named(results2, "fork"):
        md.append(f"| {m} | {v} | {r['stepped']} | {r['runs']} | {r['failures']} | {span(r)} | {r['parent_missed']} | "
                  f"{r['set_pgdir']} | {r['touch_oopses']} | {r['touch_clean']} | {r['reasons']} | {r['waited']} | "
                  f"{cell(m, v, 2, 'fork', r)} |")
    md += ["", "One CPU: test10-pre1 has no kernel preemption, and an interrupt handler may not vmalloc, so B (another",
           "task) runs only where A's fork sleeps: at each `GFP_KERNEL` allocation between `pgd_alloc` and `SET_LINKS`",
           "(0: get_pgd_slow's page, before the copy; 1: dup_mmap's vma; 2: copy_page_range's pte page), memory low.", "",
           "| paging | version | sleep points | child missed | at | child's touch: oops | repaired | outcome | replay |",
           "|---|---|---:|---:|---|---:|---:|---|---|"]
    for m, v, r in rows_named(results, "fork_sleep"):
        md.append(f"| {m} | {v} | {r['stepped']} | {r['failures']} | {span(r)} | {r['touch_oopses']} | "
                  f"{r['touch_clean']} | {r['reasons']} | {cell(m, v, 1, 'fork_sleep', r)} |")
    return md


def pictures(k, results, results2, kernel, publish, out=OUT):
    """One strip picture per scenario, a row per version (two-level: in PAE
    nothing faults), written to target/experiments and, for the default
    kernel (`publish`), docs/pictures.  Each run's tooltip names its source
    line and the replay handle of its first boundary, nothing of the build
    (no address), so an unchanged tree draws the same pictures."""
    def rows(res, name, cpus, modes=("2level",)):
        out = []
        for (m, v), (log_rows, groups, complete, b) in res.items():
            st = strips.parse(b.log).get(name)
            sc = replay_scenario(k, name)
            if m in modes and st and st.total > 0:
                prefix = f"{sc[0]}:{v}:{m}:{cpus}cpu" if sc else None
                out.append((v if len(modes) == 1 else f"{v} {m}", st, prefix))
        return out

    def point3_rows():
        for (m, v), (rows_, groups, complete, b) in results2.items():
            st = strips.parse(b.log)
            if "point3_242" in st:
                return [(label, st[name], f"{name}:{v}:{m}:2cpu") for name, label in (
                    ("point3_242", "2.4.2, plentiful"), ("point3_242_low", "2.4.2, low memory"),
                    ("point3_seed", "seed, plentiful"), ("point3_seed_low", "seed, low memory")) if name in st]
        return []

    pics = {
        "race-nested-irq": ("Seed race 2: the nested interrupt at each boundary of the vmalloc fault (one CPU)",
                            rows(results, "thread", 1)),
        "race-cpu2-threads": ("Cox and Hemment: CPU B, a thread of A's mm, at each boundary of A's fault",
                              rows(results2, "cpu2_threads", 2)),
        "race-cpu2-processes": ("Andrea's \"can't happen\": CPU B in another process, at each boundary of A's fault",
                                rows(results2, "cpu2_processes", 2)),
        "race-2020-one-cpu": ("2020 regression, one CPU: B runs when A is preempted at each boundary after its set_pmd",
                              rows(results, "r2020", 1)),
        "race-2020-two-cpus": ("2020 regression, two CPUs: B maps and touches at each boundary of A's map and sync",
                               rows(results2, "cpu2_r2020", 2)),
        "race-point3": ("Seed point 3: B's 2.4.2 vmalloc at each boundary of A's (big kernel lock, low memory)",
                        point3_rows()),
    }
    pics = {k_: v_ for k_, v_ in pics.items() if v_[1]}
    paths = strips.write_pictures(out, pics, kernel)
    if not publish:
        return [os.path.basename(p) for p in paths]
    os.makedirs(PICTURES, exist_ok=True)
    for p in paths:
        dst = os.path.join(PICTURES, os.path.basename(p))
        with open(p) as src:
            text = src.read()
        # Rewritten only when the picture changed: git stays clean otherwise.
        old = open(dst).read() if os.path.exists(dst) else None
        if text != old:
            with open(dst, "w") as f:
                f.write(text)
    return [os.path.basename(p) for p in paths]


# What the side-by-side table compares: per EXP row, the fields that are
# counts (timings and rates are the host's, not the emulator's).
COMPARED = (("stepped", "boundaries"), ("if", "IF=1"), ("in_window", "in the window"),
            ("preemptible", "preemptible"), ("runs", "runs"), ("failures", "failing"),
            ("first", "first failing"), ("b_failures", "B failing"), ("waited", "B waited"),
            ("faults", "lazy faults"), ("parent_missed", "parent missed"), ("set_pgdir", "set_pgdir ran"),
            ("touch_oopses", "touch oops"), ("touch_clean", "touch repaired"), ("torn", "torn"), ("torn_present", "torn, present"),
            ("reasons", "outcomes"), ("not_entered", "runs the other party missed"),
            ("misplaced", "unmeasured"), ("retried", "void runs"), ("pairs", "pairs"),
            ("clean", "clean"), ("oopses", "oops"), ("hangs", "hangs"), ("inner_stepped", "nested boundaries"),
            ("inner_shut", "nested, shut"), ("not_sent", "pairs the second interrupt missed"))
SIDE = os.path.join(OUT, "side-by-side.md")
DOCS = os.path.join(ROOT, "docs", "experiments.md")
MARK_BEGIN = "<!-- side-by-side: written by `make experiments EMU=both` -->"
MARK_END = "<!-- end of side-by-side -->"


def paths(log):
    """{scenario: [eip, ...]} of a boot's EXPP lines."""
    out = {}
    for line in log.splitlines():
        if line.startswith("EXPP|"):
            _, name, rest = line.split("|", 2)
            out[name] = [int(x, 16) for x in rest.split(",") if x]
    return out


def where_paths_part(q, b, kernel):
    """Where two paths of one scenario part: '-' if they are the same,
    else the first boundary that differs and each side's instruction
    there (addr2line)."""
    if q == b:
        return "-"
    i = next((i for i, (x, y) in enumerate(zip(q, b)) if x != y), min(len(q), len(b)))
    eips = [e for e in (q[i] if i < len(q) else None, b[i] if i < len(b) else None) if e is not None]
    labels = strips.addr2line(kernel, eips)
    side = lambda p: labels.get(p[i], hex(p[i])) if i < len(p) else "(ended)"
    return f"boundary {i}: QEMU {side(q)}, Bochs {side(b)}"


def side_by_side(k, qemu, bochs_, controls):
    """QEMU's and Bochs's counts for every row of every table, and where
    each pair of paths parts; target/experiments/side-by-side.md, and the
    section of docs/experiments.md between its markers."""
    rows = []
    differing = 0
    qc, bc = controls["qemu"], controls["bochs"]
    same = qc.reset and bc.reset
    differing += not same
    rows.append(f"| 1 | 2level | - | question 1's control (`experiment=triple_fault`) | {'same' if same else '**differs**'} | "
                f"QEMU: {qc.cell()}; Bochs: {bc.cell()} | - |")
    for cpus in (0, 1):
        for (m, v), (qrows, _, _, qb) in qemu[cpus].items():
            brow = bochs_[cpus].get((m, v))
            if brow is None:
                continue
            brows, _, _, bb = brow
            qp, bp = paths(qb.log), paths(bb.log)
            for name in sorted(set(qrows) | set(brows)):
                if name in ("stress",):
                    continue
                qr, br = qrows.get(name, {}), brows.get(name, {})
                cells, same = [], True
                for field, label in COMPARED:
                    if field in qr or field in br:
                        a, c = qr.get(field, "-"), br.get(field, "-")
                        same &= a == c
                        cells.append(f"{label} {a}" if a == c else f"**{label} {a} / {c}**")
                part = where_paths_part(qp.get(name, []), bp.get(name, []), k.path) if name in qp else "-"
                same &= part == "-"
                differing += not same
                rows.append(f"| {cpus + 1} | {m} | {v} | {name} | {'same' if same else '**differs**'} | "
                            f"{'; '.join(cells)} | {part} |")
    md = [MARK_BEGIN, "",
          f"QEMU and Bochs, every row of race.md's tables (`make experiments EMU=both`, "
          f"{time.strftime('%Y-%m-%d')}): a cell reads `QEMU / Bochs` where they differ; the last column names the",
          "first boundary where the two paths part (their `EXPP` lines, addr2line). The stress is left out: it is",
          "host timing, not an answer.", "",
          "| CPUs | paging | version | scenario | verdict | counts | paths part at |", "|---:|---|---|---|---|---|---|"]
    md += rows
    md += ["", f"{len(rows)} rows, {differing} differing.", "", MARK_END]
    os.makedirs(OUT, exist_ok=True)
    with open(SIDE, "w") as f:
        f.write("\n".join(md) + "\n")
    with open(DOCS) as f:
        doc = f.read()
    if MARK_BEGIN in doc and MARK_END in doc:
        head, rest = doc.split(MARK_BEGIN, 1)
        tail = rest.split(MARK_END, 1)[1]
        new = head + "\n".join(md) + tail
        if new != doc:
            with open(DOCS, "w") as f:
                f.write(new)
    print(f"written: {os.path.relpath(SIDE)} ({differing} of {len(rows)} rows differ)")


EMULATOR_WORDS = {"qemu": "qemu-system-i386 TCG", "bochs": "Bochs 2.7 (one host thread, every guest CPU)"}


# Which build of the kernel the experiments run (`make experiments
# KERNEL=...`): `ktest`, the test kernels' profile (opt-level 1 with the
# debug checks), by default, so `make test` pins the very counts race.md
# reports, and Linux's own code, too, was compiled optimised; `dev`, the
# unoptimised kernel `make gdb` steps, whose paths are 20-50 times longer
# (its counts: docs/experiments.md).
KERNELS = {"ktest": ("ktest", "optimised kernel (opt-level 1, the test kernels' profile)"),
           "dev": (None, "unoptimised dev kernel (the one `make gdb` steps)")}


def main(argv=None):
    ap = argparse.ArgumentParser(description="make experiments: the race explorers, every version and mode")
    ap.add_argument("--kernel", choices=sorted(KERNELS), default="ktest",
                    help="which build of the kernel to run (default: ktest)")
    ap.add_argument("--emu", choices=("qemu", "bochs", "both"), default=os.environ.get("VMFAULT_EMU") or "qemu",
                    help="qemu (target/experiments/race.md), bochs (target/experiments/bochs/race.md) or both "
                         "(and their counts side by side, target/experiments/side-by-side.md)")
    args = ap.parse_args(argv)
    profile, kernel_words = KERNELS[args.kernel]
    deps.ensure_tools()
    kernel = build.build_main(profile=profile)
    k = elf.constants(kernel)
    jobs = [(m, v) for m in k.modes for v in k.versions]
    start = time.monotonic()

    emus = {"qemu": ["qemu"], "bochs": ["bochs"], "both": ["qemu", "bochs"]}[args.emu]
    if "bochs" in emus and not bochs.available():
        sys.exit(f"experiments: EMU={args.emu} needs Bochs: {bochs.APT}")

    def run(job):
        emu, m, v, cpus = job
        b = boot(kernel, f"paging={m} vmalloc_fault={v} experiment=race",
                 f"experiment-{emu}-{m}-{v}" + (f"-smp{cpus}" if cpus > 1 else ""), timeout=900,
                 smp=cpus if cpus > 1 else None, emu=emu)
        return job, b

    # One CPU: every one-CPU explorer, window and stress; two CPUs: the
    # kernel runs only the two-CPU scenarios.
    found = {emu: ({}, {}) for emu in emus}
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        # The longest boots first (measured: Bochs's, then the two-CPU boot
        # of the default version, which also runs point 3's model and the
        # torn entries; the one-CPU cli boot, whose every stress round
        # oopses), so two workers end together.
        first = [("2level", "sync", 2), ("2level", "cli", 1), ("2level", "eager", 2), ("2level", "eager-lazy", 2)]
        order = sorted([(e, m, v, c) for e in emus for c in (1, 2) for m, v in jobs],
                       key=lambda j: (j[0] != "bochs", first.index(j[1:]) if j[1:] in first else len(first),
                                      j[1] != "2level"))
        for (emu, m, v, cpus), b in pool.map(run, order):
            rows, groups, complete = parse(b.log)
            found[emu][0 if cpus == 1 else 1][(m, v)] = (rows, groups, complete, b)
            print(f"experiments: {emu} {m} {v}{' (2 CPUs)' if cpus > 1 else ''}: "
                  f"{'done' if complete else b.verdict()} in {b.seconds:.0f} s", flush=True)
    # Question 1's control: the same kernel, made to triple fault.
    controls = {emu: q1.control(kernel, emu) for emu in emus}
    for emu, c in controls.items():
        print(f"experiments: {emu} question 1's control: {c.cell()} in {c.seconds:.0f} s", flush=True)

    def report(emu, results, results2):
        """race.md of one emulator's boots."""
        out = OUT if emu == "qemu" else os.path.join(OUT, emu)
        strips_of = {key: strips.parse(b.log) for key, (_, _, _, b) in
                     [((m, v, 1), r) for (m, v), r in results.items()] + [((m, v, 2), r) for (m, v), r in results2.items()]}

        def cell(m, v, cpus, name, r=None):
            """The row's `replay` cell: RACE= of its first failing boundary, or
            its first boundary where none fails; `-` for a row with none."""
            h = replay_handle(k, m, v, cpus, name, strips_of.get((m, v, cpus), {}), r)
            return f"`RACE={h}`" if h else "-"

        md = [f"# vmfault race experiments on {'QEMU' if emu == 'qemu' else 'Bochs'}", "",
              f"Generated by `make experiments{'' if args.kernel == 'ktest' else ' KERNEL=' + args.kernel}` ({time.strftime('%Y-%m-%d')}, "
              f"{EMULATOR_WORDS[emu]}, {kernel_words}, {MEMORY} MiB).",
              "",
              "Every row's `replay` cell names one of its runs (its first failing boundary, or its first boundary where",
              "none fails): `make run RACE=HANDLE` replays and narrates it, `make gdb RACE=HANDLE` stops there",
              "(docs/debugging.md).",
              "",
              "Explorer: the nested test interrupt delivered at every instruction boundary of the outer vmalloc fault",
              "(from `#PF` entry to `iret`) where the interrupted code has IF=1. Failures = runs that ended in an oops.",
              "CR2 read at = the boundary (0-based) whose instruction reads CR2; Linux 2.4.1 reads it at boundary 27-32",
              "(instruction 28-33 from the vector: `page_fault` 2, `error_code` 25 to its call, 0-5 of prologue; see",
              "docs/experiments.md). Reasons: `Oops(why)` the outer fault died in bad_area, `OopsClobberedCr2(why)` it",
              "died working on a nested fault's address (CR2 overwritten before its `movl %cr2`), `NestedOops(level, why)`",
              "and `NestedOopsClobberedCr2(level, why)` the handler at that interrupt nesting level died instead (1: the",
              "nested interrupt, 2: the second one), `why` the `vmalloc_fault` check that failed (src/mm/fault.rs",
              "`BadArea`).", "",
              "| paging | version | context | boundaries stepped | with IF=1 | CR2 read at | failures | of them before the CR2 read | reason | replay |",
              "|---|---|---|---:|---:|---:|---:|---:|---|---|"]
        quiet = []  # (table, paging, version, context) rows of nothing but zeros

        def zero(r, *keys):
            return all(r.get(x, "0") in ("0", "-1", "-") for x in keys)

        for (m, v), (rows, groups, complete, b) in results.items():
            if not complete:
                md.append(f"| {m} | {v} | - | run failed: {b.verdict()} | | | | | | |")
                continue
            for name, label in [("thread", "thread"), ("irq", "inside PIT handler"), ("depth2", "two nested levels")]:
                r = rows.get(name)
                if r and m == "pae" and zero(r, "stepped", "if", "failures"):
                    quiet.append(("fault", m, v))
                elif r:
                    cr2 = r["cr2"] if r["cr2"] != "-1" else "-"
                    md.append(f"| {m} | {v} | {label} | {r['stepped']} | {r['if']} | {cr2} | {r['failures']} | "
                              f"{r['before_cr2']} | {r.get('reasons', '-')} | {cell(m, v, 1, name)} |")
        md += collapsed(quiet, "fault")
        md += ["", "Context-switch window (CR3 already next's, `current` still prev, IF=1); with a kernel thread as prev,",
               "2.4 also sets `prev->active_mm = NULL` after `switch_mm` (the NULL part):", "",
               "| paging | version | prev | boundaries stepped | in the window | failures | active_mm NULL at | failures there | replay |",
               "|---|---|---|---:|---:|---:|---:|---:|---|"]
        for (m, v), (rows, groups, complete, b) in results.items():
            for name, prev in (("window", "thread with an mm"), ("window_kthread", "kernel thread")):
                w = rows.get(name)
                if w:
                    md.append(f"| {m} | {v} | {prev} | {w['stepped']} | {w['in_window']} | {w['failures']} | "
                              f"{w.get('null_active_mm', '-')} | {w.get('null_failures', '-')} | {cell(m, v, 1, name)} |")
        md += ["", "(In PAE, and under 5.8 and 5.9, no slot is stale in the window, so nothing is delivered there: the",
               "boundaries are stepped and counted, none is run.)"]
        md += ["", "Linux's 2020 x86-32 regression on one CPU (`preempt=full`): thread A maps a page into a fresh slot and is",
               "preempted at every boundary where it can be (IF=1 and no spinlock held: the preempt patch's rule) from its",
               "init_mm `set_pmd` to its return; thread B maps into the same slot and touches it from an older mm. A maps",
               "under its version's own lock (none in 2.4.0-test10, the big kernel lock, then init_mm.page_table_lock;",
               "docs/history.md). Window = first..last failing boundary.", "",
               "| paging | version | boundaries stepped | preemptible | runs | failures | window | lazy faults (runs) | B after A (faults) | replay |",
               "|---|---|---:|---:|---:|---:|---|---:|---|---|"]
        for m, v, w in rows_named(results, "r2020"):
            md.append(f"| {m} | {v} | {w['stepped']} | {w['preemptible']} | {w['runs']} | {w['failures']} | {span(w)} | "
                      f"{w['faults']} ({w['runs_with_faults']}) | {w['baseline']} | {cell(m, v, 1, 'r2020')} |")
        md += ["", "Two CPUs (`-smp 2`): CPU A's vmalloc fault is single-stepped; at every boundary, IF=1 or not, CPU A",
               "waits while CPU B runs its whole access to another page of the same stale slot. B is a thread of A's mm",
               "(Cox and Hemment's race, quoted in the seed) or of another process (Andrea's \"I think that can't",
               "happen\"). Failures: A's oopses; B: runs where B's own access failed.", "",
               "| paging | version | B is | boundaries | runs | A fails | B fails | reason | runs/s | hand-off | replay |",
               "|---|---|---|---:|---:|---:|---:|---|---:|---:|---|"]
        quiet = []
        for (m, v), (rows, groups, complete, b) in results2.items():
            if not complete:
                md.append(f"| {m} | {v} | - | run failed: {b.verdict()} | | | | | | | |")
                continue
            for name, label in (("cpu2_threads", "a thread of A's mm"), ("cpu2_processes", "another process")):
                r = rows.get(name)
                if r and m == "pae" and zero(r, "stepped", "runs", "failures", "b_failures"):
                    quiet.append(("cpu2", m, v))
                elif r:
                    md.append(f"| {m} | {v} | {label} | {r['stepped']} | {r['runs']} | {r['failures']} | "
                              f"{r.get('b_failures', '-')} | {r.get('reasons', '-')} | {r.get('runs_per_s', '-')} | "
                              f"{r.get('handoff_ns', '-')} ns | {cell(m, v, 2, name)} |")
        md += collapsed(quiet, "cpu2")
        md += ["", "`cli` (the seed's patch) on two CPUs: it never syncs on a two-level kernel (`pgd_present()` is 1 there), so",
               "A and B both oops wherever they fault; in PAE nothing faults. No variant of it that Linux never had is run.", "",
               "Linux's 2020 regression across two CPUs (scenario 4): A maps one page into a fresh slot on CPU 0; at every",
               "boundary from its init_mm `set_pmd` to its return (the ones where A cannot be preempted included: another",
               "CPU does not wait), B maps into the same slot and touches it on CPU 1 from an older mm. B waited: B spun",
               "on a lock A held there (its version's map lock, pgd_lock), so ran once A dropped it.", "",
               "| paging | version | boundaries | runs | failing | of them not preemptible on A | window | reason | B's lazy faults | B waited | runs/s | hand-off | replay |",
               "|---|---|---:|---:|---:|---:|---|---|---:|---:|---:|---:|---|"]
        for m, v, w in rows_named(results2, "cpu2_r2020"):
            md.append(f"| {m} | {v} | {w['stepped']} | {w['runs']} | {w['failures']} | {w.get('failing_masked', '-')} | "
                      f"{span(w)} | {w.get('reasons', '-')} | {w['faults']} | {w['waited']} | {w['runs_per_s']} | "
                      f"{w['handoff_ns']} ns | {cell(m, v, 2, 'cpu2_r2020')} |")
        p3 = next(((m, v, rows) for (m, v), (rows, _, _, _) in results2.items() if "point3_242" in rows), None)
        if p3:
            pm, pv, p3 = p3
            md += ["", "The seed's point 3 (scenario 5): two CPUs run 2.4.2's `vmalloc_area_pages` (big kernel lock around the",
                   "walk; `get_pte_kernel_slow` with 2.4.2's `pmd_none` re-check or without it, the seed's init.c hunk) into",
                   "one fresh slot; B at every boundary of A's locked walk. Low memory: the `GFP_KERNEL` allocation yields",
                   "(2.4.2's `__alloc_pages`), and `schedule` drops the big lock. Failing: a page unmapped or a page table lost",
                   "afterwards. Two-level, the default version's boot (the model uses no fault handler).", "",
                   "| get_pte_kernel_slow | memory | boundaries | runs | failing | A's page lost | B's page lost | tables leaked | B waited for the lock | replay |",
                   "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
            for name, slow, mem in (("point3_242", "2.4.2 (re-check)", "plentiful"), ("point3_242_low", "2.4.2 (re-check)", "low"),
                                    ("point3_seed", "seed (no re-check)", "plentiful"),
                                    ("point3_seed_low", "seed (no re-check)", "low")):
                r = p3.get(name)
                if r:
                    md.append(f"| {slow} | {mem} | {r['stepped']} | {r['runs']} | {r['failures']} | {r['lost_a']} | "
                              f"{r['lost_b']} | {r['leaked_tables']} | {r['waited']} | {cell(pm, pv, 2, name)} |")
        torn = [(m, v, n, r) for (m, v), (rows, _, _, _) in results2.items() if m == "pae"
                for n, r in sorted(rows.items()) if n.startswith("torn")]
        if torn:
            md += ["", "Torn PAE entries (scenario 6): CPU B reads a scratch PAE entry at every boundary of CPU A's write",
                   "(frames above 4 GiB, so both halves change). Torn: neither the old value nor the new; present: with",
                   "the present bit, so the hardware walker would follow it. The same in every version (one boot shown).", "",
                   "| writer | boundaries | torn | torn and present | first torn value | replay |", "|---|---:|---:|---:|---|---|"]
            seen = set()
            for m, v, n, r in torn:
                if r["writer"] in seen:
                    continue
                seen.add(r["writer"])
                md.append(f"| {r['writer']} | {r['stepped']} | {r['torn']} | {r['torn_present']} | {r['first_torn']} | "
                          f"{cell(m, v, 2, n, r)} |")
        md += fork_section(results, results2, cell)
        if emu == "qemu":  # replays boot QEMU unless told otherwise
            replay.save_boundaries(kernel, boundaries(k, results, results2, strips_of))
        # The setup as the kernel ran it (its EXP|stress line).
        setup = next((r["stress"] for r, _, _, _ in results.values() if "stress" in r), None)
        setup = f", {int(setup['planned']):,} rounds, {setup['mms']} mms" if setup and "planned" in setup else ""
        md += ["", f"Stress: APIC timer one-shot at delays spread over twice one faulting touch{setup}:", "",
               "| paging | version | rounds | clean | oopses | hangs | fault loops | timer during the touch |",
               "|---|---|---:|---:|---:|---:|---:|---:|"]
        for (m, v), (rows, groups, complete, b) in results.items():
            s = rows.get("stress")
            if s:
                md.append(f"| {m} | {v} | {s['rounds']} | {s['clean']} | {s['oopses']} | {s['hangs']} | "
                          f"{s.get('fault_loops', '-')} | {s['timer_during_touch']} |")
        md += checks_section(results, results2)
        md += q1.section(results, [controls[emu]])
        grids = q1.write_grids(results, out, "QEMU" if emu == "qemu" else "Bochs")
        if grids:
            md += ["", "Grids: " + ", ".join(f"[{g}]({g})" for g in grids) + " (and each one's .txt)."]
        if emu == "qemu" and args.kernel == "ktest" and "q1-pairs-legacy.svg" in grids:
            shutil.copy(os.path.join(out, "q1-pairs-legacy.svg"), os.path.join(PICTURES, "q1-pairs-legacy.svg"))
        md += ["", "## Where the failing boundaries are", ""]
        for (m, v), (rows, groups, complete, b) in list(results.items()) + list(results2.items()):
            for name in ("thread", "irq", "depth2", "window", "window_kthread", "r2020", "cpu2_threads",
                         "cpu2_processes", "cpu2_r2020"):
                g = groups.get(name)
                if g:
                    md.append(f"**{m} {v} {name}** ({len(g)} groups)")
                    md.append("")
                    md += [f"- {line}" for line in g[:12]]
                    if len(g) > 12:
                        md.append(f"- ... {len(g) - 12} more groups")
                    md.append("")
        md += ["", "Where the time went (each boot's `EXPT` lines, host seconds under TCG):", "",
               "| paging | version | CPUs | boot | experiments |", "|---|---|---:|---:|---|"]
        for cpus, res in ((1, results), (2, results2)):
            for (m, v), (rows, groups, complete, b) in res.items():
                t = [line.split("|") for line in b.log.splitlines() if line.startswith("EXPT|")]
                parts = ", ".join(f"{x[1]} {int(x[2]) / 1000:.0f}" for x in t if len(x) == 3 and int(x[2]) >= 1000)
                md.append(f"| {m} | {v} | {cpus} | {b.seconds:.0f} s | {parts or '-'} |")
        md += windows_section(results, results2, kernel)
        # The published pictures are QEMU's (the README's); Bochs's stay
        # with its race.md.
        publish = args.kernel == "ktest" and emu == "qemu"
        pics = pictures(k, results, results2, kernel, publish, out)
        if pics:
            where = "docs/pictures/" if publish else "target/experiments/"
            md += ["## Pictures", "", f"Regenerated into {where} by this run:", ""]
            md += [f"![{p}]({'../../docs/pictures/' if publish else ''}{p})" for p in pics]
            md.append("")
        md.append(f"Total time: {time.monotonic() - start:.0f} s.")
        os.makedirs(out, exist_ok=True)
        path = os.path.join(out, "race.md")
        with open(path, "w") as f:
            f.write("\n".join(md) + "\n")
        print("\n".join(md))
        print(f"written: {os.path.relpath(path)}")
        return all(r[2] for r in list(results.values()) + list(results2.values()))

    ok = all([report(emu, *found[emu]) for emu in emus]) and all(c.reset for c in controls.values())
    if len(emus) == 2:
        side_by_side(k, found["qemu"], found["bochs"], controls)
    return 0 if ok else 1
