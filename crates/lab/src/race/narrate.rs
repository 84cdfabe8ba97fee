//! A replay's narration (`race=HANDLE`, `replay.rs`): what one explored
//! run does, told on the console as it happens, and the state gdb reads
//! (`RACE_REPLAY`, tests/host/gdb/vmfault-gdb.py's `vm-race`).  Silent
//! unless a replay turned it on for its narrated run: the explorers call
//! these at their few points of interest and nothing else changes.
//!
//! The points, in a run's order: `begin` (the run, its boundary, who
//! comes in there; the entries before), `boundary` (the #DB handler,
//! stopped at boundary k: the instruction, the entries, then
//! `race_boundary_reached`, where `make gdb RACE=` stops), `party_starts`
//! and `party_done` (the nested handler, CPU B's access, the preempting
//! thread), then the run's end (`replay.rs`: the outcome and its
//! explanation).  Printing from the #DB handler and from the nested
//! handler is safe: the stepped path runs free from its target on, and no
//! party holds the console lock there.

use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use crate::dump::print_walk;
use vmfault::arch::x86::entry::TrapFrame;
use vmfault::arch::x86::{cpu, percpu};
use vmfault::mm::addr::PhysAddr;
use vmfault::mm::addr::VirtAddr;
use vmfault::mm::walk::translate;
use vmfault::println;
use vmfault::racy_cell::RacyCell;

/// Who comes in at the boundary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Who {
    /// A nested interrupt on the stepped CPU (a self-IPI, taken right
    /// after the #DB handler's `iret`).
    Nested = 1,
    /// The other CPU's whole access, while this one waits at k.
    OtherCpu = 2,
    /// A preemption: the self-IPI's interrupt exit switches to B
    /// (`preempt=full`).
    Preemption = 3,
    /// The other CPU reads the entry being written, with this one
    /// stopped at k (torn PAE entries).
    Reader = 4,
}

impl Who {
    /// What happens next, at the boundary.
    fn now(self) -> &'static str {
        match self {
            Who::Nested => "the nested interrupt comes in",
            Who::OtherCpu => "CPU 1 runs its access",
            Who::Preemption => "B preempts A",
            Who::Reader => "CPU 1 reads the entry",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Who::Nested => "a nested interrupt (self-IPI, taken before the next instruction)",
            Who::OtherCpu => "CPU 1's whole access, while CPU 0 waits here",
            Who::Preemption => "a preemption (self-IPI; its interrupt exit switches to B)",
            Who::Reader => "CPU 1 reads the entry, while CPU 0 waits here",
        }
    }
}

/// Most address spaces and addresses a replay shows.
pub const DIRS: usize = 3;
pub const ADDRS: usize = 3;

/// What gdb's `vm-race` reads (by its plain name): plain words and
/// NUL-ended text, so the helper needs no Rust type layout.
#[repr(C)]
pub struct ReplayState {
    /// 1 from the narrated run's start to its end.
    pub active: u32,
    /// 1 once the stepped CPU is stopped at boundary k.
    pub at_boundary: u32,
    pub k: u32,
    /// Boundaries the dry run stepped.
    pub n: u32,
    /// Boundary k's instruction.
    pub eip: u32,
    /// `Who` comes in at k.
    pub who: u32,
    /// Where the other party's first instruction is (an interrupt's
    /// entry stub, CPU B's function), and where the stepped path is over
    /// (`end_pc`): `make gdb RACE=` breaks on both.
    pub party_pc: u32,
    pub end_pc: u32,
    /// The stack pointer the stepped code has at `end_pc` (0: any): the
    /// outer fault's `iret` back into `touch`, not a nested handler's
    /// own call of it.
    pub end_sp: u32,
    /// The addresses whose entries the narration shows, and in which
    /// directories (physical), with a label each.
    pub addrs: [u32; ADDRS],
    pub dirs: [u32; DIRS],
    pub labels: [[u8; 16]; DIRS],
    pub handle: [u8; 96],
}

#[no_mangle]
pub static RACE_REPLAY: RacyCell<ReplayState> = RacyCell::new(ReplayState {
    active: 0,
    at_boundary: 0,
    k: 0,
    n: 0,
    eip: 0,
    who: 0,
    party_pc: 0,
    end_pc: 0,
    end_sp: 0,
    addrs: [0; ADDRS],
    dirs: [0; DIRS],
    labels: [[0; 16]; DIRS],
    handle: [0; 96],
});

static ON: AtomicBool = AtomicBool::new(false);
/// The target boundary of the narrated run (the explorers set theirs).
static TARGET: AtomicU32 = AtomicU32::new(u32::MAX);
/// The handle of the run a replay asks the next exploration to narrate
/// (a copy: the replay's text need not outlive its call).
static REQUEST: RacyCell<Option<vmfault::fixed_buf::FixedBuf<96>>> = RacyCell::new(None);
/// Whether oops reports were silenced when the narrated run began.
static WAS_SILENT: AtomicBool = AtomicBool::new(false);

/// A replay, around its `Boundaries::Only(k)` exploration: narrate that
/// run, under `handle` (`None` again after it).
pub fn request(handle: Option<&str>) {
    let copy = handle.map(|h| {
        let mut b = vmfault::fixed_buf::FixedBuf::new();
        let _ = core::fmt::Write::write_str(&mut b, h);
        b
    });
    // SAFETY: set by the replay driver between explorations, read by the
    // exploration's driver thread before its runs.
    unsafe { *REQUEST.get() = copy };
}

/// The boundaries of the path a replay's first, quiet, exploration
/// stepped: for a path that steps and lets the other party in in one
/// pass (the torn entries), the narration's "of n".
static LENGTH: AtomicU32 = AtomicU32::new(0);

pub fn request_length(n: usize) {
    LENGTH.store(n as u32, Ordering::SeqCst);
}

pub fn requested_length() -> usize {
    LENGTH.load(Ordering::SeqCst) as usize
}

/// The handle an exploration's target run is to be narrated under.
pub fn requested() -> Option<&'static str> {
    // SAFETY: see `request`; the copy lives until the next request, after
    // the exploration that reads it.
    unsafe { (*REQUEST.get()).as_ref().map(|b| b.as_str()) }
}

fn state() -> &'static mut ReplayState {
    // SAFETY: written by the replay driver before its narrated run and by
    // the #DB handler at boundary k, with the other party not yet in;
    // read by gdb while the machine is stopped.
    unsafe { &mut *RACE_REPLAY.get() }
}

fn copy_text(dst: &mut [u8], s: &str) {
    dst.fill(0);
    let n = s.len().min(dst.len() - 1);
    dst[..n].copy_from_slice(&s.as_bytes()[..n]);
}

/// What the narrated run shows: its handle, its boundary k of `n` (at
/// `eip`), who comes in, the party's and the path's end points, and the
/// entries of `addrs` in the labelled directories.
pub struct Setup<'a> {
    pub handle: &'a str,
    pub k: usize,
    pub n: usize,
    pub eip: u32,
    pub who: Who,
    pub party_pc: u32,
    pub end_pc: u32,
    pub end_sp: u32,
    pub addrs: &'a [u32],
    pub dirs: &'a [(&'a str, vmfault::mm::addr::PhysAddr)],
}

/// Whether a narrated run is on.
pub fn on() -> bool {
    ON.load(Ordering::SeqCst)
}

/// The narrated run's target, if one is on.
pub fn target() -> Option<usize> {
    on().then(|| TARGET.load(Ordering::SeqCst) as usize)
}

/// Start narrating: the run's first lines and the entries before it.
pub fn begin(s: &Setup) {
    let st = state();
    copy_text(&mut st.handle, s.handle);
    st.k = s.k as u32;
    st.n = s.n as u32;
    st.eip = s.eip;
    st.who = s.who as u32;
    st.party_pc = s.party_pc;
    st.end_pc = s.end_pc;
    st.end_sp = s.end_sp;
    st.addrs = [0; ADDRS];
    st.dirs = [0; DIRS];
    st.labels = [[0; 16]; DIRS];
    for (i, a) in s.addrs.iter().take(ADDRS).enumerate() {
        st.addrs[i] = *a;
    }
    for (i, (label, dir)) in s.dirs.iter().take(DIRS).enumerate() {
        st.dirs[i] = (*dir).as_u32();
        copy_text(&mut st.labels[i], label);
    }
    st.at_boundary = 0;
    st.active = 1;
    TARGET.store(s.k as u32, Ordering::SeqCst);
    // The oops of the narrated run is part of its story.
    WAS_SILENT.store(vmfault::oops::silenced(), Ordering::SeqCst);
    vmfault::oops::set_silent(false);
    ON.store(true, Ordering::SeqCst);
    match s.eip {
        0 => println!(
            "race: boundary {} of {}: the other party comes in there",
            s.k, s.n
        ),
        eip => println!(
            "race: boundary {} of {}: the other party comes in there, before the instruction at {}",
            s.k,
            s.n,
            Place(eip)
        ),
    }
    println!("race: who comes in there: {}", s.who.describe());
}

/// Stop narrating (the driver, after the run).
pub fn end() {
    if !ON.swap(false, Ordering::SeqCst) {
        return;
    }
    vmfault::oops::set_silent(WAS_SILENT.load(Ordering::SeqCst));
    TARGET.store(u32::MAX, Ordering::SeqCst);
    let st = state();
    st.active = 0;
    st.at_boundary = 0;
}

/// The entries of every watched address in every watched directory.
pub fn entries(when: &str) {
    if !on() {
        return;
    }
    let st = state();
    print_entries(when, st.addrs.iter(), |a| {
        for (i, &dir) in st.dirs.iter().enumerate().filter(|(_, &d)| d != 0) {
            let label = label(&st.labels[i]);
            print_walk(label, dir, &translate(PhysAddr::new(dir), VirtAddr::new(a)));
        }
    });
}

/// "entries WHEN:", then each watched address and `walks` of it.
fn print_entries<'a>(when: &str, addrs: impl Iterator<Item = &'a u32>, mut walks: impl FnMut(u32)) {
    println!("race: entries {}:", when);
    for &a in addrs.filter(|&&a| a != 0) {
        println!("  translation of {:#010x}:", a);
        walks(a);
    }
}

/// The watched addresses in one more directory, one the setup could not
/// name (made during the run: a fork's child).
pub fn entries_in(when: &str, label: &str, dir: PhysAddr) {
    if !on() {
        return;
    }
    let st = state();
    print_entries(when, st.addrs.iter(), |a| {
        print_walk(label, dir.as_u32(), &translate(dir, VirtAddr::new(a)))
    });
}

fn label(raw: &[u8]) -> &str {
    let n = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    core::str::from_utf8(&raw[..n]).unwrap_or("?")
}

/// An instruction address as `symbol+offset [address]`: the host's
/// runner adds the source line (addr2line) where it prints the console.
pub struct Place(pub u32);

impl core::fmt::Display for Place {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        match vmfault::symbols::lookup(self.0) {
            Some(s) => write!(
                f,
                "{:#}+{:#x} [{:#010x}]",
                rustc_demangle::demangle(s.name),
                s.offset,
                self.0
            ),
            None => write!(f, "[{:#010x}]", self.0),
        }
    }
}

/// The #DB handler at boundary k of the narrated run, before the other
/// party is let in: say where, show the entries, and stop for gdb.
pub fn boundary(frame: &TrapFrame, k: usize) {
    if target() != Some(k) {
        return;
    }
    let st = state();
    st.at_boundary = 1;
    println!(
        "race: CPU {} stopped at boundary {}: next instruction {}, IF={}",
        percpu::smp_processor_id(),
        k,
        Place(frame.eip),
        u32::from(frame.eflags & cpu::EFLAGS_IF != 0)
    );
    entries("at the boundary");
    let now = [Who::Nested, Who::OtherCpu, Who::Preemption, Who::Reader]
        .into_iter()
        .find(|w| *w as u32 == st.who)
        .map_or("the other party comes in", Who::now);
    println!("race: now {}", now);
    race_boundary_reached();
}

/// The other party starts (the nested handler, CPU B's access, the
/// preempting thread): `what` it does.
pub fn party_starts(what: &str) {
    if !on() {
        return;
    }
    println!("race: [CPU {}] {}", percpu::smp_processor_id(), what);
}

/// The other party is done: the entries it left.
pub fn party_done(what: &str) {
    if !on() {
        return;
    }
    println!("race: [CPU {}] {}", percpu::smp_processor_id(), what);
    entries("after the other party");
}

/// Where `make gdb RACE=` stops: the stepped CPU at boundary k (in its
/// #DB handler; the interrupted frame is the boundary), the other party
/// not in yet.
#[no_mangle]
#[inline(never)]
pub extern "C" fn race_boundary_reached() {
    // A call gdb can break on, with a body the optimiser keeps.
    core::sync::atomic::compiler_fence(Ordering::SeqCst);
}

/// Where `make gdb RACE=` stops last when the run ends without an oops.
#[no_mangle]
#[inline(never)]
pub extern "C" fn race_run_over() {
    core::sync::atomic::compiler_fence(Ordering::SeqCst);
}
