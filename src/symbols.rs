//! Kernel symbols for oops reports and call traces.  GRUB's multiboot2
//! loader also loads the ELF sections that are not part of the image
//! (`.symtab`, `.strtab`) and reports their physical addresses in the ELF
//! sections tag, so the kernel can name its own code without a second
//! link step (Linux builds kallsyms for the same purpose).

use core::fmt;
use multiboot2::{BootInformation, ElfSectionExt, ElfSectionType};
use spin::Once;

use crate::mm::addr::{__va, MAXMEM};

#[repr(C)]
#[derive(Clone, Copy)]
struct Elf32Sym {
    st_name: u32,
    st_value: u32,
    st_size: u32,
    st_info: u8,
    st_other: u8,
    st_shndx: u16,
}

const STT_FUNC: u8 = 2;

struct Table {
    syms: &'static [Elf32Sym],
    strtab: &'static [u8],
}

static TABLE: Once<Table> = Once::new();

/// Where the loader put `.symtab` and its string table: physical address
/// and size of each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableRanges {
    pub symtab: (u32, u32),
    pub strtab: (u32, u32),
}

/// Find `.symtab` and its string table in the ELF-sections tag, without
/// touching them (the fuzzers call this on made-up tags).
pub fn find_tables(info: &BootInformation) -> Result<TableRanges, &'static str> {
    let tag = info
        .elf_sections_tag()
        .ok_or("no ELF-sections tag from the loader")?;
    let sections: [_; 64] = {
        let mut a = [None; 64];
        for (i, s) in tag.sections().enumerate().take(64) {
            a[i] = Some(s);
        }
        a
    };
    let symtab = sections
        .iter()
        .flatten()
        .find(|s| s.section_type() == ElfSectionType::LinkerSymbolTable)
        .ok_or("no .symtab section")?;
    let Some(Some(strtab)) = sections.get(symtab.sh_link as usize) else {
        return Err(".symtab's sh_link names no section");
    };
    if symtab.sh_addr == 0 || strtab.sh_addr == 0 {
        return Err(".symtab or its string table was not loaded");
    }
    // Read through the direct map for the kernel's whole life: both must
    // lie below MAXMEM (and `__va` of anything at or above 1 GiB would
    // overflow).  The section headers are the loader's word, like the
    // rest of the boot information.
    for s in [symtab, strtab] {
        if s.sh_addr.saturating_add(s.sh_size) > MAXMEM {
            return Err(".symtab or its string table lies outside the direct map");
        }
    }
    Ok(TableRanges {
        symtab: (symtab.sh_addr as u32, symtab.sh_size as u32),
        strtab: (strtab.sh_addr as u32, strtab.sh_size as u32),
    })
}

/// Find `.symtab` and its string table.  Returns the number of symbols,
/// or why there are none.
pub fn init(info: &BootInformation) -> Result<usize, &'static str> {
    let r = find_tables(info)?;
    let n = r.symtab.1 as usize / core::mem::size_of::<Elf32Sym>();
    // SAFETY: GRUB loaded both sections at these physical addresses, inside
    // the direct map, and mm::init reserves them as part of the boot info.
    let t = unsafe {
        Table {
            syms: core::slice::from_raw_parts(__va(r.symtab.0) as *const Elf32Sym, n),
            strtab: core::slice::from_raw_parts(__va(r.strtab.0) as *const u8, r.strtab.1 as usize),
        }
    };
    TABLE.call_once(|| t);
    Ok(n)
}

/// Physical ranges of the symbol and string tables (to keep them out of
/// the frame allocator).
pub fn ranges() -> [(u32, u32); 2] {
    match TABLE.get() {
        Some(t) => [
            (
                crate::mm::addr::__pa(t.syms.as_ptr() as usize),
                core::mem::size_of_val(t.syms) as u32,
            ),
            (
                crate::mm::addr::__pa(t.strtab.as_ptr() as usize),
                t.strtab.len() as u32,
            ),
        ],
        None => [(0, 0); 2],
    }
}

fn name_of(t: &Table, s: &Elf32Sym) -> &'static str {
    let start = s.st_name as usize;
    let bytes = &t.strtab[start.min(t.strtab.len())..];
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    core::str::from_utf8(&bytes[..end]).unwrap_or("?")
}

/// A resolved address: `name+offset/size`, demangled.
#[derive(Clone, Copy)]
pub struct Symbol {
    pub name: &'static str,
    pub addr: u32,
    pub size: u32,
    pub offset: u32,
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "{:#}+{:#x}/{:#x}",
            rustc_demangle::demangle(self.name),
            self.offset,
            self.size
        )
    }
}

/// The function containing `addr`, if the symbol table is loaded.
pub fn lookup(addr: u32) -> Option<Symbol> {
    let t = TABLE.get()?;
    let mut best: Option<&Elf32Sym> = None;
    for s in t.syms {
        if s.st_info & 0xf != STT_FUNC || s.st_value > addr {
            continue;
        }
        let inside = addr < s.st_value.saturating_add(s.st_size.max(1));
        if inside && best.is_none_or(|b| s.st_value >= b.st_value) {
            best = Some(s);
        }
    }
    best.map(|s| Symbol {
        name: name_of(t, s),
        addr: s.st_value,
        size: s.st_size,
        offset: addr - s.st_value,
    })
}

/// `lookup` for a stream of addresses that stays in one function for
/// many in a row (a single-stepped path): the table, a linear scan, is
/// searched again only when an address leaves the last function found.
#[derive(Default)]
pub struct Lookups {
    last: Option<Symbol>,
}

impl Lookups {
    pub fn lookup(&mut self, addr: u32) -> Option<Symbol> {
        if let Some(s) = self
            .last
            .filter(|s| (s.addr..s.addr.saturating_add(s.size.max(1))).contains(&addr))
        {
            return Some(Symbol {
                offset: addr - s.addr,
                ..s
            });
        }
        self.last = lookup(addr);
        self.last
    }
}

/// Address and size of the symbol whose (mangled or demangled, hash-free)
/// name is `name`, e.g. `"vmalloc_fault"` or a full Rust path.
pub fn lookup_name(name: &str) -> Option<(u32, u32)> {
    let t = TABLE.get()?;
    t.syms.iter().find_map(|s| {
        let n = name_of(t, s);
        let mut buf = crate::fixed_buf::FixedBuf::<160>::new();
        let _ = fmt::Write::write_fmt(&mut buf, format_args!("{:#}", rustc_demangle::demangle(n)));
        (n == name || buf.as_str() == name).then_some((s.st_value, s.st_size))
    })
}

pub fn loaded() -> bool {
    TABLE.get().is_some()
}
