//! Runs last: the whole suite must give back every frame it took.

use crate::case;
use crate::ktest::Suite;

pub static SUITE: Suite = Suite {
    name: "leaks",
    cases: &[case!(frames_restored_after_all_suites)],
};

fn frames_restored_after_all_suites() {
    crate::sched::yield_now(); // let finished threads be reaped
    let (before, now) = (
        crate::ktest::frames_at_start(),
        crate::mm::frame::nr_free_frames(),
    );
    crate::println!(
        "    # free frames: {} before the suites, {} after",
        before,
        now
    );
    assert_eq!(
        now,
        before,
        "the suites leaked {} frames",
        before as isize - now as isize
    );
}
