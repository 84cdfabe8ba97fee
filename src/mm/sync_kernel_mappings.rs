//! Linux 5.8's x86-32 answer to the stale kernel PGD entry (7f0a002b5a21,
//! which removed vmalloc faulting), from arch/x86/mm/fault.c:
//! `arch_sync_kernel_mappings`, which vmalloc calls after it mapped a
//! range that created a PMD-level entry, and `vmalloc_sync_one`, which
//! copies one entry into one directory.  5.9 (4819e15f740e, "x86/mm/32:
//! Bring back vmalloc faulting on x86_32") keeps both and calls
//! `vmalloc_sync_one` from `vmalloc_fault` again.

use core::sync::atomic::{AtomicU32, Ordering};

use super::addr::{TASK_SIZE, VMALLOC_END};
use super::init::swapper_pg_dir;
use super::mm_struct::PGD_LIST;
use super::pgtable::*;

/// Entries copied by `arch_sync_kernel_mappings` (gdb and the bench read
/// it as vmalloc's "eager syncs").
static EAGER_SYNCS: AtomicU32 = AtomicU32::new(0);

pub fn eager_syncs() -> u32 {
    EAGER_SYNCS.load(Ordering::Relaxed)
}

/// `vmalloc_sync_one(pgd, address)`: Linux's return value (`pmd_k`, or
/// NULL), and whether it copied the entry (for the eager-sync counter).
///
/// ```c
/// if (!pgd_present(*pgd_k))
///         return NULL;
/// /* set_pgd(pgd, *pgd_k); here would be useless on PAE
///  * and redundant with the set_pmd() on non-PAE. As would
///  * set_p4d/set_pud. */
/// ...
/// if (pmd_present(*pmd) != pmd_present(*pmd_k))
///         set_pmd(pmd, *pmd_k);
/// if (!pmd_present(*pmd_k))
///         return NULL;
/// else
///         BUG_ON(pmd_pfn(*pmd) != pmd_pfn(*pmd_k));
/// return pmd_k;
/// ```
#[inline(always)]
pub fn vmalloc_sync_one<L: Levels>(pgd_phys: u32, address: u32) -> (Option<PmdSlot>, bool) {
    let pgd = L::pgd_offset(pgd_phys, address);
    let pgd_k = L::pgd_offset((swapper_pg_dir()).as_u32(), address);
    if !L::pgd_present(L::read_pgd(pgd_k)) {
        return (None, false);
    }
    // p4d and pud are folded on i386.
    let pmd = L::pmd_offset(pgd, address);
    let pmd_k = L::pmd_offset(pgd_k, address);
    let copy = pmd_present(L::read_pmd(pmd)) != pmd_present(L::read_pmd(pmd_k));
    if copy {
        L::set_pmd(pmd, L::read_pmd(pmd_k));
    }
    if !pmd_present(L::read_pmd(pmd_k)) {
        return (None, copy);
    }
    let (here, there) = (L::read_pmd(pmd), L::read_pmd(pmd_k));
    assert!(
        here.val() & L::addr_mask() == there.val() & L::addr_mask(),
        "kernel BUG in vmalloc_sync_one: pmd {:#x} of directory {:#x} points elsewhere than init_mm's {:#x}",
        here.val(),
        pgd_phys,
        there.val()
    );
    (Some(pmd_k), copy)
}

/// `ARCH_PAGE_TABLE_SYNC_MASK`: `PGTBL_PMD_MODIFIED` in pgtable-2level.h;
/// in pgtable-3level.h `SHARED_KERNEL_PMD ? 0 : PGTBL_PMD_MODIFIED`, and
/// the kernel PMD pages are shared here, so PAE never syncs.
pub fn arch_page_table_sync_mask() -> PgtblModMask {
    if is_pae() {
        PgtblModMask::empty()
    } else {
        PgtblModMask::PMD_MODIFIED
    }
}

bitflags::bitflags! {
    /// 5.8's `pgtbl_mod_mask`: which levels a kernel mapping created an
    /// entry in (`PGTBL_*_MODIFIED`, include/linux/pgtable.h).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct PgtblModMask: u32 {
        const PGD_MODIFIED = 1 << 0;
        const P4D_MODIFIED = 1 << 1;
        const PUD_MODIFIED = 1 << 2;
        const PMD_MODIFIED = 1 << 3;
        const PTE_MODIFIED = 1 << 4;
    }
}

/// `arch_sync_kernel_mappings(start, end)`, 5.8 x86-32:
///
/// ```c
/// for (address = start & PMD_MASK;
///      address >= TASK_SIZE_MAX && address < VMALLOC_END;
///      address += PMD_SIZE) {
///         spin_lock(&pgd_lock);
///         list_for_each_entry(page, &pgd_list, lru) {
///                 ...
///                 vmalloc_sync_one(page_address(page), address);
///                 ...
///         }
///         spin_unlock(&pgd_lock);
/// }
/// ```
///
/// It walks to `VMALLOC_END`, not to `end`.  Nothing holds a lock from
/// the mapping to here: whoever maps into the same slot in between finds
/// its PMD present in init_mm, so syncs nothing itself (the 2020 bug).
pub fn arch_sync_kernel_mappings(start: u32, end: u32) {
    if is_pae() {
        sync_range::<ThreeLevel>(start, end)
    } else {
        sync_range::<TwoLevel>(start, end)
    }
}

#[inline(never)]
fn sync_range<L: Levels>(start: u32, _end: u32) {
    let pmd_size = 1u32 << L::GEOMETRY.pmd_shift;
    let mut address = start & !(pmd_size - 1);
    while (TASK_SIZE..VMALLOC_END).contains(&address) {
        {
            // spin_lock(&pgd_lock): interrupts stay on, and no
            // preemption while it is held (the lock's preempt_count).
            let list = PGD_LIST.lock();
            for &pgd in list.iter() {
                if vmalloc_sync_one::<L>((pgd).as_u32(), address).1 {
                    EAGER_SYNCS.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        address += pmd_size;
    }
}
