#!/usr/bin/env python3
"""The kernel's floors, checked: every module path a Rust file names must
belong to its own floor or one below it.

  core   src/ except lab/ and ktest/ (arch, boot, mm, sched, console,
         symbols, oops, panic, fixup, cmdline, ...)
  lab    src/lab/    experiments built on the core
  ktest  src/ktest/  the test harness, suites and fuzzers
  bin    src/main.rs, tests/*.rs: the kernel binaries

One crate holds all four (a Cargo workspace cannot: the kernel binary and
the test kernels would depend on crates that depend on the kernel library
in the same package), so this check is what makes an upward import a
failure of `make test`.  It reads `crate::X`, `vmfault::X` and `super::`
paths, in `use` lines and in code; comments are ignored.

  python3 tests/host/layers.py        prints every upward reference, exit 1 if any
"""
import os
import re

from vmfault_host.paths import ROOT

FLOORS = ("core", "lab", "ktest", "bin")


def floor_of_module(path):
    """`path`: a module path inside the crate, as a list (["lab", "race"])."""
    if not path:
        return "core"
    if path[0] == "lab":
        return "lab"
    if path[0] == "ktest":
        return "ktest"
    return "core"


def module_of_file(src, file):
    """src/lab/race/explorer.rs -> ["lab", "race", "explorer"]; mod.rs and
    lib.rs name their directory's module."""
    rel = os.path.relpath(file, src)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib"):
        rel = rel[:-1]
    return rel


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


PATH = re.compile(r"\b(crate|vmfault|super)((?:::(?:super|[A-Za-z_]\w*))+)")
# `use crate::{lab::race, mm}`: the names right after the brace.
GROUP = re.compile(r"\b(crate|vmfault|super)((?:::(?:super|[A-Za-z_]\w*))*)::\{")


def group_heads(text, start):
    """The first path segment of every item of the brace group at `start`."""
    depth, item, heads = 0, "", []
    for ch in text[start:]:
        if ch == "{":
            depth += 1
            if depth == 1:
                continue
        elif ch == "}":
            depth -= 1
            if depth == 0:
                heads.append(item)
                break
        if depth == 1 and ch == ",":
            heads.append(item)
            item = ""
        elif depth >= 1:
            item += ch
    return [re.split(r"::|\s|\{", h.strip(), maxsplit=1)[0] for h in heads if h.strip()]


def references(file, module):
    """Yield (line number, module path referenced) for each crate path."""
    with open(file) as f:
        text = strip_comments(f.read())
    found = [(m.start(), m.group(1), m.group(2).split("::")[1:]) for m in PATH.finditer(text)]
    for m in GROUP.finditer(text):
        for head in group_heads(text, m.end() - 1):
            if head and head != "self":
                found.append((m.start(), m.group(1), m.group(2).split("::")[1:] + [head]))
    for pos, root, rest in sorted(found):
        n = text.count("\n", 0, pos) + 1
        if root in ("crate", "vmfault"):
            target = rest
        else:
            # super:: names the parent module (for mod.rs too: its module
            # is its directory); each further super:: climbs one more.
            target = module[:-1]
            while rest and rest[0] == "super":
                target, rest = target[:-1], rest[1:]
            target = target + rest
        yield n, target


def check(root):
    """Every upward reference as a line of text; empty when the floors hold."""
    src = os.path.join(root, "src")
    files = []
    for d, _, names in os.walk(src):
        files += [os.path.join(d, n) for n in names if n.endswith(".rs")]
    tests = os.path.join(root, "tests")
    files += [os.path.join(tests, n) for n in os.listdir(tests) if n.endswith(".rs")]
    bad = []
    for file in sorted(files):
        is_bin = not file.startswith(src + os.sep) or os.path.basename(file) == "main.rs" and os.path.dirname(file) == src
        if is_bin:
            continue  # the top floor may name anything
        module = module_of_file(src, file)
        mine = floor_of_module(module)
        for n, target in references(file, module):
            theirs = floor_of_module(target)
            if FLOORS.index(theirs) > FLOORS.index(mine):
                rel = os.path.relpath(file, root)
                bad.append(f"{rel}:{n}: {mine} names {theirs} ({'::'.join(target)})")
    return bad


def main():
    bad = check(ROOT)
    for line in bad:
        print(line)
    print(f"layers: {len(bad)} upward references" if bad else "layers: every import runs down")
    return 1 if bad else 0
