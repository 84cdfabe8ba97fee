//! The interleaving explorer.  A hardware breakpoint (DR2) on the #PF
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
//! The stepping is the engine's (`engine`): only the baseline run steps
//! the whole path and records each boundary's instruction.  Run k then
//! reaches the last boundary at or before k that lies in the fault
//! handlers' own code (DR0 there would never stop the #DB path itself,
//! which shares the trap entry with the fault), steps from there to k,
//! and runs free once the interrupt is sent: a run costs tens of #DBs,
//! not the path's length.  With two CPUs, CPU B (`handoff`) runs its
//! whole access at k instead.

extern crate alloc;

use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use super::engine::{self, After, Boundaries, Jump, Reach, Trigger};
use super::handoff::{self, Handed};
use super::narrate::{self, Who};
use super::outcome::Mark;
use super::scenario::Scenario;
use vmfault::arch::x86::entry::{stub_address, TrapFrame};
use vmfault::arch::x86::irq::{self, IrqFlags};
use vmfault::arch::x86::{apic, cpu, dispatch, pit, smp};
use vmfault::fixup::{self, Caught};
use vmfault::mm::fault;
use vmfault::racy_cell::RacyCell;
use vmfault::sched;

/// Nested test interrupt (first level): a self-IPI.
pub const NESTED_VECTOR: u8 = 0xF1;
/// Second-level test interrupt: another self-IPI vector.
pub const DEEP_VECTOR: u8 = 0xF2;
/// Third-level test interrupt (three nested levels, question 1's sample).
pub const DEEPER_VECTOR: u8 = 0xF4;
const MAX_STEPS: usize = 6000;
/// A nested fault path longer than this is a hang of that level.
const MAX_NESTED_STEPS: usize = 2000;
const OUTER_MARK: u32 = 0x0A11_0001;
const NESTED_MARK: u32 = 0x0A11_0002;
const DEEP_MARK: u32 = 0x0A11_0003;
const DEEPER_MARK: u32 = 0x0A11_0004;

/// Where the nested fault (the one the first nested interrupt's handler
/// takes) lets the second interrupt in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inner {
    /// At its first boundary with IF=1 (race.md's "two nested levels"
    /// row: one inner interleaving per outer boundary).
    FirstOpen,
    /// At its boundary j (question 1's pairs).
    At(usize),
    /// Never: step it all and record each boundary (a pair's dry run).
    Record,
}

/// How deep a run nests: `levels` nested interrupts (1: the nested
/// interrupt alone, 2: the seed's question 1, 3: one more), and where the
/// first nested fault lets the second interrupt in.  A deeper fault than
/// the first nested one always lets the next interrupt in at its first
/// boundary with IF=1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Nest {
    pub levels: u8,
    pub inner: Inner,
}

impl Nest {
    pub const ONE: Nest = Nest {
        levels: 1,
        inner: Inner::FirstOpen,
    };
    pub const TWO: Nest = Nest {
        levels: 2,
        inner: Inner::FirstOpen,
    };

    fn deep(self) -> bool {
        self.levels >= 2
    }
}

/// One nested fault path's stepping: the fault taken inside the nested
/// interrupt handler of level `i + 1`, which lets interrupt `i + 2` in.
#[derive(Clone, Copy)]
struct Level {
    stepping: bool,
    /// Its next boundary.
    k: usize,
    /// The next interrupt was sent (at boundary `k - 1`).
    sent: bool,
    /// Its path ended (returned to `touch`, or its handler died) before
    /// the boundary it was to send at.
    ended: bool,
    /// As the engine's `sti_next`: the instruction after a stepped `sti`.
    sti_next: u32,
}

const LEVEL0: Level = Level {
    stepping: false,
    k: 0,
    sent: false,
    ended: false,
    sti_next: 0,
};

/// The first nested fault path's dry run: for each boundary, could an
/// interrupt be taken there (IF=1, not in an `sti` shadow).
struct InnerRecording {
    open: [bool; MAX_NESTED_STEPS],
    len: usize,
    overflow: bool,
}

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

/// What one run sets and reads.  `run_once` makes it new for each run,
/// whole (the test interrupts' flags with it), so no run can inherit a
/// field of the last one that a field-by-field reset forgot.
struct Run {
    /// The interrupt level of the outer fault: deeper #DBs are the nested
    /// handlers'.
    base_depth: u32,
    nest: Nest,
    /// The nested fault paths of levels 1 and 2.
    lv: [Level; 2],
    bad_before: u32,
    delivered_eip: u32,
    /// A two-CPU run: boundary k hands off to CPU B.
    other_cpu: bool,
    /// CPU B did not finish its access in time.
    b_hang: bool,
    /// The outer fault's faulting instruction (in `touch`), where its
    /// `iret` returns: a replay's end point; and the stack pointer there.
    fault_eip: u32,
    fault_sp: u32,
    /// Where the first nested interrupt came in, and which handlers ran:
    /// written by the test interrupts' handlers, read after the run (the
    /// InIrq victim spins on `outer_done`).
    nested_saw: AtomicU32,
    nested_done: AtomicBool,
    deep_done: AtomicBool,
    deeper_done: AtomicBool,
    outer_done: AtomicBool,
}

impl Run {
    const fn new(nest: Nest, other_cpu: bool) -> Run {
        Run {
            base_depth: 0,
            nest,
            lv: [LEVEL0; 2],
            bad_before: 0,
            delivered_eip: 0,
            other_cpu,
            b_hang: false,
            fault_eip: 0,
            fault_sp: 0,
            nested_saw: AtomicU32::new(0),
            nested_done: AtomicBool::new(false),
            deep_done: AtomicBool::new(false),
            deeper_done: AtomicBool::new(false),
            outer_done: AtomicBool::new(false),
        }
    }
}

static RUN: RacyCell<Run> = RacyCell::new(Run::new(Nest::ONE, false));
/// The toucher's code (`touch`): back there, the outer fault path is
/// over.  One value for a whole exploration.
static TOUCHER: RacyCell<(u32, u32)> = RacyCell::new((0, 0));
static TARGETS: RacyCell<(u32, u32, u32, u32)> = RacyCell::new((0, 0, 0, 0));
/// The fourth slot's target (three nested levels; 0 otherwise).
static V: AtomicU32 = AtomicU32::new(0);
static INNER_REC: RacyCell<InnerRecording> = RacyCell::new(InnerRecording {
    open: [false; MAX_NESTED_STEPS],
    len: 0,
    overflow: false,
});

fn inner_rec() -> &'static mut InnerRecording {
    // SAFETY: written by the #DB handler during a pair's dry run, read by
    // the driver after it.
    unsafe { &mut *INNER_REC.get() }
}

fn st() -> &'static mut Run {
    // SAFETY: touched by the #DB handler and the driver, never at the same
    // time: the driver makes it before a run and reads it after, and the
    // handler runs with interrupts off.
    unsafe { &mut *RUN.get() }
}

fn toucher() -> (u32, u32) {
    // SAFETY: written by the driver before an exploration's runs.
    unsafe { *TOUCHER.get() }
}

/// Where "back in the toucher" is, for an exploration: `code`'s function.
fn set_toucher(code: u32) -> Option<()> {
    let (a, sz) = vmfault::symbols::lookup(code).map(|s| (s.addr, s.size))?;
    // SAFETY: no run is in progress.
    unsafe { *TOUCHER.get() = (a, a + sz) };
    Some(())
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
    st().nested_saw.store(frame.eip, Ordering::SeqCst);
    let (_, y, z, _) = targets();
    let s = st();
    let t = if s.nest.deep() { z } else { y };
    if narrate::on() {
        narrate::party_starts(&alloc::format!(
            "nested interrupt (vector {:#x}): its handler writes {:#010x}{}",
            NESTED_VECTOR,
            t,
            if s.nest.deep() {
                ", in the next stale slot (a second interrupt will come in its fault)"
            } else {
                ", another page of the outer fault's stale slot"
            }
        ));
    }
    touch(t, NESTED_MARK);
    narrate::party_done("nested handler done: its vmalloc fault synced the slot; iret");
    st().nested_done.store(true, Ordering::SeqCst);
}

fn deep_irq(_: &mut TrapFrame) {
    let (_, _, _, w) = targets();
    if narrate::on() {
        narrate::party_starts(&alloc::format!(
            "second nested interrupt (vector {:#x}), inside the first one's vmalloc fault: writes {:#010x}",
            DEEP_VECTOR,
            w
        ));
    }
    touch(w, DEEP_MARK);
    narrate::party_done("second nested handler done; iret");
    st().deep_done.store(true, Ordering::SeqCst);
}

fn deeper_irq(_: &mut TrapFrame) {
    touch(V.load(Ordering::SeqCst), DEEPER_MARK);
    st().deeper_done.store(true, Ordering::SeqCst);
}

fn outer_irq(_: &mut TrapFrame) {
    let (x, _, _, _) = targets();
    arm(1);
    touch(x, OUTER_MARK);
    engine::disarm();
    st().outer_done.store(true, Ordering::SeqCst);
}

/// The outer fault is the next one, at interrupt level `base_depth`.
fn arm(base_depth: u32) {
    st().base_depth = base_depth;
    engine::arm(Trigger::Fault);
}

fn victim_thread(variant: usize) {
    let (x, _, _, _) = targets();
    if variant == 0 {
        arm(0);
        touch(x, OUTER_MARK);
        engine::disarm();
        st().outer_done.store(true, Ordering::SeqCst);
    } else {
        // Make the PIT fire once, soon; its handler takes the fault.
        pit::set_oneshot(200);
        irq::request_irq(irq::TIMER_IRQ_VECTOR, outer_irq, IrqFlags::empty());
        while !st().outer_done.load(Ordering::SeqCst) {
            core::hint::spin_loop();
        }
        irq::free_irq(irq::TIMER_IRQ_VECTOR);
    }
}

/// The outer fault's path, for the engine.
struct OuterFault;

impl engine::Path for OuterFault {
    fn own(_: &TrapFrame) -> bool {
        irq::depth() <= st().base_depth
    }

    fn other(frame: &mut TrapFrame, dr6: u32) {
        nested_step(frame, dr6);
    }

    fn started(frame: &TrapFrame) {
        let s = st();
        s.bad_before = fault::bad_areas();
        // SAFETY: boundary 0 is the #PF entry's first instruction, so the
        // CPU's #PF frame (error code, then EIP) is the interrupted stack.
        s.fault_eip =
            unsafe { core::ptr::read_volatile((frame.interrupted_esp() + 4) as *const u32) };
        // Above the CPU's error code, EIP, CS and EFLAGS.
        s.fault_sp = frame.interrupted_esp() + 16;
    }

    fn over(frame: &TrapFrame, k: usize) -> bool {
        // Returned to the toucher, or dying in bad_area.
        let s = st();
        let end = toucher();
        let back_in_toucher = frame.eip >= end.0 && frame.eip < end.1 && k > 0;
        back_in_toucher || fault::bad_areas() != s.bad_before
    }

    fn deliver(frame: &mut TrapFrame, k: usize) -> After {
        narrate::boundary(frame, k);
        deliver(frame)
    }

    fn followed(_: &mut TrapFrame) -> After {
        after(handoff::wait_again())
    }
}

/// Send the nested interrupt at this boundary (masked here, it is taken
/// right after our iret), then let the run go on unstepped; the #PF
/// entry stays watched (DR2), so a nested fault is still seen (depth-2
/// runs).  In a two-CPU run, hand off to CPU B instead: it runs its whole
/// access while this CPU waits here, between two instructions of the
/// fault path.
fn deliver(frame: &mut TrapFrame) -> After {
    let s = st();
    if s.other_cpu {
        s.delivered_eip = frame.eip;
        return after(handoff::hand_off());
    }
    if frame.eflags & cpu::EFLAGS_IF != 0 {
        apic::self_ipi(NESTED_VECTOR);
        s.delivered_eip = frame.eip;
    }
    After::Free
}

fn after(h: Handed) -> After {
    match h {
        Handed::Done => After::Free,
        Handed::Blocked(word) => After::Follow(word),
        Handed::Hang => {
            st().b_hang = true;
            After::Free
        }
    }
}

/// CPU B's part (`handoff`), in the victim's mm or another one: it
/// flushes its TLB (the driver made the slot stale again since B's last
/// access) and writes the nested test mark to `y`, another page of the
/// outer fault's slot.
fn cpu_b() {
    cpu::flush_tlb();
    let (_, y, _, _) = targets();
    if narrate::on() {
        narrate::party_starts(&alloc::format!(
            "CPU B writes {:#010x}, another page of the same stale slot",
            y
        ));
    }
    touch(y, NESTED_MARK);
    narrate::party_done("CPU B's access is done");
}

/// A #DB at a nested interrupt level: a fault inside a nested handler.
/// The fault path of nesting level L (taken in interrupt L's handler) is
/// stepped from its `#PF` entry (DR2) when interrupt L + 1 is to come in
/// its path; it lets that interrupt in where `Nest` says (the first
/// nested path) or at its first boundary with IF=1 (a deeper one), then
/// runs free.  Its boundaries are the outer path's kind: one per
/// instruction, an `sti`'s next instruction caught by DR0 on every
/// emulator (see the engine's `sti_next`) and shut to interrupts.
fn nested_step(frame: &mut TrapFrame, dr6: u32) {
    let s = st();
    let level = irq::depth().saturating_sub(s.base_depth) as usize;
    if level == 0 || level >= s.nest.levels as usize {
        frame.eflags &= !cpu::EFLAGS_TF;
        return;
    }
    let inner = match level {
        1 => s.nest.inner,
        _ => Inner::FirstOpen,
    };
    let bad_before = s.bad_before;
    let end = toucher();
    let l = &mut s.lv[level - 1];
    if dr6 & cpu::DR6_B2 != 0 && !l.stepping && !l.sent && !l.ended {
        // This level's fault: its `#PF` entry is its boundary 0.
        l.stepping = true;
        l.k = 0;
    }
    if !l.stepping {
        frame.eflags &= !cpu::EFLAGS_TF;
        return;
    }
    let shadow = l.sti_next != 0 && frame.eip == l.sti_next;
    if l.sti_next != 0 {
        l.sti_next = 0;
        cpu::clear_exec_breakpoint();
    }
    let back = l.k > 0 && frame.eip >= end.0 && frame.eip < end.1;
    if back || fault::bad_areas() != bad_before || l.k >= MAX_NESTED_STEPS {
        // Its path is over (or its handler is dying, or it hangs) before
        // the boundary it was to let the next interrupt in at.
        l.stepping = false;
        l.ended = true;
        if inner == Inner::Record {
            let r = inner_rec();
            r.len = l.k;
            r.overflow = l.k >= MAX_NESTED_STEPS;
        }
        frame.eflags &= !cpu::EFLAGS_TF;
        return;
    }
    let open = frame.eflags & cpu::EFLAGS_IF != 0 && !shadow;
    let k = l.k;
    l.k += 1;
    let send = match inner {
        Inner::FirstOpen => open,
        Inner::At(j) => k == j,
        Inner::Record => {
            inner_rec().open[k] = open;
            false
        }
    };
    if send {
        l.stepping = false;
        if open {
            l.sent = true;
            apic::self_ipi(if level == 1 {
                DEEP_VECTOR
            } else {
                DEEPER_VECTOR
            });
        } else {
            // Boundary j is shut to interrupts in this run: not a pair a
            // CPU can produce (the driver asks only open ones; counted).
            l.ended = true;
        }
        frame.eflags &= !cpu::EFLAGS_TF;
        return;
    }
    // SAFETY: the stepped code's next instruction, kernel text.
    let opcode = unsafe { core::ptr::read_volatile(frame.eip as *const u8) };
    if opcode == engine::STI && frame.eflags & cpu::EFLAGS_IF == 0 {
        l.sti_next = frame.eip + 1;
        cpu::set_exec_breakpoint(l.sti_next);
    }
    frame.eflags |= cpu::EFLAGS_TF | cpu::EFLAGS_RF;
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
    /// Void runs run again, boundaries left unmeasured, runs that ended
    /// before their boundary.
    pub checks: engine::Checks,
    /// Two CPUs: hand-offs measured, and their cycles from A's release of
    /// B to B's start.
    pub handoffs: u64,
    pub handoff_cycles: u64,
    /// The last run: its boundary, how the stepped side and CPU B ended
    /// (a replay's one run, `Boundaries::Only`).
    pub last_run: Option<(usize, Outcome, Outcome)>,
}

impl Report {
    /// Mean hand-off time, in host nanoseconds.
    pub fn handoff_ns(&self) -> u64 {
        handoff::mean_ns(self.handoffs, self.handoff_cycles)
    }
}

/// For each of `eips`: is it inside a fault handler function
/// (`do_page_fault_*`, `vmalloc_fault*`, 2.4.1's checks), which no #DB
/// runs?  The path runs a function for many boundaries in a row: one
/// symbol-table lookup per function entered, not per boundary.
fn fault_handler_code(eips: &[u32]) -> Vec<bool> {
    let mut syms = vmfault::symbols::Lookups::default();
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

/// Run once, delivering the nested interrupt at `target`'s boundary
/// (`None`: never), reached by its jump; `record`: the dry run.
fn run_once(
    sc: &Scenario,
    variant: Variant,
    target: Option<Jump>,
    nest: Nest,
    record: bool,
) -> Outcome {
    sc.restale();
    narrate::entries("before the run");
    engine::prepare(target, record);
    handoff::reset();
    *st() = Run::new(nest, variant.other_cpu());
    let s = st();
    let bad0 = fault::bad_areas();
    let t = sched::run_here(
        "victim",
        victim_thread,
        (variant == Variant::InIrq) as usize,
        Some(sc.mm.clone()),
    );
    // A narrated run (a replay) lets its oops report through.
    let r = fixup::catch(!narrate::on(), || {
        sched::join(&t);
    });
    engine::disarm();
    engine::run_over();
    irq::free_irq(irq::TIMER_IRQ_VECTOR);
    vmfault::sched::drop_lazy_mm();
    let (x, y, z, w) = targets();
    let v = V.load(Ordering::SeqCst);
    let deep = nest.deep();
    let out = match r {
        Err(c) => classify(&c, bad0, x, if deep { [z, w, v] } else { [y, 0, 0] }),
        Ok(()) if engine::overflowed() || s.b_hang => Outcome::Hang,
        Ok(()) => {
            let outer_ok = read(x) == OUTER_MARK;
            let b_wrote = handoff::outcome() == Some(Outcome::Clean);
            let nested_ok = (!st().nested_done.load(Ordering::SeqCst) && !b_wrote)
                || read(if deep { z } else { y }) == NESTED_MARK;
            let deep_ok = !st().deep_done.load(Ordering::SeqCst) || read(w) == DEEP_MARK;
            let deeper_ok = !st().deeper_done.load(Ordering::SeqCst) || read(v) == DEEPER_MARK;
            if outer_ok && nested_ok && deep_ok && deeper_ok {
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
    if v != 0 {
        touch(v, 0);
    }
    out
}

/// How a run that a recovery point caught ended: `x` the outer fault's
/// address, `nested` each nested level's (0: none).
fn classify(c: &Caught, bad0: u32, x: u32, nested: [u32; 3]) -> Outcome {
    if engine::overflowed() {
        return Outcome::Hang;
    }
    if super::fault_loop::caught(c) {
        return Outcome::FaultLoop;
    }
    if c.vector == 14 && fault::bad_areas() != bad0 {
        let why = fault::last_bad_area();
        // Which handler died: the interrupt level its bad_area ran at,
        // counted from the outer fault's.
        let level = fault::last_bad_area_depth().saturating_sub(st().base_depth);
        if level > 0 {
            let own = nested.get(level as usize - 1).copied().unwrap_or(0);
            return match c.cr2 == own {
                true => Outcome::NestedOops(level as u8, why),
                false => Outcome::NestedOopsClobberedCr2(level as u8, why),
            };
        }
        if c.cr2 == x {
            return Outcome::Oops(why);
        }
        // The outer handler died on another address: it read a nested
        // fault's CR2.
        return Outcome::OopsClobberedCr2(why);
    }
    Outcome::OtherOops(c.vector)
}

/// A fresh scenario, the engine's #DB handler installed (the #PF entry
/// watched), oops reports silenced.
fn prepare() -> Option<Scenario> {
    if !apic::present() {
        return None;
    }
    let sc = Scenario::new()?;
    // SAFETY: no run is in progress.
    unsafe { *TARGETS.get() = (sc.x, sc.y, sc.z, sc.w) };
    set_toucher(touch as *const () as u32)?;
    engine::begin::<OuterFault>(MAX_STEPS, true);
    vmfault::oops::set_silent(true);
    Some(sc)
}

/// Explore the boundaries of the outer fault path: every one with
/// `stride` 1, every `stride`-th otherwise (the test suite samples the
/// slower variants; `make experiments` tries them all).
pub fn explore(variant: Variant, deep: bool, sel: impl Into<Boundaries>) -> Option<Report> {
    explore_with(variant, deep, sel, Reach::Anchors)
}

/// `explore`, each run reaching its boundary the way `reach` says.
pub fn explore_with(
    variant: Variant,
    deep: bool,
    sel: impl Into<Boundaries>,
    reach: Reach,
) -> Option<Report> {
    let sel = sel.into();
    if variant.other_cpu() && !smp::cpu_online(1) {
        return None;
    }
    let sc = prepare()?;
    request_irqs();

    let mut rep = Report::default();
    if !sc.stale() {
        // PAE (shared kernel PMD) or eager (synced at vmalloc time): the
        // victim mm already has every entry, so no vmalloc fault happens
        // and there is no fault path to explore.
        rep.baseline = Some(Outcome::Clean);
        finish();
        return Some(rep);
    }
    // CPU B, for the whole exploration.
    let b = match variant {
        Variant::OtherCpu { same_mm } => {
            let mm = if same_mm { &sc.mm } else { &sc.mm_b };
            match handoff::stand(cpu_b, Some(mm.clone())) {
                Some(b) => Some(b),
                None => {
                    finish();
                    return None;
                }
            }
        }
        _ => None,
    };
    let nest = if deep { Nest::TWO } else { Nest::ONE };
    rep.baseline = Some(run_once(&sc, variant, None, nest, true));
    let rec = engine::take_recording();
    rep.stepped = rec.len();
    rep.with_if = rec.irq_on.iter().filter(|x| **x).count();
    rep.cr2_read_at = rec.eips.iter().position(|&e| is_mov_from_cr2(e));
    // Another CPU does not wait for this one's IF: in a two-CPU run every
    // boundary is open.
    let open = |k: usize| rec.irq_on[k] || variant.other_cpu();
    rep.marks = (0..rec.len())
        .map(|k| match open(k) {
            true => Mark::Skipped,
            false => Mark::Masked,
        })
        .collect();
    // DR0 may only stop an instruction the #DB path never runs itself (a
    // breakpoint in its own entry code or in a core helper it shares
    // would recurse): the fault handlers' own code.
    let own = fault_handler_code(&rec.eips);
    let wanted = (0..rec.len())
        .step_by(sel.stride())
        .filter(|&k| open(k) && sel.keeps(k));
    let jumps = rec.jumps(wanted, reach, |k| own[k]);
    let t0 = cpu::rdtsc();
    for j in jumps {
        let k = j.k;
        if let Some(h) = narrate::requested() {
            let (x, _, z, w) = targets();
            let victim = ("victim mm", sc.mm.pgd);
            let other = ("B's mm", sc.mm_b.pgd);
            let init = ("init_mm", vmfault::mm::init::swapper_pg_dir());
            let two_mms = variant == Variant::OtherCpu { same_mm: false };
            let (all, one) = ([x, z, w], [x]);
            let (three, two) = ([victim, other, init], [victim, init]);
            narrate::begin(&narrate::Setup {
                handle: h,
                k,
                n: rec.len(),
                eip: rec.eips[k],
                who: if variant.other_cpu() {
                    Who::OtherCpu
                } else {
                    Who::Nested
                },
                party_pc: if variant.other_cpu() {
                    cpu_b as *const () as u32
                } else {
                    stub_address(NESTED_VECTOR)
                },
                end_pc: st().fault_eip,
                end_sp: st().fault_sp,
                addrs: if deep { &all } else { &one },
                dirs: if two_mms { &three } else { &two },
            });
        }
        let Some(out) = rep
            .checks
            .placed(|| run_once(&sc, variant, Some(j), nest, false))
        else {
            narrate::end();
            continue;
        };
        rep.runs += 1;
        rep.checks.not_entered += usize::from(st().delivered_eip == 0);
        if rep.cr2_read_at.is_some_and(|c| k <= c) {
            rep.tried_before_cr2 += 1;
        }
        let saw = st().nested_saw.load(Ordering::SeqCst);
        if saw != 0 && saw != rec.eips[k] {
            rep.late += 1;
            if rep.late_examples.len() < 4 {
                rep.late_examples.push((rec.eips[k], saw));
            }
        }
        if let Some(c) = handoff::handoff_cycles() {
            rep.handoffs += 1;
            rep.handoff_cycles += c;
        }
        let b_out = handoff::outcome().unwrap_or(Outcome::Clean);
        let b_hang = st().b_hang;
        rep.last_run = Some((k, if b_hang { Outcome::Hang } else { out }, b_out));
        narrate::entries("after the run");
        narrate::end();
        rep.marks[k] = Mark::of(if b_hang { Outcome::Hang } else { out }, b_out);
        if b_hang {
            // CPU B is still inside its access (or stuck there): it would
            // finish during a later run and corrupt it.  The exploration
            // stops here; the runs count says how far it got.
            rep.failures += 1;
            rep.failing.push((k, rec.eips[k], Outcome::Hang));
            break;
        }
        if variant.other_cpu() && b_out.failed() {
            rep.b_failures += 1;
            rep.b_failing.push((k, b_out));
        }
        if out.failed() {
            rep.failures += 1;
            if rep.cr2_read_at.is_some_and(|c| k <= c) {
                rep.failures_before_cr2 += 1;
            }
            rep.failing.push((k, rec.eips[k], out));
        }
    }
    rep.run_cycles = cpu::rdtsc() - t0;
    rep.eips = rec.eips;
    if let Some(b) = b {
        b.end();
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
        let out = run_once(&sc, Variant::Thread, None, Nest::ONE, true);
        let rec = engine::take_recording();
        let cr2 = rec.eips.iter().position(|&e| is_mov_from_cr2(e));
        Some((rec.len(), out, cr2))
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
    let _ = set_toucher(int3_once as *const () as u32);
    *st() = Run::new(Nest::ONE, false);
    st().base_depth = irq::depth();
    engine::begin::<OuterFault>(MAX_STEPS, false);
    engine::prepare(None, true);
    engine::arm(Trigger::Exec(stub_address(3)));
    int3_once();
    engine::disarm();
    let n = engine::steps();
    engine::end();
    dispatch::register_handler(3, old);
    n
}

#[inline(never)]
fn int3_once() {
    // SAFETY: a breakpoint trap into the do-nothing handler above.
    unsafe { core::arch::asm!("int3") }
}

fn request_irqs() {
    irq::request_irq(NESTED_VECTOR, nested_irq, IrqFlags::empty());
    irq::request_irq(DEEP_VECTOR, deep_irq, IrqFlags::empty());
    irq::request_irq(DEEPER_VECTOR, deeper_irq, IrqFlags::empty());
}

fn finish() {
    vmfault::oops::set_silent(false);
    irq::free_irq(NESTED_VECTOR);
    irq::free_irq(DEEP_VECTOR);
    irq::free_irq(DEEPER_VECTOR);
    V.store(0, Ordering::SeqCst);
    engine::end();
}

/// Question 1's pairs: every (outer boundary, nested boundary) where both
/// can take an interrupt.  Run (k, j) delivers the first nested interrupt
/// at outer boundary k; the fault its handler takes is stepped from its
/// `#PF` entry and lets the second interrupt in at its boundary j; with
/// three levels the fault of the second interrupt's handler lets a third
/// in at its first boundary with IF=1.
#[derive(Clone, Debug, Default)]
pub struct PairsReport {
    pub levels: u8,
    /// The outer path's boundaries, and the open ones explored.
    pub outer_stepped: usize,
    pub outer_runs: usize,
    /// Nested boundaries stepped in the dry runs (over all k), and of
    /// them the ones shut to interrupts (IF=0 or an `sti` shadow): no
    /// pair there.
    pub inner_stepped: usize,
    pub inner_shut: usize,
    /// Pairs run, and how they ended.
    pub pairs: usize,
    pub clean: usize,
    pub oopses: usize,
    pub hangs: usize,
    pub fault_loops: usize,
    pub corrupt: usize,
    pub other: usize,
    /// Runs where the nested path ended before its boundary j (so no
    /// second interrupt came): a path that differs from its dry run.
    pub not_sent: usize,
    /// The longest nested path seen, and the outer boundaries whose
    /// dry run found no nested fault at all.
    pub inner_max: usize,
    pub no_inner_fault: usize,
    pub first_failing: Option<(usize, usize, Outcome)>,
    /// Each failure reason and its count.
    pub reasons: Vec<(Outcome, usize)>,
    pub checks: engine::Checks,
    pub run_cycles: u64,
}

impl PairsReport {
    fn count(&mut self, k: usize, j: usize, out: Outcome) {
        self.pairs += 1;
        match out {
            Outcome::Clean => self.clean += 1,
            Outcome::Hang => self.hangs += 1,
            Outcome::FaultLoop => self.fault_loops += 1,
            Outcome::Corrupt => self.corrupt += 1,
            Outcome::OtherOops(_) => self.other += 1,
            _ => self.oopses += 1,
        }
        if out.failed() {
            self.first_failing.get_or_insert((k, j, out));
            match self.reasons.iter_mut().find(|r| r.0 == out) {
                Some(r) => r.1 += 1,
                None => self.reasons.push((out, 1)),
            }
        }
    }
}

/// A pair's mark in its outer boundary's row (`explore_pairs`'s `row`).
pub fn pair_code(out: Outcome) -> char {
    match out {
        Outcome::Clean => 'c',
        Outcome::Oops(_) | Outcome::OopsClobberedCr2(_) => 'f',
        Outcome::NestedOops(..) | Outcome::NestedOopsClobberedCr2(..) => 'n',
        Outcome::Hang => 'h',
        Outcome::FaultLoop => 'l',
        Outcome::Corrupt => 'x',
        Outcome::OtherOops(_) => 'o',
    }
}

/// Explore question 1's pairs with `levels` nested interrupts (2 or 3),
/// every `outer_stride`-th open outer boundary and every `inner_stride`-th
/// nested one; `row(k, codes)` gets each outer boundary's row as it is
/// done (one mark per nested boundary: `pair_code`, `s` shut, `-` not
/// run), so a boot that dies mid-way (a reset) still says how far it got.
pub fn explore_pairs(
    levels: u8,
    outer_stride: usize,
    inner_stride: usize,
    mut row: impl FnMut(usize, &str),
) -> Option<PairsReport> {
    let mut sc = prepare()?;
    if levels >= 3 && !sc.add_fourth_slot() {
        finish();
        return None;
    }
    V.store(sc.v, Ordering::SeqCst);
    request_irqs();
    let mut rep = PairsReport {
        levels,
        ..PairsReport::default()
    };
    if !sc.stale() {
        finish();
        return Some(rep);
    }
    let nest = |inner| Nest { levels, inner };
    run_once(&sc, Variant::Thread, None, nest(Inner::FirstOpen), true);
    let rec = engine::take_recording();
    rep.outer_stepped = rec.len();
    let own = fault_handler_code(&rec.eips);
    let wanted = (0..rec.len())
        .step_by(outer_stride.max(1))
        .filter(|&k| rec.irq_on[k]);
    let jumps = rec.jumps(wanted, Reach::Anchors, |k| own[k]);
    let t0 = cpu::rdtsc();
    let mut codes = alloc::string::String::new();
    for jump in jumps {
        let k = jump.k;
        // The nested fault's dry run at this outer boundary.
        inner_rec().len = 0;
        inner_rec().overflow = false;
        let Some(_) = rep
            .checks
            .placed(|| run_once(&sc, Variant::Thread, Some(jump), nest(Inner::Record), false))
        else {
            continue;
        };
        rep.outer_runs += 1;
        let len = inner_rec().len;
        if len == 0 {
            rep.no_inner_fault += 1;
        }
        rep.inner_stepped += len;
        rep.inner_max = rep.inner_max.max(len);
        codes.clear();
        for j in 0..len {
            // Only a dry run writes it: read each before its run.
            if !inner_rec().open[j] {
                rep.inner_shut += 1;
                codes.push('s');
                continue;
            }
            if j % inner_stride.max(1) != 0 {
                codes.push('-');
                continue;
            }
            let inner = nest(Inner::At(j));
            let Some(out) = rep
                .checks
                .placed(|| run_once(&sc, Variant::Thread, Some(jump), inner, false))
            else {
                codes.push('?');
                continue;
            };
            if !st().lv[0].sent {
                rep.not_sent += 1;
                codes.push('?');
                continue;
            }
            rep.count(k, j, out);
            codes.push(pair_code(out));
        }
        row(k, &codes);
    }
    rep.run_cycles = cpu::rdtsc() - t0;
    finish();
    Some(rep)
}
