//! Where the CPUs are (Linux 2.4 `mpparse.c`: `find_smp_config`,
//! `MP_processor_info`).  The ACPI MADT first (acpi.rs), as Linux does
//! from 2.4.20 on; else the Intel MultiProcessor table (MP spec 1.4) that
//! SeaBIOS builds: the `_MP_` floating pointer in the EBDA's first KiB,
//! base memory's last KiB or the BIOS ROM, then its `PCMP` configuration
//! table's processor entries.  Both are read once, in setup_arch, and kept:
//! `smp.*` cases compare them.  (Under QEMU 7.2 with `-smp 2`, SeaBIOS's
//! MP table lists the boot CPU only: the fallback is for firmware without
//! ACPI, not for this machine.)

use multiboot2::BootInformation;
use spin::Once;

use super::smp_config::{CpuEntry, SmpConfig, Source, NR_CPUS};
use crate::arch::x86::page::__va;

/// What setup_arch found: each source's result (or why it has none).
pub struct Found {
    pub madt: Result<SmpConfig, &'static str>,
    pub mp_table: Result<SmpConfig, &'static str>,
}

impl Found {
    /// The table the kernel goes by: the MADT, else the MP table.
    pub fn config(&self) -> Option<&SmpConfig> {
        self.madt.as_ref().or(self.mp_table.as_ref()).ok()
    }
}

static FOUND: Once<Found> = Once::new();

/// Read both tables (setup_arch, under the boot page directory) and say
/// in the boot log which CPUs there are.
pub fn find_smp_config(info: &BootInformation) -> &'static Found {
    let f = FOUND.call_once(|| Found {
        madt: super::acpi::smp_config_from_madt(info),
        mp_table: smp_config_from_mp_table(),
    });
    match f.config() {
        Some(c) => {
            crate::print!(
                "SMP: {} lists {} CPU(s): APIC ID",
                c.source.name(),
                c.cpus().len()
            );
            for (i, cpu) in c.cpus().iter().enumerate() {
                crate::print!(
                    "{} {}{}",
                    if i == 0 { "" } else { "," },
                    cpu.apic_id,
                    if cpu.boot { " (boot CPU)" } else { "" }
                );
            }
            crate::println!("; local APIC at {:#010x}", c.lapic_phys);
            if c.disabled + c.dropped > 0 {
                crate::println!(
                    "SMP: {} disabled by the firmware, {} beyond NR_CPUS ({})",
                    c.disabled,
                    c.dropped,
                    NR_CPUS
                );
            }
            if let (Ok(_), Err(why)) = (&f.madt, &f.mp_table) {
                crate::println!("SMP: no MP table ({}); the MADT is enough", why);
            }
        }
        None => crate::println!(
            "SMP: no CPU list (MADT: {}; MP table: {}): one CPU",
            f.madt.as_ref().err().copied().unwrap_or(""),
            f.mp_table.as_ref().err().copied().unwrap_or("")
        ),
    }
    f
}

/// What `find_smp_config` found, once it ran.
pub fn found() -> Option<&'static Found> {
    FOUND.get()
}

fn checksum_ok(phys: u32, len: usize) -> bool {
    // SAFETY: callers pass ranges below 1 MiB or inside the boot mapping.
    let b = unsafe { core::slice::from_raw_parts(__va(phys) as *const u8, len) };
    b.iter().fold(0u8, |s, x| s.wrapping_add(*x)) == 0
}

fn read_u32(phys: u32) -> u32 {
    // SAFETY: as above; MP structures are not aligned.
    unsafe { core::ptr::read_unaligned(__va(phys) as *const u32) }
}

fn read_u16(phys: u32) -> u16 {
    // SAFETY: as above.
    unsafe { core::ptr::read_unaligned(__va(phys) as *const u16) }
}

fn read_u8(phys: u32) -> u8 {
    // SAFETY: as above.
    unsafe { core::ptr::read_volatile(__va(phys) as *const u8) }
}

/// The `_MP_` floating pointer in [start, start + len), 16-byte aligned.
fn scan_for_floating_pointer(start: u32, len: u32) -> Option<u32> {
    (start..start + len).step_by(16).find(|&p| {
        read_u32(p) == u32::from_le_bytes(*b"_MP_") && read_u8(p + 8) == 1 && checksum_ok(p, 16)
    })
}

/// MP spec 1.4, 4: the EBDA's first KiB (its segment at 0x40E), base
/// memory's last KiB, then the BIOS ROM.
fn find_floating_pointer() -> Option<u32> {
    let ebda = (read_u16(0x40E) as u32) << 4;
    let base_kib = read_u16(0x413) as u32;
    let mut places = [(0u32, 0u32); 3];
    if (0x80000..0xA0000).contains(&ebda) {
        places[0] = (ebda, 1024);
    }
    if (512..=640).contains(&base_kib) {
        places[1] = ((base_kib - 1) * 1024, 1024);
    }
    places[2] = (0xF0000, 0x10000);
    places
        .iter()
        .filter(|(_, len)| *len > 0)
        .find_map(|&(s, len)| scan_for_floating_pointer(s, len))
}

const MP_PROCESSOR: u8 = 0;
const CPU_ENABLED: u8 = 1;
const CPU_BOOTPROCESSOR: u8 = 2;

/// The processors of the MP configuration table.
pub fn smp_config_from_mp_table() -> Result<SmpConfig, &'static str> {
    let mpf = find_floating_pointer().ok_or("no _MP_ floating pointer")?;
    let table = read_u32(mpf + 4);
    if table == 0 {
        return Err("a default configuration (no table), which this kernel does not know");
    }
    if table >= 0x10_0000 {
        return Err("the MP table lies above 1 MiB");
    }
    let len = read_u16(table + 4) as u32;
    if read_u32(table) != u32::from_le_bytes(*b"PCMP") || len < 44 || table + len > 0x10_0000 {
        return Err("the MP table's header is not valid");
    }
    if !checksum_ok(table, len as usize) {
        return Err("the MP table's checksum is wrong");
    }
    let mut cfg = SmpConfig::new(Source::MpTable, read_u32(table + 36));
    let count = read_u16(table + 34);
    let mut p = table + 44;
    for _ in 0..count {
        if p >= table + len {
            return Err("the MP table's entries run past its length");
        }
        let kind = read_u8(p);
        if kind == MP_PROCESSOR {
            let (apic_id, flags) = (read_u8(p + 1), read_u8(p + 3));
            if flags & CPU_ENABLED != 0 {
                cfg.push(CpuEntry {
                    apic_id,
                    boot: flags & CPU_BOOTPROCESSOR != 0,
                });
            } else {
                cfg.disabled += 1;
            }
        }
        // Processor entries are 20 bytes, the others (bus, I/O APIC,
        // interrupt assignments) 8.
        p += if kind == MP_PROCESSOR { 20 } else { 8 };
    }
    if cfg.cpus().is_empty() {
        return Err("the MP table lists no enabled processor");
    }
    Ok(cfg)
}
