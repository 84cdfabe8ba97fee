//! Leaving QEMU with a status the host can read: the `isa-debug-exit`
//! device (iobase 0xf4) turns a write of `v` into exit status `(v << 1) | 1`.
//! Status 0 is what QEMU returns after a triple fault with `-no-reboot`, so
//! neither code here can be confused with a reset.

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

/// Exit QEMU; on a machine without the device, halt instead.
pub fn exit(code: ExitCode) -> ! {
    // SAFETY: port 0xf4 is the debug-exit device or unused.
    unsafe { x86::io::outl(ISA_DEBUG_EXIT, code as u32) };
    crate::println!("vmfault: no isa-debug-exit device; halting");
    cpu::halt_forever()
}
