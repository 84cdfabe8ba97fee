//! The soak's printed report.

use vmfault::mm::fault;
use vmfault::mm::pgtable::is_pae;
use vmfault::{print, println};

use super::*;

/// Print a report the way `make soak` reads it: human lines, then one
/// `SOAK|` line with every figure.
pub fn print_report(cfg: &SoakConfig, r: &SoakReport) {
    println!(
        "soak: seed {:#x}, {} ops: {} vmalloc ({} refused), {} vfree, {} touches, {} by threads, {} in interrupts",
        cfg.seed, r.ops, r.vmallocs, r.vmalloc_failures, r.vfrees, r.touches, r.thread_touches, r.irq_touches
    );
    println!(
        "soak: {} mms created, {} dropped, {} threads, {} context switches, {} lazy vmalloc faults, {} page-table drops, {} model checks",
        r.mms_created, r.mms_dropped, r.threads, r.context_switches, r.lazy_faults, r.tables_dropped, r.checks
    );
    println!(
        "soak: {} oopses, {} model errors, {} corrupted reads, {} leaked frames, {} leaked areas ({} cut off by the oops, freed)",
        r.oopses, r.model_errors, r.corruptions, r.leaked_frames, r.leaked_areas, r.orphans
    );
    println!(
        "soak: {} CPU(s) driving, {} touches of an area made on another CPU",
        r.cpus, r.cross_cpu_touches
    );
    print!(
        "SOAK|{}|{}|seed={:#x}|preempt={}|ops={}|oopses={}|model_errors={}|corruptions={}",
        if is_pae() { "pae" } else { "2level" },
        fault::version().name(),
        cfg.seed,
        vmfault::sched::preempt_model().name(),
        r.ops,
        r.oopses,
        r.model_errors,
        r.corruptions
    );
    println!(
        "|leaked_frames={}|leaked_areas={}|lazy_faults={}|irq_touches={}|thread_touches={}|switches={}|checks={}|cpus={}|cross_cpu={}|oops_at={}",
        r.leaked_frames,
        r.leaked_areas,
        r.lazy_faults,
        r.irq_touches,
        r.thread_touches,
        r.context_switches,
        r.checks,
        r.cpus,
        r.cross_cpu_touches,
        r.oops_at_op.map_or(-1, |op| op as i64)
    );
}
