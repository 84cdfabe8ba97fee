//! The load around the driver: the APIC-timer handler that reads vmalloc
//! memory with interrupts on (a 2.4-style handler, so its lazy faults
//! nest inside whatever it interrupted), the PIT preemption, and the
//! kernel threads that touch areas from their own address spaces.

use core::sync::atomic::Ordering;

use vmfault::arch::x86::apic;
use vmfault::arch::x86::entry::TrapFrame;
use vmfault::arch::x86::irq::{self, IrqFlags};
use vmfault::arch::x86::percpu::smp_processor_id;
use vmfault::rand::Rng;
use vmfault::sched::{self};

use super::*;

/// The APIC timer handler: interrupts are on (no SA_INTERRUPT), so this
/// read may take a lazy vmalloc fault nested in whatever it interrupted,
/// and another timer tick may nest inside that fault.
pub(super) fn soak_timer(_: &mut TrapFrame) {
    if vmfault::fixup::recoveries() != RECOVERIES0.load(Ordering::SeqCst) {
        return;
    }
    let i = IRQ_NEXT.fetch_add(1, Ordering::Relaxed) as usize % IRQ_SLOTS;
    // Counted in before the address is read: a vfree on the other CPU
    // clears the slot, then waits for its readers (`unpublish`).
    let readers = &IRQ_READERS[smp_processor_id() & 1][i];
    readers.fetch_add(1, Ordering::SeqCst);
    let va = IRQ_TARGETS[i].load(Ordering::SeqCst);
    if va != 0 {
        check_word(va, IRQ_OWNER[i].load(Ordering::SeqCst));
        IRQ_TOUCHES.fetch_add(1, Ordering::Relaxed);
    }
    readers.fetch_sub(1, Ordering::SeqCst);
}

/// An oops on this CPU ended whatever ran here, timer handlers included:
/// the reads they had counted themselves in for are over.
pub(super) fn forget_readers() {
    for r in &IRQ_READERS[smp_processor_id() & 1] {
        r.store(0, Ordering::SeqCst);
    }
}

/// Take every timer slot off the area `[addr, end)` before it is freed,
/// and wait until no handler on any CPU can still read through an address
/// it loaded earlier.  Every slot is waited for, not only the ones found
/// holding the area: another driver may have published a new address
/// into a slot after a handler loaded this area's from it.  (The 1,000,000
/// operation soak on two CPUs oopsed that way in three PAE runs of six: a
/// timer handler on CPU 1 read a page whose pte was gone in init_mm, where
/// no version ever takes a vmalloc fault; waiting on the matching slots
/// only let this one through.)
pub(super) fn unpublish(addr: u32, end: u32) {
    for t in &IRQ_TARGETS {
        let va = t.load(Ordering::SeqCst);
        if va >= addr && va < end {
            // A new address stored meanwhile is lost: harmless.
            let _ = t.compare_exchange(va, 0, Ordering::SeqCst, Ordering::SeqCst);
        }
    }
    // A handler counts itself in before it loads an address, so one that
    // starts now finds none of the area's.  One on this CPU cannot be
    // mid-read (we are not a handler); one on the other CPU finishes.
    for i in 0..IRQ_SLOTS {
        while IRQ_READERS.iter().any(|c| c[i].load(Ordering::SeqCst) != 0) {
            core::hint::spin_loop();
        }
    }
}

/// A worker thread: touches random live areas from its own address space
/// (or a borrowed one), pinning each while it reads, yielding now and then.
pub(super) fn worker(seed: usize) {
    let mut rng = Rng::new(seed as u64);
    for _ in 0..1 + rng.below_u32(24) {
        let (r, at) = (rng.next_u32(), rng.next_u32());
        if let Some(a) = pin_random(r) {
            let va = a.addr + at % a.pages * PAGE;
            check_word(va, a.cpu);
            // SAFETY: pinned, so mapped; the second word is free for use.
            unsafe { core::ptr::write_volatile((va + 4) as *mut u32, seed as u32) };
            THREAD_TOUCHES.fetch_add(1, Ordering::Relaxed);
            unpin(&a);
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
