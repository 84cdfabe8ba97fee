//! Linux's two i386 headers as two types: `pgtable-2level.h` is
//! `TwoLevel`, `pgtable-3level.h` is `ThreeLevel`.  Code generic over
//! `L: Levels` is compiled once per paging mode with the mode a constant,
//! so the page-fault path chosen at boot never asks which mode it is in
//! (issue 14: the fault path tested the mode at every entry access).  The
//! mode-agnostic functions of `pgtable` (`set_pgd`, `pmd_offset`, ...)
//! are these same bodies behind one runtime test of the booted mode.

use super::{
    read_raw, set_64bit, write_u32, Geometry, Pgd, PgdSlot, Pmd, PmdSlot, Pte, PteFlags, PteSlot,
    PAE, TWO_LEVEL,
};
use crate::mm::addr::__va;

pub trait Levels: 'static {
    /// 64-bit entries, a 4-entry PDPT, a real pmd level.
    const PAE: bool;
    /// `PGDIR_SHIFT`, `PTRS_PER_*` of this format.
    const GEOMETRY: Geometry;

    /// Bits of an entry that hold the physical frame address.
    #[inline(always)]
    fn addr_mask() -> u64 {
        if Self::PAE {
            0x000F_FFFF_FFFF_F000
        } else {
            0xFFFF_F000
        }
    }

    /// An entry as it is in memory: 32 bits wide here, 64 in PAE.
    #[inline(always)]
    fn read_entry(va: usize) -> u64 {
        if Self::PAE {
            read_raw::<u64>(va)
        } else {
            read_raw::<u32>(va)
        }
    }

    /// `*pgd`.
    #[inline(always)]
    fn read_pgd(slot: PgdSlot) -> Pgd {
        Pgd(Self::read_entry(slot.0))
    }

    /// `*pmd`.
    #[inline(always)]
    fn read_pmd(slot: PmdSlot) -> Pmd {
        Pmd(Self::read_entry(slot.0))
    }

    /// `*pte`.
    #[inline(always)]
    fn read_pte(slot: PteSlot) -> Pte {
        Pte(Self::read_entry(slot.0))
    }

    /// `pgd_present`: constant 1 in `pgtable-2level.h`, where the pmd is
    /// folded into the pgd; the present bit of the PDPTE in PAE.
    #[inline(always)]
    fn pgd_present(pgd: Pgd) -> bool {
        !Self::PAE || pgd.0 & PteFlags::PRESENT.bits() != 0
    }

    /// `pgd_none`: constant 0 in `pgtable-2level.h`.
    #[inline(always)]
    fn pgd_none(pgd: Pgd) -> bool {
        Self::PAE && pgd.0 == 0
    }

    /// `pgd_offset`: the pgd slot for `addr` in the directory at
    /// `pgd_phys` (the PGD page in two-level mode, the PDPT in PAE).
    #[inline(always)]
    fn pgd_offset(pgd_phys: u32, addr: u32) -> PgdSlot {
        Self::pgd_slot(pgd_phys, Self::GEOMETRY.pgd_index(addr))
    }

    /// `pmd_offset`: in two-level mode the pgd slot itself, folded (2.4's
    /// `pmd_offset(dir, address)` returns `(pmd_t *) dir`); in PAE the
    /// entry in the PMD page the PDPTE points to.
    #[inline(always)]
    fn pmd_offset(pgd: PgdSlot, addr: u32) -> PmdSlot {
        if Self::PAE {
            let pmd_page = Self::read_pgd(pgd).0 & Self::addr_mask();
            PmdSlot(__va(pmd_page as u32) + PAE.pmd_index(addr) * PAE.entry_size)
        } else {
            PmdSlot(pgd.0)
        }
    }

    /// `pte_offset`: the entry in the PTE page the pmd points to.
    #[inline(always)]
    fn pte_offset(pmd: PmdSlot, addr: u32) -> PteSlot {
        let pte_page = Self::read_pmd(pmd).0 & Self::addr_mask();
        Self::pte_slot(pte_page as u32, Self::GEOMETRY.pte_index(addr))
    }

    /// Entry `index` of the directory at `pgd_phys`.
    #[inline(always)]
    fn pgd_slot(pgd_phys: u32, index: usize) -> PgdSlot {
        debug_assert!(index < Self::GEOMETRY.ptrs_per_pgd);
        PgdSlot(__va(pgd_phys) + index * Self::GEOMETRY.entry_size)
    }

    /// Entry `index` of the PTE page at `pte_phys`.
    #[inline(always)]
    fn pte_slot(pte_phys: u32, index: usize) -> PteSlot {
        debug_assert!(index < Self::GEOMETRY.ptrs_per_pte);
        PteSlot(__va(pte_phys) + index * Self::GEOMETRY.entry_size)
    }

    /// `set_pmd`: one 32-bit store in two-level mode (where it writes the
    /// folded pgd entry); `set_64bit` in PAE (2.4 `pgtable-3level.h`).
    #[inline(always)]
    fn set_pmd(pmd: PmdSlot, val: Pmd) {
        if Self::PAE {
            set_64bit(pmd.0, val.0);
        } else {
            write_u32(pmd.0, val.0 as u32);
        }
    }

    /// `set_pgd`: in two-level mode this writes the PDE (the folded pmd);
    /// in PAE a PDPTE with `set_64bit`, which the CPU caches: the caller
    /// must reload CR3 if the PDPT is live (see `pmd_alloc`).
    #[inline(always)]
    fn set_pgd(pgd: PgdSlot, val: Pgd) {
        if Self::PAE {
            set_64bit(pgd.0, val.0);
        } else {
            write_u32(pgd.0, val.0 as u32);
        }
    }
}

/// `pgtable-2level.h`: 1024 x 4 MiB PDEs, the pmd folded into the pgd.
pub enum TwoLevel {}

impl Levels for TwoLevel {
    const PAE: bool = false;
    const GEOMETRY: Geometry = TWO_LEVEL;
}

/// `pgtable-3level.h`: PAE, 4 PDPTEs, 512-entry PMD and PTE pages.
pub enum ThreeLevel {}

impl Levels for ThreeLevel {
    const PAE: bool = true;
    const GEOMETRY: Geometry = PAE;
}
