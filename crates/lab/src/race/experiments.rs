//! `experiment=race`: every explorer over every boundary and the long
//! stress, printed as `EXP` lines that `make experiments` (the host
//! runner) turns into target/experiments/race.md.

extern crate alloc;

use super::explorer::{explore, explore_pairs, PairsReport, Report, Variant};
use super::regression2020::{explore_2020, Cpus, Report2020};
use super::report::{failure_groups, print_strip};
use super::stress::stress;
use super::window::explore_window;
use vmfault::println;

fn row(name: &str, r: &Report) {
    println!(
        "EXP|{}|stepped={}|if={}|cr2={}|runs={}|failures={}|before_cr2={}|tried_before_cr2={}|late={}|b_failures={}|baseline={:?}|runs_per_s={}|reasons={}|handoff_ns={}|{}",
        name,
        r.stepped,
        r.with_if,
        r.cr2_read_at.map_or(-1, |c| c as i64),
        r.runs,
        r.failures,
        r.failures_before_cr2,
        r.tried_before_cr2,
        r.late,
        r.b_failures,
        r.baseline,
        per_second(r.runs, r.run_cycles),
        reasons(r.failing.iter().map(|f| f.2).chain(r.b_failing.iter().map(|f| f.1))),
        r.handoff_ns(),
        checks(&r.checks)
    );
    for g in failure_groups(&r.failing) {
        println!("EXPG|{}|{}", name, g);
    }
    print_strip(name, &r.eips, &r.marks);
}

fn row_2020(name: &str, r: &Report2020) {
    println!(
        "EXP|{}|stepped={}|preemptible={}|runs={}|failures={}|first={}|last={}|faults={}|runs_with_faults={}|baseline={:?}|slots_to_end={}|waited={}|failing_masked={}|runs_per_s={}|handoff_ns={}|reasons={}|{}",
        name,
        r.stepped,
        r.preemptible,
        r.runs,
        r.failures,
        r.window.map_or(-1, |w| w.0 as i64),
        r.window.map_or(-1, |w| w.1 as i64),
        r.faults,
        r.runs_with_faults,
        r.baseline,
        r.slots_to_end,
        r.waited,
        r.failing_masked,
        per_second(r.runs, r.run_cycles),
        r.handoff_ns(),
        reasons(r.failure_kinds.iter().copied()),
        checks(&r.checks)
    );
    for run in r.failing.iter().take(1).chain(&r.last_failing) {
        let sym = vmfault::symbols::lookup(run.eip);
        println!(
            "EXPG|{}|boundary {} at {:#010x} ({}+{:#x}): {:?}",
            name,
            run.k,
            run.eip,
            sym.map_or("?", |s| s.name),
            sym.map_or(0, |s| run.eip - s.addr),
            run.outcome
        );
    }
    print_strip(name, &r.eips, &r.marks);
}

/// Three nested levels: every `Q1_SAMPLE`-th outer and nested boundary.
const Q1_SAMPLE: usize = 8;

fn row_pairs(name: &str, stride: usize, r: &PairsReport) {
    println!(
        "EXP|{}|levels={}|stride={}|outer_stepped={}|outer_runs={}|inner_stepped={}|inner_shut={}|inner_max={}|no_inner_fault={}|pairs={}|clean={}|oopses={}|hangs={}|fault_loops={}|corrupt={}|other={}|not_sent={}|first={}|reasons={}|runs_per_s={}|{}",
        name,
        r.levels,
        stride,
        r.outer_stepped,
        r.outer_runs,
        r.inner_stepped,
        r.inner_shut,
        r.inner_max,
        r.no_inner_fault,
        r.pairs,
        r.clean,
        r.oopses,
        r.hangs,
        r.fault_loops,
        r.corrupt,
        r.other,
        r.not_sent,
        r.first_failing
            .map_or(alloc::string::String::from("-"), |(k, j, _)| alloc::format!("{}.{}", k, j)),
        match r.reasons.is_empty() {
            true => alloc::string::String::from("-"),
            false => r
                .reasons
                .iter()
                .map(|(o, n)| alloc::format!("{:?}x{}", o, n))
                .collect::<alloc::vec::Vec<_>>()
                .join(" "),
        },
        per_second(r.pairs + r.outer_runs, r.run_cycles),
        checks(&r.checks)
    );
}

/// The long stress: rounds asked for and address spaces touching; the
/// EXP line carries both, for race.md's description of the setup.
const STRESS_ROUNDS: u32 = 20_000;
const STRESS_MMS: usize = 4;

fn row_point3(name: &str, r: &super::point3::Point3Report) {
    println!(
        "EXP|{}|stepped={}|runs={}|failures={}|lost_a={}|lost_b={}|leaked_tables={}|waited={}|hangs={}|first={}|last={}|baseline_failed={}|{}",
        name,
        r.stepped,
        r.runs,
        r.failures,
        r.lost_a,
        r.lost_b,
        r.leaked_tables,
        r.waited,
        r.hangs,
        r.window.map_or(-1, |w| w.0 as i64),
        r.window.map_or(-1, |w| w.1 as i64),
        r.baseline_failed,
        checks(&r.checks)
    );
    print_strip(name, &r.eips, &r.marks);
}

/// The race that ended set_pgdir: `failures` are the runs where the
/// child missed the entry; `reasons` how its touch then ended.
fn row_fork(name: &str, r: &super::fork_race::ForkReport) {
    let reasons: alloc::vec::Vec<alloc::string::String> = r
        .touch_kinds
        .iter()
        .map(|o| alloc::format!("{:?}", o))
        .collect();
    println!(
        "EXP|{}|stepped={}|runs={}|failures={}|parent_missed={}|set_pgdir={}|touch_oopses={}|touch_clean={}|reasons={}|waited={}|hangs={}|first={}|last={}|{}",
        name,
        r.stepped,
        r.runs,
        r.missed,
        r.parent_missed,
        r.set_pgdir_runs,
        r.touch_oopses,
        r.touch_clean,
        if reasons.is_empty() { alloc::string::String::from("-") } else { reasons.join(",") },
        r.waited,
        r.hangs,
        r.window.map_or(-1, |w| w.0 as i64),
        r.window.map_or(-1, |w| w.1 as i64),
        checks(&r.checks)
    );
    if !r.eips.is_empty() {
        print_strip(name, &r.eips, &r.marks);
    }
}

fn row_torn(i: usize, w: super::torn::Write, t: &super::torn::TornReport) {
    println!(
        "EXP|torn{}|writer={}|stepped={}|torn={}|torn_present={}|first_torn={}|ends_new={}|hang={}",
        i,
        w.name(),
        t.stepped,
        t.torn,
        t.torn_present,
        t.first_torn
            .map_or(alloc::string::String::from("-"), |(k, v)| alloc::format!(
                "{}:{:#018x}",
                k,
                v
            )),
        t.ends_new,
        t.hang
    );
}

/// A scenario's checks as `EXP` fields (race.md's "Checks" sums them).
fn checks(c: &super::engine::Checks) -> alloc::string::String {
    alloc::format!(
        "not_entered={}|misplaced={}|retried={}",
        c.not_entered,
        c.misplaced,
        c.retried
    )
}

/// The distinct outcomes of the failing runs, for race.md's "reason"
/// column (`-` if none failed).
fn reasons(failing: impl Iterator<Item = super::outcome::Outcome>) -> alloc::string::String {
    let mut seen: alloc::vec::Vec<super::outcome::Outcome> = alloc::vec::Vec::new();
    for o in failing {
        if !seen.contains(&o) {
            seen.push(o);
        }
    }
    match seen.is_empty() {
        true => "-".into(),
        false => seen
            .iter()
            .map(|o| alloc::format!("{:?}", o))
            .collect::<alloc::vec::Vec<_>>()
            .join(" "),
    }
}

/// Runs per second of TSC time (under TCG the TSC follows the host's
/// clock, so this is the host's rate).
fn per_second(runs: usize, cycles: u64) -> u64 {
    let per_ms = vmfault::arch::x86::tsc::cycles_per_ms();
    match cycles / per_ms.max(1) {
        0 => 0,
        ms => runs as u64 * 1000 / ms,
    }
}

/// Run one experiment and say how long it took (`EXPT|name|ms`, host
/// time under TCG): where `make experiments` spends its minutes.
fn timed<T>(name: &str, f: impl FnOnce() -> T) -> T {
    let t0 = vmfault::arch::x86::cpu::rdtsc();
    let r = f();
    let ms =
        (vmfault::arch::x86::cpu::rdtsc() - t0) / vmfault::arch::x86::tsc::cycles_per_ms().max(1);
    println!("EXPT|{}|{}", name, ms);
    r
}

/// `experiment=engine`: every explorer once, every `ENGINE_STRIDE`-th
/// boundary, on whatever build this kernel is.  `make test` boots it on
/// the unoptimised kernel, whose code the test kernels' optimiser would
/// change: there a struct copy in the #DB handler was a call to `memcpy`,
/// which the stepped paths run too, and the handler recursed (issue 16).
/// The host check reads the same `EXP` lines as `make experiments`.
pub fn engine_check() {
    const ENGINE_STRIDE: usize = 25;
    println!(
        "EXP|begin|version={}|paging={}",
        vmfault::mm::fault::version().name(),
        vmfault::mm::pgtable::mode().name()
    );
    if let Some(r) = explore(Variant::Thread, false, ENGINE_STRIDE) {
        row("thread", &r);
    }
    if let Some(w) = explore_window(false, 1) {
        println!(
            "EXP|window|stepped={}|in_window={}|failures={}",
            w.stepped, w.in_window, w.failures
        );
    }
    if let Some(r) = explore_2020(Cpus::One, ENGINE_STRIDE) {
        row_2020("r2020", &r);
    }
    if vmfault::arch::x86::smp::online().count() > 1 {
        if let Some(r) = explore(Variant::OtherCpu { same_mm: true }, false, ENGINE_STRIDE) {
            row("cpu2_threads", &r);
        }
        if let Some(r) = explore_2020(Cpus::Two, ENGINE_STRIDE) {
            row_2020("cpu2_r2020", &r);
        }
        if vmfault::mm::pgtable::mode() == vmfault::mm::pgtable::PagingMode::TwoLevel {
            // The seed's walk with memory plentiful: the low-memory one
            // steps 41,000 boundaries in the unoptimised kernel.
            let (slow, pressure, name) = super::point3::CONFIGS[2];
            if let Some(r) = super::point3::explore_point3(slow, pressure, 4 * ENGINE_STRIDE) {
                row_point3(name, &r);
            }
        }
        if let Some(t) = super::torn::explore_torn(super::torn::Write::PteClear, 1) {
            row_torn(0, super::torn::Write::PteClear, &t);
        }
    }
    println!("EXP|end");
}

pub fn run_all() {
    println!(
        "EXP|begin|version={}|paging={}",
        vmfault::mm::fault::version().name(),
        vmfault::mm::pgtable::mode().name()
    );
    if vmfault::arch::x86::smp::online().count() > 1 {
        // Booted with two CPUs (make experiments does, for these): the
        // two-CPU scenarios only; the others are one CPU's.
        for (name, same_mm) in [("cpu2_threads", true), ("cpu2_processes", false)] {
            if let Some(r) = timed(name, || explore(Variant::OtherCpu { same_mm }, false, 1)) {
                row(name, &r);
            }
        }
        if let Some(r) = timed("cpu2_r2020", || explore_2020(Cpus::Two, 1)) {
            row_2020("cpu2_r2020", &r);
        }
        // The race that ended set_pgdir: its model runs no fault handler,
        // but the child's touch runs the booted one, so every boot runs it.
        if let Some(r) = timed("fork", || super::fork_race::explore_fork(1)) {
            row_fork("fork", &r);
        }
        // Point 3's model and the torn entries use no fault handler: one
        // boot measures them, the default version's (two-level for point
        // 3, PAE for the torn entries, which two-level does not have).
        let once = vmfault::mm::fault::version() == vmfault::mm::VmallocFaultVersion::Sync;
        let two_level = vmfault::mm::pgtable::mode() == vmfault::mm::pgtable::PagingMode::TwoLevel;
        if once && two_level {
            for (slow, pressure, name) in super::point3::CONFIGS {
                if let Some(r) = timed(name, || super::point3::explore_point3(slow, pressure, 1)) {
                    row_point3(name, &r);
                }
            }
        }
        if once {
            for (i, w) in super::torn::ALL.iter().enumerate() {
                if let Some(t) = super::torn::explore_torn(*w, 1) {
                    row_torn(i, *w, &t);
                }
            }
        }
        println!("EXP|end");
        return;
    }
    if let Some(r) = timed("thread", || explore(Variant::Thread, false, 1)) {
        row("thread", &r);
    }
    if let Some(r) = timed("irq", || explore(Variant::InIrq, false, 1)) {
        row("irq", &r);
    }
    if let Some(r) = timed("depth2", || explore(Variant::Thread, true, 1)) {
        row("depth2", &r);
    }
    // Question 1: every (outer, nested) pair of two levels; three levels
    // on a sample (every 8th outer and nested boundary).
    for (name, levels, stride) in [("q1_pairs2", 2, 1), ("q1_pairs3", 3, Q1_SAMPLE)] {
        let r = timed(name, || {
            explore_pairs(levels, stride, stride, |k, codes| {
                println!("EXPQR|{}|{}|{}", name, k, codes)
            })
        });
        if let Some(r) = r {
            row_pairs(name, stride, &r);
        }
    }
    for (name, kthread) in [("window", false), ("window_kthread", true)] {
        if let Some(w) = timed(name, || explore_window(kthread, 1)) {
            println!(
                "EXP|{}|stepped={}|in_window={}|delivered={}|failures={}|null_active_mm={}|null_failures={}",
                name, w.stepped, w.in_window, w.delivered, w.failures, w.null_active_mm, w.null_failures
            );
            for (k, eip, o) in w.failing.first().into_iter().chain(w.failing.last()) {
                println!(
                    "EXPG|{}|failing boundary {} at {:#010x}: {:?}",
                    name, k, eip, o
                );
            }
            print_strip(name, &w.eips, &w.marks);
        }
    }
    if let Some(r) = timed("r2020", || explore_2020(Cpus::One, 1)) {
        row_2020("r2020", &r);
    }
    if let Some(r) = timed("fork_sleep", || super::fork_race::explore_fork_sleeps(None)) {
        row_fork("fork_sleep", &r);
    }
    if let Some(s) = timed("stress", || stress(STRESS_ROUNDS, STRESS_MMS)) {
        println!(
            "EXP|stress|rounds={}|clean={}|oopses={}|bad_areas={}|hangs={}|fault_loops={}|timer_during_touch={}|fault_ticks={}|planned={}|mms={}",
            s.rounds, s.clean, s.oopses, s.bad_areas, s.hangs, s.fault_loops, s.timer_during_touch, s.fault_ticks,
            STRESS_ROUNDS, STRESS_MMS
        );
    }
    println!("EXP|end");
}
