//! Each CPU's idle task and loop (2.4's `init_tasks[cpu]` and
//! `cpu_idle`), and `reschedule_idle`: a task that becomes runnable wakes
//! an idle CPU that may run it with the reschedule IPI.
//!
//! CPU 0's idle task is swapper, which also drives the tests and so waits
//! in the run queue like any task.  A secondary CPU's idle task never
//! enters the queue: `schedule` falls back to it when nothing else may run
//! there, and its loop halts until an interrupt says there may be work.

use core::sync::atomic::{AtomicPtr, Ordering};

use super::*;
use crate::arch::x86::entry::TrapFrame;
use crate::arch::x86::irq::{self, IrqFlags};
use crate::arch::x86::percpu::{per_cpu, smp_processor_id};
use crate::arch::x86::smp_config::NR_CPUS;
use crate::arch::x86::{apic, cpu, smp};

/// 2.4's `RESCHEDULE_VECTOR`.
pub const RESCHEDULE_VECTOR: u8 = 0xFC;

static IDLE: [AtomicPtr<Task>; NR_CPUS] =
    [const { AtomicPtr::new(core::ptr::null_mut()) }; NR_CPUS];

pub(super) fn set_idle_task(cpu: usize, t: *const Task) {
    IDLE[cpu].store(t as *mut Task, Ordering::SeqCst);
}

/// `idle_task(cpu)`.
pub(super) fn idle_task(cpu: usize) -> *const Task {
    IDLE[cpu].load(Ordering::SeqCst)
}

/// A secondary CPU's idle task (swapper, CPU 0's, is queued like others).
pub(super) fn is_idle_task(t: *const Task) -> bool {
    IDLE[1..]
        .iter()
        .any(|i| core::ptr::eq(i.load(Ordering::SeqCst), t))
}

/// Install the reschedule IPI's handler (shared IDT: once).
pub fn init_ipi() {
    irq::request_irq(
        RESCHEDULE_VECTOR,
        smp_reschedule_interrupt,
        IrqFlags::SA_INTERRUPT,
    );
}

/// 2.4.2's `smp_reschedule_interrupt` only acks the APIC (`do_irq` does
/// here): taking the IPI woke the CPU out of `hlt`, and its idle loop
/// looks at the queue.
fn smp_reschedule_interrupt(_: &mut TrapFrame) {}

/// 2.4's `reschedule_idle(p)`, reduced to its idle-CPU half (there is no
/// goodness to preempt by): send the reschedule IPI to one other CPU of
/// `allowed` (the task's `cpus_allowed`) that runs its idle task.
/// Interrupts off.
pub(super) fn reschedule_idle(allowed: u32) {
    let me = smp_processor_id();
    for c in (1..NR_CPUS).filter(|&c| c != me && smp::cpu_online(c)) {
        let idle = idle_task(c);
        if allowed & (1 << c) != 0
            && !idle.is_null()
            && per_cpu(c).current.load(Ordering::SeqCst) == idle as u32
        {
            apic::send_ipi(per_cpu(c).apic_id as u8, RESCHEDULE_VECTOR);
            return;
        }
    }
}

/// Is there a task in the queue that `cpu` may run?
fn has_work(cpu: usize) -> bool {
    RUNQUEUE
        .lock()
        .iter()
        .any(|t| can_schedule(t, cpu, core::ptr::null()))
}

/// A secondary CPU's idle loop, in its idle task (2.4 `cpu_idle`): run
/// whatever the queue has for it, else halt until an interrupt.  The test
/// and the halt are one step (`sti; hlt`: STI's shadow holds the IPI
/// until HLT waits), so a wake-up between them is not lost.
pub extern "C" fn cpu_idle() -> ! {
    let me = smp_processor_id();
    // Restarted here by an NMI stop: the task it abandoned may go now.
    after_recovery();
    loop {
        cpu::cli();
        if has_work(me) {
            cpu::sti();
            schedule();
        } else {
            cpu::safe_halt();
        }
    }
}
