//! How 5.8 maps a vmalloc area (mm/vmalloc.c), for `vmalloc_fault=eager`
//! and `eager-lazy`: the pages are allocated first, then
//! `map_kernel_range_noflush` walks the range holding no lock but
//! init_mm's `page_table_lock` around a new pte page, notes in a mask the
//! levels where it created an entry, and at the end, if a PMD-level entry
//! is new, calls `arch_sync_kernel_mappings` to copy it into every
//! directory.  Between the new PMD and that sync, anyone who maps into
//! the same slot finds it present and syncs nothing (the 2020 bug,
//! fixed by 4819e15f740e).

use core::sync::atomic::Ordering;

use super::PGTABLE_PAGES;
use crate::mm::addr::VirtAddr;
use crate::mm::addr::PAGE_SIZE;
use crate::mm::frame::{alloc_zeroed_frame, free_frame};
use crate::mm::init::swapper_pg_dir;
use crate::mm::mm_struct::init_mm;
use crate::mm::pgtable::*;
use crate::mm::sync_kernel_mappings::{
    arch_page_table_sync_mask, arch_sync_kernel_mappings, PgtblModMask,
};
use crate::mm::walk::MapError;

/// `pmd_populate_kernel(&init_mm, pmd, new)`: the instruction that makes
/// the new page table visible in init_mm (and only there).  A function
/// of its own so the 2020-regression explorer can start at it.
#[inline(never)]
pub fn pmd_populate_kernel(pmd: PmdSlot, pte_page: u32) {
    set_pmd(pmd, mk_pmd(pte_page as u64, PteFlags::KERNPG_TABLE));
}

/// `__pte_alloc_kernel(pmd)`: a zeroed page, then, under init_mm's
/// `page_table_lock`, the re-check the seed's point 3 removed from 2.4
/// (`if (likely(pmd_none(*pmd)))`): someone may have populated the pmd
/// while the page was being allocated.
fn __pte_alloc_kernel(pmd: PmdSlot) -> Result<(), MapError> {
    let new = alloc_zeroed_frame().ok_or(MapError::OutOfMemory)?;
    let installed = {
        // spin_lock(&init_mm.page_table_lock): interrupts stay on, and
        // no preemption while it is held (the lock's preempt_count).
        let _ptl = init_mm().page_table_lock.lock();
        let none = pmd_none(pmd.read());
        if none {
            pmd_populate_kernel(pmd, new);
        }
        none
    };
    if installed {
        PGTABLE_PAGES.fetch_add(1, Ordering::Relaxed);
    } else {
        free_frame(new);
    }
    Ok(())
}

/// `pte_alloc_kernel_track(pmd, address, mask)`: the mask says
/// PMD-modified whenever this caller saw the pmd empty, whoever filled it.
fn pte_alloc_kernel_track(
    pmd: PmdSlot,
    address: u32,
    mask: &mut PgtblModMask,
) -> Result<PteSlot, MapError> {
    if pmd_none(pmd.read()) {
        __pte_alloc_kernel(pmd)?;
        *mask |= PgtblModMask::PMD_MODIFIED;
    }
    Ok(pte_offset(pmd, VirtAddr::new(address)))
}

/// `map_kernel_range_noflush(start, size, prot, pages)`: map `pages` at
/// `start` in init_mm, then sync if a PMD-level entry was created.  On an
/// error it returns how many pages it mapped, and syncs nothing (5.8
/// returns before the sync too).
pub fn map_kernel_range_noflush(
    start: u32,
    pages: &[u64],
    flags: PteFlags,
) -> Result<(), (usize, MapError)> {
    let mut mask = PgtblModMask::empty();
    for (i, &pa) in pages.iter().enumerate() {
        let address = start + (i * PAGE_SIZE) as u32;
        // pmd_alloc_track: the kernel PMD pages exist from boot in PAE,
        // and the pmd is the pgd slot in two-level mode.
        let pmd = pmd_offset(
            pgd_offset(swapper_pg_dir(), VirtAddr::new(address)),
            VirtAddr::new(address),
        );
        let pte = pte_alloc_kernel_track(pmd, address, &mut mask).map_err(|e| (i, e))?;
        // vmap_pte_range: if (WARN_ON(!pte_none(*pte))) return -EBUSY;
        if !pte_none(pte.read()) {
            return Err((i, MapError::AlreadyMapped));
        }
        set_pte(pte, mk_pte(pa, flags));
    }
    if mask.intersects(arch_page_table_sync_mask()) {
        arch_sync_kernel_mappings(start, start + (pages.len() * PAGE_SIZE) as u32);
    }
    Ok(())
}
