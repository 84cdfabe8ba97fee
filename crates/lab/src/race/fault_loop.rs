//! A fault that repeats for ever is an outcome, not a hang (issue 14).  A
//! handler that "fixes" the wrong directory returns, the access faults
//! again, and so on: tried here, a `sync` that takes the pgd from
//! `tsk->active_mm` instead of CR3 does that in the context-switch
//! window.  The experiments watch the #PF entry with DR2; the same
//! faulting EIP and CR2 `LIMIT` times in a row ends the run through its
//! recovery point as a "fault loop".

use core::sync::atomic::{AtomicU32, Ordering};

use vmfault::arch::x86::entry::TrapFrame;
use vmfault::arch::x86::{cpu, idt};
use vmfault::fixup::{Caught, CaughtKind};

/// Consecutive identical faults that make a loop.  A run of an experiment
/// takes one or two vmalloc faults at one address; a real fix never needs
/// a second try at the same instruction and address.
pub const LIMIT: u32 = 16;
const WHY: &str = "fault loop: the same instruction faulted on the same address again and again";

static LAST_EIP: AtomicU32 = AtomicU32::new(0);
static LAST_CR2: AtomicU32 = AtomicU32::new(0);
static REPEATS: AtomicU32 = AtomicU32::new(0);

/// Watch the #PF entry (call with the experiment's #DB handler in place).
pub fn arm() {
    reset();
    cpu::set_exec_breakpoint2(idt::gate_address(14));
}

pub fn disarm() {
    cpu::clear_exec_breakpoint2();
}

/// A new run: no fault seen yet.
pub fn reset() {
    REPEATS.store(0, Ordering::SeqCst);
    LAST_EIP.store(0, Ordering::SeqCst);
    LAST_CR2.store(0, Ordering::SeqCst);
}

/// One fault at `eip` on `cr2`; true when it makes `LIMIT` in a row.
pub fn note(eip: u32, cr2: u32) -> bool {
    let same = LAST_EIP.load(Ordering::SeqCst) == eip && LAST_CR2.load(Ordering::SeqCst) == cr2;
    LAST_EIP.store(eip, Ordering::SeqCst);
    LAST_CR2.store(cr2, Ordering::SeqCst);
    let n = if same {
        REPEATS.fetch_add(1, Ordering::SeqCst) + 1
    } else {
        REPEATS.store(1, Ordering::SeqCst);
        1
    };
    n >= LIMIT
}

/// Call first in an experiment's #DB handler.  On DR2's hit (the #PF
/// entry's first instruction) the #PF frame is the interrupted stack:
/// error code, then the faulting EIP; CR2 still holds the address.
pub fn on_debug(frame: &mut TrapFrame, dr6: u32) {
    if dr6 & cpu::DR6_B2 == 0 {
        return;
    }
    frame.eflags |= cpu::EFLAGS_RF;
    // SAFETY: the #DB came from the first instruction of the #PF entry, so
    // the CPU's #PF frame (error code, EIP, CS, EFLAGS) is right above.
    let eip = unsafe { core::ptr::read_volatile((frame.interrupted_esp() + 4) as *const u32) };
    if note(eip, cpu::read_cr2()) {
        reset();
        vmfault::fixup::abort(WHY);
    }
}

/// A #DB handler for experiments that single-step nothing (the stress).
pub fn debug_trap(frame: &mut TrapFrame) {
    let dr6 = cpu::take_dr6();
    on_debug(frame, dr6);
    frame.eflags &= !cpu::EFLAGS_TF;
}

/// Whether a recovery point caught a fault loop.
pub fn caught(c: &Caught) -> bool {
    c.kind == CaughtKind::Abort && c.msg.as_str() == WHY
}
