//! Timer preemption of kernel code: the PIT marks the running task for
//! rescheduling and the outermost interrupt exit switches.  (2.4 had no
//! kernel preemption; it came with the preempt patch in 2.5.)

use core::sync::atomic::{AtomicU32, Ordering};

use super::*;

pub(super) static NEED_RESCHED: core::sync::atomic::AtomicBool =
    core::sync::atomic::AtomicBool::new(false);

pub(super) static PREEMPTION: core::sync::atomic::AtomicBool =
    core::sync::atomic::AtomicBool::new(false);

pub(super) static TICKS: AtomicU32 = AtomicU32::new(0);

pub(super) fn timer_tick(_: &mut crate::arch::x86::entry::TrapFrame) {
    TICKS.fetch_add(1, Ordering::Relaxed);
    if PREEMPTION.load(Ordering::Relaxed) {
        NEED_RESCHED.store(true, Ordering::SeqCst);
    }
}

/// Timer preemption of kernel threads: the PIT at `hz` marks the running
/// task for rescheduling, and the outermost interrupt exit switches.
pub fn start_preemption(hz: u32) {
    use crate::arch::x86::{irq, pit};
    PREEMPTION.store(true, Ordering::SeqCst);
    pit::set_periodic(hz);
    irq::request_irq(
        irq::TIMER_IRQ_VECTOR,
        timer_tick,
        irq::IrqFlags::SA_INTERRUPT,
    );
}

pub fn stop_preemption() {
    PREEMPTION.store(false, Ordering::SeqCst);
    crate::arch::x86::irq::free_irq(crate::arch::x86::irq::TIMER_IRQ_VECTOR);
    NEED_RESCHED.store(false, Ordering::SeqCst);
}

pub fn ticks() -> u32 {
    TICKS.load(Ordering::Relaxed)
}

/// Called by do_irq when the outermost handler is done (interrupts off).
pub fn preempt_on_irq_exit() {
    if NEED_RESCHED.load(Ordering::SeqCst) && !in_switch() && is_initialised() {
        NEED_RESCHED.store(false, Ordering::SeqCst);
        schedule();
    }
}
