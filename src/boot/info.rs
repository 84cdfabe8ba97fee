//! The multiboot2 boot information, read with the `multiboot2` crate:
//! memory map, command line, boot loader name.  Loading is separated from
//! printing, and takes the block's address and how many bytes are
//! readable there, so the tests (`ktest/suites/boot.rs`, the fuzzers in
//! `ktest/suites/fuzz.rs`) feed malformed blocks to the very functions
//! the boot runs.

use core::fmt::{self, Write};

use multiboot2::{BootInformation, BootInformationHeader, LoadError, MemoryAreaType, StringError};

use crate::mm::addr::__va;

/// What the loader must leave in EAX (multiboot2 spec 3.3).
pub const MULTIBOOT2_BOOTLOADER_MAGIC: u32 = 0x36d7_6289;

/// Physical memory the boot page directory maps at `PAGE_OFFSET`
/// (boot/entry.s): the first GiB.  The block must lie inside it.
pub const BOOT_MAPPED: u32 = 1 << 30;

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
                write!(f, "malformed boot information: {}", e)
            }
            BootInfoError::Load(e) => write!(f, "malformed boot information: {}", e),
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
    if info.memory_map_tag().is_none() {
        return Err(BootInfoError::NoMemoryMap);
    }
    Ok(info)
}

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

/// Total bytes of usable RAM in the map.
pub fn usable_bytes(info: &BootInformation) -> u64 {
    info.memory_map_tag()
        .map(|m| {
            m.memory_areas()
                .iter()
                .filter(|a| a.typ() == MemoryAreaType::Available)
                .map(|a| a.size())
                .sum()
        })
        .unwrap_or(0)
}

/// The boot log's account of what the loader handed over, in the shape of
/// Linux's `BIOS-provided physical RAM map`.
pub fn print(info: &BootInformation, info_phys: u32) {
    let _ = report(info, info_phys, &mut Console);
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

/// The serial console as a `fmt::Write`.
struct Console;

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        crate::print!("{}", s);
        Ok(())
    }
}
