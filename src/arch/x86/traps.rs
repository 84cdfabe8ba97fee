//! `trap_dispatch`: where every stub in `entry` lands.  Exceptions go to a
//! registered handler (the page-fault path registers `do_page_fault`) or,
//! by default, to `die` (Linux 2.4's `do_trap` -> `die`): an oops report,
//! then the recovery point of the running test case, or a failed run.

use super::entry::TrapFrame;
use crate::racy_cell::RacyCell;

pub type Handler = fn(&mut TrapFrame);

static HANDLERS: RacyCell<[Option<Handler>; 256]> = RacyCell::new([None; 256]);
static SPURIOUS: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

/// Linux 2.4's names for the exceptions, as `die()` prints them.
pub const TRAP_NAMES: [&str; 32] = [
    "divide error",
    "debug",
    "nmi",
    "int3",
    "overflow",
    "bounds",
    "invalid operand",
    "device not available",
    "double fault",
    "coprocessor segment overrun",
    "invalid TSS",
    "segment not present",
    "stack segment",
    "general protection fault",
    "page fault",
    "spurious interrupt bug",
    "coprocessor error",
    "alignment check",
    "machine check",
    "simd coprocessor error",
    "virtualization exception",
    "control protection",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "security exception",
    "reserved",
];

/// The page-fault error code's bits (Intel SDM 3A 4.7), with the names
/// Linux gives them (`enum x86_pf_error_code`); 2.4 wrote the numbers.
pub const X86_PF_PROT: u32 = 1 << 0;
pub const X86_PF_WRITE: u32 = 1 << 1;
pub const X86_PF_USER: u32 = 1 << 2;
pub const X86_PF_RSVD: u32 = 1 << 3;
pub const X86_PF_INSTR: u32 = 1 << 4;

/// Install `h` for vector `n`, returning the previous handler.
pub fn register_handler(n: u8, h: Option<Handler>) -> Option<Handler> {
    let _irq = super::cpu::irq_save();
    // SAFETY: interrupts are off, so no trap reads the slot meanwhile.
    unsafe { core::mem::replace(&mut (*HANDLERS.get())[n as usize], h) }
}

pub fn spurious_count() -> u32 {
    SPURIOUS.load(core::sync::atomic::Ordering::Relaxed)
}

#[no_mangle]
extern "C" fn trap_dispatch(frame: &mut TrapFrame) {
    // SAFETY: a word-sized read of the handler table; writers mask interrupts.
    let handler = unsafe { (*HANDLERS.get())[frame.vector as usize] };
    match handler {
        Some(h) => h(frame),
        None if frame.vector < 32 => die(frame),
        None => {
            // An interrupt nobody asked for: count it, as Linux counts
            // spurious IRQs, instead of killing the kernel.
            SPURIOUS.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
            // An APIC vector stays in service until EOI: without one, every
            // interrupt of equal or lower priority would be blocked.
            if frame.vector >= 0x30 && super::apic::present() {
                super::apic::eoi();
            }
        }
    }
}

/// Report an exception the kernel cannot handle.  Never returns into the
/// faulting code: either a recovery point takes over, or the run ends.
pub fn die(frame: &mut TrapFrame) -> ! {
    let cr2 = if frame.vector == 14 {
        super::cpu::read_cr2()
    } else {
        0
    };
    die_with_cr2(frame, cr2)
}

/// `die` for callers that already read CR2 (the page-fault path must read
/// it first: anything that faults in between would overwrite it).
pub fn die_with_cr2(frame: &mut TrapFrame, cr2: u32) -> ! {
    crate::oops::report_trap(frame, cr2);
    crate::fixup::recover_or_fail(crate::fixup::Caught::exception(frame, cr2))
}

/// Linux's `printk(KERN_ALERT "double fault")`: runs in the double-fault
/// task, called by the `double_fault_task` stub.
#[no_mangle]
extern "C" fn double_fault_report(error_code: u32) {
    let state = super::tss::interrupted_state();
    crate::oops::report_double_fault(&state, error_code);
    crate::fixup::recover_from_double_fault(&state);
}
