//! The ACPI MADT's local APICs: which CPUs the firmware enabled (Linux
//! 2.4.20's `acpi_parse_lapic`).  GRUB copies the RSDP into the multiboot2
//! information (tag 14 for ACPI 1.0, 15 for 2.0+); the `acpi` crate reads
//! the RSDT or XSDT it points to and finds the MADT.  Runs in setup_arch,
//! under the boot page directory: ACPI tables sit at the top of RAM in a
//! reserved range the direct map later leaves out, but the boot directory
//! maps the whole first GiB at PAGE_OFFSET.

use core::ptr::NonNull;

use acpi::madt::{Madt, MadtEntry};
use acpi::{AcpiHandler, AcpiTables, PhysicalMapping};
use multiboot2::BootInformation;

use super::page::BOOT_MAPPED;
use super::smp_config::{CpuEntry, SmpConfig, Source};
use crate::arch::x86::page::__va;

/// What a table outside the boot mapping reads as: zeros, whose signature
/// and checksum the crate refuses, so it never reads further.
static OUTSIDE: [u8; 64] = [0; 64];

/// Physical to virtual through the boot page directory.
#[derive(Clone, Copy)]
struct BootMapped;

impl AcpiHandler for BootMapped {
    unsafe fn map_physical_region<T>(&self, phys: usize, size: usize) -> PhysicalMapping<Self, T> {
        let inside = phys
            .checked_add(size)
            .is_some_and(|e| e <= BOOT_MAPPED as usize);
        let va = if inside {
            __va(phys as u32)
        } else {
            OUTSIDE.as_ptr() as usize
        };
        let ptr = NonNull::new(va as *mut T).expect("a mapped address is never 0");
        // SAFETY: [va, va + size) is mapped (the boot directory's first GiB,
        // or the zeros above, read only for a header the crate then refuses).
        unsafe { PhysicalMapping::new(phys, ptr, size, size, *self) }
    }

    fn unmap_physical_region<T>(_: &PhysicalMapping<Self, T>) {}
}

/// The CPUs the MADT lists, in its order (the first is the boot CPU, as
/// the ACPI specification asks firmware to put it).
pub fn smp_config_from_madt(info: &BootInformation) -> Result<SmpConfig, &'static str> {
    let (revision, root) = if let Some(t) = info.rsdp_v2_tag() {
        if !t.checksum_is_valid() {
            return Err("the RSDP (2.0) tag's checksum is wrong");
        }
        (t.revision(), t.xsdt_address())
    } else if let Some(t) = info.rsdp_v1_tag() {
        if !t.checksum_is_valid() {
            return Err("the RSDP (1.0) tag's checksum is wrong");
        }
        (0, t.rsdt_address())
    } else {
        return Err("no RSDP tag from the loader");
    };
    // SAFETY: the loader's RSDP names the root table; BootMapped refuses
    // (as zeros) anything outside what the boot directory maps.
    let tables = unsafe { AcpiTables::from_rsdt(BootMapped, revision, root) }
        .map_err(|_| "the RSDT/XSDT is not readable or not valid")?;
    let madt = tables
        .find_table::<Madt>()
        .map_err(|_| "no MADT (APIC) table")?;
    let mut cfg = SmpConfig::new(Source::Madt, madt.get().local_apic_address);
    for e in madt.get().entries() {
        if let MadtEntry::LocalApic(l) = e {
            let (apic_id, flags) = (l.apic_id, l.flags);
            // Bit 0: enabled; bit 1 (ACPI 6.3): online capable.
            if flags & 1 != 0 {
                let boot = cfg.cpus().is_empty();
                cfg.push(CpuEntry { apic_id, boot });
            } else {
                cfg.disabled += 1;
            }
        }
    }
    if cfg.cpus().is_empty() {
        return Err("the MADT lists no enabled local APIC");
    }
    Ok(cfg)
}
