//! The in-kernel test harness.  Suites of cases, each case a plain `fn()`
//! that passes by returning and fails by panicking (`assert!`,
//! `assert_eq!`), by taking an unexpected exception, or by a double fault;
//! `skip` skips it.  Every case runs under its own recovery point
//! (`vmfault::fixup`, the kernel's exception fixup), so one broken case never stops the next.
//!
//! Output is KTAP version 1 on the serial console, one two-space-indented
//! subtest per suite, then QEMU exits through isa-debug-exit with the
//! verdict.  To add a test: write the `fn` in a suite file under
//! `ktest/suites/` and list it in that suite's `CASES` with `case!`.
#![no_std]

pub mod fuzz;
pub mod glob;
pub mod suites;

extern crate alloc;

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use spin::Mutex;

use vmfault::fixup::{self, Caught, CaughtKind};

pub struct Case {
    pub name: &'static str,
    pub func: fn(),
}

pub struct Suite {
    pub name: &'static str,
    pub cases: &'static [Case],
}

/// `case!(f)` registers `fn f()` under its own name.
#[macro_export]
macro_rules! case {
    ($f:ident) => {
        $crate::Case {
            name: stringify!($f),
            func: $f,
        }
    };
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail,
    Skip,
}

/// Where results go: the KTAP printer, or a recorder for the harness's own
/// tests.
pub trait Reporter {
    fn suite_start(&mut self, suite: &Suite, planned: usize);
    fn case_done(&mut self, n: usize, case: &Case, outcome: Outcome, why: Option<&Caught>);
    fn suite_done(&mut self, n: usize, suite: &Suite, counts: &Counts);
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub pass: usize,
    pub fail: usize,
    pub skip: usize,
}

impl Counts {
    fn add(&mut self, o: Outcome) {
        match o {
            Outcome::Pass => self.pass += 1,
            Outcome::Fail => self.fail += 1,
            Outcome::Skip => self.skip += 1,
        }
    }

    pub fn total(&self) -> usize {
        self.pass + self.fail + self.skip
    }

    fn outcome(&self) -> Outcome {
        if self.fail > 0 {
            Outcome::Fail
        } else if self.pass == 0 && self.skip > 0 {
            Outcome::Skip
        } else {
            Outcome::Pass
        }
    }
}

/// Spin until `cond` holds, at most `limit` times (PAUSE between tries,
/// which also hands the host thread to another vCPU under round-robin
/// TCG); whether it held.
pub fn wait_for(mut cond: impl FnMut() -> bool, limit: u32) -> bool {
    for _ in 0..limit {
        if cond() {
            return true;
        }
        core::hint::spin_loop();
    }
    cond()
}

/// End the running case as skipped, with the reason KTAP prints.
pub fn skip(reason: &str) -> ! {
    fixup::abort(reason)
}

/// Run one case under its recovery point.
pub fn run_case(case: &Case) -> (Outcome, Option<Caught>) {
    run_guarded(case.func)
}

/// What `run_case` does, for any closure (the harness's own checks).
fn run_guarded(f: impl FnOnce()) -> (Outcome, Option<Caught>) {
    let flags = vmfault::arch::x86::cpu::save_flags();
    let r = fixup::catch(false, f);
    // Each case starts in init_mm: drop whatever mm swapper borrowed.
    vmfault::sched::drop_lazy_mm();
    // A case that died with interrupts masked must not leave them masked
    // for the next one.
    vmfault::arch::x86::cpu::restore_flags(flags);
    match r {
        Ok(()) => (Outcome::Pass, None),
        Err(c) if c.kind == CaughtKind::Abort => (Outcome::Skip, Some(c)),
        Err(c) => (Outcome::Fail, Some(c)),
    }
}

/// The case every suite that ran ends with: it gave back the frames it
/// took.  Its `func` is never called: the check needs the count taken
/// before the suite, so `run_suite` runs it as a closure.
pub static FRAMES_RESTORED: Case = Case {
    name: "frames_restored",
    func: || {},
};

/// Free frames, counting the kernel page tables vmalloc keeps for good
/// (as 2.4 does) as given back.  Finished threads are reaped first: a
/// suite's last thread may not have been switched away from for good yet.
fn frames_in_hand() -> usize {
    vmfault::sched::yield_now();
    vmfault::mm::vmalloc::free_frames_and_kept_tables()
}

/// Run the selected cases of `suite`, then `frames_restored`, so that a
/// suite that leaks frames fails on its own, under any filter; returns
/// its counts.
pub fn run_suite(n: usize, suite: &Suite, filter: &str, r: &mut dyn Reporter) -> Counts {
    let selected = suite
        .cases
        .iter()
        .filter(|c| glob::selects(filter, suite.name, c.name))
        .count();
    let mut counts = Counts::default();
    r.suite_start(suite, selected + (selected > 0) as usize);
    if selected == 0 {
        r.suite_done(n, suite, &counts);
        return counts;
    }
    let before = frames_in_hand();
    let mut i = 0;
    for case in suite
        .cases
        .iter()
        .filter(|c| glob::selects(filter, suite.name, c.name))
    {
        i += 1;
        let t0 = vmfault::arch::x86::tsc::now_ms();
        let (o, why) = run_case(case);
        // Where make test's time goes (issue 14's 240 s budget): a
        // diagnostic the host sums per case, never a pass/fail criterion.
        if let (Some(t0), Some(t1)) = (t0, vmfault::arch::x86::tsc::now_ms()) {
            vmfault::println!("    # time: {}.{} {} ms", suite.name, case.name, t1 - t0);
        }
        counts.add(o);
        r.case_done(i, case, o, why.as_ref());
    }
    let (o, why) = run_guarded(|| {
        let after = frames_in_hand();
        assert!(
            after == before,
            "suite {} {} {} frames ({} free before its cases, {} after; kept kernel page tables count as free)",
            suite.name,
            if after < before { "leaked" } else { "gave back" },
            before.abs_diff(after),
            before,
            after
        );
    });
    counts.add(o);
    r.case_done(i + 1, &FRAMES_RESTORED, o, why.as_ref());
    r.suite_done(n, suite, &counts);
    counts
}

/// KTAP version 1 on the serial console.
pub struct Ktap;

impl Reporter for Ktap {
    fn suite_start(&mut self, suite: &Suite, planned: usize) {
        vmfault::println!("  KTAP version 1");
        vmfault::println!("  # Subtest: {}", suite.name);
        vmfault::println!("  1..{}", planned);
    }

    fn case_done(&mut self, n: usize, case: &Case, outcome: Outcome, why: Option<&Caught>) {
        match (outcome, why) {
            (Outcome::Pass, _) => vmfault::println!("  ok {} {}", n, case.name),
            (Outcome::Skip, w) => {
                vmfault::println!(
                    "  ok {} {} # SKIP {}",
                    n,
                    case.name,
                    w.map(|c| c.msg.as_str()).unwrap_or("")
                )
            }
            (Outcome::Fail, w) => {
                if let Some(c) = w {
                    // KTAP diagnostics are one `#` line each.
                    for (i, line) in c.msg.as_str().lines().enumerate() {
                        if i == 0 {
                            vmfault::println!("    # {}: {}", case.name, line);
                        } else {
                            vmfault::println!("    # {}", line);
                        }
                    }
                }
                vmfault::println!("  not ok {} {}", n, case.name)
            }
        }
    }

    fn suite_done(&mut self, n: usize, suite: &Suite, c: &Counts) {
        vmfault::println!(
            "  # {}: pass:{} fail:{} skip:{} total:{}",
            suite.name,
            c.pass,
            c.fail,
            c.skip,
            c.total()
        );
        match c.outcome() {
            Outcome::Pass => vmfault::println!("ok {} {}", n, suite.name),
            Outcome::Skip => vmfault::println!("ok {} {} # SKIP no case ran", n, suite.name),
            Outcome::Fail => vmfault::println!("not ok {} {}", n, suite.name),
        }
    }
}

/// The suites `run` has finished, in order, each with the number of its
/// cases the filter selected and its number of cases: what the leaks
/// suite's total covers.
static FINISHED: Mutex<Vec<(&'static str, usize, usize)>> = Mutex::new(Vec::new());

/// See `FINISHED`.
pub fn suites_finished() -> Vec<(&'static str, usize, usize)> {
    FINISHED.lock().clone()
}

static FRAMES_AT_START: AtomicUsize = AtomicUsize::new(0);
static PGTABLES_AT_START: AtomicU32 = AtomicU32::new(0);

/// Free frames when `run` started (for the leak check).
pub fn frames_at_start() -> usize {
    FRAMES_AT_START.load(Ordering::Relaxed)
}

/// vmalloc's kernel page-table pages when `run` started.
pub fn pgtables_at_start() -> u32 {
    PGTABLES_AT_START.load(Ordering::Relaxed)
}

/// Run every suite that `filter` selects, print KTAP, and return totals.
pub fn run(suites: &[&Suite], filter: &str) -> Counts {
    FRAMES_AT_START.store(vmfault::mm::frame::nr_free_frames(), Ordering::Relaxed);
    PGTABLES_AT_START.store(
        vmfault::mm::vmalloc::kernel_pgtable_pages(),
        Ordering::Relaxed,
    );
    let selected = |s: &&&Suite| {
        s.cases
            .iter()
            .any(|c| glob::selects(filter, s.name, c.name))
    };
    let planned = suites.iter().filter(selected).count();
    vmfault::println!("KTAP version 1");
    vmfault::println!("1..{}", planned);
    let mut total = Counts::default();
    FINISHED.lock().clear();
    for (i, s) in suites.iter().filter(selected).enumerate() {
        let c = run_suite(i + 1, s, filter, &mut Ktap);
        let cases = s
            .cases
            .iter()
            .filter(|c| glob::selects(filter, s.name, c.name))
            .count();
        FINISHED.lock().push((s.name, cases, s.cases.len()));
        total.pass += c.pass;
        total.fail += c.fail;
        total.skip += c.skip;
    }
    vmfault::println!(
        "# Totals: pass:{} fail:{} skip:{} total:{}",
        total.pass,
        total.fail,
        total.skip,
        total.total()
    );
    total
}

/// Run the registered suites and leave QEMU with the verdict.
pub fn run_and_exit(filter: &str) -> ! {
    let total = run(suites::ALL, filter);
    if total.total() == 0 {
        // What the host says when no boot found a case (`make test TEST=`).
        vmfault::print!("# no case matches test={}; the suites:", filter);
        for (i, s) in suites::ALL.iter().enumerate() {
            vmfault::print!("{}{}", if i == 0 { " " } else { ", " }, s.name);
        }
        vmfault::println!();
    }
    let code = if total.fail == 0 && total.total() > 0 {
        vmfault::qemu::ExitCode::Success
    } else {
        vmfault::qemu::ExitCode::Failed
    };
    vmfault::qemu::exit(code)
}
