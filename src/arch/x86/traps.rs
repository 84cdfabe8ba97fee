//! Exceptions the kernel cannot handle (Linux 2.4's `do_trap` -> `die`):
//! an oops report, then the innermost recovery point (`crate::fixup`), or
//! a failed run; and the double fault's report, from its own task.

use super::entry::TrapFrame;

/// `trap_init`'s last step: every exception without a handler of its own
/// dies with an oops report.
pub fn init() {
    super::dispatch::set_unhandled_exception(|f| die(f));
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
    let named = !crate::oops::silenced();
    crate::fixup::recover_or_fail(crate::fixup::Caught::exception(frame, cr2, named))
}

/// Linux's `printk(KERN_ALERT "double fault")`: runs in the double-fault
/// task, called by the `double_fault_task` stub.
#[no_mangle]
extern "C" fn double_fault_report(error_code: u32) {
    let state = super::tss::interrupted_state();
    crate::oops::report_double_fault(&state, error_code);
    crate::fixup::recover_from_double_fault(&state);
}
