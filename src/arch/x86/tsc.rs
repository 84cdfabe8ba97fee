//! The time-stamp counter as a clock: its rate is measured once at boot
//! against the PIT (Linux's `pit_calibrate_tsc`), so that code needing a
//! coarse time base (`printk_ratelimit`) has one without a running timer
//! interrupt.  Under TCG the TSC follows the host's clock: good enough for
//! rate limits, never for results (those count instructions).

use core::sync::atomic::{AtomicU64, Ordering};

use super::{cpu, pit};

/// TSC cycles per millisecond; 0 until `calibrate` ran.
static TSC_PER_MS: AtomicU64 = AtomicU64::new(0);

/// How long the PIT gate stays open: 10 ms (Linux 2.6 uses 50; a shorter
/// gate keeps the boot fast and is plenty for a rate limit).
const CALIBRATE_MS: u32 = 10;

/// Measure the TSC rate over `CALIBRATE_MS` of PIT channel 2.
pub fn calibrate() {
    let cycles = pit::time_tsc_over_ms(CALIBRATE_MS);
    TSC_PER_MS.store((cycles / CALIBRATE_MS as u64).max(1), Ordering::Relaxed);
}

/// Milliseconds since the TSC started, or `None` before `calibrate`.
pub fn now_ms() -> Option<u64> {
    match TSC_PER_MS.load(Ordering::Relaxed) {
        0 => None,
        per_ms => Some(cpu::rdtsc() / per_ms),
    }
}

/// TSC cycles per millisecond, as measured (0 before `calibrate`).
pub fn cycles_per_ms() -> u64 {
    TSC_PER_MS.load(Ordering::Relaxed)
}

/// Microseconds since the TSC read `t0`, by the calibrated rate (after
/// `calibrate` only): the time base of the bounded waits in smp.rs and
/// smpboot.rs.
pub fn us_since(t0: u64) -> u64 {
    (cpu::rdtsc() - t0) * 1000 / cycles_per_ms().max(1)
}

/// Spin for at least `us` microseconds (Linux's `udelay`), by the TSC;
/// after `calibrate` only.
pub fn udelay(us: u64) {
    let end = cpu::rdtsc() + us * cycles_per_ms().max(1) / 1000;
    while cpu::rdtsc() < end {
        core::hint::spin_loop();
    }
}
