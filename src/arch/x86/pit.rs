//! The 8253/8254 PIT, channel 0, on IRQ 0: Linux 2.4's timer tick source.

use x86::io::outb;

pub const PIT_HZ: u32 = 1_193_182;
const CH0: u16 = 0x40;
const CMD: u16 = 0x43;

/// Periodic interrupts at about `hz` (mode 2, rate generator).
pub fn set_periodic(hz: u32) {
    let div = (PIT_HZ / hz.max(19)).clamp(1, 65535) as u16;
    // SAFETY: PIT ports belong to this driver.
    unsafe {
        outb(CMD, 0x34);
        outb(CH0, div as u8);
        outb(CH0, (div >> 8) as u8);
    }
}

/// One interrupt after `ticks` PIT cycles (mode 0).
pub fn set_oneshot(ticks: u16) {
    // SAFETY: as above.
    unsafe {
        outb(CMD, 0x30);
        outb(CH0, ticks as u8);
        outb(CH0, (ticks >> 8) as u8);
    }
}
