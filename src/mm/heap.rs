//! The kernel heap: `linked_list_allocator` over a static arena, behind an
//! interrupt-safe lock (an interrupt handler may allocate while the code it
//! interrupted holds the heap lock otherwise).

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;

use linked_list_allocator::Heap;
use spin::Mutex;

use crate::arch::x86::cpu;
use crate::racy_cell::RacyCell;

pub const HEAP_SIZE: usize = 8 << 20;

#[repr(C, align(4096))]
struct Arena([u8; HEAP_SIZE]);

static ARENA: RacyCell<Arena> = RacyCell::new(Arena([0; HEAP_SIZE]));

pub struct KernelHeap(Mutex<Heap>);

#[global_allocator]
static HEAP: KernelHeap = KernelHeap(Mutex::new(Heap::empty()));

pub fn init() {
    // SAFETY: the arena is used by nothing else, and init runs once.
    unsafe { HEAP.0.lock().init(ARENA.get() as *mut u8, HEAP_SIZE) };
}

/// Bytes in use, for leak checks.
pub fn used() -> usize {
    let f = cpu::local_irq_save();
    let u = HEAP.0.lock().used();
    cpu::restore_flags(f);
    u
}

// SAFETY: delegates to linked_list_allocator's Heap under a lock, with
// interrupts off so the lock is never contended on one CPU.
unsafe impl GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let f = cpu::local_irq_save();
        let p = self
            .0
            .lock()
            .allocate_first_fit(layout)
            .map_or(core::ptr::null_mut(), |p| p.as_ptr());
        cpu::restore_flags(f);
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let f = cpu::local_irq_save();
        // SAFETY: `ptr` came from `alloc` with this layout (GlobalAlloc contract).
        unsafe {
            self.0
                .lock()
                .deallocate(NonNull::new_unchecked(ptr), layout)
        };
        cpu::restore_flags(f);
    }
}
