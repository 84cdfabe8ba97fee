//! `schedule()`: pick the next task, then `switch_mm` and `switch_to` in
//! 2.4's order, with the lazy-TLB borrowing of `active_mm`.

use alloc::sync::Arc;
use core::sync::atomic::{AtomicU32, Ordering};

use super::*;
use crate::arch::x86::cpu;
use crate::arch::x86::switch::switch_to;
use crate::mm::mm_struct::init_mm;

pub(super) static SWITCHES: AtomicU32 = AtomicU32::new(0);

pub(super) static IN_SWITCH: core::sync::atomic::AtomicBool =
    core::sync::atomic::AtomicBool::new(false);

pub fn context_switches() -> u32 {
    SWITCHES.load(Ordering::Relaxed)
}

/// Give the CPU to the next runnable task (`sys_sched_yield` + `schedule`).
pub fn yield_now() {
    schedule();
}

/// Pick the next runnable task, round robin, and switch to it.
pub fn schedule() {
    let flags = cpu::local_irq_save();
    reap();
    let prev_ptr = current_ptr();
    // SAFETY: see `current`.
    let prev = unsafe { &*prev_ptr };
    let next = {
        let mut rq = RUNQUEUE.lock();
        // Round robin over every runnable task, swapper included: it is
        // also the context that drives the tests, and a timer preemption
        // must not starve it.
        if prev.state() == State::Runnable {
            if let Some(me) = TASKS.lock().iter().find(|t| Arc::as_ptr(t) == prev_ptr) {
                rq.push_back(me.clone());
            }
        }
        loop {
            match rq.pop_front() {
                Some(t) if t.state() == State::Runnable => break Some(t),
                Some(_) => continue,
                None => break None,
            }
        }
    };
    let next = match next {
        Some(n) => n,
        None => {
            // Nothing else runnable: keep running, or, if we are done,
            // go back to swapper (task 0).
            if prev.state() == State::Runnable {
                cpu::restore_flags(flags);
                return;
            }
            TASKS.lock()[0].clone()
        }
    };
    let next_ptr = Arc::as_ptr(&next);
    if next_ptr == prev_ptr {
        cpu::restore_flags(flags);
        return;
    }
    // SAFETY: interrupts are off; only the scheduler writes active_mm.
    // Only directory addresses are kept on this stack across the switch:
    // the references live in prev's and next's active_mm, so an oops in
    // the window (the race experiments kill tasks there) leaks no mm.
    let (old_pgd, new_pgd) = unsafe {
        let oldmm = (*prev.active_mm.get())
            .clone()
            .unwrap_or_else(|| init_mm().clone());
        let old_pgd = oldmm.pgd;
        match &next.mm {
            None => {
                *next.active_mm.get() = Some(oldmm);
                (old_pgd, None)
            }
            Some(mm) => {
                *next.active_mm.get() = Some(mm.clone());
                (old_pgd, Some(mm.pgd))
            }
        }
    };
    SWITCHES.fetch_add(1, Ordering::Relaxed);
    drop(next);
    IN_SWITCH.store(true, Ordering::SeqCst);
    // 2.4 sched.c does `spin_unlock_irq(&runqueue_lock)` here, before
    // switch_mm and switch_to: interrupts are enabled again while CR3
    // already belongs to `next` and `current` is still `prev`.  That is
    // the window 2.4.5-pre1's "Do _not_ use tsk here" is about.
    cpu::restore_flags(flags);
    if let Some(pgd) = new_pgd {
        switch_mm(old_pgd, pgd);
    }
    // 2.4 sched.c, still before switch_to and with interrupts on:
    //     if (!prev->mm) {
    //             prev->active_mm = NULL;
    //             mmdrop(oldmm);
    //     }
    // A fault in this window that reads tsk->active_mm (2.4.0-2.4.4, the
    // seed's patch) dereferences NULL.
    if prev.mm.is_none() {
        // Interrupts off from the take to the drop: an oops in between
        // (the experiments kill tasks in this window) would strand the
        // reference on this stack and leak the mm.
        let _irq = cpu::irq_save();
        // SAFETY: only the scheduler writes active_mm, and prev is this
        // CPU's running task until switch_to.
        let oldmm = unsafe { (*prev.active_mm.get()).take() };
        drop(oldmm);
    }
    // SAFETY: both stacks are live; next's saved ESP was written by its
    // last switch_to or by kernel_thread.  The Arc in TASKS keeps `next`.
    unsafe {
        switch_to(
            prev.esp.get(),
            *(*next_ptr).esp.get(),
            next_ptr as *const u8,
        )
    };
    finish_switch();
}

/// Runs in the task that was just switched to (`schedule_tail`).
pub(super) fn finish_switch() {
    let _irq = cpu::irq_save();
    IN_SWITCH.store(false, Ordering::SeqCst);
    reap();
}

/// True between the CR3 load and the end of `switch_to`: timer preemption
/// must not start another switch from inside this one.
pub fn in_switch() -> bool {
    IN_SWITCH.load(Ordering::SeqCst)
}

/// `switch_mm(prev, next)`: load next's directory if it differs.  A
/// `static inline` in 2.4's mmu_context.h; never inlined here, so the
/// switch-window explorer's breakpoint on its entry is hit in an
/// optimised kernel too.
#[inline(never)]
pub fn switch_mm(prev_pgd: u32, next_pgd: u32) {
    if prev_pgd != next_pgd || cpu::read_cr3_pa() != next_pgd {
        // SAFETY: every mm's directory maps the whole kernel.
        unsafe { crate::arch::x86::mmu::load_cr3(next_pgd) };
    }
}

/// Stop borrowing: the current task (a kernel thread, typically swapper)
/// goes back to `init_mm`, dropping the mm it borrowed lazily.  2.4 does
/// the same when an mm-less task calls `exit_mm`/`enter_lazy_tlb` paths;
/// the harness uses it between test cases.
pub fn drop_lazy_mm() {
    let _irq = cpu::irq_save();
    let cur = current();
    if cur.mm.is_none() {
        // SAFETY: interrupts are off; only the running task's own slot.
        let old = unsafe { (*cur.active_mm.get()).replace(init_mm().clone()) };
        switch_mm(old.as_ref().map_or(init_mm().pgd, |m| m.pgd), init_mm().pgd);
        drop(old);
    }
}
