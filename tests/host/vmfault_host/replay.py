"""Replay handles: `make run RACE=...` and `make gdb RACE=...`.

A handle names one explored run, `SCENARIO:VERSION:MODE:NCPU:K`
(crates/lab/src/race/replay.rs): race.md's `replay` column gives one per row.
Everything a handle may say is checked here before anything boots, against
the kernel's own lists (its ELF's VMFAULT_RACE_* and VMFAULT_VERSION_NAMES
symbols), and its boundary against the last `make experiments` of the same
build where there is one (target/experiments/boundaries.json); the kernel
checks the boundary itself after its dry run either way.

The replay boots the kernel race.md measured: the main kernel in the
`ktest` profile (opt-level 1 with the debug checks), the build
`make experiments` boots.  Its console is shown live, each instruction
address the kernel prints (`[0xc01234ab]`) followed by its source line
(addr2line on the ELF).  The exit status is 0 when every replayed run
ended as the explorer's run at that boundary did (the kernel's verdict,
`RACE|...|same=1`), 1 otherwise, 2 for a handle refused before boot.
"""
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass

from vmfault_host import elf, iso
from vmfault_host.paths import ROOT, TARGET
from vmfault_host.qemu import BOCHS_SLOWER, emulator, exit_status, qemu_cmd

BOUNDARIES = os.path.join(TARGET, "experiments", "boundaries.json")
# The build replays boot: the one `make experiments` measures.
PROFILE = "ktest"


class BadHandle(Exception):
    pass


@dataclass(frozen=True)
class Handle:
    scenario: str
    version: str
    mode: str
    cpus: int
    k: int

    def __str__(self):
        return f"{self.row}:{self.k}"

    @property
    def row(self):
        """The handle without its boundary: one table row's runs."""
        return f"{self.scenario}:{self.version}:{self.mode}:{self.cpus}cpu"


def parse(k, text):
    """`text` as a Handle of kernel `k` (elf.Kernel), or BadHandle saying
    which field is wrong and what it may be."""
    parts = text.strip().split(":")
    if len(parts) != 5:
        raise BadHandle(f"'{text}' is not SCENARIO:VERSION:MODE:NCPU:K (e.g. thread:legacy:2level:1cpu:21)")
    scenario, version, mode, cpus, boundary = parts
    if scenario not in k.race_scenarios:
        raise BadHandle(f"unknown scenario '{scenario}' (scenarios: {', '.join(k.race_scenarios)})")
    if version not in k.versions:
        raise BadHandle(f"unknown version '{version}' (versions: {', '.join(k.versions)})")
    if mode not in k.modes:
        raise BadHandle(f"unknown paging mode '{mode}' (modes: {', '.join(k.modes)})")
    i = k.race_scenarios.index(scenario)
    allowed_cpus = [int(c) for c in k.race_scenario_cpus[i].split()]
    m = re.fullmatch(r"([12])cpu", cpus)
    if not m:
        raise BadHandle(f"unknown CPU count '{cpus}' (1cpu or 2cpu)")
    n = int(m.group(1))
    modes = k.race_scenario_modes[i].split()
    if n not in allowed_cpus or mode not in modes:
        raise BadHandle(f"{scenario} runs with {' or '.join(f'{c}cpu' for c in allowed_cpus)} in "
                        f"{' or '.join(modes)}, not {cpus} in {mode}")
    if not boundary.isdigit():
        raise BadHandle(f"'{boundary}' is not a boundary number (0, 1, 2, ...)")
    return Handle(scenario, version, mode, n, int(boundary))


def kernel_id(kernel):
    """What ties boundaries.json to one build: the ELF's bytes."""
    h = hashlib.sha256()
    with open(kernel, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_boundaries(kernel, rows):
    """`make experiments`: each row's boundary count and the boundaries
    its runs use, {row: {"n": N, "runnable": [[a, b], ...]}}, for the
    checks before a replay boots."""
    os.makedirs(os.path.dirname(BOUNDARIES), exist_ok=True)
    with open(BOUNDARIES, "w") as f:
        json.dump({"kernel": kernel_id(kernel), "rows": rows}, f, indent=0, sort_keys=True)


def known_boundaries(kernel):
    """The rows `make experiments` measured with this very kernel, or {}."""
    try:
        with open(BOUNDARIES) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return data.get("rows", {}) if data.get("kernel") == kernel_id(kernel) else {}


def check_boundary(h, known):
    """Refuse a boundary the measured row does not have (`known`: from
    known_boundaries); None if it is fine or not known here."""
    row = known.get(h.row)
    if row is None:
        return None
    n = row["n"]
    if n == 0:
        return f"{h.row} has no boundary: no vmalloc fault happens there (race.md: 0 boundaries stepped)"
    if h.k >= n:
        return f"boundary {h.k} is past the end: {h.row} has boundaries 0..{n - 1}"
    spans = row.get("runnable") or []
    if not any(a <= h.k <= b for a, b in spans):
        shown = ", ".join(f"{a}..{b}" if a != b else f"{a}" for a, b in spans)
        return (f"boundary {h.k} of {h.row} is never run (interrupts off there on one CPU, or outside "
                f"the window): its runs are at {shown}")
    return None


def group(handles):
    """Handles one boot can replay (the same version, mode and CPUs)."""
    groups = {}
    for h in handles:
        groups.setdefault((h.version, h.mode, h.cpus), []).append(h)
    return list(groups.values())


def cmdline(handles):
    h = handles[0]
    return f"paging={h.mode} vmalloc_fault={h.version} race={','.join(str(x) for x in handles)}"


def parse_all(k, text, kernel):
    """Every handle of a comma-separated RACE=, checked; exits 2 with the
    reason on the first bad one."""
    handles = []
    known = known_boundaries(kernel)
    for t in [t for t in text.split(",") if t.strip()]:
        try:
            h = parse(k, t)
        except BadHandle as e:
            sys.exit(_refuse(str(e)))
        why = check_boundary(h, known)
        if why:
            sys.exit(_refuse(why))
        handles.append(h)
    if not handles:
        sys.exit(_refuse("RACE= names no handle"))
    return handles


def _refuse(why):
    print(f"runner: RACE: {why}", file=sys.stderr, flush=True)
    return 2


# ---------------------------------------------------------------- source lines

ADDR = re.compile(r"\[(0x[0-9a-f]{8})\]")


class Sources:
    """Instruction address -> its kernel source line, by addr2line: the
    innermost frame in the repository's src/ (the kernel's own line, even
    inside a library helper it inlined), with the function."""

    def __init__(self, kernel):
        self.kernel, self.cache = kernel, {}

    def lookup(self, addrs):
        todo = [a for a in addrs if a not in self.cache]
        if todo:
            cmd = ["addr2line", "-a", "-i", "-f", "-C", "-e", self.kernel] + [hex(a) for a in todo]
            try:
                out = subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout
            except (OSError, subprocess.SubprocessError):
                out = ""
            answers, cur = [], None
            for line in out.splitlines():
                if line.startswith("0x") and (cur is None or len(cur) % 2 == 0):
                    cur = []
                    answers.append(cur)
                elif cur is not None:
                    cur.append(line)
            for a, ans in zip(todo, answers + [[]] * len(todo)):
                self.cache[a] = self._label(ans)
        return {a: self.cache[a] for a in addrs}

    def _label(self, ans):
        frames = [(ans[i], ans[i + 1]) for i in range(0, len(ans) - 1, 2)]
        src = os.path.join(ROOT, "src") + os.sep
        for fn, loc in frames:
            path = loc.split(" ")[0]
            if path.startswith(src) or path.startswith("src/"):
                rel = os.path.relpath(path.rsplit(":", 1)[0], ROOT)
                return f"{rel}:{path.rsplit(':', 1)[1]}"
        if frames and not frames[0][1].startswith("??"):
            return frames[0][1].split(" ")[0]
        # Assembly (global_asm!, boot/*.s) has no line table: the line
        # that names its label.
        return asm_line(frames[0][0]) if frames and frames[0][0] != "??" else None

    def annotate(self, line):
        addrs = [int(a, 16) for a in ADDR.findall(line)]
        if not addrs:
            return line
        labels = self.lookup(addrs)
        extra = [labels[a] for a in addrs if labels.get(a)]
        return line + (f"  ({', '.join(extra)})" if extra else "")


def asm_line(label):
    """`file:line` of the assembly that defines `label`: its `label:` line,
    or the macro invocation that generates it (fault.rs's #PF entries)."""
    for top in ("src", "boot"):
        for d, _, files in sorted(os.walk(os.path.join(ROOT, top))):
            for fn in sorted(f for f in files if f.endswith((".rs", ".s"))):
                path = os.path.join(d, fn)
                with open(path, errors="replace") as f:
                    for n, text in enumerate(f, 1):
                        if re.match(rf"\s*{re.escape(label)}:\s*$", text) or \
                                re.search(rf"=> \w+, {re.escape(label)}:", text):
                            return f"{os.path.relpath(path, ROOT)}:{n}"
    return None


# ---------------------------------------------------------------- make run RACE=

def boot_live(kernel, handles, timeout=300, extra=(), out=sys.stdout):
    """One boot replaying `handles` (one group), its console on `out`
    with source lines; returns (status, console text)."""
    k = elf.constants(kernel)
    src = Sources(kernel)
    cpus = handles[0].cpus
    if emulator() == "bochs":
        from vmfault_host import bochs
        b = bochs.boot(kernel, cmdline(handles), "replay-bochs", timeout * BOCHS_SLOWER,
                       smp=cpus if cpus > 1 else None, on_line=lambda line: print(src.annotate(line), file=out,
                                                                                  flush=True))
        return b.status, b.log
    with tempfile.TemporaryDirectory() as d:
        image = iso.make_iso(kernel, os.path.join(d, "race.iso"), iso.grub_cfg(k, cmdline(handles)))
        cmd = qemu_cmd(k, image, "stdio", list(extra), smp=cpus if cpus > 1 else None)
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        text = []
        try:
            for raw in iter(p.stdout.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                # GRUB's menu and the terminal escapes it sends are not the kernel's.
                line = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", line)
                text.append(line)
                print(src.annotate(line), file=out, flush=True)
            status = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            status = None
    return status, "\n".join(text)


def verdicts(text):
    """The kernel's `RACE|` lines: {handle: "same" | "differs" | refusal}."""
    out = {}
    for line in text.splitlines():
        if line.startswith("RACE|") and line != "RACE|end":
            parts = line.split("|")
            fields = dict(p.split("=", 1) for p in parts[2:] if "=" in p)
            out[parts[1]] = ("same" if fields.get("same") == "1" else
                             fields.get("refused") or "differs")
    return out


def run(kernel, text, extra=()):
    """`make run RACE=...`: every group of handles in a boot of its own;
    0 when every run ended as the explorer's did."""
    k = elf.constants(kernel)
    handles = parse_all(k, text, kernel)
    ok = True
    for g in group(handles):
        print(f"runner: replaying {', '.join(str(h) for h in g)} ({g[0].cpus} CPU(s))", flush=True)
        status, console = boot_live(kernel, g, extra=extra)
        v = verdicts(console)
        for h in g:
            said = v.get(str(h), "no verdict: the kernel did not get that far")
            print(f"runner: {h}: " + ("ended as the explorer's run did" if said == "same" else said), flush=True)
            ok &= said == "same"
        if status != exit_status(k.exit_success_code):
            ok = False
            if status is None or status == 0:
                print("runner: the boot did not end normally (" +
                      ("timeout" if status is None else "reset or triple fault") + ")", flush=True)
    return 0 if ok else 1


# ---------------------------------------------------------------- make test

def _boot_quiet(kernel, texts, name):
    """One boot replaying `texts` (one group), its console kept in
    target/ktest/host-replay-NAME.log; (status, console with source lines)."""
    import io
    from vmfault_host.paths import LOGDIR
    k = elf.constants(kernel)
    handles = [parse(k, t) for t in texts]
    buf = io.StringIO()
    status, _ = boot_live(kernel, handles, timeout=120, out=buf)
    os.makedirs(LOGDIR, exist_ok=True)
    with open(os.path.join(LOGDIR, f"host-replay-{name}.log"), "w") as f:
        f.write(buf.getvalue())
    return k, status, buf.getvalue()


# What every narrated run must show, in its order.
NARRATION = [r"^race: replaying {h}: ", r"^race: boundary {k} of \d+: the other party comes in there",
             r"^race: who comes in there: ", r"^race: entries before the run:",
             r"^race: CPU 0 stopped at boundary {k}: next instruction .*\[0x[0-9a-f]{{8}}\].*\(src/",
             r"^race: entries at the boundary:", r"^race: \[CPU \d\] ", r"^race: entries after the run:",
             r"^race: outcome: ", r"^race: why: ", r"^race: the explorer's run at boundary {k} of \d+: .* ended the same"]


def _narrated(console, h):
    """Problems with the narration of handle `h` in `console`."""
    start = console.find(f"race: replaying {h}:")
    if start < 0:
        return [f"no narration of {h}"]
    text = console[start:]
    end = text.find("RACE|")
    text = text[:end if end > 0 else None]
    why, at = [], 0
    k = h.rsplit(":", 1)[1]
    for pat in NARRATION:
        m = re.compile(pat.format(h=re.escape(h), k=k), re.M).search(text, at)
        if not m:
            why.append(f"{h}: the narration lacks /{pat.format(h=h, k=k)}/ (in order)")
            continue
        at = m.end()
    return why


def check_one_cpu(kernel):
    texts = ["thread:legacy:2level:1cpu:0", "nested2:legacy:2level:1cpu:0"]
    k, status, console = _boot_quiet(kernel, texts, "one-cpu")
    why = [] if status == exit_status(k.exit_success_code) else [f"the boot did not exit with success: {status}"]
    v = verdicts(console)
    for t in texts:
        if v.get(t) != "same":
            why.append(f"{t}: {v.get(t, 'no verdict')}")
        why += _narrated(console, t)
    # The oops, in the handler's words, then 2.4's report.
    for pat in (r"vmalloc_fault=legacy: pmd already present in this mm", r"^Unable to handle kernel paging request",
                r"NestedOopsClobberedCr2\(1, PmdAlreadyPresent\)", r"nesting level 1"):
        if not re.search(pat, console, re.M):
            why.append(f"the console lacks /{pat}/")
    return why


def check_two_cpus(kernel):
    t = "threads:legacy:2level:2cpu:0"
    k, status, console = _boot_quiet(kernel, [t], "two-cpus")
    why = [] if status == exit_status(k.exit_success_code) else [f"the boot did not exit with success: {status}"]
    if verdicts(console).get(t) != "same":
        why.append(f"{t}: {verdicts(console).get(t, 'no verdict')}")
    why += _narrated(console, t)
    for pat in (r"^race: \[CPU 1\] CPU B writes ", r"^race: outcome: A: Oops\(PmdAlreadyPresent\), B: Clean"):
        if not re.search(pat, console, re.M):
            why.append(f"the console lacks /{pat}/")
    return why


def check_refusals(kernel):
    """Bad handles: the host refuses what it can check before booting; the
    kernel, after its dry run, a boundary past the end or with IF=0."""
    k = elf.constants(kernel)
    why = []
    for text, says in (("thrad:legacy:2level:1cpu:0", "unknown scenario 'thrad' (scenarios: thread,"),
                       ("thread:lazy:2level:1cpu:0", "unknown version 'lazy' (versions: set_pgdir, legacy,"),
                       ("thread:legacy:4level:1cpu:0", "unknown paging mode '4level' (modes: 2level, pae)"),
                       ("thread:legacy:2level:2cpu:0", "thread runs with 1cpu in 2level or pae, not 2cpu"),
                       ("torn_set_pte:sync:2level:2cpu:0", "torn_set_pte runs with 2cpu in pae, not 2cpu in 2level"),
                       ("thread:legacy:2level:1cpu:x", "'x' is not a boundary number"),
                       ("thread:legacy:2level", "is not SCENARIO:VERSION:MODE:NCPU:K")):
        try:
            parse(k, text)
            why.append(f"{text} was accepted")
        except BadHandle as e:
            if says not in str(e):
                why.append(f"{text}: {e} (expected: ...{says}...)")
    texts = ["thread:sync:2level:1cpu:99999", "thread:sync:2level:1cpu:0"]
    k, status, console = _boot_quiet(kernel, texts, "refusals")
    v = verdicts(console)
    if not re.match(r"boundary 99999 is past the end: the path has boundaries 0\.\.\d+$", v.get(texts[0], "")):
        why.append(f"{texts[0]}: {v.get(texts[0], 'no verdict')}")
    if not v.get(texts[1], "").startswith("interrupts are off at boundary 0 (IF=0)"):
        why.append(f"{texts[1]}: {v.get(texts[1], 'no verdict')}")
    if status != exit_status(k.exit_failed_code):
        why.append(f"a boot with refused handles did not exit with failure: {status}")
    return why


def checks(kernel):
    """(name, function, arg) entries for `make test`'s host checks:
    `kernel` is the build replays boot."""
    return [("host[2level] replay_narrates_and_ends_as_the_explorer", lambda _: check_one_cpu(kernel), None),
            ("host[2level] replay_two_cpus_narrates_both", lambda _: check_two_cpus(kernel), None),
            ("host replay_refuses_bad_handles_with_their_values", lambda _: check_refusals(kernel), None)]
