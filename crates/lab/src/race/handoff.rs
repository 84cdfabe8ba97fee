//! The other CPU's party.  B stands on CPU 1 for a whole session and
//! waits, with `pause`, for a go.  A's #DB handler, stopped between two
//! instructions of its path, lets B in (`hand_off`) and waits, interrupts
//! off, until B's part is over, or until B spins on a lock A holds: then
//! A goes on until it drops that lock (the engine's `After::Follow` on
//! the lock's owner word) and waits there again (`wait_again`).  So B
//! only ever runs while A is stopped at a known instruction, and a run
//! depends on the boundary alone, not on how QEMU schedules the vCPUs.
//! B runs its part under a recovery point of its own CPU: its oops is
//! its outcome.

extern crate alloc;

use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use super::outcome::Outcome;
use vmfault::arch::x86::{cpu, smp, spinlock, tsc};
use vmfault::fixup;
use vmfault::mm::fault;
use vmfault::mm::mm_struct::MmStruct;
use vmfault::sched::{self, Task};

/// How long A waits for B before calling it a hang.
pub const B_TIMEOUT_US: u64 = 1_000_000;
/// How long a lock B spins on may name no holder before A takes it for
/// its own (A stopped between taking it and naming itself); a lock that
/// just came free is taken by B within microseconds.
const UNNAMED_US: u64 = 200;

static GO: AtomicBool = AtomicBool::new(false);
static DONE: AtomicBool = AtomicBool::new(false);
static QUIT: AtomicBool = AtomicBool::new(false);
/// `Outcome::access_word` of B's part.
static OUT: AtomicU32 = AtomicU32::new(0);
static WAITED: AtomicBool = AtomicBool::new(false);
static HANG: AtomicBool = AtomicBool::new(false);
static RELEASED_AT: AtomicU64 = AtomicU64::new(0);
static STARTED_AT: AtomicU64 = AtomicU64::new(0);
/// B's part, as a function address (a `fn()`).
static PART: AtomicUsize = AtomicUsize::new(0);

/// How A's wait for B ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handed {
    /// B's part is over.
    Done,
    /// B spins on the lock whose owner word this is, and A holds it.
    Blocked(u32),
    /// B did not finish in time.
    Hang,
}

/// B, standing on CPU 1 for a session.
pub struct Standing(Arc<Task>);

/// Start B on CPU 1, in `mm`, with `part` as what it does at each go.
/// `None` with one CPU.
pub fn stand(part: fn(), mm: Option<Arc<MmStruct>>) -> Option<Standing> {
    if !smp::cpu_online(1) {
        return None;
    }
    PART.store(part as usize, Ordering::SeqCst);
    GO.store(false, Ordering::SeqCst);
    QUIT.store(false, Ordering::SeqCst);
    HANG.store(false, Ordering::SeqCst);
    Some(Standing(sched::run_on(1, "cpu-b", standing_b, 0, mm)))
}

impl Standing {
    pub fn end(self) {
        QUIT.store(true, Ordering::SeqCst);
        // A B that hung does not come back: leave it (its CPU is lost for
        // the rest of the boot, and the report says the run hung).
        if !HANG.load(Ordering::SeqCst) {
            sched::join(&self.0);
        }
    }
}

fn standing_b(_: usize) {
    // SAFETY: `stand` stored a `fn()` there.
    let part: fn() = unsafe { core::mem::transmute(PART.load(Ordering::SeqCst)) };
    loop {
        while !GO.swap(false, Ordering::SeqCst) {
            if QUIT.load(Ordering::SeqCst) {
                return;
            }
            core::hint::spin_loop();
        }
        STARTED_AT.store(cpu::rdtsc(), Ordering::SeqCst);
        let bad0 = fault::bad_areas();
        // A narrated run (a replay) lets B's oops report through.
        let r = fixup::catch(!super::narrate::on(), part);
        OUT.store(Outcome::access_word(&r, bad0), Ordering::SeqCst);
        DONE.store(true, Ordering::SeqCst);
    }
}

/// Before a run: B has not run, nothing measured.
pub fn reset() {
    GO.store(false, Ordering::SeqCst);
    DONE.store(false, Ordering::SeqCst);
    OUT.store(0, Ordering::SeqCst);
    WAITED.store(false, Ordering::SeqCst);
    RELEASED_AT.store(0, Ordering::SeqCst);
    STARTED_AT.store(0, Ordering::SeqCst);
}

/// Let B go without waiting for it (after A's path, if B did not get in
/// inside it).
pub fn release() {
    GO.store(true, Ordering::SeqCst);
}

/// A's #DB handler at its target: B runs its whole part now, with A
/// stopped right here.
pub fn hand_off() -> Handed {
    RELEASED_AT.store(cpu::rdtsc(), Ordering::SeqCst);
    GO.store(true, Ordering::SeqCst);
    // Under round-robin TCG a `pause` hands this vCPU's turn to the next:
    // B starts now, not after a turn of the wait loop.
    core::hint::spin_loop();
    wait_again()
}

/// A, stopped (in its #DB handler, interrupts off: a TLB shootdown from
/// CPU 1 is answered by polling), waits until B is done or blocked on a
/// lock A holds.
pub fn wait_again() -> Handed {
    let mut unnamed: Option<u64> = None;
    let mut blocked_on = None;
    let over = smp::spin_until(
        || {
            if DONE.load(Ordering::SeqCst) {
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
        Some(word) => {
            WAITED.store(true, Ordering::SeqCst);
            Handed::Blocked(word as u32)
        }
        None if !over => {
            HANG.store(true, Ordering::SeqCst);
            Handed::Hang
        }
        None => Handed::Done,
    }
}

/// The driver, after A's part: wait until B is done too (it may still be
/// on its way, having waited for a lock A held).  False: B hung.
pub fn finish() -> bool {
    if HANG.load(Ordering::SeqCst) {
        return false;
    }
    if !smp::spin_until(|| DONE.load(Ordering::SeqCst), B_TIMEOUT_US) {
        HANG.store(true, Ordering::SeqCst);
        return false;
    }
    true
}

/// B's outcome in the last run, if its part ran to the end.
pub fn outcome() -> Option<Outcome> {
    DONE.load(Ordering::SeqCst)
        .then(|| Outcome::of_access_word(OUT.load(Ordering::SeqCst)))
}

/// B spun on a lock A held in the last run.
pub fn waited() -> bool {
    WAITED.load(Ordering::SeqCst)
}

/// B did not finish in time (in this session: a hung B stays hung).
pub fn hung() -> bool {
    HANG.load(Ordering::SeqCst)
}

/// The mean of `count` hand-offs that took `cycles` TSC cycles in all,
/// in host nanoseconds (under TCG the TSC follows the host's clock).
pub fn mean_ns(count: u64, cycles: u64) -> u64 {
    let per_ms = tsc::cycles_per_ms().max(1);
    match count {
        0 => 0,
        n => cycles * 1_000_000 / per_ms / n,
    }
}

/// TSC cycles from A's release of B to B's start, in the last run.
pub fn handoff_cycles() -> Option<u64> {
    let (released, started) = (
        RELEASED_AT.load(Ordering::SeqCst),
        STARTED_AT.load(Ordering::SeqCst),
    );
    (released != 0 && started > released).then(|| started - released)
}
