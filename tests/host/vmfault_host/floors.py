"""What the crates' floors promise about the kernels built from them,
read from the ELF files (the compiler enforces the imports themselves:
crates/lab cannot name crates/ktest, the core names neither).

- The kernel users boot links no symbol of the harness crate
  (`vmfault_ktest`): it is the core and the lab, minus nothing but the
  harness.
- The `#PF` entries and handlers under test are the ones users boot: the
  same functions of the same crate, compiled once per profile and linked
  into both, so each has the same size in the user kernel built with the
  test profile (the one `make experiments` boots) and in the test kernel.
- The core crate builds alone: it needs nothing above it.
"""
import re
import subprocess

from vmfault_host import elf
from vmfault_host.paths import ROOT

HARNESS = "vmfault_ktest"
# The fault path every explorer steps: the 2.4-shaped entries (assembly,
# unmangled), `error_code`, and each version's `do_page_fault` and
# `vmalloc_fault` (v0-mangled paths inside the core's mm::fault).
HANDLERS = re.compile(r"^(page_fault_\w+|error_code\w*)$|5fault.*(13do_page_fault|13vmalloc_fault)")


def v0_crates(symbols):
    """The crate names v0-mangled symbols start in (`_R...Cs<hash>_<len><name>`)."""
    out = set()
    for s in symbols:
        m = re.match(r"_R\w*?Cs\w+?_(\d+)", s)
        if m:
            n = int(m.group(1))
            start = m.end()
            out.add(s[start:start + n])
    return out


def harness_symbols(kernel):
    """The symbols of `kernel` that belong to the harness crate."""
    e = elf.Elf32(kernel)
    return sorted(s for s in e.symbols if HARNESS in s or f"{len(HARNESS)}{HARNESS}" in s)


def handler_sizes(kernel):
    e = elf.Elf32(kernel)
    return {s: v[1] for s, v in e.symbols.items() if HANDLERS.search(s)}


def check_user_kernel_has_no_harness(user_kernel):
    syms = harness_symbols(user_kernel)
    return [f"the user kernel links {len(syms)} symbols of {HARNESS}, e.g. {syms[0]}"] if syms else []


def check_same_handlers(pair):
    """`pair`: (user kernel with the test profile, test kernel)."""
    user, test = pair
    a, b = handler_sizes(user), handler_sizes(test)
    why = []
    if len(a) < 12:
        why.append(f"only {len(a)} #PF entries and handlers found in the user kernel: {sorted(a)[:4]}")
    for name in sorted(a):
        if name not in b:
            why.append(f"{name}: in the user kernel, not in the test kernel")
        elif a[name] != b[name]:
            why.append(f"{name}: {a[name]} bytes in the user kernel, {b[name]} in the test kernel")
    return why


def check_core_builds_alone(_):
    """`cargo build -p vmfault`: the core with nothing above it."""
    p = subprocess.run(["cargo", "build", "-p", "vmfault", "--profile", "ktest", "--lib"], cwd=ROOT,
                       capture_output=True, text=True)
    return [] if p.returncode == 0 else ["cargo build -p vmfault failed: " + p.stderr[-1500:]]


def checks(user_kernel, race_kernel, test_kernel):
    return [("host floors_user_kernel_links_no_harness", check_user_kernel_has_no_harness, user_kernel),
            ("host floors_user_kernel_test_profile_links_no_harness", check_user_kernel_has_no_harness, race_kernel),
            ("host floors_handlers_under_test_are_the_shipped_ones", check_same_handlers, (race_kernel, test_kernel)),
            ("host floors_core_crate_builds_alone", check_core_builds_alone, None)]
