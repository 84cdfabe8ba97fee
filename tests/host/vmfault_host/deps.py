"""What a fresh Debian machine lacks for the host tools, installed through
apt-get (as root) and rustup, or named with the command that installs it."""
import os
import shutil
import subprocess
import sys

from vmfault_host.paths import ROOT

APT_PACKAGES = ["qemu-system-x86", "qemu-utils", "grub-pc-bin", "grub-common", "xorriso", "mtools", "gdb",
                "binutils"]
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
}


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
