#!/usr/bin/env python3
"""A standing mutation run: cargo-mutants over the memory-management files
where a wrong line would falsify an experiment, judged by the in-kernel
KTAP suite, scoped per file to the suites that cover it.

  mutants.py [FILE...]          run cargo-mutants per file (default: all of
                                SCOPES, in order) and rewrite docs/mutants.md
  mutants.py --list             count the mutants per file, estimate the time
  mutants.py --in-diff [REF]    only mutants on lines this branch and the
                                work tree changed since REF (default main):
                                `git diff $(git merge-base REF HEAD)` ->
                                cargo mutants --in-diff; results under
                                mutants.out/in-diff/, docs/mutants.md kept
  mutants.py --report           rewrite docs/mutants.md from mutants.out/

How the kernel is driven: cargo-mutants copies the tree, plants one mutant,
runs `cargo test --test ktest` (.cargo/mutants.toml); cargo calls the
target runner (tests/host/runner.py cargo KERNEL), which boots the test
kernel under QEMU once per paging mode and vmalloc_fault= version named in
VMFAULT_VERSIONS, with test=VMFAULT_TEST, and fails on any failed case,
crash or hang.  A boot that does not exit within BOOT_TIMEOUT is a hang:
the runner stops it and fails, and the report counts that mutant as a
timeout; cargo-mutants' own timeout (twice the unmutated baseline) is the
backstop and counts as a timeout too.

Results: mutants.out/<stem>/mutants.out/outcomes.json (cargo-mutants) and
mutants.out/<stem>/run.json (command, wall time); docs/mutants.md.
"""
import argparse
import functools
import json
import os
import shlex
import signal
import subprocess
import sys
import time

from vmfault_host import build, elf
from vmfault_host.paths import ROOT

OUT = os.path.join(ROOT, "mutants.out")
REPORT = os.path.join(ROOT, "docs", "mutants.md")
# One build directory shared by every run: a fresh copy of the tree then
# rebuilds only the vmfault crate, not core/alloc (build-std) and the deps.
BUILD_DIR = os.path.join(ROOT, "target", "mutants-build")
# In SCOPES: every vmalloc_fault= version the kernel has (versions()).
ALL_VERSIONS = None
# Seconds one scoped boot may take before the runner calls it a hang (the
# slowest scoped boot of the ktest-profile kernel takes under 10 s on a
# loaded 2-core machine).  A mutant caught that way is reported as a
# timeout, like one stopped by cargo-mutants' own timeout (twice the
# unmutated baseline), which is the backstop: hangs cost one boot timeout,
# not the whole scope twice.
BOOT_TIMEOUT = 60
HANG = "hang: no exit within the timeout"

# File -> (KTAP filter, vmalloc_fault= versions).  Every kernel boots through
# mm::init, frame and pgtable, so a mutant that breaks booting fails any
# scope; the scope is what exercises the file's behaviour beyond that.
# The test kernels are the `ktest` profile's (.cargo/mutants.toml), as in
# make test: the exhaustive explorers take a fraction of a second there.
# Slow cases left out, with what still covers their ground:
#   vmalloc.random_10000_ops_keep_tree_consistent: vm_area/vmalloc tree
#     bookkeeping, not the fault path; it is in the vmalloc.rs and
#     vm_area.rs scopes.
SCOPES = {
    # Every version's handler and the #PF gate: every version.
    # traps.write_to*/jump_into*: protection faults on kernel addresses must
    # not enter vmalloc_fault (the 2.4.16 `!(error_code & 5)` test); added
    # after the first run missed `&& -> ||` there.
    "src/mm/fault.rs": ("vmalloc.*,race.*,traps.page_fault*,traps.write_to*,traps.jump_into*,traps.fault_at*,traps.not_present*,sched.thread_stack*,"
                        "-vmalloc.random_10000_ops_keep_tree_consistent",
                        ALL_VERSIONS),
    # Entry formats, offsets, folding: paging is the direct test; the lazy
    # sync cases walk both directories.  legacy reads pgd_present (the
    # two-level folding) where sync does not.
    # traps.jump_into*/write_to*: NX and read-only bits in the entries
    # (added after the first pgtable.rs run missed its NX mutants).
    "src/mm/pgtable.rs": ("paging.*,vmalloc.lazy_sync*,vmalloc.data_written*,vmalloc.guard_page*,"
                          "vmalloc.vmap_and_ioremap*,vmalloc.fault_gate*,traps.jump_into*,traps.write_to*",
                          "legacy,sync"),
    # The two formats as types (issue 14): every handler's walk and write
    # is one of these bodies, compiled per mode.
    "src/mm/pgtable/levels.rs": ("paging.*,vmalloc.lazy_sync*,vmalloc.data_written*,vmalloc.guard_page*,"
                                 "vmalloc.vmap_and_ioremap*,vmalloc.fault_gate*,traps.jump_into*,traps.write_to*",
                                 "legacy,sync"),
    # 5.8's map-then-sync and 5.9's fallback: the eager versions' vmalloc
    # suite and the 2020 window.
    "src/mm/sync_kernel_mappings.rs": ("vmalloc.*,race.regression_2020_window,-vmalloc.random_10000_ops_keep_tree_consistent",
                                       "eager,eager-lazy"),
    "src/mm/vmalloc/map_range.rs": ("vmalloc.*,race.regression_2020_window,-vmalloc.random_10000_ops_keep_tree_consistent",
                                    "eager,eager-lazy"),
    # The lazy-sync counters the vmalloc and race cases assert on.
    "src/mm/fault_stats.rs": ("vmalloc.lazy_sync*,vmalloc.*fault*,race.*", "sync"),
    "src/mm/walk.rs": ("paging.*,vmalloc.*,sched.thread_stack*", "sync"),
    # vmalloc/: the API file (mod.rs), the stack zone, its reports; the
    # experiments' hooks (lab_support.rs) are not the kernel's mapping code.
    "src/mm/vmalloc/mod.rs": ("vmalloc.*,sched.thread_stack*,leaks.*", "legacy,sync,eager"),
    "src/mm/vmalloc/stack.rs": ("vmalloc.*,sched.*", "sync"),
    "src/mm/vmalloc/info.rs": ("vmalloc.*,leaks.*", "sync"),
    "src/mm/vm_area.rs": ("vmalloc.*,sched.*", "sync"),
    "src/mm/frame.rs": ("frames.*,paging.*,leaks.*", "sync"),
    "src/mm/init.rs": ("paging.*,frames.*,boot.*,traps.jump_into*,traps.write_to*", "sync"),
}


@functools.lru_cache(maxsize=None)
def kernel_versions():
    """The kernel's vmalloc_fault= names, from the debug kernel cargo
    builds (incrementally: usually there already)."""
    return elf.constants(build.main_kernel(build.cargo_artifacts(["build", "--bins"]))).versions


def versions(path):
    """The versions of `path`'s scope, as VMFAULT_VERSIONS takes them."""
    v = SCOPES[path][1]
    return ",".join(kernel_versions()) if v is ALL_VERSIONS else v


def stem(path):
    """src/mm/vmalloc/mod.rs -> mm-vmalloc-mod: one output directory a file."""
    rel = os.path.relpath(os.path.join(ROOT, path), os.path.join(ROOT, "src"))
    return os.path.splitext(rel)[0].replace(os.sep, "-")


def list_mutants(path, diff=None):
    extra = ["--in-diff", diff] if diff else []
    r = subprocess.run(["cargo", "mutants", "--list", "--json", "-f", path] + extra, cwd=ROOT,
                       capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"mutants: cargo mutants --list failed:\n{r.stdout}{r.stderr}")
    return json.loads(r.stdout)


def cmd_list(args, diff=None):
    total = 0
    for path in args.files:
        n = len(list_mutants(path, diff))
        total += n
        print(f"{path}: {n} mutants  (test={SCOPES[path][0]} vmalloc_fault={versions(path)})")
    print(f"total: {total} mutants")
    return 0


def run_file(path, in_diff=None, jobs=2, multiplier=2.0, deadline=None):
    glob, vers = SCOPES[path][0], versions(path)
    # An --in-diff run keeps its results apart from the standing full run.
    out = os.path.join(OUT, "in-diff" if in_diff else "", stem(path))
    os.makedirs(out, exist_ok=True)
    env = dict(os.environ, VMFAULT_TEST=glob, VMFAULT_VERSIONS=vers, VMFAULT_JOBS=str(jobs),
               VMFAULT_BOOT_TIMEOUT=os.environ.get("VMFAULT_BOOT_TIMEOUT", str(BOOT_TIMEOUT)),
               CARGO_TARGET_DIR=BUILD_DIR)
    cmd = ["cargo", "mutants", "-f", path, "-o", out, "-j", "1",
           "--timeout-multiplier", str(multiplier), "--minimum-test-timeout", "60",
           "--build-timeout", "600", "--colors", "never"]
    if in_diff:
        cmd += ["--in-diff", in_diff]
    shown = " ".join(f"{k}={shlex.quote(env[k])}" for k in ("VMFAULT_TEST", "VMFAULT_VERSIONS", "VMFAULT_JOBS"))
    shown += " " + " ".join(shlex.quote(c) for c in cmd)
    print(f"mutants: {shown}", flush=True)
    start = time.monotonic()
    p = subprocess.Popen(cmd, cwd=ROOT, env=env)
    stopped = False
    while True:
        try:
            rc = p.wait(timeout=5)
            break
        except subprocess.TimeoutExpired:
            pass
        if deadline and time.monotonic() > deadline and not stopped:
            # cargo-mutants' Ctrl-C: it stops the running test, kills its
            # process group (cargo, the runner, QEMU) and keeps the
            # outcomes of the mutants it finished.
            print(f"mutants: time budget spent; stopping cargo-mutants on {path}", flush=True)
            p.send_signal(signal.SIGINT)
            stopped = True
    secs = time.monotonic() - start
    with open(os.path.join(out, "run.json"), "w") as f:
        json.dump({"file": path, "test": glob, "versions": vers, "command": shown, "seconds": round(secs), "exit": rc, "stopped": stopped,
                   "in_diff": bool(in_diff), "when": time.strftime("%Y-%m-%d %H:%M")}, f, indent=1)
    return rc


# ---------------------------------------------------------------- report

OUTCOMES = {"CaughtMutant": "caught", "MissedMutant": "missed", "Timeout": "timeout",
            "Unviable": "unviable", "Success": "success", "Failure": "failure"}


def load(path):
    d = os.path.join(OUT, stem(path))
    try:
        with open(os.path.join(d, "mutants.out", "outcomes.json")) as f:
            outcomes = json.load(f)
        with open(os.path.join(d, "run.json")) as f:
            run = json.load(f)
    except (OSError, ValueError):
        return None
    try:
        with open(os.path.join(d, "mutants.out", "mutants.json")) as f:
            plan = [m["name"] for m in json.load(f)]
    except (OSError, ValueError, KeyError):
        plan = []
    rows, baseline = [], None
    for o in outcomes.get("outcomes", []):
        sc = o.get("scenario")
        summary = OUTCOMES.get(o.get("summary"), str(o.get("summary")))
        secs = sum(p.get("duration", {}).get("secs", 0) if isinstance(p.get("duration"), dict)
                   else (p.get("duration") or 0) for p in o.get("phase_results", []))
        if sc == "Baseline":
            baseline = (summary, secs)
            continue
        m = sc.get("Mutant", sc) if isinstance(sc, dict) else {}
        line = m.get("span", {}).get("start", {}).get("line")
        if summary == "caught" and o.get("log_path"):
            try:
                if HANG in open(os.path.join(d, "mutants.out", o["log_path"]), errors="replace").read():
                    summary = "timeout"  # a boot hung; the runner stopped it
            except OSError:
                pass
        rows.append({"name": m.get("name") or "", "file": m.get("file", path), "line": line,
                     "replacement": m.get("replacement"), "function": (m.get("function") or {}).get("function_name"),
                     "outcome": summary, "seconds": secs})
    done = {r["name"] for r in rows}
    return {"run": run, "rows": rows, "baseline": baseline, "total": len(plan) or None,
            "not_run": [n for n in plan if n not in done]}


KEEP = "<!-- written by hand below this line; mutants.py keeps it -->"


def write_report(files):
    lines = ["# Mutation testing (`make mutants`)", "",
             "Generated by `tests/host/mutants.py` from `mutants.out/` (cargo-mutants "
             + cargo_mutants_version() + "); see the docstring of `tests/host/vmfault_host/mutants.py` for "
             "how cargo-mutants drives the kernel.  Each mutant is one incremental build of the `ktest` kernel and the boots of "
             "its file's scope (both paging modes x the listed `vmalloc_fault=` versions, 2 QEMU at a "
             "time, the first failing boot stops the rest).", "",
             "| file | scope (`test=`) | versions | mutants | caught | missed | timeout | unviable | baseline | wall time |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    missed, commands, not_run, unrun = [], [], [], []
    for path in files:
        r = load(path)
        if r is None:
            not_run.append(path)
            continue
        # The scope the run used (SCOPES may have changed since).
        glob, vers = r["run"].get("test"), r["run"].get("versions")
        if glob is None:
            words = dict(w.split("=", 1) for w in shlex.split(r["run"]["command"]) if w.startswith("VMFAULT_"))
            glob, vers = words.get("VMFAULT_TEST"), words.get("VMFAULT_VERSIONS")
        c = {k: 0 for k in OUTCOMES.values()}
        for row in r["rows"]:
            c[row["outcome"]] = c.get(row["outcome"], 0) + 1
        base = f"{r['baseline'][0]} {r['baseline'][1]:.0f} s" if r["baseline"] else "skipped"
        mins = r["run"]["seconds"] / 60
        note = " (in-diff)" if r["run"].get("in_diff") else ""
        done = len(r["rows"])
        total = r["total"] if r["total"] is not None else done
        tried = f"{done}" if done == total else f"{done} of {total} (stopped: time)"
        lines.append(f"| `{path}`{note} | `{glob}` | {vers} | {tried} | {c['caught']} | {c['missed']} | "
                     f"{c['timeout']} | {c['unviable']} | {base} | {mins:.1f} min |")
        commands.append((path, r["run"]["command"], r["run"]["when"]))
        missed += [row for row in r["rows"] if row["outcome"] == "missed"]
        unrun += r["not_run"]
    if not_run:
        lines += ["", "Not run yet (time): " + ", ".join(f"`{p}`" for p in not_run) + "."]
    # The size of a full run, from `cargo mutants --list` (after
    # .cargo/mutants.toml's exclusions), priced at the mean cost per mutant
    # measured above (build + scoped boots, baseline included).
    listed = {p: len(list_mutants(p)) for p in files}
    measured = [load(p) for p in files]
    n = sum(len(r["rows"]) for r in measured if r)
    secs = sum(r["run"]["seconds"] for r in measured if r)
    lines += ["", "## Size of a full run", "",
              "| file | mutants (`cargo mutants --list -f FILE`) |", "|---|---|"]
    lines += [f"| `{p}` | {listed[p]} |" for p in files]
    lines.append(f"| total | {sum(listed.values())} |")
    if n:
        per = secs / n
        lines += ["", f"Measured here: {per:.0f} s per mutant on average ({n} mutants in {secs / 60:.0f} min, "
                  "one cargo-mutants job, 2 QEMU, a shared 2-core machine).  At that rate the whole list takes "
                  f"about {sum(listed.values()) * per / 3600:.1f} h; a mutant that breaks booting costs one "
                  "incremental build and a few seconds, a missed one the whole scope."]
    lines += ["", "## Commands", ""]
    for path, cmd, when in commands:
        lines += [f"- `{path}` ({when}):", "", f"      {cmd}", ""]
    if unrun:
        lines += ["## Mutants not run (the run was stopped for time)", ""]
        lines += [f"- `{n}`" for n in unrun] + [""]
    lines += ["## Missed mutants", ""]
    if not missed:
        lines.append("None.")
    for row in sorted(missed, key=lambda r: (r["file"], r["line"] or 0)):
        lines.append(f"- `{row['name']}`")
    lines.append("")
    # A hand-written analysis of the missed mutants survives regeneration.
    try:
        old = open(REPORT).read()
    except OSError:
        old = ""
    kept = old[old.index(KEEP):] if KEEP in old else KEEP + "\n\n## Analysis of the missed mutants\n\n(none yet)\n"
    lines.append(kept.rstrip("\n"))
    lines.append("")
    os.makedirs(os.path.dirname(REPORT), exist_ok=True)
    with open(REPORT, "w") as f:
        f.write("\n".join(lines))
    print(f"mutants: wrote {os.path.relpath(REPORT, os.getcwd())}")


def cargo_mutants_version():
    try:
        return subprocess.run(["cargo", "mutants", "--version"], capture_output=True, text=True,
                              cwd=ROOT).stdout.split()[-1]
    except (OSError, IndexError):
        return "?"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="*", help="files of SCOPES (default: all)")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--report", action="store_true", help="only rewrite docs/mutants.md")
    ap.add_argument("--in-diff", nargs="?", const="main", metavar="REF")
    ap.add_argument("--jobs", type=int, default=int(os.environ.get("VMFAULT_JOBS", "2")),
                    help="QEMU boots at a time per mutant (cargo-mutants itself runs one job)")
    ap.add_argument("--timeout-multiplier", type=float, default=2.0)
    ap.add_argument("--budget", type=float, metavar="MINUTES",
                    help="stop (keeping what finished) once this many minutes have passed")
    args = ap.parse_args()
    if subprocess.run(["cargo", "mutants", "--version"], cwd=ROOT, capture_output=True).returncode != 0:
        sys.exit("mutants: cargo-mutants is missing; install it with: cargo install cargo-mutants --locked")
    for p in args.files:
        if p not in SCOPES:
            sys.exit(f"mutants: no scope for {p}; known: {', '.join(SCOPES)}")
    args.files = args.files or list(SCOPES)
    if args.report:
        write_report(list(SCOPES))
        return 0
    diff = None
    if args.in_diff:
        # What this branch and the work tree changed since it left REF, not
        # what REF gained meanwhile: the diff from the merge base.
        base = subprocess.run(["git", "merge-base", args.in_diff, "HEAD"], cwd=ROOT,
                              capture_output=True, text=True, check=True).stdout.strip()
        text = subprocess.run(["git", "diff", base, "--"] + args.files, cwd=ROOT,
                              capture_output=True, text=True, check=True).stdout
        os.makedirs(OUT, exist_ok=True)
        diff = os.path.join(OUT, "in-diff.patch")
        with open(diff, "w") as f:
            f.write(text)
        changed = [p for p in args.files if f"+++ b/{p}\n" in text]
        if not changed:
            print(f"mutants: no change to {', '.join(args.files)} since {args.in_diff}")
            return 0
        args.files = changed
    if args.list:
        return cmd_list(args, diff)
    worst = 0
    deadline = time.monotonic() + args.budget * 60 if args.budget is not None else None
    for path in args.files:
        if deadline and time.monotonic() > deadline:
            print(f"mutants: time budget spent; not starting {path}", flush=True)
            continue
        rc = run_file(path, diff, args.jobs, args.timeout_multiplier, deadline)
        # cargo-mutants: 0 all caught, 2 missed, 3 timeouts, 4 baseline failed
        worst = max(worst, rc)
    if diff:
        for path in args.files:
            missed = os.path.join(OUT, "in-diff", stem(path), "mutants.out", "missed.txt")
            text = open(missed).read().strip() if os.path.exists(missed) else ""
            print(f"mutants: {path}: " + (f"missed on changed lines:\n{text}" if text else "no missed mutant"))
    else:
        write_report(list(SCOPES))
    return worst
