//! Runs last: the whole suite must give back every frame it took.

extern crate alloc;

use core::fmt::Write;

use crate::case;
use crate::Suite;

pub static SUITE: Suite = Suite {
    name: "leaks",
    cases: &[case!(frames_restored_after_all_suites)],
};

/// Every suite also checks its own frames (`frames_restored`, added by
/// the harness); this is the sum over the run, which also catches frames
/// the harness itself or one suite's clean-up of another lost.  It covers
/// only what ran before it, and says so.
fn frames_restored_after_all_suites() {
    let ran = crate::suites_finished();
    if ran.is_empty() {
        crate::skip("no suite ran before it (the filter selected leaks only)");
    }
    let mut covered = alloc::string::String::new();
    for (i, (name, run, all)) in ran.iter().enumerate() {
        let sep = if i == 0 { "" } else { ", " };
        let _ = write!(covered, "{}{} ({} of {} cases)", sep, name, run, all);
    }
    vmfault::println!("    # covers {} suites: {}", ran.len(), covered);
    vmfault::sched::yield_now(); // let finished threads be reaped
    let before = crate::frames_at_start();
    let now = vmfault::mm::frame::nr_free_frames();
    // Kernel page tables vmalloc created stay for good (as in 2.4).
    let tables =
        (vmfault::mm::vmalloc::kernel_pgtable_pages() - crate::pgtables_at_start()) as usize;
    vmfault::println!(
        "    # free frames: {} before the suites, {} after, {} kept as kernel page tables",
        before,
        now,
        tables
    );
    let leaked = before as isize - (now + tables) as isize;
    assert_eq!(now + tables, before, "the suites leaked {} frames", leaked);
}
