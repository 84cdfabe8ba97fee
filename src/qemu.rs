//! Leaving the emulator with a status the host can read.  QEMU's
//! `isa-debug-exit` device (iobase 0xf4) turns a write of `v` into exit
//! status `(v << 1) | 1`; status 0 is what QEMU returns after a triple
//! fault with `-no-reboot`, so neither code here can be confused with a
//! reset.  Bochs has no such device: its port 0x8900 ends the simulation
//! on the bytes of "Shutdown", with no status, so the kernel first says
//! which exit it takes (`vmfault: exit 0x10`), and the host reads that.

use crate::arch::x86::cpu;

/// The device's port, as QEMU's `-device isa-debug-exit,iobase=` names it.
pub const ISA_DEBUG_EXIT: u16 = 0xf4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ExitCode {
    /// Host sees 33.
    Success = 0x10,
    /// Host sees 35.
    Failed = 0x11,
}

/// Bochs's shutdown port (its "unmapped" device).
pub const BOCHS_SHUTDOWN: u16 = 0x8900;

/// Stop the boot with a message the host runner and a user can read (mm
/// and the boot code below it call this on what they cannot boot with).
pub fn boot_failure(msg: core::fmt::Arguments) -> ! {
    crate::println!("vmfault: boot stopped: {}", msg);
    exit(ExitCode::Failed)
}

/// Exit the emulator; on a machine with neither device, halt instead.
pub fn exit(code: ExitCode) -> ! {
    crate::println!("vmfault: exit {:#x}", code as u32);
    // SAFETY: port 0xf4 is the debug-exit device or unused.
    unsafe { x86::io::outl(ISA_DEBUG_EXIT, code as u32) };
    for b in *b"Shutdown" {
        // SAFETY: Bochs's shutdown port, or an unused one.
        unsafe { x86::io::outb(BOCHS_SHUTDOWN, b) };
    }
    crate::println!("vmfault: no exit device answered; halting");
    cpu::halt_forever()
}
