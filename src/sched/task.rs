//! Tasks: the `Task` itself (stack, `mm`, `active_mm`, state), `current`,
//! creating kernel threads and ending them.

use alloc::sync::Arc;
use core::sync::atomic::{AtomicU32, AtomicU8, Ordering};

use super::*;
use crate::arch::x86::cpu;
use crate::arch::x86::switch::kernel_thread_entry;
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
    pub(super) esp: RacyCell<u32>,
    /// A vmalloc'd stack, or for swapper the boot stack (also with an
    /// unmapped page below it, see mm::init).
    stack: Option<KernelStack>,
    pub mm: Option<Arc<MmStruct>>,
    /// The address space whose directory is loaded while this task runs:
    /// its own `mm`, or the one it borrowed.  Changed only by `schedule`
    /// with interrupts off.
    pub(super) active_mm: RacyCell<Option<Arc<MmStruct>>>,
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

    pub(super) fn set_state(&self, s: State) {
        self.state.store(s as u8, Ordering::SeqCst)
    }

    /// The directory of the task's `active_mm`, read the way 2.4 reads
    /// `tsk->active_mm->pgd`: no lock, no interrupt masking, whatever the
    /// field holds at that instant (the fault path may run in the middle
    /// of `schedule`).
    pub fn active_mm_pgd(&self) -> u32 {
        // SAFETY: a read of a field only `schedule` writes; the Arc it
        // holds keeps the mm alive while it is installed.
        match unsafe { (*self.active_mm.get()).as_ref() } {
            Some(mm) => mm.pgd,
            None => null_mm_pgd(),
        }
    }

    /// False only in 2.4's window where `schedule` has set a kernel
    /// thread's `active_mm` to NULL and `switch_to` has not run yet.
    pub fn has_active_mm(&self) -> bool {
        // SAFETY: a read of a field only `schedule` writes.
        unsafe { (*self.active_mm.get()).is_some() }
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
pub(super) static mut CURRENT_TASK: *const Task = core::ptr::null();

pub(super) static NEXT_PID: AtomicU32 = AtomicU32::new(1);

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

/// Wait until `t` has finished (`kthread_stop`-like, by yielding).
pub fn join(t: &Arc<Task>) -> State {
    while t.state() == State::Runnable {
        yield_now();
    }
    t.state()
}

/// `tsk->active_mm->pgd` with `active_mm` NULL, as 2.4 executes it: a load
/// from `offsetof(struct mm_struct, pgd)`, 0xc in 2.4.1's
/// include/linux/sched.h (after `mmap`, `mmap_avl`, `mmap_cache`).
/// Nothing maps the first page, so it faults, and the fault handler
/// oopses: "Unable to handle kernel NULL pointer dereference at virtual
/// address 0000000c".  Inline asm, because a null dereference in Rust is
/// undefined behaviour, and this is the machine instruction 2.4 ran.
#[inline(never)]
fn null_mm_pgd() -> u32 {
    const MM_STRUCT_PGD_OFFSET_2_4: u32 = 0xc;
    let pgd: u32;
    // SAFETY: the load faults (the first page is never mapped) and the
    // fault ends in the oops path; no memory is written.
    unsafe {
        core::arch::asm!(
            "movl ({addr}), {out}",
            addr = in(reg) MM_STRUCT_PGD_OFFSET_2_4,
            out = lateout(reg) pgd,
            options(att_syntax, nostack, readonly)
        )
    };
    pgd
}
