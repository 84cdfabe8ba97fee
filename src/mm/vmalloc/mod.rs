//! `vmalloc` and friends, shared through `init_mm`: pages are mapped into
//! `swapper_pg_dir` only.  When that needs a new page table in two-level
//! mode, the new PGD entry exists in `init_mm` alone, and every other
//! address space picks it up lazily in `vmalloc_fault` (mm/fault.rs) the
//! first time it touches the area.  Under `vmalloc_fault=eager` and
//! `eager-lazy` the area is mapped as 5.8 maps it (`map_range`): the new
//! entry is copied into every address space after the whole range is
//! mapped (`arch_sync_kernel_mappings`).
//!
//! Layout (Linux 2.4 `pgtable.h`): `VMALLOC_START` is `high_memory`
//! rounded up past an 8 MiB hole (`VMALLOC_OFFSET`), so stray accesses
//! just past the direct map fault.  `VMALLOC_END` is our own choice (the
//! top 16 MiB left to the fixmap; 2.4.1's is two pages below `PKMAP_BASE`
//! or `FIXADDR_START`: see `arch/x86/page.rs`).
//!
//! This file is the API (`vmalloc`, `vmap`, `ioremap`, their frees) and the
//! mapping it does; `stack` holds the thread stacks, `info` what vmalloc
//! reports, `lab_support` what the experiments need beyond the API.

use core::panic::Location;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, Ordering};

use spin::Mutex;

use crate::arch::x86::spinlock::SpinLock;
use crate::console::printk_ratelimit;
use crate::mm::addr::high_memory;
use crate::mm::addr::PhysAddr;
use crate::mm::addr::VirtAddr;
use crate::mm::addr::PAGE_SIZE;
use crate::mm::frame::{alloc_frame, free_frame};
use crate::mm::init::swapper_pg_dir;
use crate::mm::mm_struct::PGD_LIST;
use crate::mm::pgtable::*;
use crate::mm::vm_area::{AreaAllocator, VmArea, VmFlags};
use crate::mm::walk::{self, MapError};
use crate::mm::VmallocFaultVersion;
use crate::{pr_err, pr_warn, println};

mod info;
mod lab_support;
mod map_lock;
mod map_range;
mod set_pgdir;
mod stack;

pub use info::*;
pub use lab_support::*;
pub use map_lock::{set_kernel_lock, MapLock};
pub use set_pgdir::set_pgdir_syncs;
pub use stack::*;

/// Linux 2.4's `VMALLOC_OFFSET`.
pub const VMALLOC_OFFSET: u32 = 8 << 20;

pub use crate::mm::addr::VMALLOC_END;

/// The top of the vmalloc area holds kernel thread stacks only: four
/// two-level PGD slots, room for over 200 stacks with their guards.
pub const STACK_ZONE_SIZE: u32 = 16 << 20;

pub const STACK_ZONE_START: u32 = VMALLOC_END - STACK_ZONE_SIZE;

// gdb reads this by its plain name (tests/host/gdb/vmfault-gdb.py).

#[no_mangle]
pub(super) static VMALLOC_START: AtomicU32 = AtomicU32::new(0);

/// Linux 2.4's `vmlist_lock`, around the area tree and the page-table
/// writes into `init_mm` (seed point 3: no re-checks needed under it).
pub(super) static VMLIST: SpinLock<Option<AreaAllocator>> = SpinLock::new(None);

/// Kernel page-table pages vmalloc created; they stay for the kernel's
/// life, as in 2.4 (other address spaces may point at them).
pub(super) static PGTABLE_PAGES: AtomicU32 = AtomicU32::new(0);

/// New stack-zone PGD entries copied into other directories (every
/// version: a stack cannot be synced lazily, see `vmalloc_stack`).
pub(super) static STACK_SYNCS: AtomicU32 = AtomicU32::new(0);

pub fn vmalloc_start() -> u32 {
    VMALLOC_START.load(Ordering::Relaxed)
}

pub fn is_stack_zone_addr(addr: u32) -> bool {
    (STACK_ZONE_START..VMALLOC_END).contains(&addr)
}

/// How a new kernel PGD entry reaches the other directories: the
/// `vmalloc_fault=` version, given once by `mm::init` (vmalloc does the
/// eager sync itself; every other version leaves it to the fault path).
static VERSION: Mutex<VmallocFaultVersion> = Mutex::new(VmallocFaultVersion::Sync);

/// 5.8's way of mapping (and syncing) an area, under `eager`/`eager-lazy`.
fn eager() -> bool {
    VERSION.lock().syncs_eagerly()
}

/// test10-pre1's `set_pgdir` after each slot, under `set_pgdir`.
fn sets_pgdir() -> bool {
    VERSION.lock().sets_pgdir()
}

/// The lock the booted version's `vmalloc_area_pages` maps under.
pub fn map_lock() -> MapLock {
    MapLock::of(*VERSION.lock())
}

/// The lock an area of this kind is mapped under (`ioremap`'s own rule).
fn map_lock_for(flags: VmFlags) -> MapLock {
    match flags.contains(VmFlags::IOREMAP) {
        true => MapLock::of_ioremap(*VERSION.lock()),
        false => map_lock(),
    }
}

/// Whether new kernel PGD entries are synced eagerly: set with the
/// fault path's version (`mm::fault::set_vmalloc_fault`).
pub fn set_version(version: VmallocFaultVersion) {
    *VERSION.lock() = version;
}

pub fn init() {
    let start = (high_memory() as u32 + 2 * VMALLOC_OFFSET - 1) & !(VMALLOC_OFFSET - 1);
    VMALLOC_START.store(start, Ordering::Relaxed);
    *VMLIST.lock() = Some(AreaAllocator::with_stack_zone(
        start,
        STACK_ZONE_START,
        VMALLOC_END,
    ));
    println!(
        "vmalloc: {:#010x}-{:#010x} ({} MiB), lazy PGD sync by vmalloc_fault={}; stacks {:#010x}-{:#010x}",
        start,
        STACK_ZONE_START,
        (STACK_ZONE_START - start) >> 20,
        VERSION.lock().name(),
        STACK_ZONE_START,
        VMALLOC_END
    );
}

/// Run `f` on the area tree with the lock held and interrupts off.  2.4
/// took `vmlist_lock` with interrupts on; here the fault path's
/// guard-page question (`find_vm_area`, in an oops) takes it too, and an
/// interrupt handler's oops must not spin on a lock its CPU holds.  The
/// wait for the lock keeps interrupts as the caller had them: the holder
/// may be waiting for this CPU's TLB flush (`flush_tlb_all`).  The page
/// tables are written under each version's own lock (`map_lock`).
pub(super) fn with_vmlist<R>(f: impl FnOnce(&mut AreaAllocator) -> R) -> R {
    let mut vmlist = VMLIST.lock_irqsave();
    f(vmlist.as_mut().expect("vmalloc not initialised"))
}

/// vmalloc may sleep (2.4's `GFP_KERNEL` pages) and maps under a lock
/// taken with interrupts on: an interrupt handler must not call it.
/// Refused with a message instead of a deadlock.
pub(super) fn refuse_in_interrupt(what: &str) -> bool {
    let depth = crate::arch::x86::irq::depth();
    if depth > 0 {
        pr_err!(
            "{}: called from an interrupt handler (depth {}): it may sleep and maps under a lock taken with interrupts on",
            what,
            depth
        );
    }
    depth > 0
}

/// Copy `init_mm`'s entry for the PGD slot of `addr` into every directory
/// in `pgd_list` (a thread stack's slot, whatever the version: see
/// `vmalloc_stack`; test10-pre1's `set_pgdir`).  pgd_list's lock is taken
/// inside, and mm_alloc copies the kernel part under the same lock, so no
/// directory in the list can miss it.
pub(super) fn sync_kernel_pgd_slot(addr: u32, counter: &AtomicU32) {
    let val = pgd_offset(swapper_pg_dir(), VirtAddr::new(addr)).read();
    let list = PGD_LIST.lock();
    for &pgd in list.iter() {
        set_pgd(
            pgd_offset(PhysAddr::new((pgd).as_u32()), VirtAddr::new(addr)),
            val,
        );
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Map one page into `init_mm` (2.4's `alloc_area_pte`).  A PTE page
/// allocated here is a new kernel PGD entry in two-level mode: it exists
/// in `swapper_pg_dir` only (a stack's is synced at once).  Returns
/// whether it allocated one.
pub(super) fn map_kernel_page(va: u32, pa: u64, flags: PteFlags) -> Result<bool, MapError> {
    let pgd = pgd_offset(swapper_pg_dir(), VirtAddr::new(va));
    let pmd = pmd_offset(pgd, VirtAddr::new(va));
    let new_table = pmd_none(pmd.read());
    let pte = walk::pte_alloc(pmd, VirtAddr::new(va), false)?;
    if new_table {
        PGTABLE_PAGES.fetch_add(1, Ordering::Relaxed);
        if !is_pae() && is_stack_zone_addr(va) {
            sync_kernel_pgd_slot(va, &STACK_SYNCS);
        }
    }
    set_pte(pte, mk_pte(pa, flags));
    Ok(new_table)
}

/// Unmap `[addr, addr + pages)` from `init_mm`; free the frames if the
/// area owns them.  The page tables stay (2.4's `vmfree_area_pages`).
pub(super) fn unmap_kernel_range(addr: u32, pages: u32, free_frames: bool) {
    for i in 0..pages {
        let va = addr + i * PAGE_SIZE as u32;
        // 2.4 free_area_pte: page = ptep_get_and_clear(pte); ...
        if let Some(pte) = walk::find_pte(swapper_pg_dir(), VirtAddr::new(va)) {
            let page = ptep_get_and_clear(pte);
            if pte_present(page) && free_frames {
                free_frame(page.phys() as u32);
            }
        }
    }
    // 2.4's flush_tlb_all(): here and on every other CPU.  (Non-global
    // kernel entries cached for other directories on this CPU go with
    // their next CR3 load.)
    crate::arch::x86::smp::flush_tlb_all();
}

pub(super) fn check_size(size: usize, what: &str) -> Option<u32> {
    let max = (STACK_ZONE_START - vmalloc_start()) as usize;
    if size == 0 {
        pr_warn!("{}: refusing a 0-byte allocation", what);
        return None;
    }
    if size > max {
        pr_warn!(
            "{}: size {:#x} is larger than the vmalloc area ({:#x} bytes)",
            what,
            size,
            max
        );
        return None;
    }
    Some(super::addr::page_align_up(size) as u32)
}

pub(super) fn reserve(
    size: u32,
    flags: VmFlags,
    what: &str,
    caller: &'static Location<'static>,
) -> Option<VmArea> {
    let area = with_vmlist(|v| v.get_vm_area(size, flags, caller));
    if area.is_none() {
        pr_warn!(
            "{}: no free gap of {:#x} bytes (plus guard page) in the vmalloc area",
            what,
            size
        );
    }
    area
}

/// Map pages `page(i)` of a reserved area (from page `first` on: a stack
/// leaves its lowest page unmapped); on failure undo everything.
pub(super) fn populate(
    area: &VmArea,
    first: u32,
    flags: PteFlags,
    owned: bool,
    mut page: impl FnMut(u32) -> Option<u64>,
) -> bool {
    if eager() && !area.flags.contains(VmFlags::STACK) {
        return populate_5_8(area, first, flags, owned, page);
    }
    let mut sync = set_pgdir::SlotSync::new(area.flags.contains(VmFlags::STACK));
    let mut map = map_lock::MapGuard::take(map_lock_for(area.flags));
    for i in first..area.nr_pages {
        let va = area.addr + i * PAGE_SIZE as u32;
        sync.next_page(va);
        // Interrupts stay on, as in every 2.4 release: one may come in
        // between the page's allocation and its mapping.
        let mapped = match map.around_alloc(|| page(i)) {
            Some(pa) => {
                let r = map_kernel_page(va, pa, flags);
                if r.is_err() && owned {
                    free_frame(pa as u32);
                }
                if let Ok(new_table) = r {
                    sync.mapped(va, new_table);
                }
                r.is_ok()
            }
            None => false,
        };
        if !mapped {
            // 2.4: `break;` out of the walk, `unlock_kernel()` (or the
            // page_table_lock), and vmalloc's `vfree(addr)`.
            drop(map);
            with_vmlist(|v| {
                unmap_kernel_range(area.addr, i, owned);
                v.remove_vm_area(area.addr);
            });
            // test10-pre1: `return -ENOMEM;` before `set_pgdir`.
            return false;
        }
    }
    drop(map);
    sync.done();
    true
}

/// 5.8's `__vmalloc_area_node`: every page first, then
/// `map_kernel_range`, with no lock held across the two (see `map_range`).
fn populate_5_8(
    area: &VmArea,
    first: u32,
    flags: PteFlags,
    owned: bool,
    mut page: impl FnMut(u32) -> Option<u64>,
) -> bool {
    extern crate alloc;
    let mut pages = alloc::vec::Vec::with_capacity((area.nr_pages - first) as usize);
    for i in first..area.nr_pages {
        match page(i) {
            Some(pa) => pages.push(pa),
            None => break,
        }
    }
    let start = area.addr + first * PAGE_SIZE as u32;
    let mapped = if pages.len() == (area.nr_pages - first) as usize {
        match map_range::map_kernel_range_noflush(start, &pages, flags) {
            Ok(()) => return true,
            Err((n, _)) => n,
        }
    } else {
        0
    };
    // Undo: the mapped pages through the tables, the rest directly.
    with_vmlist(|v| {
        unmap_kernel_range(start, mapped as u32, owned);
        v.remove_vm_area(area.addr);
    });
    if owned {
        for &pa in &pages[mapped..] {
            free_frame(pa as u32);
        }
    }
    false
}

/// `vmalloc(size)`: virtually contiguous, page-granular kernel memory.
/// `None` (with a warning) for 0 bytes, a size beyond the area, no gap
/// large enough, or no frames; a failure leaves no frame allocated.
#[track_caller]
pub fn vmalloc(size: usize) -> Option<NonNull<u8>> {
    let caller = Location::caller();
    if refuse_in_interrupt("vmalloc") {
        return None;
    }
    let size = check_size(size, "vmalloc")?;
    let area = reserve(size, VmFlags::ALLOC, "vmalloc", caller)?;
    if !populate(&area, 0, PteFlags::PAGE_KERNEL | PteFlags::NX, true, |_| {
        alloc_frame().map(|f| f as u64)
    }) {
        pr_warn!(
            "vmalloc: allocation failure: out of memory for {:#x} bytes",
            size
        );
        return None;
    }
    NonNull::new(area.addr as *mut u8)
}

/// `vmap(pages)`: map the caller's frames contiguously.  The frames stay
/// the caller's: `vunmap` does not free them.
#[track_caller]
pub fn vmap(frames: &[u32]) -> Option<NonNull<u8>> {
    let caller = Location::caller();
    if refuse_in_interrupt("vmap") {
        return None;
    }
    let size = check_size(frames.len() * PAGE_SIZE, "vmap")?;
    let area = reserve(size, VmFlags::MAP, "vmap", caller)?;
    if !populate(&area, 0, PteFlags::PAGE_KERNEL | PteFlags::NX, false, |i| {
        Some(frames[i as usize] as u64)
    }) {
        pr_warn!("vmap: out of memory for page tables");
        return None;
    }
    NonNull::new(area.addr as *mut u8)
}

/// `ioremap(phys, size)`: map a physical range uncached.  Returns the
/// virtual address of `phys` itself (the offset inside its page is kept).
#[track_caller]
pub fn ioremap(phys: u64, size: usize) -> Option<NonNull<u8>> {
    let caller = Location::caller();
    if refuse_in_interrupt("ioremap") {
        return None;
    }
    let offset = (phys & (PAGE_SIZE as u64 - 1)) as usize;
    let base = phys - offset as u64;
    let size = check_size(size.checked_add(offset)?, "ioremap")?;
    let mut area = reserve(size, VmFlags::IOREMAP, "ioremap", caller)?;
    area.phys_addr = base;
    with_vmlist(|v| v.update(area));
    let flags = PteFlags::PAGE_KERNEL | PteFlags::PCD | PteFlags::PWT | PteFlags::NX;
    if !populate(&area, 0, flags, false, |i| {
        Some(base + i as u64 * PAGE_SIZE as u64)
    }) {
        pr_warn!("ioremap: out of memory for page tables");
        return None;
    }
    NonNull::new((area.addr as usize + offset) as *mut u8)
}

/// Why a free was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreeError {
    /// Not the start of a live area (or already freed).
    BadAddress,
    /// A live area, but of another kind (vfree of a vmap area...).
    WrongKind,
}

pub(super) fn release(addr: *const u8, kind: VmFlags, what: &str) -> Result<(), FreeError> {
    if addr.is_null() {
        return Ok(()); // vfree(NULL) is a no-op, as in Linux
    }
    let a = addr as u32;
    let r = with_vmlist(|v| {
        let a = if kind == VmFlags::IOREMAP {
            a & !(PAGE_SIZE as u32 - 1)
        } else {
            a
        };
        match v.find_vm_area(a) {
            Some(area) if area.addr == a && area.flags == kind => {
                let area = *area;
                let owned = kind == VmFlags::ALLOC || kind == VmFlags::STACK;
                unmap_kernel_range(area.addr, area.nr_pages, owned);
                v.remove_vm_area(area.addr);
                Ok(())
            }
            Some(area) if area.addr == a => Err(FreeError::WrongKind),
            _ => Err(FreeError::BadAddress),
        }
    });
    // Rate-limited (2.6's printk_ratelimit): a test that feeds thousands
    // of wrong pointers would otherwise bury the log.
    match r {
        // 2.4's words: printk(KERN_ERR "Trying to vfree() bad address (%p)\n", addr);
        Err(FreeError::BadAddress) if printk_ratelimit() => {
            pr_err!("Trying to {}() bad address ({:#010x})", what, a)
        }
        Err(FreeError::WrongKind) if printk_ratelimit() => {
            pr_err!("Trying to {}() an area of another kind ({:#010x})", what, a)
        }
        _ => {}
    }
    r
}

/// `vfree(addr)`: free a vmalloc area.  NULL is a no-op; anything that is
/// not the start of a live vmalloc area is refused with Linux's message
/// and changes nothing.
pub fn vfree(addr: *const u8) -> Result<(), FreeError> {
    release(addr, VmFlags::ALLOC, "vfree")
}

pub fn vunmap(addr: *const u8) -> Result<(), FreeError> {
    release(addr, VmFlags::MAP, "vunmap")
}

pub fn iounmap(addr: *const u8) -> Result<(), FreeError> {
    release(addr, VmFlags::IOREMAP, "iounmap")
}
