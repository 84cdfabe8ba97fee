#!/usr/bin/env python3
"""make bench: numbers a kernel developer can compare, measured in one run.

In-kernel (release build, `experiment=bench`, both paging modes):
  1. instructions from the #PF entry to iret (single-step counts) for a bare
     exception, and a vmalloc fault under each vmalloc_fault version;
  2. vmalloc+touch+vfree of one page with n live areas, our B-tree area
     allocator against Linux 2.4's linear first-fit vmlist (TSC, same run);
  3. lazy (sync) versus eager sync: N address spaces x M new PGD slots;
  5. explorer throughput (boundaries explored per second: the runs alone,
     timed by the kernel's TSC);
  6. with two CPUs: an IPI round trip and smp_call_function (TSC), and
     both in instructions (single-stepped).
  7. a replay: `make run RACE=` and `make gdb RACE=` to the first stop,
     warm (host clock).
Host side:
  4. boot to the first KTAP line (one CPU and two), and the whole
     `make test` wall time.
Writes target/bench/results.csv and target/bench/*.svg (matplotlib).
`--quick` (make bench QUICK=1): the in-kernel items alone, both modes.
Under TCG, time is not hardware time: compare instruction counts and ratios.
"""
import csv
import importlib
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

from vmfault_host import build, deps, elf, iso
from vmfault_host.paths import ROOT, TARGET
from vmfault_host.qemu import qemu_cmd, read_log

OUT = os.path.join(TARGET, "bench")
# Item 2's columns, as the kernel names them in its BENCH|scaling lines:
# the kernel's area allocator, the B-trees it was until issue 28, 2.4's list.
SCALING_ALLOCATORS = ("areas", "btree", "vmlist24")
SCALING_LABELS = {"areas": "area allocator (vmfault)", "btree": "B-trees only (vmfault before issue 28)",
                  "vmlist24": "linear vmlist (Linux 2.4)"}
START, STOP, END = r"^BENCH\|explorer-start", r"^BENCH\|explorer-end", r"^BENCH\|end"


# Instructions from the #PF vector to 2.4.1's `movl %cr2` (inclusive),
# derived from its entry.S and fault.c in docs/bench.md: page_fault 2,
# error_code 25 to its `call *%edi`, then 0-5 of do_page_fault's prologue.
LINUX_241_CR2 = "28-33"


def timed_boot(kernel, cmdline, marks, timeout=600, memory=None, smp=None):
    """Boot and note when each regex in `marks` first appears (host clock)."""
    k = elf.constants(kernel)
    with tempfile.TemporaryDirectory() as d:
        image = iso.make_iso(kernel, os.path.join(d, "k.iso"), iso.grub_cfg(k, cmdline))
        log = os.path.join(d, "serial.log")
        start = time.monotonic()
        p = subprocess.Popen(qemu_cmd(k, image, f"file:{log}", (), memory, smp), stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seen = {}
        while p.poll() is None and time.monotonic() - start < timeout:
            text = read_log(log)
            for m in marks:
                if m not in seen and re.search(m, text, re.M):
                    seen[m] = time.monotonic() - start
            time.sleep(0.02)
        if p.poll() is None:
            p.kill()
        p.wait()
        end = time.monotonic() - start
        text = read_log(log)
        for m in marks:  # lines that arrived just before QEMU exited
            if m not in seen and re.search(m, text, re.M):
                seen[m] = end
        return text, seen


def get_row(rows, mode, sect, key, metric):
    for r in rows:
        if r[0] == mode and r[1] == sect and (r[2] == key or key.endswith("=")) and r[3] == metric:
            return r[4]
    return None


def fields(line):
    parts = line.split("|")
    if parts[1] == "explorer":  # no key: every part is a figure
        return parts[1], "run", dict(p.split("=", 1) for p in parts[2:] if "=" in p)
    return parts[1], parts[2], dict(p.split("=", 1) for p in parts[3:] if "=" in p)


def sizes(rows, sect, field):
    """The numbers the kernel's bench ran `sect` with, from its keys
    (`n=16`, `mms=8,slots=1,version=sync`): the bench, not this script,
    chooses them."""
    out = set()
    for r in rows:
        if r[1] == sect:
            for part in r[2].split(","):
                name, _, v = part.partition("=")
                if name == field and v.isdigit():
                    out.add(int(v))
    return sorted(out)


def ensure_matplotlib():
    """matplotlib from Debian's python3-matplotlib (apt, as the other
    tools; never pip as root into the system's Python)."""
    try:
        import matplotlib  # noqa: F401
        return True
    except ImportError:
        pass
    if deps.apt_install(["python3-matplotlib"], " (the bench pictures)"):
        importlib.invalidate_caches()
        try:
            import matplotlib  # noqa: F401,F811
            return True
        except ImportError:
            pass
    print("bench: matplotlib unavailable; pictures skipped (install it: sudo apt-get install -y python3-matplotlib)")
    return False


def main(argv=None):
    # --quick (make bench QUICK=1): the two in-kernel bench boots alone
    # (items 1, 2, 3, 5; about 20 s), without the host-side items and the
    # `make test` run inside item 4 (minutes of both CPUs).
    quick = "--quick" in (sys.argv[1:] if argv is None else argv)
    deps.ensure_tools()
    t_all = time.monotonic()
    if quick:
        kernel, ktest = build.build_main(release=True), None
    else:
        bins, tests = build.build_kernels(release=True)
        kernel = build.main_kernel(bins)
        ktest = build.test_kernel(tests, "ktest")
    k = elf.constants(kernel)
    os.makedirs(OUT, exist_ok=True)
    rows = []  # (mode, section, key, metric, value)

    for mode in k.modes:
        log, seen = timed_boot(kernel, f"paging={mode} experiment=bench",
                               [START, STOP, END])
        if END not in seen:
            sys.exit(f"bench: the {mode} bench kernel did not finish; see its log:\n" + log[-2000:])
        for line in log.splitlines():
            if not line.startswith("BENCH|") or line.count("|") < 3:
                continue
            sect, key, f = fields(line)
            if sect == "lazy_eager":
                key = f"{key},slots={f.pop('slots')},version={f.pop('version')}"
            for metric, value in f.items():
                rows.append((mode, sect, key, metric, value))
        # The runs alone, timed by the kernel's TSC (calibrated against the
        # PIT; under TCG it follows the host clock): the victim area's
        # setup and the baseline run are fixed costs, and with the 49 runs
        # of the release kernel's path they were most of the window
        # between the START and STOP lines.
        runs = int(get_row(rows, mode, "explorer", "run", "runs") or 0)
        secs = int(get_row(rows, mode, "explorer", "run", "runs_us") or 0) / 1e6
        if runs and secs:
            rows.append((mode, "explorer", "throughput", "boundaries_per_second", f"{runs / secs:.0f}"))

    last = "not run (--quick)"
    handle = "thread:legacy:2level:1cpu:30"
    if not quick:
        for cpus in (1, 2):
            boots = []
            for _ in range(3):
                _, seen = timed_boot(ktest, "paging=2level test=boot.*", [r"^KTAP version 1"], timeout=60,
                                     smp=cpus if cpus > 1 else None)
                boots.append(seen.get(r"^KTAP version 1", float("nan")))
            key = "first_ktap_line" if cpus == 1 else f"first_ktap_line_smp{cpus}"
            rows.append(("2level", "boot", key, "seconds_median_of_3", f"{statistics.median(boots):.2f}"))

        # 6. Two CPUs: the IPI round trip and smp_call_function (the kernel
        # runs only this section when it has more than one CPU).
        log, seen = timed_boot(kernel, "paging=2level experiment=bench", [END], smp=2)
        for line in log.splitlines():
            if line.startswith("BENCH|smp|"):
                sect, key, f = fields(line)
                for metric, value in f.items():
                    rows.append(("2level", sect, key, metric, value))

        # 7. Replays (issue 25's targets: narration over in 2 s, gdb at the
        # boundary in 5 s, warm): the whole commands, the first run building.
        with tempfile.TemporaryDirectory() as d:
            empty = os.path.join(d, "empty.gdb")
            open(empty, "w").close()
            for what, cmd in (("run", ["make", "-s", "run", f"RACE={handle}"]),
                              ("gdb_first_stop", ["make", "-s", "gdb", f"RACE={handle}", f"GDB_BATCH={empty}"])):
                subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                times = []
                for _ in range(5):
                    t0 = time.monotonic()
                    subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    times.append(time.monotonic() - t0)
                rows.append(("2level", "replay", what, "seconds_median_of_5", f"{statistics.median(times):.2f}"))

        t0 = time.monotonic()
        r = subprocess.run(["make", "test"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        last = next((x for x in reversed(r.stdout.splitlines()) if re.match(r"^\d+ passed", x)), "no summary line")
        rows.append(("both", "make_test", "wall", "seconds", f"{time.monotonic() - t0:.0f}"))
        rows.append(("both", "make_test", "result", "summary", last.replace(",", ";")))

    with open(os.path.join(OUT, "results.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["paging", "section", "key", "metric", "value"])
        w.writerows(rows)

    def get(mode, sect, key, metric):
        for r in rows:
            if r[:4] == (mode, sect, key, metric):
                return r[4]
        return None

    print()
    print("== 1. fault path, instructions from #PF entry to iret (release build) ==")
    print(f"{'paging':7} {'handler':15} {'instructions':>12} {'/ bare':>8} {'CR2 read at':>12}")
    for mode in k.modes:
        bare = get(mode, "fault", "bare_exception", "instructions")
        print(f"{mode:7} {'bare int3':15} {bare:>12} {'1.00':>8}")
        for v in k.versions:
            n = get(mode, "fault", v, "instructions")
            ratio = get(mode, "fault", v, "ratio_to_bare") or "-"
            out = get(mode, "fault", v, "outcome")
            note = "" if out not in ("no-fault",) else "  (no vmalloc fault happens)"
            if out and out.startswith("Oops"):
                note = f"  ({out})"
            cr2 = get(mode, "fault", v, "cr2_read_at")
            cr2 = cr2 if cr2 not in (None, "-1") else "-"
            print(f"{mode:7} {v:15} {n:>12} {ratio:>8} {cr2:>12}{note}")
        print(f"{mode:7} {'mapped touch':15} {'1':>12}")
        print(f"{mode:7} {'Linux 2.4.1':15} {'':>12} {'':>8} {LINUX_241_CR2:>12}  (derived: docs/bench.md)")
    print()
    ns = sizes(rows, "scaling", "n")
    lo, hi = (ns[0], ns[-1]) if ns else (None, None)
    rounds = get(k.modes[0], "scaling", f"n={lo}", "rounds") if ns else None
    print(f"== 2. vmalloc+touch+vfree of one page vs live areas (median of {rounds} rounds' median TSC, "
          f"and instructions of one get+remove, the allocator alone; ratio to n={lo}) ==")
    for mode in k.modes:
        page = get(mode, "scaling", f"n={lo}", "one_page_instructions") if ns else None
        for alloc in SCALING_ALLOCATORS:
            for unit in ("tsc", "instructions"):
                vals = {n: int(get(mode, "scaling", f"n={n}", f"{alloc}_{unit}") or 0) for n in ns}
                ratio = vals[hi] / vals[lo] if ns and vals[lo] else float("nan")
                print(f"{mode:7} {alloc:9} {unit:12} " + "  ".join(f"n={n}:{v}" for n, v in vals.items()) +
                      f"   cost({hi})/cost({lo}) = {ratio:.2f}")
                metric = f"ratio_{hi}_to_{lo}" if unit == "tsc" else f"instructions_ratio_{hi}_to_{lo}"
                rows.append((mode, "scaling", alloc, metric, f"{ratio:.2f}"))
        heap = " ".join(f"n={n}:{get(mode, 'scaling', f'n={n}', 'vmlist24_heap_instructions')}" for n in ns)
        print(f"{mode:7} (the page's map, touch and unmap, in every TSC column: {page} instructions; "
              f"of vmlist24's instructions, its VmStruct's heap alloc+free: {heap})")
        reprs = " ".join(f"n={n}:{get(mode, 'scaling', f'n={n}', 'areas_repr')}" for n in ns)
        sw = {m: get(mode, "scaling_switch", "instructions", m)
              for m in ("small_max", "small_min", "get_to_max", "get_to_trees", "remove_to_min", "remove_to_small")}
        print(f"{mode:7} areas held in: {reprs}; switching (instructions): the get past {sw['small_max']} areas "
              f"into the trees {sw['get_to_trees']} (the get before it {sw['get_to_max']}), the remove below "
              f"{sw['small_min']} back to the array {sw['remove_to_small']} (the remove before it {sw['remove_to_min']})")
    print()
    print("== 3. lazy (sync) vs eager: vmalloc of M slots + first touch from N mms (TSC) ==")
    for mode in k.modes:
        for m in sizes(rows, "lazy_eager", "slots"):
            line = []
            for n in sizes(rows, "lazy_eager", "mms"):
                lz = get(mode, "lazy_eager", f"mms={n},slots={m},version=sync", "tsc")
                eg = get(mode, "lazy_eager", f"mms={n},slots={m},version=eager", "tsc")
                if lz and eg:
                    line.append(f"N={n}: eager/lazy={int(eg) / int(lz):.2f}")
            print(f"{mode:7} M={m:<3} " + "  ".join(line))
    print()
    print("== 4, 5 ==")
    print(f"boot to first KTAP line: {get('2level', 'boot', 'first_ktap_line', 'seconds_median_of_3')} s "
          f"(median of 3, host clock, GRUB ISO, TCG)")
    print(f"boot to first KTAP line, two CPUs: "
          f"{get('2level', 'boot', 'first_ktap_line_smp2', 'seconds_median_of_3')} s")
    print(f"make test wall time: {get('both', 'make_test', 'wall', 'seconds')} s ({last})")
    for mode in k.modes:
        print(f"explorer throughput ({mode}): {get(mode, 'explorer', 'throughput', 'boundaries_per_second') or '-'} "
              f"boundaries/s")

    print()
    print("== 6. two CPUs (-smp 2, round-robin TCG; TSC, host time) ==")
    print(f"IPI round trip CPU 0 -> 1 -> 0: {get('2level', 'smp', 'ipi', 'roundtrip_ns') or '-'} ns; "
          f"smp_call_function(noop, wait): {get('2level', 'smp', 'ipi', 'call_function_ns') or '-'} ns "
          f"(mean of 1000)")
    print(f"instructions (single-stepped): send_ipi {get('2level', 'smp', 'instructions', 'send_ipi') or '-'} "
          f"on CPU 0; on CPU 1, stub to iret: a fixed-vector IPI "
          f"{get('2level', 'smp', 'instructions', 'fixed_vector_receive') or '-'}, the call-function IPI running "
          f"noop {get('2level', 'smp', 'instructions', 'call_function_receive') or '-'} (the senders' waits are "
          f"spin loops as long as the host makes them, not counted)")

    print()
    print("== 7. replays (warm, median of 5, the whole command) ==")
    print(f"make run RACE={handle}: {get('2level', 'replay', 'run', 'seconds_median_of_5')} s to the end of "
          f"the narration; make gdb RACE=... to the first stop and out: "
          f"{get('2level', 'replay', 'gdb_first_stop', 'seconds_median_of_5')} s")

    if ensure_matplotlib():
        plots(k, rows)
    with open(os.path.join(OUT, "results.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["paging", "section", "key", "metric", "value"])
        w.writerows(rows)
    print(f"\nwritten: {os.path.relpath(OUT)}/results.csv and *.svg; total {time.monotonic() - t_all:.0f} s")
    return 0


def plots(k, rows):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def val(mode, sect, key, metric):
        for r in rows:
            if r[:4] == (mode, sect, key, metric):
                return float(r[4])
        return float("nan")

    ns = sizes(rows, "scaling", "n")
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, mode in zip(axes, k.modes):
        for alloc, label in SCALING_LABELS.items():
            ax.plot(ns, [val(mode, "scaling", f"n={n}", f"{alloc}_tsc") for n in ns], marker="o", label=label)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(f"vmalloc+touch+vfree, {mode}")
        ax.set_xlabel("live vmalloc areas")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("median of medians, TSC ticks (TCG, relative)")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(os.path.join(OUT, "scaling.svg"))
    fig.savefig(os.path.join(OUT, "scaling.png"), dpi=80)

    nn = sizes(rows, "lazy_eager", "mms")
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, m in zip(axes, sizes(rows, "lazy_eager", "slots")):
        for mode in k.modes:
            for v, style in (("sync", "-"), ("eager", "--")):
                ax.plot(nn, [val(mode, "lazy_eager", f"mms={n},slots={m},version={v}", "tsc") for n in nn],
                        style, marker="o", label=f"{v} ({mode})")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(f"vmalloc of {m} new slot(s) + first touch from N mms")
        ax.set_xlabel("address spaces N")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("TSC ticks (TCG, relative)")
    fig.tight_layout()
    fig.savefig(os.path.join(OUT, "lazy_eager.svg"))
    fig.savefig(os.path.join(OUT, "lazy_eager.png"), dpi=80)
