"""cargo: building the kernels and finding the ELF files it produced."""
import json
import os
import subprocess
import sys

from vmfault_host.paths import ROOT, TARGET


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


# The profile of the test kernels `make test` boots (Cargo.toml: the dev
# profile's checks at opt-level 1, in a directory of its own, so the dev
# kernel beside it stays unoptimised).
TEST_PROFILE = "ktest"


def build_kernels(release=False):
    """(binaries, test kernels), each [(name, path, is_test)]: the dev
    binaries and the `ktest`-profile test kernels, or all of them release."""
    extra = ["--release"] if release else []
    bins = cargo_artifacts(["build", "--bins"] + extra)
    tests = [t for t in cargo_artifacts(["test", "--no-run"] + (extra or ["--profile", TEST_PROFILE])) if t[2]]
    return bins, tests


def build_main(release=False, profile=None):
    """Build only the binaries; the path of the user-facing kernel (the
    dev profile's unless `release` or another `profile` is asked for)."""
    extra = ["--release"] if release else (["--profile", profile] if profile else [])
    return main_kernel(cargo_artifacts(["build", "--bins"] + extra))


def main_kernel(bins):
    return next(p for n, p, _ in bins if n == "vmfault")


def test_kernel(tests, name):
    return next(p for n, p, _ in tests if n == name)


def debug_main_path():
    """Where `cargo build` leaves the debug kernel (for tools run by hand)."""
    return os.path.join(TARGET, "i386-kernel", "debug", "vmfault")
