//! The load around the driver: the APIC-timer handler that reads vmalloc
//! memory with interrupts on (a 2.4-style handler, so its lazy faults
//! nest inside whatever it interrupted), the PIT preemption, and the
//! kernel threads that touch areas from their own address spaces.

use core::sync::atomic::Ordering;

use crate::arch::x86::apic;
use crate::arch::x86::entry::TrapFrame;
use crate::arch::x86::irq::{self, IrqFlags};
use crate::rand::Rng;
use crate::sched::{self};

use super::*;

/// The APIC timer handler: interrupts are on (no SA_INTERRUPT), so this
/// read may take a lazy vmalloc fault nested in whatever it interrupted,
/// and another timer tick may nest inside that fault.
pub(super) fn soak_timer(_: &mut TrapFrame) {
    let i = IRQ_NEXT.fetch_add(1, Ordering::Relaxed) as usize % IRQ_SLOTS;
    let va = IRQ_TARGETS[i].load(Ordering::SeqCst);
    if va != 0 {
        check_word(va);
        IRQ_TOUCHES.fetch_add(1, Ordering::Relaxed);
    }
}

/// A worker thread: touches random live areas from its own address space
/// (or a borrowed one), pinning each while it reads, yielding now and then.
pub(super) fn worker(seed: usize) {
    let mut rng = Rng::new(seed as u64);
    for _ in 0..1 + rng.below_u32(24) {
        let pick = with_shared(|s| {
            if s.areas.is_empty() {
                return None;
            }
            let i = rng.below_u32(s.areas.len() as u32) as usize;
            s.areas[i].pins += 1;
            Some(s.areas[i])
        });
        if let Some(a) = pick {
            let va = a.addr + rng.below_u32(a.pages) * PAGE;
            check_word(va);
            // SAFETY: pinned, so mapped; the second word is free for use.
            unsafe { core::ptr::write_volatile((va + 4) as *mut u32, seed as u32) };
            THREAD_TOUCHES.fetch_add(1, Ordering::Relaxed);
            with_shared(|s| {
                if let Some(x) = s.areas.iter_mut().find(|x| x.addr == a.addr) {
                    x.pins -= 1;
                }
            });
        }
        if rng.chance(30) {
            sched::yield_now();
        }
    }
}

pub(super) fn start_timers(cfg: &SoakConfig) {
    irq::request_irq(irq::LOCAL_TIMER_VECTOR, soak_timer, IrqFlags::empty());
    if apic::present() {
        apic::timer_periodic(irq::LOCAL_TIMER_VECTOR, cfg.apic_count);
    }
    sched::start_preemption(cfg.preempt_hz);
}

pub(super) fn stop_timers() {
    if apic::present() {
        apic::timer_stop();
    }
    irq::free_irq(irq::LOCAL_TIMER_VECTOR);
    sched::stop_preemption();
}
