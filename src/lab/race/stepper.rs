//! The two-party stepper: thread A runs a path, thread B gets in at
//! boundary k of it.  The path starts at a trigger A arms itself (a write
//! watchpoint, DR1, on the entry whose store opens a window; or DR0 on
//! the first instruction of a function) and ends when A is back in its
//! own function.  A dry run single-steps it and records every boundary's
//! instruction and IF; run k stops A at boundary k with DR0 on that
//! instruction, counting its earlier hits, so a run costs a few #DBs,
//! not k.  At k, B gets in:
//!
//! - **one CPU** (`Cpus::One`): A is preempted there (`preempt=full`: a
//!   self-IPI whose interrupt exit switches to B).  Interrupts off means
//!   no preemption: such boundaries are counted, not run.
//! - **two CPUs** (`Cpus::Two`): B, standing on CPU 1, runs its whole
//!   part while A waits in its #DB handler, between two instructions.
//!   Another CPU does not wait for A's IF: every boundary is run.  If B
//!   spins on a lock A holds (`spinlock::waiting_on`), A goes on with a
//!   write watchpoint (DR1) on the lock's owner word, and stops again
//!   right after its next write there, its release: B takes the lock and
//!   runs while A waits there ("B waited").  So B only ever runs while A
//!   is stopped at a known instruction, and a run depends on k alone.
//!
//! On two CPUs the kernel keeps its booted preemption model (2.4's: none),
//! and A waits in its #DB handler with interrupts off, so the outcome
//! depends on k only, not on how QEMU schedules the vCPUs.  Only A's
//! task's instructions are boundaries: a path that sleeps lets another
//! task run on A's CPU, with TF still set (switch_to keeps EFLAGS).  The 2020
//! regression (`regression2020`) and the seed's point 3 (`point3`) are
//! its scenarios; the nested-interrupt explorer and the switch window
//! keep steppers of their own (their nested #DBs need more).

extern crate alloc;

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use crate::arch::x86::entry::TrapFrame;
use crate::arch::x86::irq::{self, IrqFlags};
use crate::arch::x86::{apic, cpu, dispatch, percpu, smp, spinlock, tsc};
use crate::cmdline::PreemptModel;
use crate::fixup::{self, Caught};
use crate::mm::fault;
use crate::mm::mm_struct::MmStruct;
use crate::racy_cell::RacyCell;

use super::outcome::{Mark, Outcome};
use crate::sched::{self, Task};

/// The self-IPI that preempts A (one CPU).
pub const PREEMPT_VECTOR: u8 = 0xF3;
const MAX_STEPS: usize = 200_000;
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

/// The two threads of a scenario.  `a` arms its trigger (`arm_write`,
/// `arm_exec`), runs its path and calls `path_over`; `b` does B's part.
/// Both run once per run, in their address spaces.
#[derive(Clone)]
pub struct Parties {
    pub a: fn(),
    pub b: fn(),
    pub mm_a: Option<Arc<MmStruct>>,
    pub mm_b: Option<Arc<MmStruct>>,
    pub cpus: Cpus,
}

/// The dry run's boundaries.
#[derive(Default)]
pub struct Recording {
    pub eips: Vec<u32>,
    pub irq_on: Vec<bool>,
    /// The step limit was hit: the recording is partial.
    pub overflow: bool,
}

impl Recording {
    /// The boundaries a run may target, every `stride`-th of them: those
    /// with IF=1 on one CPU, all on two.  Each with its DR0 target.
    pub fn targets(&self, cpus: Cpus, stride: usize) -> Vec<(usize, (u32, u32))> {
        let occurrence = super::hits::earlier_hits(&self.eips);
        (0..self.eips.len())
            .filter(|&k| self.reachable(k, cpus))
            .step_by(stride.max(1))
            .map(|k| (k, (self.eips[k], occurrence[k])))
            .collect()
    }

    /// Whether boundary k can be a target at all.
    pub fn reachable(&self, k: usize, cpus: Cpus) -> bool {
        self.irq_on[k] || cpus == Cpus::Two
    }

    /// Each boundary's strip mark before any run: not run yet (the
    /// stride may leave it so), or unreachable with interrupts off.
    pub fn unrun_marks(&self, cpus: Cpus) -> Vec<Mark> {
        (0..self.eips.len())
            .map(|k| match self.reachable(k, cpus) {
                true => Mark::Skipped,
                false => Mark::Masked,
            })
            .collect()
    }
}

/// How one run went, as the stepper saw it; the scenario judges the rest.
pub struct RunResult {
    /// One CPU: what the driver's recovery point caught (B's oops, or A's).
    pub caught: Result<(), Caught>,
    /// Two CPUs: how B's part ended, under B's own recovery point.
    pub b: Outcome,
    /// B got in inside A's path (preempted there, or handed off).
    pub entered: bool,
    /// Two CPUs: B spun on a lock A held, so ran after A dropped it.
    pub waited: bool,
    /// Two CPUs: B did not finish in time.
    pub hang: bool,
    /// Two CPUs: TSC cycles from A's release of B to B's start.
    pub handoff_cycles: Option<u64>,
}

struct State {
    recording: bool,
    stepping: bool,
    k: usize,
    /// Run k: DR0 on this instruction; hit number `.1` is boundary k.
    target: Option<(u32, u32)>,
    hits: u32,
    /// A's function: back there, the path is over.
    end: (u32, u32),
    rec: Recording,
    parties: Option<Parties>,
    /// A's task: only its instructions are boundaries, and only its DR0
    /// hits count (a path that sleeps lets other tasks run the same code).
    a_task: u32,
    /// DR1 watches the owner word of the lock B waits for.
    following: bool,
}

static ST: RacyCell<State> = RacyCell::new(State {
    recording: false,
    stepping: false,
    k: 0,
    target: None,
    hits: 0,
    end: (0, 0),
    rec: Recording {
        eips: Vec::new(),
        irq_on: Vec::new(),
        overflow: false,
    },
    parties: None,
    a_task: 0,
    following: false,
});

static GO_B: AtomicBool = AtomicBool::new(false);
static ENTERED: AtomicBool = AtomicBool::new(false);
static TWO_CPUS: AtomicBool = AtomicBool::new(false);
static B_OUT: AtomicU32 = AtomicU32::new(0);
static B_DONE: AtomicBool = AtomicBool::new(false);
static B_WAITED: AtomicBool = AtomicBool::new(false);
static B_HANG: AtomicBool = AtomicBool::new(false);
static RELEASED_AT: AtomicU64 = AtomicU64::new(0);
static STARTED_AT: AtomicU64 = AtomicU64::new(0);
/// Two CPUs: A and B stand for a whole session, one run per `RUN`
/// generation (a thread per run would cost more than the run itself).
static RUN: AtomicU32 = AtomicU32::new(0);
static A_DONE: AtomicBool = AtomicBool::new(false);
static QUIT: AtomicBool = AtomicBool::new(false);

fn st() -> &'static mut State {
    // SAFETY: the #DB handler runs on A's CPU with interrupts off; the
    // driver touches the state only between runs, when no path is armed.
    unsafe { &mut *ST.get() }
}

fn parties() -> &'static Parties {
    st().parties.as_ref().expect("stepper: no session")
}

/// A's and B's functions.  Copied out, not the `Parties`: a clone would
/// hold the address spaces in a frame an oops abandons, and leak them.
fn a_fn() -> fn() {
    parties().a
}

fn b_fn() -> fn() {
    parties().b
}

/// A, before its path: boundary 0 is the instruction after the next
/// store to `addr` (DR1).
pub fn arm_write(addr: u32) {
    st().a_task = sched::current_ptr() as u32;
    cpu::set_write_watchpoint(addr);
}

/// A, before its path: boundary 0 is the instruction at `addr` (DR0).
pub fn arm_exec(addr: u32) {
    let s = st();
    s.a_task = sched::current_ptr() as u32;
    s.k = 0;
    match s.target {
        Some((eip, _)) => {
            s.hits = 0;
            cpu::set_exec_breakpoint(eip);
        }
        None if s.recording => cpu::set_exec_breakpoint(addr),
        None => {}
    }
}

/// A, after its path: no more boundaries; if B did not get in, it runs
/// now, after the path.
pub fn path_over() {
    st().following = false;
    cpu::clear_write_watchpoint();
    cpu::clear_exec_breakpoint();
    st().stepping = false;
    if !ENTERED.load(Ordering::SeqCst) {
        GO_B.store(true, Ordering::SeqCst);
    }
}

fn preempt_irq(_: &mut TrapFrame) {
    // Nothing: the interrupt exit does the switch under preempt=full.
}

fn debug_trap(frame: &mut TrapFrame) {
    let dr6 = cpu::take_dr6();
    super::fault_loop::on_debug(frame, dr6);
    let s = st();
    let hit = dr6 & cpu::DR6_B0 != 0;
    if hit {
        frame.eflags |= cpu::EFLAGS_RF;
    }
    // Not `current_ptr()` or an atomic: DR0 may sit on any instruction of
    // the path, and a function the path shares with this handler would
    // hit it again in here.  One inlined %gs load and a plain compare.
    if percpu::current_word() != s.a_task {
        // Another task on A's CPU, run while A sleeps: switch_to keeps
        // EFLAGS, so it is stepped too until it switches back; none of
        // it is a boundary of A's path.
        return;
    }
    if dr6 & cpu::DR6_B1 != 0 && s.following {
        // A wrote the owner word of the lock B waits for: B's turn.
        cpu::clear_write_watchpoint();
        s.following = false;
        wait_for_b();
        return;
    }
    if dr6 & cpu::DR6_B1 != 0 {
        // The watched store is done: boundary 0 is the next instruction.
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
        if hit {
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
    if hit && s.recording && !s.stepping {
        // `arm_exec`'s instruction: boundary 0 is this one.
        cpu::clear_exec_breakpoint();
        s.stepping = true;
    }
    if !s.stepping {
        frame.eflags &= !cpu::EFLAGS_TF;
        return;
    }
    if (frame.eip >= s.end.0 && frame.eip < s.end.1) || s.k >= MAX_STEPS {
        s.rec.overflow = s.k >= MAX_STEPS;
        s.stepping = false;
        frame.eflags &= !cpu::EFLAGS_TF;
        return;
    }
    s.rec.eips.push(frame.eip);
    s.rec.irq_on.push(frame.eflags & cpu::EFLAGS_IF != 0);
    s.k += 1;
    frame.eflags |= cpu::EFLAGS_TF;
}

/// What the timer does under preempt=full, at exactly this boundary.
fn preempt_here() {
    ENTERED.store(true, Ordering::SeqCst);
    GO_B.store(true, Ordering::SeqCst);
    sched::set_need_resched();
    apic::self_ipi(PREEMPT_VECTOR);
}

/// Two CPUs: B runs its whole part on CPU 1 now, with A stopped right
/// here.
fn hand_off() {
    ENTERED.store(true, Ordering::SeqCst);
    RELEASED_AT.store(cpu::rdtsc(), Ordering::SeqCst);
    GO_B.store(true, Ordering::SeqCst);
    // Under round-robin TCG a `pause` hands this vCPU's turn to the next:
    // B starts now, not after a turn of the wait loop.
    core::hint::spin_loop();
    wait_for_b();
}

/// How long a lock B spins on may name no holder before A takes it for
/// its own (A stopped between taking it and naming itself); a lock that
/// just came free is taken by B within microseconds.
const UNNAMED_US: u64 = 200;

/// A, stopped in its #DB handler (interrupts off; a TLB shootdown from
/// CPU 1 is answered by polling), waits until B is done, or until B spins
/// on a lock A holds: then A goes on until it writes that lock's owner
/// word (`follow`).
fn wait_for_b() {
    let mut unnamed: Option<u64> = None;
    let mut blocked_on = None;
    let over = smp::spin_until(
        || {
            if B_DONE.load(Ordering::SeqCst) {
                return true;
            }
            match spinlock::waiting_on(1) {
                Some((word, 1)) => blocked_on = Some(word),
                Some((word, 0)) => {
                    let since = *unnamed.get_or_insert_with(cpu::rdtsc);
                    if tsc::us_since(since) > UNNAMED_US {
                        blocked_on = Some(word);
                    }
                }
                _ => unnamed = None,
            }
            blocked_on.is_some()
        },
        B_TIMEOUT_US,
    );
    match blocked_on {
        Some(word) => follow(word),
        None if !over => B_HANG.store(true, Ordering::SeqCst),
        None => {}
    }
}

/// B waits for a lock A holds: A goes on, and stops right after its next
/// write of the lock's owner word.
fn follow(word: usize) {
    B_WAITED.store(true, Ordering::SeqCst);
    st().following = true;
    cpu::set_write_watchpoint(word as u32);
}

/// One CPU: A's thread for one run.
fn thread_a(_: usize) {
    let a = a_fn();
    a();
}

/// One CPU: B's thread for one run, let in by A's preemption or return.
fn thread_b(_: usize) {
    while !GO_B.load(Ordering::SeqCst) {
        sched::yield_now();
    }
    let b = b_fn();
    b();
}

/// Two CPUs: A, standing on CPU 0.
fn standing_a(generation: usize) {
    let a = a_fn();
    let mut seen = generation as u32;
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
        a();
        A_DONE.store(true, Ordering::SeqCst);
    }
}

/// Two CPUs: B, standing on CPU 1; its oops is caught by a recovery
/// point of its own CPU.
fn standing_b(_: usize) {
    let b = b_fn();
    loop {
        while !GO_B.swap(false, Ordering::SeqCst) {
            if QUIT.load(Ordering::SeqCst) {
                return;
            }
            core::hint::spin_loop();
        }
        STARTED_AT.store(cpu::rdtsc(), Ordering::SeqCst);
        let bad0 = fault::bad_areas();
        let r = fixup::catch(true, b);
        B_OUT.store(Outcome::access_word(&r, bad0), Ordering::SeqCst);
        B_DONE.store(true, Ordering::SeqCst);
    }
}

/// A stepper session: the #DB handler and, on one CPU, `preempt=full`
/// and the preemption vector installed; on two, A and B standing.
pub struct Session {
    cpus: Cpus,
    booted: PreemptModel,
    standing: Option<(Arc<Task>, Arc<Task>)>,
}

impl Session {
    /// `None` without a local APIC, or with one CPU asked for two.
    pub fn begin(p: Parties) -> Option<Session> {
        if !apic::present() || (p.cpus == Cpus::Two && !smp::cpu_online(1)) {
            return None;
        }
        let (a, sz) = crate::symbols::lookup(p.a as *const () as u32).map(|x| (x.addr, x.size))?;
        // Address spaces of earlier experiments, still borrowed or not yet
        // reaped, would lengthen every walk of the directory list.
        sched::drop_lazy_mm();
        sched::reap_all();
        let s = st();
        s.end = (a, a + sz);
        s.rec = Recording {
            eips: Vec::with_capacity(MAX_STEPS),
            irq_on: Vec::with_capacity(MAX_STEPS),
            overflow: false,
        };
        s.parties = Some(p.clone());
        let booted = sched::preempt_model();
        if p.cpus == Cpus::One {
            sched::set_preempt_model(PreemptModel::Full);
        }
        dispatch::register_handler(1, Some(debug_trap));
        irq::request_irq(PREEMPT_VECTOR, preempt_irq, IrqFlags::empty());
        crate::oops::set_silent(true);
        // A one-CPU session ends with B let go (`one_cpu`): a standing B
        // must not take that for its first run.
        GO_B.store(false, Ordering::SeqCst);
        let standing = (p.cpus == Cpus::Two).then(|| {
            QUIT.store(false, Ordering::SeqCst);
            // The standing A starts at this generation: earlier sessions'
            // runs are not its own.
            let now = RUN.load(Ordering::SeqCst) as usize;
            (
                sched::run_on(0, "step-a", standing_a, now, p.mm_a.clone()),
                sched::run_on(1, "step-b", standing_b, 0, p.mm_b.clone()),
            )
        });
        Some(Session {
            cpus: p.cpus,
            booted,
            standing,
        })
    }

    /// One run: B gets in at `target` (`None`: after A's path), or, with
    /// `record`, the dry run that steps the whole path.
    pub fn run(&self, target: Option<(u32, u32)>, record: bool) -> RunResult {
        let s = st();
        s.recording = record;
        s.following = false;
        s.stepping = false;
        s.target = target;
        s.k = 0;
        GO_B.store(false, Ordering::SeqCst);
        ENTERED.store(false, Ordering::SeqCst);
        B_OUT.store(0, Ordering::SeqCst);
        B_DONE.store(false, Ordering::SeqCst);
        B_WAITED.store(false, Ordering::SeqCst);
        B_HANG.store(false, Ordering::SeqCst);
        RELEASED_AT.store(0, Ordering::SeqCst);
        TWO_CPUS.store(self.cpus == Cpus::Two, Ordering::SeqCst);
        let caught = match self.cpus {
            Cpus::One => one_cpu(),
            Cpus::Two => {
                two_cpus();
                Ok(())
            }
        };
        cpu::clear_exec_breakpoint();
        cpu::clear_write_watchpoint();
        s.stepping = false;
        s.target = None;
        let (released, started) = (
            RELEASED_AT.load(Ordering::SeqCst),
            STARTED_AT.load(Ordering::SeqCst),
        );
        RunResult {
            caught,
            b: Outcome::of_access_word(B_OUT.load(Ordering::SeqCst)),
            entered: ENTERED.load(Ordering::SeqCst),
            waited: B_WAITED.load(Ordering::SeqCst),
            hang: B_HANG.load(Ordering::SeqCst),
            handoff_cycles: (released != 0 && started > released).then(|| started - released),
        }
    }

    /// The dry run's boundaries (after `run(None, true)`).
    pub fn take_recording(&self) -> Recording {
        core::mem::take(&mut st().rec)
    }

    pub fn end(self) {
        if let Some((ta, tb)) = self.standing {
            QUIT.store(true, Ordering::SeqCst);
            sched::join(&ta);
            // A B that hung does not come back: leave it (its CPU is lost
            // for the rest of the boot, and the report says the run hung).
            if !B_HANG.load(Ordering::SeqCst) {
                sched::join(&tb);
            }
        }
        // The idle tasks borrowed A's and B's address spaces.
        sched::drop_lazy_mm();
        crate::oops::set_silent(false);
        irq::free_irq(PREEMPT_VECTOR);
        dispatch::register_handler(1, None);
        sched::set_preempt_model(self.booted);
        st().parties = None;
    }
}

/// One CPU: a thread each for A and B per run, B's oops caught here.
#[allow(clippy::result_large_err)] // fixup::catch's result, passed on
fn one_cpu() -> Result<(), Caught> {
    let (mm_a, mm_b) = (parties().mm_a.clone(), parties().mm_b.clone());
    let ta = sched::run_here("step-a", thread_a, 0, mm_a);
    let tb = sched::run_here("step-b", thread_b, 0, mm_b);
    super::fault_loop::arm();
    let r = fixup::catch(true, || {
        sched::join(&ta);
        sched::join(&tb);
    });
    super::fault_loop::disarm();
    sched::drop_lazy_mm();
    // B's oops lands in this recovery point while A, preempted, is still
    // runnable: let both finish before the next run.
    GO_B.store(true, Ordering::SeqCst);
    sched::join(&ta);
    sched::join(&tb);
    r
}

/// Two CPUs: start a run of the standing A and B and wait for both.
fn two_cpus() {
    A_DONE.store(false, Ordering::SeqCst);
    RUN.fetch_add(1, Ordering::SeqCst);
    while !A_DONE.load(Ordering::SeqCst) {
        sched::yield_now();
    }
    // B may still be on its way (it waited for a lock A held).
    if !B_HANG.load(Ordering::SeqCst)
        && !smp::spin_until(|| B_DONE.load(Ordering::SeqCst), B_TIMEOUT_US)
    {
        B_HANG.store(true, Ordering::SeqCst);
    }
}
