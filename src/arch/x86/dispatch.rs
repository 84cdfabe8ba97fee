//! `trap_dispatch`: where every stub in `entry` lands.  A vector goes to
//! the handler registered for it (the page-fault path registers
//! `do_page_fault`, the IRQ layer `do_irq`); an exception nobody handles
//! goes to the function `traps::init` installed (`die`), an interrupt
//! nobody asked for is counted as spurious.

use super::entry::TrapFrame;
use crate::racy_cell::RacyCell;

pub type Handler = fn(&mut TrapFrame);

static HANDLERS: RacyCell<[Option<Handler>; 256]> = RacyCell::new([None; 256]);
static SPURIOUS: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

/// What an exception with no handler of its own gets (`die`).
static UNHANDLED: RacyCell<Option<Handler>> = RacyCell::new(None);

/// Set once by `traps::init`, before interrupts are enabled.
pub fn set_unhandled_exception(h: Handler) {
    let _irq = super::cpu::irq_save();
    // SAFETY: interrupts are off; no trap reads it meanwhile.
    unsafe { *UNHANDLED.get() = Some(h) };
}

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
        None if frame.vector < 32 => {
            // SAFETY: written once by traps::init before interrupts are on.
            match unsafe { *UNHANDLED.get() } {
                Some(die) => die(frame),
                // Before trap_init: say so and stop, never hang silently.
                None => {
                    crate::println!(
                        "vmfault: exception {} at eip {:08x} before trap_init",
                        frame.vector,
                        frame.eip
                    );
                    crate::qemu::exit(crate::qemu::ExitCode::Failed)
                }
            }
        }
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
