//! The task list and the run queue: one queue for every CPU under one
//! lock, as 2.4's `runqueue_head` under `runqueue_lock` (2.6's O(1)
//! scheduler split it per CPU for cache locality, which a two-CPU bench
//! does not need; one queue keeps `schedule` the 2.4 one).  A task may
//! run on a CPU if its `cpus_allowed` has it and no CPU holds its stack
//! (2.4's `can_schedule`); reaping dead tasks.
//!
//! The queue is a `Vec`, not a ring buffer: 2.4's `list_add_tail` and
//! `list_del` run the same instructions whatever the queue went through
//! before, and so must ours.  A `VecDeque` branches on where its ring
//! index wraps, which depends on every earlier push and pop (on both
//! CPUs): `schedule`'s instruction path changed from run to run, and the
//! race explorers, which count on a path repeating, met void runs in
//! every path through the scheduler (issue 16, point 3).  The queue holds
//! a handful of tasks, so taking one from the front costs a short copy.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};

use super::*;
use crate::arch::x86::cpu;
use crate::arch::x86::spinlock::SpinLock;

pub(super) static RUNQUEUE: SpinLock<Vec<Arc<Task>>> = SpinLock::new(Vec::new());

pub(super) static TASKS: SpinLock<Vec<Arc<Task>>> = SpinLock::new(Vec::new());

/// 2.4's `can_schedule(p, cpu)`: allowed there, and no CPU holds its stack
/// (`prev` itself excepted: it may go on running).
pub(super) fn can_schedule(t: &Task, cpu: usize, prev: *const Task) -> bool {
    t.state() == State::Runnable
        && (t.on_cpu().is_none() || core::ptr::eq(t, prev))
        && t.cpus_allowed() & (1 << cpu) != 0
}

/// Take the first task `cpu` may run out of the queue (round robin);
/// finished tasks met on the way leave the queue.  Caller holds the lock.
pub(super) fn pick_next(
    rq: &mut Vec<Arc<Task>>,
    cpu: usize,
    prev: *const Task,
) -> Option<Arc<Task>> {
    let mut i = 0;
    while i < rq.len() {
        if rq[i].state() != State::Runnable {
            // Never the last reference: TASKS holds every task until it is
            // reaped, and reap skips queued ones.
            rq.remove(i);
        } else if can_schedule(&rq[i], cpu, prev) {
            return Some(rq.remove(i));
        } else {
            i += 1;
        }
    }
    None
}

/// Reaps in progress on any CPU: tasks taken out of TASKS whose stacks
/// and mms are not freed yet (`reap_all` waits for them).
static REAPING: AtomicU32 = AtomicU32::new(0);

/// Drop tasks that finished and that no CPU runs on (never the one whose
/// stack we are on: it is ours, so `on_cpu` is set).  The drops (each
/// frees a stack, with its TLB shootdown) happen after the lock is
/// released: another CPU may be spinning on it with interrupts off.
pub(super) fn reap() {
    let mut gone = Vec::new();
    {
        let mut tasks = TASKS.lock();
        // Counted in before the lock goes, so that `reap_all` on another
        // CPU, finding nothing left in TASKS, still waits for our frees.
        REAPING.fetch_add(1, Ordering::SeqCst);
        let mut i = 1;
        while i < tasks.len() {
            let t = &tasks[i];
            // Only TASKS holds it (Arc count 1): nobody waits on it and it
            // is in no queue.
            if t.on_cpu().is_none() && t.state() != State::Runnable && Arc::strong_count(t) == 1 {
                gone.push(tasks.swap_remove(i));
            } else {
                i += 1;
            }
        }
    }
    drop(gone);
    REAPING.fetch_sub(1, Ordering::SeqCst);
}

/// Reap what can be reaped now, and wait for the reaps other CPUs have
/// begun: afterwards every finished task that nobody holds has given its
/// stack and mm back.  `join` does not wait for that (a task that left
/// its CPU may be freed by any CPU's next `schedule`); a caller that
/// counts frames right after joining needs this (the soak's model check:
/// measured one frame short while CPU 1 was still freeing a joined
/// thread's mm).
pub fn reap_all() {
    {
        let _irq = cpu::irq_save();
        reap();
    }
    while REAPING.load(Ordering::SeqCst) != 0 {
        core::hint::spin_loop();
    }
}

/// Make sure every runnable task that no CPU runs is in the run queue
/// (after an oops: see recover.rs).  `running` is this CPU's.
pub(super) fn requeue_runnable(running: *const Task) {
    let tasks = TASKS.lock();
    let mut rq = RUNQUEUE.lock();
    // The task we resume may still sit in the queue from before the oops
    // (it yielded to the task that died): it runs now, so take it out, or
    // every recovery would add one more copy to cycle through.
    rq.retain(|q| Arc::as_ptr(q) != running);
    for t in tasks.iter() {
        let p = Arc::as_ptr(t);
        if p != running
            && t.state() == State::Runnable
            && t.on_cpu().is_none()
            && !is_idle_task(p)
            && !rq.iter().any(|q| Arc::as_ptr(q) == p)
        {
            rq.push(t.clone());
        }
    }
}

/// Is `t` waiting in the run queue?
pub fn is_queued(t: *const Task) -> bool {
    let _irq = cpu::irq_save();
    let queued = RUNQUEUE.lock().iter().any(|x| Arc::as_ptr(x) == t);
    queued
}

pub fn nr_tasks() -> usize {
    TASKS.lock_irqsave().len()
}

/// Mark a task that is not running here (it waits in the run queue, is
/// suspended in a switch, or runs on another CPU) as dead: it is never
/// switched to again, and is reaped like one that exited.  Linux would
/// send such a task a signal it acts on when next scheduled; kernel
/// threads here have no signals, so this is how the caller of a recovery
/// point ends the helper threads an oops left behind (the soak does,
/// after a caught oops).  One running on another CPU goes on until its
/// next `schedule`.
pub fn kill_stopped(t: &Task) {
    assert!(
        !core::ptr::eq(t, current()),
        "kill_stopped on the running task"
    );
    t.set_state(State::Dead);
}
