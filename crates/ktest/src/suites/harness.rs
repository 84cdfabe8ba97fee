//! The harness tested by itself: a small suite of cases that pass, fail,
//! panic, fault and skip runs through the same `run_suite` as the real
//! suites, into a recorder instead of the serial KTAP printer.

use core::sync::atomic::{AtomicU32, Ordering};

use crate::case;
use crate::skip;
use crate::{run_suite, Case, Counts, Outcome, Reporter, Suite};
use vmfault::arch::x86::cpu;
use vmfault::fixed_buf::FixedBuf;
use vmfault::fixup::{Caught, CaughtKind};

pub static SUITE: Suite = Suite {
    name: "harness",
    cases: &[
        case!(failing_case_does_not_stop_the_next),
        case!(diagnostics_say_why),
        case!(filter_limits_the_plan),
        case!(interrupt_flag_restored_after_a_dying_case),
        case!(suite_that_leaks_a_frame_fails_frames_restored),
        case!(serial_console_carries_long_output),
    ],
};

fn passes() {}
fn fails() {
    assert_eq!(1 + 1, 3, "arithmetic is broken");
}
fn panics() {
    panic!("deliberate panic");
}
fn faults() {
    // SAFETY: faults on purpose inside a recovery point.
    unsafe { core::ptr::read_volatile(0x0BAD_F000 as *const u32) };
}
fn skips() {
    skip("not applicable here");
}
fn dies_with_irqs_off() {
    cpu::cli();
    panic!("died with IF clear");
}

static INNER: Suite = Suite {
    name: "inner",
    cases: &[
        case!(fails),
        case!(passes),
        case!(panics),
        case!(faults),
        case!(skips),
        case!(passes),
    ],
};

#[derive(Default)]
struct Recorder {
    planned: usize,
    outcomes: [Option<Outcome>; 8],
    kinds: [Option<CaughtKind>; 8],
    why: [FixedBuf<120>; 8],
    names: [&'static str; 8],
    n: usize,
    done: Option<Counts>,
}

impl Reporter for Recorder {
    fn suite_start(&mut self, _s: &Suite, planned: usize) {
        self.planned = planned;
    }
    fn case_done(&mut self, _n: usize, c: &Case, o: Outcome, why: Option<&Caught>) {
        self.outcomes[self.n] = Some(o);
        self.names[self.n] = c.name;
        self.kinds[self.n] = why.map(|w| w.kind);
        if let Some(w) = why {
            let _ = core::fmt::Write::write_str(&mut self.why[self.n], w.msg.as_str());
        }
        self.n += 1;
    }
    fn suite_done(&mut self, _n: usize, _s: &Suite, c: &Counts) {
        self.done = Some(*c);
    }
}

fn failing_case_does_not_stop_the_next() {
    let mut r = Recorder::default();
    let c = run_suite(1, &INNER, "*", &mut r);
    use Outcome::*;
    // The six cases, then the frames check the harness adds.
    assert_eq!(r.planned, 7);
    assert_eq!(r.n, 7, "every case ran");
    assert_eq!(
        r.outcomes[..7],
        [
            Some(Fail),
            Some(Pass),
            Some(Fail),
            Some(Fail),
            Some(Skip),
            Some(Pass),
            Some(Pass)
        ]
    );
    assert_eq!(r.names[6], "frames_restored");
    assert_eq!(
        c,
        Counts {
            pass: 3,
            fail: 3,
            skip: 1
        }
    );
    assert_eq!(r.done, Some(c));
}

fn diagnostics_say_why() {
    let mut r = Recorder::default();
    run_suite(1, &INNER, "*", &mut r);
    assert_eq!(r.kinds[0], Some(CaughtKind::Panic));
    assert!(
        r.why[0].as_str().contains("arithmetic is broken"),
        "{}",
        r.why[0]
    );
    assert!(
        r.why[0].as_str().contains("harness.rs"),
        "location missing: {}",
        r.why[0]
    );
    assert!(
        r.why[2].as_str().contains("deliberate panic"),
        "{}",
        r.why[2]
    );
    assert_eq!(r.kinds[3], Some(CaughtKind::Exception));
    assert!(r.why[3].as_str().contains("page fault"), "{}", r.why[3]);
    assert!(r.why[3].as_str().contains("0badf000"), "{}", r.why[3]);
    assert_eq!(r.kinds[4], Some(CaughtKind::Abort));
    assert_eq!(r.why[4].as_str(), "not applicable here");
}

fn filter_limits_the_plan() {
    let mut r = Recorder::default();
    let c = run_suite(1, &INNER, "inner.pas*", &mut r);
    assert_eq!(r.planned, 3, "two cases and frames_restored");
    assert_eq!(
        c,
        Counts {
            pass: 3,
            fail: 0,
            skip: 0
        }
    );
}

fn interrupt_flag_restored_after_a_dying_case() {
    static ONE: Suite = Suite {
        name: "one",
        cases: &[case!(dies_with_irqs_off)],
    };
    let before = cpu::save_flags();
    let mut r = Recorder::default();
    run_suite(1, &ONE, "*", &mut r);
    assert_eq!(r.outcomes[0], Some(Outcome::Fail));
    assert_eq!(cpu::save_flags().irqs_enabled(), before.irqs_enabled());
}

static LEAKED: AtomicU32 = AtomicU32::new(0);

fn leaks_a_frame() {
    LEAKED.store(
        vmfault::mm::frame::alloc_frame().expect("frame"),
        Ordering::SeqCst,
    );
}

/// The harness's own frames check fails a suite whose cases all passed
/// but kept a frame, and names the suite and the count.
fn suite_that_leaks_a_frame_fails_frames_restored() {
    static LEAKY: Suite = Suite {
        name: "leaky",
        cases: &[case!(passes), case!(leaks_a_frame)],
    };
    let mut r = Recorder::default();
    let c = run_suite(1, &LEAKY, "*", &mut r);
    vmfault::mm::frame::free_frame(LEAKED.load(Ordering::SeqCst));
    assert_eq!(r.planned, 3);
    assert_eq!(
        r.outcomes[..3],
        [
            Some(Outcome::Pass),
            Some(Outcome::Pass),
            Some(Outcome::Fail)
        ]
    );
    assert_eq!(r.names[2], "frames_restored");
    assert!(
        r.why[2].as_str().contains("suite leaky leaked 1 frames"),
        "{}",
        r.why[2]
    );
    assert_eq!(c.fail, 1);
}

/// The UART passed the crate's loopback self-test at boot, and 64 long
/// lines go through it; the host runner checks that every one of them and
/// the end marker arrived intact in the serial log.
fn serial_console_carries_long_output() {
    assert!(vmfault::console::present(), "COM1 failed its self-test");
    for i in 0..64 {
        vmfault::println!("    # serial line {:02} {}", i, SERIAL_PATTERN);
    }
    vmfault::println!("    # serial end marker");
}

const SERIAL_PATTERN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
