//! The seed's point 3 (issue 16, scenario 5): "in 2.4 we don't hold the
//! big lock so sleeping or not sleeping during allocations is meaningless
//! w.r.t. serialization", so the patch drops `get_pte_kernel_slow`'s
//! re-check of the pmd.  But 2.4.2's `vmalloc_area_pages` does hold the
//! big lock, and a `GFP_KERNEL` allocation that sleeps drops it.
//!
//! CPU A runs 2.4.2's `vmalloc_area_pages` (`lab::vmalloc242`) for one
//! page of a fresh 4 MiB slot; at every boundary from its first
//! instruction to `unlock_kernel`'s return, CPU B runs the same for
//! another page of that slot (`stepper`, two CPUs).  B spins on the big
//! lock wherever A holds it; A goes on, and B gets the lock when A drops
//! it, at `unlock_kernel` or in `schedule`.  After both, the run checks
//! that init_mm maps both pages and that every page table allocated is
//! the one installed.  Measured with both `get_pte_kernel_slow`s, with
//! memory plentiful and low.

use core::sync::atomic::{AtomicU32, Ordering};

use vmfault::arch::x86::smp;
use vmfault::mm::frame::{alloc_frame, free_frame};
use vmfault::mm::init::swapper_pg_dir;
use vmfault::mm::pgtable::{pgd_offset, pmd_offset, pmd_present};
use vmfault::mm::vmalloc;

use super::engine::{Boundaries, Checks, Jump, Reach};
use super::narrate::{self, Who};
use super::outcome::Mark;
use super::stepper::{self, Cpus, Parties, Session};
use crate::vmalloc242::{self, Pressure, PteKernelSlow};

extern crate alloc;
use alloc::vec::Vec;
use vmfault::mm::addr::PhysAddr;
use vmfault::mm::addr::VirtAddr;

const SLOT: u32 = 4 << 20;

static S: AtomicU32 = AtomicU32::new(0);
static FRAME_A: AtomicU32 = AtomicU32::new(0);
static FRAME_B: AtomicU32 = AtomicU32::new(0);
/// The configuration under test: `PteKernelSlow` and `Pressure` as 0/1.
static CONFIG: AtomicU32 = AtomicU32::new(0);

fn config() -> (PteKernelSlow, Pressure) {
    let c = CONFIG.load(Ordering::SeqCst);
    (
        if c & 1 == 0 {
            PteKernelSlow::Linux242
        } else {
            PteKernelSlow::Seed
        },
        if c & 2 == 0 {
            Pressure::None
        } else {
            Pressure::Low
        },
    )
}

fn va_a() -> u32 {
    S.load(Ordering::SeqCst) + 0x1000
}

fn va_b() -> u32 {
    S.load(Ordering::SeqCst) + 0x3000
}

/// A: the locked walk is the path; its `flush_tlb_all` comes after it
/// (how long that waits for the other CPU varies from run to run).
fn vmalloc_a() {
    let (slow, pressure) = config();
    stepper::arm_exec(vmalloc242::vmalloc_area_pages_locked as *const () as u32);
    let ok = vmalloc242::vmalloc_area_pages_locked(
        va_a(),
        FRAME_A.load(Ordering::SeqCst) as u64,
        slow,
        pressure,
    );
    stepper::path_over();
    smp::flush_tlb_all();
    assert!(ok, "A: no page table");
}

fn vmalloc_b() {
    let (slow, pressure) = config();
    if narrate::on() {
        narrate::party_starts(&alloc::format!(
            "CPU B runs 2.4.2's vmalloc_area_pages for {:#010x}, in the same fresh slot",
            va_b()
        ));
    }
    let ok = vmalloc242::vmalloc_area_pages(
        va_b(),
        FRAME_B.load(Ordering::SeqCst) as u64,
        slow,
        pressure,
    );
    narrate::party_done("CPU B's vmalloc is done");
    assert!(ok, "B: no page table");
}

/// The four configurations, with the names `make experiments` uses.
pub const CONFIGS: [(PteKernelSlow, Pressure, &str); 4] = [
    (PteKernelSlow::Linux242, Pressure::None, "point3_242"),
    (PteKernelSlow::Linux242, Pressure::Low, "point3_242_low"),
    (PteKernelSlow::Seed, Pressure::None, "point3_seed"),
    (PteKernelSlow::Seed, Pressure::Low, "point3_seed_low"),
];

/// One configuration, explored.
#[derive(Clone, Debug, Default)]
pub struct Point3Report {
    pub stepped: usize,
    pub runs: usize,
    /// Runs that ended with a page unmapped or a page table lost.
    pub failures: usize,
    /// Runs where A's, or B's, page was not mapped afterwards.
    pub lost_a: usize,
    pub lost_b: usize,
    /// Page tables allocated but not installed (freed by the run).
    pub leaked_tables: usize,
    /// Runs where B spun on the big lock A held.
    pub waited: usize,
    /// Runs where B did not finish in time.
    pub hangs: usize,
    /// Void runs run again, boundaries left unmeasured, runs where B did
    /// not get in inside A's walk.
    pub checks: Checks,
    /// First and last failing boundary.
    pub window: Option<(usize, usize)>,
    pub baseline_failed: bool,
    pub eips: Vec<u32>,
    pub marks: Vec<Mark>,
    /// The last run: its boundary, whether it failed, and what it lost
    /// (A's page, B's page, page tables): a replay's one run.
    pub last_run: Option<(usize, bool, (usize, usize, usize))>,
}

/// Undo a run: unmap both pages, clear the slot's pmd (in every
/// directory on a two-level kernel; PAE's kernel PMD is shared), free the
/// installed table and any lost one.  Returns (A mapped, B mapped, lost
/// tables).
fn judge_and_clean(fa: u32, fb: u32) -> (bool, bool, usize) {
    let (a_ok, b_ok) = (
        vmalloc242::maps(va_a(), fa as u64),
        vmalloc242::maps(va_b(), fb as u64),
    );
    let s = S.load(Ordering::SeqCst);
    for va in [va_a(), va_b()] {
        if let Some((_, flush)) = vmalloc::unmap_kernel_page_at(va) {
            flush.flush();
        }
    }
    let installed = pmd_offset(
        pgd_offset(swapper_pg_dir(), VirtAddr::new(s)),
        VirtAddr::new(s),
    )
    .read();
    if pmd_present(installed) {
        vmalloc::clear_kernel_pmd_everywhere(s).1.flush_all_cpus();
    }
    let (tables, n) = vmalloc242::take_tables();
    let mut lost = 0;
    for &t in tables.iter().take(n).filter(|&&t| t != 0) {
        if t as u64 != installed.phys() || !pmd_present(installed) {
            lost += 1;
        }
        free_frame(t);
    }
    (a_ok, b_ok, lost)
}

/// Explore every boundary (`stride` 1) of A's locked walk under one
/// `get_pte_kernel_slow` and one state of memory.  Two CPUs only.
pub fn explore_point3(
    slow: PteKernelSlow,
    pressure: Pressure,
    sel: impl Into<Boundaries>,
) -> Option<Point3Report> {
    let sel = sel.into();
    let range = vmalloc::reserve_range_high(2 * SLOT as usize)?;
    let s = (range + SLOT - 1) & !(SLOT - 1);
    S.store(s, Ordering::SeqCst);
    CONFIG.store(
        u32::from(slow == PteKernelSlow::Seed) | (u32::from(pressure == Pressure::Low) << 1),
        Ordering::SeqCst,
    );
    // Fresh: no page table for the slot (an earlier experiment's, kept).
    vmalloc::drop_empty_kernel_tables(s, SLOT);
    let Some(session) = Session::begin(Parties {
        a: vmalloc_a,
        b: vmalloc_b,
        mm_a: None,
        mm_b: None,
        cpus: Cpus::Two,
    }) else {
        vmalloc::release_range(range);
        return None;
    };
    // One run: whether it failed, and what it lost; the baseline's losses
    // are not counted with the runs'.
    let run = |target: Option<Jump>, record: bool| -> (bool, Point3Report) {
        let (fa, fb) = (alloc_frame().expect("frame"), alloc_frame().expect("frame"));
        FRAME_A.store(fa, Ordering::SeqCst);
        FRAME_B.store(fb, Ordering::SeqCst);
        narrate::entries("before the run");
        let r = session.run(target, record);
        narrate::entries("after the run");
        let (a_ok, b_ok, lost) = judge_and_clean(fa, fb);
        free_frame(fa);
        free_frame(fb);
        let tally = Point3Report {
            checks: Checks {
                not_entered: usize::from(!r.entered),
                ..Default::default()
            },
            waited: usize::from(r.waited),
            hangs: usize::from(r.hang),
            lost_a: usize::from(!a_ok),
            lost_b: usize::from(!b_ok),
            leaked_tables: lost,
            ..Default::default()
        };
        let failed = r.hang || r.b.failed() || r.caught.is_err() || !a_ok || !b_ok || lost > 0;
        (failed, tally)
    };
    // One run before the dry run: the first run of a session is not like
    // the others (the run queue grows its ring buffer once, a task of
    // the last session is reaped), and the dry run must be like every
    // run after it, or a run's boundary k is not the dry run's k.
    run(None, false);
    let mut rep = Point3Report {
        baseline_failed: run(None, true).0,
        ..Default::default()
    };
    let rec = session.take_recording();
    rep.stepped = rec.eips.len();
    rep.marks = rec.unrun_marks(Cpus::Two);
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
                addrs: &[va_a(), va_b()],
                dirs: &[("init_mm", PhysAddr::new((swapper_pg_dir()).as_u32()))],
            });
        }
        let placed = rep.checks.placed(|| run(Some(target), false));
        narrate::end();
        let Some((failed, t)) = placed else {
            continue;
        };
        rep.last_run = Some((k, failed, (t.lost_a, t.lost_b, t.leaked_tables)));
        rep.runs += 1;
        rep.checks.not_entered += t.checks.not_entered;
        rep.waited += t.waited;
        rep.hangs += t.hangs;
        rep.lost_a += t.lost_a;
        rep.lost_b += t.lost_b;
        rep.leaked_tables += t.leaked_tables;
        rep.marks[k] = if failed { Mark::Failed } else { Mark::Clean };
        if failed {
            rep.failures += 1;
            rep.window = Some(rep.window.map_or((k, k), |(lo, _)| (lo, k)));
        }
        if t.hangs > 0 {
            rep.marks[k] = Mark::Hang;
            break;
        }
    }
    rep.eips = rec.into_eips();
    session.end();
    vmalloc::release_range(range);
    Some(rep)
}
