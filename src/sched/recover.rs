//! What the scheduler does when a recovery point (`crate::fixup`) catches
//! an oops: the task that oopsed dies, as Linux's `die` -> `do_exit`, and
//! the point's task runs again with its own directory loaded.

use core::sync::atomic::Ordering;

use super::*;
use crate::arch::x86::cpu;
use crate::mm::mm_struct::init_mm;

/// A recovery point caught an oops: if it hit in another task than the
/// one that set the point, that task dies (Linux's oops does `do_exit`)
/// and the point's task becomes current again.  Either way the point's
/// task gets its own directory back in CR3, whatever the dying code had
/// loaded.
///
/// # Safety
/// `saved` must be null or point to a task still held in the task list.
pub unsafe fn recover_to(saved: *const Task) {
    let cur = current_ptr();
    if cur.is_null() || saved.is_null() {
        return;
    }
    // The oops may have hit with a scheduler lock held (in schedule or
    // reap, interrupts off; a blown stack there reaches us through the
    // double-fault task): its holder is abandoned and will never unlock.
    if TASKS.is_locked() {
        // SAFETY: one CPU, interrupts off, and the holder is gone.
        unsafe { TASKS.force_unlock() };
    }
    if RUNQUEUE.is_locked() {
        // SAFETY: as above.
        unsafe { RUNQUEUE.force_unlock() };
    }
    // SAFETY: both pointers are live tasks in TASKS; interrupts are off.
    unsafe {
        if cur != saved {
            (*cur).set_state(State::Dead);
            CURRENT_TASK = saved;
        }
        // The oops may have hit inside schedule(), after `next` left the
        // run queue but before it ran - also in a switch away from the
        // point's own task, from an interrupt in the window after
        // switch_mm (found by soaking the 2.4.1 handler, where a thread
        // then waited for ever outside the queue): put every runnable
        // task back, and close the switch that will never finish.
        IN_SWITCH.store(false, Ordering::SeqCst);
        requeue_runnable(saved);
        // A kernel thread caught in the window where 2.4 has set its
        // active_mm to NULL runs on in init_mm: a running task always has
        // an active_mm.
        let slot = &mut *(*saved).active_mm.get();
        if slot.is_none() {
            *slot = Some(init_mm().clone());
        }
        let pgd = slot.as_ref().map_or(init_mm().pgd, |m| m.pgd);
        if cpu::read_cr3_pa() != pgd {
            crate::arch::x86::mmu::load_cr3(pgd);
        }
    }
}
