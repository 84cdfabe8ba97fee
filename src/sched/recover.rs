//! What the scheduler does when a recovery point (`crate::fixup`) catches
//! an oops: the task that oopsed dies, as Linux's `die` -> `do_exit`, and
//! the point's task runs again with its own directory loaded.  Recovery
//! points are per CPU, and a task keeps to its CPU while it has one armed
//! (`pin_for_point`): the point's task is always this CPU's to resume.

use core::sync::atomic::{AtomicPtr, Ordering};

use super::*;
use crate::arch::x86::cpu;
use crate::arch::x86::percpu::smp_processor_id;
use crate::arch::x86::smp_config::NR_CPUS;
use crate::mm::mm_struct::init_mm;

/// The task an oops killed on each CPU, until the recovery has left its
/// stack (`after_recovery`): till then no CPU may reap it.
static DYING: [AtomicPtr<Task>; NR_CPUS] =
    [const { AtomicPtr::new(core::ptr::null_mut()) }; NR_CPUS];

/// Keep the running task on this CPU while it arms a recovery point (its
/// frame is in this CPU's list of points).  Returns the mask to give back
/// to `unpin_after_point`.  Interrupts must be off: no switch between
/// reading the CPU number and pinning.
pub fn pin_for_point() -> u32 {
    debug_assert!(!cpu::irqs_enabled());
    if !is_initialised() {
        return 0;
    }
    let t = current();
    let old = t.cpus_allowed();
    t.set_cpus_allowed(1 << smp_processor_id());
    old
}

pub fn unpin_after_point(mask: u32) {
    if mask != 0 && is_initialised() {
        current().set_cpus_allowed(mask);
    }
}

/// A recovery point caught an oops: if it hit in another task than the
/// one that set the point, that task dies (Linux's oops does `do_exit`)
/// and the point's task becomes current again.  Either way the point's
/// task gets its own directory back in CR3, whatever the dying code had
/// loaded.  Runs on the oopsing CPU with interrupts off.
///
/// # Safety
/// `saved` must be null or point to a task still held in the task list,
/// pinned to this CPU (it set one of this CPU's points).
pub unsafe fn recover_to(saved: *const Task) {
    if current_ptr().is_null() || saved.is_null() {
        return;
    }
    // SAFETY: the caller's promise.
    unsafe { take_over(saved) };
    // A kernel thread caught in the window where 2.4 has set its
    // active_mm to NULL runs on in init_mm: a running task always has an
    // active_mm.
    // SAFETY: `saved` is this CPU's running task now; interrupts are off.
    let slot = unsafe { &mut *(*saved).active_mm.get() };
    if slot.is_none() {
        *slot = Some(init_mm().clone());
    }
    let pgd = slot.as_ref().map_or(init_mm().pgd, |m| m.pgd);
    if cpu::read_cr3_pa() != pgd {
        // SAFETY: every mm's directory maps the kernel.
        unsafe { crate::arch::x86::mmu::load_cr3(pgd) };
    }
}

/// An NMI stopped this (secondary) CPU, wedged in whatever it ran: the
/// task it ran dies, and the CPU restarts its idle task's loop from the
/// top of the idle stack (nmi.rs), in `init_mm`.  Interrupts off.
pub fn abandon_for_idle() {
    let idle = idle_task(smp_processor_id());
    if idle.is_null() || current_ptr().is_null() {
        return;
    }
    // SAFETY: the idle task is in TASKS for good and pinned here.
    unsafe { take_over(idle) };
    // SAFETY: the idle task is this CPU's running task now.
    let old = unsafe { (*(*idle).active_mm.get()).replace(init_mm().clone()) };
    if cpu::read_cr3_pa() != init_mm().pgd {
        // SAFETY: init_mm's directory maps the kernel.
        unsafe { crate::arch::x86::mmu::load_cr3(init_mm().pgd) };
    }
    drop(old);
}

/// This CPU's running task was cut short for good: it dies (unless it is
/// `successor` itself), `successor` becomes this CPU's `current`, and the
/// switch the CPU was making, if any, is undone.
///
/// # Safety
/// `successor` is in TASKS and may run only here; interrupts are off.
unsafe fn take_over(successor: *const Task) {
    let me = smp_processor_id();
    let cur = current_ptr();
    // The oops may have hit with a scheduler lock held (in schedule or
    // reap, interrupts off; a blown stack there reaches us through the
    // double-fault task): its holder is abandoned and will never unlock.
    // A lock another CPU holds is that CPU's business.
    // SAFETY: only this CPU's abandoned guards; they are never dropped.
    unsafe {
        TASKS.force_unlock_if_held_here();
        RUNQUEUE.force_unlock_if_held_here();
    }
    // SAFETY: both pointers are live tasks in TASKS; interrupts are off.
    unsafe {
        if !core::ptr::eq(cur, successor) {
            (*cur).set_state(State::Dead);
            set_current(successor);
            // Its on_cpu stays set while we are still on its stack.
            DYING[me].store(cur as *mut Task, Ordering::SeqCst);
        }
        // The oops may have hit inside schedule(), after `next` left the
        // run queue but before it ran - also in a switch away from the
        // point's own task, from an interrupt in the window after
        // switch_mm (found by soaking the 2.4.1 handler, where a thread
        // then waited for ever outside the queue): the switch will never
        // finish, so the tasks it held go back, and every runnable task
        // goes back in the queue.
        let sw = &SWITCH[me];
        for t in [&sw.prev, &sw.next] {
            let p = t.swap(core::ptr::null_mut(), Ordering::SeqCst);
            if !p.is_null() && !core::ptr::eq(p, successor) && !core::ptr::eq(p, cur) {
                (*p).set_on_cpu(None);
            }
        }
        sw.in_switch.store(false, Ordering::SeqCst);
        (*successor).set_on_cpu(Some(me));
    }
    requeue_runnable(successor);
}

/// The recovery has jumped back to the point, off the dead task's stack:
/// that task may be reaped now.
pub fn after_recovery() {
    let p = DYING[smp_processor_id()].swap(core::ptr::null_mut(), Ordering::SeqCst);
    if !p.is_null() {
        // SAFETY: still in TASKS: reap skips it while on_cpu is set.
        unsafe { (*p).set_on_cpu(None) };
    }
}
