#!/usr/bin/env python3
"""Host side of vmfault: build kernels, wrap them in GRUB ISOs, boot them in
qemu-system-i386 and judge what they print on COM1.

  runner.py test            every test kernel in both paging modes, plus the
                            host-side boot checks; ends with `N passed, N failed`
  runner.py run [--paging pae] [--cmdline ARGS] [KERNEL]
                            boot a kernel with the serial console on the terminal
  runner.py iso [KERNEL]    build target/vmfault.iso with the boot/grub.cfg menu
  runner.py cargo KERNEL    what `cargo run` / `cargo test` call (.cargo/config.toml)

QEMU runs under TCG (KVM here is a software variant that hangs GRUB), with
-no-reboot (a triple fault then exits with status 0, which never counts as a
pass) and no stdin.  Each serial log is kept under target/ktest/.
"""
import argparse
import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TARGET = os.path.join(ROOT, "target")
LOGDIR = os.path.join(TARGET, "ktest")
sys.path.insert(0, os.path.dirname(__file__))
import ktap  # noqa: E402

EXIT_SUCCESS = (0x10 << 1) | 1  # 33
EXIT_FAILED = (0x11 << 1) | 1  # 35
MODES = ("2level", "pae")
VERSIONS = ("legacy", "cli", "sync", "eager")
BOOT_TIMEOUT = int(os.environ.get("VMFAULT_BOOT_TIMEOUT", "240"))
MEMORY = os.environ.get("VMFAULT_MEMORY", "128")
# Extra sizes (MiB) `test` boots the whole suite with, besides MEMORY.
MEMORY_SIZES = (32, 896)

APT_PACKAGES = ["qemu-system-x86", "grub-pc-bin", "grub-common", "xorriso", "mtools", "gdb", "binutils"]
NEEDED = {
    "qemu-system-i386": "qemu-system-x86",
    "grub-mkrescue": "grub-common",
    "grub-file": "grub-common",
    "xorriso": "xorriso",
    "mformat": "mtools",
    "gdb": "gdb",
    "objcopy": "binutils",
}


# ---------------------------------------------------------------- setup

def missing_tools():
    miss = [pkg for tool, pkg in NEEDED.items() if shutil.which(tool) is None]
    if not os.path.isdir("/usr/lib/grub/i386-pc"):
        miss.append("grub-pc-bin")
    return sorted(set(miss))


def ensure_tools():
    """Install what a fresh Debian machine lacks, or say exactly what to run."""
    miss = missing_tools()
    if miss:
        cmd = "apt-get update && apt-get install -y " + " ".join(APT_PACKAGES)
        if os.geteuid() == 0 and shutil.which("apt-get"):
            print(f"runner: installing {' '.join(miss)}", flush=True)
            env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
            subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
            r = subprocess.run(["apt-get", "install", "-y", "-qq"] + APT_PACKAGES, env=env)
            if r.returncode != 0 or missing_tools():
                sys.exit(f"runner: could not install {' '.join(missing_tools())}; run as root: {cmd}")
        else:
            sys.exit(f"runner: missing {' '.join(miss)}; install them with: sudo sh -c '{cmd}'")
    r = subprocess.run(["rustup", "component", "list", "--installed", "--toolchain", "nightly"],
                       capture_output=True, text=True, cwd=ROOT)
    if r.returncode != 0 or "rust-src" not in r.stdout:
        print("runner: adding rust-src to the nightly toolchain", flush=True)
        subprocess.run(["rustup", "component", "add", "rust-src", "--toolchain", "nightly"],
                       check=True, cwd=ROOT)


# ---------------------------------------------------------------- building

def cargo_artifacts(args):
    """Run cargo with JSON messages; return [(name, path, is_test)]."""
    cmd = ["cargo"] + args + ["--message-format=json-render-diagnostics"]
    p = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    if p.returncode != 0:
        sys.exit(f"runner: `{' '.join(cmd)}` failed")
    out = []
    for line in p.stdout.splitlines():
        try:
            m = json.loads(line)
        except ValueError:
            continue
        if m.get("reason") == "compiler-artifact" and m.get("executable"):
            out.append((m["target"]["name"], m["executable"], m["profile"]["test"]))
    return out


def build_kernels(release=False):
    extra = ["--release"] if release else []
    bins = cargo_artifacts(["build", "--bins"] + extra)
    tests = [t for t in cargo_artifacts(["test", "--no-run"] + extra) if t[2]]
    return bins, tests


# What GRUB runs when `boot` returns, i.e. when loading the kernel failed
# (too little memory, a bad ELF): without it GRUB waits for a key on the VGA
# console and QEMU never exits.  GRUB's own error lines reach the serial log
# through its serial terminal; port 0xf4 is QEMU's isa-debug-exit, so QEMU
# exits with the failure status (0x11 << 1 | 1) the kernel also uses.
GRUB_BOOT_FAILED = "vmfault: GRUB could not load the kernel (error above)"


def grub_cfg(cmdline, entries=None, timeout=0, default=0):
    entries = entries or [("vmfault", cmdline)]
    lines = [f"set timeout={timeout}", f"set default={default}",
             "serial --unit=0 --speed=115200", "terminal_output serial console"]
    for title, args in entries:
        lines += [f'menuentry "{title}" {{', f"    multiboot2 /boot/kernel {args}".rstrip(), "    boot",
                  f'    echo "{GRUB_BOOT_FAILED}"', "    insmod iorw", "    outb 0xf4 0x11", "}"]
    return "\n".join(lines) + "\n"


def make_iso(kernel, out, cfg_text):
    """An ISO with `kernel` as /boot/kernel.  The copy loses its DWARF
    sections (objcopy --strip-debug): GRUB's multiboot2 loader places every
    non-alloc ELF section in RAM, and a debug kernel's ~10 MiB of DWARF then
    leaves GRUB out of memory under -m 32.  .symtab and .strtab stay (the
    kernel names oops addresses from them, src/symbols.rs); gdb reads the
    unstripped file on the host."""
    with tempfile.TemporaryDirectory() as d:
        os.makedirs(os.path.join(d, "boot", "grub"))
        r = subprocess.run(["objcopy", "--strip-debug", kernel, os.path.join(d, "boot", "kernel")],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"objcopy --strip-debug {kernel} failed: {r.stderr.strip()}")
        with open(os.path.join(d, "boot", "grub", "grub.cfg"), "w") as f:
            f.write(cfg_text)
        r = subprocess.run(["grub-mkrescue", "-o", out, d], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"grub-mkrescue failed: {r.stderr.strip()}")
    return out


def qemu_cmd(iso, serial, extra=(), memory=None):
    return ["qemu-system-i386", "-accel", "tcg", "-cpu", "qemu32,+nx", "-m", str(memory or MEMORY),
            "-cdrom", iso, "-boot", "d",
            "-display", "none", "-no-reboot", "-serial", serial,
            "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", *extra]


# ---------------------------------------------------------------- booting

class Boot:
    """One QEMU run: its exit status (None on timeout) and serial log."""

    def __init__(self, status, log, seconds, killed_on=None, stopped=False):
        self.status, self.log, self.seconds, self.killed_on = status, log, seconds, killed_on
        self.stopped = stopped  # killed because `stop` was set elsewhere

    def verdict(self):
        if self.killed_on:
            return "stopped by the runner after its boot log"
        if self.status is None:
            return "hang: no exit within the timeout"
        if self.status == 0:
            return "reset or triple fault (QEMU exited 0 under -no-reboot)"
        if self.status == EXIT_SUCCESS:
            return "exit: success"
        if self.status == EXIT_FAILED:
            return "exit: failure"
        return f"QEMU exited with unexpected status {self.status}"


def boot(kernel, cmdline, logname, timeout=BOOT_TIMEOUT, until=None, extra=(), memory=None, stop=None):
    """Boot `kernel` with `cmdline`.  With `until` (a regex), stop QEMU once
    the serial log matches it (for kernels that idle instead of exiting).
    With `stop` (a threading.Event), stop QEMU, or do not start it, once
    the event is set."""
    os.makedirs(LOGDIR, exist_ok=True)
    log = os.path.join(LOGDIR, logname + ".log")
    if stop is not None and stop.is_set():
        return Boot(None, "", 0.0, stopped=True)
    with tempfile.TemporaryDirectory() as d:
        iso = make_iso(kernel, os.path.join(d, "k.iso"), grub_cfg(cmdline))
        if os.path.exists(log):
            os.remove(log)
        start = time.monotonic()
        p = subprocess.Popen(qemu_cmd(iso, f"file:{log}", extra, memory), stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        status, killed_on, stopped = None, None, False
        while True:
            try:
                status = p.wait(timeout=0.1)
                break
            except subprocess.TimeoutExpired:
                pass
            if until and os.path.exists(log) and re.search(until, read_log(log), re.M):
                killed_on = until
                break
            if time.monotonic() - start > timeout:
                break
            if stop is not None and stop.is_set():
                stopped = True
                break
        if p.poll() is None:
            p.kill()
            p.wait()
        secs = time.monotonic() - start
    return Boot(status, read_log(log), secs, killed_on, stopped)


def read_log(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace").replace("\r", "")
    except FileNotFoundError:
        return ""


# ---------------------------------------------------------------- judging

class Results:
    def __init__(self):
        self.passed = self.failed = self.skipped = 0
        self.failures = []

    def record(self, name, outcome, why=""):
        if outcome == "ok":
            self.passed += 1
            print(f"ok {name}", flush=True)
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
    """`//! expect-exit:` and `//! expect-serial:` lines in tests/NAME.rs say
    what a kernel that does not speak KTAP must do instead."""
    src = os.path.join(ROOT, "tests", kernel_name + ".rs")
    exp = {"exit": None, "serial": []}
    if os.path.exists(src):
        for line in open(src):
            m = re.match(r"//!\s*expect-(exit|serial):\s*(.*\S)", line)
            if m and m.group(1) == "exit":
                exp["exit"] = m.group(2)
            elif m:
                exp["serial"].append(m.group(2))
    return exp


def judge_ktap(res, label, b):
    """Record every case of a KTAP log, and a failure for a crash or hang."""
    report = ktap.parse(b.log)
    for case in report.cases:
        name = f"{label} {case.suite}.{case.name}"
        res.record(name, case.outcome, "\n".join(case.diagnostics))
    problems = report.problems()
    if b.status != EXIT_SUCCESS and not problems and report.failed == 0:
        problems.append(f"kernel ended with {b.verdict()} although every case passed")
    if b.status == EXIT_SUCCESS and report.failed:
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
    want = {"success": EXIT_SUCCESS, "failure": EXIT_FAILED}[exp["exit"]]
    why = []
    if b.status != want:
        why.append(f"expected exit {exp['exit']}, got {b.verdict()}")
    for pat in exp["serial"]:
        if pat not in b.log:
            why.append(f"serial log lacks: {pat}")
    res.record(label, "not ok" if why else "ok", "\n".join(why))


def host_checks(main_kernel):
    """Boots of the user-facing kernel that the in-kernel suite cannot do
    itself: its boot log, and bad or unknown command-line input."""
    checks = []

    # The demo's vmallocinfo lines here pin what the user sees; the format
    # itself (range, size, caller, pages, kind of every area, a thread's
    # stack from sched among them) is checked in the kernel by
    # vmalloc.vmallocinfo_lists_live_areas, so under any filter.
    def boot_log_shows_memory_map(mode):
        b = boot(main_kernel, f"paging={mode}", f"host-bootlog-{mode}", until=r"^vmfault: boot complete")
        why = []
        paging = r"^Paging: PAE, three-level \(pae\)" if mode == "pae" else r"^Paging: two-level \(2level\)"
        for pat in [r"^Boot loader: GRUB", r"^Physical RAM map \(multiboot2\):", r"^ mb2: 0000000000000000 - ",
                    r"\(usable\)", rf"^Kernel command line: paging={mode}", paging,
                    r"^CPU features: PSE yes, PAE yes, PGE (yes|no), NX (yes|no)", r"^vmalloc: 0x[0-9a-f]{8}-0xfe000000 .*; stacks 0xfe000000-0xff000000$",
                    r"^=== lazy vmalloc PGD sync \(vmalloc_fault=sync", r"^vmallocinfo: 2 areas", r"^0xfe000000-0xfe012000 +73728 src/sched/task.rs:\d+ pages=16 stack$",
                    # two-level: exactly one lazy sync copies the entry; PAE: none is needed
                    (r"write done: 1 vmalloc fault\(s\) taken" if mode == "2level"
                     else r"write done: 0 vmalloc fault\(s\) taken"),
                    r"^vmfault: boot complete"]:
            if not re.search(pat, b.log, re.M):
                why.append(f"boot log lacks /{pat}/")
        if not b.killed_on:
            why.append(b.verdict())
        return why

    def bad_value_stops_boot(mode):
        b = boot(main_kernel, f"paging={mode} vmalloc_fault=lazy", f"host-badvalue-{mode}", timeout=60)
        why = []
        msg = "vmfault: boot stopped: bad value 'lazy' for vmalloc_fault= (allowed: legacy, cli, sync, eager)"
        if msg not in b.log:
            why.append(f"no message: {msg}")
        if b.status != EXIT_FAILED:
            why.append(f"expected exit failure, got {b.verdict()}")
        return why

    def bad_paging_stops_boot(mode):
        b = boot(main_kernel, "paging=4level", f"host-badpaging-{mode}", timeout=60)
        msg = "vmfault: boot stopped: bad value '4level' for paging= (allowed: 2level, pae)"
        why = [] if msg in b.log else [f"no message: {msg}"]
        if b.status != EXIT_FAILED:
            why.append(f"expected exit failure, got {b.verdict()}")
        return why

    def unknown_key_ignored(mode):
        b = boot(main_kernel, f"paging={mode} frobnicate=1", f"host-unknown-{mode}", until=r"^vmfault: boot complete")
        why = []
        if "unknown command line parameter 'frobnicate=1' ignored" not in b.log:
            why.append("unknown key not reported")
        if not b.killed_on:
            why.append(f"boot did not complete: {b.verdict()}")
        return why

    for mode in MODES:
        checks.append((f"host[{mode}] boot_log_shows_memory_map", boot_log_shows_memory_map, mode))
        checks.append((f"host[{mode}] unknown_key_ignored", unknown_key_ignored, mode))
    checks.append(("host bad_vmalloc_fault_value_stops_boot", bad_value_stops_boot, "2level"))
    checks.append(("host bad_paging_value_stops_boot", bad_paging_stops_boot, "2level"))
    return checks


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


def cmd_test(args):
    ensure_tools()
    bins, tests = build_kernels()
    main_kernel = next(p for n, p, _ in bins if n == "vmfault")
    res = Results()
    # The kernel's floors (core <- lab <- ktest <- binaries): any upward
    # path fails the run, whatever the filter (tests/host/layers.py).
    import layers
    upward = layers.check(ROOT)
    res.record("host layers_import_downward", "not ok" if upward else "ok", "\n".join(upward))
    jobs = []
    extra = f" {args.cmdline}" if args.cmdline else ""  # for every kernel
    for name, path, _ in tests:
        for mode in MODES:
            test = (f" test={args.filter}" if args.filter else "") + extra
            if name == "ktest":
                # The whole suite under every historical vmalloc_fault.
                for v in VERSIONS:
                    jobs.append((name, f"{mode},{v}", path, f"paging={mode} vmalloc_fault={v}{test}", None))
            else:
                jobs.append((name, mode, path, f"paging={mode}{test}", None))
            if name == "ktest" and not args.filter:
                # The memory layer again with 512 MiB: a bigger direct map,
                # more page tables, the frame bitmap further filled.
                jobs.append((name, mode, path, f"paging={mode} test=frames.*,paging.*{extra}", 512))
                # The suite at the memory sizes the kernel promises to
                # handle (README): 32 MiB, where the race cases size
                # themselves from free frames, and 896 MiB, the direct
                # map's limit with a 104 MiB vmalloc area.  One correct
                # handler version: what memory size changes does not depend
                # on it.  In two-level mode the exhaustive explorer (a
                # minute of single-stepping, the same 4704 instructions at
                # any size) runs at MEMORY only; its every-8th-boundary
                # siblings, on the same 16 MiB victim area, run here.
                for mem in MEMORY_SIZES:
                    only = " test=-race.explorer_thread_context" if mode == "2level" else ""
                    jobs.append((name, f"{mode},sync", path, f"paging={mode} vmalloc_fault=sync{only}{extra}", mem))
    if not args.filter:
        import gdb_check  # gdb in batch mode against QEMU, both paging modes
        checks = host_checks(main_kernel) + gdb_check.checks(main_kernel)
    else:
        checks = []

    def tag_of(j):
        name, mode, _, _, mem = j
        return f"{name}-{mode.replace(',', '-')}" + (f"-{mem}m" if mem else "")

    def run_job(j):
        return boot(j[2], j[3], tag_of(j), memory=j[4])

    # Longest boots first, by the times the last full run took (unknown ones
    # first of all): two-level sync with the exhaustive explorer takes a
    # minute or more, and started last it would run alone while the other
    # worker idles.  Results are still reported in declaration order.
    durations_file = os.path.join(LOGDIR, "durations.json")
    try:
        with open(durations_file) as f:
            past = json.load(f)
    except (OSError, ValueError):
        past = {}
    order = sorted(range(len(jobs)), key=lambda i: -past.get(tag_of(jobs[i]), float("inf")))
    durations = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        running = {i: pool.submit(run_job, jobs[i]) for i in order}
        futures = [(n, pool.submit(f, m)) for n, f, m in checks]
        for i, (name, mode, path, cmdline, mem) in enumerate(jobs):
            b = running[i].result()
            durations[tag_of(jobs[i])] = round(b.seconds, 1)
            label = f"{name}[{mode}" + (f",{mem}M" if mem else "") + "]"
            exp = expectations(name)
            if exp["exit"]:
                judge_expect(res, label, b, exp)
            else:
                judge_ktap(res, label, b)
        for n, fut in futures:
            why = fut.result()
            res.record(n, "not ok" if why else "ok", "\n".join(why))
    if not args.filter:  # a filtered run's times would mislead the next full one
        with open(durations_file, "w") as f:
            json.dump(durations, f, indent=1, sort_keys=True)
    print(f"logs: {os.path.relpath(LOGDIR, os.getcwd())}/")
    print(res.summary())
    return 1 if res.failed else 0


def cmd_run(args):
    ensure_tools()
    kernel = args.kernel
    if not kernel:
        bins, _ = build_kernels()
        kernel = next(p for n, p, _ in bins if n == "vmfault")
    entries = [(f"vmfault ({m})", f"paging={m} {args.cmdline}".strip()) for m in MODES]
    default = MODES.index(args.paging)
    os.makedirs(TARGET, exist_ok=True)
    iso = make_iso(kernel, os.path.join(TARGET, "run.iso"), grub_cfg(None, entries, 0, default))
    extra = list(args.qemu or [])
    cmd = qemu_cmd(iso, "mon:stdio", ["-nographic"] + extra)
    cmd.remove("-display"); cmd.remove("none")
    print("runner: " + " ".join(cmd), flush=True)
    print("runner: leave QEMU with Ctrl-A X", flush=True)
    return subprocess.call(cmd)


def cmd_iso(args):
    ensure_tools()
    kernel = args.kernel
    if not kernel:
        bins, _ = build_kernels()
        kernel = next(p for n, p, _ in bins if n == "vmfault")
    with open(os.path.join(ROOT, "boot", "grub.cfg")) as f:
        cfg = f.read()
    out = make_iso(kernel, os.path.join(TARGET, "vmfault.iso"), cfg)
    print(out)
    return 0


def gdb_port():
    """A port per user, so two users on one machine do not collide."""
    return int(os.environ.get("GDB_PORT", 20000 + os.getuid() % 10000))


def cmd_gdb(args):
    """QEMU halted with its gdb stub on a per-user port, and gdb attached
    with the kernel's symbols, the repository's sources and the helpers of
    tests/host/gdb/vmfault-gdb.py, run up to a breakpoint in vmalloc_fault
    (PAE: in the demo thread; --stop start|reset for early boot).  QEMU is
    stopped whenever gdb exits, however it exits."""
    import signal
    import gdb_check
    ensure_tools()
    if shutil.which("gdb") is None:
        sys.exit("runner: gdb is missing; install it with: sudo apt-get install gdb")
    bins, _ = build_kernels()
    kernel = next(p for n, p, _ in bins if n == "vmfault")
    entries = [(f"vmfault ({m})", f"paging={m} {args.cmdline}".strip()) for m in MODES]
    iso = make_iso(kernel, os.path.join(TARGET, "gdb.iso"), grub_cfg(None, entries, 0, MODES.index(args.paging)))
    port = gdb_port()
    if gdb_check.tcp_listening(port):
        sys.exit(f"runner: port {port} is already in use (another `make gdb`?); pick one with GDB_PORT=")
    log = os.path.join(TARGET, "gdb-serial.log")
    init = os.path.join(TARGET, "gdb-init.gdb")
    with open(init, "w") as f:
        f.write(gdb_check.init_script(ROOT, port, args.paging, args.stop))
    if os.path.exists(log):
        os.remove(log)
    cmd = ["gdb", "-q", "-x", init, kernel]
    if args.batch:
        for script in args.batch:
            if not os.path.isfile(script):
                sys.exit(f"runner: no gdb script {script}")
        scripts = [a for s in args.batch for a in ("-x", os.path.abspath(s))]
        cmd = ["gdb", "-q", "-nx", "-batch", "-x", init] + scripts + [kernel]
    timeout = args.timeout if args.timeout is not None else (300 if args.batch else None)

    def hang_up(signum, _frame):
        raise SystemExit(128 + signum)

    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    q = g = None
    try:
        signal.signal(signal.SIGTERM, hang_up)
        signal.signal(signal.SIGHUP, hang_up)
        q = gdb_check.start_qemu(qemu_cmd(iso, f"file:{log}", ["-S", "-gdb", f"tcp:127.0.0.1:{port}"]),
                                 os.path.join(TARGET, "gdb-qemu.log"))
        if not gdb_check.wait_for_stub(q, lambda: gdb_check.tcp_listening(port)):
            err = gdb_check.read_text(os.path.join(TARGET, "gdb-qemu.log")).strip()
            sys.exit(f"runner: QEMU's gdb stub did not come up on port {port}: {err}")
        rel = os.path.relpath(log)
        print(f"runner: QEMU halted (paging={args.paging}), gdb stub on 127.0.0.1:{port} (GDB_PORT overrides)",
              flush=True)
        print(f"runner: serial console in {rel} (follow it with: tail -f {rel})", flush=True)
        print(f"runner: gdb: {os.path.relpath(init)} loads the helpers (vm-help) and stops at "
              + {"vmalloc_fault": "vmalloc_fault (PAE: in the demo thread)", "start": "_start (hbreak *0x100018)",
                 "reset": "the reset vector"}[args.stop] + "; QEMU stops when gdb exits", flush=True)
        g = subprocess.Popen(cmd, cwd=ROOT)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is gdb's: it interrupts the kernel
        try:
            return g.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            print(f"runner: gdb still running after {timeout} s; stopping it", flush=True)
            return 1
    finally:
        if g is not None and g.poll() is None:
            g.kill()
            g.wait()
        gdb_check.stop_qemu(q)
        for s, h in saved.items():
            signal.signal(s, h)


def cmd_cargo(args):
    """Called by cargo as the target runner with the binary path.  A test
    kernel boots in both paging modes with its default vmalloc_fault=;
    three environment variables narrow or widen that, for scoped runs such
    as `make mutants` (tests/host/mutants.py):

      VMFAULT_TEST=GLOB          the KTAP filter, passed as test=GLOB
      VMFAULT_VERSIONS=a,b,...   boot once per vmalloc_fault= version
                                 (legacy, cli, sync, eager) and mode
      VMFAULT_JOBS=N             boots at a time (default 1); with more
                                 than one boot, the first failing boot
                                 stops the others (the verdict is known)

    VMFAULT_BOOT_TIMEOUT (seconds per boot) applies as everywhere."""
    kernel = args.kernel
    name = re.sub(r"-[0-9a-f]{16}$", "", os.path.basename(kernel))
    if os.sep + "deps" + os.sep not in kernel:
        args.kernel, args.paging, args.cmdline, args.qemu = kernel, "2level", "", []
        return cmd_run(args)
    ensure_tools()
    exp = expectations(name)
    test = os.environ.get("VMFAULT_TEST") or None
    versions = [v.strip() for v in os.environ.get("VMFAULT_VERSIONS", "").split(",") if v.strip()]
    bad = [v for v in versions if v not in VERSIONS]
    if bad:
        sys.exit(f"runner: VMFAULT_VERSIONS: unknown {', '.join(bad)} (allowed: {', '.join(VERSIONS)})")
    jobs = []
    for mode in MODES:
        for v in versions or [None]:
            cmdline = f"paging={mode}" + (f" vmalloc_fault={v}" if v else "")
            if test and not exp["exit"]:
                cmdline += f" test={test}"
            label = f"{mode},{v}" if v else mode
            jobs.append((label, cmdline, f"{name}-{label.replace(',', '-')}"))
    stop = threading.Event()

    def run_job(j):
        b = boot(kernel, j[1], j[2], stop=stop)
        failed = (b.status != want) if exp["exit"] else (b.status != EXIT_SUCCESS)
        if failed:
            stop.set()
        return b

    want = {"success": EXIT_SUCCESS, "failure": EXIT_FAILED}.get(exp["exit"])
    res = Results()
    workers = max(1, int(os.environ.get("VMFAULT_JOBS", "1")))
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(run_job, j) for j in jobs]
        for (label, _, _), fut in zip(jobs, futures):
            b = fut.result()
            if b.stopped:
                print(f"{name}[{label}]: not judged, stopped after another boot failed", flush=True)
                continue
            if exp["exit"]:
                judge_expect(res, f"{name}[{label}]", b, exp)
            else:
                judge_ktap(res, f"{name}[{label}]", b)
    print(res.summary())
    return 1 if res.failed else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("test")
    t.add_argument("--filter", default=os.environ.get("TEST") or None, help="KTAP glob (test=)")
    t.add_argument("--cmdline", default="",
                   help="more kernel parameters for every test kernel, e.g. fuzz_seed=S fuzz_cases=1")
    r = sub.add_parser("run")
    r.add_argument("--paging", choices=MODES, default="2level")
    r.add_argument("--cmdline", default="")
    r.add_argument("--qemu", nargs=argparse.REMAINDER)
    r.add_argument("kernel", nargs="?")
    i = sub.add_parser("iso")
    i.add_argument("kernel", nargs="?")
    g = sub.add_parser("gdb")
    g.add_argument("--paging", choices=MODES, default="2level")
    g.add_argument("--cmdline", default="")
    g.add_argument("--batch", action="append", help="run this gdb script in batch mode (after the stop)")
    g.add_argument("--stop", choices=("vmalloc_fault", "start", "reset"),
                   default=os.environ.get("GDB_STOP") or "vmalloc_fault",
                   help="where gdb stops first (GDB_STOP): vmalloc_fault, _start (early boot), the reset vector")
    g.add_argument("--timeout", type=int, help="stop gdb and QEMU after this many seconds (batch: 300)")
    c = sub.add_parser("cargo")
    c.add_argument("kernel")
    c.add_argument("rest", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    return {"test": cmd_test, "run": cmd_run, "iso": cmd_iso, "gdb": cmd_gdb, "cargo": cmd_cargo}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
