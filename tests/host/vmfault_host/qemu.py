"""qemu-system-i386: the command line, one boot of a kernel, its verdict.

QEMU runs under TCG (KVM here is a software variant that hangs GRUB), with
-no-reboot (a triple fault then exits with status 0, which never counts as
a pass) and no stdin.  Each serial log is kept under target/ktest/.
"""
import os
import re
import subprocess
import tempfile
import time

from vmfault_host import elf, iso
from vmfault_host.paths import LOGDIR

# The two-level sync suite (with the exhaustive explorer) takes about 220 s
# alone on a 2-core machine and more when the host is loaded: 240 s cut
# healthy runs.  A hang is still caught, ten minutes later.
BOOT_TIMEOUT = int(os.environ.get("VMFAULT_BOOT_TIMEOUT", "600"))
MEMORY = os.environ.get("VMFAULT_MEMORY", "128")
# Bochs runs the same boots about 5 times slower: its timeouts scale.
BOCHS_SLOWER = 5


def exit_status(code):
    """What QEMU exits with when the kernel writes `code` to isa-debug-exit:
    the device's own rule, so never 0, the status of a reset."""
    return (code << 1) | 1


def qemu_cmd(k, iso_path, serial, extra=(), memory=None, smp=None):
    """`k`: the kernel's constants (elf.Kernel), for its exit port.  With
    `smp` CPUs, round-robin TCG (one vCPU runs at a time, PAUSE hands over
    at once: ../shared/PLATFORM.md measured multi-threaded TCG 20-300x
    slower and noisy on spin hand-offs)."""
    cpus = ["-accel", "tcg,thread=single", "-smp", str(smp)] if smp else ["-accel", "tcg"]
    return ["qemu-system-i386", *cpus, "-cpu", "qemu32,+nx", "-m", str(memory or MEMORY),
            "-cdrom", iso_path, "-boot", "d",
            "-display", "none", "-no-reboot", "-serial", serial,
            "-device", f"isa-debug-exit,iobase={k.exit_port:#x},iosize=0x04", *extra]


def record_replay_cmd(k, iso_path, serial, snapshots, rrfile, mode, extra=()):
    """qemu_cmd for QEMU's record/replay (`mode` record or replay), one
    CPU: the deterministic icount clock, the ISO behind a read-only
    blkreplay drive, the snapshots in `snapshots` (a qcow2), no network
    (../shared/PLATFORM.md has the recipe that worked here).  QEMU 7.2
    refuses two CPUs: "Record/replay feature is not supported for 'smp'"."""
    cmd = qemu_cmd(k, iso_path, serial, extra)
    i = cmd.index("-cdrom")
    del cmd[i:i + 2]
    return cmd + ["-net", "none",
                  "-drive", f"file={iso_path},if=none,id=img-direct,media=cdrom,readonly=on",
                  "-drive", "driver=blkreplay,if=none,image=img-direct,id=img-blkreplay,readonly=on",
                  "-device", "ide-cd,drive=img-blkreplay",
                  "-drive", f"file={snapshots},if=none,id=rr",
                  "-icount", f"shift=auto,rr={mode},rrfile={rrfile},rrsnapshot=init"]


class Boot:
    """One QEMU run: its exit status (None on timeout) and serial log.
    `success` and `failure` are the statuses of the kernel's two exits."""

    def __init__(self, k, status, log, seconds, killed_on=None, stopped=False):
        self.status, self.log, self.seconds, self.killed_on = status, log, seconds, killed_on
        self.stopped = stopped  # killed because `stop` was set elsewhere
        self.success = exit_status(k.exit_success_code)
        self.failure = exit_status(k.exit_failed_code)

    def verdict(self):
        if self.killed_on:
            return "stopped by the runner after its boot log"
        if self.status is None:
            return "hang: no exit within the timeout"
        if self.status == 0:
            return "reset or triple fault (QEMU exited 0 under -no-reboot)"
        if self.status == self.success:
            return "exit: success"
        if self.status == self.failure:
            return "exit: failure"
        return f"QEMU exited with unexpected status {self.status}"


def emulator():
    """The emulator boots run on unless told (`EMU=`, VMFAULT_EMU): qemu or bochs."""
    emu = os.environ.get("VMFAULT_EMU") or "qemu"
    if emu not in ("qemu", "bochs"):
        raise SystemExit(f"runner: EMU={emu}: the emulators are qemu and bochs")
    return emu


def boot(kernel, cmdline, logname, timeout=BOOT_TIMEOUT, until=None, extra=(), memory=None, stop=None, smp=None,
         emu=None):
    """Boot `kernel` with `cmdline`.  With `until` (a regex), stop QEMU once
    the serial log matches it (for kernels that idle instead of exiting).
    With `stop` (a threading.Event), stop QEMU, or do not start it, once
    the event is set.  `emu`: qemu or bochs (vmfault_host/bochs.py;
    default `emulator()`)."""
    if (emu or emulator()) == "bochs":
        from vmfault_host import bochs
        return bochs.boot(kernel, cmdline, logname, timeout * BOCHS_SLOWER, until, memory, stop, smp)
    k = elf.constants(kernel)
    os.makedirs(LOGDIR, exist_ok=True)
    log = os.path.join(LOGDIR, logname + ".log")
    if stop is not None and stop.is_set():
        return Boot(k, None, "", 0.0, stopped=True)
    with tempfile.TemporaryDirectory() as d:
        image = iso.make_iso(kernel, os.path.join(d, "k.iso"), iso.grub_cfg(k, cmdline))
        if os.path.exists(log):
            os.remove(log)
        start = time.monotonic()
        p = subprocess.Popen(qemu_cmd(k, image, f"file:{log}", extra, memory, smp), stdin=subprocess.DEVNULL,
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
    return Boot(k, status, read_log(log), secs, killed_on, stopped)


def read_log(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace").replace("\r", "")
    except FileNotFoundError:
        return ""
