# gdb helpers for vmfault, in the spirit of Linux's scripts/gdb.
#
#   (gdb) source tests/host/gdb/vmfault-gdb.py      (`make gdb` does this)
#   (gdb) vm-help
#
# Page tables are read through the direct map: physical P is at virtual
# PAGE_OFFSET + P in every address space (all RAM is mapped there), so the
# helpers work from any task and any CR3.  If that read fails (before
# paging, or a frame outside the direct map) they fall back to QEMU's
# `monitor xp`, which reads physical memory.  The paging mode is what the
# CPU uses now: CR4.PAE picks two-level (32-bit entries) or PAE (64-bit
# PDPTE/PMD/PTE).  Control registers come from QEMU's gdb stub (cr0, cr2,
# cr3, cr4 are in its i386 register set), or from `monitor info registers`.
#
# The kernel's constants (PAGE_OFFSET, the vmalloc and stack-zone bounds,
# the vmalloc_fault= names, the BadArea texts) are read from the ELF gdb
# loaded, by the VMFAULT_* symbols src/host_abi.rs exports: never a copy
# here.  See kconst() and knames().

import re
import struct

import gdb
from gdb.FrameDecorator import FrameDecorator

# The CPU's, not the kernel's: architectural control-register bits.
CR0_PG = 1 << 31
CR4_PSE = 1 << 4
CR4_PAE = 1 << 5

# Statics, as (Rust path with debug info, plain ELF name).  The plain names
# are #[no_mangle] in the kernel so a moved module does not break them.
SYM_SWAPPER = ("vmfault::mm::init::SWAPPER_PG_DIR", "SWAPPER_PG_DIR")
SYM_VMALLOC_START = ("vmfault::mm::vmalloc::VMALLOC_START", "VMALLOC_START")
SYM_FAULTS = ("vmfault::mm::fault_stats::FAULTS", "FAULTS")
SYM_BAD_AREAS = ("vmfault::mm::fault::BAD_AREAS", "BAD_AREAS")
SYM_BY_SLOT = ("vmfault::mm::fault_stats::BY_SLOT", "BY_SLOT")
SYM_BY_PGD = ("vmfault::mm::fault_stats::BY_PGD", "BY_PGD")
SYM_VERSION = ("vmfault::mm::fault::VERSION",)
SYM_LAST_BAD = ("vmfault::mm::fault::LAST_BAD_AREA",)
SYM_EAGER = ("vmfault::mm::sync_kernel_mappings::EAGER_SYNCS",)
SYM_PER_CPU = ("vmfault::arch::x86::percpu::PER_CPU",)
SYM_TASK_TYPE = "vmfault::sched::task::Task"


class VmError(gdb.GdbError):
    pass


# ---------------------------------------------------------------- the kernel's constants

_kconst_cache = {}


def _read_file_bytes(addr, size):
    """`size` bytes at `addr` as the ELF file holds them.  The constants
    live in .rodata, a read-only section: with trust-readonly-sections gdb
    reads them from the file, so they come out right before the target is
    connected, before paging maps the higher half, and from any task."""
    trusted = gdb.parameter("trust-readonly-sections")
    gdb.execute("set trust-readonly-sections on", to_string=True)
    try:
        return bytes(inferior().read_memory(addr, size))
    finally:
        if not trusted:
            gdb.execute("set trust-readonly-sections off", to_string=True)


def _kbytes(name, size=None):
    """The bytes of VMFAULT_<name>; without `size`, a NUL-ended list."""
    key = (name, size)
    if key not in _kconst_cache:
        addr = sym(("VMFAULT_" + name,))[0]
        if size is not None:
            raw = _read_file_bytes(addr, size)
        else:
            # The list's length is in the symbol table, which gdb's API
            # does not show: read on to its final NUL (names are never
            # empty, so the first pair of NULs ends it).
            raw = b""
            while b"\0\0" not in raw and raw != b"\0":
                raw += _read_file_bytes(addr + len(raw), 64)
            raw = raw[:raw.index(b"\0\0") + 2] if b"\0\0" in raw else raw
        _kconst_cache[key] = raw
    return _kconst_cache[key]


def kconst(name):
    """The u32 the kernel exports as VMFAULT_<name> (src/host_abi.rs)."""
    return int.from_bytes(_kbytes(name, 4), "little")


def knames(name):
    """The list of names the kernel exports as VMFAULT_<name>."""
    raw = _kbytes(name)
    return tuple(t.decode() for t in raw[:-1].split(b"\0")[:-1])


# ---------------------------------------------------------------- target access

def inferior():
    return gdb.selected_inferior()


def read_virt(va, size):
    return bytes(inferior().read_memory(va, size))


def _monitor(cmd):
    return gdb.execute("monitor " + cmd, to_string=True)


def read_phys(pa, size):
    """`size` bytes at physical `pa`: through the direct map, else QEMU."""
    if not paging_on():
        return read_virt(pa, size)
    if pa + size <= kconst("MAXMEM"):
        try:
            return read_virt(kconst("PAGE_OFFSET") + pa, size)
        except gdb.MemoryError:
            pass
    words = (size + 3) // 4
    out = _monitor("xp /%dwx 0x%x" % (words, pa))
    vals = []
    for line in out.splitlines():
        if ":" in line:
            vals += [int(x, 16) for x in re.findall(r"0x([0-9a-fA-F]+)", line.split(":", 1)[1])]
    if len(vals) < words:
        raise VmError("cannot read physical 0x%x (%d bytes)" % (pa, size))
    return struct.pack("<%dI" % words, *vals[:words])[:size]


def reg(name):
    """A control or general register as an unsigned 32-bit value."""
    try:
        return int(gdb.selected_frame().read_register(name)) & 0xFFFFFFFF
    except (gdb.error, ValueError):
        pass
    out = _monitor("info registers")
    m = re.search(r"\b%s=([0-9a-fA-F]+)" % name.upper(), out)
    if not m:
        raise VmError("cannot read %s (not in the gdb stub's registers, not in `monitor info registers`)" % name)
    return int(m.group(1), 16) & 0xFFFFFFFF


def paging_on():
    return bool(reg("cr0") & CR0_PG)


def is_pae():
    return bool(reg("cr4") & CR4_PAE)


def cr3_dir():
    return reg("cr3") & ~0x1F


_sym_cache = {}


def _clear_cache(_event=None):
    _sym_cache.clear()
    _kconst_cache.clear()


gdb.events.new_objfile.connect(_clear_cache)


def sym(names):
    """(address, typed gdb.Value or None) of a static, by any of `names`."""
    key = tuple(names)
    if key in _sym_cache:
        return _sym_cache[key]
    for n in names:
        for look in (gdb.lookup_global_symbol, gdb.lookup_static_symbol):
            try:
                s = look(n)
            except gdb.error:
                s = None
            if s is not None and s.is_variable:
                v = s.value()
                _sym_cache[key] = (int(v.address) & 0xFFFFFFFF, v)
                return _sym_cache[key]
    for n in names:
        if "::" in n:
            continue
        try:
            out = gdb.execute("info address %s" % n, to_string=True)
        except gdb.error:
            continue
        m = re.search(r"\bat (?:address )?(0x[0-9a-fA-F]+)", out)
        if m:
            _sym_cache[key] = (int(m.group(1), 16), None)
            return _sym_cache[key]
    raise VmError("symbol %s not found (is the kernel's ELF loaded?)" % " / ".join(names))


def read_u(addr, size=4):
    return int.from_bytes(read_virt(addr, size), "little")


def static_u(names, size=4):
    return read_u(sym(names)[0], size)


def swapper_pg_dir():
    v = static_u(SYM_SWAPPER)
    if v == 0:
        raise VmError("SWAPPER_PG_DIR is 0: paging_init has not run yet")
    return v


# ---------------------------------------------------------------- entries

def flags_str(e):
    """The kernel's own flag string (src/mm/dump.rs flags_str)."""
    names = [(0, "P"), (1, "RW"), (2, "U"), (5, "A"), (6, "D"), (7, "PS"), (8, "G"), (63, "NX")]
    s = " ".join(n for b, n in names if e >> b & 1)
    return s or "-"


def flags_full(e, level, pae):
    """Architectural decode: bit 7 is PS in a directory entry, PAT in a PTE;
    a PDPTE has only P, PWT, PCD."""
    if level == "pdpte":
        bits = [(0, "P"), (3, "PWT"), (4, "PCD")]
    else:
        bits = [(0, "P"), (1, "RW"), (2, "U"), (3, "PWT"), (4, "PCD"), (5, "A"), (6, "D"),
                (7, "PAT" if level == "pte" else "PS"), (8, "G")]
        if pae:
            bits.append((63, "NX"))
    s = " ".join(n for b, n in bits if e >> b & 1)
    return s or "-"


def ent(e, pae):
    return ("%016x" if pae else "%08x") % e


def addr_mask(pae):
    return 0x000FFFFFFFFFF000 if pae else 0xFFFFF000


def walk(va, dir_phys, pae=None):
    """Walk the tables for `va` from the directory at `dir_phys`.
    Returns (levels, phys): levels is a list of (name, index, entry address,
    entry), phys the physical address of `va` or None."""
    if pae is None:
        pae = is_pae()
    levels = []
    mask = addr_mask(pae)
    if pae:
        i = (va >> 30) & 3
        a = dir_phys + i * 8
        e = int.from_bytes(read_phys(a, 8), "little")
        levels.append(("pdpte", i, a, e))
        if not e & 1:
            return levels, None
        j = (va >> 21) & 511
        a = (e & mask) + j * 8
        e = int.from_bytes(read_phys(a, 8), "little")
        levels.append(("pmd", j, a, e))
        if not e & 1:
            return levels, None
        if e & 0x80:
            return levels, ((e & mask) & ~0x1FFFFF) | (va & 0x1FFFFF)
        k = (va >> 12) & 511
        a = (e & mask) + k * 8
        e = int.from_bytes(read_phys(a, 8), "little")
        levels.append(("pte", k, a, e))
    else:
        i = va >> 22
        a = dir_phys + i * 4
        e = int.from_bytes(read_phys(a, 4), "little")
        levels.append(("pgd", i, a, e))
        if not e & 1:
            return levels, None
        if e & 0x80 and reg("cr4") & CR4_PSE:
            return levels, (e & 0xFFC00000) | (va & 0x3FFFFF)
        k = (va >> 12) & 1023
        a = (e & mask) + k * 4
        e = int.from_bytes(read_phys(a, 4), "little")
        levels.append(("pte", k, a, e))
    if not e & 1:
        return levels, None
    return levels, (e & mask) | (va & 0xFFF)


def dump_line(label, dir_phys, levels, phys, pae):
    """The line src/mm/dump.rs print_walk writes for the same walk."""
    parts = ["%s %s [%s]" % (n, ent(e, pae), flags_str(e)) for n, _, _, e in levels]
    tail = "-> phys 0x%x" % phys if phys is not None else "-> not mapped"
    return "  %-8s dir 0x%08x: %s  %s" % (label, dir_phys, "  ".join(parts), tail)


# ---------------------------------------------------------------- arguments

def parse_addr(expr):
    expr = expr.strip()
    if re.fullmatch(r"0[xX][0-9a-fA-F]+|\d+", expr):
        return int(expr, 0) & 0xFFFFFFFF
    try:
        return int(gdb.parse_and_eval(expr)) & 0xFFFFFFFF
    except gdb.error as e:
        raise VmError("cannot evaluate '%s': %s" % (expr, e))


def parse_dir(expr):
    if expr in ("swapper", "swapper_pg_dir", "init_mm"):
        return swapper_pg_dir()
    return parse_addr(expr) & ~0x1F


def dir_label(d):
    try:
        if d == swapper_pg_dir():
            return "init_mm"
    except VmError:
        pass
    if d == cr3_dir():
        return "current"
    return "dir"


# ---------------------------------------------------------------- tasks

def _find_pointer_type(ty, depth=0):
    """The `*mut ArcInner<...>` inside an Option<Arc<...>> type."""
    ty = ty.strip_typedefs()
    if ty.code == gdb.TYPE_CODE_PTR:
        return ty
    if depth > 8 or ty.code not in (gdb.TYPE_CODE_STRUCT, gdb.TYPE_CODE_UNION):
        return None
    for f in ty.fields():
        if f.artificial or f.type is None:
            continue
        t = _find_pointer_type(f.type, depth + 1)
        if t is not None:
            return t
    return None


def _arc_mm(field):
    """(id, pgd) of the MmStruct an Option<Arc<MmStruct>> field holds, or None."""
    raw = read_u(int(field.address))
    if raw == 0:
        return None
    pty = _find_pointer_type(field.type)
    if pty is None:
        raise VmError("cannot find the Arc pointer type in %s" % field.type)
    mm = gdb.Value(raw).cast(pty).dereference()["data"]
    # `pgd` is a `PhysAddr` (src/arch/x86/page.rs), a one-field struct.
    pgd = mm["pgd"]
    if pgd.type.strip_typedefs().code == gdb.TYPE_CODE_STRUCT:
        pgd = pgd[pgd.type.fields()[0]]
    return int(mm["id"]), int(pgd) & 0xFFFFFFFF


def gdb_cpu():
    """The CPU gdb has selected: QEMU's gdbstub shows CPU n as thread n + 1."""
    t = gdb.selected_thread()
    return max(t.num - 1, 0) if t is not None else 0


def current_task():
    """The selected CPU's `current`: its per-CPU word (percpu.rs)."""
    addr, _ = sym(SYM_PER_CPU)
    cpu = gdb_cpu()
    word = read_u(addr + cpu * kconst("PERCPU_SIZE") + kconst("PERCPU_CURRENT_OFFSET"))
    if word == 0:
        raise VmError("CPU %d has no current task: the scheduler is not running there yet" % cpu)
    t = gdb.Value(word).cast(gdb.lookup_type(SYM_TASK_TYPE).pointer()).dereference()
    name = t["name"]
    n = int(name["length"])
    s = read_virt(int(name["data_ptr"]), min(n, 64)).decode("utf-8", "replace")
    return {"ptr": word, "pid": int(t["pid"]), "name": s, "cpu": cpu,
            "mm": _arc_mm(t["mm"]), "active_mm": _arc_mm(t["active_mm"])}


# ---------------------------------------------------------------- commands

class VmCommand(gdb.Command):
    def __init__(self, name):
        super().__init__(name, gdb.COMMAND_USER)

    def invoke(self, arg, from_tty):
        try:
            self.run(gdb.string_to_argv(arg))
        except VmError:
            raise
        except gdb.MemoryError as e:
            raise VmError("%s: %s" % (self._name, e))

    def run(self, argv):
        raise NotImplementedError


class VmWalk(VmCommand):
    """Walk the page tables for ADDR: vm-walk ADDR [DIR]

DIR is the physical address of a page directory (PAE: a PDPT), `init_mm`
(swapper_pg_dir), or an expression; default: CR3.  The mode (two-level or
PAE) is the CPU's own, from CR4.PAE.  Each level's entry is printed with
its index, physical address and decoded flags; the last line has exactly
the shape of the kernel's `translation of` dump (src/mm/dump.rs), so it can
be compared with the serial log.  ADDR and DIR may be expressions
(`address`, `$cr2`, `$vm_static` after `vm-static vmfault_lab::demo::ADDR`)."""

    _name = "vm-walk"

    def __init__(self):
        super().__init__("vm-walk")

    def run(self, argv):
        if not argv or len(argv) > 2:
            raise VmError("usage: vm-walk ADDR [DIR|init_mm]")
        if not paging_on():
            raise VmError("paging is off (CR0.PG=0): virtual = physical")
        va = parse_addr(argv[0])
        pae = is_pae()
        d = parse_dir(argv[1]) if len(argv) > 1 else cr3_dir()
        src = "given" if len(argv) > 1 else "CR3"
        levels, phys = walk(va, d, pae)
        print("vm-walk 0x%08x: %s (CR4.PAE=%d), dir 0x%08x (%s)" % (
            va, "PAE" if pae else "two-level", int(pae), d, src))
        for name, idx, a, e in levels:
            where = ""
            if e & 1:
                if name == "pte" or e & 0x80 and name != "pdpte":
                    where = "  page 0x%x" % (e & addr_mask(pae))
                else:
                    where = "  -> table 0x%x" % (e & addr_mask(pae))
            print("  %-5s [%3d] at phys 0x%08x: %s [%s]%s%s" % (
                name, idx, a, ent(e, pae), flags_full(e, name, pae),
                "" if e & 1 else "  not present", where))
        print(dump_line(dir_label(d), d, levels, phys, pae))


class VmSync(VmCommand):
    """Compare the kernel entries for ADDR with swapper_pg_dir: vm-sync ADDR

Shows the PGD entry (PAE: the PDPTE and the PMD entry) covering ADDR in the
current directory (CR3) next to swapper_pg_dir's (init_mm), then a verdict:
`in sync`, `missing` (absent here, present in init_mm: a vmalloc fault
copies it), `differs`, or `absent in swapper_pg_dir` (nothing to copy: a
fault there is a real oops).  In two-level mode the pmd is folded into the
pgd, so the PGD entry is the one `set_pgd`/`set_pmd` write."""

    _name = "vm-sync"

    def __init__(self):
        super().__init__("vm-sync")

    def run(self, argv):
        if len(argv) != 1:
            raise VmError("usage: vm-sync ADDR")
        va = parse_addr(argv[0])
        pae = is_pae()
        cur, ref = cr3_dir(), swapper_pg_dir()
        if pae:
            lo = va & ~0x1FFFFF
            print("vm-sync 0x%08x: PAE, pdpte %d, pmd %d (covers 0x%08x-0x%08x)" % (
                va, va >> 30, (va >> 21) & 511, lo, lo + 0x1FFFFF))
        else:
            lo = va & ~0x3FFFFF
            print("vm-sync 0x%08x: two-level, pgd %d (covers 0x%08x-0x%08x; the pmd is folded into it)" % (
                va, va >> 22, lo, lo + 0x3FFFFF))
        rows = []
        for label, d in (("current", cur), ("init_mm", ref)):
            levels, _ = walk(va, d, pae)
            levels = [lv for lv in levels if lv[0] != "pte"]
            rows.append(levels)
            print("  %-8s dir 0x%08x: %s" % (label, d, "  ".join(
                "%s %s [%s]" % (n, ent(e, pae), flags_str(e)) for n, _, _, e in levels)))
        here = [e for _, _, _, e in rows[0]]
        there = [e for _, _, _, e in rows[1]]
        if va < kconst("PAGE_OFFSET"):
            print("  note: a user address; vmalloc_fault only handles kernel addresses")
        else:
            try:
                vs, ve = static_u(SYM_VMALLOC_START), kconst("VMALLOC_END")
                if not vs <= va < ve:
                    print("  note: outside the vmalloc area 0x%08x-0x%08x" % (vs, ve))
            except VmError:
                pass
        if not there or not there[-1] & 1:
            print("  verdict: absent in swapper_pg_dir: nothing to copy; a fault here is an oops (no_context)")
        elif here == there:
            shared = " (the kernel PMD page is shared by every mm)" if pae else ""
            print("  verdict: in sync: same entries as swapper_pg_dir%s; no vmalloc fault needed" % shared)
        elif not here[-1] & 1:
            print("  verdict: missing here, present in swapper_pg_dir: a vmalloc fault copies it (%s)" % (
                "set_pmd" if pae else "set_pgd/set_pmd, the same folded slot"))
            if not pae:
                print("  (vmalloc_fault=sync and legacy copy it; cli oopses: pgd_present() is 1 in two-level mode)")
        else:
            print("  verdict: differs from swapper_pg_dir (a stale entry: vmalloc_fault=sync would overwrite it)")


def _mapped_runs(ref, start, end, pae):
    """Runs [a, b) of pages mapped in the directory `ref` between start and
    end, read a table page at a time."""
    runs = []
    cur = None
    mask = addr_mask(pae)
    page_size = kconst("PAGE_SIZE")

    def page(va, present):
        nonlocal cur
        if present:
            if cur is None:
                cur = [va, va + page_size]
            else:
                cur[1] = va + page_size
        elif cur is not None:
            runs.append(tuple(cur))
            cur = None

    def ptes(table, base, n, esize):
        raw = read_phys(table, n * esize)
        fmt = "<%d%s" % (n, "Q" if esize == 8 else "I")
        for i, e in enumerate(struct.unpack(fmt, raw)):
            va = base + i * page_size
            if start <= va < end:
                page(va, e & 1)

    def directory_entry(e, va, span, n, esize):
        """A PDE (two-level) or PMD entry (PAE) covering [va, va + span)."""
        if not e & 1:
            page(max(va, start), False)
        elif e & 0x80:
            for p in range(max(va, start), min(va + span, end), page_size):
                page(p, True)
        else:
            ptes(e & mask, va, n, esize)

    if pae:
        span = 1 << 21
        pdpt = struct.unpack("<4Q", read_phys(ref, 32))
        va = start & ~(span - 1)
        pmds = {}
        while va < end:
            pd = pdpt[va >> 30]
            if not pd & 1:
                page(va, False)
            else:
                base = pd & mask
                if base not in pmds:
                    pmds[base] = struct.unpack("<512Q", read_phys(base, 4096))
                directory_entry(pmds[base][(va >> 21) & 511], va, span, 512, 8)
            va += span
    else:
        span = 1 << 22
        pgd = struct.unpack("<1024I", read_phys(ref, 4096))
        va = start & ~(span - 1)
        while va < end:
            directory_entry(pgd[va >> 22], va, span, 1024, 4)
            va += span
    if cur is not None:
        runs.append(tuple(cur))
    return runs


class VmAreas(VmCommand):
    """List the live vmalloc areas: vm-areas

Derived from swapper_pg_dir, not from the kernel's area tree (a Rust
BTreeMap behind a spin Mutex, impractical to walk from gdb): each run of
mapped pages in [VMALLOC_START, VMALLOC_END) is one area, and the unmapped
guard page after it is counted in its size, as vmallocinfo does (a thread
stack, in the zone at the top, also has the guard page below it).  So the
lines read like the kernel's `vmallocinfo` lines (without the caller).
An area being populated or torn down right now may show partially."""

    _name = "vm-areas"

    def __init__(self):
        super().__init__("vm-areas")

    def run(self, argv):
        pae = is_pae()
        ref = swapper_pg_dir()
        start = static_u(SYM_VMALLOC_START)
        if start == 0:
            raise VmError("VMALLOC_START is 0: vmalloc is not initialised yet")
        end, page_size = kconst("VMALLOC_END"), kconst("PAGE_SIZE")
        runs = _mapped_runs(ref, start, end, pae)
        print("vm-areas: %d areas in 0x%08x-0x%08x (from swapper_pg_dir's mapped runs + guard page)" % (
            len(runs), start, end))
        for a, b in runs:
            levels, _ = walk(a, ref, pae)
            e = levels[-1][3]
            pages = (b - a) // page_size
            if a >= kconst("STACK_ZONE_START"):
                # A thread stack: its area begins with the guard page below.
                a -= page_size
            size = b - a + page_size
            print("0x%08x-0x%08x %8d pages=%d [%s]" % (a, a + size, size, pages, flags_str(e)))


class VmFaults(VmCommand):
    """Show the vmalloc fault counters of src/mm/fault.rs: vm-faults

Prints what the kernel's show_stats prints (lazy syncs, bad areas, eager
syncs, faults per 4 MiB slot and per page directory), plus the version
chosen by vmalloc_fault= and the reason of the last bad_area."""

    _name = "vm-faults"

    def __init__(self):
        super().__init__("vm-faults")

    def run(self, argv):
        try:
            ver = knames("VERSION_NAMES")[static_u(SYM_VERSION, 1)]
        except (VmError, IndexError):
            ver = "?"
        try:
            eager = static_u(SYM_EAGER)
        except VmError:
            eager = "?"
        print("vmalloc_fault=%s: %d lazy syncs, %d bad areas, %s eager syncs" % (
            ver, static_u(SYM_FAULTS), static_u(SYM_BAD_AREAS), eager))
        slots_addr, slots_val = sym(SYM_BY_SLOT)
        page_offset = kconst("PAGE_OFFSET")
        # Without debug info: one counter per 4 MiB slot above PAGE_OFFSET.
        n = int(slots_val.type.sizeof // 4) if slots_val is not None else ((1 << 32) - page_offset) >> 22
        for i, c in enumerate(struct.unpack("<%dI" % n, read_virt(slots_addr, 4 * n))):
            if c:
                print("  slot 0x%08x: %d faults" % (page_offset + (i << 22), c))
        # BY_PGD is either one counter per directory frame (index = pgd >> 12)
        # or (pgd, count) pairs; the debug info says which.
        pgd_addr, pgd_val = sym(SYM_BY_PGD)
        elem = pgd_val.type.strip_typedefs().target() if pgd_val is not None else None
        if elem is None or elem.sizeof == 4:
            total = pgd_val.type.sizeof if pgd_val is not None else kconst("MAXMEM") >> 12 << 2
            raw = read_virt(pgd_addr, total)
            for i, c in enumerate(struct.unpack("<%dI" % (total // 4), raw)):
                if c:
                    print("  pgd 0x%08x: %d faults" % (i << 12, c))
        else:
            n, esz = pgd_val.type.sizeof // elem.sizeof, elem.sizeof
            offs = [f.bitpos // 8 for f in elem.fields()]
            raw = read_virt(pgd_addr, n * esz)
            for i in range(n):
                p = int.from_bytes(raw[i * esz + offs[0]:i * esz + offs[0] + 4], "little")
                c = int.from_bytes(raw[i * esz + offs[1]:i * esz + offs[1] + 4], "little")
                if p and c:
                    print("  pgd 0x%08x: %d faults" % (p, c))
        try:
            last = static_u(SYM_LAST_BAD, 1)
            texts = knames("BAD_AREA_TEXTS")
            print("  last bad_area: %s" % (texts[last] if last < len(texts) else last))
        except VmError:
            pass


class VmMm(VmCommand):
    """Show the current task and its address space: vm-mm

current (pid, name), its own mm and its active_mm (mm id and pgd), CR3,
and swapper_pg_dir.  CR3 differs from active_mm's pgd inside the
switch_mm/switch_to window of schedule(), which is why 2.4.5-pre1's
vmalloc_fault reads CR3 instead of tsk->active_mm."""

    _name = "vm-mm"

    def __init__(self):
        super().__init__("vm-mm")

    def run(self, argv):
        cr3 = cr3_dir()
        pae = is_pae()
        print("paging: %s (CR0.PG=%d, CR4.PAE=%d), CR3 0x%08x, swapper_pg_dir 0x%08x" % (
            "PAE" if pae else "two-level", int(paging_on()), int(pae), cr3, static_u(SYM_SWAPPER)))
        t = current_task()
        own = "mm %d (pgd 0x%08x)" % t["mm"] if t["mm"] else "none (kernel thread, borrows active_mm)"
        print('current: pid %d "%s" (task 0x%08x, CPU %d), mm: %s' % (t["pid"], t["name"], t["ptr"], t["cpu"], own))
        am = t["active_mm"]
        if am is None:
            print("active_mm: none set (reads as init_mm)")
            am = (0, static_u(SYM_SWAPPER))
        else:
            print("active_mm: mm %d, pgd 0x%08x%s" % (am[0], am[1], " (init_mm)" if am[0] == 0 else ""))
        if am[1] == cr3:
            print("CR3 0x%08x = active_mm's pgd" % cr3)
        else:
            print("CR3 0x%08x != active_mm's pgd 0x%08x (inside a switch_mm/switch_to window?)" % (cr3, am[1]))


class VmEarlyBreak(VmCommand):
    """Hardware breakpoint for code that runs before paging: vm-early-break [SYMBOL|ADDR]

Default `_start` (the multiboot2 entry, at its physical address).  The .boot
section (_start, paging_switch) is linked at its physical address, so the
breakpoint goes there; an `hbreak` is used because the CPU runs with
paging off or through the boot page directory at that point."""

    _name = "vm-early-break"

    def __init__(self):
        super().__init__("vm-early-break")

    def run(self, argv):
        what = argv[0] if argv else "_start"
        if re.fullmatch(r"0[xX][0-9a-fA-F]+|\d+", what):
            a = int(what, 0)
        else:
            try:
                out = gdb.execute("info address %s" % what, to_string=True)
            except gdb.error as e:
                raise VmError(str(e))
            m = re.search(r"\bat (?:address )?(0x[0-9a-fA-F]+)", out)
            if not m:
                raise VmError("no address for %s: %s" % (what, out.strip()))
            a = int(m.group(1), 16)
        if a >= kconst("PAGE_OFFSET"):
            raise VmError("0x%08x is a higher-half address: that code runs with paging on; use `break %s`" % (a, what))
        gdb.execute("hbreak *0x%x" % a)


class VmHelp(VmCommand):
    """List the vmfault helper commands: vm-help"""

    _name = "vm-help"

    def __init__(self):
        super().__init__("vm-help")

    def run(self, argv):
        print("""vmfault gdb helpers (tests/host/gdb/vmfault-gdb.py); `help CMD` for details:
  vm-walk ADDR [DIR|init_mm]  walk the page tables for ADDR (CR3 or DIR), PAE or two-level
  vm-sync ADDR                this mm's PGD (PAE: PDPTE+PMD) entry for ADDR vs swapper_pg_dir's
  vm-areas                    live vmalloc areas (from swapper_pg_dir's mapped runs)
  vm-faults                   vmalloc fault counters (lazy syncs, bad areas, per slot/pgd)
  vm-mm                       current task, its mm/active_mm pgd, CR3
  vm-early-break [SYM|ADDR]   hbreak at a physical address (default _start)
  $vm_swapper_pg_dir()        physical address of swapper_pg_dir
  vm-static NAME [SIZE]       a static's value, into $vm_static (e.g. vmfault_lab::demo::ADDR, FAULTS)
  vm-frame [N]                the trap frame nearest the selected frame (or frame N): vector, EIP, registers
  vm-race                     a replay's state (make gdb RACE=): boundary k of n, who comes in, entries
  $cr0 $cr2 $cr3 $cr4         control registers (QEMU's gdb stub)""")


class VmSwapperFn(gdb.Function):
    """$vm_swapper_pg_dir(): physical address of swapper_pg_dir."""

    def __init__(self):
        super().__init__("vm_swapper_pg_dir")

    def invoke(self):
        return gdb.Value(swapper_pg_dir())


class VmStatic(VmCommand):
    """Print a kernel static as an unsigned integer: vm-static NAME [SIZE]

NAME is a Rust path (`vmfault_lab::demo::ADDR`) or a plain #[no_mangle] name
(`FAULTS`, `SWAPPER_PG_DIR`); SIZE in bytes (1, 2, 4 or 8; default 4).
Handy for atomics, which gdb prints as nested structs.  The value is also
left in the convenience variable $vm_static."""

    _name = "vm-static"

    def __init__(self):
        super().__init__("vm-static")

    def run(self, argv):
        if len(argv) not in (1, 2):
            raise VmError("usage: vm-static NAME [SIZE]")
        size = int(argv[1], 0) if len(argv) > 1 else 4
        v = static_u((argv[0],), size)
        gdb.set_convenience_variable("vm_static", v)
        print("%s = 0x%x (%d)" % (argv[0], v, v))


# ---------------------------------------------------------------- trap frames

TRAP_FRAME_TYPE = "vmfault::arch::x86::entry::TrapFrame"


def _trap_frame_of(frame):
    """The TrapFrame a `<signal handler called>` frame (an entry stub, by
    its CFI signal-frame augmentation) saved: just below the interrupted
    code's stack pointer, which is that frame's CFA."""
    older = frame.older()
    if older is None:
        return None
    sp = int(older.read_register("esp")) & 0xFFFFFFFF
    ty = gdb.lookup_type(TRAP_FRAME_TYPE)
    return gdb.Value(sp - ty.sizeof).cast(ty.pointer()).dereference(), sp - ty.sizeof


class VmFrame(VmCommand):
    """Show the trap frame nearest the selected frame: vm-frame [N]

Walks from the selected frame (or frame N) to the next entry stub, which
gdb shows as `<signal handler called>` (the stubs' unwind information
marks them as signal frames, src/arch/x86/entry.rs), and prints the
TrapFrame it saved: vector and error code, the interrupted EIP (with its
symbol) and EFLAGS, the registers.  `up`/`frame N` past that line is the
interrupted code itself."""

    _name = "vm-frame"

    def __init__(self):
        super().__init__("vm-frame")

    def run(self, argv):
        f = gdb.selected_frame()
        if argv:
            f = gdb.newest_frame()
            for _ in range(int(argv[0])):
                f = f.older()
        level = 0
        g = gdb.newest_frame()
        while g is not None and g != f:
            g, level = g.older(), level + 1
        while f is not None and f.type() != gdb.SIGTRAMP_FRAME:
            f, level = f.older(), level + 1
        if f is None:
            raise VmError("no trap frame between the selected frame and the bottom of the stack")
        tf, at = _trap_frame_of(f)
        vec = int(tf["vector"])
        eip = int(tf["eip"]) & 0xFFFFFFFF
        print("trap frame at 0x%08x (frame #%d): vector %d, error code 0x%x" % (
            at, level, vec, int(tf["error_code"])))
        print("  interrupted at 0x%08x %s, EFLAGS 0x%08x (IF=%d TF=%d)" % (
            eip, _where(eip), int(tf["eflags"]),
            int(tf["eflags"]) >> 9 & 1, int(tf["eflags"]) >> 8 & 1))
        print("  eax %08x ebx %08x ecx %08x edx %08x esi %08x edi %08x ebp %08x" % tuple(
            int(tf[r]) & 0xFFFFFFFF for r in ("eax", "ebx", "ecx", "edx", "esi", "edi", "ebp")))
        print("  `frame %d` is the interrupted code" % (level + 1))


class _TrapFrameDecorator(FrameDecorator):
    """A `<signal handler called>` frame named for what it is: the entry
    stub and the vector (trap_stubs' 16-byte stubs give it), or the #PF
    entry path."""

    def function(self):
        f = self.inferior_frame()
        if f.type() != gdb.SIGTRAMP_FRAME:
            return super().function()
        pc = int(f.pc()) & 0xFFFFFFFF
        where = _where(pc)
        m = re.match(r"trap_stubs \+ (\d+)", where)
        if m:
            return "trap_stubs [vector %#x entry]" % (int(m.group(1)) // 16)
        name = where.split(" ")[0]
        if name.startswith("page_fault_") or name == "error_code":
            return "%s [#PF entry: the CPU's trap frame]" % name
        if name in ("alltraps", "trapret", "trapret_iret"):
            return "%s [trap frame]" % name
        return "%s [trap frame]" % name


class _TrapFrameFilter:
    def __init__(self):
        self.name, self.priority, self.enabled = "vmfault-trap-frames", 100, True
        gdb.frame_filters[self.name] = self

    def filter(self, frames):
        return map(_TrapFrameDecorator, frames)


# ---------------------------------------------------------------- replays (make gdb RACE=)

SYM_RACE = ("vmfault_lab::race::narrate::RACE_REPLAY", "RACE_REPLAY")
RACE_TYPE = "vmfault_lab::race::narrate::ReplayState"
WHO = {
    1: "a nested interrupt: a self-IPI, pending now, taken before the next instruction",
    2: "CPU 1's whole access, while CPU 0 waits at this boundary (in its #DB handler)",
    3: "a preemption: a self-IPI, pending now; its interrupt exit switches to B",
    4: "CPU 1 reads the entry, while CPU 0 waits at this boundary (in its #DB handler)",
}


def race_state():
    """RACE_REPLAY's fields, read through the layout the kernel's DWARF
    gives (no offsets kept here)."""
    addr = sym(SYM_RACE)[0]
    ty = gdb.lookup_type(RACE_TYPE)
    out = {}
    for f in ty.fields():
        off, size = f.bitpos // 8, f.type.sizeof
        raw = read_virt(addr + off, size)
        if f.type.strip_typedefs().code == gdb.TYPE_CODE_ARRAY:
            elem = f.type.strip_typedefs().target()
            if elem.strip_typedefs().code == gdb.TYPE_CODE_ARRAY:  # [[u8; 16]; 3]
                n = elem.sizeof
                out[f.name] = [raw[i:i + n].split(b"\0")[0].decode("utf-8", "replace")
                               for i in range(0, size, n)]
            elif elem.sizeof == 1:
                out[f.name] = raw.split(b"\0")[0].decode("utf-8", "replace")
            else:
                out[f.name] = list(struct.unpack("<%dI" % (size // 4), raw))
        else:
            out[f.name] = int.from_bytes(raw, "little")
    return out


def code_address(name):
    """The address of an assembly label (a symbol without debug info)."""
    out = gdb.execute("info address %s" % name, to_string=True)
    m = re.search(r"\bat (?:address )?(0x[0-9a-fA-F]+)", out)
    if not m:
        raise VmError("no address for %s: %s" % (name, out.strip()))
    return int(m.group(1), 16)


def _where(a):
    try:
        out = gdb.execute("info symbol 0x%x" % a, to_string=True)
    except gdb.error:
        return "?"
    # `set trace-commands on` echoes the command itself, `+`-prefixed.
    lines = [l for l in out.splitlines() if l.strip() and not l.startswith("+")]
    return lines[-1].strip().replace(" in section .text", "") if lines else "?"


def _line(a):
    sal = gdb.find_pc_line(a)
    return "%s:%d" % (sal.symtab.filename, sal.line) if sal.symtab else "?"


def _debug_registers():
    out = _monitor("info registers")
    return {k: int(v, 16) for k, v in re.findall(r"\b(DR[0-7])=([0-9a-fA-F]+)", out)}


class VmRace(VmCommand):
    """Where a replay stands: vm-race

The handle, the scenario's boundary k of n, the instruction at the
boundary, who comes in next and where its first instruction is, the
entries of the run's addresses in every address space it involves, and
what the explorer left in the debug registers."""

    _name = "vm-race"

    def __init__(self):
        super().__init__("vm-race")

    def run(self, argv):
        st = race_state()
        if not st["active"]:
            raise VmError("no replay is running (boot with `make gdb RACE=HANDLE`)")
        print("replay %s: boundary %d of %d%s" % (st["handle"], st["k"], st["n"],
                                                  "" if st["at_boundary"] else " (not reached yet)"))
        if st["eip"]:
            print("  the boundary: before the instruction at 0x%08x %s (%s)" % (
                st["eip"], _where(st["eip"]), _line(st["eip"])))
        print("  who comes in next: %s" % WHO.get(st["who"], "?"))
        print("  it starts at 0x%08x %s; the stepped path is over at 0x%08x %s" % (
            st["party_pc"], _where(st["party_pc"]), st["end_pc"], _where(st["end_pc"])))
        pae = is_pae()
        for a in [a for a in st["addrs"] if a]:
            print("  translation of 0x%08x:" % a)
            for label, d in zip(st["labels"], st["dirs"]):
                if d:
                    levels, phys = walk(a, d, pae)
                    print("  " + dump_line(label, d, levels, phys, pae))
        try:
            dr = _debug_registers()
        except gdb.error:
            dr = {}
        if dr:
            on = [i for i in range(4) if dr.get("DR7", 0) >> (2 * i) & 3]
            shown = ", ".join("DR%d 0x%08x %s" % (i, dr["DR%d" % i], _where(dr["DR%d" % i])) for i in on)
            print("  debug registers the explorer left armed: %s" % (shown or "none"))
            if 2 in on:
                print("    (DR2 on the #PF entry counts faults for the fault-loop check, and in the two-level")
                print("     nesting it sends the second interrupt; QEMU 7.2 skips guest breakpoints while gdb")
                print("     single-steps, so `continue` across a #PF entry rather than `stepi` into it)")


class VmRacePark(VmCommand):
    """(make gdb RACE= runs this) From race_boundary_reached to the boundary.

One CPU: the #DB handler returns (a temporary breakpoint on its `iret`,
one `stepi` over it), leaving the CPU at the boundary's instruction with
the other party's interrupt pending.  Two CPUs: CPU 0 stays in its #DB
handler while CPU 1 runs, so the frame selected is the interrupted one
(the boundary).  Then QEMU's single-step is set to let interrupts in but
keep timers still (Qqemu.sstep=0x5), and breakpoints go where the other
party starts, on the oops path and where the stepped path is over."""

    _name = "vm-race-park"

    def __init__(self):
        super().__init__("vm-race-park")

    def run(self, argv):
        st = race_state()
        if not st["at_boundary"]:
            raise VmError("the replay is not at its boundary (stopped elsewhere?)")
        for b in list(gdb.breakpoints() or []):
            if b.location in ("race_boundary_reached", "*race_boundary_reached"):
                b.delete()
        eip = st["eip"]
        one_cpu = st["who"] in (1, 3)
        on_dr2 = False
        if one_cpu:
            gdb.execute("tbreak *0x%x" % code_address("trapret_iret"), to_string=True)
            gdb.execute("continue", to_string=True)
            dr = _debug_registers()
            # QEMU 7.2 raises the guest's #DB when gdb's single-step lands on
            # an address a guest breakpoint watches, RF or not: at a
            # boundary where the explorer's DR2 sits (the #PF entry's first
            # instruction) stay on the iret that returns there.
            on_dr2 = any(dr.get("DR7", 0) >> (2 * i) & 3 and dr.get("DR%d" % i) == eip for i in range(4))
            if not on_dr2:
                gdb.execute("stepi", to_string=True)
                pc = int(gdb.parse_and_eval("$pc")) & 0xFFFFFFFF
                if pc != eip:
                    raise VmError("after the #DB handler's iret the CPU is at 0x%08x, not the boundary 0x%08x"
                                  % (pc, eip))
        else:
            f, n = gdb.newest_frame(), 0
            while f is not None and (int(f.pc()) & 0xFFFFFFFF) != eip:
                f, n = f.older(), n + 1
            if f is None:
                raise VmError("no frame at the boundary 0x%08x on this CPU's stack" % eip)
            gdb.execute("frame %d" % n, to_string=True)
        gdb.execute("maint packet Qqemu.sstep=0x5", to_string=True)
        made = []
        for loc, why in (("*0x%x" % st["party_pc"], "where the other party starts"),
                         ("vmfault::mm::fault::bad_area_nosemaphore", "the oops path (page fault)"),
                         ("vmfault::arch::x86::traps::die", "the oops path (other exceptions)")):
            bp = gdb.Breakpoint(loc, internal=False)
            made.append((bp.number, why))
        end = "*0x%x" % st["end_pc"]
        bp = gdb.Breakpoint(end)
        if st["end_sp"]:
            bp.condition = "$esp == 0x%x" % st["end_sp"]
        made.append((bp.number, "where the stepped path is over (no oops)"))
        bp = gdb.Breakpoint("race_run_over")
        made.append((bp.number, "the replay's end (its verdict is printed next)"))
        print("[vmfault] replay %s: stopped at boundary %d of %d, before the other party comes in" % (
            st["handle"], st["k"], st["n"]))
        gdb.execute("vm-race")
        print("[vmfault] breakpoints: " + "; ".join("%d %s" % m for m in made))
        if one_cpu and on_dr2:
            print("[vmfault] the boundary's instruction is where the explorer's DR2 watches the #PF entry: the CPU")
            print("          stands on the #DB handler's iret that returns there, and the interrupt is taken")
            print("          right after it.  QEMU 7.2 raises the guest's #DB when gdb single-steps onto a")
            print("          watched address, so `continue` (to where the interrupt starts), not `stepi`, here.")
        elif one_cpu:
            print("[vmfault] `stepi` shows the interrupt arrive; `continue` runs to where it starts, then to")
            print("          the oops or the clean return.  `bt` crosses every trap frame; `vm-frame` shows one.")
        else:
            print("[vmfault] CPU 0 (thread 1) waits here in its #DB handler; frame %d is the boundary." % n)
            print("          `info threads`, `thread 2` + `bt`: CPU 1 waits for its go; `continue` runs to")
            print("          its access, then to the oops or the clean return.")


for _c in (VmWalk, VmSync, VmAreas, VmFaults, VmMm, VmEarlyBreak, VmHelp, VmSwapperFn, VmStatic,
           VmFrame, VmRace, VmRacePark):
    _c()
_TrapFrameFilter()
