"""Bochs 2.7, the second x86 implementation (`EMU=bochs`): the same GRUB
ISO and command lines as QEMU, one boot of a kernel, its verdict.

Debian's Bochs has no `nogui` display and its internal debugger stops at
t=0: the runner writes a bochsrc (memory, CPU model and count, `cdrom`
boot, COM1 to a file it reads live, the `rfb` display with `timeout=0`,
which takes the first free port of 5900-5949, so parallel runs do not
collide), answers the debugger with `c` (`-rc`), and enforces the same
timeouts as QEMU.  Bochs has no isa-debug-exit: the kernel says which exit
it takes (`vmfault: exit 0x10`, src/qemu.rs) and then writes "Shutdown" to
port 0x8900, which ends the simulation; the runner stops Bochs itself if
it does not end soon after.  The verdict is the kernel's line (and the
KTAP lines), never Bochs's exit status.  A triple fault is a panic in
Bochs's log (`reset_on_triple_fault=0`): "3rd (N) exception with no
resolution"; it counts as QEMU's status 0 does, a reset.

All guest CPUs run on one host thread, `quantum` instructions each in
turn (`cpu: quantum=`, Bochs's default 16).  Bochs is about 5 times
slower than QEMU's TCG here (../shared/PLATFORM.md).
"""
import os
import re
import shutil
import subprocess
import tempfile
import time

from vmfault_host import elf, iso
from vmfault_host.paths import LOGDIR
from vmfault_host.qemu import MEMORY, Boot, exit_status, read_log

BIOS = "/usr/share/bochs/BIOS-bochs-latest"
VGA_BIOS = "/usr/share/vgabios/vgabios.bin"
# A model with PAE, NX and an APIC (PLATFORM.md: it boots our ISO).
CPU_MODEL = "corei7_sandy_bridge_2600k"
DEFAULT_QUANTUM = 16
EXIT = re.compile(r"^vmfault: exit (0x[0-9a-f]+)$", re.M)
TRIPLE = re.compile(r"exception\(\): 3rd \((\d+)\) exception with no resolution")
# Bochs's own stop (a bad bochsrc value, a device's panic): ">>PANIC<< why".
PANIC = re.compile(r">>PANIC<< (.*)")
# Bochs's own end: what it prints when the shutdown port or a panic ends it.
APT = "apt-get install -y bochs bochsbios vgabios"


def available():
    return shutil.which("bochs") is not None and os.path.exists(BIOS) and os.path.exists(VGA_BIOS)


def bochsrc(image, com1, log, memory=None, smp=None, quantum=None):
    cpus = smp or 1
    q = f", quantum={quantum}" if quantum else ""
    return "\n".join([
        f"megs: {memory or MEMORY}",
        f"cpu: model={CPU_MODEL}, count={cpus}, reset_on_triple_fault=0, ips=50000000{q}",
        f"romimage: file={BIOS}",
        f"vgaromimage: file={VGA_BIOS}",
        f"ata0-master: type=cdrom, path={image}, status=inserted",
        "boot: cdrom",
        f"com1: enabled=1, mode=file, dev={com1}",
        'display_library: rfb, options="timeout=0"',
        "clock: sync=none",
        # No sound: with ALSA present but no sound card, Bochs 2.7's mixer
        # thread aborts at start ("*** buffer overflow detected ***" in
        # mixer_thread, measured on Debian 12's 2.7+dfsg-4+deb12u1).
        "sound: waveoutdrv=dummy, waveindrv=dummy, midioutdrv=dummy",
        f"log: {log}",
        # The explorers' thousands of #DBs are logged as errors ("x86 code
        # breakpoint caught"): not reported; a panic (the triple fault, the
        # shutdown port) ends Bochs and is kept.
        "panic: action=fatal",
        "error: action=ignore",
        "info: action=ignore",
        "debug: action=ignore",
        "magic_break: enabled=1",
        "port_e9_hack: enabled=1",
    ]) + "\n"


def _show(text, shown, on_line):
    """Pass the whole lines of `text` after offset `shown` to `on_line`;
    the new offset."""
    if on_line is None:
        return shown
    end = text.rfind("\n") + 1
    for line in text[shown:end].splitlines():
        on_line(line)
    return max(end, shown)


class BochsBoot(Boot):
    """A Bochs run as a qemu.Boot: `status` is what QEMU would have exited
    with for the kernel's exit line (0 for a triple fault, None if the
    kernel never said)."""

    def __init__(self, k, status, log, seconds, killed_on=None, stopped=False, triple=None, panic=None):
        super().__init__(k, status, log, seconds, killed_on, stopped)
        self.triple = triple
        self.panic = panic  # Bochs's own panic, when the kernel never said it was done

    def verdict(self):
        if self.triple is not None:
            return f"reset or triple fault (Bochs: 3rd exception, vector {self.triple}, with no resolution)"
        if self.status is None and self.panic and not self.killed_on and not self.stopped:
            return f"Bochs stopped: {self.panic}"
        return super().verdict()


def boot(kernel, cmdline, logname, timeout, until=None, memory=None, stop=None, smp=None, quantum=None,
         on_line=None):
    """qemu.boot's contract under Bochs (`extra` QEMU arguments have no
    meaning here).  `on_line`: called with each console line as it comes
    (`make run EMU=bochs`)."""
    k = elf.constants(kernel)
    os.makedirs(LOGDIR, exist_ok=True)
    log = os.path.join(LOGDIR, logname + ".log")
    if stop is not None and stop.is_set():
        return BochsBoot(k, None, "", 0.0, stopped=True)
    if not available():
        raise RuntimeError(f"Bochs is not installed: {APT}")
    with tempfile.TemporaryDirectory(prefix="vmfault-bochs-") as d:
        image = iso.make_iso(kernel, os.path.join(d, "k.iso"), iso.grub_cfg(k, cmdline))
        blog = os.path.join(d, "bochs.log")
        rc = os.path.join(d, "bochsrc")
        with open(rc, "w") as f:
            f.write(bochsrc(image, log, blog, memory, smp, quantum))
        answer = os.path.join(d, "answer")
        with open(answer, "w") as f:
            f.write("c\n")  # the internal debugger's stop at t=0: continue
        if os.path.exists(log):
            os.remove(log)
        start = time.monotonic()
        err = open(os.path.join(d, "stderr"), "w")
        p = subprocess.Popen(["bochs", "-q", "-f", rc, "-rc", answer], cwd=d, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=err)
        status, killed_on, stopped, said_at, shown = None, None, False, None, 0
        while True:
            try:
                p.wait(timeout=0.1)
                break
            except subprocess.TimeoutExpired:
                pass
            text = read_log(log)
            shown = _show(text, shown, on_line)
            if said_at is None and EXIT.search(text):
                said_at = time.monotonic()
            if said_at is not None and time.monotonic() - said_at > 2:
                break  # the shutdown port did not end it: stop it here
            if until and re.search(until, text, re.M):
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
        text = read_log(log)
        _show(text + "\n", shown, on_line)
        err.close()
        triple = TRIPLE.search(read_log(blog))
        panic = PANIC.search(read_log(blog) + read_log(os.path.join(d, "stderr")))
        with open(os.path.join(LOGDIR, logname + ".bochs.log"), "w") as f:
            f.write(read_log(blog))
    m = EXIT.search(text)
    if triple:
        status = 0
    elif m:
        status = exit_status(int(m.group(1), 16))
    return BochsBoot(k, status, text, secs, killed_on, stopped, triple and int(triple.group(1)),
                     panic and panic.group(1).strip())
