"""The kernel's constants, read from the ELF the build produced.

src/host_abi.rs exports each constant the host tools need as a symbol
`VMFAULT_<NAME>`: a little-endian u32, or a list of names (each ended by a
NUL, the list by one more).  This module finds them through the ELF's
section headers and .symtab/.strtab, so no Python file keeps a copy of a
kernel number or text.

  k = elf.constants(kernel)       # cached per file version
  k.page_offset, k.versions, k.bad_area_texts, k.symbol("_start") ...
"""
import functools
import os
import re
import struct
from dataclasses import dataclass

PREFIX = "VMFAULT_"
SHT_SYMTAB, SHT_NOBITS = 2, 8


class ElfError(Exception):
    pass


class Elf32:
    """Just enough of a little-endian ELF32 file: its sections and symbols."""

    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            self.data = f.read()
        d = self.data
        if d[:4] != b"\x7fELF" or d[4] != 1 or d[5] != 1:
            raise ElfError(f"{path}: not a little-endian ELF32 file")
        (_, _, _, _, _, _, shoff, _, _, _, _, shentsize, shnum, _) = struct.unpack_from("<16sHHIIIIIHHHHHH", d, 0)
        self.sections = [struct.unpack_from("<IIIIIIIIII", d, shoff + i * shentsize) for i in range(shnum)]
        self.symbols = {}
        for sec in self.sections:
            if sec[1] != SHT_SYMTAB:
                continue
            strtab = self.sections[sec[6]]
            for off in range(sec[4], sec[4] + sec[5], 16):
                name, value, size, _, _, shndx = struct.unpack_from("<IIIBBH", d, off)
                start = strtab[4] + name
                text = d[start:d.index(b"\0", start)].decode("utf-8", "replace")
                if text:
                    self.symbols.setdefault(text, (value, size, shndx))
        if not self.symbols:
            raise ElfError(f"{path}: no .symtab (a stripped kernel?)")

    def address(self, name):
        try:
            return self.symbols[name][0]
        except KeyError:
            raise ElfError(f"{self.path}: no symbol {name}") from None

    def read(self, name):
        """The bytes of symbol `name` as its section holds them."""
        value, size, shndx = self.symbols.get(name) or (None, None, None)
        if value is None:
            raise ElfError(f"{self.path}: no symbol {name} (a kernel built before src/host_abi.rs?)")
        if not 0 < shndx < len(self.sections) or self.sections[shndx][1] == SHT_NOBITS:
            raise ElfError(f"{self.path}: {name} has no bytes in the file")
        _, _, _, addr, offset, secsize, _, _, _, _ = self.sections[shndx]
        if not (addr <= value and value + size <= addr + secsize):
            raise ElfError(f"{self.path}: {name} lies outside its section")
        start = offset + value - addr
        return self.data[start:start + size]

    def u32(self, name):
        raw = self.read(name)
        if len(raw) != 4:
            raise ElfError(f"{self.path}: {name} is {len(raw)} bytes, not a u32")
        return struct.unpack("<I", raw)[0]

    def names(self, name):
        raw = self.read(name)
        if not raw.endswith(b"\0\0") and raw != b"\0":
            raise ElfError(f"{self.path}: {name} is not a NUL-ended list")
        return tuple(t.decode() for t in raw[:-1].split(b"\0")[:-1])


@dataclass(frozen=True)
class Kernel:
    """What the host tools use of one kernel's constants (src/host_abi.rs)."""
    path: str
    page_offset: int
    page_size: int
    maxmem: int
    vmalloc_end: int
    stack_zone_start: int
    kernel_stack_size: int
    stack_guard_pages: int
    exit_port: int
    exit_success_code: int
    exit_failed_code: int
    versions: tuple
    correct_versions: tuple
    smp_correct_versions: tuple
    default_version: str
    modes: tuple
    default_mode: str
    bad_area_texts: tuple
    soak_ops_default: int
    soak_seed_default: int
    entry: int  # `_start`, the multiboot2 entry, at its physical address
    # Replay scenarios (crates/lab/src/race/replay.rs), their CPU counts and modes.
    bochs_shutdown_port: int
    race_scenarios: tuple
    race_scenario_cpus: tuple
    race_scenario_modes: tuple

    def symbol(self, name):
        return _elf(self.path, *_stamp(self.path)).address(name)


def _stamp(path):
    st = os.stat(path)
    return st.st_mtime_ns, st.st_size


@functools.lru_cache(maxsize=8)
def _elf(path, _mtime, _size):
    return Elf32(path)


@functools.lru_cache(maxsize=8)
def _constants(path, mtime, size):
    e = _elf(path, mtime, size)
    u, n = (lambda s: e.u32(PREFIX + s)), (lambda s: e.names(PREFIX + s))
    # The lab's own exports (crates/lab/src/race/replay.rs): a kernel that
    # links no lab (the panic_exit test kernel) has none.
    lab = lambda s: n(s) if PREFIX + s in e.symbols else ()  # noqa: E731
    return Kernel(
        path=path, page_offset=u("PAGE_OFFSET"), page_size=u("PAGE_SIZE"), maxmem=u("MAXMEM"),
        vmalloc_end=u("VMALLOC_END"), stack_zone_start=u("STACK_ZONE_START"),
        kernel_stack_size=u("KERNEL_STACK_SIZE"), stack_guard_pages=u("STACK_GUARD_PAGES"),
        exit_port=u("QEMU_EXIT_PORT"), exit_success_code=u("QEMU_EXIT_SUCCESS"),
        exit_failed_code=u("QEMU_EXIT_FAILED"), versions=n("VERSION_NAMES"),
        correct_versions=n("CORRECT_VERSIONS"), smp_correct_versions=n("SMP_CORRECT_VERSIONS"),
        default_version=n("VERSION_DEFAULT")[0],
        modes=n("PAGING_NAMES"), default_mode=n("PAGING_DEFAULT")[0], bad_area_texts=n("BAD_AREA_TEXTS"),
        soak_ops_default=u("SOAK_OPS_DEFAULT"), soak_seed_default=u("SOAK_SEED_DEFAULT"),
        entry=e.address("_start"),
        race_scenarios=lab("RACE_SCENARIOS"), race_scenario_cpus=lab("RACE_SCENARIO_CPUS"),
        race_scenario_modes=lab("RACE_SCENARIO_MODES"), bochs_shutdown_port=u("BOCHS_SHUTDOWN_PORT"))


def fault_module(mode, version):
    """The module of src/mm/fault.rs that holds `vmalloc_fault=version`
    compiled for paging `mode`: `legacy_2level`, `eager_lazy_pae`, ..."""
    return f"{version.replace('-', '_')}_{mode}"


def vmalloc_fault_symbol(kernel, mode, version):
    """gdb's name for the booted version's `vmalloc_fault` in paging
    `mode` (a plain function of its version's module, src/mm/fault.rs), or
    None where the kernel has none (5.8's `eager` removed it)."""
    path = os.path.abspath(kernel)
    e = _elf(path, *_stamp(path))
    m = fault_module(mode, version)
    # A v0-mangled path ends `...<len><module>13vmalloc_fault`.
    pattern = re.compile(rf"{len(m)}{m}13vmalloc_fault$")
    if any(s.startswith("_R") and pattern.search(s) for s in e.symbols):
        return f"vmfault::mm::fault::{m}::vmalloc_fault"
    return None


def constants(kernel):
    """The constants of the kernel ELF at `kernel` (re-read when it changes)."""
    path = os.path.abspath(kernel)
    return _constants(path, *_stamp(path))


def main(argv):
    """`python3 -m vmfault_host.elf KERNEL`: print what the tools read."""
    k = constants(argv[1])
    for f in Kernel.__dataclass_fields__:
        v = getattr(k, f)
        print(f"{f:18} {v:#x}" if isinstance(v, int) else f"{f:18} {v}")
    return 0


if __name__ == "__main__":
    import sys
    sys.exit(main(sys.argv))
