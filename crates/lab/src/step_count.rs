//! Counting instructions by single-stepping: with EFLAGS.TF set the CPU
//! takes a `#DB` after every instruction, and the handler here counts
//! them.  Under TCG the instruction count is the one cost figure that does
//! not move with the host (bench.rs).  Two ways in, each per CPU (debug
//! registers and TF are per CPU):
//!
//! - `count_call(f)`: the instructions `f` executes on this CPU;
//! - `arm_vector(v)` then `vector_count()`: the instructions the next
//!   entry of interrupt vector `v` on this CPU executes, from its entry
//!   stub to its `iret` (DR0 on the stub; from the `#DB` there, TF).
//!
//! Interrupt gates clear TF, so a handler that interrupts a counted path
//! is not counted; QEMU 7.2 raises no single-step `#DB` for `pause` and
//! `hlt` (PLATFORM.md), so a counted spin loop counts only its other
//! instructions.

use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use vmfault::arch::x86::entry::{stub_address, TrapFrame};
use vmfault::arch::x86::percpu::smp_processor_id;
use vmfault::arch::x86::smp_config::NR_CPUS;
use vmfault::arch::x86::{cpu, dispatch};

struct Counter {
    /// Counting (or armed, waiting for the vector).
    active: AtomicBool,
    /// Stepping a vector: where the interrupted code resumes (its `iret`
    /// goes there, and the count ends).  0 while counting a call.
    back_to: AtomicU32,
    count: AtomicU32,
}

static COUNTERS: [Counter; NR_CPUS] = [const {
    Counter {
        active: AtomicBool::new(false),
        back_to: AtomicU32::new(0),
        count: AtomicU32::new(0),
    }
}; NR_CPUS];

const DR6_B0: u32 = 1;
const DR6_BS: u32 = 1 << 14;

/// The `#DB` handler while counting (installed by `install`).
fn debug_trap(frame: &mut TrapFrame) {
    let c = &COUNTERS[smp_processor_id()];
    let dr6 = cpu::take_dr6();
    if !c.active.load(Ordering::SeqCst) {
        frame.eflags &= !cpu::EFLAGS_TF;
        return;
    }
    if dr6 & DR6_B0 != 0 {
        // The vector's stub, before its first instruction: the interrupt
        // frame it will `iret` through starts at the interrupted ESP.
        cpu::clear_exec_breakpoint();
        // SAFETY: the stub has pushed nothing yet, so the word at the
        // interrupted ESP is the EIP the CPU saved for the interrupt.
        let eip = unsafe { *(frame.interrupted_esp() as *const u32) };
        c.back_to.store(eip, Ordering::SeqCst);
        c.count.store(0, Ordering::SeqCst);
        frame.eflags |= cpu::EFLAGS_TF;
        return;
    }
    if dr6 & DR6_BS != 0 {
        let back = c.back_to.load(Ordering::SeqCst);
        if back != 0 && frame.eip == back {
            // The vector's `iret` ran: back in the interrupted code.
            frame.eflags &= !cpu::EFLAGS_TF;
            c.active.store(false, Ordering::SeqCst);
            return;
        }
        c.count.fetch_add(1, Ordering::SeqCst);
    }
}

/// Route `#DB` here (shared IDT: any CPU's count).  Returns what was
/// there, for `uninstall`.
pub fn install() -> Option<dispatch::Handler> {
    dispatch::register_handler(1, Some(debug_trap))
}

pub fn uninstall(old: Option<dispatch::Handler>) {
    dispatch::register_handler(1, old);
}

/// Instructions `f` executes on this CPU, interrupts off (the `call`, the
/// return and the flag change around it included: `count_call(|| {})`
/// gives that overhead).
pub fn count_call(f: fn()) -> u32 {
    let c = &COUNTERS[smp_processor_id()];
    let _irq = cpu::irq_save();
    c.back_to.store(0, Ordering::SeqCst);
    c.count.store(0, Ordering::SeqCst);
    c.active.store(true, Ordering::SeqCst);
    // SAFETY: sets TF around one call; the #DB handler above counts and
    // returns; TF is cleared again before the block ends.
    unsafe {
        core::arch::asm!(
            "pushfd",
            "or dword ptr [esp], {tf}",
            "popfd",
            "call {f}",
            "pushfd",
            "and dword ptr [esp], {notf}",
            "popfd",
            f = in(reg) f,
            tf = const cpu::EFLAGS_TF,
            notf = const !cpu::EFLAGS_TF,
            clobber_abi("C"),
        )
    };
    c.active.store(false, Ordering::SeqCst);
    c.count.load(Ordering::SeqCst)
}

/// Count the next entry of `vector` on this CPU (DR0 on its stub).
pub fn arm_vector(vector: u8) {
    let c = &COUNTERS[smp_processor_id()];
    c.count.store(0, Ordering::SeqCst);
    c.back_to.store(0, Ordering::SeqCst);
    c.active.store(true, Ordering::SeqCst);
    cpu::set_exec_breakpoint(stub_address(vector));
}

/// The count of CPU `cpu`'s armed vector, once its `iret` ran.
pub fn vector_count(cpu: usize) -> Option<u32> {
    let c = &COUNTERS[cpu];
    (!c.active.load(Ordering::SeqCst) && c.back_to.load(Ordering::SeqCst) != 0)
        .then(|| c.count.load(Ordering::SeqCst))
}
