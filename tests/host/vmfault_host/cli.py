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
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading

from vmfault_host import build, core_floors, deps, elf, floors, gdb, iso, judge, matrix, replay
from vmfault_host.paths import LOGDIR, ROOT, TARGET
from vmfault_host.qemu import boot, emulator, qemu_cmd


def cmd_test(args):
    deps.ensure_tools()
    bins, tests = build.build_kernels()
    main_kernel = build.main_kernel(bins)
    # The kernel replays boot (race.md's build): the test kernels' profile,
    # whose dependencies the test build just compiled.
    race_kernel = build.build_main(profile=replay.PROFILE)
    k = elf.constants(main_kernel)
    res = judge.Results()
    # The floors inside the core crate, which the compiler cannot see (the
    # crates' floors it enforces): an upward path fails the run, whatever
    # the filter (vmfault_host/core_floors.py).
    upward = core_floors.check(ROOT)
    res.record("host core_floors_import_downward", "not ok" if upward else "ok", "\n".join(upward))
    # QEMU's run has a Bochs part where Bochs is installed (.ci/run and
    # `make test` install it; without it the part is reported skipped).
    from vmfault_host import bochs
    part = emulator() == "qemu" and not args.filter
    jobs = matrix.jobs(k, tests, args.filter, args.cmdline, bochs_part=part and bochs.available())
    if part and not bochs.available():
        res.record("host bochs_part", "skip", f"Bochs is not installed: {bochs.APT}")
    if not args.filter:
        # gdb in batch mode against QEMU, both paging modes
        checks = (judge.host_checks(main_kernel) + gdb.checks(main_kernel, race_kernel) + replay.checks(race_kernel)
                  + floors.checks(main_kernel, race_kernel, build.test_kernel(tests, "ktest")))
    else:
        checks = []

    # Results are reported in declaration order, whatever order they ran in.
    durations = {}
    matched, no_case = False, None
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        running = {i: pool.submit(boot, jobs[i].path, jobs[i].cmdline, jobs[i].tag, memory=jobs[i].memory,
                                  smp=jobs[i].smp, emu=jobs[i].emu)
                   for i in matrix.start_order(jobs)}
        futures = [(n, pool.submit(f, m)) for n, f, m in checks]
        for i, j in enumerate(jobs):
            b = running[i].result()
            durations[j.tag] = round(b.seconds, 1)
            exp = judge.expectations(j.name)
            if exp["exit"]:
                judge.judge_expect(res, j.label, b, exp)
            else:
                report = judge.judge_ktap(res, j.label, b)
                matched |= bool(report.cases) or report.plan != 0
                no_case = no_case or judge.NO_CASE.search(b.log)
        if args.filter and not matched and no_case:
            res.record(f"host filter_matches_a_case", "not ok",
                       f"TEST={args.filter} matches no case in any boot: the filter is a glob over suite.case, "
                       f"e.g. TEST='race.*'; the suites: {no_case.group(2)}")
        for n, fut in futures:
            why = fut.result()
            res.record(n, "not ok" if why else "ok", "\n".join(why))
    if not args.filter:  # a filtered run's times would mislead the next full one
        matrix.save_durations(durations)
    print(f"logs: {os.path.relpath(LOGDIR, os.getcwd())}/")
    print(res.summary())
    return 1 if res.failed else 0


def checked_paging(args, k):
    """--paging, checked against the kernel's own paging= values (known
    only once it is built); unset, the kernel's default."""
    if args.paging is None:
        return k.default_mode
    if args.paging not in k.modes:
        args.parser.error(f"argument --paging: invalid choice: {args.paging!r} "
                          f"(choose from {', '.join(repr(m) for m in k.modes)})")
    return args.paging


def user_kernel(args):
    """The kernel named on the command line, or the freshly built one."""
    deps.ensure_tools()
    if args.kernel:
        return args.kernel
    return build.build_main()


def cmd_run(args):
    if args.race:
        # The kernel race.md measured, not the unoptimised one.
        deps.ensure_tools()
        kernel = args.kernel or build.build_main(profile=replay.PROFILE)
        return replay.run(kernel, args.race, extra=args.qemu or [])
    kernel = user_kernel(args)
    k = elf.constants(kernel)
    default = k.modes.index(checked_paging(args, k))
    if emulator() == "bochs":
        from vmfault_host import bochs
        cmdline = iso.menu(k, args.cmdline)[default][1]
        print(f"runner: booting {os.path.relpath(kernel)} under Bochs with: {cmdline} (Ctrl-C ends it)", flush=True)
        try:
            b = bochs.boot(kernel, cmdline, "run-bochs", 24 * 3600, smp=args.smp,
                           on_line=lambda line: print(line, flush=True))
        except KeyboardInterrupt:
            return 130
        print(f"runner: {b.verdict()}", flush=True)
        return 0 if b.status == b.success else 1
    # The ISO lives only as long as this run: a file left in target/ would
    # keep this command line for whoever boots it next (`make iso` writes
    # the one with every menu entry).
    with tempfile.TemporaryDirectory(prefix="vmfault-run-") as d:
        image = iso.make_iso(kernel, os.path.join(d, "run.iso"),
                             iso.grub_cfg(k, None, iso.menu(k, args.cmdline), 0, default))
        extra = list(args.qemu or [])
        cmd = qemu_cmd(k, image, "mon:stdio", ["-nographic"] + extra, smp=args.smp)
        cmd.remove("-display"); cmd.remove("none")
        print(f"runner: booting {os.path.relpath(kernel)} with: {iso.menu(k, args.cmdline)[default][1]}", flush=True)
        print("runner: " + " ".join(cmd), flush=True)
        print("runner: leave QEMU with Ctrl-A X", flush=True)
        return subprocess.call(cmd)


def cmd_iso(args):
    kernel = user_kernel(args)
    with open(os.path.join(ROOT, "boot", "grub.cfg")) as f:
        cfg = f.read()
    out = iso.make_iso(kernel, os.path.join(TARGET, "vmfault.iso"), cfg)
    print(out)
    return 0


def cmd_gdb(args):
    """`make gdb`: see gdb.interactive."""
    deps.ensure_tools()
    if not args.batch and os.environ.get("GDB_BATCH"):
        args.batch = [os.environ["GDB_BATCH"]]
    if shutil.which("gdb") is None:
        sys.exit("runner: gdb is missing; install it with: sudo apt-get install gdb")
    if args.race:
        kernel = build.build_main(profile=replay.PROFILE)
        k = elf.constants(kernel)
        handles = replay.parse_all(k, args.race, kernel)
        if len(handles) != 1:
            sys.exit("runner: make gdb RACE= takes one handle (make run RACE= takes several)")
        if args.reverse and handles[0].cpus > 1:
            sys.exit("runner: REVERSE=1 needs a one-CPU handle: QEMU 7.2's record/replay refuses two CPUs "
                     "(\"Record/replay feature is not supported for 'smp'\")")
        return gdb.interactive(kernel, handles[0].mode, "", args.stop, args.batch, args.timeout,
                               race=handles[0], reverse=args.reverse)
    if args.reverse:
        sys.exit("runner: REVERSE=1 goes with RACE=HANDLE (it records that replay's boot)")
    kernel = build.build_main()
    paging = checked_paging(args, elf.constants(kernel))
    return gdb.interactive(kernel, paging, args.cmdline, args.stop, args.batch, args.timeout)


def cmd_help(args):
    """`make help`'s second half: what the built kernel takes, from its ELF."""
    kernel = build.debug_main_path()
    if not os.path.exists(kernel):
        print("(build the kernel, `make build`, to see the values it takes)")
        return 0
    k = elf.constants(kernel)
    print(f"The kernel built ({os.path.relpath(kernel)}) takes:")
    print(f"  PAGING:        {', '.join(k.modes)} (default {k.default_mode})")
    print(f"  VMALLOC_FAULT: {', '.join(k.versions)} (default {k.default_version})")
    print("  RACE scenarios (CPUs; modes):")
    for name, cpus, modes in zip(k.race_scenarios, k.race_scenario_cpus, k.race_scenario_modes):
        print(f"    {name:<26} {cpus.replace(' ', ' or ')} CPU(s); {modes.replace(' ', ', ')}")
    print("  e.g. make run RACE=thread:legacy:2level:1cpu:30; race.md's replay column has one per row")
    return 0


def cmd_cargo(args):
    """Called by cargo as the target runner with the binary path.  A test
    kernel boots in both paging modes with its default vmalloc_fault=;
    three environment variables narrow or widen that, for scoped runs such
    as `make mutants` (vmfault_host/mutants.py):

      VMFAULT_TEST=GLOB          the KTAP filter, passed as test=GLOB
      VMFAULT_VERSIONS=a,b,...   boot once per vmalloc_fault= version
                                 (the kernel's names) and mode
      VMFAULT_JOBS=N             boots at a time (default 1); with more
                                 than one boot, the first failing boot
                                 stops the others (the verdict is known)

    VMFAULT_BOOT_TIMEOUT (seconds per boot) applies as everywhere."""
    kernel = args.kernel
    name = re.sub(r"-[0-9a-f]{16}$", "", os.path.basename(kernel))
    if os.sep + "deps" + os.sep not in kernel:
        args.kernel, args.paging, args.cmdline, args.qemu, args.smp = kernel, None, "", [], None
        args.race = None
        return cmd_run(args)
    deps.ensure_tools()
    k = elf.constants(kernel)
    exp = judge.expectations(name)
    test = os.environ.get("VMFAULT_TEST") or None
    versions = [v.strip() for v in os.environ.get("VMFAULT_VERSIONS", "").split(",") if v.strip()]
    bad = [v for v in versions if v not in k.versions]
    if bad:
        sys.exit(f"runner: VMFAULT_VERSIONS: unknown {', '.join(bad)} (allowed: {', '.join(k.versions)})")
    jobs = []
    for mode in k.modes:
        for v in versions or [None]:
            cmdline = f"paging={mode}" + (f" vmalloc_fault={v}" if v else "")
            if test and not exp["exit"]:
                cmdline += f" test={test}"
            label = f"{mode},{v}" if v else mode
            jobs.append((label, cmdline, f"{name}-{label.replace(',', '-')}"))
    stop = threading.Event()

    def run_job(j):
        b = boot(kernel, j[1], j[2], stop=stop)
        want = judge.expected_status(b, exp) if exp["exit"] else b.success
        if b.status != want:
            stop.set()
        return b

    res = judge.Results()
    workers = max(1, int(os.environ.get("VMFAULT_JOBS", "1")))
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(run_job, j) for j in jobs]
        for (label, _, _), fut in zip(jobs, futures):
            b = fut.result()
            if b.stopped:
                print(f"{name}[{label}]: not judged, stopped after another boot failed", flush=True)
                continue
            if exp["exit"]:
                judge.judge_expect(res, f"{name}[{label}]", b, exp)
            else:
                judge.judge_ktap(res, f"{name}[{label}]", b)
    print(res.summary())
    return 1 if res.failed else 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("test")
    t.add_argument("--filter", default=os.environ.get("TEST") or None, help="KTAP glob (test=)")
    t.add_argument("--cmdline", default="",
                   help="more kernel parameters for every test kernel, e.g. fuzz_seed=S fuzz_cases=1")
    # --paging takes the kernel's paging= values, read from it once built.
    paging_help = "a paging= value of the kernel (default: the kernel's)"
    r = sub.add_parser("run")
    r.add_argument("--paging", metavar="MODE", help=paging_help)
    r.add_argument("--cmdline", default="")
    r.add_argument("--smp", type=int, help="CPUs QEMU gives the machine (round-robin TCG)")
    r.add_argument("--race", default=os.environ.get("RACE") or None,
                   help="replay these explored runs (handles SCENARIO:VERSION:MODE:NCPU:K, comma-separated)")
    r.add_argument("--qemu", nargs=argparse.REMAINDER)
    r.add_argument("kernel", nargs="?")
    r.set_defaults(parser=r)
    i = sub.add_parser("iso")
    i.add_argument("kernel", nargs="?")
    g = sub.add_parser("gdb")
    g.add_argument("--paging", metavar="MODE", help=paging_help)
    g.add_argument("--cmdline", default="")
    g.add_argument("--batch", action="append",
                   help="run this gdb script in batch mode (after the stop), then exit (GDB_BATCH=)")
    g.add_argument("--stop", choices=("vmalloc_fault", "start", "reset"),
                   default=os.environ.get("GDB_STOP") or "vmalloc_fault",
                   help="where gdb stops first (GDB_STOP): vmalloc_fault, _start (early boot), the reset vector")
    g.add_argument("--timeout", type=int, help="stop gdb and QEMU after this many seconds (batch: 300)")
    g.add_argument("--reverse", action="store_true", default=os.environ.get("REVERSE") == "1",
                   help="record the replay's boot first, so reverse-stepi/reverse-continue work (REVERSE=1)")
    g.add_argument("--race", default=os.environ.get("RACE") or None,
                   help="stop at this replay's boundary (a handle SCENARIO:VERSION:MODE:NCPU:K)")
    g.set_defaults(parser=g)
    sub.add_parser("help")
    c = sub.add_parser("cargo")
    c.add_argument("kernel")
    c.add_argument("rest", nargs=argparse.REMAINDER)
    c.set_defaults(parser=r)
    args = ap.parse_args(argv)
    return {"test": cmd_test, "run": cmd_run, "iso": cmd_iso, "gdb": cmd_gdb, "cargo": cmd_cargo,
            "help": cmd_help}[args.cmd](args)
