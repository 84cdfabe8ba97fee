//! Linux 2.4.2's `vmalloc_area_pages`, with its locking, for the seed's
//! point 3: the big kernel lock around the walk (mm/vmalloc.c), a kernel
//! page table allocated by `pte_alloc_kernel` (include/asm-i386/pgalloc.h)
//! and, when the pte quicklist is empty, by `get_pte_kernel_slow`
//! (arch/i386/mm/init.c), in two versions:
//!
//! - **2.4.2's**, which re-checks the pmd after the allocation:
//!   `pte = __get_free_page(GFP_KERNEL); if (pmd_none(*pmd)) { ...
//!   set_pmd ...} free_page(pte); return pmd_page(*pmd) + offset;`
//! - **the seed's (2.4.2aa)**, whose init.c hunk drops that re-check:
//!   "in 2.4 we don't hold the big lock so sleeping or not sleeping
//!   during allocations is meaningless w.r.t. serialization".
//!
//! A `GFP_KERNEL` allocation may sleep.  When free memory is low, 2.4.2's
//! `__alloc_pages` (mm/page_alloc.c) does `wakeup_kswapd(); if (gfp_mask
//! & __GFP_WAIT) { __set_current_state(TASK_RUNNING); current->policy |=
//! SCHED_YIELD; schedule(); }`, and `schedule` drops the big kernel lock
//! (`release_kernel_lock`) until the task runs again.  `Pressure::Low`
//! is that state of memory; this kernel's frame allocator never sleeps,
//! so the model takes the path itself.  Linux 2.4.3-pre5 (cc80f8f99c in the
//! history mirror) moved vmalloc to `pte_alloc(&init_mm, ...)`, whose slow
//! path drops `init_mm.page_table_lock` around the allocation and re-checks:
//! "Because we dropped the lock, we should re-check the entry, as somebody
//! else could have populated it.."; 2.4.3-pre7 (90a880a460) replaced the
//! big lock in `vmalloc_area_pages` with that `page_table_lock` (pre5 and
//! pre6 held only the big lock, so `pte_alloc` dropped a lock nobody held).
//!
//! The model maps into the real init_mm, one 4 KiB page per call, and
//! notes every page table it allocates, so a run can tell a table that
//! was installed from one that was lost.

use core::sync::atomic::{AtomicU32, Ordering};

use vmfault::mm::addr::VirtAddr;
use vmfault::mm::frame::alloc_zeroed_frame;
use vmfault::mm::init::swapper_pg_dir;
use vmfault::mm::pgtable::{
    mk_pmd, mk_pte, pgd_offset, pmd_none, pmd_offset, pte_none, pte_offset, set_pmd, set_pte,
    PmdSlot, PteFlags, PteSlot,
};
use vmfault::sched::{self, lock_kernel, unlock_kernel};

/// Which `get_pte_kernel_slow`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PteKernelSlow {
    /// 2.4.2's, with the `pmd_none` re-check.
    Linux242,
    /// The seed's init.c hunk (2.4.2aa), without it.
    Seed,
}

/// Free memory when the allocation runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pressure {
    /// The allocation returns at once.
    None,
    /// Below the watermark: `__alloc_pages` yields with `schedule()`.
    Low,
}

/// Page tables allocated by this model since `take_tables`.
const MAX_TABLES: usize = 8;
static TABLES: [AtomicU32; MAX_TABLES] = [const { AtomicU32::new(0) }; MAX_TABLES];
static NR_TABLES: AtomicU32 = AtomicU32::new(0);

/// The page tables allocated since the last call, and forget them.
pub fn take_tables() -> ([u32; MAX_TABLES], usize) {
    let n = (NR_TABLES.swap(0, Ordering::SeqCst) as usize).min(MAX_TABLES);
    let mut out = [0; MAX_TABLES];
    for (o, t) in out.iter_mut().zip(&TABLES).take(n) {
        *o = t.swap(0, Ordering::SeqCst);
    }
    (out, n)
}

/// `__get_free_page(GFP_KERNEL)`, and `alloc_page(GFP_KERNEL)` before
/// its frame is known: under low memory, `__alloc_pages` yields first.
pub(crate) fn gfp_kernel_may_sleep(pressure: Pressure) {
    if pressure == Pressure::Low {
        // current->policy |= SCHED_YIELD; schedule();
        sched::yield_now();
    }
}

/// `__get_free_page(GFP_KERNEL)` for a page table.
fn get_free_page(pressure: Pressure) -> Option<u32> {
    gfp_kernel_may_sleep(pressure);
    let page = alloc_zeroed_frame()?;
    let i = NR_TABLES.fetch_add(1, Ordering::SeqCst) as usize;
    if let Some(t) = TABLES.get(i) {
        t.store(page, Ordering::SeqCst);
    }
    Some(page)
}

/// `get_pte_kernel_slow(pmd, offset)`.
#[inline(never)]
fn get_pte_kernel_slow(
    pmd: PmdSlot,
    address: u32,
    slow: PteKernelSlow,
    pressure: Pressure,
) -> Option<PteSlot> {
    let pte = get_free_page(pressure);
    match slow {
        PteKernelSlow::Linux242 => {
            if pmd_none(pmd.read()) {
                // set_pmd(pmd, __pmd(_KERNPG_TABLE + __pa(pte)))
                set_pmd(pmd, mk_pmd(pte? as u64, PteFlags::KERNPG_TABLE));
                return Some(pte_offset(pmd, VirtAddr::new(address)));
            }
            // free_page((unsigned long)pte): someone filled the pmd while
            // we slept.
            if let Some(p) = pte {
                vmfault::mm::frame::free_frame(p);
                forget_table(p);
            }
            Some(pte_offset(pmd, VirtAddr::new(address)))
        }
        PteKernelSlow::Seed => {
            set_pmd(pmd, mk_pmd(pte? as u64, PteFlags::KERNPG_TABLE));
            Some(pte_offset(pmd, VirtAddr::new(address)))
        }
    }
}

fn forget_table(page: u32) {
    for t in &TABLES {
        let _ = t.compare_exchange(page, 0, Ordering::SeqCst, Ordering::SeqCst);
    }
}

/// `pte_alloc_kernel(pmd, address)` with the pte quicklist empty
/// (`get_pte_fast()` returns NULL: after boot, or once `check_pgt_cache`
/// has trimmed it).
pub(crate) fn pte_alloc_kernel(
    pmd: PmdSlot,
    address: u32,
    slow: PteKernelSlow,
    pressure: Pressure,
) -> Option<PteSlot> {
    if pmd_none(pmd.read()) {
        return get_pte_kernel_slow(pmd, address, slow, pressure);
    }
    Some(pte_offset(pmd, VirtAddr::new(address)))
}

/// `vmalloc_area_pages(address, PAGE_SIZE, GFP_KERNEL, PAGE_KERNEL)` for
/// one page whose frame is `frame`.  False if a page table could not be
/// had.
pub fn vmalloc_area_pages(
    address: u32,
    frame: u64,
    slow: PteKernelSlow,
    pressure: Pressure,
) -> bool {
    let ok = vmalloc_area_pages_locked(address, frame, slow, pressure);
    vmfault::arch::x86::smp::flush_tlb_all();
    ok
}

/// Its body up to `unlock_kernel()`: `lock_kernel()`, the walk, and the
/// unlock (the `flush_tlb_all` after it is the caller's).
#[inline(never)]
pub fn vmalloc_area_pages_locked(
    address: u32,
    frame: u64,
    slow: PteKernelSlow,
    pressure: Pressure,
) -> bool {
    let dir = pgd_offset(swapper_pg_dir(), VirtAddr::new(address));
    lock_kernel();
    // pmd_alloc_kernel: the kernel's pmd exists (two-level: it is the pgd
    // slot; PAE: the kernel PMD pages are made at boot).
    let pmd = pmd_offset(dir, VirtAddr::new(address));
    let ok = match pte_alloc_kernel(pmd, address, slow, pressure) {
        Some(pte) => {
            // alloc_area_pte: the data page is GFP_KERNEL too.
            if !pte_none(pte.read()) {
                vmfault::println!("alloc_area_pte: page already exists");
            }
            gfp_kernel_may_sleep(pressure);
            set_pte(pte, mk_pte(frame, PteFlags::PAGE_KERNEL));
            true
        }
        None => false,
    };
    unlock_kernel();
    ok
}

/// Whether `address` maps `frame` in init_mm (a software walk).
pub fn maps(address: u32, frame: u64) -> bool {
    vmfault::mm::walk::find_pte(swapper_pg_dir(), VirtAddr::new(address))
        .is_some_and(|pte| pte.read() == mk_pte(frame, PteFlags::PAGE_KERNEL))
}
