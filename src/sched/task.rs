//! Tasks: the `Task` itself (stack, `mm`, `active_mm`, state), `current`,
//! creating kernel threads and ending them.

use alloc::sync::Arc;
use core::sync::atomic::{AtomicI32, AtomicU32, AtomicU8, Ordering};

use super::*;
use crate::arch::x86::switch::kernel_thread_entry;
use crate::arch::x86::{cpu, percpu};
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
    /// 2.4's `has_cpu` and `processor` in one word: the CPU (+ 1) the task
    /// runs on, or is being switched to or away from; 0 when no CPU holds
    /// its stack.  Set by `schedule` when it picks the task, cleared by
    /// the next task's `finish_switch` once switch_to has left the stack
    /// (2.4's `__schedule_tail`): no other CPU may take a task whose
    /// registers are still being saved.
    pub(super) has_cpu: AtomicU32,
    /// 2.4's `cpus_allowed`: the CPUs `schedule` may run it on.
    pub(super) cpus_allowed: AtomicU32,
    /// 2.4's `lock_depth`: how deep it holds the big kernel lock, -1 when
    /// it does not (`smp_lock`).
    pub(super) lock_depth: AtomicI32,
    /// Its `preempt_count` while it is switched out (the CPU's word holds
    /// the running task's: `schedule` swaps them).
    pub(super) preempt_count: AtomicU32,
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

    /// The CPU whose stack pointer is (or is about to be, or just was) on
    /// this task's stack.
    pub fn on_cpu(&self) -> Option<usize> {
        match self.has_cpu.load(Ordering::SeqCst) {
            0 => None,
            c => Some(c as usize - 1),
        }
    }

    pub(super) fn set_on_cpu(&self, cpu: Option<usize>) {
        self.has_cpu
            .store(cpu.map_or(0, |c| c as u32 + 1), Ordering::SeqCst)
    }

    pub fn cpus_allowed(&self) -> u32 {
        self.cpus_allowed.load(Ordering::SeqCst)
    }

    /// 2.4's `set_cpus_allowed` (2.4.x's later form): where `schedule` may
    /// run the task from its next switch on.  At least one CPU.
    pub fn set_cpus_allowed(&self, mask: u32) {
        assert!(mask != 0, "set_cpus_allowed: an empty mask");
        self.cpus_allowed.store(mask, Ordering::SeqCst)
    }

    /// The directory of the task's `active_mm`, read the way 2.4 reads
    /// `tsk->active_mm->pgd`: no lock, no interrupt masking, whatever the
    /// field holds at that instant (the fault path may run in the middle
    /// of `schedule`).
    pub fn active_mm_pgd(&self) -> u32 {
        // SAFETY: a read of a field only `schedule` writes; the Arc it
        // holds keeps the mm alive while it is installed.
        match unsafe { (*self.active_mm.get()).as_ref() } {
            Some(mm) => (mm.pgd).as_u32(),
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
        // SAFETY: written only by `schedule` with interrupts off, on the
        // CPU the task runs on: the caller is that task, or it reads a
        // task that is not running.
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

pub(super) static NEXT_PID: AtomicU32 = AtomicU32::new(1);

/// Every CPU.
pub(super) const ALL_CPUS: u32 = u32::MAX;

fn new_task(
    pid: u32,
    name: &'static str,
    stack: KernelStack,
    mm: Option<Arc<MmStruct>>,
    active_mm: Option<Arc<MmStruct>>,
    entry: Option<(fn(usize), usize)>,
    cpus_allowed: u32,
) -> Arc<Task> {
    Arc::new(Task {
        pid,
        name,
        state: AtomicU8::new(State::Runnable as u8),
        esp: RacyCell::new(0),
        stack: Some(stack),
        mm,
        active_mm: RacyCell::new(active_mm),
        entry,
        has_cpu: AtomicU32::new(0),
        cpus_allowed: AtomicU32::new(cpus_allowed),
        lock_depth: AtomicI32::new(-1),
        preempt_count: AtomicU32::new(0),
    })
}

/// Make the boot context task 0 (`swapper`, Linux's idle task), running on
/// the boot stack with `init_mm`.  It stays on CPU 0 (it drives the tests,
/// and its stack is the boot CPU's), and is CPU 0's idle task, what
/// `schedule` falls back to there, though it waits in the queue like any
/// task (`is_idle_task` counts the secondary CPUs' only).
pub fn init() {
    let (base, top) = crate::mm::init::boot_stack();
    init_idle(0, KernelStack { base, top });
    crate::arch::x86::irq::set_irq_exit(super::preempt::preempt_on_irq_exit);
}

/// CPU `cpu`'s idle task (2.4's `init_tasks[cpu]`, made by `fork_by_hand`
/// in `do_boot_cpu`): the context the CPU booted in, on the stack it
/// booted on, pinned to it, in `init_mm`.  Run by that CPU, which becomes
/// its `current`.
pub fn init_idle(cpu: usize, stack: KernelStack) {
    let t = new_task(
        0,
        "swapper",
        stack,
        None,
        Some(init_mm().clone()),
        None,
        1 << cpu,
    );
    t.set_on_cpu(Some(cpu));
    set_current(Arc::as_ptr(&t));
    set_idle_task(cpu, Arc::as_ptr(&t));
    TASKS.lock_irqsave().push(t);
}

/// This CPU's running task (`current`): a per-CPU word (percpu.rs) that
/// `switch_to` writes.
pub(super) fn set_current(t: *const Task) {
    percpu::set_current_word(t as u32);
}

/// The running task.
pub fn current() -> &'static Task {
    // SAFETY: `current` always points into an Arc held by TASKS (tasks
    // leave TASKS only after they stopped running for good).
    unsafe { &*current_ptr() }
}

pub fn current_ptr() -> *const Task {
    percpu::current_word() as *const Task
}

/// Whether this CPU runs a task yet (the scheduler is up, and on an AP,
/// its idle task exists).
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
    spawn(name, f, arg, mm, ALL_CPUS)
}

/// `kernel_thread` bound to CPU `cpu` from its first instruction (2.4
/// would `kernel_thread` and then set `cpus_allowed`; a new thread may
/// start before that, on any CPU).  Panics, naming the thread, when `cpu`
/// is not online or no stack can be had.
pub fn run_on(
    cpu: usize,
    name: &'static str,
    f: fn(usize),
    arg: usize,
    mm: Option<Arc<MmStruct>>,
) -> Arc<Task> {
    assert!(
        crate::arch::x86::smp::cpu_online(cpu),
        "run_on: CPU {} is not online (thread {})",
        cpu,
        name
    );
    spawn(name, f, arg, mm, 1 << cpu)
        .unwrap_or_else(|| panic!("run_on: no memory for the stack of {}", name))
}

/// `run_on` the running CPU: for the one-CPU experiments and cases, whose
/// races are between the tasks of one CPU, and whose helpers' oopses the
/// caller's recovery point (this CPU's) must catch.
pub fn run_here(
    name: &'static str,
    f: fn(usize),
    arg: usize,
    mm: Option<Arc<MmStruct>>,
) -> Arc<Task> {
    run_on(percpu::smp_processor_id(), name, f, arg, mm)
}

fn spawn(
    name: &'static str,
    f: fn(usize),
    arg: usize,
    mm: Option<Arc<MmStruct>>,
    cpus_allowed: u32,
) -> Option<Arc<Task>> {
    let stack = vmalloc::vmalloc_stack(KERNEL_STACK_SIZE)?;
    let top = stack.top as usize;
    let task = new_task(
        NEXT_PID.fetch_add(1, Ordering::Relaxed),
        name,
        stack,
        mm,
        None,
        Some((f, arg)),
        cpus_allowed,
    );
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
    // preemption inside it would otherwise spin on it forever.  Both lists
    // in one step (the task list first, as `requeue_runnable` takes them):
    // a recovery on another CPU in between would find a runnable task in
    // no queue and queue it, and then we would queue it again.
    {
        let _irq = cpu::irq_save();
        let mut tasks = TASKS.lock();
        tasks.push(task.clone());
        RUNQUEUE.lock().push(task.clone());
        drop(tasks);
        // 2.4's wake_up_process -> reschedule_idle: an idle CPU takes it.
        reschedule_idle(task.cpus_allowed());
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

/// Wait until `t` has finished (`kthread_stop`-like, by yielding; when
/// `t` runs on another CPU the yield returns at once, and this spins),
/// and until it has left its CPU: 2.4's `release_task` also spins while
/// `p->has_cpu` ("make sure the process isn't ... active on some other
/// CPU still").  Its stack may then be freed, by any CPU's next reap;
/// `reap_all` waits until it is.
pub fn join(t: &Arc<Task>) -> State {
    while t.state() == State::Runnable || t.on_cpu().is_some() {
        yield_now();
        core::hint::spin_loop();
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
