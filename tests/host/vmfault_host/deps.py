"""What a fresh Debian machine lacks for the host tools, installed through
apt-get (as root) and rustup, or named with the command that installs it."""
import os
import shutil
import subprocess
import sys

from vmfault_host.paths import ROOT

APT_PACKAGES = ["qemu-system-x86", "qemu-utils", "grub-pc-bin", "grub-common", "xorriso", "mtools", "gdb",
                "binutils", "bochs", "bochsbios", "vgabios"]
NEEDED = {
    "qemu-system-i386": "qemu-system-x86",
    "grub-mkrescue": "grub-common",
    "grub-file": "grub-common",
    "xorriso": "xorriso",
    "mformat": "mtools",
    "gdb": "gdb",
    "objcopy": "binutils",
    # qemu-img: the snapshot image of `make gdb RACE= REVERSE=1`
    "qemu-img": "qemu-utils",
    # The second x86 implementation (EMU=bochs, make test's Bochs part)
    "bochs": "bochs",
}
# Files a package brings that no command names.
NEEDED_FILES = {
    "/usr/lib/grub/i386-pc": "grub-pc-bin",
    "/usr/share/bochs/BIOS-bochs-latest": "bochsbios",
    "/usr/share/vgabios/vgabios.bin": "vgabios",
}


def missing_tools():
    miss = [pkg for tool, pkg in NEEDED.items() if shutil.which(tool) is None]
    miss += [pkg for path, pkg in NEEDED_FILES.items() if not os.path.exists(path)]
    return sorted(set(miss))


def apt_install(packages, why=""):
    """Install Debian `packages` quietly (one line on the terminal, apt's
    own output only if it fails); False if not root or apt failed."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return False
    print(f"runner: installing {' '.join(packages)}{why} with apt-get", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    out = []
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq"] + list(packages)):
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
        out.append(r.stdout + r.stderr)
        if r.returncode != 0 and cmd[1] == "install":
            print("".join(out)[-2000:], flush=True)
            return False
    return True


def ensure_tools():
    """Install what a fresh Debian machine lacks, or say exactly what to run."""
    miss = missing_tools()
    if miss:
        cmd = "apt-get update && apt-get install -y " + " ".join(APT_PACKAGES)
        if os.geteuid() == 0 and shutil.which("apt-get"):
            if not apt_install(APT_PACKAGES) or missing_tools():
                sys.exit(f"runner: could not install {' '.join(missing_tools())}; run as root: {cmd}")
        else:
            sys.exit(f"runner: missing {' '.join(miss)}; install them with: sudo sh -c '{cmd}'")
    r = subprocess.run(["rustup", "component", "list", "--installed", "--toolchain", "nightly"],
                       capture_output=True, text=True, cwd=ROOT)
    if r.returncode != 0 or "rust-src" not in r.stdout:
        print("runner: adding rust-src to the nightly toolchain", flush=True)
        subprocess.run(["rustup", "component", "add", "rust-src", "--toolchain", "nightly"],
                       check=True, cwd=ROOT)
