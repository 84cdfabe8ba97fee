"""Verdicts: the `ok`/`not ok` lines and the summary of a run, what a
kernel's KTAP log or `expect-*` lines say about it, and the host checks
of the user-facing kernel's boot."""
import os
import re

from vmfault_host import elf, experiments, ktap, strips_checks
from vmfault_host.paths import ROOT
from vmfault_host.qemu import boot


class Results:
    def __init__(self):
        self.passed = self.failed = self.skipped = 0
        self.failures = []

    def record(self, name, outcome, why="", measured=()):
        if outcome == "ok":
            self.passed += 1
            print(f"ok {name}", flush=True)
            # What a case pins, on the terminal (its `# measured:` lines).
            for line in measured:
                print(f"    # {line}", flush=True)
        elif outcome == "skip":
            self.skipped += 1
            print(f"ok {name} # SKIP {why}", flush=True)
        else:
            self.failed += 1
            self.failures.append((name, why))
            print(f"not ok {name}", flush=True)
            for line in str(why).splitlines()[:20]:
                print(f"    # {line}", flush=True)

    def summary(self):
        s = f"{self.passed} passed, {self.failed} failed"
        if self.skipped:
            s += f", {self.skipped} skipped"
        return s


def expectations(kernel_name):
    """`//! expect-exit:` and `//! expect-serial:` lines in
    crates/kernels/tests/NAME.rs say what a kernel that does not speak
    KTAP must do instead."""
    src = os.path.join(ROOT, "crates", "kernels", "tests", kernel_name + ".rs")
    exp = {"exit": None, "serial": []}
    if os.path.exists(src):
        for line in open(src):
            m = re.match(r"//!\s*expect-(exit|serial):\s*(.*\S)", line)
            if m and m.group(1) == "exit":
                exp["exit"] = m.group(2)
            elif m:
                exp["serial"].append(m.group(2))
    return exp


def expected_status(b, exp):
    """The exit status `expect-exit:` asks for, None for a KTAP kernel."""
    return {"success": b.success, "failure": b.failure}[exp["exit"]] if exp["exit"] else None


NO_CASE = re.compile(r"^# no case matches test=(\S+); the suites: (.*)$", re.M)


def judge_ktap(res, label, b):
    """Record every case of a KTAP log, and a failure for a crash or hang.
    A boot whose filter selects no case is not judged here (the caller
    says whether any boot found one)."""
    report = ktap.parse(b.log)
    if report.plan == 0 and not report.cases and NO_CASE.search(b.log) and b.status == b.failure:
        return report
    for case in report.cases:
        name = f"{label} {case.suite}.{case.name}"
        # A skip's reason is its directive, the last diagnostic (the ones
        # before it, such as `# time:`, belong to the log, not the line).
        if case.outcome == "skip" and case.diagnostics:
            why = case.diagnostics[-1]
        else:
            why = "\n".join(case.diagnostics)
        res.record(name, case.outcome, why, [d for d in case.diagnostics if d.startswith("measured:")])
    problems = report.problems()
    if b.status != b.success and not problems and report.failed == 0:
        problems.append(f"kernel ended with {b.verdict()} although every case passed")
    if b.status == b.success and report.failed:
        problems.append("kernel exited with success although cases failed")
    if b.status in (None, 0) or not report.version_seen:
        # Also when the kernel never started: GRUB's error (out of memory,
        # bad ELF) is in these lines, from its serial terminal.
        problems.append(f"{b.verdict()}; last lines:\n" + "\n".join(b.log.splitlines()[-12:]))
    res.record(f"{label} run", "not ok" if problems else "ok", "\n".join(problems))
    # Whenever the case that prints the pattern ran, whatever the filter or
    # memory size; never when it did not (nothing to check then).
    if any(c.suite == "harness" and c.name == "serial_console_carries_long_output" and c.outcome != "skip"
           for c in report.cases):
        why = serial_integrity(b.log)
        res.record(f"{label} host.serial_integrity", "not ok" if why else "ok", "\n".join(why))
    return report


def judge_expect(res, label, b, exp):
    want = expected_status(b, exp)
    why = []
    if b.status != want:
        why.append(f"expected exit {exp['exit']}, got {b.verdict()}")
    for pat in exp["serial"]:
        if pat not in b.log:
            why.append(f"serial log lacks: {pat}")
    res.record(label, "not ok" if why else "ok", "\n".join(why))


def serial_integrity(log):
    """The harness suite prints 64 long lines and an end marker."""
    lines = re.findall(r"^    # serial line (\d\d) (\S+)$", log, re.M)
    pattern = "0123456789abcdef" * 4
    why = []
    if [int(n) for n, _ in lines] != list(range(64)):
        why.append(f"expected serial lines 00..63, got {len(lines)}")
    if any(p != pattern for _, p in lines):
        why.append("a serial line arrived corrupted")
    if "    # serial end marker" not in log:
        why.append("end marker missing")
    return why


# paging_init's warning when RAM reaches past the direct map (no HIGHMEM).
RAM_IGNORED = r"^\d+ MiB of RAM above \d+ MiB ignored: the direct map ends there \(no HIGHMEM\)"


def boot_log_patterns(k, mode):
    """What the user-facing kernel's boot log must show in `mode`; the
    layout numbers are the kernel's own (elf.Kernel `k`)."""
    paging = r"^Paging: PAE, three-level \(pae\)" if mode == "pae" else r"^Paging: two-level \(2level\)"
    zone, end = k.stack_zone_start, k.vmalloc_end
    # A thread's stack area: the stack and its guard pages (vmallocinfo
    # counts the size with them, the pages without).
    stack = k.kernel_stack_size + k.stack_guard_pages * k.page_size
    return [r"^Boot loader: GRUB", r"^Physical RAM map \(multiboot2\):", r"^ mb2: 0000000000000000 - ",
            r"\(usable\)", rf"^Kernel command line: paging={mode}", paging,
            r"^CPU features: PSE yes, PAE yes, PGE (yes|no), NX (yes|no)",
            rf"^vmalloc: 0x[0-9a-f]{{8}}-{zone:#010x} .*; stacks {zone:#010x}-{end:#010x}$",
            rf"^=== lazy vmalloc PGD sync \(vmalloc_fault={k.default_version}", r"^vmallocinfo: 2 areas",
            rf"^{zone:#010x}-{zone + stack:#010x} +{stack} src/sched/task.rs:\d+ "
            rf"pages={k.kernel_stack_size // k.page_size} stack$",
            # two-level: exactly one lazy sync copies the entry; PAE: none is needed
            (r"write done: 1 vmalloc fault\(s\) taken" if mode == "2level"
             else r"write done: 0 vmalloc fault\(s\) taken"),
            r"^vmfault: boot complete"]


def host_checks(main_kernel):
    """Boots of the user-facing kernel that the in-kernel suite cannot do
    itself: its boot log, and bad or unknown command-line input."""
    k = elf.constants(main_kernel)
    checks = []

    # The demo's vmallocinfo lines here pin what the user sees; the format
    # itself (range, size, caller, pages, kind of every area, a thread's
    # stack from sched among them) is checked in the kernel by
    # vmalloc.vmallocinfo_lists_live_areas, so under any filter.
    def boot_log_shows_memory_map(mode):
        b = boot(main_kernel, f"paging={mode}", f"host-bootlog-{mode}", until=r"^vmfault: boot complete")
        why = []
        for pat in boot_log_patterns(k, mode):
            if not re.search(pat, b.log, re.M):
                why.append(f"boot log lacks /{pat}/")
        if re.search(RAM_IGNORED, b.log, re.M):
            why.append("RAM reported ignored on a machine the direct map holds whole")
        if not b.killed_on:
            why.append(b.verdict())
        return why

    def stops_boot(cmdline, logname, msg, extra=()):
        """Boot with `cmdline` (and QEMU `extra`): the boot must stop with
        `msg` on the serial port and the failure exit, never a reset."""
        # QEMU's -cpu models: these stay QEMU's under EMU=bochs.
        b = boot(main_kernel, cmdline, logname, timeout=60, extra=extra, emu="qemu" if extra else None)
        why = [] if msg in b.log else [f"no message: {msg}"]
        if b.status != b.failure:
            why.append(f"expected exit failure, got {b.verdict()}")
        return why

    def bad_value_stops_boot(mode):
        return stops_boot(f"paging={mode} vmalloc_fault=lazy", f"host-badvalue-{mode}",
                          f"vmfault: boot stopped: bad value 'lazy' for vmalloc_fault= "
                          f"(allowed: {', '.join(k.versions)})")

    def bad_paging_stops_boot(mode):
        return stops_boot("paging=4level", f"host-badpaging-{mode}",
                          f"vmfault: boot stopped: bad value '4level' for paging= (allowed: {', '.join(k.modes)})")

    def unknown_key_ignored(mode):
        b = boot(main_kernel, f"paging={mode} frobnicate=1", f"host-unknown-{mode}", until=r"^vmfault: boot complete")
        why = []
        if "unknown command line parameter 'frobnicate=1' ignored" not in b.log:
            why.append("unknown key not reported")
        if not b.killed_on:
            why.append(f"boot did not complete: {b.verdict()}")
        return why

    # QEMU's CPU models without what boot/cpu_check.s requires: a message
    # on the serial port and the failure exit, never a reset.  What each
    # model lacks first, in the check's order (PSE, TSC, CX8, CMOV), is
    # QEMU 7.2's: the 486 has no TSC, the Pentium no CMOV.
    def old_cpu_stops_boot(model_and_lack):
        model, lack = model_and_lack
        return stops_boot(f"paging={k.default_mode}", f"host-cpu-{model}",
                          f"vmfault: boot stopped: this CPU lacks {lack}", extra=["-cpu", model])

    for model, lack in (("486", "TSC (CPUID.1:EDX bit 4)"), ("pentium", "CMOV (CPUID.1:EDX bit 15)")):
        checks.append((f"host cpu_{model}_stops_boot_with_a_message", old_cpu_stops_boot, (model, lack)))

    # paging=pae on a CPU without PAE: refused by paging_init, in words.
    def pae_without_pae_stops_boot(_):
        return stops_boot("paging=pae", "host-cpu-nopae",
                          "vmfault: boot stopped: paging=pae but this CPU has no PAE",
                          extra=["-cpu", "qemu32,-pae"])

    checks.append(("host paging_pae_refused_without_pae", pae_without_pae_stops_boot, None))

    # More RAM than the direct map holds (MAXMEM): said, and the boot goes on.
    def ram_above_maxmem_reported(_):
        mem = (k.maxmem >> 20) + 128
        b = boot(main_kernel, f"paging={k.default_mode}", "host-ram-above-maxmem",
                 until=r"^vmfault: boot complete", memory=mem)
        why = [] if re.search(RAM_IGNORED, b.log, re.M) else [f"no /{RAM_IGNORED}/ with {mem} MiB"]
        if not b.killed_on:
            why.append(f"boot did not complete: {b.verdict()}")
        return why

    checks.append(("host ram_above_maxmem_reported", ram_above_maxmem_reported, None))
    for mode in k.modes:
        checks.append((f"host[{mode}] boot_log_shows_memory_map", boot_log_shows_memory_map, mode))
        checks.append((f"host[{mode}] unknown_key_ignored", unknown_key_ignored, mode))
    checks.append(("host bad_vmalloc_fault_value_stops_boot", bad_value_stops_boot, k.default_mode))
    checks.append(("host bad_paging_value_stops_boot", bad_paging_stops_boot, k.default_mode))
    # The stepping engine on the unoptimised kernel (`make gdb`'s build,
    # `make experiments KERNEL=dev`), which no test kernel is: every
    # explorer at a sample of its boundaries must end, and every run must
    # have met its own boundary (the `EXP` lines' misplaced and
    # not_entered).  Two CPUs, so the two-CPU explorers run too.
    def engine_on_the_unoptimised_kernel(mode):
        b = boot(main_kernel, f"paging={mode} vmalloc_fault=legacy experiment=engine",
                 f"host-engine-{mode}", timeout=600, smp=2)
        rows, _, complete = experiments.parse(b.log)
        why = [] if complete else [f"the explorers did not end: {b.verdict()}"]
        for name, r in rows.items():
            for key in ("misplaced", "not_entered"):
                if int(r.get(key, 0)):
                    why.append(f"{name}: {key}={r[key]}")
        want = ["r2020", "cpu2_r2020"] + (["thread", "cpu2_threads", "point3_seed"] if mode == "2level"
                                          else ["torn0"])
        why += [f"no {name} row" for name in want if name not in rows]
        return why

    for mode in k.modes:
        checks.append((f"host[{mode}] engine_on_the_unoptimised_kernel", engine_on_the_unoptimised_kernel, mode))
    # The strip pictures `make experiments` draws, on made-up input.
    for check in strips_checks.CHECKS:
        checks.append((f"host strips.{check.__name__}", strips_checks.run, check))
    return checks
