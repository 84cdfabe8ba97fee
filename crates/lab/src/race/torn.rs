//! Torn PAE entries (issue 16, scenario 6).  A PAE entry is 64 bits and
//! an i386 store is 32: unless one instruction writes both halves, there
//! is a boundary where memory holds half the old entry and half the new.
//! CPU A writes an entry of a scratch page table with the kernel's own
//! writers, single-stepped from their first instruction to their return;
//! at every boundary CPU B reads the entry, with A stopped there, and
//! says whether it is the old value, the new one, or neither (torn), and
//! whether a torn value has its present bit set (the hardware walker
//! would follow it to a frame neither value names).
//!
//! The writers are 2.4.2's (include/asm-i386/pgtable-3level.h):
//! `set_pmd`/`set_pgd` are `set_64bit` (one `lock cmpxchg8b`), `set_pte`
//! writes the high half, `smp_wmb()`, then the low half, under Ben
//! LaHaise's rule above it: "the pte being assigned *must* be either not
//! present or in a state where the hardware will not attempt to update
//! the pte.  In places where this is not possible, use pte_get_and_clear".
//! `pte_clear(xp)` is `set_pte(xp, __pte(0))`, which breaks that rule for
//! a present pte; `ptep_get_and_clear` clears the low half (the present
//! bit) first with `xchg`.  The last writer, low half first, is in no
//! Linux: it shows why the order matters.
//!
//! The frames are above 4 GiB, PAE's reason to exist, so the two halves
//! of each value differ; B only reads the entry, never through it (this
//! guest has no memory there), and the table is in no directory.

extern crate alloc;

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use super::engine::{self, After, Boundaries, Trigger};
use super::handoff::{self, Handed};
use super::narrate::{self, Who};
use vmfault::arch::x86::entry::TrapFrame;
use vmfault::arch::x86::{cpu, smp};
use vmfault::mm::frame::{alloc_zeroed_frame, free_frame};
use vmfault::mm::pgtable::{
    __pmd, __pte, is_pae, mk_pte, pmd_slot, pte_slot, ptep_get_and_clear, set_pmd, set_pte,
    PteFlags,
};
use vmfault::racy_cell::RacyCell;

/// Who writes, and what it writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Write {
    /// 2.4's `set_pmd(pmd, val)`: `set_64bit`.
    SetPmd,
    /// 2.4's `pmd_clear`: `set_pmd(pmd, __pmd(0))`.
    PmdClear,
    /// 2.4's `set_pte` of a pte that is not present (Ben's rule kept).
    SetPte,
    /// 2.4's `pte_clear` of a present pte: `set_pte(xp, __pte(0))`.
    PteClear,
    /// 2.4's `set_pte` over a present pte (Ben's rule broken).
    SetPteOverPresent,
    /// 2.4's `ptep_get_and_clear` of a present pte.
    PtepGetAndClear,
    /// Two plain stores, low half first, of a not-present pte: no Linux.
    LowThenHigh,
}

pub const ALL: [Write; 7] = [
    Write::SetPmd,
    Write::PmdClear,
    Write::SetPte,
    Write::PteClear,
    Write::SetPteOverPresent,
    Write::PtepGetAndClear,
    Write::LowThenHigh,
];

/// Frames above 4 GiB: both halves of every value are non-zero.
const OLD_FRAME: u64 = 0x1_2345_6000;
const NEW_FRAME: u64 = 0x2_3456_7000;

impl Write {
    pub fn name(self) -> &'static str {
        match self {
            Write::SetPmd => "set_pmd (set_64bit), none -> present",
            Write::PmdClear => "pmd_clear (set_64bit), present -> none",
            Write::SetPte => "set_pte (high, wmb, low), none -> present",
            Write::PteClear => "pte_clear = set_pte(0), present -> none",
            Write::SetPteOverPresent => "set_pte over a present pte",
            Write::PtepGetAndClear => "ptep_get_and_clear (xchg low, then high)",
            Write::LowThenHigh => "low half, then high (no Linux), none -> present",
        }
    }

    /// The entry before and after.
    fn values(self) -> (u64, u64) {
        let old = mk_pte(OLD_FRAME, PteFlags::PAGE_KERNEL).val();
        let new = mk_pte(NEW_FRAME, PteFlags::PAGE_KERNEL).val();
        match self {
            Write::SetPmd | Write::SetPte | Write::LowThenHigh => (0, new),
            Write::PmdClear | Write::PteClear | Write::PtepGetAndClear => (old, 0),
            Write::SetPteOverPresent => (old, new),
        }
    }
}

/// What B saw at each boundary of one writer.
#[derive(Clone, Debug, Default)]
pub struct TornReport {
    /// Boundaries from the writer's first instruction to its return.
    pub stepped: usize,
    /// Boundaries where B read neither the old value nor the new.
    pub torn: usize,
    /// Of those, with the present bit set.
    pub torn_present: usize,
    /// The first torn value B read, and its boundary.
    pub first_torn: Option<(usize, u64)>,
    /// B read the new value once the writer had returned.
    pub ends_new: bool,
    /// B did not answer in time at some boundary.
    pub hang: bool,
    /// The entry before and after the write.
    pub old: u64,
    pub new: u64,
    /// A replay's one read: its boundary and what B read there.
    pub last_read: Option<(usize, u64)>,
}

struct State {
    /// The stepper's caller: back there, the writer has returned.
    end: (u32, u32),
    /// (boundary, what B read there).
    seen: Vec<(usize, u64)>,
    hang: bool,
    /// Which boundaries B reads at.
    sel: Boundaries,
}

static ST: RacyCell<State> = RacyCell::new(State {
    end: (0, 0),
    seen: Vec::new(),
    hang: false,
    sel: Boundaries::Every(1),
});
/// The entry's address, and what B read.
static ENTRY: AtomicU64 = AtomicU64::new(0);
static SEEN: AtomicU64 = AtomicU64::new(0);
/// A writer is a few hundred instructions.
const MAX_STEPS: usize = 4000;

fn st() -> &'static mut State {
    // SAFETY: the #DB handler (interrupts off) and the driver, which only
    // touches it before arming and after the writer returned.
    unsafe { &mut *ST.get() }
}

/// B's part (`handoff`, CPU 1): read the 64-bit entry (two loads; A is
/// stopped, so they see one state of memory).
fn read_entry() {
    let p = ENTRY.load(Ordering::SeqCst) as usize;
    narrate::party_starts("CPU B reads the 64-bit entry: two 32-bit loads, low half first");
    // SAFETY: the scratch table's entry, live until the driver frees it
    // after the last read.
    let (low, high) = unsafe {
        (
            core::ptr::read_volatile(p as *const u32),
            core::ptr::read_volatile((p + 4) as *const u32),
        )
    };
    SEEN.store(u64::from(high) << 32 | u64::from(low), Ordering::SeqCst);
    if narrate::on() {
        narrate::party_done(&alloc::format!(
            "CPU B read {:#018x} (high {:#010x}, low {:#010x})",
            u64::from(high) << 32 | u64::from(low),
            high,
            low
        ));
    }
}

/// Ask B for the entry, with A stopped (in its #DB handler).
fn ask_b() -> Option<u64> {
    handoff::reset();
    match handoff::hand_off() {
        Handed::Done => Some(SEEN.load(Ordering::SeqCst)),
        // B takes no lock; a B that does not answer is a hang.
        Handed::Blocked(_) | Handed::Hang => None,
    }
}

/// A writer, for the engine: every boundary of the dry run asks B.
struct Writer;

impl engine::Path for Writer {
    fn own(_: &TrapFrame) -> bool {
        true
    }

    fn over(frame: &TrapFrame, _: usize) -> bool {
        let end = st().end;
        frame.eip >= end.0 && frame.eip < end.1
    }

    fn note(frame: &TrapFrame, k: usize) -> After {
        let s = st();
        if !s.sel.keeps(k) {
            return After::Step;
        }
        narrate::boundary(frame, k);
        match ask_b() {
            Some(v) => {
                s.seen.push((k, v));
                After::Step
            }
            None => {
                s.hang = true;
                After::Free
            }
        }
    }

    fn deliver(_: &mut TrapFrame, _: usize) -> After {
        After::Step
    }
}

#[inline(never)]
fn do_set_pmd(slot: usize, v: u64) {
    set_pmd(pmd_slot_at(slot), __pmd(v));
}

#[inline(never)]
fn do_set_pte(slot: usize, v: u64) {
    set_pte(pte_slot_at(slot), __pte(v));
}

#[inline(never)]
fn do_ptep_get_and_clear(slot: usize, _: u64) {
    ptep_get_and_clear(pte_slot_at(slot));
}

#[inline(never)]
fn do_low_then_high(slot: usize, v: u64) {
    // SAFETY: the scratch table's entry.
    unsafe {
        core::ptr::write_volatile(slot as *mut u32, v as u32);
        core::sync::atomic::compiler_fence(Ordering::SeqCst);
        core::ptr::write_volatile((slot + 4) as *mut u32, (v >> 32) as u32);
    }
}

fn pmd_slot_at(va: usize) -> vmfault::mm::pgtable::PmdSlot {
    let (phys, index) = split(va);
    pmd_slot(phys, index)
}

fn pte_slot_at(va: usize) -> vmfault::mm::pgtable::PteSlot {
    let (phys, index) = split(va);
    pte_slot(phys, index)
}

/// The scratch entry's frame and index.
fn split(va: usize) -> (u32, usize) {
    let off = va & 0xfff;
    ((va - off - vmfault::mm::addr::PAGE_OFFSET) as u32, off / 8)
}

/// The writer's first instruction is the trigger: the engine steps it.
#[inline(never)]
fn step_write(f: fn(usize, u64), slot: usize, v: u64) {
    engine::arm(Trigger::Exec(f as *const () as u32));
    f(slot, v);
    engine::disarm();
}

/// Step one writer over a scratch entry, B reading at every boundary
/// (or at the one a replay asks for).  `None` in two-level mode (one
/// 32-bit store: nothing to tear) or with one CPU.
pub fn explore_torn(w: Write, sel: impl Into<Boundaries>) -> Option<TornReport> {
    let sel = sel.into();
    if !is_pae() || !smp::cpu_online(1) {
        return None;
    }
    let (a, sz) =
        vmfault::symbols::lookup(step_write as *const () as u32).map(|s| (s.addr, s.size))?;
    let b = handoff::stand(read_entry, None)?;
    let Some(table) = alloc_zeroed_frame() else {
        b.end();
        return None;
    };
    let slot = vmfault::mm::addr::__va(table) + 8 * 5;
    let (old, new) = w.values();
    // SAFETY: the scratch table's entry, not in any directory.
    unsafe { core::ptr::write_volatile(slot as *mut u64, old) };
    ENTRY.store(slot as u64, Ordering::SeqCst);
    let s = st();
    s.end = (a, a + sz);
    // The #DB handler pushes: room for every boundary the engine allows.
    s.seen = Vec::with_capacity(MAX_STEPS);
    s.hang = false;
    s.sel = sel;
    engine::begin::<Writer>(MAX_STEPS, false);
    engine::prepare(None, true);
    let f: fn(usize, u64) = match w {
        Write::SetPmd | Write::PmdClear => do_set_pmd,
        Write::SetPte | Write::PteClear | Write::SetPteOverPresent => do_set_pte,
        Write::PtepGetAndClear => do_ptep_get_and_clear,
        Write::LowThenHigh => do_low_then_high,
    };
    if let (Some(h), Some(k)) = (narrate::requested(), sel.only()) {
        narrate::begin(&narrate::Setup {
            handle: h,
            k,
            n: narrate::requested_length(),
            eip: 0,
            who: Who::Reader,
            party_pc: read_entry as *const () as u32,
            end_pc: narrate::race_run_over as *const () as u32,
            end_sp: 0,
            addrs: &[],
            dirs: &[],
        });
        vmfault::println!(
            "race: the entry at {:#010x} holds {:#018x}; {} writes {:#018x}",
            slot,
            old,
            w.name(),
            new
        );
    }
    {
        // Nothing else may run on this CPU while the writer is stepped.
        let _irq = cpu::irq_save();
        step_write(f, slot, new);
    }
    let stepped = engine::take_recording().len();
    engine::end();
    narrate::end();
    let last = ask_b();
    b.end();
    let seen = core::mem::take(&mut st().seen);
    let mut rep = TornReport {
        stepped,
        ends_new: last == Some(new),
        hang: st().hang,
        old,
        new,
        last_read: seen.last().copied(),
        ..Default::default()
    };
    for &(k, v) in seen.iter() {
        if v != old && v != new {
            rep.torn += 1;
            rep.torn_present += usize::from(v & 1 != 0);
            rep.first_torn.get_or_insert((k, v));
        }
    }
    if !rep.hang {
        free_frame(table);
    }
    Some(rep)
}
