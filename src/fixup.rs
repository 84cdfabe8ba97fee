//! Recovery points, the kernel's exception fixup (Linux's
//! `fixup_exception` and `__ex_table` serve the same end: a fault in code
//! that expects it resumes at a known place instead of killing the
//! kernel).  `catch(f)` runs `f` under a point; an exception, a panic, a
//! double fault or an `abort` inside it ends `f` only, and `catch` returns
//! what happened.  Points nest: the innermost catches.  Outside any point
//! the same events end the run with a failure status, as an oops would.
//!
//! Users: the test harness (each case runs under a point), the race
//! explorer and the soak (an expected oops is an outcome to count), the
//! demo (the `cli` handler's oops).

use core::fmt::Write;
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use crate::arch::x86::catch::{self, JmpBuf};
use crate::arch::x86::entry::TrapFrame;
use crate::arch::x86::smp_config::NR_CPUS;
use crate::arch::x86::{cpu, tss};
use crate::fixed_buf::FixedBuf;
use crate::racy_cell::RacyCell;

/// What ended a case early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaughtKind {
    Exception,
    DoubleFault,
    Panic,
    /// The code under the point gave up on purpose (`abort`), with a
    /// reason: the test harness's "skip".
    Abort,
}

#[derive(Clone, Copy, Debug)]
pub struct Caught {
    pub kind: CaughtKind,
    pub vector: u32,
    pub error_code: u32,
    pub cr2: u32,
    pub eip: u32,
    /// The interrupted ESP (for a double fault: the one the TSS saved).
    pub esp: u32,
    pub msg: FixedBuf<240>,
}

impl Caught {
    fn new(kind: CaughtKind) -> Self {
        Caught {
            kind,
            vector: 0,
            error_code: 0,
            cr2: 0,
            eip: 0,
            esp: 0,
            msg: FixedBuf::new(),
        }
    }

    /// `named`: add the function the EIP is in (a symbol lookup and a
    /// demangling, most of an oops's cost in the unoptimised kernel:
    /// experiments that provoke thousands of silenced oopses skip it).
    pub fn exception(frame: &TrapFrame, cr2: u32, named: bool) -> Self {
        let mut c = Caught::new(CaughtKind::Exception);
        c.vector = frame.vector;
        c.error_code = frame.error_code;
        c.cr2 = cr2;
        c.eip = frame.eip;
        c.esp = frame.interrupted_esp();
        let name = crate::arch::x86::trapnr::TRAP_NAMES
            .get(frame.vector as usize)
            .copied()
            .unwrap_or("interrupt");
        let _ = write!(c.msg, "unexpected exception {} ({})", frame.vector, name);
        if frame.vector == 14 {
            let _ = write!(c.msg, " at virtual address {:08x}", cr2);
        }
        let _ = write!(c.msg, ", eip {:08x}", frame.eip);
        if named {
            if let Some(s) = crate::symbols::lookup(frame.eip) {
                let _ = write!(c.msg, " ({})", s);
            }
        }
        c
    }

    pub fn panic(info: &core::panic::PanicInfo) -> Self {
        let mut c = Caught::new(CaughtKind::Panic);
        let _ = write!(c.msg, "{}", info);
        c
    }
}

struct Point {
    buf: JmpBuf,
    quiet: bool,
    /// The task that set the point: an oops in another task kills that
    /// task and resumes this one.
    task: *const crate::sched::Task,
    /// What of the scheduler this CPU was in the middle of when the point
    /// was armed (`sched::in_progress_here`).
    locks: u8,
}

const MAX_DEPTH: usize = 8;

// Per CPU: each CPU's recovery points live on its own stack, and an oops
// unwinds to the innermost point of the CPU it happened on.
static POINTS: [RacyCell<[*mut Point; MAX_DEPTH]>; NR_CPUS] =
    [const { RacyCell::new([core::ptr::null_mut(); MAX_DEPTH]) }; NR_CPUS];
static DEPTH: [AtomicUsize; NR_CPUS] = [const { AtomicUsize::new(0) }; NR_CPUS];
static CAUGHT: [RacyCell<Option<Caught>>; NR_CPUS] = [const { RacyCell::new(None) }; NR_CPUS];
/// Every recovery so far, on any CPU.
static RECOVERIES: AtomicU32 = AtomicU32::new(0);

/// How many oopses (and aborts) recovery points have caught since boot:
/// a load that must go quiet after the first one (the soak's timer
/// handlers) compares it with the figure it started with.  Counted as the
/// oops is handed over, before the point's interrupt flag comes back.
pub fn recoveries() -> u32 {
    RECOVERIES.load(Ordering::SeqCst)
}

/// This CPU's index into the per-CPU tables above.
fn me() -> usize {
    crate::arch::x86::percpu::smp_processor_id()
}

/// Run `f` under a recovery point.  `quiet` shortens the oops report of a
/// fault the caller expects to a single line.
#[allow(clippy::result_large_err)] // a fixed buffer: the fault path must not allocate
pub fn catch<F: FnOnce()>(quiet: bool, f: F) -> Result<(), Caught> {
    // The point goes in this CPU's list: the task stays here while it is
    // armed (no switch between reading the CPU and pinning).
    let (cpu, pinned) = {
        let _irq = cpu::irq_save();
        (me(), crate::sched::pin_for_point())
    };
    let depth = DEPTH[cpu].load(Ordering::SeqCst);
    assert!(depth < MAX_DEPTH, "recovery points nested too deep");
    let irq_depth = crate::arch::x86::irq::depth();
    let preempt_count = crate::arch::x86::percpu::preempt_count().load(Ordering::SeqCst);
    let mut point = Point {
        buf: JmpBuf::new(),
        quiet,
        task: crate::sched::current_ptr(),
        locks: crate::sched::in_progress_here(),
    };
    // SAFETY: the slot at `depth` is ours until DEPTH is restored below;
    // `point` outlives every use of the pointer (popped before return).
    unsafe { (*POINTS[cpu].get())[depth] = &mut point };
    DEPTH[cpu].store(depth + 1, Ordering::SeqCst);
    let code = catch::catch(&mut point.buf, f);
    // A longjmp skips the pops of points nested inside `f`: restore ours.
    DEPTH[cpu].store(depth, Ordering::SeqCst);
    if code != 0 {
        crate::sched::after_recovery();
    }
    crate::sched::unpin_after_point(pinned);
    if code == 0 {
        Ok(())
    } else {
        // An oops inside an interrupt handler never returned through
        // do_irq: its nesting level is abandoned with it.
        crate::arch::x86::irq::restore_depth(irq_depth);
        // So are the spinlocks its frames held (forced free by the oops
        // path): the count is the point's again.
        crate::arch::x86::percpu::preempt_count().store(preempt_count, Ordering::SeqCst);
        // SAFETY: written by the path that longjmp'd here, before it did.
        Err(unsafe { (*CAUGHT[cpu].get()).take() }.expect("recovery without a record"))
    }
}

/// Run `f`, expecting it to fault: returns what was caught, or `None` if
/// it completed.  The oops report is one line.
pub fn expect_fault<F: FnOnce()>(f: F) -> Option<Caught> {
    catch(true, f).err()
}

pub fn armed() -> bool {
    DEPTH[me()].load(Ordering::SeqCst) > 0
}

/// Whether the innermost recovery point wants short oops reports.
pub fn quiet() -> bool {
    let cpu = me();
    let d = DEPTH[cpu].load(Ordering::SeqCst);
    // SAFETY: reading a pointer that the owning `catch` keeps alive.
    d > 0 && unsafe { (*(*POINTS[cpu].get())[d - 1]).quiet }
}

fn top() -> *mut Point {
    let cpu = me();
    let d = DEPTH[cpu].load(Ordering::SeqCst);
    // SAFETY: see `quiet`.
    unsafe { (*POINTS[cpu].get())[d - 1] }
}

/// Hand `c` to the innermost recovery point, or end the run.
pub fn recover_or_fail(c: Caught) -> ! {
    crate::console::force_unlock();
    if !armed() {
        crate::println!("Kernel panic - not syncing: {}", c.msg);
        crate::qemu::exit(crate::qemu::ExitCode::Failed);
    }
    cpu::cli();
    RECOVERIES.fetch_add(1, Ordering::SeqCst);
    // SAFETY: `top()` is live (armed() above) and its task is the one
    // that set the point, still in the task list and pinned to this CPU.
    unsafe { crate::sched::recover_to((*top()).task, (*top()).locks) };
    // SAFETY: this CPU's slot, interrupts off; `catch` reads it after the
    // jump, on this CPU.
    unsafe { *CAUGHT[me()].get() = Some(c) };
    // SAFETY: `top()` is a live point whose `arch_catch` frame is below
    // us on this stack (points are popped before their frames return).
    unsafe { catch::longjmp(&(*top()).buf, 1) }
}

/// End the code under the innermost recovery point on purpose, with
/// `reason`.
pub fn abort(reason: &str) -> ! {
    let mut c = Caught::new(CaughtKind::Abort);
    let _ = c.msg.write_str(reason);
    if !armed() {
        panic!("abort outside a recovery point: {}", reason);
    }
    recover_or_fail(c)
}

/// Called in the double-fault task.  If a recovery point is armed, make the
/// suspended kernel task resume there when the task gate irets back;
/// otherwise end the run.
pub fn recover_from_double_fault(state: &x86::bits32::task::TaskStateSegment) {
    crate::console::force_unlock();
    let eip = state.eip;
    let esp = state.esp;
    let mut c = Caught::new(CaughtKind::DoubleFault);
    c.vector = 8;
    c.eip = eip;
    c.esp = esp;
    match crate::sched::stack_overflow_at(esp) {
        Some(t) => {
            let pos = t.stack().map(|st| st.overflow_position(esp));
            let _ = write!(
                c.msg,
                "kernel stack overflow in thread {} (pid {}), eip {:08x}, esp {:08x} {}",
                t.name,
                t.pid,
                eip,
                esp,
                pos.unwrap_or(crate::mm::vmalloc::OverflowPosition::OnStack)
            );
        }
        None => {
            let _ = write!(c.msg, "double fault, eip {:08x}, esp {:08x}", eip, esp);
        }
    }
    if !armed() {
        crate::println!("Kernel panic - not syncing: double fault");
        crate::qemu::exit(crate::qemu::ExitCode::Failed);
    }
    RECOVERIES.fetch_add(1, Ordering::SeqCst);
    // SAFETY: the kernel task is suspended; nothing else runs.
    unsafe {
        crate::sched::recover_to((*top()).task, (*top()).locks);
        *CAUGHT[me()].get() = Some(c);
        let buf = &(*top()).buf;
        catch::DF_RESUME_BUF = buf;
        catch::DF_RESUME_CODE = 1;
        tss::redirect_interrupted(
            catch::arch_longjmp_df as *const () as u32,
            buf.esp(),
            cpu::read_cr3(),
        );
    }
}
