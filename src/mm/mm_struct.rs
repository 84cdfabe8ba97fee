//! Address spaces: `init_mm` owns `swapper_pg_dir`; `mm_alloc` makes a new
//! directory whose kernel part is a copy of `swapper_pg_dir` *at that
//! moment* (Linux 2.4 `pgd_alloc`/`get_pgd_slow`).  That copy is what goes
//! stale when vmalloc later fills a new kernel PGD slot in `init_mm` only.
//!
//! In PAE mode the copy is one PDPTE: the kernel PMD page itself is shared,
//! so vmalloc's PMD writes are seen by every address space at once.

extern crate alloc;

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};

use spin::Once;

use crate::arch::x86::spinlock::SpinLock;

use super::addr::__va;
use super::frame::{alloc_zeroed_frame, free_frame};
use super::init::swapper_pg_dir;
use super::pgtable::*;
use super::walk::{self, MapError, Walk};
use crate::mm::addr::PhysAddr;
use crate::mm::addr::VirtAddr;

/// Linux's `struct mm_struct`, reduced to what the experiments need.
#[derive(Debug)]
pub struct MmStruct {
    /// Physical address of the directory (PGD page, or PDPT in PAE).
    pub pgd: PhysAddr,
    /// A number for reports (`init_mm` is 0).
    pub id: u32,
    /// Serialises page-table changes in the user part (2.4's
    /// `page_table_lock`).
    pub page_table_lock: SpinLock<()>,
}

static NEXT_ID: AtomicU32 = AtomicU32::new(1);
static INIT_MM: Once<Arc<MmStruct>> = Once::new();

/// Every live directory, for `eager` syncs (Linux's `pgd_list`).
pub static PGD_LIST: SpinLock<Vec<PhysAddr>> = SpinLock::new(Vec::new());

/// `init_mm`, whose directory is `swapper_pg_dir`.
pub fn init_mm() -> &'static Arc<MmStruct> {
    INIT_MM.call_once(|| {
        Arc::new(MmStruct {
            pgd: swapper_pg_dir(),
            id: 0,
            page_table_lock: SpinLock::new(()),
        })
    })
}

/// Copy the kernel part of `swapper_pg_dir` into the directory at `pgd`:
/// 2.4's `memcpy(pgd + USER_PTRS_PER_PGD, swapper_pg_dir + ..., ...)`.
/// The lab's model of 2.4.0-test10-pre1's `get_pgd_slow` calls it too.
pub fn copy_kernel_part(pgd: u32) {
    let g = geometry();
    let from = __va((swapper_pg_dir()).as_u32()) as *const u8;
    let to = __va(pgd) as *mut u8;
    let off = g.user_ptrs_per_pgd() * g.entry_size;
    let len = (g.ptrs_per_pgd - g.user_ptrs_per_pgd()) * g.entry_size;
    // SAFETY: both directories are live, page-sized, direct-mapped frames,
    // and `to` is not yet visible to anyone else.
    unsafe { core::ptr::copy_nonoverlapping(from.add(off), to.add(off), len) };
}

/// `mm_alloc()` + `pgd_alloc()`.  `None` when frames run out (nothing is
/// leaked).
pub fn mm_alloc() -> Option<Arc<MmStruct>> {
    let pgd = alloc_zeroed_frame()?;
    if is_pae() {
        // 2.4 PAE get_pgd_slow: one PMD page per user PDPTE, up front.
        let g = PAE;
        for i in 0..g.user_ptrs_per_pgd() {
            let Some(pmd) = alloc_zeroed_frame() else {
                walk::free_user_tables(PhysAddr::new(pgd), false);
                free_frame(pgd);
                return None;
            };
            set_pgd(
                pgd_slot(PhysAddr::new(pgd), i),
                mk_pgd(pmd as u64, PteFlags::PDPTE),
            );
        }
    }
    // The copy and the registration happen under the pgd_list lock, so an
    // eager sync can never fall between them (5.x's pgd_ctor and
    // pgd_list_add under pgd_lock).
    {
        let mut list = PGD_LIST.lock();
        copy_kernel_part(pgd);
        list.push(PhysAddr::new(pgd));
    }
    super::fault_stats::reset_pgd_count(pgd);
    Some(Arc::new(MmStruct {
        pgd: PhysAddr::new(pgd),
        id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        page_table_lock: SpinLock::new(()),
    }))
}

/// An address space around a directory another `pgd_alloc` built (the
/// lab's model of 2.4.0-test10-pre1's, which copies the kernel part
/// itself and links the mm into no list): not in `pgd_list`, freed, with
/// its directory, like any other mm.
pub fn mm_of_pgd(pgd: PhysAddr) -> Arc<MmStruct> {
    super::fault_stats::reset_pgd_count(pgd.as_u32());
    Arc::new(MmStruct {
        pgd,
        id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        page_table_lock: SpinLock::new(()),
    })
}

impl MmStruct {
    pub fn is_init_mm(&self) -> bool {
        self.id == 0
    }

    /// Map a fresh zeroed page at user address `va`; returns its frame.
    pub fn map_user_page(&self, va: u32) -> Result<u32, MapError> {
        let _g = self.page_table_lock.lock();
        let frame = alloc_zeroed_frame().ok_or(MapError::OutOfMemory)?;
        walk::map_page(
            self.pgd,
            VirtAddr::new(va),
            frame as u64,
            PteFlags::PAGE_SHARED,
        )
        .inspect_err(|_| free_frame(frame))?;
        Ok(frame)
    }

    /// Unmap and free the page at `va`.
    pub fn unmap_user_page(&self, va: u32) -> bool {
        let _g = self.page_table_lock.lock();
        match walk::unmap_page(self.pgd, VirtAddr::new(va)) {
            Some((f, flush)) => {
                // This CPU may run in this mm; a user page of a process
                // is not shared with another CPU's TLB here (one thread
                // per mm touches user pages).
                flush.flush();
                free_frame(f as u32);
                true
            }
            None => false,
        }
    }

    pub fn translate(&self, va: u32) -> Walk {
        walk::translate(self.pgd, VirtAddr::new(va))
    }
}

/// `mm_free` / `__mmdrop`: returns every page the mm owns.
impl Drop for MmStruct {
    fn drop(&mut self) {
        if self.is_init_mm() {
            return;
        }
        assert!(
            PhysAddr::new(crate::arch::x86::cpu::read_cr3_pa()) != self.pgd,
            "freeing mm {} while its directory is loaded in CR3",
            self.id
        );
        {
            let _irq = crate::arch::x86::cpu::irq_save();
            PGD_LIST.lock().retain(|p| *p != self.pgd);
        }
        walk::free_user_tables(self.pgd, true);
        free_frame((self.pgd).as_u32());
    }
}
