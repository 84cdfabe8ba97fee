#!/usr/bin/env python3
"""The floors inside the core crate, checked: what the compiler cannot see.

The crates' own floors (core <- lab <- harness <- kernels) are Cargo
dependencies, which the compiler enforces.  Inside the core crate any
module may name any other; this check holds its modules to floors, each
naming only its own floor and those below (bottom first):

  lib     racy_cell, fixed_buf, rand
  arch    arch/x86/* but the glue below, with console and qemu (the
          hardware, the interrupt layer, __pa/__va in arch/x86/page.rs as
          Linux's asm/page.h)
  mm      mm/* but mm/fault.rs, cmdline, symbols
  sched   sched/*
  glue    arch/x86/{traps, nmi, smpboot}, mm/fault.rs (2.4's
          arch/i386/mm/fault.c), fixup, oops, panic: the code that ties
          an exception or a CPU's bring-up to mm and the scheduler
  top     boot, init, host_abi, lib.rs

It reads `crate::X` and `super::` paths, in `use` lines and in code;
comments are ignored.

  python3 tests/host/core_floors.py     every upward reference, exit 1 if any
"""
import os
import re

from vmfault_host.paths import ROOT

FLOORS = ("lib", "arch", "mm", "sched", "glue", "top")
GLUE = {("arch", "x86", "traps"), ("arch", "x86", "nmi"), ("arch", "x86", "smpboot"), ("mm", "fault")}


def floor_of_module(path):
    """`path`: a module path inside the core crate, as a list."""
    if not path:
        return "top"
    head = path[0]
    for g in GLUE:
        if tuple(path[:len(g)]) == g:
            return "glue"
    if head in ("racy_cell", "fixed_buf", "rand"):
        return "lib"
    if head in ("arch", "console", "qemu", "print", "println", "printk", "pr_err", "pr_warn", "pr_info",
                "pr_debug", "pr_notice"):
        return "arch"
    if head in ("mm", "cmdline", "symbols"):
        return "mm"
    if head == "sched":
        return "sched"
    if head in ("fixup", "oops", "panic"):
        return "glue"
    return "top"


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


PATH = re.compile(r"\b(crate|super)((?:::(?:super|[A-Za-z_]\w*))+)")
# `use crate::{lab::race, mm}`: the names right after the brace.
GROUP = re.compile(r"\b(crate|super)((?:::(?:super|[A-Za-z_]\w*))*)::\{")


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
    """Every upward reference inside the core crate, as a line of text."""
    src = os.path.join(root, "src")
    bad = []
    for d, _, names in sorted(os.walk(src)):
        for n in sorted(names):
            if not n.endswith(".rs"):
                continue
            file = os.path.join(d, n)
            module = module_of_file(src, file)
            mine = floor_of_module(module)
            for line, target in references(file, module):
                theirs = floor_of_module(target)
                if FLOORS.index(theirs) > FLOORS.index(mine):
                    rel = os.path.relpath(file, root)
                    bad.append(f"{rel}:{line}: {mine} names {theirs} ({'::'.join(target)})")
    return bad


def main():
    bad = check(ROOT)
    for line in bad:
        print(line)
    print(f"core floors: {len(bad)} upward references" if bad else "core floors: every import runs down")
    return 1 if bad else 0
