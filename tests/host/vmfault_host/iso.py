"""GRUB ISOs: the menu (grub.cfg) and grub-mkrescue around a kernel."""
import os
import subprocess
import tempfile

# What GRUB runs when `boot` returns, i.e. when loading the kernel failed
# (too little memory, a bad ELF): without it GRUB waits for a key on the VGA
# console and QEMU never exits.  GRUB's own error lines reach the serial log
# through its serial terminal; the write to the isa-debug-exit port makes
# QEMU exit with the failure status the kernel also uses.
GRUB_BOOT_FAILED = "vmfault: GRUB could not load the kernel (error above)"


def grub_cfg(k, cmdline, entries=None, timeout=0, default=0):
    """A menu of `entries` [(title, kernel arguments)], or one entry with
    `cmdline`; `k` is the kernel's constants (elf.Kernel), for its exit port
    and failure code."""
    entries = entries or [("vmfault", cmdline)]
    lines = [f"set timeout={timeout}", f"set default={default}",
             "serial --unit=0 --speed=115200", "terminal_output serial console"]
    for title, args in entries:
        lines += [f'menuentry "{title}" {{', f"    multiboot2 /boot/kernel {args}".rstrip(), "    boot",
                  f'    echo "{GRUB_BOOT_FAILED}"', "    insmod iorw",
                  f"    outb {k.exit_port:#x} {k.exit_failed_code:#x}"]
        # Bochs has no isa-debug-exit: its shutdown port ends it.
        lines += [f"    outb {k.bochs_shutdown_port:#x} {ord(c)}" for c in "Shutdown"] + ["}"]
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


def menu(k, cmdline):
    """The menu `run` and `gdb` boot: one entry per paging mode."""
    return [(f"vmfault ({m})", f"paging={m} {cmdline}".strip()) for m in k.modes]
