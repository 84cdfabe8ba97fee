//! Walking and filling page tables, for any directory (`init_mm`'s or a
//! process's), in either paging mode: pgd -> pmd -> pte, written once.
//! The one walker (`walk`) serves `translate`, the oops report's look at
//! the live tables (`probe`, `readable`) and the tests: it reads a table
//! only where the direct map has it, so a corrupt entry cannot make the
//! oops path fault.

use super::frame::{alloc_zeroed_frame, free_frame};
use super::pgtable::*;
use crate::arch::x86::cpu;
use crate::mm::tlb::TlbFlush;

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
    pub pgd: Pgd,
    /// `None` in two-level mode (folded) or when the pgd is not present.
    pub pmd: Option<Pmd>,
    pub pte: Option<Pte>,
    pub phys: Option<u64>,
}

/// Is a table page at `phys` reachable through the direct map?  Before
/// `paging_init` only the boot directory's first 4 MiB are.
fn in_direct_map(phys: u64) -> bool {
    let end = match super::addr::high_memory() {
        0 => 4 << 20,
        h => super::addr::__pa(h) as u64,
    };
    phys < end
}

/// `pmd_alloc(pgd, address)` as the seed's patch leaves it
/// (pgalloc-3level.h, 2.4.2aa): allocate a PMD page for an empty PDPTE,
/// `set_pgd(pgd, __pgd(1 + __pa(page)))`, `__flush_tlb()`.  The CPU caches
/// the four PDPTEs when CR3 is loaded, so without that reload a new PDPTE
/// would be invisible.  In two-level mode the pmd is the pgd slot.
pub fn pmd_alloc(pgd_phys: PhysAddr, pgd: PgdSlot, addr: VirtAddr) -> Result<PmdSlot, MapError> {
    if is_pae() && !pgd_present(pgd.read()) {
        let page = alloc_zeroed_frame().ok_or(MapError::OutOfMemory)?;
        set_pgd(pgd, mk_pgd(page as u64, PteFlags::PDPTE));
        if cpu::read_cr3_pa() == pgd_phys.as_u32() {
            cpu::flush_tlb();
        }
    }
    Ok(pmd_offset(pgd, addr))
}

/// `pte_alloc(pmd, address)`, without the re-check the seed removes from
/// `get_pte_kernel_slow`: the caller holds the lock of this directory, so
/// nobody can have filled the pmd meanwhile (seed point 3).
pub fn pte_alloc(pmd: PmdSlot, addr: VirtAddr, user: bool) -> Result<PteSlot, MapError> {
    if pmd_none(pmd.read()) {
        let pte = alloc_zeroed_frame().ok_or(MapError::OutOfMemory)?;
        let flags = if user {
            PteFlags::PAGE_TABLE
        } else {
            PteFlags::KERNPG_TABLE
        };
        set_pmd(pmd, mk_pmd(pte as u64, flags));
    }
    Ok(pte_offset(pmd, addr))
}

/// Map one 4 KiB page `va -> pa` in the directory at `pgd_phys`.
pub fn map_page(
    pgd_phys: PhysAddr,
    va: VirtAddr,
    pa: u64,
    flags: PteFlags,
) -> Result<(), MapError> {
    let user = flags.contains(PteFlags::USER);
    let pgd = pgd_offset(pgd_phys, va);
    let pmd = pmd_alloc(pgd_phys, pgd, va)?;
    let pte = pte_alloc(pmd, va, user)?;
    if !pte_none(pte.read()) {
        return Err(MapError::AlreadyMapped);
    }
    set_pte(pte, mk_pte(pa, flags));
    Ok(())
}

/// The pte slot for `va`, if its page table exists.
pub fn find_pte(pgd_phys: PhysAddr, va: VirtAddr) -> Option<PteSlot> {
    let pgd = pgd_offset(pgd_phys, va);
    if !pgd_present(pgd.read()) {
        return None;
    }
    let pmd = pmd_offset(pgd, va);
    let e = pmd.read();
    if !pmd_present(e) || pmd_large(e) {
        return None;
    }
    Some(pte_offset(pmd, va))
}

/// Remove the mapping of `va` (`ptep_get_and_clear`, as 2.4's vmalloc
/// `free_area_pte` does); returns the frame it mapped and the TLB flush
/// the caller owes (`TlbFlush`).
#[must_use = "the TLB may still hold the page: flush() the TlbFlush, or ignore() it and say why"]
pub fn unmap_page(pgd_phys: PhysAddr, va: VirtAddr) -> Option<(u64, TlbFlush)> {
    let pte = find_pte(pgd_phys, va)?;
    if !pte_present(pte.read()) {
        return None;
    }
    let old = ptep_get_and_clear(pte);
    Some((old.phys(), TlbFlush::page(va.as_u32())))
}

/// Walk the directory at `pgd_phys` for `va`, reading only tables the
/// direct map holds.
pub fn walk(pgd_phys: PhysAddr, va: VirtAddr) -> Walk {
    let mut w = Walk::default();
    if !in_direct_map(pgd_phys.as_u64()) {
        return w;
    }
    let pgd = pgd_offset(pgd_phys, va);
    w.pgd = pgd.read();
    let pmd = if is_pae() {
        if !pgd_present(w.pgd) || !in_direct_map(w.pgd.phys()) {
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
    if pmd_large(pmdv) {
        let size = geometry().pmd_size();
        w.phys = Some((pmdv.phys() & !(size - 1)) | (va.as_u32() as u64 & (size - 1)));
        return w;
    }
    if !in_direct_map(pmdv.phys()) {
        return w;
    }
    let pte = pte_offset(pmd, va).read();
    w.pte = Some(pte);
    if pte_present(pte) {
        w.phys = Some(pte.phys() | (va.as_u32() as u64 & 0xfff));
    }
    w
}

/// `va`'s translation in the directory at `pgd_phys`.
pub fn translate(pgd_phys: PhysAddr, va: VirtAddr) -> Walk {
    walk(pgd_phys, va)
}

/// `va`'s translation in the live tables (CR3), as the MMU would find it:
/// the oops report's `*pde = ...`.  Takes no lock and allocates nothing.
pub fn probe(va: u32) -> Walk {
    walk(PhysAddr::new(cpu::read_cr3_pa()), VirtAddr::new(va))
}

/// Can the kernel read the 4 bytes at `addr` without faulting?
pub fn readable(addr: u32) -> bool {
    probe(addr).phys.is_some() && (addr & 0xfff <= 0xffc || probe(addr + 4).phys.is_some())
}

/// Free the page tables of the user half (and, if `free_pages`, every page
/// they map): what `exit_mmap` + `free_pgtables` do for a dying mm.
/// Returns the number of frames freed.
pub fn free_user_tables(pgd_phys: PhysAddr, free_pages: bool) -> usize {
    let g = geometry();
    let mut freed = 0;
    for i in 0..g.user_ptrs_per_pgd() {
        let base = (i as u64 * g.pgdir_size()) as u32;
        let pgd = pgd_slot(pgd_phys, i);
        let pgdv = pgd.read();
        if !pgd_present(pgdv) {
            continue;
        }
        // Two-level: one pmd, the folded pgd slot; PAE: the PMD page's 512.
        for j in 0..g.ptrs_per_pmd {
            let pmd = pmd_offset(pgd, VirtAddr::new(base + (j as u64 * g.pmd_size()) as u32));
            let pmdv = pmd.read();
            if !pmd_present(pmdv) || pmd_large(pmdv) {
                continue;
            }
            let pte_page = pmdv.phys() as u32;
            if free_pages {
                for k in 0..g.ptrs_per_pte {
                    let e = pte_slot(pte_page, k).read();
                    if pte_present(e) {
                        free_frame(e.phys() as u32);
                        freed += 1;
                    }
                }
            }
            // A directory being torn down: no CPU runs on it.
            pmd_clear(pmd).ignore();
            free_frame(pte_page);
            freed += 1;
        }
        if is_pae() {
            pgd_clear(pgd);
            free_frame(pgdv.phys() as u32);
            freed += 1;
        }
    }
    freed
}
