"""Strips: the race explorer's outcomes, one picture per fault path.

The explorer steps a fault path (or a window of two CPUs' code) one
instruction boundary at a time and, at each boundary k, lets the other
party run: a nested interrupt on CPU A, or CPU B's half of the race.  A
strip is that path drawn as one horizontal bar, boundary 0 at the left and
the last stepped boundary at the right, each boundary coloured by what
happened when the other party ran there: clean, A failed, only B failed,
both failed, hang, or not run (interrupts off at that boundary, or skipped
by stride sampling).  A failure window, a maximal span of failing
boundaries, is marked by a tick where it opens and where it closes, each
labelled with the source line of that boundary's instruction, so the
picture says which lines of the fault path the race can hit.

The kernel prints one line per explored scenario run:

  EXPS|<name>|<total>|<start>:<code>:<eip>,<start>:<code>:<eip>,...

each item the first boundary of a maximal run of equal outcomes (the run
ends where the next starts, the last at <total>), <eip> in hex without 0x.

  strips = parse(log)                              # name -> Strip
  labels = addr2line(kernel, [eip, ...])           # eip -> "src/mm/fault.rs:211 (fault::vmalloc_fault)"
  text = svg("title", [("legacy", strips["thread"])], labels)
  write_pictures(out_dir, {"thread": ("title", rows)}, kernel)
"""
import os
import re
import string
import subprocess
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr

from vmfault_host.paths import ROOT

PREFIX = "EXPS|"

# code -> (legend text, fill).  Okabe-Ito hues where they exist, so the
# failing codes stay apart from clean for red-green colour blindness too.
CODES = {
    "c": ("clean", "#009E73"),
    "f": ("A failed", "#D55E00"),
    "b": ("only B failed", "#E69F00"),
    "x": ("both failed", "#7A0E0E"),
    "h": ("hang", "#6A3D9A"),
    "s": ("not run: IF=0", "#DDDDDD"),
    "-": ("not run: stride", "#999999"),
    "o": ("not run: outside the window", "#F2F2F2"),
}
FAILING = frozenset("fbxh")


@dataclass
class Strip:
    name: str
    total: int
    # (first boundary, code, eip of that boundary), starts increasing from 0
    runs: list = field(default_factory=list)

    def ends(self):
        """Each run's exclusive end: the next run's start, the last one's `total`."""
        return [r[0] for r in self.runs[1:]] + [self.total]


# -- reading the log -------------------------------------------------------


def parse(log):
    """Every EXPS line of `log` as name -> Strip; other lines are ignored.
    A malformed EXPS line raises ValueError naming the line and the fault."""
    strips = {}
    for number, line in enumerate(log.splitlines(), 1):
        line = line.strip()
        if not line.startswith(PREFIX):
            continue
        try:
            strip = _parse_line(line)
            if strip.name in strips:
                raise ValueError(f"a second strip named {strip.name!r}")
        except ValueError as e:
            shown = line if len(line) <= 80 else line[:77] + "..."
            raise ValueError(f"log line {number}: {shown!r}: {e}") from None
        strips[strip.name] = strip
    return strips


def _parse_line(line):
    fields = line.split("|")
    if len(fields) != 4:
        raise ValueError(f"expected 4 '|'-separated fields EXPS|name|total|runs, got {len(fields)}")
    _, name, total_text, runs_text = fields
    if not name:
        raise ValueError("empty scenario name")
    total = _number(total_text, 10, "total")
    runs = []
    for i, item in enumerate(runs_text.split(",") if runs_text else []):
        parts = item.split(":")
        if len(parts) != 3:
            raise ValueError(f"run {i} {item!r}: expected start:code:eip")
        start = _number(parts[0], 10, f"run {i} start")
        code = parts[1]
        if code not in CODES:
            raise ValueError(f"run {i} {item!r}: unknown code {code!r} (known: {' '.join(CODES)})")
        eip = _number(parts[2], 16, f"run {i} eip")
        if start >= total:
            raise ValueError(f"run {i} {item!r}: start {start} >= total {total}")
        if runs and start <= runs[-1][0]:
            raise ValueError(
                f"run {i} {item!r}: start {start} does not follow the previous start {runs[-1][0]}"
            )
        if not runs and start != 0:
            raise ValueError(f"run {i} {item!r}: the first run starts at {start}, not 0")
        runs.append((start, code, eip))
    if total and not runs:
        raise ValueError(f"{total} boundaries but no runs")
    return Strip(name, total, runs)


def _number(text, base, what):
    # int() would also take signs, spaces and underscores: the kernel prints none.
    digits = string.hexdigits if base == 16 else string.digits
    if not text or any(ch not in digits for ch in text):
        raise ValueError(f"{what} {text!r} is not a base-{base} number")
    return int(text, base)


def rle(codes, eips):
    """Per-boundary outcomes (one code character and one eip per boundary)
    as the runs of an EXPS line: what the kernel does before printing."""
    if len(codes) != len(eips):
        raise ValueError(f"{len(codes)} codes but {len(eips)} eips")
    runs = []
    for k, (code, eip) in enumerate(zip(codes, eips)):
        if code not in CODES:
            raise ValueError(f"boundary {k}: unknown code {code!r}")
        if not runs or runs[-1][1] != code:
            runs.append((k, code, eip))
    return runs


def windows(strip):
    """Failure windows: maximal spans of consecutive runs whose codes all
    fail, as (first boundary, end boundary exclusive, eip where it opens,
    eip of the boundary where it closes or None if it reaches the end)."""
    found = []
    runs, ends = strip.runs, strip.ends()
    i = 0
    while i < len(runs):
        if runs[i][1] not in FAILING:
            i += 1
            continue
        j = i
        while j + 1 < len(runs) and runs[j + 1][1] in FAILING:
            j += 1
        close = runs[j + 1][2] if j + 1 < len(runs) else None
        found.append((runs[i][0], ends[j], runs[i][2], close))
        i = j + 1
    return found


# -- source lines ----------------------------------------------------------


def addr2line(elf_path, eips):
    """eip -> "file.rs:LINE (function)" for each eip, from one addr2line run
    over the kernel ELF; "0x<eip>" for whatever it cannot name.  Never raises:
    a picture without source lines is still a picture."""
    eips = sorted(set(eips))
    labels = {eip: _hex(eip) for eip in eips}
    if not eips or not elf_path:
        return labels
    # -i: the whole inline chain, innermost first; -a: each answer starts
    # with its address, so chains of any length can be told apart.  The
    # label is the outermost frame: the function the code was inlined
    # into (`set_pmd`, not the `write_u32` it inlines).
    cmd = ["addr2line", "-a", "-i", "-f", "-C", "-e", elf_path] + [_hex(eip) for eip in eips]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError):
        return labels
    if out.returncode != 0:
        return labels
    answers, current = [], None
    for line in out.stdout.splitlines():
        # An address line starts an answer once the last one is whole
        # (function and location lines come in pairs).
        if line.startswith("0x") and (current is None or len(current) % 2 == 0):
            current = []
            answers.append(current)
        elif current is not None:
            current.append(line)
    # Any other shape means it did not understand.
    if len(answers) != len(eips) or any(len(a) < 2 or len(a) % 2 for a in answers):
        return labels
    for eip, a in zip(eips, answers):
        labels[eip] = source_label(eip, a[-2], a[-1])
    return labels


def source_label(eip, function, location):
    """One addr2line answer (its function line and its file:line line) as
    "file.rs:LINE (function)", as much of it as is known."""
    path, _, line = location.split(" (discriminator")[0].strip().rpartition(":")
    known_file = path not in ("", "??")
    function = "" if function.strip() in ("", "??") else short_function(function.strip())
    where = short_file(path) if known_file else _hex(eip)
    if known_file and line.isdigit() and line != "0":
        where += f":{line}"
    return f"{where} ({function})" if function else where


def short_file(path):
    """The kernel's /work/main/src/mm/fault.rs as src/mm/fault.rs (and the
    lab's as crates/lab/src/...: relative to the workspace); a
    dependency's or the standard library's file keeps its crate directory
    (acpi-5.2.0/src/lib.rs, core/src/ptr/mod.rs) so it cannot pass for one
    of the kernel's; anything else as its basename."""
    path = path.replace("\\", "/")
    if path.startswith(("src/", "crates/")):
        return path
    root = ROOT.replace("\\", "/").rstrip("/") + "/"
    if path.startswith(root):
        return path[len(root):]
    i = path.rfind("/src/")
    if i < 0:
        return os.path.basename(path)
    tail = path[i + 1 :]
    if any(marker in path for marker in ("/.cargo/", "/.rustup/", "/rustlib/")):
        tail = os.path.basename(path[:i]) + "/" + tail
    return tail


def short_function(name):
    """A demangled Rust name cut to its last two path components, without
    generic arguments or a legacy hash:
      vmfault::mm::fault::vmalloc_fault::<ThreeLevel, 0>   -> fault::vmalloc_fault
      <core::option::Option<T>>::ok_or::<E>                -> Option::ok_or
      <vmfault::sched::task::Task as core::ops::Drop>::drop -> Task::drop
      vmfault::smp::online::{closure#0}                     -> online::{closure#0}"""
    name = re.sub(r"::h[0-9a-f]{8,16}$", "", name)
    name = re.sub(r"\.llvm\.\d+$", "", name)
    kept = []
    for i, part in enumerate(_split_top(name, "::")):
        if part.startswith("<") and part.endswith(">"):
            if i > 0:
                continue  # turbofish: the generic arguments
            kept.append(_short_type(_split_top(part[1:-1], " as ")[0]))
        else:
            kept.append(_drop_generics(part))
    return "::".join(kept[-2:])


def _short_type(name):
    name = name.strip()
    for prefix in ("&mut ", "&", "*const ", "*mut ", "dyn ", "mut "):
        if name.startswith(prefix):
            return _short_type(name[len(prefix) :])
    if name.startswith("[") and name.endswith("]"):
        return "[" + _short_type(_split_top(name[1:-1], ";")[0]) + "]"
    if name.startswith("("):
        return name if len(name) <= 12 else "(..)"
    return short_function(name).split("::")[-1] or name


def _drop_generics(part):
    return part.split("<", 1)[0] or part


def _split_top(text, sep):
    """`text` split at each `sep` outside <>, (), [] and {} (an arrow's `>`
    closes nothing)."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(text):
        if text.startswith("->", i):
            i += 2
            continue
        if depth == 0 and text.startswith(sep, i):
            parts.append(text[start:i])
            i += len(sep)
            start = i
            continue
        ch = text[i]
        if ch in "<([{":
            depth += 1
        elif ch in ">)]}":
            depth = max(depth - 1, 0)
        i += 1
    parts.append(text[start:])
    return parts


def _hex(eip):
    return f"0x{eip:08x}"


# -- drawing ---------------------------------------------------------------

MARGIN = 16
TITLE_H = 36
STRIP_H = 18
LANE_H = 13
ROW_GAP = 18
LEGEND_H = 22
FONT = 11
SMALL = 10
# monospace advance per character, for laying text out without a font
CHAR_W, SMALL_W = 0.6 * FONT, 0.6 * SMALL
LABEL_CHARS = 48
# a lone failing boundary in a long strip must still show
MIN_RUN_W = 0.5


def svg(title, rows, labels, width=900):
    """One SVG document: `title`, then one strip per (row label, Strip) of
    `rows`, each scaled to its own total, then a legend of the codes that
    occur.  `labels` names window ticks by eip (hex if absent)."""
    rows = [r if len(r) == 3 else (r[0], r[1], None) for r in rows]
    label_w = max([len(label) for label, _, _ in rows] + [8]) * CHAR_W + 12
    total_w = max([len(_boundaries(s.total)) for _, s, _ in rows] + [8]) * CHAR_W + 12
    x0 = MARGIN + int(label_w)
    # an integer width keeps the rounded run edges summing to it exactly
    strip_w = width - x0 - int(total_w) - MARGIN
    if strip_w < 100:
        raise ValueError(f"width {width} leaves {strip_w} px for the strips")

    body = [_text(MARGIN, 22, title, size=14, weight="bold")]
    y = TITLE_H
    used = set()
    any_window = False
    for label, strip, handle in rows:
        used.update(code for _, code, _ in strip.runs)
        row, y = _row(label, strip, labels, x0, strip_w, y, width, handle)
        any_window = any_window or bool(windows(strip))
        body.append(row)
    legend, y = _legend(used, any_window, y, width)
    body.append(legend)
    height = y + MARGIN
    head = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="monospace" font-size="{FONT}">\n'
        f'<rect class="background" width="{width}" height="{height}" fill="#ffffff"/>\n'
    )
    return head + "\n".join(body) + "\n</svg>\n"


def _row(label, strip, labels, x0, strip_w, y, width, handle=None):
    """One row's SVG and the y where the next row starts; `handle`: the
    replay handle of the row without its boundary."""

    def edge(k):
        return round(x0 + strip_w * k / strip.total, 2) if strip.total else x0

    ticks = []
    for first, end, open_eip, close_eip in windows(strip):
        ticks.append((edge(first), "open", f"{first} {labels.get(open_eip, _hex(open_eip))}"))
        if close_eip is not None:
            ticks.append((edge(end), "close", f"{end} {labels.get(close_eip, _hex(close_eip))}"))
    placed = _lanes(ticks, width)
    above = 1 + max([lane for _, _, _, side, lane in placed if side < 0], default=-1)
    below = 1 + max([lane for _, _, _, side, lane in placed if side > 0], default=-1)
    top = y + above * LANE_H + (4 if above else 0)
    bottom = top + STRIP_H

    out = [f'<g class="row" data-name={quoteattr(strip.name)}>']
    out.append(_text(MARGIN, top + STRIP_H / 2 + 4, label, cls="row-label"))
    out.append(
        f'<rect class="frame" x="{x0}" y="{top}" width="{strip_w}" height="{STRIP_H}" fill="#ffffff"/>'
    )
    wide, narrow = [], []
    for (start, code, eip), end in zip(strip.runs, strip.ends()):
        left, w = edge(start), round(edge(end) - edge(start), 2)
        if w < MIN_RUN_W:
            w = MIN_RUN_W
            left = min(left, x0 + strip_w - MIN_RUN_W)
        tip = f"boundaries {start}..{end - 1}: {CODES[code][0]} (the first at {labels.get(eip, _hex(eip))})"
        if handle and code in "cfbxh":
            tip += f"; replay it: RACE={handle}:{start}"
        rect = (
            f'<rect class="run" data-code={quoteattr(code)} data-start="{start}" data-end="{end}" '
            f'x="{left:.2f}" y="{top}" width="{w:.2f}" height="{STRIP_H}" fill="{CODES[code][1]}">'
            f"<title>{escape(tip)}</title></rect>"
        )
        (narrow if w == MIN_RUN_W else wide).append(rect)
    # widened slivers last, so their neighbours do not paint over them
    out += wide + narrow
    out.append(_text(x0 + strip_w + 8, top + STRIP_H / 2 + 4, _boundaries(strip.total), cls="total"))

    for x, kind, text, side, lane in placed:
        if side < 0:
            base = top - 4 - lane * LANE_H
            y1, y2 = base - SMALL + 2, bottom
        else:
            base = bottom + SMALL + 2 + lane * LANE_H
            y1, y2 = top, base
        dash = ' stroke-dasharray="3,2"' if kind == "close" else ""
        out.append(
            f'<line class="tick {kind}" x1="{x:.2f}" y1="{y1}" x2="{x:.2f}" y2="{y2}" '
            f'stroke="#222222" stroke-width="1"{dash}/>'
        )
    for x, kind, text, side, lane in placed:
        base = top - 4 - lane * LANE_H if side < 0 else bottom + SMALL + 2 + lane * LANE_H
        out.append(_tick_label(x, base, text, width))
    out.append("</g>")
    return "\n".join(out), bottom + below * LANE_H + (4 if below else 0) + ROW_GAP


def _lanes(ticks, width):
    """Each tick's text put in the first lane (above the strip, below it,
    then further out on each side) where it overlaps no earlier text:
    (x, kind, text, side -1 above / +1 below, lane)."""
    taken = {}
    placed = []
    for x, kind, text in sorted(ticks, key=lambda t: t[0]):
        left, right = _label_span(x, _cut(text), width)
        lane = 0
        while True:
            side, depth = (-1, lane // 2) if lane % 2 == 0 else (1, lane // 2)
            spans = taken.setdefault((side, depth), [])
            if all(right + 4 < a or b + 4 < left for a, b in spans):
                spans.append((left, right))
                placed.append((x, kind, text, side, depth))
                break
            lane += 1
    return placed


def _label_span(x, text, width):
    w = len(text) * SMALL_W
    # text starts just right of its tick unless it would run off the picture
    if x + 3 + w <= width - 2:
        return x + 3, x + 3 + w
    return x - 3 - w, x - 3


def _tick_label(x, base, text, width):
    text = _cut(text)
    left, _ = _label_span(x, text, width)
    anchor = "start" if left > x else "end"
    tx = x + 3 if anchor == "start" else x - 3
    # a white halo keeps other ticks' lines from crossing the letters
    return (
        f'<text class="tick-label" x="{tx:.2f}" y="{base}" font-size="{SMALL}" text-anchor="{anchor}" '
        f'paint-order="stroke" stroke="#ffffff" stroke-width="3" fill="#000000">{escape(text)}</text>'
    )


def _legend(used, any_window, y, width):
    items = [(CODES[c][0], f'fill="{CODES[c][1]}"', "swatch") for c in CODES if c in used]
    if any_window:
        items += [("window opens", "", "open"), ("window closes", "", "close")]
    out = ['<g class="legend">']
    x = MARGIN
    for text, fill, kind in items:
        w = 16 + len(text) * CHAR_W + 18
        if x + w > width - MARGIN and x > MARGIN:
            x, y = MARGIN, y + LEGEND_H
        if kind == "swatch":
            out.append(f'<rect class="swatch" x="{x}" y="{y}" width="12" height="12" {fill}/>')
        else:
            dash = ' stroke-dasharray="3,2"' if kind == "close" else ""
            out.append(f'<line x1="{x + 6}" y1="{y - 2}" x2="{x + 6}" y2="{y + 14}" stroke="#222222"{dash}/>')
        out.append(_text(x + 16, y + 10, text, cls="legend-label"))
        x += round(w)
    out.append("</g>")
    return "\n".join(out), y + LEGEND_H


def _text(x, y, text, size=None, weight=None, cls=None):
    attrs = f' class="{cls}"' if cls else ""
    attrs += f' font-size="{size}"' if size else ""
    attrs += f' font-weight="{weight}"' if weight else ""
    return f'<text x="{x:g}" y="{y:g}"{attrs}>{escape(text)}</text>'


def _cut(text):
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 3] + "..."


def _boundaries(total):
    return f"{total} boundar{'y' if total == 1 else 'ies'}"


# -- files -----------------------------------------------------------------


def write_pictures(out_dir, pictures, elf_path):
    """`pictures`: file stem -> (title, [(row label, Strip), ...]).  Names
    every window's open and close eip with one addr2line run, writes
    <out_dir>/<stem>.svg for each, and returns the paths written."""
    eips = set()
    for _, rows in pictures.values():
        for row in rows:
            strip = row[1]
            eips.update(eip for _, _, eip in strip.runs)
            for _, _, open_eip, close_eip in windows(strip):
                eips.add(open_eip)
                if close_eip is not None:
                    eips.add(close_eip)
    labels = addr2line(elf_path, sorted(eips))
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for stem, (title, rows) in pictures.items():
        path = os.path.join(out_dir, f"{stem}.svg")
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            f.write(svg(title, rows, labels))
        paths.append(path)
    return paths
