//! The multiboot2 boot information, read with the `multiboot2` crate:
//! memory map, command line, boot loader name.  Loading is separated from
//! printing so tests can feed it malformed blocks.

use multiboot2::{BootInformation, BootInformationHeader, LoadError, MemoryAreaType};

use crate::println;

/// What the loader must leave in EAX (multiboot2 spec 3.3).
pub const MULTIBOOT2_BOOTLOADER_MAGIC: u32 = 0x36d7_6289;

/// Why the boot information could not be used.
#[derive(Debug)]
pub enum BootInfoError {
    BadMagic(u32),
    Misaligned(usize),
    Load(LoadError),
    NoMemoryMap,
}

impl core::fmt::Display for BootInfoError {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        match self {
            BootInfoError::BadMagic(m) => write!(
                f,
                "bad boot magic {:#010x} (expected {:#010x}): not booted by a multiboot2 loader",
                m, MULTIBOOT2_BOOTLOADER_MAGIC
            ),
            BootInfoError::Misaligned(a) => {
                write!(f, "boot information at {:#x} is not 8-byte aligned", a)
            }
            BootInfoError::Load(e) => write!(f, "malformed boot information: {}", e),
            BootInfoError::NoMemoryMap => write!(f, "boot information has no memory map tag"),
        }
    }
}

/// Check the magic and parse the information block at virtual address
/// `ptr`.
///
/// # Safety
/// `ptr` must be readable for the total size the block's header claims,
/// and for at least 8 bytes.
pub unsafe fn load(magic: u32, ptr: usize) -> Result<BootInformation<'static>, BootInfoError> {
    if magic != MULTIBOOT2_BOOTLOADER_MAGIC {
        return Err(BootInfoError::BadMagic(magic));
    }
    if !ptr.is_multiple_of(8) {
        return Err(BootInfoError::Misaligned(ptr));
    }
    // SAFETY: guaranteed by the caller.
    let info = unsafe { BootInformation::load(ptr as *const BootInformationHeader) }
        .map_err(BootInfoError::Load)?;
    if info.memory_map_tag().is_none() {
        return Err(BootInfoError::NoMemoryMap);
    }
    Ok(info)
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
    let loader = info
        .boot_loader_name_tag()
        .and_then(|t| t.name().ok())
        .unwrap_or("(unknown)");
    println!("Boot loader: {}", loader);
    println!(
        "Boot information: {:#010x}-{:#010x} ({} bytes)",
        info_phys,
        info_phys as usize + info.total_size(),
        info.total_size()
    );
    println!("Physical RAM map (multiboot2):");
    if let Some(m) = info.memory_map_tag() {
        for a in m.memory_areas() {
            println!(
                " mb2: {:016x} - {:016x} ({})",
                a.start_address(),
                a.end_address(),
                area_type_name(a.typ())
            );
        }
    }
    println!("Usable RAM: {} KiB", usable_bytes(info) / 1024);
    for m in info.module_tags() {
        println!(
            "Module: {:#010x}-{:#010x} {}",
            m.start_address(),
            m.end_address(),
            m.cmdline().unwrap_or("")
        );
    }
}
