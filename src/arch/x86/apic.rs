//! The local APIC: enabled through IA32_APIC_BASE, mapped uncached in the
//! fixmap (a kernel page every address space has from boot on, like
//! Linux's FIX_APIC_BASE, so touching it never takes a vmalloc fault),
//! with its timer in one-shot or periodic mode and self-IPIs through the
//! ICR: the asynchronous interrupt sources of the race experiments.

use core::sync::atomic::{AtomicU32, Ordering};

use super::cpu;

const MSR_APIC_BASE: u32 = 0x1B;
const APIC_BASE_ENABLE: u64 = 1 << 11;
const REG_ID: u32 = 0x20;
const REG_TPR: u32 = 0x80;
const REG_EOI: u32 = 0xB0;
const REG_SVR: u32 = 0xF0;
const REG_ICR_LOW: u32 = 0x300;
const REG_ICR_HIGH: u32 = 0x310;
const REG_LVT_TIMER: u32 = 0x320;
const REG_TIMER_INIT: u32 = 0x380;
const REG_TIMER_CUR: u32 = 0x390;
const REG_TIMER_DIV: u32 = 0x3E0;
const ICR_SELF: u32 = 1 << 18;
const ICR_PENDING: u32 = 1 << 12;
const ICR_INIT: u32 = 0b101 << 8;
const ICR_STARTUP: u32 = 0b110 << 8;
const ICR_NMI: u32 = 0b100 << 8;
const ICR_LEVEL_ASSERT: u32 = 1 << 14;
const ICR_TRIGGER_LEVEL: u32 = 1 << 15;
const LVT_PERIODIC: u32 = 1 << 17;
const LVT_MASKED: u32 = 1 << 16;

pub const SPURIOUS_VECTOR: u8 = 0xFF;

static BASE: AtomicU32 = AtomicU32::new(0);

fn read(reg: u32) -> u32 {
    // SAFETY: BASE maps the APIC register page (checked by `present`).
    unsafe { core::ptr::read_volatile((BASE.load(Ordering::Relaxed) + reg) as *const u32) }
}

fn write(reg: u32, v: u32) {
    // SAFETY: as above.
    unsafe { core::ptr::write_volatile((BASE.load(Ordering::Relaxed) + reg) as *mut u32, v) }
}

pub fn present() -> bool {
    BASE.load(Ordering::Relaxed) != 0
}

/// Physical address of the register page.
pub fn phys_base() -> u64 {
    // SAFETY: IA32_APIC_BASE exists on every CPU with an APIC.
    unsafe { cpu::rdmsr(MSR_APIC_BASE) & 0xFFFF_F000 }
}

/// Enable the APIC with its registers at virtual `va` (already mapped).
pub fn init(va: u32) {
    BASE.store(va, Ordering::Relaxed);
    setup_this_cpu();
}

/// Enable and set up the running CPU's own APIC (every CPU has one at the
/// same physical address, so the one mapping serves all): the boot CPU
/// from `init`, a secondary one in `start_secondary`.
pub fn setup_this_cpu() {
    // SAFETY: as above; setting the enable bit keeps the base.
    unsafe { cpu::wrmsr(MSR_APIC_BASE, cpu::rdmsr(MSR_APIC_BASE) | APIC_BASE_ENABLE) };
    write(REG_TPR, 0);
    write(REG_SVR, (1 << 8) | SPURIOUS_VECTOR as u32);
    write(REG_TIMER_DIV, 0x3); // divide by 16
    write(REG_LVT_TIMER, LVT_MASKED);
}

pub fn id() -> u32 {
    read(REG_ID) >> 24
}

/// `ack_APIC_irq`.
pub fn eoi() {
    write(REG_EOI, 0);
}

/// Wait until the ICR has sent the last IPI (delivery status idle).
fn wait_icr_idle() {
    while read(REG_ICR_LOW) & ICR_PENDING != 0 {
        core::hint::spin_loop();
    }
}

/// INIT to the CPU with local APIC `apic_id` (Intel SDM 3A 8.4.4.1: level
/// assert, then de-assert, as Linux 2.4's `do_boot_cpu` sends it).
pub fn send_init(apic_id: u8) {
    write(REG_ICR_HIGH, (apic_id as u32) << 24);
    write(REG_ICR_LOW, ICR_INIT | ICR_LEVEL_ASSERT | ICR_TRIGGER_LEVEL);
    wait_icr_idle();
    write(REG_ICR_HIGH, (apic_id as u32) << 24);
    write(REG_ICR_LOW, ICR_INIT | ICR_TRIGGER_LEVEL);
    wait_icr_idle();
}

/// STARTUP IPI: the CPU starts in real mode at `page << 12`.
pub fn send_startup(apic_id: u8, page: u8) {
    write(REG_ICR_HIGH, (apic_id as u32) << 24);
    write(REG_ICR_LOW, ICR_STARTUP | page as u32);
    wait_icr_idle();
}

/// Send `vector` to the CPU with local APIC `apic_id` (fixed delivery,
/// physical destination).
pub fn send_ipi(apic_id: u8, vector: u8) {
    write(REG_ICR_HIGH, (apic_id as u32) << 24);
    write(REG_ICR_LOW, vector as u32);
    wait_icr_idle();
}

/// An NMI to the CPU with local APIC `apic_id`: taken even with its
/// interrupts off (the way to stop a CPU that spins with IF=0).
pub fn send_nmi(apic_id: u8) {
    write(REG_ICR_HIGH, (apic_id as u32) << 24);
    write(REG_ICR_LOW, ICR_NMI);
    wait_icr_idle();
}

/// Send `vector` to this CPU (ICR destination shorthand "self").
pub fn self_ipi(vector: u8) {
    write(REG_ICR_HIGH, 0);
    write(REG_ICR_LOW, ICR_SELF | vector as u32);
    while read(REG_ICR_LOW) & ICR_PENDING != 0 {}
}

/// One timer interrupt on `vector` after `count` bus cycles / 16.
pub fn timer_oneshot(vector: u8, count: u32) {
    write(REG_LVT_TIMER, vector as u32);
    write(REG_TIMER_INIT, count.max(1));
}

pub fn timer_periodic(vector: u8, count: u32) {
    write(REG_LVT_TIMER, vector as u32 | LVT_PERIODIC);
    write(REG_TIMER_INIT, count.max(1));
}

/// Count down from `count` without interrupting (LVT masked), to time
/// things in APIC timer ticks.
pub fn timer_start_masked(count: u32) {
    write(REG_LVT_TIMER, LVT_MASKED);
    write(REG_TIMER_INIT, count);
}

pub fn timer_stop() {
    write(REG_LVT_TIMER, LVT_MASKED);
    write(REG_TIMER_INIT, 0);
}

pub fn timer_current() -> u32 {
    read(REG_TIMER_CUR)
}
