//! Counters of the lazy PGD syncs `vmalloc_fault` makes: in all, per 4 MiB
//! kernel slot and per directory.  The fault path must take no lock ("NOTE!
//! We MUST NOT take any locks for this case", 2.4 fault.c), so they are
//! plain atomics, and the per-directory table is indexed by the
//! directory's frame: O(1) from CR3 to its count.  Kept apart from
//! fault.rs so that `mm_alloc` can reset a directory's count without
//! reaching into the fault path.

use core::sync::atomic::{AtomicU32, Ordering};

use super::addr::{MAXMEM, PAGE_OFFSET};

const SLOTS: usize = 256;
const PGD_FRAMES: usize = (MAXMEM as usize) >> 12;

// gdb reads these by their plain names (tests/host/gdb/vmfault-gdb.py).
#[no_mangle]
static FAULTS: AtomicU32 = AtomicU32::new(0);
#[no_mangle]
static BY_SLOT: [AtomicU32; SLOTS] = [const { AtomicU32::new(0) }; SLOTS];
#[no_mangle]
static BY_PGD: [AtomicU32; PGD_FRAMES] = [const { AtomicU32::new(0) }; PGD_FRAMES];

/// The PGD slot (4 MiB in two-level mode) of a kernel address.
pub fn pgd_slot_index(addr: u32) -> usize {
    (addr as usize - PAGE_OFFSET) >> 22
}

pub fn total_faults() -> u32 {
    FAULTS.load(Ordering::Relaxed)
}

/// Vmalloc faults taken in the 4 MiB kernel slot of `addr`.
pub fn faults_in_slot(addr: u32) -> u32 {
    BY_SLOT[pgd_slot_index(addr) % SLOTS].load(Ordering::Relaxed)
}

/// Vmalloc faults taken by the directory at `pgd`.
pub fn faults_of_pgd(pgd: u32) -> u32 {
    BY_PGD
        .get(pgd as usize >> 12)
        .map_or(0, |c| c.load(Ordering::Relaxed))
}

/// A new directory at `pgd` starts with no faults (frames are reused).
pub fn reset_pgd_count(pgd: u32) {
    if let Some(c) = BY_PGD.get(pgd as usize >> 12) {
        c.store(0, Ordering::Relaxed);
    }
}

/// One lazy sync of `addr`'s slot into the directory at `pgd`.
pub fn count_fault(pgd: u32, addr: u32) {
    FAULTS.fetch_add(1, Ordering::Relaxed);
    BY_SLOT[pgd_slot_index(addr) % SLOTS].fetch_add(1, Ordering::Relaxed);
    if let Some(c) = BY_PGD.get(pgd as usize >> 12) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// The non-zero counters, one line each, under `fault::show_stats`.
pub fn show_counts() {
    for (i, c) in BY_SLOT.iter().enumerate() {
        let n = c.load(Ordering::Relaxed);
        if n > 0 {
            crate::println!("  slot {:#010x}: {} faults", PAGE_OFFSET + (i << 22), n);
        }
    }
    for (i, c) in BY_PGD.iter().enumerate() {
        let n = c.load(Ordering::Relaxed);
        if n > 0 {
            crate::println!("  pgd {:#010x}: {} faults", i << 12, n);
        }
    }
}
