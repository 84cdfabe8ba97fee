//! Linux's 2020 x86-32 regression, on one CPU (issue 14) and on two.  5.8 maps a
//! vmalloc range into init_mm first and copies a new PMD into the other
//! directories only afterwards (`arch_sync_kernel_mappings`), and no lock
//! covers both.  4819e15f740e ("x86/mm/32: Bring back vmalloc faulting on
//! x86_32", Sep 2020): "that assumption was incredibly naive".
//!
//! Thread A maps a page into a fresh 4 MiB slot S.  From the write of
//! S's entry in init_mm (a DR1 watchpoint) to A's return, A is preempted
//! at boundary k (`preempt=full`: a self-IPI whose interrupt exit
//! switches), and thread B, in an address space made before S existed,
//! maps a page into S (finding its PMD present, so it syncs nothing) and
//! touches it.  A dry run records every boundary; run k stops A there
//! with DR0 on that boundary's instruction, counting its earlier hits, so
//! a run costs a few #DBs, not k.  Interrupts off (a held spinlock in
//! 5.8) means no preemption: such boundaries are counted, not run.
//!
//! On two CPUs (`Cpus::Two`, issue 16's scenario 4) A runs on CPU 0 and B
//! on CPU 1, in its own mm.  At boundary k A's #DB handler releases B and
//! waits, between two instructions of A's path, until B's map and touch
//! are over.  Another CPU does not wait for A's IF: every boundary is
//! run, those inside `pgd_lock` too.  If B spins on a lock A holds
//! (2.4's vmlist_lock), A goes on and B's access completes after A drops
//! it, as it would on real hardware; the run counts as "B waited".

extern crate alloc;

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use crate::arch::x86::entry::TrapFrame;
use crate::arch::x86::irq::{self, IrqFlags};
use crate::arch::x86::{apic, cpu, dispatch, smp, spinlock, tsc};
use crate::cmdline::PreemptModel;
use crate::mm::addr::PAGE_SIZE;
use crate::mm::fault::{self, faults_of_pgd};
use crate::mm::frame::{alloc_frame, free_frame};
use crate::mm::init::swapper_pg_dir;
use crate::mm::mm_struct::{mm_alloc, MmStruct};
use crate::mm::pgtable::{pgd_offset, pmd_offset};
use crate::mm::vmalloc;
use crate::racy_cell::RacyCell;
use crate::sched;

use super::explorer::Outcome;
use super::report::Mark;

/// The self-IPI that preempts A.
pub const PREEMPT_VECTOR: u8 = 0xF3;
const MAX_STEPS: usize = 200_000;
const SLOT: u32 = 4 << 20;
const MARK: u32 = 0x2020_0904;

struct State {
    /// Dry run: TF stepping from the watchpoint to A's return.
    recording: bool,
    stepping: bool,
    k: usize,
    /// Run k: DR0 on `eip[k]`, hit number `occurrence[k]` is boundary k.
    target: Option<(u32, u32)>,
    hits: u32,
    /// A's thread function: back there, the map call has returned.
    end: (u32, u32),
    eip: Vec<u32>,
    irq_on: Vec<bool>,
    overflow: bool,
}

static ST: RacyCell<State> = RacyCell::new(State {
    recording: false,
    stepping: false,
    k: 0,
    target: None,
    hits: 0,
    end: (0, 0),
    eip: Vec::new(),
    irq_on: Vec::new(),
    overflow: false,
});

static S: AtomicU32 = AtomicU32::new(0);
static GO_B: AtomicBool = AtomicBool::new(false);
static PREEMPTED: AtomicBool = AtomicBool::new(false);
static B_SAW: AtomicU32 = AtomicU32::new(0);
/// Two CPUs: B ran on CPU 1; its outcome (0 clean, else 1 + `BadArea`,
/// 255 another exception), whether it is over, and whether A had to go
/// on because B spun on a lock A held, or because B never finished.
static TWO_CPUS: AtomicBool = AtomicBool::new(false);
static B_OUT: AtomicU32 = AtomicU32::new(0);
static B_DONE: AtomicBool = AtomicBool::new(false);
static B_WAITED: AtomicBool = AtomicBool::new(false);
static B_HANG: AtomicBool = AtomicBool::new(false);
/// TSC at A's release of B and at B's start (the hand-off time).
static RELEASED_AT: AtomicU64 = AtomicU64::new(0);
static STARTED_AT: AtomicU64 = AtomicU64::new(0);
/// How long A waits for B before calling it a hang.
const B_TIMEOUT_US: u64 = 1_000_000;

/// Where B runs and how boundary k lets it in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cpus {
    /// B runs when A is preempted at k (`preempt=full`).
    One,
    /// B runs on CPU 1 while A waits at k.
    Two,
}

fn st() -> &'static mut State {
    // SAFETY: one CPU; the #DB handler and the driver never run at once
    // (the driver only reads it after the threads are joined).
    unsafe { &mut *ST.get() }
}

fn preempt_irq(_: &mut TrapFrame) {
    // Nothing: the interrupt exit does the switch under preempt=full.
}

fn debug_trap(frame: &mut TrapFrame) {
    let dr6 = cpu::take_dr6();
    super::fault_loop::on_debug(frame, dr6);
    let s = st();
    if dr6 & cpu::DR6_B0 != 0 {
        frame.eflags |= cpu::EFLAGS_RF;
    }
    if dr6 & cpu::DR6_B1 != 0 {
        // A just wrote S's pmd in init_mm: boundary 0 is the next one.
        cpu::clear_write_watchpoint();
        s.k = 0;
        match s.target {
            Some((eip, _)) => {
                s.hits = 0;
                cpu::set_exec_breakpoint(eip);
            }
            None => s.stepping = s.recording,
        }
    }
    if let Some((_, occurrence)) = s.target {
        if dr6 & cpu::DR6_B0 != 0 {
            if s.hits == occurrence {
                cpu::clear_exec_breakpoint();
                s.target = None;
                if TWO_CPUS.load(Ordering::SeqCst) {
                    hand_off();
                } else {
                    preempt_here();
                }
            }
            s.hits += 1;
        }
        frame.eflags &= !cpu::EFLAGS_TF;
        return;
    }
    if !s.stepping {
        frame.eflags &= !cpu::EFLAGS_TF;
        return;
    }
    if (frame.eip >= s.end.0 && frame.eip < s.end.1) || s.k >= MAX_STEPS {
        s.overflow = s.k >= MAX_STEPS;
        s.stepping = false;
        frame.eflags &= !cpu::EFLAGS_TF;
        return;
    }
    s.eip.push(frame.eip);
    s.irq_on.push(frame.eflags & cpu::EFLAGS_IF != 0);
    s.k += 1;
    frame.eflags |= cpu::EFLAGS_TF;
}

/// What the timer does under preempt=full, at exactly this boundary.
fn preempt_here() {
    GO_B.store(true, Ordering::SeqCst);
    PREEMPTED.store(true, Ordering::SeqCst);
    sched::set_need_resched();
    apic::self_ipi(PREEMPT_VECTOR);
}

/// Two CPUs: let B run its whole map and touch on CPU 1 now, with A
/// stopped right here.  Interrupts are off (a #DB handler): a TLB
/// shootdown from CPU 1 is answered by polling.
fn hand_off() {
    PREEMPTED.store(true, Ordering::SeqCst);
    let t0 = cpu::rdtsc();
    RELEASED_AT.store(t0, Ordering::SeqCst);
    GO_B.store(true, Ordering::SeqCst);
    while !B_DONE.load(Ordering::SeqCst) {
        if spinlock::waits_for(1, 0) {
            B_WAITED.store(true, Ordering::SeqCst);
            return;
        }
        if tsc::us_since(t0) > B_TIMEOUT_US {
            B_HANG.store(true, Ordering::SeqCst);
            return;
        }
        smp::poll_call_function();
        core::hint::spin_loop();
    }
}

fn thread_a(frame: usize) {
    let s = S.load(Ordering::SeqCst);
    let pmd = pmd_offset(pgd_offset(swapper_pg_dir(), s), s);
    cpu::set_write_watchpoint(pmd.addr() as u32);
    let r = vmalloc::map_pages_at(s, &[frame as u64]);
    cpu::clear_write_watchpoint();
    cpu::clear_exec_breakpoint();
    st().stepping = false;
    assert!(r.is_ok(), "A could not map its page: {:?}", r);
    // Not preempted in the window: B runs now, after A's sync.
    if !PREEMPTED.load(Ordering::SeqCst) {
        GO_B.store(true, Ordering::SeqCst);
    }
}

fn thread_b(frame: usize) {
    while !GO_B.load(Ordering::SeqCst) {
        sched::yield_now();
    }
    map_and_touch(frame);
}

/// Two CPUs: A and B live for a whole exploration, one run per `RUN`
/// generation (a thread per run would cost more than the run itself).
static RUN: AtomicU32 = AtomicU32::new(0);
static A_DONE: AtomicBool = AtomicBool::new(false);
static QUIT: AtomicBool = AtomicBool::new(false);
static FRAME_A: AtomicU32 = AtomicU32::new(0);
static FRAME_B: AtomicU32 = AtomicU32::new(0);

/// A on CPU 0, in mm a: each run maps its page, as `thread_a`.
fn thread_a_runs(_: usize) {
    let mut seen = 0;
    loop {
        loop {
            let g = RUN.load(Ordering::SeqCst);
            if g != seen {
                seen = g;
                break;
            }
            if QUIT.load(Ordering::SeqCst) {
                return;
            }
            sched::yield_now();
        }
        thread_a(FRAME_A.load(Ordering::SeqCst) as usize);
        A_DONE.store(true, Ordering::SeqCst);
    }
}

/// B on CPU 1, in mm b: released by A's hand-off (or A's return), it maps
/// and touches under a recovery point of its own CPU.
fn thread_b_runs(_: usize) {
    loop {
        while !GO_B.swap(false, Ordering::SeqCst) {
            if QUIT.load(Ordering::SeqCst) {
                return;
            }
            core::hint::spin_loop();
        }
        STARTED_AT.store(cpu::rdtsc(), Ordering::SeqCst);
        let bad0 = fault::bad_areas();
        let r = crate::fixup::catch(true, || {
            map_and_touch(FRAME_B.load(Ordering::SeqCst) as usize)
        });
        let out = match r {
            Ok(()) => 0,
            Err(c) if c.vector == 14 && fault::bad_areas() != bad0 => {
                1 + fault::last_bad_area() as u32
            }
            Err(_) => 255,
        };
        B_OUT.store(out, Ordering::SeqCst);
        B_DONE.store(true, Ordering::SeqCst);
    }
}

fn map_and_touch(frame: usize) {
    let va = S.load(Ordering::SeqCst) + 2 * PAGE_SIZE as u32;
    let r = vmalloc::map_pages_at(va, &[frame as u64]);
    assert!(r.is_ok(), "B could not map its page: {:?}", r);
    // SAFETY: mapped just above in init_mm; from this mm it faults (or
    // oopses) if the slot is missing, which is the experiment.
    unsafe { core::ptr::write_volatile(va as *mut u32, MARK) };
    // SAFETY: as above.
    B_SAW.store(
        unsafe { core::ptr::read_volatile(va as *const u32) },
        Ordering::SeqCst,
    );
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
    pub caught: Option<crate::fixed_buf::FixedBuf<240>>,
    /// Two CPUs: B spun on a lock A held, so ran after A dropped it.
    pub waited: bool,
}

/// The 2020 window, explored.
#[derive(Clone, Debug, Default)]
pub struct Report2020 {
    /// Boundaries from the init_mm write of S's entry to A's return.
    pub stepped: usize,
    /// Of those, where A could be preempted (IF=1).
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
    /// Failing runs at boundaries where A had interrupts off: only
    /// another CPU reaches those.
    pub failing_masked: usize,
    /// Every kind of failure seen, once each.
    pub failure_kinds: Vec<Outcome>,
    /// First and last failing boundary.
    pub window: Option<(usize, usize)>,
    /// The dry run hit the step limit: the report is partial.
    pub overflow: bool,
    /// Slots `arch_sync_kernel_mappings` walks from S (5.8: to VMALLOC_END).
    pub slots_to_end: u32,
}

const FIRST_FAILING: usize = 4;

impl Report2020 {
    /// Mean hand-off time, A's release to B's start, in host nanoseconds.
    pub fn handoff_ns(&self) -> u64 {
        let per_ms = tsc::cycles_per_ms().max(1);
        match self.handoffs {
            0 => 0,
            n => self.handoff_cycles * 1_000_000 / per_ms / n,
        }
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

/// One CPU: a thread each for A and B per run, B's oops caught here.
#[allow(clippy::result_large_err)] // fixup::catch's result, passed on
fn one_cpu(f: &Fixture, fa: u32, fb: u32) -> Result<(), crate::fixup::Caught> {
    let ta = sched::run_here("2020-a", thread_a, fa as usize, Some(f.a.clone()));
    let tb = sched::run_here("2020-b", thread_b, fb as usize, Some(f.b.clone()));
    super::fault_loop::arm();
    let r = crate::fixup::catch(true, || {
        sched::join(&ta);
        sched::join(&tb);
    });
    super::fault_loop::disarm();
    sched::drop_lazy_mm();
    // B's oops lands in this recovery point while A, preempted, is still
    // runnable: let both finish before the next run reuses the slot.
    GO_B.store(true, Ordering::SeqCst);
    sched::join(&ta);
    sched::join(&tb);
    r
}

/// Two CPUs: start a run of the standing A and B and wait for both.
fn two_cpus(fa: u32, fb: u32) {
    FRAME_A.store(fa, Ordering::SeqCst);
    FRAME_B.store(fb, Ordering::SeqCst);
    A_DONE.store(false, Ordering::SeqCst);
    RUN.fetch_add(1, Ordering::SeqCst);
    while !A_DONE.load(Ordering::SeqCst) {
        sched::yield_now();
    }
    // B may still be on its way (it waited for a lock A held).
    let t0 = cpu::rdtsc();
    while !B_DONE.load(Ordering::SeqCst) && !B_HANG.load(Ordering::SeqCst) {
        if tsc::us_since(t0) > B_TIMEOUT_US {
            B_HANG.store(true, Ordering::SeqCst);
        }
        core::hint::spin_loop();
    }
}

struct Fixture {
    a: Arc<MmStruct>,
    b: Arc<MmStruct>,
    range: u32,
}

/// Run once: A maps, maybe preempted at `target`, B maps and touches.
fn run_once(f: &Fixture, cpus: Cpus, target: Option<(u32, u32)>, record: bool) -> Run {
    let s = S.load(Ordering::SeqCst);
    // Fresh again: no page table for S anywhere.
    vmalloc::drop_empty_kernel_tables(s, SLOT);
    let (fa, fb) = (alloc_frame().expect("frame"), alloc_frame().expect("frame"));
    let st = st();
    st.recording = record;
    st.stepping = false;
    st.target = target;
    st.k = 0;
    GO_B.store(false, Ordering::SeqCst);
    PREEMPTED.store(false, Ordering::SeqCst);
    B_SAW.store(0, Ordering::SeqCst);
    B_OUT.store(0, Ordering::SeqCst);
    B_DONE.store(false, Ordering::SeqCst);
    B_WAITED.store(false, Ordering::SeqCst);
    B_HANG.store(false, Ordering::SeqCst);
    RELEASED_AT.store(0, Ordering::SeqCst);
    TWO_CPUS.store(cpus == Cpus::Two, Ordering::SeqCst);
    let faults0 = faults_of_pgd(f.b.pgd);
    let bad0 = fault::bad_areas();
    let r = match cpus {
        Cpus::One => one_cpu(f, fa, fb),
        Cpus::Two => {
            two_cpus(fa, fb);
            Ok(())
        }
    };
    cpu::clear_exec_breakpoint();
    cpu::clear_write_watchpoint();
    st.stepping = false;
    st.target = None;
    let caught = r.as_ref().err().map(|c| c.msg);
    let outcome = match r {
        Err(c) if super::fault_loop::caught(&c) => Outcome::FaultLoop,
        Err(_) if fault::bad_areas() != bad0 => Outcome::Oops(fault::last_bad_area()),
        Err(c) => Outcome::OtherOops(c.vector),
        Ok(()) if B_HANG.load(Ordering::SeqCst) => Outcome::Hang,
        Ok(()) if cpus == Cpus::Two && B_OUT.load(Ordering::SeqCst) != 0 => {
            match B_OUT.load(Ordering::SeqCst) {
                255 => Outcome::OtherOops(14),
                n => Outcome::Oops(fault::BadArea::from_u8((n - 1) as u8)),
            }
        }
        Ok(()) if B_SAW.load(Ordering::SeqCst) != MARK => Outcome::Corrupt,
        Ok(()) => Outcome::Clean,
    };
    for va in [s, s + 2 * PAGE_SIZE as u32] {
        vmalloc::unmap_kernel_page_at(va);
    }
    free_frame(fa);
    free_frame(fb);

    let _ = f.range;
    Run {
        k: 0,
        eip: 0,
        outcome,
        faults: faults_of_pgd(f.b.pgd) - faults0,
        preempted: PREEMPTED.load(Ordering::SeqCst),
        caught,
        waited: B_WAITED.load(Ordering::SeqCst),
    }
}

/// Explore every preemptible boundary of the window (`stride` 1), or
/// every `stride`-th; on two CPUs every boundary.  One CPU runs under
/// preempt=full whatever the boot chose.
pub fn explore_2020(cpus: Cpus, stride: usize) -> Option<Report2020> {
    if !apic::present() || (cpus == Cpus::Two && !smp::cpu_online(1)) {
        return None;
    }
    let (a, b) = (mm_alloc()?, mm_alloc()?);
    let range = vmalloc::reserve_range_high(2 * SLOT as usize)?;
    let s = (range + SLOT - 1) & !(SLOT - 1);
    S.store(s, Ordering::SeqCst);
    let f = Fixture { a, b, range };
    let (fa, sz) =
        crate::symbols::lookup(thread_a as *const () as u32).map(|x| (x.addr, x.size))?;
    st().end = (fa, fa + sz);
    st().eip = Vec::with_capacity(MAX_STEPS);
    st().irq_on = Vec::with_capacity(MAX_STEPS);
    st().overflow = false;
    let booted = sched::preempt_model();
    sched::set_preempt_model(PreemptModel::Full);
    dispatch::register_handler(1, Some(debug_trap));
    irq::request_irq(PREEMPT_VECTOR, preempt_irq, IrqFlags::empty());
    crate::oops::set_silent(true);

    let mut rep = Report2020 {
        slots_to_end: (vmalloc::VMALLOC_END - s) / SLOT,
        ..Default::default()
    };
    let standing = (cpus == Cpus::Two).then(|| {
        QUIT.store(false, Ordering::SeqCst);
        (
            sched::run_here("2020-a", thread_a_runs, 0, Some(f.a.clone())),
            sched::run_on(1, "2020-b", thread_b_runs, 0, Some(f.b.clone())),
        )
    });
    let base = run_once(&f, cpus, None, true);
    rep.baseline = Some(base.outcome);
    rep.baseline_faults = base.faults;
    let eips = core::mem::take(&mut st().eip);
    let irq_on = core::mem::take(&mut st().irq_on);
    rep.overflow = st().overflow;
    rep.stepped = eips.len();
    rep.preemptible = irq_on.iter().filter(|x| **x).count();
    // How many times boundary k's instruction ran before k.
    let occurrence = super::hits::earlier_hits(&eips);
    let t0 = cpu::rdtsc();
    let mut i = 0;
    rep.marks = (0..eips.len())
        .map(|k| match irq_on[k] || cpus == Cpus::Two {
            true => Mark::Skipped,
            false => Mark::Masked,
        })
        .collect();
    for k in (0..eips.len()).filter(|&k| irq_on[k] || cpus == Cpus::Two) {
        i += 1;
        if (i - 1) % stride.max(1) != 0 {
            continue;
        }
        let mut run = run_once(&f, cpus, Some((eips[k], occurrence[k])), false);
        run.k = k;
        run.eip = eips[k];
        rep.marks[k] = Mark::of(run.outcome, Outcome::Clean);
        let (released, started) = (
            RELEASED_AT.load(Ordering::SeqCst),
            STARTED_AT.load(Ordering::SeqCst),
        );
        if released != 0 && started > released {
            rep.handoffs += 1;
            rep.handoff_cycles += started - released;
        }
        rep.runs += 1;
        rep.waited += usize::from(run.waited);
        if run.outcome == Outcome::Hang {
            // B is still in its access, or stuck there: it would land in
            // a later run.  Stop; the runs count says how far it got.
            rep.failures += 1;
            rep.note_failing(run);
            break;
        }
        rep.faults += run.faults;
        if run.faults > 0 {
            rep.runs_with_faults += 1;
        }
        if run.outcome.failed() {
            rep.failures += 1;
            rep.window = Some(rep.window.map_or((k, k), |(lo, _)| (lo, k)));
            rep.failing_masked += usize::from(!irq_on[k]);
            rep.note_failing(run);
        }
    }

    rep.run_cycles = cpu::rdtsc() - t0;
    if let Some((ta, tb)) = standing {
        QUIT.store(true, Ordering::SeqCst);
        sched::join(&ta);
        // A B that hung does not come back: leave it (its CPU is lost for
        // the rest of the boot, and the report says the run hung).
        if !B_HANG.load(Ordering::SeqCst) {
            sched::join(&tb);
        }
    }
    crate::oops::set_silent(false);
    irq::free_irq(PREEMPT_VECTOR);
    dispatch::register_handler(1, None);
    sched::set_preempt_model(booted);
    vmalloc::drop_empty_kernel_tables(s, SLOT);
    vmalloc::release_range(f.range);
    rep.eips = eips;
    Some(rep)
}
