//! `spinlock_t` with three things `spin::Mutex` does not do, all needed
//! once two CPUs share the kernel's locks:
//!
//! - **It knows which CPU holds it.**  An oops can hit with a lock held
//!   (in `schedule`, in a print); the oops path must free the lock only
//!   if *this* CPU held it and will never release it.  With one CPU any
//!   held lock was ours; with two it may be the other CPU's, still in use.
//! - **`lock_irqsave` waits with interrupts on** when the caller had them
//!   on, as Linux 2.6's i386 `__raw_spin_lock_flags` does (`sti; rep nop;
//!   cli` while the lock is busy).  Only the holder needs them off.  A
//!   waiter that spins with them off cannot take the TLB-shootdown IPI of
//!   the holder, which waits for it inside `flush_tlb_all`: 2.4 avoided
//!   that by taking `vmlist_lock` with interrupts on; this kernel masks
//!   them while holding it (an interrupt handler may vmalloc).
//! - **A waiter with interrupts off still answers `smp_call_function`**:
//!   it runs the pending call from its spin loop (later Linux flushes its
//!   call queue the same way).  `schedule` frees dead tasks' stacks, with
//!   their TLB shootdown, with interrupts off; the other CPU may be
//!   spinning on the vmlist lock with them off too, and only polling
//!   breaks that circle.
//! - **A held lock disables preemption**, as the preempt patch's
//!   `spin_lock` does (`preempt_disable()`): taking one raises this CPU's
//!   `preempt_count`, dropping it lowers it, and `preempt=full` switches
//!   only where it is 0.  (The patch's `spin_unlock` also switches at
//!   once if a reschedule came in meanwhile; here the switch waits for
//!   the next interrupt exit.)
//! - **A waiter says what it waits for** (`waiting_on`): the two-CPU
//!   explorers stop CPU A between two instructions and let CPU B run; if
//!   B then spins on a lock A holds, A must go on, or neither ever will.

use core::mem::ManuallyDrop;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use spin::{Mutex, MutexGuard};

use super::cpu::{self, IrqSave};
use super::percpu;
use super::smp_config::NR_CPUS;

/// Per CPU: the owner word of the lock it is spinning on, 0 if none.
static WAITING_ON: [AtomicUsize; NR_CPUS] = [const { AtomicUsize::new(0) }; NR_CPUS];

pub struct SpinLock<T> {
    /// `smp_processor_id() + 1` of the holder, 0 when free.
    owner: AtomicU32,
    inner: Mutex<T>,
}

pub struct SpinGuard<'a, T> {
    owner: &'a AtomicU32,
    /// `owner`'s value while we hold it.
    me: u32,
    guard: ManuallyDrop<MutexGuard<'a, T>>,
}

/// A `SpinGuard` that also restores the interrupt flag when dropped
/// (after the lock is released: fields drop in order).
pub struct IrqSpinGuard<'a, T> {
    guard: SpinGuard<'a, T>,
    _irq: IrqSave,
}

impl<T> SpinLock<T> {
    pub const fn new(v: T) -> Self {
        SpinLock {
            owner: AtomicU32::new(0),
            inner: Mutex::new(v),
        }
    }

    /// `spin_lock`: the caller decides about interrupts.
    pub fn lock(&self) -> SpinGuard<'_, T> {
        loop {
            if let Some(g) = self.try_lock() {
                return g;
            }
            self.wait();
        }
    }

    pub fn try_lock(&self) -> Option<SpinGuard<'_, T>> {
        // preempt_disable() first, as the patch's spin_lock: no
        // instruction holds the lock with the count still 0.
        percpu::preempt_count().fetch_add(1, Ordering::SeqCst);
        let Some(guard) = self.inner.try_lock() else {
            preempt_enable();
            return None;
        };
        let me = percpu::smp_processor_id_early() as u32 + 1;
        self.owner.store(me, Ordering::SeqCst);
        Some(SpinGuard {
            owner: &self.owner,
            me,
            guard: ManuallyDrop::new(guard),
        })
    }

    /// `spin_lock_irqsave`: interrupts off while held; while waiting they
    /// stay as the caller had them.
    pub fn lock_irqsave(&self) -> IrqSpinGuard<'_, T> {
        loop {
            let irq = cpu::irq_save();
            if let Some(guard) = self.try_lock() {
                return IrqSpinGuard { guard, _irq: irq };
            }
            drop(irq);
            self.wait();
        }
    }

    /// Spin until the lock looks free, published in `WAITING_ON`.
    fn wait(&self) {
        let me = &WAITING_ON[percpu::smp_processor_id_early()];
        me.store(&self.owner as *const AtomicU32 as usize, Ordering::SeqCst);
        while self.inner.is_locked() {
            super::smp::relax();
        }
        me.store(0, Ordering::SeqCst);
    }

    /// `spin_lock` for a lock held across functions (2.4's `kernel_flag`,
    /// taken in `lock_kernel` and dropped in `unlock_kernel` or
    /// `schedule`): no guard; `unlock_held` releases it.
    pub fn lock_held(&self) {
        core::mem::forget(self.lock());
    }

    /// `spin_unlock` of a lock taken with `lock_held`.
    ///
    /// # Safety
    /// This CPU holds it through `lock_held`, and no guard of it exists.
    pub unsafe fn unlock_held(&self) {
        let me = percpu::smp_processor_id_early() as u32 + 1;
        debug_assert_eq!(self.owner.load(Ordering::SeqCst), me);
        // SAFETY: the caller holds the lock, and its guard was forgotten.
        unsafe { self.inner.force_unlock() };
        let _ = self
            .owner
            .compare_exchange(me, 0, Ordering::SeqCst, Ordering::SeqCst);
        preempt_enable();
    }

    pub fn is_locked(&self) -> bool {
        self.inner.is_locked()
    }

    /// Whether the running CPU holds the lock.
    pub fn held_here(&self) -> bool {
        self.owner.load(Ordering::SeqCst) == percpu::smp_processor_id_early() as u32 + 1
    }

    /// For oops paths: free the lock if this CPU holds it (its holder was
    /// cut short by the oops and will never drop its guard).  Another
    /// CPU's hold is left alone.
    ///
    /// # Safety
    /// The guard this CPU holds must never be dropped afterwards: its
    /// frame is being abandoned.
    pub unsafe fn force_unlock_if_held_here(&self) -> bool {
        if !self.held_here() {
            return false;
        }
        self.owner.store(0, Ordering::SeqCst);
        // SAFETY: this CPU holds it, and the caller promises the guard is
        // abandoned.
        unsafe { self.inner.force_unlock() };
        true
    }
}

impl<T> core::fmt::Debug for SpinLock<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SpinLock")
            .field("owner", &self.owner.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// The lock CPU `waiter` is spinning on, if any: the address of its
/// owner word and who it names (`smp_processor_id() + 1`; 0 while the
/// holder is between taking the lock and naming itself, or between
/// dropping it and forgetting its name).
pub fn waiting_on(waiter: usize) -> Option<(usize, u32)> {
    let word = WAITING_ON.get(waiter)?.load(Ordering::SeqCst);
    if word == 0 {
        return None;
    }
    // SAFETY: a lock outlives every CPU that spins on it (the kernel's
    // SpinLocks are statics), and `waiter` is spinning on this one.
    let owner = unsafe { (*(word as *const AtomicU32)).load(Ordering::SeqCst) };
    Some((word, owner))
}

impl<T> Drop for SpinGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: dropped once, here; `guard` is not used afterwards.
        unsafe { ManuallyDrop::drop(&mut self.guard) };
        // Unlock first, then forget the owner, and only if no other CPU
        // took the lock in between: its name must not be wiped, or an
        // oops could not tell it held the lock.
        let _ = self
            .owner
            .compare_exchange(self.me, 0, Ordering::SeqCst, Ordering::SeqCst);
        preempt_enable();
    }
}

/// The count's half of `spin_unlock`.  (An oops path that forces a lock
/// free leaves the count alone: the recovery point puts back the count
/// it was armed with, `fixup::catch`.)
fn preempt_enable() {
    let c = percpu::preempt_count();
    let _ = c.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

impl<T> Deref for IrqSpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> DerefMut for IrqSpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}
