//! The race that ended the eager `set_pgdir` (issue 28, scenario 8):
//! Linux 2.4.0-test10-pre1's fork copies the kernel part of
//! `swapper_pg_dir` into the child's new directory in `pgd_alloc`, long
//! before `SET_LINKS` puts the child on the task list that `set_pgdir`
//! walks (`fork2400`).  A vmalloc that creates a kernel PGD entry in
//! between writes it into every linked task and misses the child, which
//! then lacks the entry for good: test10-pre1's `do_page_fault` has no
//! vmalloc path, so the child's first touch of that area oopses.  The
//! seed says why the lazy design won: "dropping set_pgdir simplifys the
//! locking".
//!
//! - **Two CPUs** (`explore_fork`): A forks (its `copy_mm` through
//!   `SET_LINKS` is the path), and at every boundary of it CPU B runs
//!   test10-pre1's vmalloc of one page into a fresh slot, `set_pgdir`
//!   included (`stepper`, `Cpus::Two`).  B spins on `tasklist_lock`
//!   where A holds it for `SET_LINKS`.
//! - **One CPU** (`explore_fork_sleeps`): test10-pre1 has no kernel
//!   preemption and an interrupt handler may not vmalloc, so B, another
//!   task, runs only where A sleeps: at each `GFP_KERNEL` allocation of
//!   the path (`fork2400::SleepPoint`), memory low.
//!
//! After both, the run compares the child's entry for the slot with
//! init_mm's (missed: the child lacks it; the parent, linked all along,
//! must have it) and, where the child missed it, the child's first touch
//! of B's page under the booted `vmalloc_fault=`: `set_pgdir` (and 5.8's
//! `eager`, which has no fault path either) oopses in `no_context`; the
//! lazy versions copy the entry in their fault, which is what test10-pre2
//! brought.  Two-level only: in PAE the kernel PMD is shared, so B's walk
//! changes no pgd and `set_pgdir` never runs (counted, not assumed).

extern crate alloc;

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};

use vmfault::arch::x86::smp;
use vmfault::fixup;
use vmfault::mm::addr::{PhysAddr, VirtAddr};
use vmfault::mm::fault;
use vmfault::mm::frame::{alloc_frame, free_frame};
use vmfault::mm::init::swapper_pg_dir;
use vmfault::mm::mm_struct::{mm_alloc, mm_of_pgd, MmStruct};
use vmfault::mm::pgtable::{pgd_offset, pgd_val, pmd_clear, pmd_offset, pmd_present};
use vmfault::mm::vmalloc;
use vmfault::sched;

use super::engine::{Boundaries, Checks, Jump, Reach};
use super::narrate::{self, Who};
use super::outcome::{Mark, Outcome};
use super::stepper::{self, Cpus, Parties, Session};
use crate::fork2400::{self, SleepPoint};

const SLOT: u32 = 4 << 20;

static S: AtomicU32 = AtomicU32::new(0);
static FRAME_B: AtomicU32 = AtomicU32::new(0);
/// This run's child directory (0: the fork failed or has not run).
static CHILD: AtomicU32 = AtomicU32::new(0);
/// How the child's touch ended (`Outcome::access_word`).
static TOUCH: AtomicU32 = AtomicU32::new(0);

fn va_b() -> u32 {
    S.load(Ordering::SeqCst) + 0x3000
}

/// A: the fork, from `copy_mm`'s first instruction to `SET_LINKS`'s
/// unlock.
fn fork_a() {
    stepper::arm_exec(fork2400::do_fork_mm as *const () as u32);
    let child = fork2400::do_fork_mm();
    stepper::path_over();
    CHILD.store(child.map_or(0, |p| p.as_u32()), Ordering::SeqCst);
    assert!(child.is_some(), "A: the fork found no memory");
}

/// B: test10-pre1's vmalloc of one page into the fresh slot.
fn vmalloc_b() {
    if narrate::on() {
        narrate::party_starts(&alloc::format!(
            "B runs 2.4.0-test10-pre1's vmalloc_area_pages for {:#010x} (a fresh slot), then set_pgdir over the task list",
            va_b()
        ));
    }
    let ok = fork2400::vmalloc_area_pages(va_b(), FRAME_B.load(Ordering::SeqCst) as u64);
    narrate::party_done("B's vmalloc is done");
    assert!(ok, "B: no page table");
}

/// The one-CPU B: a task that runs when A sleeps.
fn vmalloc_b_task(_: usize) {
    vmalloc_b();
}

/// The child's first touch of B's page, as a task of the child's mm.
fn touch_task(va: usize) {
    let bad0 = fault::bad_areas();
    // SAFETY: B's page, mapped in init_mm; from the child's directory it
    // faults if the slot is missing, which is the experiment.
    let r = fixup::catch(true, || unsafe {
        core::ptr::read_volatile(va as *const u32);
    });
    TOUCH.store(Outcome::access_word(&r, bad0), Ordering::SeqCst);
}

/// One run's verdict.
#[derive(Clone, Copy, Debug, Default)]
pub struct ForkRun {
    /// The child's directory lacks the slot's entry.
    pub missed: bool,
    /// The parent's does (it never should: it was linked all along).
    pub parent_missed: bool,
    /// B wrote a pgd entry at all (`set_pgdir` ran).
    pub set_pgdir_ran: bool,
    /// Where the child missed it: its first touch.
    pub touch: Option<Outcome>,
}

impl ForkRun {
    pub fn failed(&self) -> bool {
        self.missed || self.parent_missed || self.touch.is_some_and(|t| t.failed())
    }
}

/// One exploration.
#[derive(Clone, Debug, Default)]
pub struct ForkReport {
    pub stepped: usize,
    pub runs: usize,
    /// Runs where the child missed the entry.
    pub missed: usize,
    pub parent_missed: usize,
    /// Runs where B's walk changed a pgd (two-level: all; PAE: none).
    pub set_pgdir_runs: usize,
    /// The child's touches: oopses, and clean ones (a lazy fault synced).
    pub touch_oopses: usize,
    pub touch_clean: usize,
    /// How the oopsing touches ended.
    pub touch_kinds: Vec<Outcome>,
    /// Runs where B spun on `tasklist_lock` A held.
    pub waited: usize,
    pub hangs: usize,
    pub checks: Checks,
    /// First and last boundary where the child missed it.
    pub window: Option<(usize, usize)>,
    pub eips: Vec<u32>,
    pub marks: Vec<Mark>,
    pub last_run: Option<(usize, ForkRun)>,
}

impl ForkReport {
    fn add(&mut self, k: usize, r: ForkRun) {
        self.runs += 1;
        self.missed += usize::from(r.missed);
        self.parent_missed += usize::from(r.parent_missed);
        self.set_pgdir_runs += usize::from(r.set_pgdir_ran);
        match r.touch {
            Some(Outcome::Clean) => self.touch_clean += 1,
            Some(t) => {
                self.touch_oopses += 1;
                if !self.touch_kinds.contains(&t) {
                    self.touch_kinds.push(t);
                }
            }
            None => {}
        }
        if r.missed {
            self.window = Some(self.window.map_or((k, k), |(lo, _)| (lo, k)));
        }
        self.last_run = Some((k, r));
    }
}

fn slot_entry(pgd: PhysAddr) -> u64 {
    let s = S.load(Ordering::SeqCst);
    pgd_val(pgd_offset(pgd, VirtAddr::new(s)).read())
}

/// Judge a run and undo it: the child's and the parent's entries, the
/// child's touch where it missed, then B's page, the slot's table in
/// every directory, the child.
fn judge_and_clean(parent: &Arc<MmStruct>, touch: bool) -> ForkRun {
    let s = S.load(Ordering::SeqCst);
    let want = slot_entry(swapper_pg_dir());
    let table = fork2400::take_pte_page();
    let child = PhysAddr::new(CHILD.swap(0, Ordering::SeqCst));
    let mut run = ForkRun {
        parent_missed: slot_entry(parent.pgd) != want,
        set_pgdir_ran: fork2400::take_set_pgdir_runs() > 0,
        ..Default::default()
    };
    fork2400::unlink_all();
    if child.as_u32() != 0 {
        run.missed = slot_entry(child) != want;
        narrate::entries_in("of the child, linked now", "the child", child);
        fork2400::release_child_pages();
        let mm = mm_of_pgd(child);
        if run.missed && touch {
            TOUCH.store(255, Ordering::SeqCst);
            let t = sched::run_here("fork_child", touch_task, va_b() as usize, Some(mm.clone()));
            sched::join(&t);
            run.touch = Some(Outcome::of_access_word(TOUCH.load(Ordering::SeqCst)));
        }
        // The child's directory may hold the slot's entry now (a lazy
        // fault copied it): it points at B's table, which it does not own.
        pmd_clear(pmd_offset(
            pgd_offset(child, VirtAddr::new(s)),
            VirtAddr::new(s),
        ))
        .ignore();
        drop(mm);
    }
    if let Some((_, flush)) = vmalloc::unmap_kernel_page_at(va_b()) {
        flush.flush();
    }
    let pmd = pmd_offset(
        pgd_offset(swapper_pg_dir(), VirtAddr::new(s)),
        VirtAddr::new(s),
    );
    if pmd_present(pmd.read()) {
        vmalloc::clear_kernel_pmd_everywhere(s).1.flush_all_cpus();
    }
    // B's page table, installed (its entries cleared above) or unused.
    if table != 0 {
        free_frame(table);
    }
    run
}

/// A fresh slot of the vmalloc area for B, and the parent: `None` if
/// either cannot be had.
fn setup() -> Option<(u32, Arc<MmStruct>)> {
    let range = vmalloc::reserve_range_high(2 * SLOT as usize)?;
    let s = (range + SLOT - 1) & !(SLOT - 1);
    S.store(s, Ordering::SeqCst);
    vmalloc::drop_empty_kernel_tables(s, SLOT);
    match mm_alloc() {
        Some(parent) => Some((range, parent)),
        None => {
            vmalloc::release_range(range);
            None
        }
    }
}

/// Before each run: the parent on the task list, B's frame.
fn prepare(parent: &Arc<MmStruct>) -> u32 {
    fork2400::link_parent(parent.pgd);
    let fb = alloc_frame().expect("frame");
    FRAME_B.store(fb, Ordering::SeqCst);
    assert!(fork2400::reserve_pte_page(), "no frame for B's page table");
    fb
}

/// Two CPUs: B's vmalloc at every boundary (`sel`) of A's fork.
pub fn explore_fork(sel: impl Into<Boundaries>) -> Option<ForkReport> {
    if smp::online().count() < 2 {
        return None;
    }
    let sel = sel.into();
    let (range, parent) = setup()?;
    fork2400::sleep_at(None);
    let Some(session) = Session::begin(Parties {
        a: fork_a,
        b: vmalloc_b,
        mm_a: Some(parent.clone()),
        mm_b: None,
        cpus: Cpus::Two,
    }) else {
        vmalloc::release_range(range);
        return None;
    };
    let run = |target: Option<Jump>, record: bool, touch: bool| -> (ForkRun, bool, bool, bool) {
        let fb = prepare(&parent);
        narrate::entries("before the run");
        let r = session.run(target, record);
        narrate::entries("after the run");
        let judged = judge_and_clean(&parent, touch);
        free_frame(fb);
        (judged, r.waited, r.hang, !r.entered)
    };
    // As point 3: the first run of a session is not like the others.
    run(None, false, false);
    run(None, true, false);
    let rec = session.take_recording();
    let mut rep = ForkReport {
        stepped: rec.eips.len(),
        marks: rec.unrun_marks(Cpus::Two),
        ..Default::default()
    };
    for (k, target) in rec.targets(Cpus::Two, sel, Reach::Anchors) {
        if let Some(h) = narrate::requested() {
            narrate::begin(&narrate::Setup {
                handle: h,
                k,
                n: rec.eips.len(),
                eip: rec.eips[k],
                who: Who::OtherCpu,
                party_pc: vmalloc_b as *const () as u32,
                end_pc: stepper::path_over as *const () as u32,
                end_sp: 0,
                addrs: &[va_b()],
                dirs: &[("init_mm", swapper_pg_dir()), ("the parent", parent.pgd)],
            });
        }
        let placed = rep.checks.placed(|| run(Some(target), false, true));
        narrate::end();
        let Some((judged, waited, hang, not_entered)) = placed else {
            continue;
        };
        rep.add(k, judged);
        rep.waited += usize::from(waited);
        rep.checks.not_entered += usize::from(not_entered);
        rep.marks[k] = if judged.failed() {
            Mark::Failed
        } else {
            Mark::Clean
        };
        if hang {
            rep.hangs += 1;
            rep.marks[k] = Mark::Hang;
            break;
        }
    }
    rep.eips = rec.into_eips();
    session.end();
    vmalloc::release_range(range);
    Some(rep)
}

/// One CPU: B runs where A sleeps, at each sleep point (`only`: that one).
pub fn explore_fork_sleeps(only: Option<usize>) -> Option<ForkReport> {
    let (range, parent) = setup()?;
    let mut rep = ForkReport {
        stepped: SleepPoint::ALL.len(),
        marks: alloc::vec![Mark::Skipped; SleepPoint::ALL.len()],
        ..Default::default()
    };
    for (k, &at) in SleepPoint::ALL.iter().enumerate() {
        if only.is_some_and(|o| o != k) {
            continue;
        }
        let fb = prepare(&parent);
        fork2400::sleep_at(Some(at));
        if narrate::on() {
            narrate::party_starts(&alloc::format!(
                "A forks and sleeps in {}; B, the next task on this CPU, runs its vmalloc",
                at.name()
            ));
        }
        // Ready before A forks, on A's CPU: it runs when A sleeps.
        let b = sched::run_here("vmalloc_b", vmalloc_b_task, 0, None);
        let child = fork2400::do_fork_mm();
        sched::join(&b);
        fork2400::sleep_at(None);
        CHILD.store(child.map_or(0, |p| p.as_u32()), Ordering::SeqCst);
        let judged = judge_and_clean(&parent, true);
        free_frame(fb);
        rep.marks[k] = if judged.failed() {
            Mark::Failed
        } else {
            Mark::Clean
        };
        rep.add(k, judged);
    }
    vmalloc::release_range(range);
    Some(rep)
}
