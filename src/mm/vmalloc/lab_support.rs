//! The vmalloc operations the lab (bench, soak, race scenarios) needs
//! beyond `vmalloc`/`vfree`.  Each is a Linux kernel API in its own right,
//! except `drop_kernel_tables`, which exists only so that an experiment can
//! meet fresh, unsynced PGD slots again (the kernel proper never frees a
//! kernel page table, as in 2.4).

use core::panic::Location;
use core::sync::atomic::Ordering;

use super::*;
use crate::mm::addr::__va;
use crate::mm::addr::VirtAddr;
use crate::mm::frame::free_frame;
use crate::mm::init::swapper_pg_dir;
use crate::mm::mm_struct::PGD_LIST;
use crate::mm::vm_area::VmFlags;
use crate::mm::walk::{self, MapError};

/// Reserve `size` bytes of the vmalloc area without mapping anything
/// (benchmarks sub-allocate inside it); give it back with `release_range`.
#[track_caller]
pub fn reserve_range(size: usize) -> Option<u32> {
    let size = check_size(size, "reserve_range")?;
    reserve(size, VmFlags::MAP, "reserve_range", Location::caller()).map(|a| a.addr)
}

pub fn release_range(addr: u32) {
    with_vmlist(|v| v.remove_vm_area(addr));
}

/// Reserve `size` bytes at the top of the largest free range, the part of
/// the vmalloc area nearest `VMALLOC_END` that is free: 5.8's
/// `arch_sync_kernel_mappings` walks from the area to `VMALLOC_END`, and
/// the 2020 explorer steps every instruction of that walk.
#[track_caller]
pub fn reserve_range_high(size: usize) -> Option<u32> {
    let size = check_size(size, "reserve_range_high")?;
    let (_, gap) = with_vmlist(|v| v.largest_gap())?;
    // Best fit takes the bottom of the largest gap for the filler, and the
    // rest of that gap, now the only one that fits, for the range.
    let filler = gap.checked_sub(size + 2 * PAGE_SIZE as u32)?;
    let low = if filler > PAGE_SIZE as u32 {
        reserve_range(filler as usize - PAGE_SIZE)
    } else {
        None
    };
    let r = reserve(size, VmFlags::MAP, "reserve_range_high", Location::caller()).map(|a| a.addr);
    if let Some(l) = low {
        release_range(l);
    }
    r
}

/// Map `frames` at `addr` in `init_mm` the way the booted version's
/// vmalloc does: 5.8's `map_kernel_range_noflush` (with its sync) under
/// `eager`/`eager-lazy`, else 2.4's page by page under the version's
/// lock (`map_lock`), with test10-pre1's `set_pgdir` after each new slot
/// under `set_pgdir`.
pub fn map_pages_at(addr: u32, frames: &[u64]) -> Result<(), MapError> {
    let flags = PteFlags::PAGE_KERNEL | PteFlags::NX;
    if eager() {
        return map_range::map_kernel_range_noflush(addr, frames, flags).map_err(|(_, e)| e);
    }
    let mut sync = super::set_pgdir::SlotSync::new(false);
    let map = super::map_lock::MapGuard::take(map_lock());
    for (i, &pa) in frames.iter().enumerate() {
        let va = addr + (i * PAGE_SIZE) as u32;
        sync.next_page(va);
        sync.mapped(va, map_kernel_page(va, pa, flags)?);
    }
    drop(map);
    sync.done();
    Ok(())
}

/// Map one page into `init_mm` at `va` (what vmalloc does per page).
pub fn map_kernel_page_at(va: u32, pa: u64) -> Result<(), MapError> {
    map_pages_at(va, &[pa])
}

/// Unmap one page from `init_mm`, returning its frame and the TLB flush
/// the caller owes.
#[must_use = "the TLB may still hold the page: flush() the TlbFlush, or ignore() it and say why"]
pub fn unmap_kernel_page_at(va: u32) -> Option<(u64, crate::mm::tlb::TlbFlush)> {
    with_vmlist(|_| walk::unmap_page(swapper_pg_dir(), VirtAddr::new(va)))
}

/// Benchmarks and the soak only: free the kernel page tables of the 4 MiB
/// slots in `[addr, addr + len)` once nothing is mapped there, clearing
/// the entry in `init_mm` and in every address space, so the next run
/// meets fresh slots again.  (The kernel proper never frees them, as in
/// 2.4.)
pub fn drop_kernel_tables(addr: u32, len: u32) {
    drop_tables_where(addr, len, |v, slot| {
        v.areas()
            .any(|a| a.addr < slot + (4 << 20) && a.addr + a.size > slot)
    })
}

/// `drop_kernel_tables` for slots inside a range the caller reserved: a
/// page table goes once none of its entries maps a page, in both paging
/// modes (in PAE every address space shares the kernel's PMD pages, so
/// clearing init_mm's entry clears it everywhere).  The race explorers
/// need every run to meet a fresh slot; until issue 16's engine check
/// the PAE tables stayed, and every PAE run after the first met a slot
/// whose entry was already written.
pub fn drop_empty_kernel_tables(addr: u32, len: u32) {
    let span = geometry().pmd_size() as u32;
    with_vmlist(|_| {
        let mut va = addr & !(span - 1);
        while va < addr + len {
            let pmd = pmd_offset(
                pgd_offset(swapper_pg_dir(), VirtAddr::new(va)),
                VirtAddr::new(va),
            );
            let e = pmd.read();
            if pmd_present(e) && !table_in_use(e.phys() as u32) {
                // flush_tlb_all below, once for every slot.
                clear_kernel_pmd_everywhere(va).1.ignore();
                free_frame(e.phys() as u32);
                PGTABLE_PAGES.fetch_sub(1, Ordering::Relaxed);
            }
            va += span;
        }
        crate::arch::x86::smp::flush_tlb_all();
    });
}

/// Clear the kernel pmd of `va`'s slot in init_mm and, two-level, in every
/// directory of `pgd_list` (in PAE they share init_mm's PMD pages): the
/// entry init_mm held, and the flush the caller owes for all of them.
/// Neither frees the table nor counts it: the table's owner does.
pub fn clear_kernel_pmd_everywhere(va: u32) -> (Pmd, crate::mm::tlb::TlbFlush) {
    let at = VirtAddr::new(va);
    if !is_pae() {
        for &pgd in PGD_LIST.lock().iter() {
            // The caller's flush covers every directory.
            pmd_clear(pmd_offset(pgd_offset(pgd, at), at)).ignore();
        }
    }
    let pmd = pmd_offset(pgd_offset(swapper_pg_dir(), at), at);
    let e = pmd.read();
    (e, pmd_clear(pmd))
}

/// Whether any entry of the page table at `table` is not `pte_none`
/// (all-zero), read as one page of words: the two-CPU 2020 explorer
/// asks this once per run, and entry by entry it cost more than the run.
fn table_in_use(table: u32) -> bool {
    // SAFETY: a kernel page-table frame: direct-mapped, a page long.
    let words = unsafe { core::slice::from_raw_parts(__va(table) as *const u32, PAGE_SIZE / 4) };
    words.iter().any(|&w| w != 0)
}

fn drop_tables_where(addr: u32, len: u32, busy: impl Fn(&AreaAllocator, u32) -> bool) {
    with_vmlist(|v| {
        let mut slot = addr & !((4 << 20) - 1);
        while slot < addr + len {
            let busy = busy(v, slot);
            let pmd = pmd_offset(
                pgd_offset(swapper_pg_dir(), VirtAddr::new(slot)),
                VirtAddr::new(slot),
            );
            let e = pmd.read();
            if !busy && pmd_present(e) && !is_pae() {
                // flush_tlb_all below, once for every slot.
                clear_kernel_pmd_everywhere(slot).1.ignore();
                free_frame(e.phys() as u32);
                PGTABLE_PAGES.fetch_sub(1, Ordering::Relaxed);
            }
            slot += 4 << 20;
        }
        crate::arch::x86::smp::flush_tlb_all();
    });
}
