//! The two-party stepper: thread A runs a path, thread B gets in at
//! boundary k of it.  The path starts at a trigger A arms itself (a write
//! watchpoint, DR1, on the entry whose store opens a window; or DR3 on
//! the first instruction of a function) and ends when A is back in its
//! own function.  A dry run single-steps it and records every boundary's
//! instruction and IF; run k stops A at boundary k with DR0 on that
//! instruction, counting its earlier hits, so a run costs a few #DBs,
//! not k.  Any instruction of A's path may be an anchor: until the
//! target the #DB handler runs none of A's code, as long as A's path
//! takes no fault before it (a #PF would run `fault_loop`'s atomics; the
//! scenarios' paths take none).  An interrupt handler in A's task is not
//! A's path: its instructions are no boundaries and its hits do not
//! count.  At k, B gets in:
//!
//! - **one CPU** (`Cpus::One`): A is preempted there (`preempt=full`: a
//!   self-IPI whose interrupt exit switches to B).  Interrupts off, or a
//!   spinlock held (`preempt_count`), means no preemption: such
//!   boundaries are counted, not run.
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
//! task run on A's CPU, with TF still set (switch_to keeps EFLAGS).  The
//! stepping is the engine's (`engine`), B's side on CPU 1 `handoff`'s.
//! The 2020 regression (`regression2020`) and the seed's point 3
//! (`point3`) are its scenarios.

extern crate alloc;

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use vmfault::arch::x86::entry::TrapFrame;
use vmfault::arch::x86::irq::{self, IrqFlags};
use vmfault::arch::x86::{apic, percpu, smp};
use vmfault::cmdline::PreemptModel;
use vmfault::fixup::{self, Caught};
use vmfault::mm::mm_struct::MmStruct;
use vmfault::racy_cell::RacyCell;

use super::engine::{self, After, Boundaries, Jump, Reach, Trigger};
use super::handoff::{self, Handed};
use super::narrate;
use super::outcome::{Mark, Outcome};
use vmfault::sched::{self, Task};

/// The self-IPI that preempts A (one CPU).
pub const PREEMPT_VECTOR: u8 = 0xF3;
/// The longest path measured is point 3's low-memory walk in the
/// unoptimised kernel, 40688 boundaries; the recording takes 8 bytes a
/// boundary of a 32 MiB boot's heap, reserved before the path starts.
const MAX_STEPS: usize = 65_536;

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

/// The dry run's boundaries, with what the stepper's scenarios ask of
/// them.
#[derive(Default)]
pub struct Recording(engine::Recording);

impl core::ops::Deref for Recording {
    type Target = engine::Recording;

    fn deref(&self) -> &engine::Recording {
        &self.0
    }
}

impl Recording {
    /// The boundaries a run may target, every `stride`-th of them (or
    /// the one a replay asks for): those with IF=1 on one CPU, all on
    /// two.  Each with its jump: with `Reach::Anchors`, DR0 right on its
    /// own instruction.
    pub fn targets(&self, cpus: Cpus, sel: Boundaries, reach: Reach) -> Vec<(usize, Jump)> {
        let wanted = (0..self.eips.len())
            .filter(|&k| self.reachable(k, cpus) && sel.keeps(k))
            .step_by(sel.stride());
        self.0
            .jumps(wanted, reach, |_| true)
            .into_iter()
            .map(|j| (j.k, j))
            .collect()
    }

    /// Whether boundary k can be a target at all: on one CPU, where A can
    /// be preempted (interrupts on and no spinlock held: the preempt
    /// patch's rule); another CPU waits for neither.
    pub fn reachable(&self, k: usize, cpus: Cpus) -> bool {
        self.preemptible(k) || cpus == Cpus::Two
    }

    /// `preempt=full` can switch away from A at boundary k.
    pub fn preemptible(&self, k: usize) -> bool {
        self.irq_on[k] && !self.lock_held[k]
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

    /// Each boundary's instruction, for the strip.
    pub fn into_eips(self) -> Vec<u32> {
        self.0.eips
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
    /// A's function: back there, the path is over.
    end: (u32, u32),
    parties: Option<Parties>,
    /// A's task: only its instructions are boundaries, and only its DR0
    /// hits count (a path that sleeps lets other tasks run the same code).
    a_task: u32,
    /// A's stack: `switch_to` moves to the next task's stack before it
    /// makes that task `current`, and those few instructions, on a stack
    /// that is not A's, belong to whichever task comes next, which may
    /// differ from run to run: they are not A's path either.
    a_stack: (u32, u32),
    two_cpus: bool,
}

static ST: RacyCell<State> = RacyCell::new(State {
    end: (0, 0),
    parties: None,
    a_task: 0,
    a_stack: (0, 0),
    two_cpus: false,
});

/// One CPU: B's go (its thread yields until then).
static GO_B: AtomicBool = AtomicBool::new(false);
static ENTERED: AtomicBool = AtomicBool::new(false);
/// Two CPUs: A stands for a whole session, one run per `RUN` generation
/// (a thread per run would cost more than the run itself).
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
    become_a();
    engine::arm(Trigger::Write(addr));
}

/// A, before its path: boundary 0 is the instruction at `addr` (DR3).
pub fn arm_exec(addr: u32) {
    become_a();
    engine::arm(Trigger::Exec(addr));
}

/// The running task is A: its task and its stack.
fn become_a() {
    let s = st();
    s.a_task = sched::current_ptr() as u32;
    s.a_stack = sched::current()
        .stack()
        .map_or((0, u32::MAX), |k| (k.base, k.top));
}

/// A, after its path: no more boundaries; if B did not get in, it runs
/// now, after the path.
pub fn path_over() {
    engine::disarm();
    if narrate::on() {
        narrate::party_done("A's path is over (back in A's function)");
    }
    if !ENTERED.load(Ordering::SeqCst) {
        match st().two_cpus {
            true => handoff::release(),
            false => GO_B.store(true, Ordering::SeqCst),
        }
    }
}

fn preempt_irq(_: &mut TrapFrame) {
    // Nothing: the interrupt exit does the switch under preempt=full.
}

/// The stepper's side of the engine: A's path, in A's task.
struct APath;

impl engine::Path for APath {
    fn own(frame: &TrapFrame) -> bool {
        // A's task, outside any interrupt handler, on A's stack: an
        // interrupt taken in A's task is not A's path, nor is the end of
        // a switch away from A.  Not `current_ptr()`, `irq::depth()` or an
        // atomic: DR0 may sit on any instruction of the path, and a
        // function the path shares with this handler would hit it again
        // in here.  Two inlined %gs loads and a compare.
        let s = st();
        let sp = frame.interrupted_esp();
        percpu::current_word() == s.a_task
            && percpu::irq_depth_word() == 0
            && sp >= s.a_stack.0
            && sp < s.a_stack.1
    }

    fn other(_: &mut TrapFrame, _: u32) {
        // Another task on A's CPU, run while A sleeps: switch_to keeps
        // EFLAGS, so it is stepped too until it switches back; none of it
        // is a boundary of A's path.
    }

    fn over(frame: &TrapFrame, _: usize) -> bool {
        let end = st().end;
        frame.eip >= end.0 && frame.eip < end.1
    }

    fn deliver(frame: &mut TrapFrame, k: usize) -> After {
        narrate::boundary(frame, k);
        ENTERED.store(true, Ordering::SeqCst);
        match st().two_cpus {
            true => after(handoff::hand_off()),
            false => {
                preempt_here();
                After::Free
            }
        }
    }

    fn followed(frame: &mut TrapFrame) -> After {
        // A wrote the owner word of the lock B waits for: B's turn.
        if narrate::on() {
            vmfault::println!(
                "race: A dropped the lock B waits for, at {}: B takes it now, A waits here",
                narrate::Place(frame.eip)
            );
        }
        after(handoff::wait_again())
    }
}

/// B is done (or hung): A runs free; B waits for a lock A holds: A goes
/// on until its next write of the lock's owner word, its release.
fn after(h: Handed) -> After {
    match h {
        Handed::Blocked(word) => {
            if narrate::on() {
                vmfault::println!(
                    "race: CPU B spins on a lock A holds (owner word {:#010x}): A goes on until it drops it",
                    word
                );
            }
            After::Follow(word)
        }
        Handed::Done | Handed::Hang => After::Free,
    }
}

/// What the timer does under preempt=full, at exactly this boundary.
fn preempt_here() {
    GO_B.store(true, Ordering::SeqCst);
    sched::set_need_resched();
    apic::self_ipi(PREEMPT_VECTOR);
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

/// B's part for `handoff`: the scenario's B.
fn part_b() {
    let b = b_fn();
    b();
}

/// A stepper session: the engine's #DB handler and, on one CPU,
/// `preempt=full` and the preemption vector installed; on two, A and B
/// standing.
pub struct Session {
    cpus: Cpus,
    booted: PreemptModel,
    standing: Option<(Arc<Task>, handoff::Standing)>,
}

impl Session {
    /// `None` without a local APIC, or with one CPU asked for two.
    pub fn begin(p: Parties) -> Option<Session> {
        if !apic::present() || (p.cpus == Cpus::Two && !smp::cpu_online(1)) {
            return None;
        }
        let (a, sz) =
            vmfault::symbols::lookup(p.a as *const () as u32).map(|x| (x.addr, x.size))?;
        // B first: the one step that can fail, before anything is set up.
        // It waits for its first go, and reads the parties only then.
        let b = match p.cpus {
            Cpus::One => None,
            Cpus::Two => Some(handoff::stand(part_b, p.mm_b.clone())?),
        };
        // Address spaces of earlier experiments, still borrowed or not yet
        // reaped, would lengthen every walk of the directory list.
        sched::drop_lazy_mm();
        sched::reap_all();
        let s = st();
        s.end = (a, a + sz);
        s.parties = Some(p.clone());
        s.two_cpus = p.cpus == Cpus::Two;
        let booted = sched::preempt_model();
        if p.cpus == Cpus::One {
            sched::set_preempt_model(PreemptModel::Full);
        }
        // The #DB handler runs on A's CPU, 0: this one (A stands there).
        engine::begin::<APath>(MAX_STEPS, p.cpus == Cpus::One);
        irq::request_irq(PREEMPT_VECTOR, preempt_irq, IrqFlags::empty());
        vmfault::oops::set_silent(true);
        GO_B.store(false, Ordering::SeqCst);
        let standing = b.map(|b| {
            QUIT.store(false, Ordering::SeqCst);
            // The standing A starts at this generation: earlier sessions'
            // runs are not its own.
            let now = RUN.load(Ordering::SeqCst) as usize;
            (
                sched::run_on(0, "step-a", standing_a, now, p.mm_a.clone()),
                b,
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
    pub fn run(&self, target: Option<Jump>, record: bool) -> RunResult {
        engine::prepare(target, record);
        handoff::reset();
        GO_B.store(false, Ordering::SeqCst);
        ENTERED.store(false, Ordering::SeqCst);
        let caught = match self.cpus {
            Cpus::One => one_cpu(),
            Cpus::Two => {
                two_cpus();
                Ok(())
            }
        };
        RunResult {
            caught,
            b: handoff::outcome().unwrap_or(Outcome::Clean),
            entered: ENTERED.load(Ordering::SeqCst),
            waited: handoff::waited(),
            hang: self.cpus == Cpus::Two && handoff::hung(),
            handoff_cycles: handoff::handoff_cycles(),
        }
    }

    /// The dry run's boundaries (after `run(None, true)`).
    pub fn take_recording(&self) -> Recording {
        Recording(engine::take_recording())
    }

    pub fn end(self) {
        if let Some((ta, b)) = self.standing {
            QUIT.store(true, Ordering::SeqCst);
            sched::join(&ta);
            b.end();
        }
        // The idle tasks borrowed A's and B's address spaces.
        sched::drop_lazy_mm();
        vmfault::oops::set_silent(false);
        irq::free_irq(PREEMPT_VECTOR);
        engine::end();
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
    // A narrated run (a replay) lets its oops report through.
    let r = fixup::catch(!narrate::on(), || {
        sched::join(&ta);
        sched::join(&tb);
    });
    engine::disarm();
    engine::run_over();
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
    handoff::finish();
}
