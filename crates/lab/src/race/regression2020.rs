//! Linux's 2020 x86-32 regression, on one CPU (issue 14) and on two.  5.8 maps a
//! vmalloc range into init_mm first and copies a new PMD into the other
//! directories only afterwards (`arch_sync_kernel_mappings`), and no lock
//! covers both.  4819e15f740e ("x86/mm/32: Bring back vmalloc faulting on
//! x86_32", Sep 2020): "that assumption was incredibly naive".
//!
//! Thread A maps a page into a fresh 4 MiB slot S.  From the write of
//! S's entry in init_mm (a DR1 watchpoint) to A's return, thread B, in an
//! address space made before S existed, gets in at boundary k
//! (`stepper`): it maps a page into S (finding its PMD present, so it
//! syncs nothing) and touches it.  On one CPU B gets in by preempting A
//! (`preempt=full`), so only boundaries with IF=1 are run; on two CPUs
//! (issue 16's scenario 4) B runs on CPU 1 while A waits at k, at every
//! boundary, those inside `pgd_lock` too.

extern crate alloc;

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};

use vmfault::mm::addr::PAGE_SIZE;
use vmfault::mm::fault::{self, faults_of_pgd};
use vmfault::mm::frame::{alloc_frame, free_frame};
use vmfault::mm::init::swapper_pg_dir;
use vmfault::mm::mm_struct::{mm_alloc, MmStruct};
use vmfault::mm::pgtable::{pgd_offset, pmd_offset};
use vmfault::mm::vmalloc;

use super::engine::{Boundaries, Checks, Jump, Reach};
use super::explorer::Outcome;
use super::narrate::{self, Who};
use super::outcome::Mark;
pub use super::stepper::Cpus;
use super::stepper::{self, Parties, Session};
use vmfault::mm::addr::PhysAddr;
use vmfault::mm::addr::VirtAddr;

const SLOT: u32 = 4 << 20;
const MARK: u32 = 0x2020_0904;

static S: AtomicU32 = AtomicU32::new(0);
/// This run's frames for A and B, and what B read back.
static FRAME_A: AtomicU32 = AtomicU32::new(0);
static FRAME_B: AtomicU32 = AtomicU32::new(0);
static B_SAW: AtomicU32 = AtomicU32::new(0);

/// A: map one page at S; the path starts at S's entry in init_mm.
fn map_a() {
    let s = S.load(Ordering::SeqCst);
    let pmd = pmd_offset(
        pgd_offset(swapper_pg_dir(), VirtAddr::new(s)),
        VirtAddr::new(s),
    );
    stepper::arm_write(pmd.addr() as u32);
    let r = vmalloc::map_pages_at(s, &[FRAME_A.load(Ordering::SeqCst) as u64]);
    stepper::path_over();
    assert!(r.is_ok(), "A could not map its page: {:?}", r);
}

/// B: map another page of S, and touch it from B's older mm.
fn map_and_touch_b() {
    let va = S.load(Ordering::SeqCst) + 2 * PAGE_SIZE as u32;
    if narrate::on() {
        narrate::party_starts(&alloc::format!(
            "B maps a page at {:#010x} (the same slot) and touches it from its older mm",
            va
        ));
    }
    let r = vmalloc::map_pages_at(va, &[FRAME_B.load(Ordering::SeqCst) as u64]);
    assert!(r.is_ok(), "B could not map its page: {:?}", r);
    narrate::entries("after B's map, before B's touch");
    // SAFETY: mapped just above in init_mm; from this mm it faults (or
    // oopses) if the slot is missing, which is the experiment.
    unsafe { core::ptr::write_volatile(va as *mut u32, MARK) };
    // SAFETY: as above.
    B_SAW.store(
        unsafe { core::ptr::read_volatile(va as *const u32) },
        Ordering::SeqCst,
    );
    narrate::party_done("B's touch is done");
}

/// One boundary's outcome.
#[derive(Clone, Debug)]
pub struct Run {
    pub k: usize,
    pub eip: u32,
    pub outcome: Outcome,
    /// Lazy vmalloc faults B's directory took.
    pub faults: u32,
    /// A really was preempted there (B ran before A's map returned).
    pub preempted: bool,
    /// What the recovery point caught, for an `OtherOops`.
    pub caught: Option<vmfault::fixed_buf::FixedBuf<240>>,
    /// Two CPUs: B spun on a lock A held, so ran after A dropped it.
    pub waited: bool,
    /// Two CPUs: TSC cycles from A's release of B to B's start.
    pub handoff_cycles: Option<u64>,
}

/// The 2020 window, explored.
#[derive(Clone, Debug, Default)]
pub struct Report2020 {
    /// Boundaries from the init_mm write of S's entry to A's return.
    pub stepped: usize,
    /// Of those, where A could be preempted (IF=1, no spinlock held).
    pub preemptible: usize,
    /// Two CPUs: runs where B waited for a lock A held at k.
    pub waited: usize,
    /// Each boundary's mark, for the strip picture.
    pub marks: Vec<Mark>,
    /// Each boundary's instruction.
    pub eips: Vec<u32>,
    /// TSC cycles the runs took; two CPUs: hand-offs measured and their
    /// cycles from A's release to B's first instruction after it.
    pub run_cycles: u64,
    pub handoffs: u64,
    pub handoff_cycles: u64,
    pub runs: usize,
    pub failures: usize,
    /// B's touch after A's map returned (no preemption).
    pub baseline: Option<Outcome>,
    pub baseline_faults: u32,
    /// Runs where B took a lazy fault, and how many in all.
    pub runs_with_faults: usize,
    pub faults: u32,
    /// The first few failing runs and the last (a two-CPU window holds
    /// thousands: the strip has every boundary).
    pub failing: Vec<Run>,
    pub last_failing: Option<Run>,
    /// Failing runs where B did not run inside A's map (one CPU: A was
    /// not preempted there).
    pub failing_not_preempted: usize,
    /// Void runs run again, boundaries left unmeasured, runs where B did
    /// not get in inside A's path.
    pub checks: Checks,
    /// Failing runs at boundaries where A could not be preempted
    /// (interrupts off, or a spinlock held): only another CPU reaches
    /// those.
    pub failing_masked: usize,
    /// Every kind of failure seen, once each.
    pub failure_kinds: Vec<Outcome>,
    /// First and last failing boundary.
    pub window: Option<(usize, usize)>,
    /// The dry run hit the step limit: the report is partial.
    pub overflow: bool,
    /// Slots `arch_sync_kernel_mappings` walks from S (5.8: to VMALLOC_END).
    pub slots_to_end: u32,
    /// The last run (a replay's one run).
    pub last_run: Option<Run>,
}

const FIRST_FAILING: usize = 4;

impl Report2020 {
    /// Mean hand-off time, A's release to B's start, in host nanoseconds.
    pub fn handoff_ns(&self) -> u64 {
        super::handoff::mean_ns(self.handoffs, self.handoff_cycles)
    }

    fn note_failing(&mut self, run: Run) {
        self.failing_not_preempted += usize::from(!run.preempted);
        if !self.failure_kinds.contains(&run.outcome) {
            self.failure_kinds.push(run.outcome);
        }
        if self.failing.len() < FIRST_FAILING {
            self.failing.push(run);
        } else {
            self.last_failing = Some(run);
        }
    }
}

struct Fixture {
    a: Arc<MmStruct>,
    b: Arc<MmStruct>,
    session: Session,
}

/// Run once: A maps, B gets in at `target`, maps and touches.
fn run_once(f: &Fixture, target: Option<Jump>, record: bool) -> Run {
    let s = S.load(Ordering::SeqCst);
    // Fresh again: no page table for S anywhere.
    vmalloc::drop_empty_kernel_tables(s, SLOT);
    let (fa, fb) = (alloc_frame().expect("frame"), alloc_frame().expect("frame"));
    FRAME_A.store(fa, Ordering::SeqCst);
    FRAME_B.store(fb, Ordering::SeqCst);
    B_SAW.store(0, Ordering::SeqCst);
    let faults0 = faults_of_pgd((f.b.pgd).as_u32());
    let bad0 = fault::bad_areas();
    narrate::entries("before the run");
    let r = f.session.run(target, record);
    narrate::entries("after the run");
    let caught = r.caught.as_ref().err().map(|c| c.msg);
    let outcome = match r.caught {
        Err(c) if super::fault_loop::caught(&c) => Outcome::FaultLoop,
        Err(_) if fault::bad_areas() != bad0 => Outcome::Oops(fault::last_bad_area()),
        Err(c) => Outcome::OtherOops(c.vector),
        Ok(()) if r.hang => Outcome::Hang,
        Ok(()) if r.b.failed() => r.b,
        Ok(()) if B_SAW.load(Ordering::SeqCst) != MARK => Outcome::Corrupt,
        Ok(()) => Outcome::Clean,
    };
    for va in [s, s + 2 * PAGE_SIZE as u32] {
        if let Some((_, flush)) = vmalloc::unmap_kernel_page_at(va) {
            flush.flush();
        }
    }
    free_frame(fa);
    free_frame(fb);
    Run {
        k: 0,
        eip: 0,
        outcome,
        faults: faults_of_pgd((f.b.pgd).as_u32()) - faults0,
        preempted: r.entered,
        caught,
        waited: r.waited,
        handoff_cycles: r.handoff_cycles,
    }
}

/// Explore every boundary of the window B can get in at (one CPU: those
/// with IF=1), or every `stride`-th.  One CPU runs under preempt=full
/// whatever the boot chose.
pub fn explore_2020(cpus: Cpus, sel: impl Into<Boundaries>) -> Option<Report2020> {
    explore_2020_with(cpus, sel, Reach::Anchors)
}

/// `explore_2020`, each run reaching its boundary the way `reach` says.
pub fn explore_2020_with(
    cpus: Cpus,
    sel: impl Into<Boundaries>,
    reach: Reach,
) -> Option<Report2020> {
    let sel = sel.into();
    let (a, b) = (mm_alloc()?, mm_alloc()?);
    let range = vmalloc::reserve_range_high(2 * SLOT as usize)?;
    let s = (range + SLOT - 1) & !(SLOT - 1);
    S.store(s, Ordering::SeqCst);
    let Some(session) = Session::begin(Parties {
        a: map_a,
        b: map_and_touch_b,
        mm_a: Some(a.clone()),
        mm_b: Some(b.clone()),
        cpus,
    }) else {
        vmalloc::release_range(range);
        return None;
    };
    let f = Fixture { a, b, session };
    let mut rep = Report2020 {
        slots_to_end: (vmalloc::VMALLOC_END - s) / SLOT,
        ..Default::default()
    };
    // A first run before the dry run, as in point 3: the dry run must be
    // like every run after it.
    run_once(&f, None, false);
    let base = run_once(&f, None, true);
    rep.baseline = Some(base.outcome);
    rep.baseline_faults = base.faults;
    let rec = f.session.take_recording();
    rep.overflow = rec.overflow;
    rep.stepped = rec.eips.len();
    rep.preemptible = (0..rec.eips.len()).filter(|&k| rec.preemptible(k)).count();
    rep.marks = rec.unrun_marks(cpus);
    let t0 = vmfault::arch::x86::cpu::rdtsc();
    for (k, target) in rec.targets(cpus, sel, reach) {
        if let Some(h) = narrate::requested() {
            narrate::begin(&narrate::Setup {
                handle: h,
                k,
                n: rec.eips.len(),
                eip: rec.eips[k],
                who: match cpus {
                    Cpus::One => Who::Preemption,
                    Cpus::Two => Who::OtherCpu,
                },
                party_pc: map_and_touch_b as *const () as u32,
                end_pc: stepper::path_over as *const () as u32,
                end_sp: 0,
                addrs: &[s, s + 2 * PAGE_SIZE as u32],
                dirs: &[
                    ("A's mm", PhysAddr::new((f.a.pgd).as_u32())),
                    ("B's mm", PhysAddr::new((f.b.pgd).as_u32())),
                    ("init_mm", PhysAddr::new((swapper_pg_dir()).as_u32())),
                ],
            });
        }
        let placed = rep.checks.placed(|| run_once(&f, Some(target), false));
        narrate::end();
        let Some(mut run) = placed else {
            continue;
        };
        run.k = k;
        run.eip = rec.eips[k];
        rep.last_run = Some(run.clone());
        rep.marks[k] = Mark::of(run.outcome, Outcome::Clean);
        if let Some(c) = run.handoff_cycles {
            rep.handoffs += 1;
            rep.handoff_cycles += c;
        }
        rep.runs += 1;
        rep.checks.not_entered += usize::from(!run.preempted);
        rep.waited += usize::from(run.waited);
        rep.faults += run.faults;
        if run.faults > 0 {
            rep.runs_with_faults += 1;
        }
        if run.outcome == Outcome::Hang {
            // B is still in its part, or stuck there: it would land in a
            // later run.  Stop; the runs count says how far it got.
            rep.failures += 1;
            rep.note_failing(run);
            break;
        }
        if run.outcome.failed() {
            rep.failures += 1;
            rep.window = Some(rep.window.map_or((k, k), |(lo, _)| (lo, k)));
            rep.failing_masked += usize::from(!rec.preemptible(k));
            rep.note_failing(run);
        }
    }
    rep.run_cycles = vmfault::arch::x86::cpu::rdtsc() - t0;
    rep.eips = rec.into_eips();
    f.session.end();
    vmalloc::drop_empty_kernel_tables(s, SLOT);
    vmalloc::release_range(range);
    Some(rep)
}
