//! The interleaving explorer.  A hardware breakpoint (DR0) on the #PF
//! entry stub catches the outer vmalloc fault as it starts; from there the
//! #DB handler single-steps it (EFLAGS.TF) to its `iret`.  Run k delivers
//! the nested test interrupt at boundary k: the #DB handler sends a
//! self-IPI while interrupts are masked, so it is taken right after the
//! #DB's `iret`, before the next instruction of the fault path, through
//! the real IDT path.  Boundaries where the interrupted code has IF=0
//! cannot take an interrupt and are skipped (and counted).  Every run
//! starts from the same stale state and ends clean, in an oops caught by
//! a recovery point, or in a hang: the step limit catches one before the
//! interrupt, the fault-loop detector a fault repeating after it.
//!
//! Only the baseline run single-steps the whole path: it records each
//! boundary's instruction.  Run k then reaches the last boundary at or
//! before k that lies in the fault handlers' own code with DR0 on its
//! instruction, counting its earlier hits (as the 2020 explorer does),
//! steps from there to k, and runs free once the interrupt is sent: a run
//! costs tens of #DBs, not the path's length, and the CPU state at the
//! boundary is the same (the path is deterministic; both ways stop
//! before the instruction runs).

extern crate alloc;

use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use super::outcome::Mark;
use super::scenario::Scenario;
use crate::arch::x86::entry::{stub_address, TrapFrame};
use crate::arch::x86::irq::{self, IrqFlags};
use crate::arch::x86::{apic, cpu, dispatch, idt, pit, smp};
use crate::fixup::{self, Caught};
use crate::mm::fault;
use crate::racy_cell::RacyCell;
use crate::sched;

/// Nested test interrupt (first level): a self-IPI.
pub const NESTED_VECTOR: u8 = 0xF1;
/// Second-level test interrupt: another self-IPI vector.
pub const DEEP_VECTOR: u8 = 0xF2;
const MAX_STEPS: usize = 6000;
const OUTER_MARK: u32 = 0x0A11_0001;
const NESTED_MARK: u32 = 0x0A11_0002;
const DEEP_MARK: u32 = 0x0A11_0003;

/// Where the outer vmalloc fault is taken, and what boundary k brings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// From a kernel thread running in the victim mm; a nested interrupt.
    Thread,
    /// From inside the PIT interrupt handler (the seed's "irq handler
    /// vmalloc_fault"), which runs with interrupts enabled as in 2.4.
    InIrq,
    /// From a thread on CPU 0; at boundary k CPU 1 runs a whole access to
    /// the same stale slot while CPU 0 waits (see `cpu_b`).  `same_mm`:
    /// CPU 1's thread is another thread of the victim's address space
    /// (Cox and Hemment's race, quoted in the seed); otherwise a thread of
    /// another process (Andrea's "I think that can't happen").
    OtherCpu { same_mm: bool },
}

impl Variant {
    fn other_cpu(self) -> bool {
        matches!(self, Variant::OtherCpu { .. })
    }
}

pub use super::outcome::Outcome;

struct State {
    active: bool,
    base_depth: u32,
    stepping: bool,
    /// The outer fault's #PF entry was hit: its path has begun.
    started: bool,
    k: usize,
    target: usize,
    /// Run k: DR0 on the instruction of boundary `anchor` (at or before
    /// k); its hit number `.1`, counted from boundary 1, is that boundary.
    jump: Option<(u32, u32)>,
    anchor: usize,
    hits: u32,
    deep: bool,
    deep_sent: bool,
    nested_stepping: bool,
    bad_before: u32,
    end: (u32, u32),
    recording: bool,
    eflags: [u32; MAX_STEPS],
    eip: [u32; MAX_STEPS],
    delivered_eip: u32,
    hang: bool,
    /// A two-CPU run: boundary k releases CPU B.
    other_cpu: bool,
    /// CPU B did not finish its access in time.
    b_hang: bool,
}

static ST: RacyCell<State> = RacyCell::new(State {
    active: false,
    base_depth: 0,
    stepping: false,
    started: false,
    k: 0,
    target: usize::MAX,
    jump: None,
    anchor: 0,
    hits: 0,
    deep: false,
    deep_sent: false,
    nested_stepping: false,
    bad_before: 0,
    end: (0, 0),
    recording: false,
    eflags: [0; MAX_STEPS],
    eip: [0; MAX_STEPS],
    delivered_eip: 0,
    hang: false,
    other_cpu: false,
    b_hang: false,
});

static NESTED_SAW: AtomicU32 = AtomicU32::new(0);
/// CPU B's side of a two-CPU run (`cpu_b`): go, done, quit, its outcome.
static B_GO: AtomicBool = AtomicBool::new(false);
static B_DONE: AtomicBool = AtomicBool::new(false);
static B_QUIT: AtomicBool = AtomicBool::new(false);
/// 0: clean; else 1 + the `BadArea` its oops died in (255: another oops).
static B_OUT: AtomicU32 = AtomicU32::new(0);
/// How long CPU A waits for CPU B's access before calling it a hang.
const B_TIMEOUT_US: u64 = 1_000_000;
static NESTED_DONE: AtomicBool = AtomicBool::new(false);
static DEEP_DONE: AtomicBool = AtomicBool::new(false);
static OUTER_DONE: AtomicBool = AtomicBool::new(false);
static TARGETS: RacyCell<(u32, u32, u32, u32)> = RacyCell::new((0, 0, 0, 0));

fn st() -> &'static mut State {
    // SAFETY: touched by the #DB handler and the driver, never at the same
    // time: the driver only reads it between runs (interrupts masked there
    // while it resets it) and the handler runs with interrupts off.
    unsafe { &mut *ST.get() }
}

fn targets() -> (u32, u32, u32, u32) {
    // SAFETY: written by the driver before a run, read during it.
    unsafe { *TARGETS.get() }
}

/// The one instruction that writes a target: every vmalloc fault of the
/// experiment is raised here, so its address range marks "back in the
/// toucher" for the stepper.
#[inline(never)]
fn touch(addr: u32, val: u32) {
    // SAFETY: a vmalloc'd address of the scenario.
    unsafe { core::ptr::write_volatile(addr as *mut u32, val) }
}

fn read(addr: u32) -> u32 {
    // SAFETY: as above.
    unsafe { core::ptr::read_volatile(addr as *const u32) }
}

fn nested_irq(frame: &mut TrapFrame) {
    NESTED_SAW.store(frame.eip, Ordering::SeqCst);
    let (_, y, z, _) = targets();
    let s = st();
    if s.deep {
        touch(z, NESTED_MARK);
    } else {
        touch(y, NESTED_MARK);
    }
    NESTED_DONE.store(true, Ordering::SeqCst);
}

fn deep_irq(_: &mut TrapFrame) {
    let (_, _, _, w) = targets();
    touch(w, DEEP_MARK);
    DEEP_DONE.store(true, Ordering::SeqCst);
}

fn outer_irq(_: &mut TrapFrame) {
    let (x, _, _, _) = targets();
    arm(1);
    touch(x, OUTER_MARK);
    disarm();
    OUTER_DONE.store(true, Ordering::SeqCst);
}

fn arm(base_depth: u32) {
    let s = st();
    s.base_depth = base_depth;
    s.active = true;
    cpu::set_exec_breakpoint(idt::gate_address(14));
}

fn disarm() {
    cpu::clear_exec_breakpoint();
    st().active = false;
}

fn victim_thread(variant: usize) {
    let (x, _, _, _) = targets();
    if variant == 0 {
        arm(0);
        touch(x, OUTER_MARK);
        disarm();
        OUTER_DONE.store(true, Ordering::SeqCst);
    } else {
        // Make the PIT fire once, soon; its handler takes the fault.
        pit::set_oneshot(200);
        irq::request_irq(irq::TIMER_IRQ_VECTOR, outer_irq, IrqFlags::empty());
        while !OUTER_DONE.load(Ordering::SeqCst) {
            core::hint::spin_loop();
        }
        irq::free_irq(irq::TIMER_IRQ_VECTOR);
    }
}

/// The #DB handler: breakpoint on the #PF stub, or one single step.
fn debug_trap(frame: &mut TrapFrame) {
    let dr6 = cpu::take_dr6();
    super::fault_loop::on_debug(frame, dr6);
    let s = st();
    if dr6 & cpu::DR6_B0 != 0 {
        frame.eflags |= cpu::EFLAGS_RF;
    }
    if !s.active {
        frame.eflags &= !cpu::EFLAGS_TF;
        return;
    }
    let depth = irq::depth();
    if depth > s.base_depth {
        nested_step(frame, dr6);
        return;
    }
    let hit = dr6 & cpu::DR6_B0 != 0;
    if hit && !s.started {
        s.started = true;
        s.stepping = true;
        s.bad_before = fault::bad_areas();
        if let Some((eip, _)) = s.jump {
            s.stepping = false;
            s.hits = 0;
            cpu::set_exec_breakpoint(eip);
            frame.eflags &= !cpu::EFLAGS_TF;
            return;
        }
    }
    if let Some((_, occurrence)) = s.jump {
        if hit && s.hits == occurrence {
            // The anchor: step from here to the target, DR0 back on the
            // #PF entry, as in a stepped run.
            s.jump = None;
            s.k = s.anchor;
            s.stepping = true;
            cpu::set_exec_breakpoint(idt::gate_address(14));
        } else {
            s.hits += u32::from(hit);
            frame.eflags &= !cpu::EFLAGS_TF;
            return;
        }
    }
    if !s.stepping {
        frame.eflags &= !cpu::EFLAGS_TF;
        return;
    }
    boundary(frame);
}

/// Send the nested interrupt at this boundary (masked here, it is taken
/// right after our iret), then let the run go on unstepped: only a hang
/// before the target is caught by the step limit now; DR0 stays on the
/// #PF entry, so a nested fault is still seen (depth-2 runs).  In a
/// two-CPU run, release CPU B instead and wait here, between two
/// instructions of the fault path, until its whole access is over.
fn deliver(frame: &mut TrapFrame) {
    let s = st();
    if s.other_cpu {
        s.delivered_eip = frame.eip;
        B_GO.store(true, Ordering::SeqCst);
        // Under round-robin TCG a `pause` hands the turn to CPU 1 now.
        core::hint::spin_loop();
        // A shootdown from CPU 1 (a stack freed there) must not wait for
        // this CPU, whose interrupts are off in this handler: the wait
        // answers it.
        s.b_hang = !smp::spin_until(|| B_DONE.load(Ordering::SeqCst), B_TIMEOUT_US);
    } else if frame.eflags & cpu::EFLAGS_IF != 0 {
        apic::self_ipi(NESTED_VECTOR);
        s.delivered_eip = frame.eip;
    }
    s.stepping = false;
    frame.eflags &= !cpu::EFLAGS_TF;
}

/// CPU B: a thread pinned to CPU 1, in the victim's mm or another one.
/// Released by CPU A's #DB handler at boundary k, it flushes its TLB (the
/// driver made the slot stale again since B's last access) and writes
/// the nested test mark to `y`, another page of the outer fault's slot,
/// under its own recovery point, and reports.  One thread serves every
/// run of an exploration.
fn cpu_b(_: usize) {
    loop {
        while !B_GO.load(Ordering::SeqCst) {
            if B_QUIT.load(Ordering::SeqCst) {
                return;
            }
            core::hint::spin_loop();
        }
        B_GO.store(false, Ordering::SeqCst);
        cpu::flush_tlb();
        let (_, y, _, _) = targets();
        let bad0 = fault::bad_areas();
        let r = fixup::catch(true, || touch(y, NESTED_MARK));
        B_OUT.store(Outcome::access_word(&r, bad0), Ordering::SeqCst);
        B_DONE.store(true, Ordering::SeqCst);
    }
}

/// CPU B's outcome of the last run, as an `Outcome` of its own access.
fn b_outcome() -> Outcome {
    Outcome::of_access_word(B_OUT.load(Ordering::SeqCst))
}

/// Depth-2 runs: a fault inside the nested handler.  Send the second
/// interrupt at its first boundary with IF=1, then stop stepping it.
fn nested_step(frame: &mut TrapFrame, dr6: u32) {
    let s = st();
    if !s.deep || s.deep_sent {
        frame.eflags &= !cpu::EFLAGS_TF;
        return;
    }
    if dr6 & cpu::DR6_B0 != 0 {
        s.nested_stepping = true;
    }
    if !s.nested_stepping {
        frame.eflags &= !cpu::EFLAGS_TF;
        return;
    }
    if frame.eflags & cpu::EFLAGS_IF != 0 {
        apic::self_ipi(DEEP_VECTOR);
        s.deep_sent = true;
        frame.eflags &= !cpu::EFLAGS_TF;
    } else {
        frame.eflags |= cpu::EFLAGS_TF;
    }
}

fn boundary(frame: &mut TrapFrame) {
    let s = st();
    let k = s.k;
    let back_in_toucher = frame.eip >= s.end.0 && frame.eip < s.end.1 && k > 0;
    if back_in_toucher || fault::bad_areas() != s.bad_before {
        // The fault path is over: returned, or dying in bad_area.
        s.stepping = false;
        frame.eflags &= !cpu::EFLAGS_TF;
        return;
    }
    if k >= MAX_STEPS {
        s.stepping = false;
        s.hang = true;
        frame.eflags &= !cpu::EFLAGS_TF;
        return;
    }
    if s.recording {
        s.eflags[k] = frame.eflags;
        s.eip[k] = frame.eip;
    }
    if k == s.target {
        s.k += 1;
        deliver(frame);
        return;
    }
    s.k += 1;
    frame.eflags |= cpu::EFLAGS_TF;
}

/// One explored configuration's results.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Boundaries from the #PF entry to the return (baseline run).
    pub stepped: usize,
    /// Of those, where the interrupted code had IF=1.
    pub with_if: usize,
    /// First boundary whose instruction reads CR2, if seen.
    pub cr2_read_at: Option<usize>,
    pub runs: usize,
    pub failures: usize,
    /// Failures at boundaries before the CR2 read, and runs there.
    pub failures_before_cr2: usize,
    pub tried_before_cr2: usize,
    /// Runs whose interrupt did not land at the intended boundary (the
    /// boundary's eip, then where it landed).
    pub late: usize,
    pub late_examples: Vec<(u32, u32)>,
    /// (boundary, eip, outcome) of every failing run.
    pub failing: Vec<(usize, u32, Outcome)>,
    /// The baseline (no nested interrupt) outcome.
    pub baseline: Option<Outcome>,
    /// Two-CPU runs: runs where CPU B's own access failed, and (boundary,
    /// its outcome) of each.
    pub b_failures: usize,
    pub b_failing: Vec<(usize, Outcome)>,
    /// Each boundary's instruction and mark (the strip picture).
    pub eips: Vec<u32>,
    pub marks: Vec<Mark>,
    /// TSC cycles the runs took (not the scenario's setup or the
    /// baseline): what `make bench`'s explorer throughput divides by.
    pub run_cycles: u64,
}

/// For each of `eips`: is it inside a fault handler function
/// (`do_page_fault_*`, `vmalloc_fault*`, 2.4.1's checks), which no #DB
/// runs?  The path runs a function for many boundaries in a row: one
/// symbol-table lookup per function entered, not per boundary.
fn fault_handler_code(eips: &[u32]) -> Vec<bool> {
    let mut syms = crate::symbols::Lookups::default();
    eips.iter()
        .map(|&e| {
            syms.lookup(e).is_some_and(|s| {
                ["do_page_fault", "vmalloc_fault", "sync_by_2_4_1_checks"]
                    .iter()
                    .any(|f| s.name.contains(f))
            })
        })
        .collect()
}

fn is_mov_from_cr2(eip: u32) -> bool {
    // SAFETY: kernel text, readable.
    let b = unsafe { core::slice::from_raw_parts(eip as *const u8, 3) };
    b[0] == 0x0F && b[1] == 0x20 && (b[2] & 0xF8) == 0xD0
}

/// Run once, delivering the nested interrupt at boundary `target`
/// (`usize::MAX`: never), stepping to it from the #PF entry or, with
/// `jump` (an anchor boundary, its instruction and its earlier hits),
/// from that anchor, reached by DR0.
fn run_once(
    sc: &Scenario,
    variant: Variant,
    target: usize,
    jump: Option<(usize, u32, u32)>,
    deep: bool,
    record: bool,
) -> Outcome {
    sc.restale();
    let s = st();
    let f = cpu::local_irq_save();
    s.k = 0;
    s.target = target;
    s.jump = jump.map(|(_, eip, occurrence)| (eip, occurrence));
    s.anchor = jump.map_or(0, |(anchor, _, _)| anchor);
    s.hits = 0;
    s.started = false;
    s.stepping = false;
    s.deep = deep;
    s.deep_sent = false;
    s.nested_stepping = false;
    s.recording = record;
    s.hang = false;
    s.delivered_eip = 0;
    s.other_cpu = variant.other_cpu();
    s.b_hang = false;
    cpu::restore_flags(f);
    B_GO.store(false, Ordering::SeqCst);
    B_DONE.store(false, Ordering::SeqCst);
    B_OUT.store(0, Ordering::SeqCst);
    NESTED_DONE.store(false, Ordering::SeqCst);
    DEEP_DONE.store(false, Ordering::SeqCst);
    OUTER_DONE.store(false, Ordering::SeqCst);
    NESTED_SAW.store(0, Ordering::SeqCst);
    let bad0 = fault::bad_areas();
    let t = sched::run_here(
        "victim",
        victim_thread,
        (variant == Variant::InIrq) as usize,
        Some(sc.mm.clone()),
    );
    super::fault_loop::arm();
    let r = fixup::catch(true, || {
        sched::join(&t);
    });
    super::fault_loop::disarm();
    disarm();
    irq::free_irq(irq::TIMER_IRQ_VECTOR);
    crate::sched::drop_lazy_mm();
    let (x, y, z, w) = targets();
    let out = match r {
        Err(c) => classify(&c, bad0, x),
        Ok(()) if s.hang || s.b_hang => Outcome::Hang,
        Ok(()) => {
            let outer_ok = read(x) == OUTER_MARK;
            let b_wrote = B_DONE.load(Ordering::SeqCst) && B_OUT.load(Ordering::SeqCst) == 0;
            let nested_ok = (!NESTED_DONE.load(Ordering::SeqCst) && !b_wrote)
                || read(if deep { z } else { y }) == NESTED_MARK;
            let deep_ok = !DEEP_DONE.load(Ordering::SeqCst) || read(w) == DEEP_MARK;
            if outer_ok && nested_ok && deep_ok {
                Outcome::Clean
            } else {
                Outcome::Corrupt
            }
        }
    };
    // Leave the area's words zeroed for the next run.
    for a in [x, y, z, w] {
        touch(a, 0);
    }
    out
}

fn classify(c: &Caught, bad0: u32, x: u32) -> Outcome {
    if st().hang {
        return Outcome::Hang;
    }
    if super::fault_loop::caught(c) {
        return Outcome::FaultLoop;
    }
    if c.vector == 14 && fault::bad_areas() != bad0 {
        let why = fault::last_bad_area();
        if c.cr2 == x {
            return Outcome::Oops(why);
        }
        if NESTED_DONE.load(Ordering::SeqCst) {
            // The nested handler finished, yet a handler died on another
            // address: the outer one, reading the nested fault's CR2.
            return Outcome::OopsClobberedCr2(why);
        }
    }
    Outcome::OtherOops(c.vector)
}

/// A fresh scenario, the #DB handler installed, oops reports silenced.
fn prepare() -> Option<Scenario> {
    if !apic::present() {
        return None;
    }
    let sc = Scenario::new()?;
    // SAFETY: no run is in progress.
    unsafe { *TARGETS.get() = (sc.x, sc.y, sc.z, sc.w) };
    let (a, sz) = crate::symbols::lookup(touch as *const () as u32).map(|s| (s.addr, s.size))?;
    st().end = (a, a + sz);
    dispatch::register_handler(1, Some(debug_trap));
    crate::oops::set_silent(true);
    Some(sc)
}

/// Explore the boundaries of the outer fault path: every one with
/// `stride` 1, every `stride`-th otherwise (the test suite samples the
/// slower variants; `make experiments` tries them all).
pub fn explore(variant: Variant, deep: bool, stride: usize) -> Option<Report> {
    if variant.other_cpu() && !smp::cpu_online(1) {
        return None;
    }
    let sc = prepare()?;
    irq::request_irq(NESTED_VECTOR, nested_irq, IrqFlags::empty());
    irq::request_irq(DEEP_VECTOR, deep_irq, IrqFlags::empty());

    let mut rep = Report::default();
    if !sc.stale() {
        // PAE (shared kernel PMD) or eager (synced at vmalloc time): the
        // victim mm already has every entry, so no vmalloc fault happens
        // and there is no fault path to explore.
        rep.baseline = Some(Outcome::Clean);
        finish();
        return Some(rep);
    }
    // CPU B's thread, for the whole exploration.
    let b = match variant {
        Variant::OtherCpu { same_mm } => {
            B_QUIT.store(false, Ordering::SeqCst);
            let mm = if same_mm { &sc.mm } else { &sc.mm_b };
            Some(sched::run_on(1, "cpu-b", cpu_b, 0, Some(mm.clone())))
        }
        _ => None,
    };
    rep.baseline = Some(run_once(&sc, variant, usize::MAX, None, deep, true));
    rep.stepped = st().k;
    let if_at: Vec<bool> = (0..rep.stepped)
        .map(|k| st().eflags[k] & cpu::EFLAGS_IF != 0)
        .collect();
    let eip_at: Vec<u32> = st().eip[..rep.stepped].to_vec();
    rep.with_if = if_at.iter().filter(|b| **b).count();
    rep.cr2_read_at = eip_at.iter().position(|&e| is_mov_from_cr2(e));
    // How many times boundary k's instruction ran before k, from boundary
    // 1 on (boundary 0 is the #PF entry hit that starts the count).
    let mut occurrence = alloc::vec![0];
    occurrence.extend(super::hits::earlier_hits(eip_at.get(1..).unwrap_or(&[])));
    // DR0 may only stop an instruction the #DB path never runs itself (a
    // breakpoint in its own entry code or in a core helper it shares
    // would recurse): the fault handlers' own code.  Each boundary is
    // reached from the last such boundary at or before it.
    let own = fault_handler_code(&eip_at);
    let mut anchor = 0;
    let anchors: Vec<usize> = (0..rep.stepped)
        .map(|k| {
            if own[k] {
                anchor = k;
            }
            anchor
        })
        .collect();
    let t0 = cpu::rdtsc();
    // Another CPU does not wait for this one's IF: in a two-CPU run every
    // boundary is open.
    rep.marks = (0..rep.stepped)
        .map(|k| match if_at[k] || variant.other_cpu() {
            true => Mark::Skipped,
            false => Mark::Masked,
        })
        .collect();
    for k in (0..rep.stepped)
        .step_by(stride.max(1))
        .filter(|&k| if_at[k] || variant.other_cpu())
    {
        let a = anchors[k];
        let jump = (a > 0).then(|| (a, eip_at[a], occurrence[a]));
        let out = run_once(&sc, variant, k, jump, deep, false);
        rep.runs += 1;
        if rep.cr2_read_at.is_some_and(|c| k <= c) {
            rep.tried_before_cr2 += 1;
        }
        let saw = NESTED_SAW.load(Ordering::SeqCst);
        if saw != 0 && saw != eip_at[k] {
            rep.late += 1;
            if rep.late_examples.len() < 4 {
                rep.late_examples.push((eip_at[k], saw));
            }
        }
        let b_out = match B_DONE.load(Ordering::SeqCst) {
            true => b_outcome(),
            false => Outcome::Clean,
        };
        rep.marks[k] = Mark::of(if st().b_hang { Outcome::Hang } else { out }, b_out);
        if st().b_hang {
            // CPU B is still inside its access (or stuck there): it would
            // finish during a later run and corrupt it.  The exploration
            // stops here; the runs count says how far it got.
            rep.failures += 1;
            rep.failing.push((k, eip_at[k], Outcome::Hang));
            break;
        }
        if variant.other_cpu() && B_DONE.load(Ordering::SeqCst) && b_outcome().failed() {
            rep.b_failures += 1;
            rep.b_failing.push((k, b_outcome()));
        }
        if out.failed() {
            rep.failures += 1;
            if rep.cr2_read_at.is_some_and(|c| k <= c) {
                rep.failures_before_cr2 += 1;
            }
            rep.failing.push((k, eip_at[k], out));
        }
    }
    rep.run_cycles = cpu::rdtsc() - t0;
    rep.eips = eip_at;
    if let Some(b) = b {
        B_QUIT.store(true, Ordering::SeqCst);
        // A B that hung does not come back: leave it (its CPU is lost
        // for the rest of the boot, and the report says the run hung).
        if !st().b_hang {
            sched::join(&b);
        }
    }

    finish();
    Some(rep)
}

/// Length of the outer fault path alone (no nested interrupt), and the
/// boundary whose instruction reads CR2: what `make bench` reports.
/// `None` if nothing faults.
pub fn measure_fault_path() -> Option<(usize, Outcome, Option<usize>)> {
    let sc = prepare()?;
    let r = if sc.stale() {
        let out = run_once(&sc, Variant::Thread, usize::MAX, None, false, true);
        let n = st().k;
        let cr2 = st().eip[..n].iter().position(|&e| is_mov_from_cr2(e));
        Some((n, out, cr2))
    } else {
        None
    };
    finish();
    r
}

/// Instructions from an exception's entry stub to its `iret` for `int3`
/// with a handler that does nothing: the bare round trip.
pub fn measure_bare_exception() -> usize {
    fn nothing(_: &mut TrapFrame) {}
    let old = dispatch::register_handler(3, Some(nothing));
    dispatch::register_handler(1, Some(debug_trap));
    let (a, sz) =
        crate::symbols::lookup(int3_once as *const () as u32).map_or((0, 0), |s| (s.addr, s.size));
    let s = st();
    s.end = (a, a + sz);
    s.k = 0;
    s.target = usize::MAX;
    s.jump = None;
    s.started = false;
    s.stepping = false;
    s.recording = false;
    s.hang = false;
    s.base_depth = irq::depth();
    s.active = true;
    s.bad_before = fault::bad_areas();
    cpu::set_exec_breakpoint(stub_address(3));
    int3_once();
    disarm();
    dispatch::register_handler(1, None);
    dispatch::register_handler(3, old);
    st().k
}

#[inline(never)]
fn int3_once() {
    // SAFETY: a breakpoint trap into the do-nothing handler above.
    unsafe { core::arch::asm!("int3") }
}

fn finish() {
    crate::oops::set_silent(false);
    irq::free_irq(NESTED_VECTOR);
    irq::free_irq(DEEP_VECTOR);
    dispatch::register_handler(1, None);
}
