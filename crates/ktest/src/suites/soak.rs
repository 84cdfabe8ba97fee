//! The short soak (`make soak` runs the long one): a seeded random mix of
//! vmalloc, vfree, touches, address spaces and threads under timer
//! preemption and a vmalloc-touching timer interrupt, checked against the
//! model along the way, must end with every frame and area given back.

use crate::case;
use crate::skip;
use crate::Suite;
use vmfault::mm::fault;
use vmfault_lab::soak::{self, SoakConfig};

pub static SUITE: Suite = Suite {
    name: "soak",
    cases: &[case!(short_soak_gives_everything_back)],
};

const SEED: u32 = 0x2001_0223;
const OPS: u32 = 4_000;

fn short_soak_gives_everything_back() {
    if !fault::version().meant_correct() {
        skip("the soak runs the correct handlers only (sync, eager)");
    }
    if vmfault::arch::x86::smp::online().count() > 1 && !fault::version().meant_correct_on_smp() {
        // make soak reports where it oopses instead.
        skip("two CPUs open 5.8's map-then-sync window (the 2020 regression): eager may oops by chance");
    }
    let cfg = SoakConfig {
        check_every: 500,
        ..SoakConfig::new(SEED, OPS)
    };
    let r = soak::run(cfg);
    soak::print_report(&cfg, &r);
    assert_eq!(r.oopses, 0, "oops at op {:?}", r.oops_at_op);
    assert_eq!(r.ops, OPS);
    assert_eq!(r.model_errors, 0);
    assert_eq!(r.corruptions, 0);
    assert_eq!(r.leaked_frames, 0, "frames not given back");
    assert_eq!(r.leaked_areas, 0, "areas not given back");
    assert!(r.checks >= OPS / 500, "{} model checks", r.checks);
    // The mix really happened.
    assert!(r.vmallocs > 0 && r.vfrees > 0 && r.threads > 0 && r.mms_created > 0);
    assert!(r.thread_touches > 0, "no thread touched an area");
    if vmfault::arch::x86::apic::present() {
        assert!(r.irq_touches > 0, "the timer handler never read an area");
    }
    // (Lazy faults are too few in 4,000 operations to require one: 0 to 3
    // here under two-level sync.  make soak requires them over 1,000,000.)
}
