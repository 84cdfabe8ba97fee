//! Runs last: the whole suite must give back every frame it took.

use crate::case;
use crate::ktest::Suite;

pub static SUITE: Suite = Suite {
    name: "leaks",
    cases: &[case!(frames_restored_after_all_suites)],
};

fn frames_restored_after_all_suites() {
    crate::sched::yield_now(); // let finished threads be reaped
    let before = crate::ktest::frames_at_start();
    let now = crate::mm::frame::nr_free_frames();
    // Kernel page tables vmalloc created stay for good (as in 2.4).
    let tables =
        (crate::mm::vmalloc::kernel_pgtable_pages() - crate::ktest::pgtables_at_start()) as usize;
    crate::println!(
        "    # free frames: {} before the suites, {} after, {} kept as kernel page tables",
        before,
        now,
        tables
    );
    let leaked = before as isize - (now + tables) as isize;
    assert_eq!(now + tables, before, "the suites leaked {} frames", leaked);
}
