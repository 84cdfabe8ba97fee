//! Real asynchronous interrupts: the PIT through the remapped 8259, the
//! local APIC timer and self-IPIs, 2.4-style nesting, spurious counting,
//! timer preemption.

use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use crate::case;
use crate::Suite;
use crate::{skip, wait_for};
use vmfault::arch::x86::entry::TrapFrame;
use vmfault::arch::x86::irq::{self, IrqFlags};
use vmfault::arch::x86::spinlock::SpinLock;
use vmfault::arch::x86::{apic, cpu, pit};
use vmfault::cmdline::PreemptModel;
use vmfault::sched;

pub static SUITE: Suite = Suite {
    name: "irq",
    cases: &[
        case!(pit_ticks_through_the_pic),
        case!(apic_self_ipi_is_delivered),
        case!(apic_timer_oneshot_and_periodic),
        case!(handlers_nest_like_2_4),
        case!(sa_interrupt_handlers_do_not_nest),
        case!(spurious_vectors_are_counted_not_fatal),
        case!(timer_preempts_busy_threads),
        case!(preempt_none_never_switches_kernel_code),
        case!(a_held_spinlock_keeps_preempt_full_out),
    ],
};

const A: u8 = 0xF3;
const B: u8 = 0xF4;

static HITS: AtomicU32 = AtomicU32::new(0);
static ORDER: AtomicU32 = AtomicU32::new(0);
static DEPTH_SEEN: AtomicU32 = AtomicU32::new(0);

fn hit(_: &mut TrapFrame) {
    HITS.fetch_add(1, Ordering::SeqCst);
}

/// Spin (interrupts on) until `cond` or about `limit` iterations.
fn need_apic() {
    if !apic::present() {
        skip("no local APIC");
    }
}

fn pit_ticks_through_the_pic() {
    assert!(cpu::irqs_enabled(), "kernel runs with interrupts masked");
    let before = irq::count(irq::TIMER_IRQ_VECTOR);
    HITS.store(0, Ordering::SeqCst);
    pit::set_periodic(1000);
    irq::request_irq(irq::TIMER_IRQ_VECTOR, hit, IrqFlags::empty());
    let ok = wait_for(|| HITS.load(Ordering::SeqCst) >= 5, 50_000_000);
    irq::free_irq(irq::TIMER_IRQ_VECTOR);
    assert!(ok, "no PIT ticks");
    assert!(irq::count(irq::TIMER_IRQ_VECTOR) >= before + 5);
}

fn apic_self_ipi_is_delivered() {
    need_apic();
    HITS.store(0, Ordering::SeqCst);
    irq::request_irq(A, hit, IrqFlags::empty());
    apic::self_ipi(A);
    // Interrupts are on: delivery is immediate, before the next instruction
    // boundary that allows it.
    let n = HITS.load(Ordering::SeqCst);
    let f = cpu::local_irq_save();
    apic::self_ipi(A);
    let held = HITS.load(Ordering::SeqCst);
    cpu::restore_flags(f);
    // STI's interrupt shadow: the pending IPI is taken after the one
    // instruction that follows it, which would be the load below once
    // restore_flags is inlined.  A NOP, not PAUSE: after `sti; pause`
    // QEMU took the IPI only after the load (measured).
    // SAFETY: no operands, no effect.
    unsafe { core::arch::asm!("nop", options(nomem, nostack, preserves_flags)) };
    let after = HITS.load(Ordering::SeqCst);
    irq::free_irq(A);
    assert_eq!(n, 1, "self-IPI not delivered at once");
    assert_eq!(held, 1, "delivered with IF=0");
    assert_eq!(after, 2, "pending IPI not delivered after sti");
}

fn apic_timer_oneshot_and_periodic() {
    need_apic();
    HITS.store(0, Ordering::SeqCst);
    irq::request_irq(irq::LOCAL_TIMER_VECTOR, hit, IrqFlags::SA_INTERRUPT);
    apic::timer_oneshot(irq::LOCAL_TIMER_VECTOR, 2000);
    let one = wait_for(|| HITS.load(Ordering::SeqCst) >= 1, 50_000_000);
    for _ in 0..100_000 {
        core::hint::spin_loop();
    }
    let after_one = HITS.load(Ordering::SeqCst);
    apic::timer_periodic(irq::LOCAL_TIMER_VECTOR, 5000);
    let many = wait_for(|| HITS.load(Ordering::SeqCst) >= after_one + 3, 50_000_000);
    apic::timer_stop();
    irq::free_irq(irq::LOCAL_TIMER_VECTOR);
    assert!(one, "one-shot timer never fired");
    assert_eq!(after_one, 1, "one-shot fired more than once");
    assert!(many, "periodic timer stopped");
}

fn outer(_: &mut TrapFrame) {
    ORDER.store(1, Ordering::SeqCst);
    apic::self_ipi(B); // arrives at once if this handler runs with IF=1
    ORDER.fetch_add(10, Ordering::SeqCst);
}

fn inner(_: &mut TrapFrame) {
    DEPTH_SEEN.store(irq::depth(), Ordering::SeqCst);
    ORDER.fetch_add(100, Ordering::SeqCst);
    // Before the outer handler's `+10`: order value 101.
    HITS.store(ORDER.load(Ordering::SeqCst), Ordering::SeqCst);
}

fn nest(outer_flags: IrqFlags) -> (u32, u32) {
    ORDER.store(0, Ordering::SeqCst);
    HITS.store(0, Ordering::SeqCst);
    irq::request_irq(A, outer, outer_flags);
    irq::request_irq(B, inner, IrqFlags::empty());
    apic::self_ipi(A);
    wait_for(|| ORDER.load(Ordering::SeqCst) == 111, 10_000_000);
    irq::free_irq(A);
    irq::free_irq(B);
    (
        HITS.load(Ordering::SeqCst),
        DEPTH_SEEN.load(Ordering::SeqCst),
    )
}

fn handlers_nest_like_2_4() {
    need_apic();
    let (seen, depth) = nest(IrqFlags::empty());
    assert_eq!(seen, 101, "inner handler did not run inside the outer one");
    assert_eq!(depth, 2);
}

fn sa_interrupt_handlers_do_not_nest() {
    need_apic();
    let (seen, depth) = nest(IrqFlags::SA_INTERRUPT);
    assert_eq!(seen, 111, "SA_INTERRUPT handler was interrupted");
    assert_eq!(depth, 1);
}

fn spurious_vectors_are_counted_not_fatal() {
    need_apic();
    let before = irq::spurious_count();
    apic::self_ipi(0xE5); // nobody requested it
    apic::self_ipi(0xE5);
    assert_eq!(irq::spurious_count(), before + 2);
    // The APIC got its EOI: a requested vector still gets through.
    HITS.store(0, Ordering::SeqCst);
    irq::request_irq(0xE4, hit, IrqFlags::empty());
    apic::self_ipi(0xE4);
    irq::free_irq(0xE4);
    assert_eq!(HITS.load(Ordering::SeqCst), 1);
}

static SPIN: [AtomicU32; 2] = [AtomicU32::new(0), AtomicU32::new(0)];
static DEADLINE: AtomicU32 = AtomicU32::new(0);

/// Never yields: spins until the *other* thread has made progress too,
/// which can only happen if the timer takes the CPU away.  A deadline in
/// timer ticks bounds the test if preemption is broken.
fn busy(i: usize) {
    loop {
        SPIN[i].fetch_add(1, Ordering::SeqCst);
        if SPIN[1 - i].load(Ordering::SeqCst) >= 1000 && SPIN[i].load(Ordering::SeqCst) >= 1000 {
            break;
        }
        if sched::ticks() > DEADLINE.load(Ordering::SeqCst) {
            break;
        }
    }
}

/// `preempt=full`, whatever the boot chose: the mechanism itself.
fn timer_preempts_busy_threads() {
    SPIN[0].store(0, Ordering::SeqCst);
    SPIN[1].store(0, Ordering::SeqCst);
    let switches = sched::context_switches();
    DEADLINE.store(sched::ticks() + 3000, Ordering::SeqCst);
    let booted = sched::preempt_model();
    sched::set_preempt_model(PreemptModel::Full);
    sched::start_preemption(1000);
    let a = sched::kernel_thread("busy-0", busy, 0, None);
    let b = sched::kernel_thread("busy-1", busy, 1, None);
    sched::join(&a);
    sched::join(&b);
    sched::stop_preemption();
    sched::set_preempt_model(booted);
    assert!(
        sched::ticks() <= DEADLINE.load(Ordering::SeqCst),
        "deadline hit: a thread never got the CPU"
    );
    assert!(SPIN[0].load(Ordering::SeqCst) >= 1000 && SPIN[1].load(Ordering::SeqCst) >= 1000);
    assert!(
        sched::context_switches() - switches >= 3,
        "no preemption happened"
    );
}

static SPUN_TICKS: AtomicU32 = AtomicU32::new(0);

/// Spin through 50 timer ticks without yielding.
fn spin_through_ticks(_: usize) {
    let start = sched::ticks();
    while sched::ticks() < start + 50 {
        core::hint::spin_loop();
    }
    SPUN_TICKS.store(sched::ticks() - start, Ordering::SeqCst);
}

/// `preempt=none` (2.4): the tick sets need_resched, and kernel code that
/// never yields keeps the CPU through every tick anyway.
fn preempt_none_never_switches_kernel_code() {
    let booted = sched::preempt_model();
    sched::set_preempt_model(PreemptModel::None);
    let t = sched::kernel_thread("spinner", spin_through_ticks, 0, None);
    sched::start_preemption(1000);
    // The spinner runs when this thread yields in join, and the switch
    // back happens only when it is done.
    let switches = sched::context_switches();
    sched::join(&t);
    let during = sched::context_switches() - switches;
    sched::stop_preemption();
    sched::set_preempt_model(booted);
    assert!(
        SPUN_TICKS.load(Ordering::SeqCst) >= 50,
        "the spinner saw no ticks"
    );
    assert!(
        during <= 2,
        "{} context switches while a kernel thread spun through 50 ticks under preempt=none",
        during
    );
}

static HELD: SpinLock<()> = SpinLock::new(());
static OTHER_RAN: AtomicBool = AtomicBool::new(false);
/// What the pinned thread saw: the count with the lock held, whether the
/// other thread ran while it was held, the count after, whether it ran
/// after the next interrupt exit.
static SEEN: [AtomicU32; 4] = [const { AtomicU32::new(u32::MAX) }; 4];

fn other_thread(_: usize) {
    OTHER_RAN.store(true, Ordering::SeqCst);
}

/// A reschedule request and an interrupt: under `preempt=full` its exit
/// switches, unless a spinlock is held.
fn resched_interrupt() {
    sched::set_need_resched();
    apic::self_ipi(A);
    // SAFETY: no operands, no effect (the IPI lands before it).
    unsafe { core::arch::asm!("nop", options(nomem, nostack, preserves_flags)) };
}

fn hold_and_interrupt(_: usize) {
    let base = sched::preempt_count();
    let o = sched::run_here("pc-other", other_thread, 0, None);
    let g = HELD.lock();
    SEEN[0].store(sched::preempt_count() - base, Ordering::SeqCst);
    resched_interrupt();
    SEEN[1].store(OTHER_RAN.load(Ordering::SeqCst) as u32, Ordering::SeqCst);
    drop(g);
    SEEN[2].store(sched::preempt_count() - base, Ordering::SeqCst);
    resched_interrupt();
    SEEN[3].store(OTHER_RAN.load(Ordering::SeqCst) as u32, Ordering::SeqCst);
    sched::join(&o);
}

/// The preempt patch's rule, which the one-CPU race explorers count by:
/// a held spinlock (`preempt_disable()` in `spin_lock`) keeps
/// `preempt=full` from switching at an interrupt exit; the first exit
/// after the unlock switches.
fn a_held_spinlock_keeps_preempt_full_out() {
    need_apic();
    OTHER_RAN.store(false, Ordering::SeqCst);
    let booted = sched::preempt_model();
    sched::set_preempt_model(PreemptModel::Full);
    irq::request_irq(A, hit, IrqFlags::empty());
    let t = sched::run_on(0, "pc-holder", hold_and_interrupt, 0, None);
    sched::join(&t);
    irq::free_irq(A);
    sched::set_preempt_model(booted);
    let seen: [u32; 4] = core::array::from_fn(|i| SEEN[i].load(Ordering::SeqCst));
    assert_eq!(seen[0], 1, "holding a SpinLock did not raise preempt_count");
    assert_eq!(
        seen[1], 0,
        "preempt=full switched away from a spinlock holder"
    );
    assert_eq!(seen[2], 0, "the unlock did not lower preempt_count");
    assert_eq!(
        seen[3], 1,
        "no switch at the first interrupt exit after the unlock"
    );
}
