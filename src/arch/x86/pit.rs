//! The 8253/8254 PIT, channel 0, on IRQ 0: Linux 2.4's timer tick source.

use x86::io::{inb, outb};

pub const PIT_HZ: u32 = 1_193_182;
const CH0: u16 = 0x40;
const CH2: u16 = 0x42;
const CMD: u16 = 0x43;
/// System control port B: bit 0 gates channel 2, bit 1 drives the
/// speaker, bit 5 reads channel 2's output.
const PORT_B: u16 = 0x61;

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

/// TSC cycles that pass while PIT channel 2 counts down `ms` milliseconds
/// in mode 0 (Linux 2.6 `pit_calibrate_tsc`: gate on, speaker off, wait
/// for OUT2 to go high).  Polls: call it with nothing else to do, at boot.
pub fn time_tsc_over_ms(ms: u32) -> u64 {
    let latch = (PIT_HZ as u64 * ms as u64 / 1000).clamp(1, 0xffff) as u16;
    // SAFETY: PIT channel 2 and port B belong to this driver; the speaker
    // stays off.
    unsafe {
        outb(PORT_B, (inb(PORT_B) & !0x02) | 0x01);
        outb(CMD, 0xb0);
        outb(CH2, latch as u8);
        outb(CH2, (latch >> 8) as u8);
    }
    let t0 = super::cpu::rdtsc();
    // SAFETY: reading port B has no side effects.
    while unsafe { inb(PORT_B) } & 0x20 == 0 {
        core::hint::spin_loop();
    }
    super::cpu::rdtsc() - t0
}
