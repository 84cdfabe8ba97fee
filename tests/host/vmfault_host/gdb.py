"""gdb against QEMU, for `runner.py gdb` (`make gdb`) and `runner.py test`.

interactive(): `make gdb`, QEMU halted and gdb attached for the user.

start_qemu()/stop_qemu(): QEMU halted at its first instruction (-S) with its
gdb stub, in a session of its own (the terminal's Ctrl-C goes to gdb only)
and, where util-linux's setpriv exists, killed by the kernel if the runner
dies; callers stop it in a `finally`.

checks(kernel): the `make test` cases.  Each boots the main kernel (its
boot demo) under gdb in batch mode, with the helpers of
tests/host/gdb/vmfault-gdb.py loaded, and checks what gdb sees against what
the kernel prints on its serial port:

  2level: gdb stops in vmalloc_fault while the demo thread touches its
          vmalloc address; CR2 = the `address` argument = the address the
          log says it writes; vm-sync says the PGD entry is missing before
          `finish` and in sync after; vm-walk prints the same lines as the
          kernel's `translation of` dumps; vm-areas matches vmallocinfo;
          vm-faults matches the fault statistics; one vmalloc fault only.
  pae:    gdb stops in the demo thread before its write; vm-walk decodes the
          64-bit PDPTE/PMD/PTE exactly as the kernel's dump does; vm-sync
          says in sync; vmalloc_fault is never hit.

The gdb stub listens on a Unix socket in a temporary directory, so tests
never collide with each other or with a user's `make gdb` port.  Logs:
target/ktest/host-gdb-MODE.log (serial) and host-gdb-MODE.gdb.txt (gdb).

  python3 -m vmfault_host.gdb [KERNEL [MODE]]   (from tests/host) runs them alone
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from vmfault_host import build, elf, iso
from vmfault_host.paths import GDB_HELPERS as HELPERS
from vmfault_host.paths import LOGDIR, ROOT, TARGET
from vmfault_host.qemu import exit_status, qemu_cmd, record_replay_cmd
from vmfault_host.qemu import read_log as read_text

GDB_TIMEOUT = int(os.environ.get("VMFAULT_GDB_TIMEOUT", "120"))
HALT = "vmfault::arch::x86::cpu::halt_forever"
FIRST_TOUCH = "vmfault_lab::demo::first_touch"


# ---------------------------------------------------------------- QEMU

def start_qemu(cmd, errlog):
    """Start QEMU (`cmd` from qemu.qemu_cmd) with stdout/stderr in `errlog`."""
    if shutil.which("setpriv"):
        cmd = ["setpriv", "--pdeathsig", "KILL", "--"] + cmd
    err = open(errlog, "wb")
    try:
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=err, start_new_session=True)
    finally:
        err.close()


def stop_qemu(q):
    if q is not None and q.poll() is None:
        q.terminate()
        try:
            q.wait(timeout=5)
        except subprocess.TimeoutExpired:
            q.kill()
            q.wait()


def wait_for_stub(q, ready, timeout=15):
    """Wait until `ready()` is true; False if QEMU died or time ran out."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if q.poll() is not None:
            return False
        if ready():
            return True
        time.sleep(0.02)
    return False


def tcp_listening(port):
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                for line in f.readlines()[1:]:
                    fields = line.split()
                    if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        return True
        except OSError:
            continue
    return False


# ---------------------------------------------------------------- make gdb

HINTS = {
    "vmalloc_fault": [
        "[vmfault] stopped in vmalloc_fault: the demo thread wrote to a vmalloc address its mm lacks",
        "  p/x $cr2, p/x address       the faulting address (CR2 and the argument)",
        "  vm-sync $cr2                this mm's PGD entry vs swapper_pg_dir's: missing",
        "  step, step                  into the version's own code (sync: vmalloc_fault_sync)",
        "  next (again and again)      line by line, past `L::set_pgd(...)`: vm-sync $cr2 again: in sync",
        "  finish, finish              back out to do_page_fault; vm-walk $cr2; vm-faults",
        "  (set_pgd and set_pmd are inlined: `break`/`advance set_pgd` find no function; `next` walks them)",
        "  vm-help                     all helpers; continue runs to the end of the boot",
    ],
    "first_touch": [
        "[vmfault] PAE: no vmalloc fault will happen (the kernel PMD page is shared by every mm);",
        "  stopped in the demo thread before its write; vmalloc_fault has a breakpoint anyway",
        "  vm-static vmfault_lab::demo::ADDR, then vm-walk $vm_static and vm-sync $vm_static",
        "  vm-help lists the helpers; continue runs to the end of the boot",
    ],
    "halt_forever": [
        "[vmfault] the kernel halts here: boot complete (or stopped: see the serial log)",
        "  vm-faults, vm-areas, vm-mm; quit stops QEMU",
    ],
}


def fault_break(k, paging, version):
    """Where `make gdb` stops: the booted version's vmalloc_fault in this
    paging mode (5.8's `eager` has none: its oops path instead)."""
    if version == "eager":
        return "vmfault::mm::fault::bad_area_nosemaphore"
    return elf.vmalloc_fault_symbol(k.path, paging, version) or "vmfault::mm::fault::bad_area_nosemaphore"


def cmdline_version(k, cmdline):
    m = re.search(r"(?:^|\s)vmalloc_fault=(\S+)", cmdline or "")
    return m.group(1) if m and m.group(1) in k.versions else k.default_version


def race_script(handle):
    """After `target remote`: run to the replay's boundary and park there
    (vm-race-park, tests/host/gdb/vmfault-gdb.py)."""
    return ["break race_boundary_reached",
            f"echo [vmfault] running the replay {handle} to its boundary ...\\n",
            "continue", "vm-race-park"]


def init_script(k, root, port, paging, stop, version=None, race=None):
    """The commands `make gdb` runs in gdb before handing it to the user;
    `k` is the kernel's constants (elf.Kernel); `race`: a replay handle."""
    lines = ["# written by tests/host/runner.py gdb", f"directory {root}", f"source {HELPERS}",
             # Symbols in disassembly demangled; addresses (frame
             # arguments, `p address`) in hex, as a student reads them.
             "set print asm-demangle on", "set output-radix 16", f"target remote {port}"]
    if race:
        return "\n".join(lines + race_script(race)) + "\n"

    def brk(cmd, hint):
        lines.append(cmd)
        lines.append("commands")
        # echo drops leading blanks unless the first one is escaped
        lines.extend(["echo " + ("\\" if h.startswith(" ") else "") + h + "\\n" for h in HINTS[hint]])
        lines.append("end")

    if stop == "reset":
        lines.append(f"echo [vmfault] at the reset vector; `vm-early-break` (hbreak *{k.entry:#x}, _start) "
                     "then `continue` stops at the kernel's entry\\n")
        return "\n".join(lines) + "\n"
    if stop == "start":
        lines += ["vm-early-break _start",
                  f"echo [vmfault] continuing to _start (physical {k.entry:#x}, paging off) on a hardware breakpoint\\n",
                  "continue"]
        return "\n".join(lines) + "\n"
    brk("break " + fault_break(k, paging, version), "vmalloc_fault")
    if paging == "pae":
        brk("tbreak vmfault_lab::demo::first_touch", "first_touch")
    brk("tbreak vmfault::arch::x86::cpu::halt_forever", "halt_forever")
    lines.append("continue")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- batch session

DRIVER = r'''
import json
import gdb
for c in ("set pagination off", "set width 0", "set height 0", "set confirm off"):
    gdb.execute(c)
gdb.execute("source " + json.loads(%(helpers)r))
for key, cmd in json.loads(%(cmds)r):
    print("@@@> %%s %%s" %% (key, cmd), flush=True)
    try:
        out = gdb.execute(cmd, to_string=True)
        print(out, end="" if out.endswith("\n") or not out else "\n")
        print("@@@ ok", flush=True)
    except Exception as e:
        print("@@@ error: %%s" %% str(e).replace("\n", " "), flush=True)
print("@@@ end", flush=True)
'''


def run_batch(kernel, image, cmds, serial_log, gdb_log, timeout=GDB_TIMEOUT, smp=None, reverse=False):
    """Boot the ISO `image` halted (`smp` CPUs; `reverse`: a recorded boot
    replayed, record()), run `cmds` [(key, gdb command)] in gdb -batch
    after `target remote`.  Returns ({key: (ok, output)}, transcript)."""
    k = elf.constants(kernel)
    with tempfile.TemporaryDirectory(prefix="vmfault-gdb-") as d:
        sock = os.path.join(d, "gdb.sock")
        driver = os.path.join(d, "driver.py")
        allcmds = [("connect", "target remote " + sock)] + list(cmds)
        with open(driver, "w") as f:
            f.write(DRIVER % {"helpers": json.dumps(HELPERS), "cmds": json.dumps(allcmds)})
        if os.path.exists(serial_log):
            os.remove(serial_log)
        stub = ["-S", "-chardev", f"socket,id=gdb0,path={sock},server=on,wait=off", "-gdb", "chardev:gdb0"]
        if reverse:
            snapshots, rrfile = record(k, image, os.path.join(d, "record.log"), d, quiet=True)
            qcmd = record_replay_cmd(k, image, f"file:{serial_log}", snapshots, rrfile, "replay", stub)
        else:
            qcmd = qemu_cmd(k, image, f"file:{serial_log}", stub, smp=smp)
        q = start_qemu(qcmd, os.path.join(d, "qemu.err"))
        g = None
        transcript = ""
        try:
            if not wait_for_stub(q, lambda: os.path.exists(sock)):
                transcript = "QEMU's gdb stub did not come up: " + read_text(os.path.join(d, "qemu.err"))
            else:
                g = subprocess.Popen(["gdb", "-q", "-nx", "-batch", kernel, "-x", driver],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, errors="replace")
                try:
                    transcript, _ = g.communicate(timeout=timeout)
                except subprocess.TimeoutExpired:
                    g.kill()
                    transcript, _ = g.communicate()
                    transcript += f"\n@@@ timeout: gdb session killed after {timeout} s\n"
        finally:
            if g is not None and g.poll() is None:
                g.kill()
                g.wait()
            stop_qemu(q)
    with open(gdb_log, "w") as f:
        f.write(transcript)
    results, key, buf = {}, None, []
    for line in transcript.splitlines():
        m = re.match(r"@@@> (\S+) ", line)
        if m:
            key, buf = m.group(1), []
        elif line.startswith("@@@ ") and key:
            results[key] = (line == "@@@ ok", "\n".join(buf) + ("" if line == "@@@ ok" else "\n" + line[4:]))
            key = None
        elif key:
            buf.append(line)
    return results, transcript


# ---------------------------------------------------------------- judging

def serial_facts(log):
    """What the kernel's boot demo printed."""
    facts = {"translations": []}
    m = re.search(r"^\[(\S+) pid (\d+)\] running in mm with pgd (0x[0-9a-f]+)", log, re.M)
    if m:
        facts["task"], facts["pid"], facts["pgd"] = m.group(1), int(m.group(2)), int(m.group(3), 16)
    m = re.search(r"^\[\S+ pid \d+\] writing to (0x[0-9a-f]+)", log, re.M)
    if m:
        facts["addr"] = int(m.group(1), 16)
    for m in re.finditer(r"^translation of (0x[0-9a-f]+):\n(  init_mm .*)\n(  current .*)$", log, re.M):
        facts["translations"].append((int(m.group(1), 16), m.group(2), m.group(3)))
    m = re.search(r"^(vmalloc_fault=\w+: \d+ lazy syncs.*)\n((?:  (?:slot|pgd) .*\n)*)", log, re.M)
    if m:
        facts["stats"] = [m.group(1)] + m.group(2).splitlines()
    facts["areas"] = sorted((int(a, 16), int(b, 16), int(s), int(p)) for a, b, s, p in re.findall(
        r"^(0x[0-9a-f]{8})-(0x[0-9a-f]{8})\s+(\d+) \S+ pages=(\d+)", log, re.M))
    return facts


def gdb_areas(text):
    return sorted((int(a, 16), int(b, 16), int(s), int(p)) for a, b, s, p in re.findall(
        r"^(0x[0-9a-f]{8})-(0x[0-9a-f]{8})\s+(\d+) pages=(\d+)", text, re.M))


def value(text):
    """The number of a `$N = 0x...` or `NAME = 0x... (...)` line."""
    m = re.search(r"= (0x[0-9a-fA-F]+|\d+)", text)
    return int(m.group(1), 0) if m else None


def last_line(text):
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def bp_hits(text, num):
    m = re.search(rf"^{num}\s+breakpoint.*\n((?:\t.*\n?)*)", text, re.M)
    if not m:
        return None
    h = re.search(r"already hit (\d+) time", m.group(1))
    return int(h.group(1)) if h else 0


class Judge:
    def __init__(self, k, results, facts):
        self.k, self.r, self.f, self.why = k, results, facts, []

    def out(self, key):
        ok, text = self.r.get(key, (False, "(not run)"))
        if not ok:
            self.why.append(f"gdb `{key}` failed: {last_line(text)}")
        return text

    def expect(self, cond, msg):
        if not cond:
            self.why.append(msg)

    def stopped_in(self, key, func):
        text = self.out(key)
        # A generic function is shown with its parameters: `name::<...> + N`.
        self.expect(re.search(rf"(^|::){re.escape(func)}(::<.*>)? \+ \d+ in section", text, re.M),
                    f"expected a stop in {func}, gdb is at: {last_line(text)}")

    def same_line(self, key, want, what):
        got = last_line(self.out(key))
        self.expect(got == want, f"{what}:\n  gdb:    {got.strip()}\n  kernel: {want.strip()}")

    def mm(self, key):
        text = self.out(key)
        f = self.f
        m = re.search(r'current: pid (\d+) "([^"]*)"', text)
        self.expect(m and (int(m.group(1)), m.group(2)) == (f.get("pid"), f.get("task")),
                    f"vm-mm current task {m and m.groups()} != serial {f.get('task')} pid {f.get('pid')}")
        m = re.search(r"active_mm: mm \d+, pgd (0x[0-9a-f]+)", text)
        self.expect(m and int(m.group(1), 16) == f.get("pgd"),
                    f"vm-mm active_mm pgd {m and m.group(1)} != serial pgd {f.get('pgd', 0):#x}")
        self.expect("= active_mm's pgd" in text, "vm-mm: CR3 is not active_mm's pgd")

    def areas(self, key):
        got = gdb_areas(self.out(key))
        self.expect(got and got == self.f["areas"],
                    f"vm-areas {[(hex(a), hex(b), s, p) for a, b, s, p in got]} != vmallocinfo "
                    f"{[(hex(a), hex(b), s, p) for a, b, s, p in self.f['areas']]}")

    def faults(self, key):
        text = self.out(key)
        lines = [line for line in text.splitlines() if "last bad_area" not in line]
        self.expect(lines == self.f.get("stats"),
                    "vm-faults differs from the kernel's statistics:\n  gdb:    " + " | ".join(lines)
                    + "\n  kernel: " + " | ".join(self.f.get("stats") or ["(none)"]))
        # The reason is the kernel's own BadArea text, which the helper
        # reads from the ELF: BadArea::None's while the kernel counted none.
        last = re.search(r"^  last bad_area: (.*)$", text, re.M)
        counted = re.search(r" (\d+) bad areas", (self.f.get("stats") or [""])[0])
        texts = self.k.bad_area_texts
        want = texts[:1] if counted and counted.group(1) == "0" else texts[1:]
        self.expect(last and last.group(1) in want,
                    f"vm-faults' last bad_area {last and last.group(1)!r} is not one of the kernel's {want}")


def judge_2level(k, results, log):
    f = serial_facts(log)
    j = Judge(k, results, f)
    if "addr" not in f or len(f["translations"]) < 2:
        return [f"serial log lacks the demo (writing to / two translation dumps); last lines:\n"
                + "\n".join(log.splitlines()[-8:])]
    j.stopped_in("stop1", "vmalloc_fault")
    addr, cr2 = value(j.out("address")), value(j.out("cr2"))
    j.expect(cr2 == addr, f"CR2 {cr2!r:} != vmalloc_fault's address argument {addr!r}")
    j.expect(addr == f["addr"], f"vmalloc_fault's address {addr!r} != the address the kernel wrote, {f['addr']:#x}")
    j.mm("mm")
    j.expect("verdict: missing here" in j.out("sync_before"),
             "vm-sync before the copy does not say `missing`:\n" + j.out("sync_before"))
    before = next((t for t in f["translations"] if t[0] == f["addr"]), None)
    after = [t for t in f["translations"] if t[0] == f["addr"]][-1]
    j.same_line("walk_before", before[2], "vm-walk (current, before) differs from the kernel's dump")
    j.same_line("walk_ref", before[1], "vm-walk (init_mm) differs from the kernel's dump")
    j.areas("areas")
    j.expect("Value returned" in j.out("finish"), "finish did not return from vmalloc_fault")
    j.expect("verdict: in sync" in j.out("sync_after"),
             "vm-sync after finish does not say `in sync`:\n" + j.out("sync_after"))
    j.same_line("walk_after", after[2], "vm-walk (current, after) differs from the kernel's dump")
    j.stopped_in("stop2", "halt_forever")
    j.faults("faults")
    hits = bp_hits(j.out("bps"), 1)
    j.expect(hits == 1, f"vmalloc_fault breakpoint hit {hits} times, expected exactly 1")
    return j.why


def judge_pae(k, results, log):
    f = serial_facts(log)
    j = Judge(k, results, f)
    if "addr" not in f or not f["translations"]:
        return [f"serial log lacks the demo; last lines:\n" + "\n".join(log.splitlines()[-8:])]
    j.stopped_in("stop1", "first_touch")
    addr = value(j.out("addr"))
    j.expect(addr == f["addr"], f"demo ADDR read by gdb {addr!r} != the address the kernel wrote, {f['addr']:#x}")
    j.mm("mm")
    before = next((t for t in f["translations"] if t[0] == f["addr"]), None)
    walk = j.out("walk_cur")
    j.expect(re.search(r"^  pdpte \[  3\] .*: [0-9a-f]{16} ", walk, re.M)
             and re.search(r"^  pmd .*: [0-9a-f]{16} ", walk, re.M)
             and re.search(r"^  pte .*: [0-9a-f]{16} \[P RW A D( PAT)?( G)? NX\]", walk, re.M),
             "vm-walk did not decode 64-bit PDPTE/PMD/PTE entries (with NX):\n" + walk)
    j.same_line("walk_cur", before[2], "vm-walk (current) differs from the kernel's dump")
    j.same_line("walk_ref", before[1], "vm-walk (init_mm) differs from the kernel's dump")
    j.expect("verdict: in sync" in j.out("sync"), "vm-sync does not say `in sync`:\n" + j.out("sync"))
    j.areas("areas")
    j.stopped_in("stop2", "halt_forever")
    j.faults("faults")
    hits = bp_hits(j.out("bps"), 1)
    j.expect(hits == 0, f"vmalloc_fault was hit {hits} times in PAE mode, expected never")
    return j.why


SESSIONS = {
    "2level": ([
        ("bp1", "break {FAULT}"),
        ("bp2", "break " + HALT),
        ("cont1", "continue"),
        ("stop1", "info symbol $pc"),
        ("address", "p/x address"),
        ("cr2", "p/x $cr2"),
        ("save", "set $vm_addr = address"),
        ("mm", "vm-mm"),
        ("sync_before", "vm-sync $vm_addr"),
        ("walk_before", "vm-walk $vm_addr"),
        ("walk_ref", "vm-walk $vm_addr init_mm"),
        ("areas", "vm-areas"),
        ("finish", "finish"),
        ("sync_after", "vm-sync $vm_addr"),
        ("walk_after", "vm-walk $vm_addr"),
        ("cont2", "continue"),
        ("stop2", "info symbol $pc"),
        ("faults", "vm-faults"),
        ("bps", "info breakpoints"),
    ], judge_2level),
    "pae": ([
        ("bp1", "break {FAULT}"),
        ("bp2", "break " + FIRST_TOUCH),
        ("bp3", "break " + HALT),
        ("cont1", "continue"),
        ("stop1", "info symbol $pc"),
        ("addr", "vm-static vmfault_lab::demo::ADDR"),
        ("mm", "vm-mm"),
        ("walk_cur", "vm-walk $vm_static"),
        ("walk_ref", "vm-walk $vm_static init_mm"),
        ("sync", "vm-sync $vm_static"),
        ("areas", "vm-areas"),
        ("cont2", "continue"),
        ("stop2", "info symbol $pc"),
        ("faults", "vm-faults"),
        ("bps", "info breakpoints"),
    ], judge_pae),
}


def check_mode(kernel, mode):
    """One batch gdb session on the main kernel; returns the list of problems."""
    if shutil.which("gdb") is None:
        return ["gdb is not installed (apt-get install gdb)"]
    k = elf.constants(kernel)
    if mode not in k.modes:
        return [f"the kernel has no paging={mode} (its modes: {', '.join(k.modes)})"]
    cmds, judge = SESSIONS[mode]
    # The booted (default) version's vmalloc_fault in this mode.
    cmds = [(key, c.replace("{FAULT}", fault_break(k, mode, k.default_version))) for key, c in cmds]
    os.makedirs(LOGDIR, exist_ok=True)
    serial = os.path.join(LOGDIR, f"host-gdb-{mode}.log")
    gdb_log = os.path.join(LOGDIR, f"host-gdb-{mode}.gdb.txt")
    with tempfile.TemporaryDirectory() as d:
        image = iso.make_iso(kernel, os.path.join(d, "k.iso"), iso.grub_cfg(k, f"paging={mode}"))
        results, transcript = run_batch(kernel, image, cmds, serial, gdb_log)
    if "@@@ end" not in transcript:
        return ["gdb session did not complete; last output:\n" + "\n".join(transcript.splitlines()[-12:]),
                f"transcript: {os.path.relpath(gdb_log)}"]
    why = judge(k, results, read_text(serial))
    if why:
        why.append(f"transcript: {os.path.relpath(gdb_log)}")
    return why


def checks(kernel, race_kernel=None):
    """(name, function, mode) entries for the check pool of `runner.py test`.
    The sessions are per mode by name: what gdb must see differs.  With
    `race_kernel` (the build replays boot), the replay sessions too."""
    out = [("host[2level] gdb_vmalloc_fault_session", lambda m: check_mode(kernel, m), "2level"),
           ("host[pae] gdb_pae_walk_without_vmalloc_fault", lambda m: check_mode(kernel, m), "pae")]
    if race_kernel:
        from vmfault_host import gdb_race
        out += gdb_race.checks(race_kernel)
    return out


# ---------------------------------------------------------------- make gdb

def gdb_port():
    """A port per user, so two users on one machine do not collide."""
    return int(os.environ.get("GDB_PORT", 20000 + os.getuid() % 10000))


def record(k, image, log, workdir, quiet=False):
    """REVERSE=1's first half: the replay's boot recorded whole under
    QEMU's record/replay (one CPU), so gdb can run it again backwards.
    Returns the paths (snapshots, log of events)."""
    snapshots, rrfile = os.path.join(workdir, "snapshots.qcow2"), os.path.join(workdir, "events.bin")
    for p in (snapshots, rrfile):
        if os.path.exists(p):
            os.remove(p)
    r = subprocess.run(["qemu-img", "create", "-f", "qcow2", snapshots, "64M"], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"runner: qemu-img could not make the snapshot image: {r.stderr.strip()}")
    cmd = record_replay_cmd(k, image, f"file:{log}", snapshots, rrfile, "record")
    if not quiet:
        print("runner: recording the replay's boot (QEMU record/replay, icount) ...", flush=True)
    try:
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        sys.exit("runner: the recorded boot did not end within 600 s")
    if p.returncode not in (exit_status(k.exit_success_code), exit_status(k.exit_failed_code)):
        sys.exit(f"runner: the recorded boot ended with status {p.returncode}: {p.stderr.strip()}")
    if not quiet:
        print(f"runner: recorded ({os.path.getsize(rrfile) >> 10} KiB of events); replaying it under gdb",
              flush=True)
    return snapshots, rrfile


def interactive(kernel, paging, cmdline, stop, batch=None, timeout=None, race=None, reverse=False):
    """QEMU halted with its gdb stub on a per-user port, and gdb attached
    with the kernel's symbols, the repository's sources and the helpers of
    tests/host/gdb/vmfault-gdb.py, run up to a breakpoint in vmalloc_fault
    (PAE: in the demo thread; `stop` start|reset for early boot), or, with
    `race` (a replay.Handle), to that replay's boundary.  QEMU is stopped
    whenever gdb exits, however it exits."""
    k = elf.constants(kernel)
    if race is not None:
        from vmfault_host import replay
        cfg = iso.grub_cfg(k, replay.cmdline([race]))
    else:
        cfg = iso.grub_cfg(k, None, iso.menu(k, cmdline), 0, k.modes.index(paging))
    image = iso.make_iso(kernel, os.path.join(TARGET, "gdb.iso"), cfg)
    port = gdb_port()
    if tcp_listening(port):
        sys.exit(f"runner: port {port} is already in use (another `make gdb`?); pick one with GDB_PORT=")
    log = os.path.join(TARGET, "gdb-serial.log")
    init = os.path.join(TARGET, "gdb-init.gdb")
    with open(init, "w") as f:
        f.write(init_script(k, ROOT, f"127.0.0.1:{port}", paging, stop, cmdline_version(k, cmdline),
                            race=race))
    if os.path.exists(log):
        os.remove(log)
    cmd = ["gdb", "-q", "-x", init, kernel]
    if batch:
        for script in batch:
            if not os.path.isfile(script):
                sys.exit(f"runner: no gdb script {script}")
        scripts = [a for s in batch for a in ("-x", os.path.abspath(s))]
        cmd = ["gdb", "-q", "-nx", "-batch", "-x", init] + scripts + [kernel]
    timeout = timeout if timeout is not None else (300 if batch else None)

    def hang_up(signum, _frame):
        raise SystemExit(128 + signum)

    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    q = g = None
    smp = race.cpus if race is not None and race.cpus > 1 else None
    try:
        signal.signal(signal.SIGTERM, hang_up)
        signal.signal(signal.SIGHUP, hang_up)
        stub = ["-S", "-gdb", f"tcp:127.0.0.1:{port}"]
        if reverse:
            rr_dir = os.path.join(TARGET, "rr")
            os.makedirs(rr_dir, exist_ok=True)
            snapshots, rrfile = record(k, image, os.path.join(rr_dir, "record-serial.log"), rr_dir)
            qcmd = record_replay_cmd(k, image, f"file:{log}", snapshots, rrfile, "replay", stub)
        else:
            qcmd = qemu_cmd(k, image, f"file:{log}", stub, smp=smp)
        q = start_qemu(qcmd, os.path.join(TARGET, "gdb-qemu.log"))
        if not wait_for_stub(q, lambda: tcp_listening(port)):
            err = read_text(os.path.join(TARGET, "gdb-qemu.log")).strip()
            sys.exit(f"runner: QEMU's gdb stub did not come up on port {port}: {err}")
        rel = os.path.relpath(log)
        what = f"replay {race}" if race is not None else f"paging={paging}"
        print(f"runner: QEMU halted ({what}), gdb stub on 127.0.0.1:{port} (GDB_PORT overrides)",
              flush=True)
        print(f"runner: serial console in {rel} (follow it with: tail -f {rel})", flush=True)
        where = ("the replay's boundary, before the other party comes in" if race is not None else
                 {"vmalloc_fault": "vmalloc_fault (PAE: in the demo thread)", "start": f"_start (hbreak *{k.entry:#x})",
                  "reset": "the reset vector"}[stop])
        print(f"runner: gdb: {os.path.relpath(init)} loads the helpers (vm-help) and stops at "
              + where + "; QEMU stops when gdb exits", flush=True)
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
        stop_qemu(q)
        for s, h in saved.items():
            signal.signal(s, h)


def main(argv):
    """The batch checks alone: [KERNEL [MODE]], default the debug kernel
    `cargo build` left and both sessions."""
    kernel = argv[1] if len(argv) > 1 else build.debug_main_path()
    bad = 0
    for name, fn, mode in checks(kernel):
        if len(argv) > 2 and mode != argv[2]:
            continue
        why = fn(mode)
        print(("not ok " if why else "ok ") + name)
        for w in why:
            print("    # " + w.replace("\n", "\n    # "))
        bad += bool(why)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
