//! The stepping engine: the one skeleton under every explorer here (the
//! nested interrupt, the context-switch window, the two-party stepper
//! and the torn PAE entries).  A path begins at a trigger that the
//! stepped code arms itself (`arm`); from there the #DB handler
//! single-steps it (EFLAGS.TF), one #DB per instruction boundary, until
//! the path says it is over.  A dry run records every boundary's
//! instruction and EFLAGS.  Run k then reaches boundary k through an
//! anchor, a boundary at or before k: DR0 on the anchor's instruction,
//! counting its earlier executions, so a run costs a few #DBs, not k;
//! from the anchor it steps to k.  There the path lets the other party
//! in (`Path::deliver`): a nested interrupt, a preemption, another CPU's
//! whole access.  Both ways to k stop before its instruction runs, so
//! where the path is deterministic the CPU state at k is the same.  Where
//! it is not (a path through the scheduler, whose ring-buffer run queue
//! branches on its history), DR0's count can meet another boundary: each
//! run checks its stack depth at k against the dry run's, and a run at
//! another depth lets nobody in and is void (`misplaced`, `RETRIES`).
//!
//! The debug registers (the stepped CPU's own; each CPU has its set):
//! - DR0: the run's anchor, from `arm` to the target;
//! - DR1: a write trigger (the #DB comes right after the store), or the
//!   owner word of a lock the other party waits for (`After::Follow`);
//! - DR2: the `#PF` entry, during each run: `fault_loop` watches it, and
//!   a path that begins with a fault (`Trigger::Fault`) starts there;
//! - DR3: an execution trigger, a function's first instruction, armed
//!   until the session ends.
//!
//! A breakpoint hit nobody asked for (DR3's instruction run by the
//! driver, the anchor's run before the trigger or by another task) is
//! answered with EFLAGS.RF, and the path's `other` decides about TF (a
//! nested handler may be stepped); while stepping, RF is set at
//! every boundary, so a breakpoint never adds a #DB to a step.  The
//! handler calls nothing the stepped code shares before it has decided
//! whether a hit is its own: a hit inside the handler would recurse.
//! What the registers cost under QEMU 7.2's TCG was measured (the 2020
//! window's runs, two CPUs, the unoptimised kernel): every insert or remove of an
//! execution breakpoint flushes the whole translation cache
//! (`breakpoint_invalidate`), yet two such flushes add only 0.05 ms to a
//! 1.2 ms run; a stray #DB costs more, so DR0 is cleared at the target
//! instead of left armed for the rest of the run (left armed, the 2020
//! window took about 120 s instead of about 70).

extern crate alloc;

use alloc::vec::Vec;

use vmfault::arch::x86::entry::TrapFrame;
use vmfault::arch::x86::{cpu, dispatch};
use vmfault::racy_cell::RacyCell;

/// Where a path begins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// The next `#PF` entry (DR2): boundary 0 is the entry stub's first
    /// instruction.
    Fault,
    /// The next execution of the instruction at this address (DR3):
    /// boundary 0 is that instruction.
    Exec(u32),
    /// The next store to these 4 bytes (DR1): boundary 0 is the
    /// instruction after the store.
    Write(u32),
}

/// What the path does after a boundary that let the other party in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum After {
    /// Go on stepping.
    Step,
    /// Run free to the end: no more boundaries in this run.
    Free,
    /// Run free until the next store to this word (a lock's owner word),
    /// then ask the path again (`Path::followed`).
    Follow(u32),
}

/// `sti`'s opcode.
pub(super) const STI: u8 = 0xFB;

/// How many times a void run (`misplaced`) is run again before its
/// boundary is reported unmeasured.
pub const RETRIES: usize = 8;

/// What a scenario's runs checked of themselves; each must end 0 but
/// `retried`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Checks {
    /// Void runs (`misplaced`: DR0's count met another boundary than k,
    /// so nobody was let in) run again.
    pub retried: usize,
    /// Boundaries still void after `RETRIES` more tries: unmeasured.
    pub misplaced: usize,
    /// Runs whose other party never got in inside the path (it ended
    /// before the target).
    pub not_entered: usize,
}

impl Checks {
    /// Run k by `run` until a run meets the dry run's boundary k, at most
    /// `RETRIES` more times: the run that did, or `None` (counted as
    /// unmeasured) if every one was void.
    pub fn placed<T>(&mut self, mut run: impl FnMut() -> T) -> Option<T> {
        let mut r = run();
        for _ in 0..RETRIES {
            if !misplaced() {
                return Some(r);
            }
            self.retried += 1;
            r = run();
        }
        if misplaced() {
            self.misplaced += 1;
            return None;
        }
        Some(r)
    }
}

/// How run k reaches boundary k: DR0 on the instruction of boundary
/// `anchor`, whose `occurrence`-th execution (counted from boundary 1)
/// is that boundary; then steps to k.  Anchor 0 steps from the trigger.
/// `sp` is how deep the dry run's stack was at k, below where it was at
/// the trigger: a run that DR0 brings to another depth there is not at
/// the dry run's boundary k.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Jump {
    pub k: usize,
    pub anchor: usize,
    pub eip: u32,
    pub occurrence: u32,
    pub sp: u16,
}

/// Which boundaries an exploration runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Boundaries {
    /// Every `n`-th of them (1: all), as each explorer strides.
    Every(usize),
    /// Boundary k alone: a replay (`replay.rs`).
    Only(usize),
}

impl From<usize> for Boundaries {
    fn from(stride: usize) -> Self {
        Boundaries::Every(stride)
    }
}

impl Boundaries {
    /// The stride, for explorers that stride before filtering (1 for a
    /// replay: `pick` then keeps only its boundary).
    pub fn stride(self) -> usize {
        match self {
            Boundaries::Every(n) => n.max(1),
            Boundaries::Only(_) => 1,
        }
    }

    /// Whether boundary k is one of them, among those `wanted` would run.
    pub fn keeps(self, k: usize) -> bool {
        match self {
            Boundaries::Every(_) => true,
            Boundaries::Only(j) => j == k,
        }
    }

    /// The replayed boundary, if this is a replay.
    pub fn only(self) -> Option<usize> {
        match self {
            Boundaries::Only(k) => Some(k),
            Boundaries::Every(_) => None,
        }
    }
}

/// How run k gets to boundary k.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// DR0 on an anchor at or before k, its hits counted; then steps.
    Anchors,
    /// Steps every boundary from the trigger: k #DBs a run, the slow way
    /// that needs no counting (the check that both stop at the same
    /// boundary, `race.engine_*`).
    Stepping,
}

/// A dry run's boundaries: each one's instruction, whether a maskable
/// interrupt can be taken there, whether a lock is held there, and its
/// stack depth below the trigger's (16 bits: a kernel stack is 64 KiB),
/// eight bytes a boundary, so a
/// 200,000-boundary path fits a 32 MiB machine's heap.
#[derive(Clone, Debug, Default)]
pub struct Recording {
    pub eips: Vec<u32>,
    /// IF=1 and not in `sti`'s interrupt shadow (see `Engine::sti_next`).
    pub irq_on: Vec<bool>,
    /// The stepped code holds a spinlock there (`preempt_count` not 0):
    /// `preempt=full` cannot switch away from it, though an interrupt
    /// may come in.
    pub lock_held: Vec<bool>,
    pub sp: Vec<u16>,
    /// The step limit was hit: the recording is partial.
    pub overflow: bool,
}

impl Recording {
    pub fn len(&self) -> usize {
        self.eips.len()
    }

    pub fn is_empty(&self) -> bool {
        self.eips.is_empty()
    }

    /// The jumps to the boundaries `wanted` (in its order), each from
    /// the last boundary at or before it where `anchor_ok` allows DR0
    /// (`Reach::Stepping`: none does).
    pub fn jumps(
        &self,
        wanted: impl Iterator<Item = usize>,
        reach: Reach,
        anchor_ok: impl Fn(usize) -> bool,
    ) -> Vec<Jump> {
        // Boundary 0 is the trigger, never a counted hit (the handler
        // resumes it with RF): counts start at boundary 1.
        let mut occurrence = alloc::vec![0];
        occurrence.extend(super::hits::earlier_hits(self.eips.get(1..).unwrap_or(&[])));
        let mut last = 0;
        let anchors: Vec<usize> = (0..self.len())
            .map(|k| {
                if k > 0 && reach == Reach::Anchors && anchor_ok(k) && !repeats(self.eips[k]) {
                    last = k;
                }
                last
            })
            .collect();
        wanted
            .map(|k| Jump {
                k,
                anchor: anchors[k],
                eip: self.eips[anchors[k]],
                occurrence: occurrence[anchors[k]],
                sp: self.sp[k],
            })
            .collect()
    }
}

/// Whether the instruction at `eip` is a REP-prefixed string instruction
/// (`rep stos`, `rep movs`, ...).  Stepped, it is one boundary per
/// iteration on every emulator; but an instruction breakpoint on it fires
/// once per execution on a real CPU and on Bochs 2.7 (the SDM, Vol. 3A
/// 17.3.1.1 and 6.13: an iteration resumed after a trap has RF set in the
/// saved EFLAGS, and without TF the iterations are one instruction), once
/// per iteration on QEMU 7.2.  DR0's counted hits would then mean
/// different boundaries on the two, so no such instruction is an anchor:
/// a run steps to it from an earlier one.  (Bochs let B in at no boundary
/// after the first `rep stos` of point 3's walk: 4092 runs, until this.)
fn repeats(eip: u32) -> bool {
    // SAFETY: a recorded instruction address, kernel text (four bytes of
    // an instruction that is at least two long when it repeats).
    let b = unsafe { core::slice::from_raw_parts(eip as *const u8, 4) };
    let mut i = 0;
    let mut rep = false;
    while i < 3
        && matches!(
            b[i],
            0xF2 | 0xF3 | 0x66 | 0x26 | 0x2E | 0x36 | 0x3E | 0x64 | 0x65
        )
    {
        rep |= matches!(b[i], 0xF2 | 0xF3);
        i += 1;
    }
    rep && matches!(b[i], 0x6C..=0x6F | 0xA4..=0xA7 | 0xAA..=0xAF)
}

/// What a path decides; the engine does the stepping.  All of it runs in
/// the #DB handler, interrupts off.
pub trait Path {
    /// Whether this #DB is the stepped context's (its task, its interrupt
    /// level).  Called for every #DB while armed: it must call nothing the
    /// stepped code shares.
    fn own(frame: &TrapFrame) -> bool;
    /// A #DB of another context while armed.
    fn other(frame: &mut TrapFrame, _dr6: u32) {
        frame.eflags &= !cpu::EFLAGS_TF;
    }
    /// The trigger fired; `frame.eip` is boundary 0.
    fn started(_frame: &TrapFrame) {}
    /// Whether the path is over at this boundary (it is not one).
    fn over(frame: &TrapFrame, k: usize) -> bool;
    /// A dry run recorded boundary k: anything else the path keeps of it.
    fn note(_frame: &TrapFrame, _k: usize) -> After {
        After::Step
    }
    /// Boundary k is the run's target: let the other party in.
    fn deliver(frame: &mut TrapFrame, k: usize) -> After;
    /// The followed word was written (`After::Follow`).
    fn followed(_frame: &mut TrapFrame) -> After {
        After::Free
    }
}

/// `Option<Jump>` as the handler reads it (see `Engine::target`).
#[derive(Clone, Copy)]
struct Target {
    set: bool,
    k: usize,
    anchor: usize,
    eip: u32,
    occurrence: u32,
    sp: u16,
}

impl Target {
    const NONE: Target = Target {
        set: false,
        k: 0,
        anchor: 0,
        eip: 0,
        occurrence: 0,
        sp: 0,
    };
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// No path armed: every #DB is a stray one.
    Idle,
    /// Waiting for the trigger.
    Armed,
    /// Counting the anchor's hits.
    Jumping,
    /// One #DB per boundary.
    Stepping,
    /// The rest of the path runs unstepped.
    Free,
}

/// What one run of a path sets and reads.  `prepare` makes it new for
/// each run, whole, so no run can inherit a field of the last one that a
/// field-by-field reset forgot.
struct Run {
    phase: Phase,
    trigger: Trigger,
    /// The run's target, in scalars: the handler reads it before DR0 is
    /// cleared, and in the unoptimised kernel copying a whole `Jump` is a
    /// call to `memcpy`, which the stepped path runs too: a DR0 anchor
    /// there hit the handler itself and recursed until the stack ran out.
    /// (The whole `Run` is built by the driver, before the path is armed.)
    target: Target,
    recording: bool,
    k: usize,
    hits: u32,
    overflow: bool,
    following: bool,
    /// This run's target boundary had another stack pointer than the dry
    /// run's k: the run's path was not the dry run's.
    misplaced: bool,
    /// The stack pointer at the trigger: depths are counted from it (each
    /// run may have a stack of its own).
    sp0: u32,
    /// The instruction after an `sti` just stepped (0: none), caught by
    /// DR0 as well as by the single-step trap.  The SDM (Vol. 2B, STI)
    /// blocks only maskable interrupts at the boundary after an `sti`
    /// that set IF; the single-step trap comes there (QEMU's own fix,
    /// "target/i386: do not block singlestep for STI", 2025, says so too),
    /// and Bochs 2.7 delivers it.  QEMU 7.2 as Debian ships it (7.2.12's
    /// "no single-step exception after MOV or POP SS") suppresses it after
    /// `sti` too, so without DR0 that boundary would not exist there and
    /// the two emulators would count different paths.  The boundary is
    /// real for another CPU, which no interrupt shadow holds back; on the
    /// stepped CPU no interrupt can land on it (`irq_on` false).
    sti_next: u32,
}

impl Run {
    const IDLE: Run = Run {
        phase: Phase::Idle,
        trigger: Trigger::Fault,
        target: Target::NONE,
        recording: false,
        k: 0,
        hits: 0,
        overflow: false,
        following: false,
        misplaced: false,
        sp0: 0,
        sti_next: 0,
    };
}

/// The session: what stays from run to run (the step limit, the dry run's
/// recording, what the debug registers hold), and the run in progress.
struct Engine {
    run: Run,
    max: usize,
    rec: Recording,
    /// What DR0 and DR3 hold (0: off): a register is written only when
    /// its address changes.
    dr0: u32,
    dr3: u32,
    watch_faults: bool,
}

static ENGINE: RacyCell<Engine> = RacyCell::new(Engine {
    run: Run::IDLE,
    max: 0,
    rec: Recording {
        eips: Vec::new(),
        irq_on: Vec::new(),
        lock_held: Vec::new(),
        sp: Vec::new(),
        overflow: false,
    },
    dr0: 0,
    dr3: 0,
    watch_faults: false,
});

fn st() -> &'static mut Engine {
    // SAFETY: the #DB handler runs on the stepped CPU with interrupts off;
    // the driver and the stepped code touch the engine only when no #DB
    // of theirs can come (before arming, after the path, between runs).
    unsafe { &mut *ENGINE.get() }
}

/// Route #DB to path `P`'s handler for a session of paths of at most
/// `max_steps` boundaries.  `watch_faults`: DR2 on the `#PF` entry
/// during each run (`fault_loop`, `Trigger::Fault`).
pub fn begin<P: Path>(max_steps: usize, watch_faults: bool) {
    let e = st();
    e.run = Run::IDLE;
    e.max = max_steps;
    e.rec = Recording::default();
    e.watch_faults = watch_faults;
    dispatch::register_handler(1, Some(debug_trap::<P>));
}

/// The session is over: every debug register off, #DB routed nowhere.
pub fn end() {
    let e = st();
    e.run = Run::IDLE;
    cpu::clear_exec_breakpoint();
    cpu::clear_write_watchpoint();
    cpu::clear_exec_breakpoint3();
    e.dr0 = 0;
    e.dr3 = 0;
    e.rec = Recording::default();
    dispatch::register_handler(1, None);
}

/// Before a run: its target (`None`: no other party inside the path),
/// and whether it is the dry run that records every boundary.
pub fn prepare(target: Option<Jump>, record: bool) {
    let e = st();
    e.run = Run {
        target: target.map_or(Target::NONE, |j| Target {
            set: true,
            k: j.k,
            anchor: j.anchor,
            eip: j.eip,
            occurrence: j.occurrence,
            sp: j.sp,
        }),
        recording: record,
        ..Run::IDLE
    };
    if record {
        // A dry run needs no anchor: DR0 off, so no stray hit lands in the
        // handler's own pushes.
        if e.dr0 != 0 {
            cpu::clear_exec_breakpoint();
            e.dr0 = 0;
        }
        // Room for the whole path before it starts: the #DB handler
        // pushes and must never reallocate.
        e.rec = Recording {
            eips: Vec::with_capacity(e.max),
            irq_on: Vec::with_capacity(e.max),
            lock_held: Vec::with_capacity(e.max),
            sp: Vec::with_capacity(e.max),
            overflow: false,
        };
    }
    if e.watch_faults {
        super::fault_loop::arm();
    }
}

/// After a run (its path and the other party's part): the `#PF` entry
/// is no longer watched.
pub fn run_over() {
    if st().watch_faults {
        super::fault_loop::disarm();
    }
}

/// The stepped code, on the stepped CPU, right before its path: the
/// trigger armed, and DR0 on the run's anchor.
pub fn arm(trigger: Trigger) {
    let e = st();
    if e.run.target.set && e.run.target.anchor > 0 && e.dr0 != e.run.target.eip {
        cpu::set_exec_breakpoint(e.run.target.eip);
        e.dr0 = e.run.target.eip;
    }
    e.run.trigger = trigger;
    e.run.k = 0;
    e.run.hits = 0;
    e.run.phase = Phase::Armed;
    match trigger {
        Trigger::Fault => {}
        Trigger::Exec(addr) => {
            if e.dr3 != addr {
                cpu::set_exec_breakpoint3(addr);
                e.dr3 = addr;
            }
        }
        Trigger::Write(addr) => cpu::set_write_watchpoint(addr),
    }
}

/// The stepped code, after its path: nothing more of it is stepped.
/// DR0 and DR3 stay where they are (see the top of this file).
pub fn disarm() {
    let e = st();
    e.run.phase = Phase::Idle;
    if e.run.following || matches!(e.run.trigger, Trigger::Write(_)) {
        cpu::clear_write_watchpoint();
    }
    e.run.following = false;
}

/// Boundaries the last run stepped through (the dry run: its length).
pub fn steps() -> usize {
    st().run.k
}

/// The last run hit the step limit.
pub fn overflowed() -> bool {
    st().run.overflow
}

/// The last run's target boundary was not the dry run's boundary k (the
/// stack depth differed there: the path had gone another way before it),
/// so nobody was let in and the run is void: run k again.  Seen where a
/// path runs through the scheduler, whose run queue is a ring buffer:
/// which way its index wraps depends on every earlier run.
pub fn misplaced() -> bool {
    st().run.misplaced
}

/// The dry run's boundaries.
pub fn take_recording() -> Recording {
    core::mem::take(&mut st().rec)
}

/// The #DB handler of a session of paths `P`.
fn debug_trap<P: Path>(frame: &mut TrapFrame) {
    let dr6 = cpu::take_dr6();
    super::fault_loop::on_debug(frame, dr6);
    if dr6 & (cpu::DR6_B0 | cpu::DR6_B3) != 0 {
        // An execution breakpoint is a fault: resume the instruction.
        frame.eflags |= cpu::EFLAGS_RF;
    }
    let e = st();
    if e.run.phase == Phase::Idle {
        frame.eflags &= !cpu::EFLAGS_TF;
        return;
    }
    if !P::own(frame) {
        P::other(frame, dr6);
        return;
    }
    if e.run.following && dr6 & cpu::DR6_B1 != 0 {
        e.run.following = false;
        cpu::clear_write_watchpoint();
        let a = P::followed(frame);
        e.after(frame, a);
        return;
    }
    let sti_caught = e.run.sti_next != 0 && frame.eip == e.run.sti_next && dr6 & cpu::DR6_B0 != 0;
    match e.run.phase {
        Phase::Armed if e.fired(dr6) => e.start::<P>(frame),
        Phase::Jumping if dr6 & cpu::DR6_B0 != 0 => e.hit::<P>(frame),
        Phase::Stepping if dr6 & cpu::DR6_BS != 0 || sti_caught => e.boundary::<P>(frame),
        // A stray hit.
        _ => frame.eflags &= !cpu::EFLAGS_TF,
    }
}

impl Engine {
    fn fired(&self, dr6: u32) -> bool {
        match self.run.trigger {
            Trigger::Fault => dr6 & cpu::DR6_B2 != 0,
            Trigger::Exec(_) => dr6 & cpu::DR6_B3 != 0,
            Trigger::Write(_) => dr6 & cpu::DR6_B1 != 0,
        }
    }

    /// How far below the trigger's the stack is at this boundary.
    fn depth(&self, frame: &TrapFrame) -> u16 {
        self.run.sp0.wrapping_sub(frame.interrupted_esp()) as u16
    }

    /// The trigger fired: boundary 0.
    fn start<P: Path>(&mut self, frame: &mut TrapFrame) {
        self.run.sp0 = frame.interrupted_esp();
        if let Trigger::Write(_) = self.run.trigger {
            cpu::clear_write_watchpoint();
        }
        // Boundary 0 is no hit of the anchor (counts start at 1).
        frame.eflags |= cpu::EFLAGS_RF;
        P::started(frame);
        self.run.k = 0;
        if self.run.target.set && self.run.target.anchor > 0 {
            self.run.phase = Phase::Jumping;
            self.run.hits = 0;
            frame.eflags &= !cpu::EFLAGS_TF;
        } else if self.run.target.set || self.run.recording {
            self.run.phase = Phase::Stepping;
            self.boundary::<P>(frame);
        } else {
            self.run.phase = Phase::Free;
            frame.eflags &= !cpu::EFLAGS_TF;
        }
    }

    /// DR0: the anchor's instruction ran again; its `occurrence`-th hit
    /// is the anchor boundary.
    fn hit<P: Path>(&mut self, frame: &mut TrapFrame) {
        if !self.run.target.set {
            frame.eflags &= !cpu::EFLAGS_TF;
            return;
        }
        if self.run.hits < self.run.target.occurrence {
            self.run.hits += 1;
            frame.eflags &= !cpu::EFLAGS_TF;
            return;
        }
        self.run.phase = Phase::Stepping;
        self.run.k = self.run.target.anchor;
        self.boundary::<P>(frame);
    }

    /// Boundary `self.run.k`: the instruction at `frame.eip` is next.
    fn boundary<P: Path>(&mut self, frame: &mut TrapFrame) {
        let k = self.run.k;
        // The boundary after a stepped `sti` that set IF: DR0 was armed to
        // catch it; off again, whichever #DB brought us here.
        let shadow = self.run.sti_next != 0 && frame.eip == self.run.sti_next;
        if self.run.sti_next != 0 {
            self.run.sti_next = 0;
            cpu::clear_exec_breakpoint();
            self.dr0 = 0;
        }
        if P::over(frame, k) {
            self.run.phase = Phase::Free;
            frame.eflags &= !cpu::EFLAGS_TF;
            return;
        }
        if k >= self.max {
            self.run.overflow = true;
            self.rec.overflow = self.run.recording;
            self.run.phase = Phase::Free;
            frame.eflags &= !cpu::EFLAGS_TF;
            return;
        }
        self.run.k += 1;
        if self.run.recording {
            self.rec.eips.push(frame.eip);
            self.rec
                .irq_on
                .push(frame.eflags & cpu::EFLAGS_IF != 0 && !shadow);
            // Read with one %gs load: this handler takes no lock before.
            self.rec
                .lock_held
                .push(vmfault::arch::x86::percpu::preempt_count_word() != 0);
            self.rec.sp.push(self.depth(frame));
            let a = P::note(frame, k);
            if a != After::Step {
                self.after(frame, a);
                return;
            }
        }
        if self.run.target.set && self.run.target.k == k {
            // Reached through DR0's counted hits: check the count met the
            // dry run's boundary (stepping from the trigger cannot miss).
            // If not, nobody is let in: the run is void, and the caller
            // runs k again.
            self.run.misplaced =
                self.run.target.anchor > 0 && self.depth(frame) != self.run.target.sp;
            // The anchor's instruction may run many times more in this run
            // (a loop) and in the other party's part on this CPU: a stray
            // #DB each costs more than clearing DR0 (see the top of this
            // file).  It also keeps the wait below free of DR0 hits.
            if self.dr0 != 0 {
                cpu::clear_exec_breakpoint();
                self.dr0 = 0;
            }
            let a = match self.run.misplaced {
                true => After::Free,
                false => P::deliver(frame, k),
            };
            self.after(frame, a);
            return;
        }
        self.catch_after_sti(frame);
        frame.eflags |= cpu::EFLAGS_TF | cpu::EFLAGS_RF;
    }

    /// The instruction at `frame.eip` is about to be stepped: if it is an
    /// `sti` that sets IF, DR0 goes on the next one (see `sti_next`).
    fn catch_after_sti(&mut self, frame: &TrapFrame) {
        // SAFETY: the stepped code's next instruction, kernel text.
        let opcode = unsafe { core::ptr::read_volatile(frame.eip as *const u8) };
        if opcode == STI && frame.eflags & cpu::EFLAGS_IF == 0 {
            self.run.sti_next = frame.eip + 1;
            cpu::set_exec_breakpoint(self.run.sti_next);
            self.dr0 = self.run.sti_next;
        }
    }

    fn after(&mut self, frame: &mut TrapFrame, a: After) {
        match a {
            After::Step => {
                self.run.phase = Phase::Stepping;
                self.catch_after_sti(frame);
                frame.eflags |= cpu::EFLAGS_TF | cpu::EFLAGS_RF;
            }
            After::Free => {
                self.run.phase = Phase::Free;
                frame.eflags &= !cpu::EFLAGS_TF;
            }
            After::Follow(word) => {
                self.run.phase = Phase::Free;
                self.run.following = true;
                cpu::set_write_watchpoint(word);
                frame.eflags &= !cpu::EFLAGS_TF;
            }
        }
    }
}
