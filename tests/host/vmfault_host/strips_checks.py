"""Checks of vmfault_host/strips.py on made-up EXPS lines (no kernel,
no QEMU): parsing, its errors, run-length encoding, failure windows,
source labels and the SVG drawn from them.  `make test` runs each as a
host check (`judge.host_checks`); alone:

  python3 tests/host/strips_check.py
"""
import os
import sys
import tempfile
import xml.etree.ElementTree as ET
from decimal import Decimal

from vmfault_host import strips
from vmfault_host.strips import Strip

NS = "{http://www.w3.org/2000/svg}"


class CheckFailed(Exception):
    pass


def expect(cond, what):
    if not cond:
        raise CheckFailed(what)


def expect_error(log, fragment):
    try:
        strips.parse(log)
    except ValueError as e:
        expect(fragment in str(e), f"parse error {str(e)!r} does not mention {fragment!r}")
        return
    raise CheckFailed(f"no ValueError for {log!r}")


LOG = "\r\n".join(
    [
        "vmfault booting",
        "EXP|thread|stepped=2776|failures=3",
        "EXPG|thread|failing boundary 21 at 0xc0105678",
        "  EXPS|thread|2776|0:c:c0101234,21:f:c0105678,1943:c:c01099aa  ",
        "EXPS|cpu2_threads|40|0:c:c0100000,10:b:c010000a,12:x:c010000c,15:s:c010000f,20:h:c0100014",
        "EXPSX|not|a|strip",
        "EXPS|empty|0|",
        "EXP|end",
    ]
)


def check_parse():
    got = strips.parse(LOG)
    expect(list(got) == ["thread", "cpu2_threads", "empty"], f"strip names {list(got)}")
    t = got["thread"]
    want = Strip("thread", 2776, [(0, "c", 0xC0101234), (21, "f", 0xC0105678), (1943, "c", 0xC01099AA)])
    expect(t == want, f"thread strip {t}")
    expect(t.ends() == [21, 1943, 2776], f"ends {t.ends()}")
    expect(got["empty"] == Strip("empty", 0, []), got["empty"])

    expect_error("EXPS|thread|10", "expected 4")
    expect_error("EXPS|thread|10|0:c:c0|extra", "expected 4")
    expect_error("EXPS|thread|10|0:c:c0,5:f:c1,5:c:c2", "does not follow")
    expect_error("EXPS|thread|10|0:c:c0,7:f:c1,3:c:c2", "does not follow")
    expect_error("EXPS|thread|10|0:c:c0,10:f:c1", "start 10 >= total 10")
    expect_error("EXPS|thread|10|0:c:c0,4:q:c1", "unknown code 'q'")
    expect_error("EXPS|thread|10|3:c:c0", "not 0")
    expect_error("EXPS|thread|10|0:c", "start:code:eip")
    expect_error("EXPS|thread|10|0:c:zz", "eip 'zz'")
    expect_error("EXPS|thread|1O|0:c:c0", "total '1O'")
    expect_error("EXPS|thread|10|", "no runs")
    expect_error("EXPS|a|5|0:c:1\nEXPS|a|5|0:f:1", "second strip named 'a'")
    expect_error("ok\nEXPS|thread|10|0:c:c0,4:q:c1", "log line 2")


def check_rle_and_windows():
    codes = "ccffbxccsshhh--c"
    eips = [0x1000 + k for k in range(len(codes))]
    runs = strips.rle(codes, eips)
    expect(
        runs
        == [
            (0, "c", 0x1000),
            (2, "f", 0x1002),
            (4, "b", 0x1004),
            (5, "x", 0x1005),
            (6, "c", 0x1006),
            (8, "s", 0x1008),
            (10, "h", 0x100A),
            (13, "-", 0x100D),
            (15, "c", 0x100F),
        ],
        f"rle {runs}",
    )
    s = Strip("w", len(codes), runs)
    # round trip: the kernel's line for these runs parses back to the same strip
    line = "EXPS|w|%d|%s" % (len(codes), ",".join(f"{k}:{c}:{e:x}" for k, c, e in runs))
    expect(strips.parse(line)["w"] == s, "EXPS line round trip")
    win = strips.windows(s)
    expect(win == [(2, 6, 0x1002, 0x1006), (10, 13, 0x100A, 0x100D)], f"windows {win}")
    # a neutral run splits a window; a window running to the end has no close
    win = strips.windows(Strip("n", 8, strips.rle("ffsfcbbh", list(range(8)))))
    expect(win == [(0, 2, 0, 2), (3, 4, 3, 4), (5, 8, 5, None)], f"windows split by s {win}")
    expect(strips.windows(Strip("e", 0, [])) == [], "no windows in an empty strip")
    try:
        strips.rle("cq", [1, 2])
        raise CheckFailed("rle took an unknown code")
    except ValueError:
        pass


def check_labels():
    # shapes addr2line -f -C gives for this kernel (binutils 2.40, Rust v0 names)
    cases = [
        (
            "vmfault::mm::fault::vmalloc_fault::<vmfault::mm::pgtable::levels::ThreeLevel, 0>",
            "/work/main/src/mm/fault.rs:211",
            "src/mm/fault.rs:211 (fault::vmalloc_fault)",
        ),
        (
            "<core::option::Option<vmfault::mm::pgtable::PmdSlot>>::ok_or::<vmfault::mm::fault::BadArea>",
            "/root/.rustup/toolchains/nightly-x86_64-unknown-linux-gnu/lib/rustlib/src/rust/library/core/src/"
            "option.rs:1334",
            "core/src/option.rs:1334 (Option::ok_or)",
        ),
        (
            "<vmfault::sched::task::Task as core::ops::drop::Drop>::drop",
            "/work/main/src/sched/task.rs:88 (discriminator 2)",
            "src/sched/task.rs:88 (Task::drop)",
        ),
        (
            "acpi::read_table::<vmfault::arch::x86::acpi::BootMapped, acpi::madt::Madt>",
            "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/acpi-5.2.0/src/lib.rs:421",
            "acpi-5.2.0/src/lib.rs:421 (acpi::read_table)",
        ),
        (
            "vmfault::smp::online::{closure#0}",
            "/work/main/src/smp.rs:7",
            "src/smp.rs:7 (online::{closure#0})",
        ),
        ("vmfault::oops::die::h0123456789abcdef", "/k/oops.rs:3", "oops.rs:3 (oops::die)"),
        ("__divdf3", "??:0", "0xc0100000 (__divdf3)"),
        ("??", "??:0", "0xc0100000"),
    ]
    for function, location, want in cases:
        got = strips.source_label(0xC0100000, function, location)
        expect(got == want, f"source_label({function!r}, {location!r}) = {got!r}, want {want!r}")
    got = strips.addr2line("/nonexistent/vmfault", [0xC0100010, 0xC0100010, 5])
    expect(got == {5: "0x00000005", 0xC0100010: "0xc0100010"}, f"addr2line fallback {got}")
    expect(strips.addr2line("/nonexistent/vmfault", []) == {}, "addr2line of nothing")


def rows_of(doc):
    return doc.findall(f"{NS}g[@class='row']")


def check_svg():
    got = strips.parse(LOG)
    labels = {
        0xC0105678: "src/mm/fault.rs:211 (fault::vmalloc_fault)",
        0xC010000A: "crates/lab/src/race/x.rs:9 (x::b)",
    }
    rows = [("legacy", got["thread"]), ("legacy 2-level <&>", got["cpu2_threads"]), ("none", got["empty"])]
    text = strips.svg("Race windows <thread> & cpu2", rows, labels)
    expect(text == strips.svg("Race windows <thread> & cpu2", rows, labels), "svg is not deterministic")
    try:
        doc = ET.fromstring(text)
    except ET.ParseError as e:
        raise CheckFailed(f"svg is not valid XML: {e}")
    expect(doc.tag == f"{NS}svg", f"root {doc.tag}")
    texts = ["".join(t.itertext()) for t in doc.iter(f"{NS}text")]
    expect("Race windows <thread> & cpu2" in texts, "title missing")
    expect("legacy 2-level <&>" in texts, "row label missing")
    expect("2776 boundaries" in texts and "40 boundaries" in texts, "totals missing")

    svg_rows = rows_of(doc)
    expect(len(svg_rows) == 3, f"{len(svg_rows)} rows")
    for (label, strip), row in zip(rows, svg_rows):
        rects = row.findall(f"{NS}rect[@class='run']")
        expect(len(rects) == len(strip.runs), f"{label}: {len(rects)} run rects for {len(strip.runs)} runs")
        for rect, (start, code, _) in zip(sorted(rects, key=lambda r: int(r.get("data-start"))), strip.runs):
            expect(rect.get("data-code") == code, f"{label}: run at {start} drawn as {rect.get('data-code')}")
            fill = rect.get("fill")
            expect(fill == strips.CODES[code][1], f"{label}: run at {start} fill {fill}")
        frame = row.find(f"{NS}rect[@class='frame']")
        if strip.runs:
            total_w = sum(Decimal(r.get("width")) for r in rects)
            strip_w = Decimal(frame.get("width"))
            expect(total_w == strip_w, f"{label}: run widths sum to {total_w}, not {strip_w}")
            left = min(Decimal(r.get("x")) for r in rects)
            strip_x = Decimal(frame.get("x"))
            expect(left == strip_x, f"{label}: first run at {left}, strip at {strip_x}")

    fills = {r.get("fill") for r in doc.iter(f"{NS}rect") if r.get("class") == "run"}
    for code in "cfbxsh":
        expect(strips.CODES[code][1] in fills, f"colour of {code!r} missing")
    palette = [fill for _, fill in strips.CODES.values()]
    expect(len(set(palette)) == len(palette), "two codes share a colour")

    # ticks: thread has one window (open 21, close 1943); cpu2_threads two,
    # b+x (open 10, close 15) and h running to the end (open 20, no close)
    thread_ticks = svg_rows[0].findall(f"{NS}line")
    got = [t.get("class") for t in thread_ticks]
    expect(got == ["tick open", "tick close"], f"thread ticks {got}")
    cpu2_ticks = svg_rows[1].findall(f"{NS}line")
    got = [t.get("class") for t in cpu2_ticks]
    expect(got == ["tick open", "tick close", "tick open"], f"cpu2_threads ticks {got}")
    expect("21 src/mm/fault.rs:211 (fault::vmalloc_fault)" in texts, "open label missing")
    expect("1943 0xc01099aa" in texts, "hex fallback label missing")
    for want in ("10 crates/lab/src/race/x.rs:9 (x::b)", "15 0xc010000f", "20 0xc0100014"):
        expect(want in texts, f"cpu2 label {want!r} missing")

    legend = doc.find(f"{NS}g[@class='legend']")
    legend_texts = ["".join(t.itertext()) for t in legend.iter(f"{NS}text")]
    want = [strips.CODES[c][0] for c in "cfbxhs"] + ["window opens", "window closes"]
    expect(legend_texts == want, f"legend {legend_texts}, want {want}")
    expect(strips.CODES["-"][0] not in legend_texts, "legend lists an absent code")


def check_narrow_and_crowded():
    # a lone failing boundary among 100000, and ten windows close together
    lone = Strip("lone", 100000, [(0, "c", 0), (50000, "f", 1), (50001, "c", 2)])
    crowd = Strip("crowd", 1000, strips.rle(("c" + "f") * 10 + "c" * 980, list(range(1000))))
    long_label = "crates/lab/src/race/a_rather_long_module_name.rs:1234 (module::function_with_a_long_name)"
    labels = {k: long_label for k in range(1000)}
    doc = ET.fromstring(strips.svg("narrow", [("lone", lone), ("crowd", crowd)], labels))
    lone_row, crowd_row = rows_of(doc)
    failed = [r for r in lone_row.findall(f"{NS}rect[@class='run']") if r.get("data-code") == "f"]
    expect(len(failed) == 1, f"{len(failed)} rects for one failing run")
    expect(float(failed[0].get("width")) >= 0.5, "a lone failing boundary is narrower than 0.5 px")
    # drawn after the clean runs, so it is on top
    expect(lone_row.findall(f"{NS}rect[@class='run']")[-1] is failed[0], "the sliver is under its neighbours")

    spans = []
    for t in crowd_row.findall(f"{NS}text[@class='tick-label']"):
        expect(len(t.text) <= strips.LABEL_CHARS, f"label not cut: {t.text!r}")
        expect(t.text.endswith("..."), f"cut label without ...: {t.text!r}")
        x, w = float(t.get("x")), len(t.text) * strips.SMALL_W
        left = x if t.get("text-anchor") == "start" else x - w
        spans.append((float(t.get("y")), left, left + w))
    expect(len(spans) == 20, f"{len(spans)} labels for 10 windows")
    for i, (y, a, b) in enumerate(spans):
        for y2, c, d in spans[i + 1 :]:
            expect(y != y2 or b < c or d < a, f"labels overlap at y={y}: {a:.0f}-{b:.0f} and {c:.0f}-{d:.0f}")
        expect(a >= 0 and b <= 900, f"label off the picture: {a:.0f}-{b:.0f}")


def check_write():
    got = strips.parse(LOG)
    pictures = {
        "thread": ("thread", [("legacy", got["thread"])]),
        "cpu2": ("cpu2", [("a", got["cpu2_threads"])]),
    }
    with tempfile.TemporaryDirectory() as out:
        paths = strips.write_pictures(os.path.join(out, "pics"), pictures, "/nonexistent/vmfault")
        want = [os.path.join(out, "pics", f"{stem}.svg") for stem in pictures]
        expect(paths == want, f"wrote {paths}, not {want}")
        for path in paths:
            with open(path, encoding="utf-8") as f:
                ET.fromstring(f.read())


CHECKS = [
    check_parse,
    check_rle_and_windows,
    check_labels,
    check_svg,
    check_narrow_and_crowded,
    check_write,
]


def run(check):
    """One check as `make test`'s host checks want it: the list of what
    failed, empty if it held."""
    try:
        check()
    except CheckFailed as e:
        return [str(e)]
    return []


def main():
    checks = CHECKS
    for check in checks:
        try:
            check()
        except CheckFailed as e:
            print(f"strips_check: {check.__name__}: {e}", file=sys.stderr)
            return 1
        print(f"ok {check.__name__}")
    print(f"strips_check: {len(checks)} checks passed")
    return 0

