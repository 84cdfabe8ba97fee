//! Linux 2.4.0-test10-pre1's new address space and its vmalloc, for the
//! race that ended the eager `set_pgdir` (commit 3f51b44787 of the history
//! mirror; test10-pre2, 329794a3eb, "vmalloc: page table update race
//! condition.", replaced it with the lazy `vmalloc_fault`).
//!
//! **The fork side** (kernel/fork.c).  `do_fork` calls `copy_mm`, whose
//! `mm_init` does `mm->pgd = pgd_alloc();`: `get_pgd_fast`, which finds
//! `pgd_quicklist` empty (test10-pre1's `pgd_free` is `free_pgd_slow`, so
//! nothing ever fills it), hence `get_pgd_slow`:
//!
//! ```c
//! pgd_t *ret = (pgd_t *)__get_free_page(GFP_KERNEL);
//! if (ret) {
//!         memset(ret, 0, USER_PTRS_PER_PGD * sizeof(pgd_t));
//!         memcpy(ret + USER_PTRS_PER_PGD, swapper_pg_dir + USER_PTRS_PER_PGD, (PTRS_PER_PGD - USER_PTRS_PER_PGD) * sizeof(pgd_t));
//! }
//! ```
//!
//! Then `dup_mmap` (`tmp = kmem_cache_alloc(vm_area_cachep, SLAB_KERNEL);`
//! per vma, and `copy_page_range`, whose `pte_alloc` may take a
//! `GFP_KERNEL` page), `copy_thread`, and only then is the task visible:
//!
//! ```c
//! write_lock_irq(&tasklist_lock);
//! ...
//! SET_LINKS(p);
//! hash_pid(p);
//! nr_threads++;
//! write_unlock_irq(&tasklist_lock);
//! ```
//!
//! No big kernel lock: neither `sys_fork` nor `do_fork` takes it, nor
//! does test10-pre1's `vmalloc_area_pages` (set_pgdir's comment "To
//! pgd_alloc/pgd_free, one holds master kernel lock and so does our
//! callee" describes no caller of this release).
//!
//! **The vmalloc side** (mm/vmalloc.c, include/asm-i386/pgalloc.h): the
//! walk of `vmalloc_area_pages` with no lock, `pte_alloc_kernel` (the same
//! `get_pte_kernel_slow`, re-check included, as 2.4.2's: `vmalloc242`),
//! the page, and `set_pgdir(address, *dir)` over the task list under
//! `read_lock(&tasklist_lock)`.
//!
//! The task list is reduced to what `set_pgdir` reads, each linked task's
//! `p->mm->pgd`.  `tasklist_lock` is an rwlock; here it is a spinlock,
//! which excludes the same pairs in this model (one reader, one writer).
//! The directories are real: the copy reads the real `swapper_pg_dir`, B
//! maps into the real init_mm, and a run's child can be switched to.

extern crate alloc;

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};

use vmfault::arch::x86::spinlock::SpinLock;
use vmfault::mm::addr::{PhysAddr, VirtAddr};
use vmfault::mm::frame::{alloc_frame, alloc_zeroed_frame, free_frame};
use vmfault::mm::init::swapper_pg_dir;
use vmfault::mm::mm_struct::copy_kernel_part;
use vmfault::mm::pgtable::{
    mk_pmd, mk_pte, pgd_offset, pgd_val, pmd_none, pmd_offset, pte_none, pte_offset, set_pgd,
    set_pmd, set_pte, PteFlags,
};

use crate::vmalloc242::{self, Pressure};

/// Where the forking task may sleep between `pgd_alloc` and `SET_LINKS`
/// (a `GFP_KERNEL` allocation below the watermark yields, as
/// `vmalloc242` models 2.4's `__alloc_pages`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SleepPoint {
    /// `get_pgd_slow`'s `__get_free_page(GFP_KERNEL)`: before the copy.
    PgdPage,
    /// `dup_mmap`'s `kmem_cache_alloc(vm_area_cachep, SLAB_KERNEL)`.
    VmaAlloc,
    /// `copy_page_range`'s `pte_alloc` (`get_pte_slow`, `GFP_KERNEL`).
    PteAlloc,
}

impl SleepPoint {
    pub const ALL: [SleepPoint; 3] = [Self::PgdPage, Self::VmaAlloc, Self::PteAlloc];

    pub fn name(self) -> &'static str {
        match self {
            Self::PgdPage => "get_pgd_slow's __get_free_page, before the copy",
            Self::VmaAlloc => "dup_mmap's kmem_cache_alloc, after the copy",
            Self::PteAlloc => "copy_page_range's pte_alloc, after the copy",
        }
    }
}

/// `tasklist_lock` and, under it, the linked tasks' directories.
pub static TASKLIST: SpinLock<Vec<PhysAddr>> = SpinLock::new(Vec::new());

/// Where this fork sleeps (`u32::MAX`: nowhere, memory plentiful).
static SLEEP_AT: AtomicU32 = AtomicU32::new(u32::MAX);

/// The child's vma and page-table pages (`dup_mmap`'s), freed by
/// `release_child`.
static CHILD_PAGES: [AtomicU32; 2] = [const { AtomicU32::new(0) }; 2];

/// Make the next forks sleep at `at` (or nowhere).
pub fn sleep_at(at: Option<SleepPoint>) {
    let v = at.map_or(u32::MAX, |p| p as u32);
    SLEEP_AT.store(v, Ordering::SeqCst);
}

fn may_sleep(here: SleepPoint) {
    let sleeps = SLEEP_AT.load(Ordering::SeqCst) == here as u32;
    vmalloc242::gfp_kernel_may_sleep(if sleeps {
        Pressure::Low
    } else {
        Pressure::None
    });
}

/// Link the parent: the task that forks, already on the task list.
/// (Room for the child too: `SET_LINKS` must not allocate.)
pub fn link_parent(pgd: PhysAddr) {
    let _irq = vmfault::arch::x86::cpu::irq_save();
    let mut list = TASKLIST.lock();
    list.reserve(4);
    list.push(pgd);
}

/// Empty the task list (after a run).
pub fn unlink_all() {
    let _irq = vmfault::arch::x86::cpu::irq_save();
    TASKLIST.lock().clear();
}

/// `get_pgd_slow`: a page, the user part zeroed (the frame comes zeroed),
/// the kernel part copied from `swapper_pg_dir`.
fn get_pgd_slow() -> Option<PhysAddr> {
    may_sleep(SleepPoint::PgdPage);
    let pgd = alloc_zeroed_frame()?;
    copy_kernel_part(pgd);
    Some(PhysAddr::new(pgd))
}

/// `dup_mmap` for a parent with one vma: the child's vma, and a page
/// table for it in `copy_page_range`.
fn dup_mmap() -> bool {
    may_sleep(SleepPoint::VmaAlloc);
    let Some(vma) = alloc_frame() else {
        return false;
    };
    CHILD_PAGES[0].store(vma, Ordering::SeqCst);
    may_sleep(SleepPoint::PteAlloc);
    let Some(pte) = alloc_zeroed_frame() else {
        return false;
    };
    CHILD_PAGES[1].store(pte, Ordering::SeqCst);
    true
}

/// `write_lock_irq(&tasklist_lock); SET_LINKS(p); write_unlock_irq(...)`.
#[inline(never)]
fn set_links(pgd: PhysAddr) {
    let mut list = TASKLIST.lock_irqsave();
    list.push(pgd);
}

/// `copy_mm` for a fork without `CLONE_VM`, through `do_fork`'s
/// `SET_LINKS`: the child's directory, or `None` with nothing allocated.
#[inline(never)]
pub fn do_fork_mm() -> Option<PhysAddr> {
    // mm_init: mm->pgd = pgd_alloc();  (get_pgd_fast: quicklist empty)
    let pgd = get_pgd_slow()?;
    if !dup_mmap() {
        release_child(pgd);
        return None;
    }
    // copy_thread(...): nothing here touches the directory.
    set_links(pgd);
    Some(pgd)
}

/// Free what `do_fork_mm` allocated besides the directory, which the
/// caller's mm (`mm_of_pgd`) or this frees.
pub fn release_child_pages() {
    for p in &CHILD_PAGES {
        let f = p.swap(0, Ordering::SeqCst);
        if f != 0 {
            free_frame(f);
        }
    }
}

fn release_child(pgd: PhysAddr) {
    release_child_pages();
    free_frame(pgd.as_u32());
}

/// `set_pgdir` calls since `take_set_pgdir_runs`.
static SET_PGDIR_RUNS: AtomicU32 = AtomicU32::new(0);

pub fn take_set_pgdir_runs() -> u32 {
    SET_PGDIR_RUNS.swap(0, Ordering::SeqCst)
}

/// `set_pgdir(address, entry)`: every linked task's directory, under the
/// read side of `tasklist_lock`; the quicklists are empty (see above).
#[inline(never)]
fn set_pgdir(address: u32) {
    SET_PGDIR_RUNS.fetch_add(1, Ordering::SeqCst);
    let entry = pgd_offset(swapper_pg_dir(), VirtAddr::new(address)).read();
    let list = TASKLIST.lock();
    for &pgd in list.iter() {
        // *pgd_offset(p->mm,address) = entry;
        set_pgd(pgd_offset(pgd, VirtAddr::new(address)), entry);
    }
}

/// The page the next `get_pte_kernel_slow` gets from `__get_free_page`,
/// set aside before the run (`reserve_pte_page`).  This kernel's frame
/// allocator takes a lock the stepper cannot see B wait on, and A may be
/// stopped holding it; 2.4's page allocator takes `zone->lock`, on which B
/// would wait until A dropped it, with A still on the same side of its
/// copy and its `SET_LINKS`, so the outcome is the same.
static PTE_PAGE: AtomicU32 = AtomicU32::new(0);

/// Set a zeroed page aside for B's page table; false without memory.
pub fn reserve_pte_page() -> bool {
    match alloc_zeroed_frame() {
        Some(p) => {
            PTE_PAGE.store(p, Ordering::SeqCst);
            true
        }
        None => false,
    }
}

/// The page table B installed, or the page it did not use (freed by the
/// caller): the reserved page, and forget it.
pub fn take_pte_page() -> u32 {
    PTE_PAGE.swap(0, Ordering::SeqCst)
}

/// `pte_alloc_kernel` with the pte quicklist empty, hence test10-pre1's
/// `get_pte_kernel_slow` (arch/i386/mm/init.c, the same as 2.4.2's):
///
/// ```c
/// pte = (pte_t *) __get_free_page(GFP_KERNEL);
/// if (pmd_none(*pmd)) {
///         if (pte) {
///                 clear_page(pte);
///                 set_pmd(pmd, __pmd(_KERNPG_TABLE + __pa(pte)));
///                 return pte + offset;
///         }
///         ...
/// }
/// free_page((unsigned long)pte);
/// ```
fn pte_alloc_kernel(
    pmd: vmfault::mm::pgtable::PmdSlot,
    address: u32,
) -> Option<vmfault::mm::pgtable::PteSlot> {
    if pmd_none(pmd.read()) {
        let pte = PTE_PAGE.load(Ordering::SeqCst);
        if pte == 0 {
            return None;
        }
        if pmd_none(pmd.read()) {
            set_pmd(pmd, mk_pmd(pte as u64, PteFlags::KERNPG_TABLE));
        }
    }
    Some(pte_offset(pmd, VirtAddr::new(address)))
}

/// test10-pre1's `vmalloc_area_pages` for one page at `address` whose
/// frame is `frame`: no lock; `set_pgdir` if the walk changed the pgd.
#[inline(never)]
pub fn vmalloc_area_pages(address: u32, frame: u64) -> bool {
    let dir = pgd_offset(swapper_pg_dir(), VirtAddr::new(address));
    // pgd_t olddir = *dir;
    let olddir = pgd_val(dir.read());
    // pmd = pmd_alloc_kernel(dir, address);  (folded, or PAE's kernel pmd)
    let pmd = pmd_offset(dir, VirtAddr::new(address));
    let Some(pte) = pte_alloc_kernel(pmd, address) else {
        return false;
    };
    // alloc_area_pte
    if !pte_none(pte.read()) {
        vmfault::println!("alloc_area_pte: page already exists");
    }
    set_pte(pte, mk_pte(frame, PteFlags::PAGE_KERNEL));
    // if (pgd_val(olddir) != pgd_val(*dir)) set_pgdir(address, *dir);
    if olddir != pgd_val(dir.read()) {
        set_pgdir(address);
    }
    vmfault::arch::x86::smp::flush_tlb_all();
    true
}
