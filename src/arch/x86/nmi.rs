//! Stopping a CPU with an NMI (Linux 2.4 `nmi.c`'s door: the NMI is taken
//! even with interrupts off, so it reaches a CPU that spins with IF=0).
//! The stopped CPU reports where it was in the oops format and goes back
//! to its idle loop.

use core::sync::atomic::{AtomicU32, Ordering};

use super::entry::TrapFrame;
use super::{apic, dispatch, percpu};

/// Route the NMI (vector 2) to `stop_this_cpu`.
pub fn init() {
    dispatch::register_handler(2, Some(stop_this_cpu));
}

/// Stop another CPU, wedged or not: an NMI, which it takes even with its
/// interrupts off (2.4's NMI watchdog uses the same door).
pub fn stop_cpu(apic_id: u8) {
    apic::send_nmi(apic_id);
}

/// Times a secondary CPU was stopped by an NMI.
static STOPPED: AtomicU32 = AtomicU32::new(0);

pub fn stopped_count() -> u32 {
    STOPPED.load(Ordering::SeqCst)
}

/// The NMI handler: an oops-format report of where this CPU was, then
/// back to its idle loop on a fresh idle stack, through an IRET (which
/// also ends the NMI's blocking of further NMIs).  Whatever it was
/// running is abandoned, as a wedged CPU's work must be; the boot CPU has
/// no idle loop to go back to, so an NMI there only reports.
fn stop_this_cpu(frame: &mut TrapFrame) {
    let me = percpu::smp_processor_id();
    crate::println!(
        "NMI: stopping CPU {} (APIC ID {}), which was at eip {:08x}",
        me,
        percpu::this_cpu().apic_id,
        frame.eip
    );
    crate::oops::report_trap(frame, 0);
    let esp = percpu::this_cpu().idle_esp.load(Ordering::SeqCst);
    if me == 0 || esp == 0 {
        return;
    }
    percpu::this_cpu().irq_depth.store(0, Ordering::SeqCst);
    crate::sched::abandon_for_idle();
    STOPPED.fetch_add(1, Ordering::SeqCst);
    // SAFETY: `esp` is the top of this CPU's idle stack; its idle task is
    // current again and restarts from the top (its suspended frames, if
    // any, are abandoned).  The frame built there returns to `cpu_idle`
    // with interrupts on, in the kernel's code segment.
    unsafe {
        core::arch::asm!(
            "mov esp, {esp}",
            "xor ebp, ebp",
            "push 0x202",
            "push {cs}",
            "push {idle}",
            "iretd",
            esp = in(reg) esp,
            cs = in(reg) super::gdt::KERNEL_CS as u32,
            idle = in(reg) crate::sched::cpu_idle as *const () as u32,
            options(noreturn)
        )
    }
}
