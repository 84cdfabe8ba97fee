//! Inter-processor interrupts (Linux 2.4 `arch/i386/kernel/smp.c`): a
//! fixed-vector IPI to one CPU, and `smp_call_function`, which runs a
//! function on every other online CPU and, when asked, waits for it to
//! finish.  As in 2.4: one call at a time under `call_lock`, the caller
//! with interrupts enabled (a CPU waiting with them off for another that
//! waits for it the same way would deadlock), the callee acknowledging
//! that it has read the call's data before it runs the function.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

use spin::Mutex;

use super::entry::TrapFrame;
use super::irq::{self, IrqFlags};
use super::smp_config::NR_CPUS;
use super::{apic, cpu, percpu, tsc};

/// 2.4's `CALL_FUNCTION_VECTOR`.
pub const CALL_FUNCTION_VECTOR: u8 = 0xFB;
/// How long a caller waits for the others before it gives up and says so
/// (2.4 waits for ever; a test must not).
const CALL_TIMEOUT_US: u64 = 1_000_000;

/// The call in progress (2.4's `call_data`, which points at the caller's
/// stack).  Here it is one static slot, because a CPU polls it while it
/// spins (spinlock.rs): a CPU that already ran the call may look again
/// after the caller returned, and must then find a finished call, not a
/// reused stack.
struct CallSlot {
    /// Which call this is (0: none): a CPU runs each call once, even when
    /// an IPI of a call that timed out (still pending while it was wedged)
    /// arrives during a later one.  Cleared while the slot is rewritten.
    gen: AtomicU32,
    /// A `fn(usize)`.
    func: AtomicUsize,
    info: AtomicUsize,
    wait: AtomicBool,
    started: AtomicU32,
    finished: AtomicU32,
}

static CALL: CallSlot = CallSlot {
    gen: AtomicU32::new(0),
    func: AtomicUsize::new(0),
    info: AtomicUsize::new(0),
    wait: AtomicBool::new(false),
    started: AtomicU32::new(0),
    finished: AtomicU32::new(0),
};

/// APIC ID + 1 of each CPU that is online, the boot CPU first (2.4's
/// `cpu_online_map`); set by smpboot.rs as each one calls in.
static ONLINE: [AtomicU32; NR_CPUS] = [const { AtomicU32::new(0) }; NR_CPUS];

/// CPU `slot` (its `smp_processor_id`) is online with APIC ID `apic_id`.
pub fn set_online(slot: usize, apic_id: u8) {
    ONLINE[slot].store(apic_id as u32 + 1, Ordering::Release);
}

/// Whether CPU `cpu` (its `smp_processor_id`) is online.
pub fn cpu_online(cpu: usize) -> bool {
    ONLINE
        .get(cpu)
        .is_some_and(|a| a.load(Ordering::Acquire) != 0)
}

/// The APIC IDs of the CPUs online, the boot CPU first.
pub fn online() -> impl Iterator<Item = u8> {
    ONLINE
        .iter()
        .map(|a| a.load(Ordering::Acquire))
        .take_while(|&v| v != 0)
        .map(|v| (v - 1) as u8)
}

static CALL_LOCK: Mutex<()> = Mutex::new(());
static CALL_GEN: AtomicU32 = AtomicU32::new(0);

/// Install the call-function handler (every CPU shares the IDT and the
/// handler table, so once is enough).
pub fn init() {
    irq::request_irq(
        CALL_FUNCTION_VECTOR,
        smp_call_function_interrupt,
        IrqFlags::SA_INTERRUPT,
    );
}

/// Why a call did not complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallError {
    /// Called with interrupts off (2.4: a deadlock waiting to happen).
    InterruptsOff,
    /// Some CPU did not start (or finish) within the timeout.
    Timeout {
        cpus: u32,
        started: u32,
        finished: u32,
    },
}

/// `smp_call_function(func, info, wait)`: run `func(info)` on every other
/// online CPU; return once all have started it, or with `wait` once all
/// have finished.  Returns how many CPUs ran it.
pub fn smp_call_function(func: fn(usize), info: usize, wait: bool) -> Result<u32, CallError> {
    if !cpu::save_flags().irqs_enabled() {
        return Err(CallError::InterruptsOff);
    }
    call_others(func, info, wait)
}

/// `smp_call_function` without the interrupts-on rule, for
/// `flush_tlb_all` (below).
fn call_others(func: fn(usize), info: usize, wait: bool) -> Result<u32, CallError> {
    // This CPU's APIC ID as it noted it at start-up: no MMIO read of the
    // ID register on every vfree's shootdown.
    let me = percpu::this_cpu().apic_id as u8;
    let others: u32 = online().filter(|&id| id != me).count() as u32;
    if others == 0 {
        return Ok(0);
    }
    let _g = loop {
        if let Some(g) = CALL_LOCK.try_lock() {
            break g;
        }
        // Another CPU's call holds the lock and may be waiting for this
        // one, which takes no IPI while its interrupts are off (a flush
        // from under the vmlist lock): run that call from here, as later
        // Linux flushes its call queue while it waits.
        relax();
    };
    let gen = CALL_GEN
        .fetch_add(1, Ordering::SeqCst)
        .wrapping_add(1)
        .max(1);
    CALL.func.store(func as usize, Ordering::SeqCst);
    CALL.info.store(info, Ordering::SeqCst);
    CALL.wait.store(wait, Ordering::SeqCst);
    CALL.started.store(0, Ordering::SeqCst);
    CALL.finished.store(0, Ordering::SeqCst);
    CALL.gen.store(gen, Ordering::SeqCst);
    for id in online().filter(|&id| id != me) {
        apic::send_ipi(id, CALL_FUNCTION_VECTOR);
    }
    let t0 = cpu::rdtsc();
    let done = || {
        CALL.started.load(Ordering::SeqCst) == others
            && (!wait || CALL.finished.load(Ordering::SeqCst) == others)
    };
    let r = loop {
        if done() {
            break Ok(others);
        }
        if tsc::us_since(t0) > CALL_TIMEOUT_US {
            break Err(CallError::Timeout {
                cpus: others,
                started: CALL.started.load(Ordering::SeqCst),
                finished: CALL.finished.load(Ordering::SeqCst),
            });
        }
        core::hint::spin_loop();
    };
    // A late CPU finds no call (and the next call a clean slot).
    CALL.gen.store(0, Ordering::SeqCst);
    r
}

/// One turn of a wait loop: answer a pending cross-CPU call if this CPU
/// cannot take its IPI now (interrupts off: the caller of the call waits
/// for this CPU), and `pause`.
pub fn relax() {
    if !cpu::irqs_enabled() {
        poll_call_function();
    }
    core::hint::spin_loop();
}

/// Wait, relaxing, until `done` holds: what a CPU does while another CPU
/// finishes its part.  False if `timeout_us` passed first.
pub fn spin_until(mut done: impl FnMut() -> bool, timeout_us: u64) -> bool {
    let t0 = cpu::rdtsc();
    while !done() {
        if tsc::us_since(t0) > timeout_us {
            return false;
        }
        relax();
    }
    true
}

fn smp_call_function_interrupt(_: &mut TrapFrame) {
    poll_call_function();
}

/// Run the call in the slot if this CPU has not run it yet: the IPI's
/// handler, and what a CPU spinning with interrupts off does meanwhile
/// (spinlock.rs), since the IPI cannot reach it.
pub fn poll_call_function() {
    let gen = CALL.gen.load(Ordering::SeqCst);
    let me = percpu::this_cpu();
    if gen == 0 || me.call_gen.load(Ordering::SeqCst) == gen {
        // No call, or this one ran here already (a stale IPI, a poll).
        return;
    }
    let (func, info, wait) = (
        CALL.func.load(Ordering::SeqCst),
        CALL.info.load(Ordering::SeqCst),
        CALL.wait.load(Ordering::SeqCst),
    );
    // The caller waits for this CPU to count itself in before it clears
    // the slot (unless it timed out): still `gen`, the fields were its.
    if CALL.gen.load(Ordering::SeqCst) != gen || me.call_gen.swap(gen, Ordering::SeqCst) == gen {
        return;
    }
    // SAFETY: `func` was stored from a `fn(usize)` by the call `gen`.
    let func: fn(usize) = unsafe { core::mem::transmute::<usize, fn(usize)>(func) };
    // "Notify initiating CPU that I've grabbed the data and am about to
    // execute the function" (2.4).
    CALL.started.fetch_add(1, Ordering::SeqCst);
    func(info);
    if wait {
        CALL.finished.fetch_add(1, Ordering::SeqCst);
    }
}

/// Shootdowns each CPU has answered (`flush_tlb_all` from another CPU).
static SHOOTDOWNS: [AtomicU32; NR_CPUS] = [const { AtomicU32::new(0) }; NR_CPUS];

fn flush_tlb_local(_: usize) {
    cpu::flush_tlb();
    SHOOTDOWNS[percpu::smp_processor_id()].fetch_add(1, Ordering::Relaxed);
}

/// How many TLB shootdowns `cpu` has answered since boot.
pub fn shootdowns(cpu: usize) -> u32 {
    SHOOTDOWNS.get(cpu).map_or(0, |n| n.load(Ordering::Relaxed))
}

/// 2.4's `flush_tlb_all` (arch/i386/kernel/smp.c, 2.4.1 and 2.4.2):
/// every other online CPU's TLB first, waiting for them, then this one's:
/// `smp_call_function (flush_tlb_all_ipi,0,1,1); do_flush_tlb_all_local();`.  vfree, vunmap
/// and the freeing of kernel page tables call it: another CPU may still
/// hold a translation of what they took away.
///
/// 2.4 calls it with interrupts on (vmlist_lock is a plain rwlock there);
/// here the vmlist lock masks them (vmalloc may run in an interrupt
/// handler), so the call is made with interrupts off.  That cannot
/// deadlock: a CPU waiting for the vmlist lock waits with interrupts on
/// (spinlock.rs), one waiting for the call lock runs the pending call
/// itself (above), and no other lock is held across the flush.
pub fn flush_tlb_all() {
    // One CPU online (or none noted yet, early in boot): nobody else to
    // flush.
    if online().nth(1).is_some() {
        if let Err(e) = call_others(flush_tlb_local, 0, true) {
            panic!("flush_tlb_all: another CPU did not flush: {:?}", e);
        }
    }
    cpu::flush_tlb();
}
