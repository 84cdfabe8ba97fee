//! The second CPU's driver.  With two CPUs online the soak runs a second
//! driver, a thread pinned to CPU 1 in an address space of its own, that
//! draws operations from its own seeded generator out of the same budget
//! (`OP`) on the same model: both CPUs vmalloc, vfree, touch, make and
//! drop address spaces and threads, and free page tables at once, while
//! the worker threads run on whichever CPU the scheduler gives them and
//! each CPU's local APIC timer reads areas from interrupts.
//!
//! The model check needs the model still: the first driver asks this one
//! to park (it yields while parked, so the workers on CPU 1 can finish),
//! checks, and lets it go.  An oops on CPU 1, in this driver, a worker
//! there or a timer handler, ends at this driver's recovery point (the
//! points are per CPU, and this thread is pinned to CPU 1): it is
//! counted, and both drivers stop.  The driver keeps a point armed until
//! the first driver's teardown has joined every worker.

use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use vmfault::arch::x86::apic;
use vmfault::arch::x86::irq;
use vmfault::arch::x86::spinlock::SpinLock;
use vmfault::mm::mm_struct::mm_alloc;
use vmfault::rand::Rng;
use vmfault::sched::{self, Task};
use vmfault::{fixup, println};

use super::*;

/// No more operations: the budget is spent, or an oops happened.
pub(super) static STOP: AtomicBool = AtomicBool::new(false);
/// A driver's run ended in an oops (the model may be half updated).
pub(super) static OOPSED: AtomicBool = AtomicBool::new(false);
/// The first driver wants the model still.
static PARK: AtomicBool = AtomicBool::new(false);
/// The second driver is parked (or done with operations).
static PARKED: AtomicBool = AtomicBool::new(false);
/// The second driver's operations and timer are over for this run.
static DONE: AtomicBool = AtomicBool::new(false);
/// The teardown joined every worker: the second driver may leave.
static ALL_DONE: AtomicBool = AtomicBool::new(false);
static CONFIG: SpinLock<Option<SoakConfig>> = SpinLock::new(None);
/// A second driver was started for this run.
static CONFIG_STARTED: AtomicBool = AtomicBool::new(false);
static REPORT: SpinLock<Option<SoakReport>> = SpinLock::new(None);

/// The generator of CPU 1's driver: another stream of the same seed.
const SECOND_STREAM: u64 = 0x2001_0223_0000_0001;

/// Start the second driver, parked, if `cfg` wants two CPUs and CPU 1 is
/// online.  Before the first driver measures its frames: the driver's
/// stack and address space are not the model's.
pub(super) fn start(cfg: &SoakConfig) -> Option<Arc<Task>> {
    for f in [&STOP, &PARKED, &DONE, &ALL_DONE, &OOPSED, &CONFIG_STARTED] {
        f.store(false, Ordering::SeqCst);
    }
    if cfg.cpus < 2 || !vmfault::arch::x86::smp::cpu_online(1) {
        return None;
    }
    CONFIG_STARTED.store(true, Ordering::SeqCst);
    PARK.store(true, Ordering::SeqCst);
    *CONFIG.lock_irqsave() = Some(*cfg);
    *REPORT.lock_irqsave() = None;
    let mm = mm_alloc()?;
    let t = sched::run_on(1, "soak-cpu1", second_driver, 0, Some(mm));
    wait_until(|| PARKED.load(Ordering::SeqCst));
    Some(t)
}

/// Spin (yielding: the other tasks of this CPU may be what we wait for).
fn wait_until(cond: impl Fn() -> bool) {
    while !cond() {
        sched::yield_now();
        core::hint::spin_loop();
    }
}

/// Let the second driver run (the timers are on).
pub(super) fn unpark() {
    PARK.store(false, Ordering::SeqCst);
}

/// Hold the second driver at its next operation boundary, for a check.
pub(super) fn park() {
    if !CONFIG_STARTED.load(Ordering::SeqCst) {
        return;
    }
    PARK.store(true, Ordering::SeqCst);
    wait_until(|| PARKED.load(Ordering::SeqCst) || DONE.load(Ordering::SeqCst));
}

/// No more operations on either CPU; back once the second driver has
/// stopped its timer and waits for the teardown.
pub(super) fn stop() {
    STOP.store(true, Ordering::SeqCst);
    if CONFIG_STARTED.load(Ordering::SeqCst) {
        wait_until(|| DONE.load(Ordering::SeqCst));
    }
}

/// After the teardown: let the second driver go, wait for it, and take
/// its figures.
pub(super) fn finish(t: Option<Arc<Task>>) -> Option<SoakReport> {
    let t = t?;
    ALL_DONE.store(true, Ordering::SeqCst);
    sched::join(&t);
    REPORT.lock_irqsave().take()
}

fn second_driver(_: usize) {
    let cfg = CONFIG.lock_irqsave().expect("soak config");
    let mut s = Soak::new(cfg, Rng::new(cfg.seed as u64 ^ SECOND_STREAM));
    // Under a point from the first yield on: workers may run on CPU 1 as
    // soon as this driver parks.  The timer stops inside the point on the
    // way out; after an oops the handlers read nothing (RECOVERIES0).
    let r = fixup::catch(false, || {
        park_here();
        if apic::present() {
            apic::timer_periodic(irq::LOCAL_TIMER_VECTOR, cfg.apic_count);
        }
        s.run_second();
        if apic::present() {
            apic::timer_stop();
        }
    });
    if let Err(c) = r {
        if apic::present() {
            apic::timer_stop();
        }
        s.count_oops(&c, 1);
    }
    // Parked for good, still under a point: a worker may yet oops here.
    DONE.store(true, Ordering::SeqCst);
    loop {
        match fixup::catch(false, || {
            wait_until(|| ALL_DONE.load(Ordering::SeqCst));
        }) {
            Ok(()) => break,
            Err(c) => s.count_oops(&c, 1),
        }
    }
    *REPORT.lock_irqsave() = Some(s.report);
}

/// Park while the first driver asks.
fn park_here() {
    if PARK.load(Ordering::SeqCst) {
        PARKED.store(true, Ordering::SeqCst);
        wait_until(|| !PARK.load(Ordering::SeqCst) || STOP.load(Ordering::SeqCst));
        PARKED.store(false, Ordering::SeqCst);
    }
}

impl Soak {
    /// CPU 1's operations: claim one from the shared budget, do it.
    fn run_second(&mut self) {
        loop {
            park_here();
            if STOP.load(Ordering::SeqCst) {
                return;
            }
            match claim_op(self.cfg.ops) {
                Claim::Done => return,
                // The first driver will park this one and check.
                Claim::CheckDue => {
                    sched::yield_now();
                    core::hint::spin_loop();
                }
                Claim::Claimed => self.step(),
            }
        }
    }

    /// An oops ended a driver's run: count it, say where, stop both.
    pub(super) fn count_oops(&mut self, c: &fixup::Caught, cpu: u32) {
        forget_readers();
        let op = OP.load(Ordering::SeqCst).min(self.cfg.ops);
        self.report.oopses += 1;
        self.report.oops_at_op.get_or_insert(op);
        println!(
            "soak: op {} on CPU {} (seed {:#x}): {}",
            op, cpu, self.cfg.seed, c.msg
        );
        if c.vector == 14 {
            // Whose page was it: a live area of the model (then the
            // kernel lost a mapping), or one already freed (then a
            // reader kept a stale address)?
            let page = c.cr2 & !(PAGE - 1);
            let live = with_shared(|s| {
                s.areas
                    .iter()
                    .find(|a| page >= a.addr && page < a.addr + a.pages * PAGE)
                    .copied()
            });
            match live {
                Some(a) => println!(
                    "soak: {:#x} is in a live area {:#x} ({} pages, made on CPU {}, {} pins)",
                    c.cr2, a.addr, a.pages, a.cpu, a.pins
                ),
                None => println!("soak: {:#x} is in no live area of the model", c.cr2),
            }
        }
        OOPSED.store(true, Ordering::SeqCst);
        STOP.store(true, Ordering::SeqCst);
    }
}

/// The operation count at which the next model check is due: no driver
/// claims past it until the first driver has made the check.
pub(super) static NEXT_CHECK: AtomicU32 = AtomicU32::new(u32::MAX);

pub(super) enum Claim {
    Claimed,
    /// A model check is due first.
    CheckDue,
    /// The budget is spent.
    Done,
}

/// Take the next operation of the budget, if any is left and no check is
/// due.
pub(super) fn claim_op(ops: u32) -> Claim {
    let check = NEXT_CHECK.load(Ordering::SeqCst);
    match OP.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
        (n < ops && n < check).then_some(n + 1)
    }) {
        Ok(_) => Claim::Claimed,
        Err(n) if n >= ops => Claim::Done,
        Err(_) => Claim::CheckDue,
    }
}
