//! The timer tick and kernel preemption.  The PIT marks the running task
//! for rescheduling (`need_resched`); what happens next is `preempt=`:
//!
//! - `none` (the default, 2.4): nothing until the task yields.  2.4's
//!   `ret_from_intr` tests `need_resched` only on the way back to user
//!   mode (`testl $(VM_MASK | 3)`), and kernel threads here never go
//!   there, so kernel code runs until it calls `schedule()`.
//! - `full` (the preempt patch, 2.5; `CONFIG_PREEMPT`): the outermost
//!   interrupt exit switches, inside `vmalloc_fault` too, unless the
//!   task holds a spinlock (`preempt_count`, raised by every `SpinLock`
//!   the task holds, the big kernel lock included: the patch's
//!   `spin_lock` is `preempt_disable(); _raw_spin_lock()`).

use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use super::*;
use crate::arch::x86::percpu::smp_processor_id;
use crate::arch::x86::smp_config::NR_CPUS;
use crate::cmdline::PreemptModel;

static PREEMPT_FULL: AtomicBool = AtomicBool::new(false);

/// `preempt=`, set once at boot; tests and experiments that need the other
/// model set it around their run and put it back.
pub fn set_preempt_model(m: PreemptModel) {
    PREEMPT_FULL.store(m == PreemptModel::Full, Ordering::SeqCst);
}

pub fn preempt_model() -> PreemptModel {
    if PREEMPT_FULL.load(Ordering::SeqCst) {
        PreemptModel::Full
    } else {
        PreemptModel::None
    }
}

/// 2.4's `current->need_resched`, kept per CPU (it belongs to whatever
/// that CPU runs).
static NEED_RESCHED: [AtomicBool; NR_CPUS] = [const { AtomicBool::new(false) }; NR_CPUS];

pub(super) static PREEMPTION: core::sync::atomic::AtomicBool =
    core::sync::atomic::AtomicBool::new(false);

pub(super) static TICKS: AtomicU32 = AtomicU32::new(0);

pub(super) fn timer_tick(_: &mut crate::arch::x86::entry::TrapFrame) {
    TICKS.fetch_add(1, Ordering::Relaxed);
    if PREEMPTION.load(Ordering::Relaxed) {
        set_need_resched();
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
    for n in &NEED_RESCHED {
        n.store(false, Ordering::SeqCst);
    }
}

/// Mark the running task for rescheduling, as the timer tick does: under
/// `preempt=full` the next outermost interrupt exit switches.
pub fn set_need_resched() {
    NEED_RESCHED[smp_processor_id()].store(true, Ordering::SeqCst);
}

pub fn ticks() -> u32 {
    TICKS.load(Ordering::Relaxed)
}

/// Spinlocks the running task holds on this CPU (the preempt patch's
/// `preempt_count()`).
pub fn preempt_count() -> u32 {
    crate::arch::x86::percpu::preempt_count().load(Ordering::SeqCst)
}

/// Called by do_irq when the outermost handler is done (interrupts off):
/// a switch only under `preempt=full`.  The PIT ticks CPU 0 only, so only
/// CPU 0's threads are preempted; the others run until they yield, as
/// under 2.4's `preempt=none`.
pub fn preempt_on_irq_exit() {
    let me = smp_processor_id();
    if PREEMPT_FULL.load(Ordering::Relaxed)
        && NEED_RESCHED[me].load(Ordering::SeqCst)
        && preempt_count() == 0
        && is_initialised()
        && !in_switch()
    {
        NEED_RESCHED[me].store(false, Ordering::SeqCst);
        schedule();
    }
}
