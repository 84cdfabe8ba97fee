//! Kernel threads and a round-robin scheduler with explicit yield (timer
//! preemption arrives with the interrupt work).  Each task has its own
//! stack, an `mm` (or none: a pure kernel thread) and an `active_mm`, kept
//! the way Linux 2.4's `schedule()` keeps them:
//!
//! ```text
//! if (!mm) { next->active_mm = oldmm; /* lazy TLB: borrow */ }
//! else     { switch_mm(oldmm, mm, next); /* loads CR3 */ }
//! switch_to(prev, next, prev);           /* only now current = next */
//! ```

extern crate alloc;

use alloc::collections::VecDeque;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, AtomicU8, Ordering};

use spin::Mutex;

use crate::arch::x86::cpu;
use crate::arch::x86::switch::{kernel_thread_entry, switch_to};
use crate::mm::mm_struct::{init_mm, MmStruct};
use crate::mm::vmalloc::{self, KernelStack};
use crate::racy_cell::RacyCell;

/// Debug builds keep every local on the stack, and the race experiments
/// nest a fault, interrupts, a second fault and #DB frames on one stack.
/// Each stack comes from `vmalloc_stack`, with an unmapped guard page
/// below it: an overflow double-faults into the report instead of
/// silently overwriting whatever lies below.
pub const KERNEL_STACK_SIZE: usize = 64 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    Runnable = 0,
    /// Returned from its function; waiting to be reaped.
    Zombie = 1,
    /// Killed by an oops that a recovery point caught.
    Dead = 2,
}

/// Linux's `task_struct`, reduced.
pub struct Task {
    pub pid: u32,
    pub name: &'static str,
    state: AtomicU8,
    /// Saved ESP while not running.
    esp: RacyCell<u32>,
    /// A vmalloc'd stack, or for swapper the boot stack (also with an
    /// unmapped page below it, see mm::init).
    stack: Option<KernelStack>,
    pub mm: Option<Arc<MmStruct>>,
    /// The address space whose directory is loaded while this task runs:
    /// its own `mm`, or the one it borrowed.  Changed only by `schedule`
    /// with interrupts off.
    active_mm: RacyCell<Option<Arc<MmStruct>>>,
    entry: Option<(fn(usize), usize)>,
}

impl Task {
    pub fn state(&self) -> State {
        match self.state.load(Ordering::SeqCst) {
            0 => State::Runnable,
            1 => State::Zombie,
            _ => State::Dead,
        }
    }

    fn set_state(&self, s: State) {
        self.state.store(s as u8, Ordering::SeqCst)
    }

    /// The directory of the task's `active_mm`, read the way 2.4 reads
    /// `tsk->active_mm->pgd`: no lock, no interrupt masking, whatever the
    /// field holds at that instant (the fault path may run in the middle
    /// of `schedule`).
    pub fn active_mm_pgd(&self) -> u32 {
        // SAFETY: a read of a field only `schedule` writes; the Arc it
        // holds keeps the mm alive while it is installed.
        unsafe {
            (*self.active_mm.get())
                .as_ref()
                .map_or(init_mm().pgd, |m| m.pgd)
        }
    }

    pub fn stack(&self) -> Option<KernelStack> {
        self.stack
    }

    /// The task's `active_mm`.
    pub fn active_mm(&self) -> Arc<MmStruct> {
        let _irq = cpu::irq_save();
        // SAFETY: written only by `schedule` with interrupts off; we read
        // with interrupts off on the only CPU.
        unsafe { (*self.active_mm.get()).clone() }.unwrap_or_else(|| init_mm().clone())
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        if let Some(st) = self.stack.filter(|s| vmalloc::is_stack_zone_addr(s.base)) {
            // The task is gone from every list and no CPU runs on it
            // (reap never frees the stack it runs on).
            let _ = vmalloc::vfree_stack(&st);
        }
    }
}

/// `current`, written by `switch_to` itself (see arch::x86::switch).
#[no_mangle]
static mut CURRENT_TASK: *const Task = core::ptr::null();

static RUNQUEUE: Mutex<VecDeque<Arc<Task>>> = Mutex::new(VecDeque::new());
static TASKS: Mutex<Vec<Arc<Task>>> = Mutex::new(Vec::new());
static NEXT_PID: AtomicU32 = AtomicU32::new(1);
static SWITCHES: AtomicU32 = AtomicU32::new(0);
static IN_SWITCH: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Make the boot context task 0 (`swapper`, Linux's idle task), running on
/// the boot stack with `init_mm`.
pub fn init() {
    let t = Arc::new(Task {
        pid: 0,
        name: "swapper",
        state: AtomicU8::new(State::Runnable as u8),
        esp: RacyCell::new(0),
        stack: {
            let (base, top) = crate::mm::init::boot_stack();
            Some(KernelStack { base, top })
        },
        mm: None,
        active_mm: RacyCell::new(Some(init_mm().clone())),
        entry: None,
    });
    // SAFETY: boot, single context.
    unsafe { CURRENT_TASK = Arc::as_ptr(&t) };
    TASKS.lock().push(t);
}

/// The running task.
pub fn current() -> &'static Task {
    // SAFETY: CURRENT_TASK always points into an Arc held by TASKS (tasks
    // leave TASKS only after they stopped running for good).
    unsafe { &*CURRENT_TASK }
}

pub fn current_ptr() -> *const Task {
    // SAFETY: a plain read of a pointer-sized static.
    unsafe { CURRENT_TASK }
}

pub fn is_initialised() -> bool {
    !current_ptr().is_null()
}

/// The running task, if `esp` is at or below the bottom of its stack, in
/// its guard page (or the page under it, where a large frame lands): what
/// the double-fault task sees when a thread's stack overflowed.
pub fn stack_overflow_at(esp: u32) -> Option<&'static Task> {
    if !is_initialised() {
        return None;
    }
    let t = current();
    let st = t.stack?;
    let lowest = st.guard_below() - crate::mm::addr::PAGE_SIZE as u32;
    (lowest..=st.base).contains(&esp).then_some(t)
}

pub fn context_switches() -> u32 {
    SWITCHES.load(Ordering::Relaxed)
}

/// `kernel_thread(fn, arg)`: a new task running `f(arg)` in `mm` (or, with
/// `None`, borrowing whatever mm was active, like 2.4's kernel threads).
/// Panics, naming the thread, when no stack can be had.
pub fn kernel_thread(
    name: &'static str,
    f: fn(usize),
    arg: usize,
    mm: Option<Arc<MmStruct>>,
) -> Arc<Task> {
    try_kernel_thread(name, f, arg, mm)
        .unwrap_or_else(|| panic!("kernel_thread: no memory for the stack of {}", name))
}

/// `kernel_thread` that returns `None` (with vmalloc's warning) when the
/// stack zone or the frames run out.
pub fn try_kernel_thread(
    name: &'static str,
    f: fn(usize),
    arg: usize,
    mm: Option<Arc<MmStruct>>,
) -> Option<Arc<Task>> {
    let stack = vmalloc::vmalloc_stack(KERNEL_STACK_SIZE)?;
    let top = stack.top as usize;
    let task = Arc::new(Task {
        pid: NEXT_PID.fetch_add(1, Ordering::Relaxed),
        name,
        state: AtomicU8::new(State::Runnable as u8),
        esp: RacyCell::new(0),
        stack: Some(stack),
        mm,
        active_mm: RacyCell::new(None),
        entry: Some((f, arg)),
    });
    // Frame for the first switch_to: edi esi ebx ebp, its return address
    // (kernel_thread_entry, reached by `ret`), then the Task pointer that
    // becomes kernel_thread_start's argument once the entry stub calls it.
    let words: [u32; 6] = [
        0,
        0,
        0,
        0,
        kernel_thread_entry as *const () as u32,
        Arc::as_ptr(&task) as u32,
    ];
    let esp = top - words.len() * 4;
    // SAFETY: `esp..top` lies inside the fresh stack, mapped in every
    // address space (vmalloc_stack syncs its PGD slot everywhere).
    unsafe { core::ptr::copy_nonoverlapping(words.as_ptr(), esp as *mut u32, words.len()) };
    // SAFETY: the task is not yet visible to the scheduler.
    unsafe { *task.esp.get() = esp as u32 };
    // Every lock the scheduler takes is taken with interrupts off: a timer
    // preemption inside it would otherwise spin on it forever.
    {
        let _irq = cpu::irq_save();
        TASKS.lock().push(task.clone());
        RUNQUEUE.lock().push_back(task.clone());
    }
    Some(task)
}

#[no_mangle]
extern "C" fn kernel_thread_start(task: *const Task) -> ! {
    // SAFETY: the pointer was put on the stack by `kernel_thread` and the
    // Arc in TASKS keeps the task alive.
    let t = unsafe { &*task };
    finish_switch();
    // A new thread starts with interrupts on, whatever context switched
    // to it (a timer preemption switches with them off): like Linux's
    // kernel_thread, whose initial EFLAGS has IF set.
    cpu::sti();
    if let Some((f, arg)) = t.entry {
        f(arg);
    }
    do_exit(State::Zombie)
}

/// End the current task for good.
pub fn do_exit(state: State) -> ! {
    current().set_state(state);
    schedule();
    unreachable!("a dead task was scheduled again");
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
    // the window 2.4.16's "Do _not_ use tsk here" is about.
    cpu::restore_flags(flags);
    if let Some(pgd) = new_pgd {
        switch_mm(old_pgd, pgd);
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
fn finish_switch() {
    let _irq = cpu::irq_save();
    IN_SWITCH.store(false, Ordering::SeqCst);
    reap();
}

static NEED_RESCHED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
static PREEMPTION: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
static TICKS: AtomicU32 = AtomicU32::new(0);

fn timer_tick(_: &mut crate::arch::x86::entry::TrapFrame) {
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

/// True between the CR3 load and the end of `switch_to`: timer preemption
/// must not start another switch from inside this one.
pub fn in_switch() -> bool {
    IN_SWITCH.load(Ordering::SeqCst)
}

/// `switch_mm(prev, next)`: load next's directory if it differs.
pub fn switch_mm(prev_pgd: u32, next_pgd: u32) {
    if prev_pgd != next_pgd || cpu::read_cr3_pa() != next_pgd {
        // SAFETY: every mm's directory maps the whole kernel.
        unsafe { cpu::write_cr3(next_pgd) };
    }
}

/// Drop tasks that finished (never the one whose stack we are on).
fn reap() {
    let me = current_ptr();
    let mut tasks = TASKS.lock();
    let mut i = 1;
    while i < tasks.len() {
        let t = &tasks[i];
        // A finished task may be freed once we are no longer on its stack
        // and nobody else holds it (Arc count 1: only TASKS).
        if Arc::as_ptr(t) != me && t.state() != State::Runnable && Arc::strong_count(t) == 1 {
            tasks.swap_remove(i);
        } else {
            i += 1;
        }
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

/// Mark a task that is not running (it waits in the run queue, or is
/// suspended in a switch) as dead: it is never switched to again, and is
/// reaped like one that exited.  For tests whose driver oopsed.
pub fn kill_stopped(t: &Task) {
    assert!(
        !core::ptr::eq(t, current()),
        "kill_stopped on the running task"
    );
    t.set_state(State::Dead);
}

/// Wait until `t` has finished (`kthread_stop`-like, by yielding).
pub fn join(t: &Arc<Task>) -> State {
    while t.state() == State::Runnable {
        yield_now();
    }
    t.state()
}

/// A recovery point caught an oops: if it hit in another task than the
/// one that set the point, that task dies (Linux's oops does `do_exit`)
/// and the point's task becomes current again.  Either way the point's
/// task gets its own directory back in CR3, whatever the dying code had
/// loaded.
///
/// # Safety
/// `saved` must be null or point to a task still held in the task list.
pub unsafe fn recover_to(saved: *const Task) {
    let cur = current_ptr();
    if cur.is_null() || saved.is_null() {
        return;
    }
    // The oops may have hit with a scheduler lock held (in schedule or
    // reap, interrupts off; a blown stack there reaches us through the
    // double-fault task): its holder is abandoned and will never unlock.
    if TASKS.is_locked() {
        // SAFETY: one CPU, interrupts off, and the holder is gone.
        unsafe { TASKS.force_unlock() };
    }
    if RUNQUEUE.is_locked() {
        // SAFETY: as above.
        unsafe { RUNQUEUE.force_unlock() };
    }
    // SAFETY: both pointers are live tasks in TASKS; interrupts are off.
    unsafe {
        if cur != saved {
            (*cur).set_state(State::Dead);
            CURRENT_TASK = saved;
        }
        // The oops may have hit inside schedule(), after `next` left the
        // run queue but before it ran - also in a switch away from the
        // point's own task, from an interrupt in the window after
        // switch_mm (found by soaking the 2.4.1 handler, where a thread
        // then waited for ever outside the queue): put every runnable
        // task back, and close the switch that will never finish.
        IN_SWITCH.store(false, Ordering::SeqCst);
        requeue_runnable(saved);
        let pgd = (*(*saved).active_mm.get())
            .as_ref()
            .map_or(init_mm().pgd, |m| m.pgd);
        if cpu::read_cr3_pa() != pgd {
            cpu::write_cr3(pgd);
        }
    }
}

/// Make sure every runnable task but `running` is in the run queue.
fn requeue_runnable(running: *const Task) {
    let tasks = TASKS.lock();
    let mut rq = RUNQUEUE.lock();
    // The task we resume may still sit in the queue from before the oops
    // (it yielded to the task that died): it runs now, so take it out, or
    // every recovery would add one more copy to cycle through.
    rq.retain(|q| Arc::as_ptr(q) != running);
    for t in tasks.iter() {
        let p = Arc::as_ptr(t);
        if p != running && t.state() == State::Runnable && !rq.iter().any(|q| Arc::as_ptr(q) == p) {
            rq.push_back(t.clone());
        }
    }
}

/// Is `t` waiting in the run queue?
pub fn is_queued(t: *const Task) -> bool {
    let _irq = cpu::irq_save();
    let queued = RUNQUEUE.lock().iter().any(|x| Arc::as_ptr(x) == t);
    queued
}

pub fn nr_tasks() -> usize {
    let _irq = cpu::irq_save();
    let n = TASKS.lock().len();
    n
}
