//! Walking and filling page tables, for any directory (`init_mm`'s or a
//! process's), in either paging mode: pgd -> pmd -> pte, written once.

use super::frame::{alloc_zeroed_frame, free_frame};
use super::pgtable::*;
use crate::arch::x86::cpu;

/// Why a mapping could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// No frame for a page table.
    OutOfMemory,
    /// Something is mapped there already.
    AlreadyMapped,
}

/// Each level's entry for one address, and the final translation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Walk {
    pub pgd: u64,
    /// `None` in two-level mode (folded) or when the pgd is not present.
    pub pmd: Option<u64>,
    pub pte: Option<u64>,
    pub phys: Option<u64>,
}

/// `pmd_alloc(pgd, address)` as the seed's patch leaves it
/// (pgalloc-3level.h, 2.4.2aa): allocate a PMD page for an empty PDPTE,
/// `set_pgd(pgd, __pgd(1 + __pa(page)))`, `__flush_tlb()`.  The CPU caches
/// the four PDPTEs when CR3 is loaded, so without that reload a new PDPTE
/// would be invisible.  In two-level mode the pmd is the pgd slot.
pub fn pmd_alloc(pgd_phys: u32, pgd: Slot, addr: u32) -> Result<Slot, MapError> {
    if is_pae() && !pgd_present(pgd.read()) {
        let page = alloc_zeroed_frame().ok_or(MapError::OutOfMemory)?;
        set_pgd(pgd, mk_entry(page as u64, PteFlags::PDPTE));
        if cpu::read_cr3_pa() == pgd_phys {
            cpu::flush_tlb();
        }
    }
    Ok(pmd_offset(pgd, addr))
}

/// `pte_alloc(pmd, address)`, without the re-check the seed removes from
/// `get_pte_kernel_slow`: the caller holds the lock of this directory, so
/// nobody can have filled the pmd meanwhile (seed point 3).
pub fn pte_alloc(pmd: Slot, addr: u32, user: bool) -> Result<Slot, MapError> {
    if pmd_none(pmd.read()) {
        let pte = alloc_zeroed_frame().ok_or(MapError::OutOfMemory)?;
        let flags = if user {
            PteFlags::PAGE_TABLE
        } else {
            PteFlags::KERNPG_TABLE
        };
        set_pmd(pmd, mk_entry(pte as u64, flags));
    }
    Ok(pte_offset(pmd, addr))
}

/// Map one 4 KiB page `va -> pa` in the directory at `pgd_phys`.
pub fn map_page(pgd_phys: u32, va: u32, pa: u64, flags: PteFlags) -> Result<(), MapError> {
    let user = flags.contains(PteFlags::USER);
    let pgd = pgd_offset(pgd_phys, va);
    let pmd = pmd_alloc(pgd_phys, pgd, va)?;
    let pte = pte_alloc(pmd, va, user)?;
    if !pte_none(pte.read()) {
        return Err(MapError::AlreadyMapped);
    }
    set_pte(pte, mk_entry(pa, flags));
    Ok(())
}

/// The pte slot for `va`, if its page table exists.
pub fn find_pte(pgd_phys: u32, va: u32) -> Option<Slot> {
    let pgd = pgd_offset(pgd_phys, va);
    if !pgd_present(pgd.read()) {
        return None;
    }
    let pmd = pmd_offset(pgd, va);
    let e = pmd.read();
    if !pmd_present(e) || e & PteFlags::PSE.bits() != 0 {
        return None;
    }
    Some(pte_offset(pmd, va))
}

/// Remove the mapping of `va`; returns the frame it mapped.  Flushes the
/// TLB entry when the directory is live.
pub fn unmap_page(pgd_phys: u32, va: u32) -> Option<u64> {
    let pte = find_pte(pgd_phys, va)?;
    let e = pte.read();
    if !pte_present(e) {
        return None;
    }
    pte_clear(pte);
    cpu::flush_tlb_one(va as usize);
    Some(entry_phys(e))
}

/// Walk the directory at `pgd_phys` for `va`.
pub fn translate(pgd_phys: u32, va: u32) -> Walk {
    let pgd = pgd_offset(pgd_phys, va);
    let mut w = Walk {
        pgd: pgd.read(),
        ..Default::default()
    };
    let pmd = if is_pae() {
        if !pgd_present(w.pgd) {
            return w;
        }
        let pmd = pmd_offset(pgd, va);
        w.pmd = Some(pmd.read());
        pmd
    } else {
        pmd_offset(pgd, va)
    };
    let pmdv = pmd.read();
    if !pmd_present(pmdv) {
        return w;
    }
    if pmdv & PteFlags::PSE.bits() != 0 {
        let size = geometry().pmd_size();
        w.phys = Some((entry_phys(pmdv) & !(size - 1)) | (va as u64 & (size - 1)));
        return w;
    }
    let pte = pte_offset(pmd, va).read();
    w.pte = Some(pte);
    if pte_present(pte) {
        w.phys = Some(entry_phys(pte) | (va as u64 & 0xfff));
    }
    w
}

/// Free the page tables of the user half (and, if `free_pages`, every page
/// they map): what `exit_mmap` + `free_pgtables` do for a dying mm.
/// Returns the number of frames freed.
pub fn free_user_tables(pgd_phys: u32, free_pages: bool) -> usize {
    let g = geometry();
    let mut freed = 0;
    for i in 0..g.user_ptrs_per_pgd() {
        let pgd = Slot(super::addr::__va(pgd_phys) + i * g.entry_size);
        let pgdv = pgd.read();
        let pmd_pages: (usize, usize) = if is_pae() {
            if pgdv & PteFlags::PRESENT.bits() == 0 {
                continue;
            }
            (super::addr::__va(entry_phys(pgdv) as u32), PAE.ptrs_per_pmd)
        } else {
            (pgd.0, 1)
        };
        for j in 0..pmd_pages.1 {
            let pmd = Slot(pmd_pages.0 + j * g.entry_size);
            let pmdv = pmd.read();
            if !pmd_present(pmdv) || pmdv & PteFlags::PSE.bits() != 0 {
                continue;
            }
            let pte_page = entry_phys(pmdv) as u32;
            if free_pages {
                for k in 0..g.ptrs_per_pte {
                    let e = Slot(super::addr::__va(pte_page) + k * g.entry_size).read();
                    if pte_present(e) {
                        free_frame(entry_phys(e) as u32);
                        freed += 1;
                    }
                }
            }
            set_pmd(pmd, 0);
            free_frame(pte_page);
            freed += 1;
        }
        if is_pae() {
            set_pgd(pgd, 0);
            free_frame(entry_phys(pgdv) as u32);
            freed += 1;
        }
    }
    freed
}
