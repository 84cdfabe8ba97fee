//! The context-switch window: `schedule()` loads next's CR3 in
//! `switch_mm`, and only later does `switch_to` make next `current`
//! (interrupts are enabled in between, as after 2.4's
//! `spin_unlock_irq(&runqueue_lock)`).  A handler that finds "this mm"
//! through `current->active_mm` looks at the wrong directory there; one
//! that reads CR3 does not.  This explorer steps that window (DR0 on
//! `switch_mm`, then EFLAGS.TF until `current` changes) and delivers the
//! nested test interrupt, which touches a slot stale in both mms, at each
//! boundary where CR3 and `current` disagree.  With a kernel thread (no
//! mm of its own) as prev, the window holds a second one: 2.4 sets
//! `prev->active_mm = NULL` after `switch_mm`, so a handler that reads
//! `tsk->active_mm->pgd` there dereferences NULL.

extern crate alloc;

use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use crate::arch::x86::entry::TrapFrame;
use crate::arch::x86::irq::{self, IrqFlags};
use crate::arch::x86::{apic, cpu, dispatch};
use crate::mm::addr::PAGE_SIZE;
use crate::mm::fault;
use crate::mm::mm_struct::mm_alloc;
use crate::mm::pgtable::{mode, pgd_offset, pmd_clear, pmd_offset, PagingMode};
use crate::mm::vmalloc::{vfree, vmalloc};
use crate::racy_cell::RacyCell;
use crate::sched::{self, Task};

use super::explorer::{Outcome, NESTED_VECTOR};

const MAX_STEPS: usize = 4000;

struct State {
    active: bool,
    stepping: bool,
    k: usize,
    target: usize,
    next_pgd: u32,
    prev_task: *const Task,
    window: [bool; MAX_STEPS],
    null_mm: [bool; MAX_STEPS],
    eip: [u32; MAX_STEPS],
    recording: bool,
}

static ST: RacyCell<State> = RacyCell::new(State {
    active: false,
    stepping: false,
    k: 0,
    target: usize::MAX,
    next_pgd: 0,
    prev_task: core::ptr::null(),
    window: [false; MAX_STEPS],
    null_mm: [false; MAX_STEPS],
    eip: [0; MAX_STEPS],
    recording: false,
});
static Y: AtomicU32 = AtomicU32::new(0);
static NESTED_DONE: AtomicBool = AtomicBool::new(false);
static B_READY: AtomicBool = AtomicBool::new(false);

fn st() -> &'static mut State {
    // SAFETY: as in explorer.rs: the #DB handler and the driver never run
    // at the same time on this single CPU.
    unsafe { &mut *ST.get() }
}

fn nested_irq(_: &mut TrapFrame) {
    // SAFETY: a vmalloc'd word of this experiment.
    unsafe { core::ptr::write_volatile(Y.load(Ordering::SeqCst) as *mut u32, 0x5EED) };
    NESTED_DONE.store(true, Ordering::SeqCst);
}

fn debug_trap(frame: &mut TrapFrame) {
    let dr6 = cpu::take_dr6();
    super::fault_loop::on_debug(frame, dr6);
    let s = st();
    if dr6 & cpu::DR6_B0 != 0 {
        frame.eflags |= cpu::EFLAGS_RF;
        if s.active && !s.stepping && irq::depth() == 0 {
            s.stepping = true;
        }
    }
    if !s.active || !s.stepping || irq::depth() != 0 {
        frame.eflags &= !cpu::EFLAGS_TF;
        return;
    }
    if sched::current_ptr() != s.prev_task || s.k >= MAX_STEPS {
        // `current` is next now: the window is closed.
        s.stepping = false;
        s.active = false;
        cpu::clear_exec_breakpoint();
        frame.eflags &= !cpu::EFLAGS_TF;
        return;
    }
    let in_window = cpu::read_cr3_pa() == s.next_pgd;
    if s.recording {
        s.window[s.k] = in_window && frame.eflags & cpu::EFLAGS_IF != 0;
        // SAFETY: prev is a live task (its thread is being switched out).
        s.null_mm[s.k] = !unsafe { (*s.prev_task).has_active_mm() };
        s.eip[s.k] = frame.eip;
    }
    if s.k == s.target && in_window && frame.eflags & cpu::EFLAGS_IF != 0 {
        apic::self_ipi(NESTED_VECTOR);
    }
    s.k += 1;
    frame.eflags |= cpu::EFLAGS_TF;
}

fn prev_thread(_: usize) {
    while !B_READY.load(Ordering::SeqCst) {
        sched::yield_now();
    }
    let s = st();
    s.prev_task = sched::current_ptr();
    s.active = true;
    cpu::set_exec_breakpoint(sched::switch_mm as *const () as u32);
    sched::yield_now(); // -> switch_mm(a, b) ... switch_to(A, B)
    cpu::clear_exec_breakpoint();
    s.active = false;
}

fn next_thread(_: usize) {
    B_READY.store(true, Ordering::SeqCst);
    sched::yield_now();
}

/// Window exploration results.
#[derive(Clone, Debug, Default)]
pub struct WindowReport {
    /// Runs whose nested handler ran.
    pub delivered: usize,
    /// Boundaries stepped from switch_mm's entry to `current = next`.
    pub stepped: usize,
    /// Boundaries with CR3 = next's directory, `current` = prev, IF=1.
    pub in_window: usize,
    /// Of those, where prev's `active_mm` is NULL (a kernel-thread prev).
    pub null_active_mm: usize,
    /// Failures inside that NULL sub-window.
    pub null_failures: usize,
    pub failures: usize,
    pub failing: Vec<(usize, u32, Outcome)>,
}

fn run_once(
    a: &alloc::sync::Arc<crate::mm::mm_struct::MmStruct>,
    b: &alloc::sync::Arc<crate::mm::mm_struct::MmStruct>,
    y: u32,
    target: usize,
    record: bool,
    kthread: bool,
) -> Outcome {
    if mode() == PagingMode::TwoLevel && !crate::mm::fault::version().syncs_eagerly() {
        for mm in [a, b] {
            pmd_clear(pmd_offset(pgd_offset(mm.pgd, y), y));
        }
    }
    let s = st();
    s.k = 0;
    s.target = target;
    s.stepping = false;
    s.recording = record;
    s.next_pgd = b.pgd;
    NESTED_DONE.store(false, Ordering::SeqCst);
    B_READY.store(false, Ordering::SeqCst);
    let bad0 = fault::bad_areas();
    // A kernel thread borrows the mm of whoever ran before it (lazy TLB).
    let ta = sched::run_here("prev", prev_thread, 0, (!kthread).then(|| a.clone()));
    let tb = sched::run_here("next", next_thread, 0, Some(b.clone()));
    super::fault_loop::arm();
    let r = crate::fixup::catch(true, || {
        sched::join(&ta);
        sched::join(&tb);
    });
    super::fault_loop::disarm();
    cpu::clear_exec_breakpoint();
    s.active = false;
    sched::drop_lazy_mm();
    // A killed thread may leave its partner waiting: let it finish.
    B_READY.store(true, Ordering::SeqCst);
    sched::join(&tb);
    match r {
        Err(_) if fault::bad_areas() != bad0 => Outcome::Oops(fault::last_bad_area()),
        Err(c) if super::fault_loop::caught(&c) => Outcome::FaultLoop,
        Err(c) => Outcome::OtherOops(c.vector),
        Ok(()) => Outcome::Clean,
    }
}

/// `kthread`: prev is a kernel thread without an mm of its own.
pub fn explore_window(kthread: bool) -> Option<WindowReport> {
    if !apic::present() {
        return None;
    }
    let (a, b) = (mm_alloc()?, mm_alloc()?);
    let area = vmalloc(8 << 20)?.as_ptr() as u32;
    let y = ((area + (4 << 20) - 1) & !((4 << 20) - 1)) + 2 * PAGE_SIZE as u32;
    Y.store(y, Ordering::SeqCst);
    dispatch::register_handler(1, Some(debug_trap));
    irq::request_irq(NESTED_VECTOR, nested_irq, IrqFlags::empty());
    crate::oops::set_silent(true);
    let mut rep = WindowReport::default();
    let lazy = !crate::mm::fault::version().syncs_eagerly();
    let stale = lazy && mode() == PagingMode::TwoLevel;
    if run_once(&a, &b, y, usize::MAX, true, kthread) == Outcome::Clean {
        rep.stepped = st().k;
    }
    let window: Vec<bool> = st().window[..rep.stepped].to_vec();
    let null_mm: Vec<bool> = st().null_mm[..rep.stepped].to_vec();
    rep.null_active_mm = (0..rep.stepped)
        .filter(|&k| window[k] && null_mm[k])
        .count();
    let eips: Vec<u32> = st().eip[..rep.stepped].to_vec();
    rep.in_window = window.iter().filter(|w| **w).count();
    if stale {
        for k in (0..rep.stepped).filter(|&k| window[k]) {
            let out = run_once(&a, &b, y, k, false, kthread);
            if NESTED_DONE.load(Ordering::SeqCst) || out.failed() {
                rep.delivered += 1;
            }
            if out.failed() {
                rep.failures += 1;
                if null_mm[k] {
                    rep.null_failures += 1;
                }
                rep.failing.push((k, eips[k], out));
            }
        }
    }
    crate::oops::set_silent(false);
    irq::free_irq(NESTED_VECTOR);
    dispatch::register_handler(1, None);
    let _ = vfree(area as *const u8);
    Some(rep)
}
