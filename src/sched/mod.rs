//! Kernel threads and a round-robin scheduler on every CPU, entered by an
//! explicit yield or, when `start_preemption` ran, by the timer.  Each
//! task has its own stack, an `mm` (or none: a pure kernel thread) and an
//! `active_mm`, kept the way Linux 2.4's `schedule()` keeps them:
//!
//! ```text
//! if (!mm) { next->active_mm = oldmm; /* lazy TLB: borrow */ }
//! else     { switch_mm(oldmm, mm, next); /* loads CR3 */ }
//! switch_to(prev, next, prev);           /* only now current = next */
//! ```
//!
//! One concept a file: `task` (tasks, `current`, kernel threads, `run_on`),
//! `runqueue` (the task list and the one run queue, reaping), `schedule`
//! (the switch), `idle` (each CPU's idle task, waking idle CPUs),
//! `preempt` (timer preemption), `smp_lock` (2.4's big kernel lock) and
//! `recover` (oops recovery).

mod idle;
mod preempt;
mod recover;
mod runqueue;
mod schedule;
mod smp_lock;
mod task;

pub use idle::*;
pub use preempt::*;
pub use recover::*;
pub use runqueue::*;
pub use schedule::*;
pub use smp_lock::{kernel_locked, lock_kernel, unlock_kernel};
pub use task::*;
