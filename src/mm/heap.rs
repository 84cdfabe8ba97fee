//! The kernel heap: `linked_list_allocator` over one physically contiguous
//! run of frames reached through the direct map, behind an interrupt-safe
//! lock (an interrupt handler may allocate while the code it interrupted
//! holds the heap lock otherwise).
//!
//! The run is carved out of the frame allocator at boot and sized from the
//! RAM the memory map reports: a fixed arena in `.bss` (8 MiB once) would
//! be a quarter of a 32 MiB machine, and the whole suite peaks at about
//! 0.3 MiB of heap (`make bench`'s scaling item at about 2.8 MiB: three
//! allocators at each of five sizes up to 16384 areas, all live at once;
//! the 8 MiB heap of its 128 MiB machine holds them).

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};

use linked_list_allocator::Heap;
use spin::Mutex;

use super::addr::{__va, PAGE_SIZE};
use crate::arch::x86::cpu;

/// The heap never grows beyond this (the old fixed arena: machines with
/// 128 MiB or more see no change).
pub const HEAP_MAX: usize = 8 << 20;
/// Nor shrinks below this: four times the suite's peak.
pub const HEAP_MIN: usize = 1 << 20;

/// The heap's share of usable RAM: 1/16, within `HEAP_MIN..=HEAP_MAX`,
/// whole pages.
pub fn size_for(usable_bytes: u64) -> usize {
    let s = ((usable_bytes / 16) as usize).clamp(HEAP_MIN, HEAP_MAX);
    s & !(PAGE_SIZE - 1)
}

pub struct KernelHeap(Mutex<Heap>);

#[global_allocator]
static HEAP: KernelHeap = KernelHeap(Mutex::new(Heap::empty()));
static PHYS: AtomicUsize = AtomicUsize::new(0);

/// Hand the heap the frames at `phys..phys + size`, taken from the frame
/// allocator for good.  Called once, before anything allocates.
pub fn init(phys: u32, size: usize) {
    PHYS.store(phys as usize, Ordering::Relaxed);
    // SAFETY: the caller took these frames out of the frame allocator, so
    // nothing else owns them; the boot page directory and the direct map
    // both map all low RAM at __va, and this runs once.
    unsafe { HEAP.0.lock().init(__va(phys) as *mut u8, size) };
}

/// Physical start and size of the heap.
pub fn region() -> (u32, usize) {
    let size = {
        let _irq = cpu::irq_save();
        let heap = HEAP.0.lock();
        heap.size()
    };
    (PHYS.load(Ordering::Relaxed) as u32, size)
}

/// Bytes in use, for leak checks.
pub fn used() -> usize {
    let _irq = cpu::irq_save();
    let heap = HEAP.0.lock();
    heap.used()
}

// SAFETY: delegates to linked_list_allocator's Heap under a lock, with
// interrupts off so the lock is never contended on one CPU.
unsafe impl GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // The lock is a local so that it is released before `_irq` drops.
        let _irq = cpu::irq_save();
        let mut heap = self.0.lock();
        heap.allocate_first_fit(layout)
            .map_or(core::ptr::null_mut(), |p| p.as_ptr())
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let _irq = cpu::irq_save();
        // SAFETY: `ptr` came from `alloc` with this layout (GlobalAlloc contract).
        unsafe {
            self.0
                .lock()
                .deallocate(NonNull::new_unchecked(ptr), layout)
        };
    }
}
