//! Stress with real asynchronous interrupts: a kernel thread in each of
//! several victim mms arms the local APIC timer with a short, varying
//! delay and touches a stale vmalloc slot; the timer handler (a 2.4-style
//! handler, interrupts enabled) touches another page of the same slot.
//! Where the timer lands is up to the hardware (QEMU's TCG here): before
//! the touch, inside the fault handler, or after it.  A PIT watchdog
//! turns a hang into a counted outcome.

extern crate alloc;

use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use super::scenario::Scenario;
use vmfault::arch::x86::entry::TrapFrame;
use vmfault::arch::x86::irq::{self, IrqFlags};
use vmfault::arch::x86::{apic, cpu, dispatch, pit};
use vmfault::fixup::{self, Caught, CaughtKind};
use vmfault::mm::fault;
use vmfault::sched;

const WATCHDOG_TICKS: u32 = 50;

static ROUND: AtomicU32 = AtomicU32::new(0);
static LAST_PROGRESS: AtomicU32 = AtomicU32::new(0);
static STALLED: AtomicU32 = AtomicU32::new(0);
static FIRED: AtomicBool = AtomicBool::new(false);
static ACTIVE: AtomicBool = AtomicBool::new(false);
static TARGET: AtomicU32 = AtomicU32::new(0);
static INNER: AtomicU32 = AtomicU32::new(0);
static ROUNDS: AtomicU32 = AtomicU32::new(0);
static CLEAN: AtomicU32 = AtomicU32::new(0);
static INSIDE: AtomicU32 = AtomicU32::new(0);
static IN_FAULT: AtomicBool = AtomicBool::new(false);
/// APIC timer ticks one faulting touch takes (calibrated per run).
static SPAN: AtomicU32 = AtomicU32::new(64);

/// Time one faulting touch in APIC timer ticks, from a thread in `mm`:
/// the fastest of a few (the first one also pays for QEMU translating the
/// fault path).
fn calibrate(_: usize) {
    let x = TARGET.load(Ordering::SeqCst);
    let mut best = u32::MAX;
    for _ in 0..4 {
        apic::timer_start_masked(u32::MAX);
        let t0 = apic::timer_current();
        // SAFETY: a vmalloc'd word of the scenario.
        unsafe { core::ptr::write_volatile(x as *mut u32, 1) };
        let t1 = apic::timer_current();
        apic::timer_stop();
        best = best.min(t0 - t1);
        let f = cpu::local_irq_save();
        scenario_restale();
        cpu::flush_tlb();
        cpu::restore_flags(f);
    }
    SPAN.store(best.max(1), Ordering::SeqCst);
}

/// What the stress saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StressReport {
    pub rounds: u32,
    pub clean: u32,
    pub oopses: u32,
    /// Of the oopses, those that came through vmalloc_fault's bad_area.
    pub bad_areas: u32,
    pub hangs: u32,
    /// Rounds ended by the same fault again and again (`fault_loop`).
    pub fault_loops: u32,
    /// Rounds whose timer interrupt arrived during the touch, i.e. while
    /// its vmalloc fault (if any) was being handled: the interesting ones.
    pub timer_during_touch: u32,
    /// APIC timer ticks one faulting touch took (the delay range is twice
    /// that).
    pub fault_ticks: u32,
}

fn timer_irq(_: &mut TrapFrame) {
    if IN_FAULT.load(Ordering::SeqCst) {
        INSIDE.fetch_add(1, Ordering::SeqCst);
    }
    let y = INNER.load(Ordering::SeqCst);
    // SAFETY: a vmalloc'd word of the scenario.
    unsafe { core::ptr::write_volatile(y as *mut u32, ROUND.load(Ordering::SeqCst)) };
    FIRED.store(true, Ordering::SeqCst);
}

fn watchdog(_: &mut TrapFrame) {
    if !ACTIVE.load(Ordering::SeqCst) {
        return;
    }
    let r = ROUND.load(Ordering::SeqCst);
    if r != LAST_PROGRESS.swap(r, Ordering::SeqCst) {
        STALLED.store(0, Ordering::SeqCst);
    } else if STALLED.fetch_add(1, Ordering::SeqCst) + 1 >= WATCHDOG_TICKS {
        STALLED.store(0, Ordering::SeqCst);
        let mut c = Caught::exception(&TrapFrame::default(), 0, false);
        c.kind = CaughtKind::Exception;
        c.vector = 0xFFFF;
        fixup::recover_or_fail(c);
    }
}

/// The victim thread: rounds until `arg` rounds are done or it dies.
fn worker(total: usize) {
    let x = TARGET.load(Ordering::SeqCst);
    while ROUNDS.load(Ordering::SeqCst) < total as u32 {
        let r = ROUND.fetch_add(1, Ordering::SeqCst) + 1;
        FIRED.store(false, Ordering::SeqCst);
        // Each round re-stales the slot: the same touch faulting again in
        // the next round is progress, not a loop.
        super::fault_loop::reset();
        // Delays spread over twice the measured length of one faulting
        // touch, so the interrupt lands before, inside and after it.
        let span = 2 * SPAN.load(Ordering::SeqCst) + 2;
        apic::timer_oneshot(
            irq::LOCAL_TIMER_VECTOR,
            1 + r.wrapping_mul(2_654_435_761) % span,
        );
        IN_FAULT.store(true, Ordering::SeqCst);
        // SAFETY: a vmalloc'd word of the scenario.
        unsafe { core::ptr::write_volatile(x as *mut u32, r) };
        IN_FAULT.store(false, Ordering::SeqCst);
        while !FIRED.load(Ordering::SeqCst) {
            core::hint::spin_loop();
        }
        // SAFETY: as above.
        if unsafe { core::ptr::read_volatile(x as *const u32) } == r {
            CLEAN.fetch_add(1, Ordering::SeqCst);
        }
        ROUNDS.fetch_add(1, Ordering::SeqCst);
        // Stale again for the next round: drop the copied entry and
        // flush it from the TLB.
        let _f = cpu::local_irq_save();
        scenario_restale();
        cpu::flush_tlb();
        cpu::restore_flags(_f);
    }
}

static SCENARIOS: spin::Mutex<Vec<Scenario>> = spin::Mutex::new(Vec::new());
static CURRENT_SC: AtomicU32 = AtomicU32::new(0);

fn scenario_restale() {
    let list = SCENARIOS.lock();
    if let Some(sc) = list.get(CURRENT_SC.load(Ordering::SeqCst) as usize) {
        sc.restale();
    }
}

/// `rounds` rounds spread over `mms` victim address spaces.
pub fn stress(rounds: u32, mms: usize) -> Option<StressReport> {
    if !apic::present() {
        return None;
    }
    // Built aside and stored only when complete: on a failed vmalloc the
    // scenarios made so far drop here (vfree, mm freed) instead of staying
    // in the static list with their 16 MiB each.
    let mut fresh = Vec::with_capacity(mms);
    for _ in 0..mms {
        fresh.push(Scenario::new()?);
    }
    *SCENARIOS.lock() = fresh;
    let mut rep = StressReport::default();
    vmfault::oops::set_silent(true);
    irq::request_irq(irq::LOCAL_TIMER_VECTOR, timer_irq, IrqFlags::empty());
    pit::set_periodic(100);
    irq::request_irq(irq::TIMER_IRQ_VECTOR, watchdog, IrqFlags::SA_INTERRUPT);
    dispatch::register_handler(1, Some(super::fault_loop::debug_trap));
    ROUNDS.store(0, Ordering::SeqCst);
    CLEAN.store(0, Ordering::SeqCst);
    INSIDE.store(0, Ordering::SeqCst);
    ACTIVE.store(true, Ordering::SeqCst);
    {
        let list = SCENARIOS.lock();
        CURRENT_SC.store(0, Ordering::SeqCst);
        TARGET.store(list[0].x, Ordering::SeqCst);
        let mm = list[0].mm.clone();
        drop(list);
        let t = sched::run_here("calibrate", calibrate, 0, Some(mm));
        // Under cli the calibration touch itself oopses: keep the default.
        let _ = fixup::catch(true, || {
            sched::join(&t);
        });
        SCENARIOS.lock()[0].restale();
        sched::drop_lazy_mm();
    }
    rep.fault_ticks = SPAN.load(Ordering::SeqCst);
    let mut turn = 0usize;
    while ROUNDS.load(Ordering::SeqCst) < rounds {
        let i = turn % mms;
        turn += 1;
        let (mm, x, y) = {
            let list = SCENARIOS.lock();
            (list[i].mm.clone(), list[i].x, list[i].y)
        };
        CURRENT_SC.store(i as u32, Ordering::SeqCst);
        TARGET.store(x, Ordering::SeqCst);
        INNER.store(y, Ordering::SeqCst);
        let before = ROUNDS.load(Ordering::SeqCst);
        // A chunk of rounds per mm, then the next mm.
        let chunk = (before + 64).min(rounds) as usize;
        let bad0 = fault::bad_areas();
        let t = sched::run_here("stress", worker, chunk, Some(mm));
        super::fault_loop::arm();
        let r = fixup::catch(true, || {
            sched::join(&t);
        });
        super::fault_loop::disarm();
        if let Err(c) = r {
            // The round that died is over, whatever killed it.
            ROUNDS.fetch_add(1, Ordering::SeqCst);
            if super::fault_loop::caught(&c) {
                rep.fault_loops += 1;
            } else if c.vector == 0xFFFF {
                rep.hangs += 1;
            } else {
                rep.oopses += 1;
                if fault::bad_areas() != bad0 {
                    rep.bad_areas += 1;
                }
            }
            apic::timer_stop();
            irq::request_irq(irq::TIMER_IRQ_VECTOR, watchdog, IrqFlags::SA_INTERRUPT);
            let list = SCENARIOS.lock();
            list[i].restale();
        }
        sched::drop_lazy_mm();
    }
    ACTIVE.store(false, Ordering::SeqCst);
    dispatch::register_handler(1, None);
    apic::timer_stop();
    irq::free_irq(irq::TIMER_IRQ_VECTOR);
    irq::free_irq(irq::LOCAL_TIMER_VECTOR);
    vmfault::oops::set_silent(false);
    rep.rounds = ROUNDS.load(Ordering::SeqCst);
    rep.clean = CLEAN.load(Ordering::SeqCst);
    rep.timer_during_touch = INSIDE.load(Ordering::SeqCst);
    SCENARIOS.lock().clear();
    Some(rep)
}
