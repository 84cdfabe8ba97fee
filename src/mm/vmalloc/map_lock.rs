//! What each version's `vmalloc_area_pages` holds while it maps an area
//! into `init_mm`, and with which interrupt state: the lock changed three
//! times in the 2.4 series (read in the linux-history mirror), and
//! interrupts stayed on in every one of them.
//!
//! - **2.4.0-test10-pre1 and -pre2** (3f51b44787, 329794a3eb): no lock.
//!   `vmalloc_area_pages` walks `pmd_alloc_kernel`/`alloc_area_pmd` and,
//!   in test10-pre1, calls `set_pgdir` with nothing held but the
//!   `read_lock(&tasklist_lock)` inside it.  (`vmlist_lock` covers only
//!   the area list in `get_vm_area` and `vfree`.)
//! - **2.4.0-test11-pre2 to 2.4.3-pre6** (c55a7913d7, "Ben LaHaise:
//!   vmalloc threadign and overflow fix"): the big kernel lock,
//!
//!   ```c
//!   dir = pgd_offset_k(address);
//!   flush_cache_all();
//!   lock_kernel();
//!   do { ... } while (address && (address < end));
//!   unlock_kernel();
//!   flush_tlb_all();
//!   ```
//!
//!   A holder that sleeps in `alloc_page` loses it in `schedule` (the
//!   seed's point 3).  `legacy` (2.4.1) and `cli` (the seed's patch on
//!   2.4.2) map under it.
//! - **2.4.3-pre7 on** (90a880a460): `spin_lock(&init_mm.page_table_lock)`
//!   around the walk, dropped around each page's allocation:
//!
//!   ```c
//!   spin_unlock(&init_mm.page_table_lock);
//!   page = alloc_page(gfp_mask);
//!   spin_lock(&init_mm.page_table_lock);
//!   ```
//!
//!   `cr3` (2.4.5-pre1) and `sync` (2.4.5-pre2) map under it.
//!
//! `ioremap` differs in one era: `remap_area_pages` took no lock until
//! 2.4.3-pre7 (`MapLock::of_ioremap`).
//!
//! 5.8's way (`eager`, `eager-lazy`) is `map_range`'s: `page_table_lock`
//! only around a new page table, `pgd_lock` in the sync.
//!
//! Under `preempt=full` a held spinlock - the big kernel lock too - keeps
//! the holder from being preempted (`spinlock`'s `preempt_count`); under
//! 2.4's `preempt=none` nothing preempts kernel code anyway.

use spin::Once;

use crate::mm::mm_struct::init_mm;
use crate::mm::VmallocFaultVersion;

/// The lock a version's vmalloc maps under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapLock {
    /// 2.4.0-test10: none.
    None,
    /// 2.4.0-test11-pre2 to 2.4.3-pre6: `lock_kernel()`.
    KernelLock,
    /// 2.4.3-pre7 on: `init_mm.page_table_lock`, dropped around
    /// `alloc_page`.
    PageTableLock,
}

impl MapLock {
    pub const fn of(v: VmallocFaultVersion) -> Self {
        use VmallocFaultVersion as V;
        match v {
            V::SetPgdir => Self::None,
            V::Legacy | V::Cli => Self::KernelLock,
            V::Cr3 | V::Sync | V::Eager | V::EagerLazy => Self::PageTableLock,
        }
    }

    /// What `ioremap`'s `remap_area_pages` (arch/i386/mm/ioremap.c)
    /// holds: nothing until 2.4.3-pre6 - it never took the big kernel
    /// lock that vmalloc took from 2.4.0-test11-pre2 - then, from
    /// 2.4.3-pre7, `spin_lock(&init_mm.page_table_lock)` like vmalloc.
    pub const fn of_ioremap(v: VmallocFaultVersion) -> Self {
        match Self::of(v) {
            Self::KernelLock => Self::None,
            l => l,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::KernelLock => "lock_kernel",
            Self::PageTableLock => "init_mm.page_table_lock",
        }
    }
}

/// `lock_kernel` and `unlock_kernel`: the big kernel lock is the
/// scheduler's (its `lock_depth` is the task's, and `schedule` drops and
/// retakes it), and mm sits below the scheduler, so boot hands vmalloc
/// the two calls (`set_kernel_lock`).  Before that only the boot context
/// runs, and there is no one to exclude.
static KERNEL_LOCK: Once<KernelLock> = Once::new();

struct KernelLock {
    lock: fn(),
    unlock: fn(),
}

pub fn set_kernel_lock(lock: fn(), unlock: fn()) {
    KERNEL_LOCK.call_once(|| KernelLock { lock, unlock });
}

fn lock_kernel() {
    if let Some(k) = KERNEL_LOCK.get() {
        (k.lock)();
    }
}

fn unlock_kernel() {
    if let Some(k) = KERNEL_LOCK.get() {
        (k.unlock)();
    }
}

/// The map lock, held: dropped with the guard.
pub struct MapGuard {
    lock: MapLock,
}

impl MapGuard {
    /// Take `lock` with interrupts as the caller has them (on, in 2.4).
    pub fn take(lock: MapLock) -> Self {
        match lock {
            MapLock::None => {}
            MapLock::KernelLock => lock_kernel(),
            MapLock::PageTableLock => init_mm().page_table_lock.lock_held(),
        }
        MapGuard { lock }
    }

    /// A page's allocation: 2.4.3-pre7's `alloc_area_pte` drops
    /// `page_table_lock` around it (the allocation may sleep); the big
    /// kernel lock stays held (`schedule` drops it if it sleeps).
    pub fn around_alloc<R>(&mut self, f: impl FnOnce() -> R) -> R {
        if self.lock != MapLock::PageTableLock {
            return f();
        }
        // SAFETY: this guard took it in `take` (or below), on this CPU:
        // the walk never sleeps holding it.
        unsafe { init_mm().page_table_lock.unlock_held() };
        let r = f();
        init_mm().page_table_lock.lock_held();
        r
    }
}

impl Drop for MapGuard {
    fn drop(&mut self) {
        match self.lock {
            MapLock::None => {}
            MapLock::KernelLock => unlock_kernel(),
            // SAFETY: taken by this guard on this CPU, as above.
            MapLock::PageTableLock => unsafe { init_mm().page_table_lock.unlock_held() },
        }
    }
}
