//! A cell for data the CPU itself reads or writes behind the compiler's back
//! (descriptor tables, TSSes, page tables, saved contexts).  Rust's `static
//! mut` would do, but every access would be an unsafe reference to a
//! mutable static; this keeps the unsafety at the few call sites that
//! really touch the hardware structures and documents why they may.
use core::cell::UnsafeCell;

#[repr(transparent)]
pub struct RacyCell<T>(UnsafeCell<T>);

// SAFETY: callers of `get` serialise access themselves: interrupts off on
// data only one CPU touches (per-CPU tables, a running task's fields), a
// lock, or data only ever touched by one context.
unsafe impl<T> Sync for RacyCell<T> {}

impl<T> RacyCell<T> {
    pub const fn new(v: T) -> Self {
        Self(UnsafeCell::new(v))
    }

    /// A raw pointer; creating it is safe, using it is the caller's duty.
    pub const fn get(&self) -> *mut T {
        self.0.get()
    }
}
