//! The multiboot2 boot information, read with the `multiboot2` crate:
//! memory map, command line, boot loader name.  Loading is separated from
//! printing, and takes the block's address and how many bytes are
//! readable there, so the tests (`ktest/suites/boot.rs`, the fuzzers in
//! `ktest/suites/fuzz.rs`) feed malformed blocks to the very functions
//! the boot runs.

use core::fmt::{self, Write};

use multiboot2::{BootInformation, BootInformationHeader, LoadError, MemoryAreaType, StringError};
use multiboot2_common::MemoryError;

use crate::mm::addr::__va;

/// What the loader must leave in EAX (multiboot2 spec 3.3).
pub const MULTIBOOT2_BOOTLOADER_MAGIC: u32 = 0x36d7_6289;

/// The first GiB the boot page directory maps: the block must lie inside it.
pub use crate::arch::x86::page::BOOT_MAPPED;

/// Why the boot information could not be used.
#[derive(Debug)]
pub enum BootInfoError {
    BadMagic(u32),
    Misaligned(usize),
    /// The block's physical address is outside what the boot maps.
    OutsideBootMapping(u32),
    /// Fewer bytes are mapped than the 8-byte header.
    Unreadable(usize),
    /// The header claims more bytes than are mapped behind it.
    TooLarge {
        total_size: u32,
        readable: usize,
    },
    Load(LoadError),
    /// A tag the kernel reads is malformed: a field of it has `value`
    /// where the specification wants `expected`.
    BadTag {
        typ: u32,
        size: u32,
        field: &'static str,
        value: u64,
        expected: &'static str,
    },
    /// A memory map entry whose end does not fit 64 bits.
    BadMemoryArea {
        index: usize,
        base: u64,
        length: u64,
    },
    NoMemoryMap,
    /// The command-line tag is not a NUL-terminated UTF-8 string.
    BadCmdline(StringError),
}

impl fmt::Display for BootInfoError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            BootInfoError::BadMagic(m) => write!(
                f,
                "bad boot magic {:#010x} (expected {:#010x}): not booted by a multiboot2 loader",
                m, MULTIBOOT2_BOOTLOADER_MAGIC
            ),
            BootInfoError::Misaligned(a) => {
                write!(f, "boot information at {:#x} is not 8-byte aligned", a)
            }
            BootInfoError::OutsideBootMapping(p) => write!(
                f,
                "boot information at physical {:#010x} is outside the first {} MiB the boot maps",
                p,
                BOOT_MAPPED >> 20
            ),
            BootInfoError::Unreadable(n) => write!(
                f,
                "only {} bytes of boot information are mapped, less than its 8-byte header",
                n
            ),
            BootInfoError::TooLarge {
                total_size,
                readable,
            } => write!(
                f,
                "boot information claims total_size {} bytes but only {} are mapped",
                total_size, readable
            ),
            BootInfoError::Load(LoadError::Memory(e)) => {
                write!(f, "malformed boot information: ")?;
                match e {
                    MemoryError::SizeInsufficient(size, min) => write!(
                        f,
                        "a size of {} bytes, less than the {}-byte header",
                        size, min
                    ),
                    MemoryError::InvalidReportedTotalSize(size, left) => write!(
                        f,
                        "sizes that do not add up ({} bytes against {} available)",
                        size, left
                    ),
                    MemoryError::MissingPadding => write!(f, "total_size not a multiple of 8"),
                    e => write!(f, "{}", e),
                }
            }
            BootInfoError::Load(e) => write!(f, "malformed boot information: {}", e),
            BootInfoError::BadTag {
                typ,
                size,
                field,
                value,
                expected,
            } => write!(
                f,
                "malformed boot information: tag {} ({}) of {} bytes has {} {} (expected {})",
                typ,
                tag_name(*typ),
                size,
                field,
                value,
                expected
            ),
            BootInfoError::BadMemoryArea {
                index,
                base,
                length,
            } => write!(
                f,
                "malformed boot information: memory map entry {} at {:#x} of length {:#x} ends past 2^64",
                index, base, length
            ),
            BootInfoError::NoMemoryMap => write!(f, "boot information has no memory map tag"),
            BootInfoError::BadCmdline(e) => write!(f, "bad command line tag: {}", e),
        }
    }
}

/// Check the magic and parse the information block at virtual address
/// `ptr`, of which `readable` bytes can be read.  The header's
/// `total_size` is input like the rest of the block: it is checked against
/// `readable` before anything past the 8-byte header is touched.
///
/// # Safety
/// `ptr` must be readable for `readable` bytes, and the memory must not
/// change while the returned information is in use.
pub unsafe fn load<'a>(
    magic: u32,
    ptr: usize,
    readable: usize,
) -> Result<BootInformation<'a>, BootInfoError> {
    if magic != MULTIBOOT2_BOOTLOADER_MAGIC {
        return Err(BootInfoError::BadMagic(magic));
    }
    if !ptr.is_multiple_of(8) {
        return Err(BootInfoError::Misaligned(ptr));
    }
    let header = core::mem::size_of::<BootInformationHeader>();
    if readable < header {
        return Err(BootInfoError::Unreadable(readable));
    }
    // SAFETY: aligned (checked) and readable (caller), 8 bytes at least.
    let total_size = unsafe { (ptr as *const BootInformationHeader).read() }.total_size();
    if total_size as usize > readable {
        return Err(BootInfoError::TooLarge {
            total_size,
            readable,
        });
    }
    // SAFETY: the block's claimed size is inside what the caller
    // guarantees readable; the crate checks the framing inside it.
    let info = unsafe { BootInformation::load(ptr as *const BootInformationHeader) }
        .map_err(BootInfoError::Load)?;
    for tag in info.tags() {
        check_tag(tag.header().typ.get(), tag.header().size, tag.payload())?;
    }
    if info.memory_map_tag().is_none() {
        return Err(BootInfoError::NoMemoryMap);
    }
    Ok(info)
}

pub fn tag_name(typ: u32) -> &'static str {
    match typ {
        TAG_CMDLINE => "command line",
        TAG_LOADER_NAME => "boot loader name",
        TAG_MODULE => "module",
        TAG_BASIC_MEMINFO => "basic memory information",
        TAG_MMAP => "memory map",
        TAG_ELF_SECTIONS => "ELF sections",
        _ => "not read by the kernel",
    }
}

const TAG_CMDLINE: u32 = 1;
const TAG_LOADER_NAME: u32 = 2;
const TAG_MODULE: u32 = 3;
const TAG_BASIC_MEMINFO: u32 = 4;
const TAG_MMAP: u32 = 6;
const TAG_ELF_SECTIONS: u32 = 9;

/// The fields of the tags the kernel reads, against the specification
/// (section 3.6).  The multiboot2 crate checks only the framing of the
/// tag list; its accessors `assert!` on the rest (a memory map whose
/// entry_size is not 24, a sized tag of another size, an ELF-sections
/// entry size of neither ELF32 nor ELF64) and `MemoryArea::end_address`
/// overflows.  A loader's mistake must be a message, not a panic, so the
/// tags are checked here, before anything casts them.  Tags the kernel
/// never reads are not checked.
fn check_tag(typ: u32, size: u32, payload: &[u8]) -> Result<(), BootInfoError> {
    let word = |i: usize| u32::from_le_bytes(payload[i * 4..i * 4 + 4].try_into().unwrap());
    let bad = |field, value: u64, expected| {
        Err(BootInfoError::BadTag {
            typ,
            size,
            field,
            value,
            expected,
        })
    };
    match typ {
        TAG_MODULE if size < 16 => bad("size", size as u64, "at least 16"),
        TAG_MODULE if word(1) < word(0) => {
            bad("mod_end", word(1) as u64, "mod_end at or above mod_start")
        }
        TAG_BASIC_MEMINFO if size != 16 => bad("size", size as u64, "16"),
        TAG_MMAP if size < 16 => bad("size", size as u64, "at least 16"),
        TAG_MMAP if word(0) != MMAP_ENTRY_SIZE => bad("entry_size", word(0) as u64, "24"),
        TAG_MMAP if !(size - 16).is_multiple_of(MMAP_ENTRY_SIZE) => {
            bad("size", size as u64, "16 + 24 per entry")
        }
        TAG_MMAP => {
            for (index, e) in payload[8..]
                .chunks_exact(MMAP_ENTRY_SIZE as usize)
                .enumerate()
            {
                let base = u64::from_le_bytes(e[0..8].try_into().unwrap());
                let length = u64::from_le_bytes(e[8..16].try_into().unwrap());
                if base.checked_add(length).is_none() {
                    return Err(BootInfoError::BadMemoryArea {
                        index,
                        base,
                        length,
                    });
                }
            }
            Ok(())
        }
        TAG_ELF_SECTIONS if size < 20 => bad("size", size as u64, "at least 20"),
        // An i386 kernel is an ELF32 image: GRUB reports 40-byte section
        // headers for it.
        TAG_ELF_SECTIONS if word(1) != ELF32_SHDR_SIZE => {
            bad("entsize", word(1) as u64, "40, the ELF32 section header")
        }
        _ => Ok(()),
    }
}

const MMAP_ENTRY_SIZE: u32 = 24;
const ELF32_SHDR_SIZE: u32 = 40;

/// `load` for the block GRUB left at physical `info_phys`, read through
/// the boot page directory's mapping of the first GiB.
pub fn load_boot(magic: u32, info_phys: u32) -> Result<BootInformation<'static>, BootInfoError> {
    if magic != MULTIBOOT2_BOOTLOADER_MAGIC {
        return Err(BootInfoError::BadMagic(magic));
    }
    if info_phys >= BOOT_MAPPED {
        return Err(BootInfoError::OutsideBootMapping(info_phys));
    }
    // SAFETY: boot/entry.s maps physical [0, BOOT_MAPPED) at PAGE_OFFSET
    // for the whole boot, and nothing writes the block before the frame
    // allocator (which reserves it) is up.
    unsafe { load(magic, __va(info_phys), (BOOT_MAPPED - info_phys) as usize) }
}

/// The kernel command line from the command-line tag: empty without the
/// tag, an error if it is not a NUL-terminated UTF-8 string.
pub fn boot_cmdline<'a>(info: &'a BootInformation) -> Result<&'a str, BootInfoError> {
    match info.command_line_tag().map(|t| t.cmdline()) {
        Some(Ok(s)) => Ok(s),
        Some(Err(e)) => Err(BootInfoError::BadCmdline(e)),
        None => Ok(""),
    }
}

pub fn area_type_name(t: MemoryAreaType) -> &'static str {
    match t {
        MemoryAreaType::Available => "usable",
        MemoryAreaType::Reserved => "reserved",
        MemoryAreaType::AcpiAvailable => "ACPI data",
        MemoryAreaType::ReservedHibernate => "ACPI NVS",
        MemoryAreaType::Defective => "defective",
        MemoryAreaType::Custom(_) => "custom",
    }
}

/// Total bytes of usable RAM in the map.  Saturating: areas may overlap
/// (the map is the loader's, like an e820 map before Linux's
/// `sanitize_e820_map`), and two of nearly 2^64 bytes each overflow.
pub fn usable_bytes(info: &BootInformation) -> u64 {
    info.memory_map_tag()
        .map(|m| {
            m.memory_areas()
                .iter()
                .filter(|a| a.typ() == MemoryAreaType::Available)
                .fold(0u64, |n, a| n.saturating_add(a.size()))
        })
        .unwrap_or(0)
}

/// The boot log's account of what the loader handed over, in the shape of
/// Linux's `BIOS-provided physical RAM map`.
pub fn print(info: &BootInformation, info_phys: u32) {
    let _ = report(info, info_phys, &mut crate::console::Console);
}

/// `print`'s text, written to `w`.
pub fn report(info: &BootInformation, info_phys: u32, w: &mut dyn Write) -> fmt::Result {
    let loader = info
        .boot_loader_name_tag()
        .and_then(|t| t.name().ok())
        .unwrap_or("(unknown)");
    writeln!(w, "Boot loader: {}", loader)?;
    writeln!(
        w,
        "Boot information: {:#010x}-{:#010x} ({} bytes)",
        info_phys,
        info_phys as usize + info.total_size(),
        info.total_size()
    )?;
    writeln!(w, "Physical RAM map (multiboot2):")?;
    if let Some(m) = info.memory_map_tag() {
        for a in m.memory_areas() {
            writeln!(
                w,
                " mb2: {:016x} - {:016x} ({})",
                a.start_address(),
                a.end_address(),
                area_type_name(a.typ())
            )?;
        }
    }
    writeln!(w, "Usable RAM: {} KiB", usable_bytes(info) / 1024)?;
    for m in info.module_tags() {
        writeln!(
            w,
            "Module: {:#010x}-{:#010x} {}",
            m.start_address(),
            m.end_address(),
            m.cmdline().unwrap_or("")
        )?;
    }
    Ok(())
}
