//! The task list and the run queue (2.4's `runqueue_head` under
//! `runqueue_lock`; one CPU, so one queue), and reaping dead tasks.

use alloc::collections::VecDeque;
use alloc::sync::Arc;
use alloc::vec::Vec;

use spin::Mutex;

use super::*;
use crate::arch::x86::cpu;

pub(super) static RUNQUEUE: Mutex<VecDeque<Arc<Task>>> = Mutex::new(VecDeque::new());

pub(super) static TASKS: Mutex<Vec<Arc<Task>>> = Mutex::new(Vec::new());

/// Drop tasks that finished (never the one whose stack we are on).
pub(super) fn reap() {
    let me = current_ptr();
    let mut tasks = TASKS.lock();
    let mut i = 1;
    while i < tasks.len() {
        let t = &tasks[i];
        // A finished task may be freed once we are no longer on its stack
        // and nobody else holds it (Arc count 1: only TASKS).
        if Arc::as_ptr(t) != me && t.state() != State::Runnable && Arc::strong_count(t) == 1 {
            tasks.swap_remove(i);
        } else {
            i += 1;
        }
    }
}

/// Make sure every runnable task but `running` is in the run queue.
pub(super) fn requeue_runnable(running: *const Task) {
    let tasks = TASKS.lock();
    let mut rq = RUNQUEUE.lock();
    // The task we resume may still sit in the queue from before the oops
    // (it yielded to the task that died): it runs now, so take it out, or
    // every recovery would add one more copy to cycle through.
    rq.retain(|q| Arc::as_ptr(q) != running);
    for t in tasks.iter() {
        let p = Arc::as_ptr(t);
        if p != running && t.state() == State::Runnable && !rq.iter().any(|q| Arc::as_ptr(q) == p) {
            rq.push_back(t.clone());
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
    let _irq = cpu::irq_save();
    let n = TASKS.lock().len();
    n
}

/// Mark a task that is not running (it waits in the run queue, or is
/// suspended in a switch) as dead: it is never switched to again, and is
/// reaped like one that exited.  Linux would send such a task a signal it
/// acts on when next scheduled; kernel threads here have no signals, so
/// this is how the caller of a recovery point ends the helper threads an
/// oops left behind (the soak does, after a caught oops).
pub fn kill_stopped(t: &Task) {
    assert!(
        !core::ptr::eq(t, current()),
        "kill_stopped on the running task"
    );
    t.set_state(State::Dead);
}
