//! A lock-free look at the *live* hardware translation of one address,
//! straight from CR3 and CR4.PAE.  The oops path uses it (2.4 prints
//! `*pde = ...`) and so does any code that must check an address is
//! readable before touching it from a fault handler.  It takes no lock and
//! allocates nothing, so it is safe at any point, even mid-fault.

use crate::arch::x86::cpu;
use crate::mm::addr::{__va, MAXMEM};

const P: u64 = 1 << 0;
const PS: u64 = 1 << 7;

/// Each level's raw entry on the way to `addr`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Probe {
    pub pae: bool,
    /// Two-level: the PDE.  PAE: the PDPTE.
    pub pgd: u64,
    /// PAE only: the PMD entry (2 MiB directory entry).
    pub pmd: Option<u64>,
    pub pte: Option<u64>,
    /// Physical address, if mapped.
    pub phys: Option<u64>,
}

fn read_entry(table_phys: u64, index: usize, wide: bool) -> Option<u64> {
    if table_phys >= MAXMEM {
        return None;
    }
    let va = __va(table_phys as u32);
    // SAFETY: the table is in the direct map (checked above) and page
    // tables are never freed while they are reachable from CR3.
    unsafe {
        Some(if wide {
            core::ptr::read_volatile((va as *const u64).add(index))
        } else {
            core::ptr::read_volatile((va as *const u32).add(index)) as u64
        })
    }
}

/// Walk the current CR3's tables for `addr`.
pub fn probe(addr: u32) -> Probe {
    let cr3 = cpu::read_cr3() as u64;
    let a = addr as u64;
    if cpu::read_cr4() & cpu::CR4_PAE == 0 {
        let pde = read_entry(cr3 & !0xfff, (a >> 22) as usize, false).unwrap_or(0);
        let mut p = Probe {
            pae: false,
            pgd: pde,
            ..Default::default()
        };
        if pde & P == 0 {
            return p;
        }
        if pde & PS != 0 {
            p.phys = Some((pde & 0xFFC0_0000) | (a & 0x3F_FFFF));
            return p;
        }
        let pte = read_entry(pde & 0xFFFF_F000, ((a >> 12) & 0x3ff) as usize, false);
        p.pte = pte;
        if let Some(pte) = pte.filter(|e| e & P != 0) {
            p.phys = Some((pte & 0xFFFF_F000) | (a & 0xfff));
        }
        p
    } else {
        const ADDR: u64 = 0x000F_FFFF_FFFF_F000;
        let pdpte = read_entry(cr3 & !0x1f, (a >> 30) as usize, true).unwrap_or(0);
        let mut p = Probe {
            pae: true,
            pgd: pdpte,
            ..Default::default()
        };
        if pdpte & P == 0 {
            return p;
        }
        let pmd = read_entry(pdpte & ADDR, ((a >> 21) & 0x1ff) as usize, true);
        p.pmd = pmd;
        let Some(pmd) = pmd.filter(|e| e & P != 0) else {
            return p;
        };
        if pmd & PS != 0 {
            p.phys = Some((pmd & ADDR & !0x1F_FFFF) | (a & 0x1F_FFFF));
            return p;
        }
        let pte = read_entry(pmd & ADDR, ((a >> 12) & 0x1ff) as usize, true);
        p.pte = pte;
        if let Some(pte) = pte.filter(|e| e & P != 0) {
            p.phys = Some((pte & ADDR) | (a & 0xfff));
        }
        p
    }
}

/// Can the kernel read the 4 bytes at `addr` without faulting?
pub fn readable(addr: u32) -> bool {
    probe(addr).phys.is_some() && (addr & 0xfff <= 0xffc || probe(addr + 4).phys.is_some())
}
