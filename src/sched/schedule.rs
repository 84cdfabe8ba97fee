//! `schedule()`: pick the next task, then `switch_mm` and `switch_to` in
//! 2.4's order, with the lazy-TLB borrowing of `active_mm`, on whichever
//! CPU calls it.

use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, Ordering};

use super::smp_lock::{reacquire_kernel_lock, release_kernel_lock};
use super::*;
use crate::arch::x86::cpu;
use crate::arch::x86::percpu::smp_processor_id;
use crate::arch::x86::smp_config::NR_CPUS;
use crate::arch::x86::switch::switch_to;
use crate::mm::mm_struct::init_mm;

pub(super) static SWITCHES: AtomicU32 = AtomicU32::new(0);

/// A CPU's switch in progress: from `schedule` picking `next` to `next`'s
/// `finish_switch`.
pub(super) struct Switch {
    pub(super) in_switch: AtomicBool,
    pub(super) prev: AtomicPtr<Task>,
    pub(super) next: AtomicPtr<Task>,
}

pub(super) static SWITCH: [Switch; NR_CPUS] = [const {
    Switch {
        in_switch: AtomicBool::new(false),
        prev: AtomicPtr::new(core::ptr::null_mut()),
        next: AtomicPtr::new(core::ptr::null_mut()),
    }
}; NR_CPUS];

pub fn context_switches() -> u32 {
    SWITCHES.load(Ordering::Relaxed)
}

/// Give the CPU to the next runnable task (`sys_sched_yield` + `schedule`).
pub fn yield_now() {
    schedule();
}

/// An `Arc` of a task known to be in TASKS (the running one).
fn arc_of(t: *const Task) -> Arc<Task> {
    // SAFETY: `t` came from Arc::as_ptr of a task TASKS holds, so the
    // allocation is live; the extra count is owned by the returned Arc.
    unsafe {
        Arc::increment_strong_count(t);
        Arc::from_raw(t)
    }
}

/// Pick the next runnable task this CPU may run, round robin, and switch
/// to it.  As in 2.4, the big kernel lock is dropped for prev first and
/// taken back for whoever returns from here (`smp_lock`): a holder that
/// schedules lets other CPUs in.
pub fn schedule() {
    release_kernel_lock(current());
    __schedule();
    reacquire_kernel_lock();
}

fn __schedule() {
    let flags = cpu::local_irq_save();
    let this_cpu = smp_processor_id();
    reap();
    let prev_ptr = current_ptr();
    // SAFETY: see `current`.
    let prev = unsafe { &*prev_ptr };
    let next = {
        let mut rq = RUNQUEUE.lock();
        // Round robin over every runnable task, swapper included: it is
        // also the context that drives the tests, and a timer preemption
        // must not starve it.  prev keeps `on_cpu` until the next task's
        // finish_switch: no other CPU takes it before switch_to has saved
        // its registers.
        if prev.state() == State::Runnable && !is_idle_task(prev_ptr) {
            rq.push(arc_of(prev_ptr));
        }
        let next = pick_next(&mut rq, this_cpu, prev_ptr);
        if let Some(n) = &next {
            n.set_on_cpu(Some(this_cpu));
        }
        next
    };
    let next = match next {
        Some(n) => n,
        None => {
            // Nothing else runnable here: keep running, or, if we are
            // done, go to this CPU's idle task.
            if prev.state() == State::Runnable {
                cpu::restore_flags(flags);
                return;
            }
            let idle = arc_of(idle_task(this_cpu));
            idle.set_on_cpu(Some(this_cpu));
            idle
        }
    };
    let next_ptr = Arc::as_ptr(&next);
    if next_ptr == prev_ptr {
        cpu::restore_flags(flags);
        return;
    }
    // SAFETY: interrupts are off; only the scheduler writes active_mm,
    // and prev and next are this CPU's (on_cpu).
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
    let sw = &SWITCH[this_cpu];
    sw.prev.store(prev_ptr as *mut Task, Ordering::SeqCst);
    sw.next.store(next_ptr as *mut Task, Ordering::SeqCst);
    sw.in_switch.store(true, Ordering::SeqCst);
    // Each task keeps its own preempt_count across the switch (a task
    // that sleeps holding a spinlock - a bug - must not lend it to the
    // next one).  Swapped here, with interrupts still off, not in the
    // window below: its length is 2.4's (race.md's switch window).
    let count = crate::arch::x86::percpu::preempt_count();
    // SAFETY: next_ptr is live in TASKS (see below).
    let next_count = unsafe { (*next_ptr).preempt_count.load(Ordering::SeqCst) };
    prev.preempt_count
        .store(count.swap(next_count, Ordering::SeqCst), Ordering::SeqCst);
    // 2.4 sched.c does `spin_unlock_irq(&runqueue_lock)` here, before
    // switch_mm and switch_to: interrupts are enabled again while CR3
    // already belongs to `next` and `current` is still `prev`.  That is
    // the window 2.4.5-pre1's "Do _not_ use tsk here" is about.
    cpu::restore_flags(flags);
    if let Some(pgd) = new_pgd {
        switch_mm((old_pgd).as_u32(), (pgd).as_u32());
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
    // last switch_to or by kernel_thread, and no other CPU uses either
    // (on_cpu).  The Arc in TASKS keeps `next`.
    unsafe {
        switch_to(
            prev.esp.get(),
            *(*next_ptr).esp.get(),
            next_ptr as *const u8,
        )
    };
    // Back in prev, maybe on another CPU than the one it left.
    finish_switch();
}

/// Runs in the task that was just switched to, on the CPU that switched
/// (2.4's `__schedule_tail(prev)`): prev's stack is free now, so another
/// CPU may take prev; if prev may still run, wake an idle CPU for it.
pub(super) fn finish_switch() {
    let _irq = cpu::irq_save();
    let sw = &SWITCH[smp_processor_id()];
    let prev = sw.prev.swap(core::ptr::null_mut(), Ordering::SeqCst);
    sw.next.store(core::ptr::null_mut(), Ordering::SeqCst);
    if !prev.is_null() {
        // SAFETY: prev is in TASKS, and reap leaves it alone while its
        // on_cpu is set; everything is read before that is cleared.
        let p = unsafe { &*prev };
        let waiting = p.state() == State::Runnable && !is_idle_task(prev);
        let allowed = p.cpus_allowed();
        p.set_on_cpu(None);
        // From here another CPU may run prev, and reap it once it ends.
        if waiting {
            reschedule_idle(allowed);
        }
    }
    sw.in_switch.store(false, Ordering::SeqCst);
    reap();
}

/// True between the CR3 load and the end of `switch_to` on this CPU:
/// timer preemption must not start another switch from inside this one.
pub fn in_switch() -> bool {
    SWITCH[smp_processor_id()].in_switch.load(Ordering::SeqCst)
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
/// goes back to `init_mm`, dropping the mm it borrowed lazily, and so
/// does every other CPU's idle task (a CPU that ran a thread's last
/// switch keeps the thread's mm in its idle task until it runs something
/// else, as in 2.4).  2.4 does the same when an mm-less task calls
/// `exit_mm`/`enter_lazy_tlb` paths; the harness and the experiments use
/// it to count frames.  The other CPUs are asked only with interrupts on
/// (`smp_call_function`'s rule).
pub fn drop_lazy_mm() {
    drop_lazy_mm_here();
    if cpu::irqs_enabled() {
        // A CPU that does not answer keeps its borrow: the caller's frame
        // count then says so.
        let _ = crate::arch::x86::smp::smp_call_function(drop_idle_lazy_mm, 0, true);
    }
}

/// On another CPU, in the call-function IPI: only an idle task between
/// switches (no CR3 load is under way).  Dropping the mm takes the
/// directory-list and frame locks only, never a scheduler lock, so it is
/// safe also when the call is polled from a scheduler wait loop.
fn drop_idle_lazy_mm(_: usize) {
    if is_idle_task(current_ptr()) && !in_switch() {
        drop_lazy_mm_here();
    }
}

fn drop_lazy_mm_here() {
    let _irq = cpu::irq_save();
    let cur = current();
    if cur.mm.is_none() {
        // SAFETY: interrupts are off; only the running task's own slot.
        let old = unsafe { (*cur.active_mm.get()).replace(init_mm().clone()) };
        switch_mm(
            old.as_ref()
                .map_or((init_mm().pgd).as_u32(), |m| (m.pgd).as_u32()),
            (init_mm().pgd).as_u32(),
        );
        drop(old);
    }
}
