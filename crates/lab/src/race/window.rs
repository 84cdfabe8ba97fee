//! The context-switch window: `schedule()` loads next's CR3 in
//! `switch_mm`, and only later does `switch_to` make next `current`
//! (interrupts are enabled in between, as after 2.4's
//! `spin_unlock_irq(&runqueue_lock)`).  A handler that finds "this mm"
//! through `current->active_mm` looks at the wrong directory there; one
//! that reads CR3 does not.  This explorer steps that window (DR3 on
//! `switch_mm`, then EFLAGS.TF until `current` changes) and delivers the
//! nested test interrupt, which touches a slot stale in both mms, at each
//! boundary where CR3 and `current` disagree (the engine's stepping,
//! `engine`, from its trigger every run: the window is short).  With a kernel thread (no
//! mm of its own) as prev, the window holds a second one: 2.4 sets
//! `prev->active_mm = NULL` after `switch_mm`, so a handler that reads
//! `tsk->active_mm->pgd` there dereferences NULL.

extern crate alloc;

use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use vmfault::arch::x86::entry::TrapFrame;
use vmfault::arch::x86::irq::{self, IrqFlags};
use vmfault::arch::x86::{apic, cpu};
use vmfault::mm::addr::PAGE_SIZE;
use vmfault::mm::fault;
use vmfault::mm::mm_struct::mm_alloc;
use vmfault::mm::pgtable::{mode, pgd_offset, pmd_clear, pmd_offset, PagingMode};
use vmfault::mm::vmalloc::{vfree, vmalloc};
use vmfault::racy_cell::RacyCell;
use vmfault::sched::{self, Task};

use super::engine::{self, After, Boundaries, Jump, Reach, Trigger};
use super::explorer::{Outcome, NESTED_VECTOR};
use super::narrate::{self, Who};
use super::outcome::Mark;
use vmfault::mm::addr::VirtAddr;

const MAX_STEPS: usize = 4000;

struct State {
    next_pgd: u32,
    prev_task: *const Task,
    /// The dry run's boundaries: in the window, and prev's `active_mm`
    /// NULL.
    window: Vec<bool>,
    null_mm: Vec<bool>,
}

static ST: RacyCell<State> = RacyCell::new(State {
    next_pgd: 0,
    prev_task: core::ptr::null(),
    window: Vec::new(),
    null_mm: Vec::new(),
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
    let y = Y.load(Ordering::SeqCst);
    if narrate::on() {
        narrate::party_starts(&alloc::format!(
            "nested interrupt (vector {:#x}) in the switch window: writes {:#010x}, stale in both mms",
            NESTED_VECTOR,
            y
        ));
    }
    // SAFETY: a vmalloc'd word of this experiment.
    unsafe { core::ptr::write_volatile(y as *mut u32, 0x5EED) };
    narrate::party_done("nested handler done; iret into the switch");
    NESTED_DONE.store(true, Ordering::SeqCst);
}

/// CR3 is next's directory, `current` still prev, and interrupts on.
fn in_window(frame: &TrapFrame) -> bool {
    cpu::read_cr3_pa() == st().next_pgd && frame.eflags & cpu::EFLAGS_IF != 0
}

/// prev's switch, from `switch_mm` to `current = next`, for the engine.
struct Switch;

impl engine::Path for Switch {
    fn own(_: &TrapFrame) -> bool {
        irq::depth() == 0
    }

    fn over(_: &TrapFrame, _: usize) -> bool {
        // `current` is next now: the window is closed.
        sched::current_ptr() != st().prev_task
    }

    fn note(frame: &TrapFrame, _: usize) -> After {
        let s = st();
        s.window.push(in_window(frame));
        // SAFETY: prev is a live task (its thread is being switched out).
        s.null_mm.push(!unsafe { (*s.prev_task).has_active_mm() });
        After::Step
    }

    fn deliver(frame: &mut TrapFrame, k: usize) -> After {
        if in_window(frame) {
            narrate::boundary(frame, k);
            apic::self_ipi(NESTED_VECTOR);
        }
        // The rest of the switch runs unstepped: nothing more happens at
        // a boundary of this run.
        After::Free
    }
}

fn prev_thread(_: usize) {
    while !B_READY.load(Ordering::SeqCst) {
        sched::yield_now();
    }
    st().prev_task = sched::current_ptr();
    engine::arm(Trigger::Exec(sched::switch_mm as *const () as u32));
    sched::yield_now(); // -> switch_mm(a, b) ... switch_to(A, B)
    engine::disarm();
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
    /// The last run: its boundary and outcome (a replay's one run).
    pub last_run: Option<(usize, Outcome)>,
    /// The slot was stale in both mms (two-level, a lazy version): the
    /// window's boundaries were run.
    pub explored: bool,
    /// Each boundary's mark: run and clean or failed, or not run; and
    /// its instruction (the strip).
    pub marks: Vec<Mark>,
    pub eips: Vec<u32>,
}

fn run_once(
    a: &alloc::sync::Arc<vmfault::mm::mm_struct::MmStruct>,
    b: &alloc::sync::Arc<vmfault::mm::mm_struct::MmStruct>,
    y: u32,
    target: Option<Jump>,
    kthread: bool,
) -> Outcome {
    if mode() == PagingMode::TwoLevel && vmfault::mm::fault::version().lazy_only() {
        for mm in [a, b] {
            // Neither mm is loaded between runs; the switch into it (a
            // CR3 load) flushes.
            pmd_clear(pmd_offset(
                pgd_offset(mm.pgd, VirtAddr::new(y)),
                VirtAddr::new(y),
            ))
            .ignore();
        }
    }
    narrate::entries("before the run");
    engine::prepare(target, target.is_none());
    let s = st();
    s.next_pgd = (b.pgd).as_u32();
    s.window.clear();
    s.null_mm.clear();
    NESTED_DONE.store(false, Ordering::SeqCst);
    B_READY.store(false, Ordering::SeqCst);
    let bad0 = fault::bad_areas();
    // A kernel thread borrows the mm of whoever ran before it (lazy TLB).
    let ta = sched::run_here("prev", prev_thread, 0, (!kthread).then(|| a.clone()));
    let tb = sched::run_here("next", next_thread, 0, Some(b.clone()));
    // A narrated run (a replay) lets its oops report through.
    let r = vmfault::fixup::catch(!narrate::on(), || {
        sched::join(&ta);
        sched::join(&tb);
    });
    engine::disarm();
    engine::run_over();
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
pub fn explore_window(kthread: bool, sel: impl Into<Boundaries>) -> Option<WindowReport> {
    let sel = sel.into();
    if !apic::present() {
        return None;
    }
    let (a, b) = (mm_alloc()?, mm_alloc()?);
    let area = vmalloc(8 << 20)?.as_ptr() as u32;
    let y = ((area + (4 << 20) - 1) & !((4 << 20) - 1)) + 2 * PAGE_SIZE as u32;
    Y.store(y, Ordering::SeqCst);
    st().window = Vec::with_capacity(MAX_STEPS);
    st().null_mm = Vec::with_capacity(MAX_STEPS);
    engine::begin::<Switch>(MAX_STEPS, true);
    irq::request_irq(NESTED_VECTOR, nested_irq, IrqFlags::empty());
    vmfault::oops::set_silent(true);
    let mut rep = WindowReport::default();
    let lazy = vmfault::mm::fault::version().lazy_only();
    let stale = lazy && mode() == PagingMode::TwoLevel;
    let clean = run_once(&a, &b, y, None, kthread) == Outcome::Clean;
    let rec = engine::take_recording();
    // In the window, and open to an interrupt: not in `sti`'s shadow
    // (the engine's `irq_on`), which no maskable interrupt enters.
    let window: Vec<bool> = core::mem::take(&mut st().window)
        .into_iter()
        .zip(rec.irq_on.iter())
        .map(|(w, &open)| w && open)
        .collect();
    let null_mm = core::mem::take(&mut st().null_mm);
    if clean {
        rep.stepped = rec.len();
    }
    rep.null_active_mm = (0..rep.stepped)
        .filter(|&k| window[k] && null_mm[k])
        .count();
    rep.in_window = (0..rep.stepped).filter(|&k| window[k]).count();
    rep.explored = stale;
    rep.marks = (0..rep.stepped)
        .map(|k| match window[k] && stale {
            true => Mark::Skipped,
            false => Mark::Outside,
        })
        .collect();
    rep.eips = rec.eips[..rep.stepped].to_vec();
    if stale {
        // Every run steps from `switch_mm`: the window is a few hundred
        // boundaries, no anchor needed.
        let wanted = (0..rep.stepped).filter(|&k| window[k] && sel.keeps(k));
        for j in rec.jumps(wanted, Reach::Stepping, |_| false) {
            let k = j.k;
            if let Some(h) = narrate::requested() {
                let init = ("init_mm", vmfault::mm::init::swapper_pg_dir());
                let (with_prev, without) = (
                    [("prev's mm", a.pgd), ("next's mm", b.pgd), init],
                    [("next's mm", b.pgd), init],
                );
                narrate::begin(&narrate::Setup {
                    handle: h,
                    k,
                    n: rep.stepped,
                    eip: rec.eips[k],
                    who: Who::Nested,
                    party_pc: vmfault::arch::x86::entry::stub_address(NESTED_VECTOR),
                    end_pc: narrate::race_run_over as *const () as u32,
                    end_sp: 0,
                    addrs: &[y],
                    dirs: if kthread { &without } else { &with_prev },
                });
            }
            let out = run_once(&a, &b, y, Some(j), kthread);
            rep.last_run = Some((k, out));
            rep.marks[k] = Mark::of(out, Outcome::Clean);
            narrate::entries("after the run");
            narrate::end();
            if NESTED_DONE.load(Ordering::SeqCst) || out.failed() {
                rep.delivered += 1;
            }
            if out.failed() {
                rep.failures += 1;
                if null_mm[k] {
                    rep.null_failures += 1;
                }
                rep.failing.push((k, rec.eips[k], out));
            }
        }
    }
    vmfault::oops::set_silent(false);
    irq::free_irq(NESTED_VECTOR);
    engine::end();
    let _ = vfree(area as *const u8);
    Some(rep)
}
