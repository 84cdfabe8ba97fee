//! The big kernel lock, as 2.4 kept it (include/asm-i386/smplock.h):
//! one spinlock, `kernel_flag`, and a per-task depth, `lock_depth`, -1
//! when the task does not hold it.  `schedule` drops it for the task it
//! switches away from and takes it back for the task it returns to, so a
//! holder that sleeps lets every other CPU in:
//!
//! ```c
//! #define release_kernel_lock(task, cpu) \
//! do { \
//!         if (task->lock_depth >= 0) \
//!                 spin_unlock(&kernel_flag); \
//!         ...
//! #define reacquire_kernel_lock(task) \
//! do { \
//!         if (task->lock_depth >= 0) \
//!                 spin_lock(&kernel_flag); \
//! } while (0)
//! ```
//!
//! Nothing in this kernel's own code takes it (its vmalloc has its own
//! lock, as 2.4.3 on has); the lab's model of 2.4.2's vmalloc does,
//! around `vmalloc_area_pages`, to measure the seed's point 3.

use core::sync::atomic::Ordering;

use super::task::{current, Task};
use crate::arch::x86::spinlock::SpinLock;

/// 2.4's `kernel_flag`.
pub(super) static KERNEL_FLAG: SpinLock<()> = SpinLock::new(());

/// `lock_kernel()`: `if (!++current->lock_depth) spin_lock(&kernel_flag)`.
pub fn lock_kernel() {
    let me = current();
    if me.lock_depth.fetch_add(1, Ordering::SeqCst) == -1 {
        KERNEL_FLAG.lock_held();
    }
}

/// `unlock_kernel()`: `if (--current->lock_depth < 0) spin_unlock(...)`.
pub fn unlock_kernel() {
    let me = current();
    if me.lock_depth.fetch_sub(1, Ordering::SeqCst) == 0 {
        // SAFETY: depth 0 -> -1: this task took it in `lock_kernel`, on
        // this CPU or, after a `schedule`, through `reacquire_kernel_lock`.
        unsafe { KERNEL_FLAG.unlock_held() };
    }
}

/// Whether the running task holds the big kernel lock.
pub fn kernel_locked() -> bool {
    current().lock_depth.load(Ordering::SeqCst) >= 0
}

/// `release_kernel_lock(prev, cpu)`, at the top of `schedule`.
pub(super) fn release_kernel_lock(prev: &Task) {
    if prev.lock_depth.load(Ordering::SeqCst) >= 0 {
        // SAFETY: prev holds it (depth >= 0) and runs on this CPU.
        unsafe { KERNEL_FLAG.unlock_held() };
    }
}

/// `reacquire_kernel_lock(current)`, at the end of `schedule`.
pub(super) fn reacquire_kernel_lock() {
    if current().lock_depth.load(Ordering::SeqCst) >= 0 {
        KERNEL_FLAG.lock_held();
    }
}
