//! The soak: a long random mix of everything the lazy PGD sync has to
//! survive at once, checked against a model as it goes.
//!
//! The driver (swapper) draws one operation at a time from a seeded
//! generator: vmalloc, vfree, a touch, a new address space, dropping one,
//! a new kernel thread (which touches areas from its own mm, so it takes
//! lazy vmalloc faults there), or a yield.  Meanwhile two timers run:
//! the PIT preempts threads at any instruction (inside `vmalloc_fault`
//! too), and the local APIC timer fires at a high rate into a 2.4-style
//! handler that runs with interrupts on and itself reads vmalloc memory,
//! so its own lazy faults nest inside whatever was interrupted.
//!
//! The model is the list of live areas (address, pages, pins) and the
//! pool of address spaces.  Every `check_every` operations the driver
//! lets the threads finish and checks the kernel against it: the area
//! tree's invariants, the set of live areas, every page's translation in
//! `swapper_pg_dir` and in every address space (equal, or not yet synced
//! where lazy sync allows it), the guard pages, and the exact free frame
//! count.  Every page carries a pattern derived from its address, read
//! back by every touch.
//!
//! Replay: the same `soak_seed=` gives the same sequence of draws (every
//! operation draws before it looks at any state), but what they meet
//! depends on where the timers land: a run with the same seed is similar,
//! not identical.

//!
//! With two CPUs online a second driver runs on CPU 1 (`second`), from
//! its own generator, on the same model and budget of operations.
//!
//! Files: `model` (the model and the check), `load` (timers and worker
//! threads), `driver` (the operations and the run), `second` (CPU 1's
//! driver), `report`.

extern crate alloc;

use vmfault::mm::addr::PAGE_SIZE;

mod driver;
mod load;
mod model;
mod report;
mod second;

pub use driver::run;
use load::*;
use model::*;
pub use report::print_report;

const PAGE: u32 = PAGE_SIZE as u32;
const MAX_AREAS: usize = 48;
const MAX_MMS: usize = 4;
const MAX_THREADS: usize = 4;
/// Addresses the timer handler reads; a slot is cleared, interrupts off,
/// before its area is freed.
const IRQ_SLOTS: usize = 8;

#[derive(Clone, Copy, Debug)]
pub struct SoakConfig {
    pub seed: u32,
    pub ops: u32,
    /// Model check (with the threads joined) every this many operations.
    pub check_every: u32,
    /// PIT preemption rate.
    pub preempt_hz: u32,
    /// Local APIC timer initial count for the vmalloc-touching interrupt.
    pub apic_count: u32,
    /// Print a progress line every this many operations (0: never).
    pub progress_every: u32,
    /// Drivers: 2 runs a second one on CPU 1 (if online).
    pub cpus: u32,
}

impl SoakConfig {
    pub fn new(seed: u32, ops: u32) -> Self {
        SoakConfig {
            seed,
            ops,
            check_every: 5_000.min(ops.max(1)),
            preempt_hz: 1000,
            apic_count: 2_000,
            progress_every: 0,
            cpus: vmfault::arch::x86::smp::online().count().min(2) as u32,
        }
    }
}

/// What a soak did and found.
#[derive(Clone, Copy, Debug, Default)]
pub struct SoakReport {
    pub ops: u32,
    /// Oopses (or double faults) caught; the soak stops at the first.
    pub oopses: u32,
    pub oops_at_op: Option<u32>,
    pub vmallocs: u32,
    pub vmalloc_failures: u32,
    pub vfrees: u32,
    pub touches: u32,
    pub thread_touches: u32,
    pub irq_touches: u32,
    pub mms_created: u32,
    pub mms_dropped: u32,
    pub threads: u32,
    pub context_switches: u32,
    pub lazy_faults: u32,
    pub checks: u32,
    /// Areas an oops cut off mid-operation, freed at the end.
    pub orphans: u32,
    /// Times the empty slots' kernel page tables were freed.
    pub tables_dropped: u32,
    /// Disagreements between kernel and model (first ones are printed).
    pub model_errors: u32,
    /// Touches that read back a wrong pattern.
    pub corruptions: u32,
    /// Free frames missing at the end (kernel page tables, kept for good
    /// as in 2.4, are not counted as leaks).
    pub leaked_frames: i64,
    pub leaked_areas: i64,
    /// Drivers that ran (CPUs).
    pub cpus: u32,
    /// Touches (by drivers, threads, timer handlers) of an area made on
    /// another CPU.
    pub cross_cpu_touches: u32,
}

impl SoakReport {
    /// Add the second driver's own figures (the shared counters were
    /// read once, by the first).
    pub(super) fn merge(&mut self, o: &SoakReport) {
        self.oopses += o.oopses;
        self.oops_at_op = match (self.oops_at_op, o.oops_at_op) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.vmallocs += o.vmallocs;
        self.vmalloc_failures += o.vmalloc_failures;
        self.vfrees += o.vfrees;
        self.touches += o.touches;
        self.mms_created += o.mms_created;
        self.mms_dropped += o.mms_dropped;
        self.threads += o.threads;
        self.tables_dropped += o.tables_dropped;
        self.model_errors += o.model_errors;
    }

    pub fn clean(&self) -> bool {
        self.oopses == 0
            && self.model_errors == 0
            && self.corruptions == 0
            && self.leaked_frames == 0
            && self.leaked_areas == 0
    }
}
