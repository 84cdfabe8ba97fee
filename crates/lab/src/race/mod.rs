//! The seed's race, provoked on purpose.  A vmalloc area sits in PGD slots
//! that a victim address space has not synced; a thread (or an interrupt
//! handler) in that address space touches it, and a *test interrupt*
//! whose handler touches the same stale slot arrives inside the page-fault
//! handler, exactly as in the seed's race 2:
//!
//! ```text
//! irq handler / thread
//!   vmalloc_fault
//!     nested irq_handler
//!       vmalloc fault: pgd is not present, set_pgd, iret
//!   pgd is present: enter the pmd business, find the pmd just set: error
//! ```
//!
//! `explorer` delivers that interrupt at every instruction boundary of the
//! fault path by single-stepping it; `stress` throws real timer interrupts
//! at it.  Nothing here tells a handler version how to behave: outcomes
//! are whatever the version's code in mm/fault.rs does.

pub mod engine;
pub mod experiments;
pub mod explorer;
pub mod fault_loop;
pub mod fork_race;
pub mod handoff;
pub mod hits;
pub mod narrate;
pub mod outcome;
pub mod point3;
pub mod regression2020;
pub mod replay;
pub mod report;
pub mod scenario;
pub mod stepper;
pub mod stress;
pub mod torn;
pub mod triple_fault;
pub mod window;
