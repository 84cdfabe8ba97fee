//! What the scheduler does when a recovery point (`crate::fixup`) catches
//! an oops: the task that oopsed dies, as Linux's `die` -> `do_exit`, and
//! the point's task runs again with its own directory loaded.  Recovery
//! points are per CPU, and a task keeps to its CPU while it has one armed
//! (`pin_for_point`): the point's task is always this CPU's to resume.

use crate::mm::addr::PhysAddr;
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

/// What of the scheduler this CPU is in the middle of, a bit each: it
/// holds the task list, the run queue, it is switching.  A recovery point
/// notes it when armed: an oops under it undoes only what began after (a
/// point may be armed inside `schedule` itself, by a call the CPU polls
/// from a wait loop there).
pub fn in_progress_here() -> u8 {
    TASKS.held_here() as u8 | (RUNQUEUE.held_here() as u8) << 1 | (in_switch() as u8) << 2
}

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
/// pinned to this CPU (it set one of this CPU's points); `kept` is what
/// `in_progress_here` said when the point was armed.
pub unsafe fn recover_to(saved: *const Task, kept: u8) {
    if current_ptr().is_null() || saved.is_null() {
        return;
    }
    // SAFETY: the caller's promise.
    unsafe { take_over(saved, kept) };
    // A kernel thread caught in the window where 2.4 has set its
    // active_mm to NULL runs on in init_mm: a running task always has an
    // active_mm.
    // SAFETY: `saved` is this CPU's running task now; interrupts are off.
    let slot = unsafe { &mut *(*saved).active_mm.get() };
    if slot.is_none() {
        *slot = Some(init_mm().clone());
    }
    let pgd = slot.as_ref().map_or(init_mm().pgd, |m| m.pgd);
    if PhysAddr::new(cpu::read_cr3_pa()) != pgd {
        // SAFETY: every mm's directory maps the kernel.
        unsafe { crate::arch::x86::mmu::load_cr3((pgd).as_u32()) };
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
    // SAFETY: the idle task is in TASKS for good and pinned here; the
    // CPU's whole context is abandoned, every lock it held with it.
    unsafe { take_over(idle, 0) };
    // SAFETY: the idle task is this CPU's running task now.
    let old = unsafe { (*(*idle).active_mm.get()).replace(init_mm().clone()) };
    if PhysAddr::new(cpu::read_cr3_pa()) != init_mm().pgd {
        // SAFETY: init_mm's directory maps the kernel.
        unsafe { crate::arch::x86::mmu::load_cr3((init_mm().pgd).as_u32()) };
    }
    drop(old);
}

/// This CPU's running task was cut short for good: it dies (unless it is
/// `successor` itself), `successor` becomes this CPU's `current`, and the
/// switch the CPU was making, if any, is undone.
///
/// # Safety
/// `successor` is in TASKS and may run only here; interrupts are off;
/// `kept` (bits as `in_progress_here`) is what frames that survive hold.
unsafe fn take_over(successor: *const Task, kept: u8) {
    let me = smp_processor_id();
    let cur = current_ptr();
    // The oops may have hit with a scheduler lock held (in schedule or
    // reap, interrupts off; a blown stack there reaches us through the
    // double-fault task): its holder is abandoned and will never unlock.
    // A lock another CPU holds is that CPU's business, and one this CPU
    // held before the point was armed is still its holder's.
    // SAFETY: only this CPU's abandoned guards; they are never dropped.
    unsafe {
        if kept & 1 == 0 {
            TASKS.force_unlock_if_held_here();
        }
        if kept & 2 == 0 {
            RUNQUEUE.force_unlock_if_held_here();
        }
        // A task that dies holding the big kernel lock (2.4's do_exit
        // would BUG on it) must not keep every other CPU out for ever.
        if !core::ptr::eq(cur, successor) && (*cur).lock_depth.load(Ordering::SeqCst) >= 0 {
            super::smp_lock::KERNEL_FLAG.force_unlock_if_held_here();
        }
        // Nor hold init_mm's page_table_lock, which 2.4.3-pre7's vmalloc
        // maps under with interrupts on (an interrupt's oops can cut it
        // short there).
        crate::mm::mm_struct::init_mm()
            .page_table_lock
            .force_unlock_if_held_here();
        // Or pgd_list's, held with interrupts on by the syncs (5.8's
        // pgd_lock, test10-pre1's set_pgdir walk).
        crate::mm::mm_struct::PGD_LIST.force_unlock_if_held_here();
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
        for t in [&sw.prev, &sw.next].into_iter().filter(|_| kept & 4 == 0) {
            let p = t.swap(core::ptr::null_mut(), Ordering::SeqCst);
            if !p.is_null() && !core::ptr::eq(p, successor) && !core::ptr::eq(p, cur) {
                (*p).set_on_cpu(None);
            }
        }
        if kept & 4 == 0 {
            sw.in_switch.store(false, Ordering::SeqCst);
        }
        (*successor).set_on_cpu(Some(me));
    }
    // With a scheduler lock held by a surviving frame, that frame is in
    // the middle of the queue's update: it finishes it.
    if kept & 3 == 0 {
        requeue_runnable(successor);
    }
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
