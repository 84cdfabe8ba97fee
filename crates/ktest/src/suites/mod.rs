//! Every suite the kernel carries, in the order they run.  A new suite is
//! a file here plus one line in `ALL`.
mod boot;
mod cmdline;
mod frames;
mod fuzz;
mod harness;
mod irq;
mod leaks;
mod paging;
mod race;
mod sched;
mod smp;
mod soak;
mod traps;
mod vmalloc;

use super::Suite;

pub static ALL: &[&Suite] = &[
    &boot::SUITE,
    &cmdline::SUITE,
    &traps::SUITE,
    &harness::SUITE,
    &frames::SUITE,
    &paging::SUITE,
    &sched::SUITE,
    &vmalloc::SUITE,
    &irq::SUITE,
    &smp::SUITE,
    &race::SUITE,
    &soak::SUITE,
    &fuzz::SUITE,
    // Last: checks what all the others gave back.
    &leaks::SUITE,
];
