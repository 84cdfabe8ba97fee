"""Question 1 of the seed ("we can triple fault (page_fault -> irq ->
vmalloc fault -> irq -> vmalloc fault) and I'm not sure if the cpu will
reset after that"): race.md's question-1 table, the pair grids, and the
control boot that does reset.

The kernel's one-CPU `experiment=race` boot prints, per version,

  EXP|q1_pairs2|levels=2|stride=1|...|pairs=N|clean=N|oopses=N|hangs=N|...
  EXPQR|q1_pairs2|<outer boundary k>|<one code per nested boundary j>

(crates/lab/src/race/explorer.rs `explore_pairs`; codes: `pair_code`, `s` shut
to interrupts, `-` not run by the stride).  A boot that resets mid-way
has no EXP line for that experiment: its last EXPQR row says how far it
got.  The control, `experiment=triple_fault` (crates/lab/src/race/triple_fault.rs),
must end in a reset on every emulator, or "no reset" means nothing.
"""
import os
import re

from vmfault_host.paths import LOGDIR
from vmfault_host.qemu import boot

CONTROL_CMDLINE = "experiment=triple_fault"
VECTORS = {0: "#DE", 6: "#UD", 8: "#DF", 10: "#TS", 11: "#NP", 12: "#SS", 13: "#GP", 14: "#PF"}
CASES = (("q1_pairs2", "two nested levels (the seed's question 1), every pair"),
         ("q1_pairs3", "three nested levels, a sample"))
# pair code -> (legend, fill): strips.py's hues where the meaning matches.
GRID_CODES = {"c": ("clean", "#009E73"), "f": ("outer handler oopsed", "#D55E00"),
              "n": ("a nested handler oopsed", "#CC79A7"), "h": ("hang", "#6A3D9A"),
              "l": ("fault loop", "#7A0E0E"), "x": ("corrupt data", "#000000"),
              "o": ("another exception", "#E69F00"), "s": ("not run: IF=0 there", "#DDDDDD"),
              "-": ("not run: sample", "#F2F2F2"), "?": ("void run", "#999999")}


def vector(n):
    return VECTORS.get(n, f"vector {n}")


class Control:
    """The control boot on one emulator: did it arm, did it reset, and the
    exception chain the emulator reports."""

    def __init__(self, emu, armed, reset, chain, verdict, seconds):
        self.emu, self.armed, self.reset, self.chain = emu, armed, reset, chain
        self.verdict, self.seconds = verdict, seconds

    def cell(self):
        if not self.armed:
            return f"not armed: {self.verdict}"
        if not self.reset:
            return f"**no reset**: {self.verdict}"
        return f"triple fault: reset ({self.chain})"


def qemu_chain(text):
    """The exceptions of QEMU's `-d int` log up to "Triple fault": its
    `check_exception old: 0x8 new 0xb` lines (target/i386/tcg/excp_helper.c),
    from the last fresh one (old 0xffffffff)."""
    lines = text.splitlines()
    if "Triple fault" not in text:
        return None
    end = max(i for i, l in enumerate(lines) if l.startswith("Triple fault"))
    seen = []
    for line in lines[:end]:
        m = re.match(r"check_exception old: 0x([0-9a-f]+) new 0x([0-9a-f]+)", line)
        if m:
            old, new = int(m.group(1), 16), int(m.group(2), 16)
            if old == 0xFFFFFFFF:
                seen = [new]
                continue
            # A fault during a delivery: "old" is what was being delivered
            # (QEMU turns a #PF during a #PF into the #DF it delivers).
            if seen[-1:] != [old]:
                seen.append(old)
            seen.append(new)
    return " -> ".join(vector(v) for v in seen) + " -> shutdown"


def control(kernel, emu):
    """Boot the deliberate triple fault on `emu`."""
    name = f"q1-control-{emu}"
    if emu == "qemu":
        os.makedirs(LOGDIR, exist_ok=True)
        qlog = os.path.join(LOGDIR, name + ".int.log")
        if os.path.exists(qlog):
            os.remove(qlog)
        b = boot(kernel, CONTROL_CMDLINE, name, timeout=120, extra=("-d", "int,cpu_reset", "-D", qlog), emu=emu)
        try:
            with open(qlog, errors="replace") as f:
                chain = qemu_chain(f.read())
        except FileNotFoundError:
            chain = None
        reset = b.status == 0 and chain is not None
        chain = f"QEMU's log: {chain}" if chain else "-"
    else:
        b = boot(kernel, CONTROL_CMDLINE, name, timeout=120, emu=emu)
        reset = getattr(b, "triple", None) is not None
        chain = f"Bochs's log: 3rd exception, {vector(b.triple)}, with no resolution" if reset else "-"
    return Control(emu, "EXPQ|control|armed" in b.log, reset, chain, b.verdict(), b.seconds)


def grid_rows(log, name):
    """The EXPQR rows of `name`: [(k, codes)]."""
    out = []
    for line in log.splitlines():
        if line.startswith(f"EXPQR|{name}|"):
            _, _, k, codes = line.split("|", 3)
            out.append((int(k), codes))
    return out


def case_row(name, label, m, v, row, b, complete):
    """One race.md row of the question-1 table (None: nothing to say,
    a version that takes no fault)."""
    if row is None:
        if complete:
            return None
        how = "reset" if "reset" in b.verdict() else b.verdict()
        done = len(grid_rows(b.log, name))
        return f"| {label} | {m} | {v} | - | - | - | - | **{how}** (after {done} outer boundaries) | - | - |"
    if row["pairs"] == "0":
        return None
    other = sum(int(row.get(x, 0)) for x in ("fault_loops", "corrupt", "other"))
    oops = f"{row['oopses']}" + (f" (+{other} other)" if other else "")
    return (f"| {label} | {m} | {v} | {row['pairs']} of {row['outer_runs']} x {row['inner_max']} | {row['clean']} | "
            f"{oops} | {row['hangs']} | no | {row.get('first', '-')} | {row.get('reasons', '-')} |")


def section(results, controls):
    """race.md's question-1 section: the control, then every version's
    pairs; `results` the one-CPU boots ((m, v) -> (rows, groups, complete,
    boot)), `controls` this emulator's Control."""
    md = ["", "## Question 1: do the interleaved faults reset the CPU?", "",
          "The seed: \"we can triple fault (page_fault -> irq -> vmalloc fault -> irq -> vmalloc fault) and I'm not",
          "sure if the cpu will reset after that\". Two nested levels: the first nested interrupt comes at outer",
          "boundary k (IF=1), its handler's vmalloc fault is stepped from its `#PF` entry, and the second interrupt",
          "comes at that fault's boundary j (IF=1, not in an `sti` shadow): every pair (k, j). Three nested levels:",
          "the same, every 8th k and every 8th j, and the third interrupt at the second nested fault's first",
          "boundary with IF=1. The control boots `experiment=triple_fault` (crates/lab/src/race/triple_fault.rs): a `#PF`",
          "delivered onto an unmapped stack while the `#DF` gate is not present, which the SDM (Vol. 3A 6.15,",
          "Table 6-5) says shuts the CPU down. Pairs: run, of outer boundaries x the longest nested path. First",
          "failing: `k.j`. The grids: q1-pairs-*.svg beside this file (outer boundary down, nested boundary across).", "",
          "| case | paging | version | pairs | clean | oops | hang | reset | first failing | outcomes |",
          "|---|---|---|---:|---:|---:|---:|---|---|---|"]
    for c in controls:
        md.append(f"| control: `#PF` onto an unmapped stack, `#DF` gate not present | 2level | - | 1 run | 0 | 0 | 0 | "
                  f"{c.cell()} | - | - |")
    for name, label in CASES:
        for (m, v), (rows, _, complete, b) in results.items():
            if m != "2level":
                continue
            r = case_row(name, label, m, v, rows.get(name), b, complete)
            if r:
                md.append(r)
    md += ["", "PAE, and the eager versions: no vmalloc fault, so no pair (as in the tables above)."]
    return md


def svg(title, rows, cell=3):
    """A pair grid: one row per outer boundary k, one cell per nested
    boundary j, coloured by GRID_CODES."""
    width = max((len(c) for _, c in rows), default=0)
    top, left = 34, 46
    w, h = max(left + width * cell + 10, 640), top + len(rows) * cell + 60
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">',
           f'<text x="4" y="14" font-weight="bold">{title}</text>',
           f'<text x="{left}" y="28">nested boundary j (0 .. {width - 1}) &#8594;</text>',
           f'<text x="4" y="{top + 10}">k = 0</text>',
           f'<text x="4" y="{top + len(rows) * cell}">k = {rows[-1][0] if rows else 0}</text>']
    used = set()
    for i, (_, codes) in enumerate(rows):
        j = 0
        while j < len(codes):
            c = codes[j]
            n = len(codes[j:]) - len(codes[j:].lstrip(c))
            used.add(c)
            out.append(f'<rect x="{left + j * cell}" y="{top + i * cell}" width="{n * cell}" height="{cell}" '
                       f'fill="{GRID_CODES.get(c, ("?", "#FF00FF"))[1]}"/>')
            j += n
    x, y = 4, top + len(rows) * cell + 20
    for c, (text, fill) in GRID_CODES.items():
        if c in used:
            out.append(f'<rect x="{x}" y="{y - 9}" width="10" height="10" fill="{fill}"/>')
            out.append(f'<text x="{x + 14}" y="{y}">{text}</text>')
            x += 24 + 7 * len(text)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def write_grids(results, out, emu):
    """q1-pairs-<version>.svg (and .txt) for every two-level version with
    pairs; the file names written."""
    os.makedirs(out, exist_ok=True)
    names = []
    for (m, v), (_, _, _, b) in results.items():
        rows = grid_rows(b.log, "q1_pairs2")
        if m != "2level" or not rows:
            continue
        base = os.path.join(out, f"q1-pairs-{v}")
        with open(base + ".txt", "w") as f:
            f.write("".join(f"{k:4} {codes}\n" for k, codes in rows))
        with open(base + ".svg", "w") as f:
            f.write(svg(f"Question 1, {v}, two nested levels on {emu}: every (outer k, nested j)", rows))
        names.append(os.path.basename(base + ".svg"))
    return names
