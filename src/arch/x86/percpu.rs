//! Per-CPU data and `smp_processor_id()`.  Each CPU's GDT (gdt.rs) has a
//! data segment at PERCPU_SEL whose base is that CPU's `PerCpu`; every CPU
//! loads the selector into %gs once and nothing reloads it (the entry
//! paths save and restore %gs, context switches leave it alone), so
//! `%gs:0` is the running CPU's number wherever the code runs, as Linux
//! x86-32 does with %fs from 2.6.21.  The alternative, the local APIC's ID
//! register, is an uncached MMIO read: under TCG every such read leaves
//! the translated code, on paths (the fault handler, `current`) that run
//! all the time.

use core::sync::atomic::AtomicU32;

use super::smp_config::NR_CPUS;
use crate::racy_cell::RacyCell;

/// What %gs points at.  `cpu` must stay the first field: the one-instruction
/// `smp_processor_id` reads it at %gs:0.
#[repr(C)]
pub struct PerCpu {
    pub cpu: u32,
    /// The local APIC ID of this CPU.
    pub apic_id: u32,
    /// Interrupt handlers running on this CPU (irq.rs: `do_irq` nesting).
    pub irq_depth: AtomicU32,
    /// A secondary CPU's idle stack top: where `smp::stop_this_cpu`
    /// restarts its idle loop.
    pub idle_esp: AtomicU32,
    /// The last `smp_call_function` call this CPU ran (smp.rs).
    pub call_gen: AtomicU32,
}

static PER_CPU: [RacyCell<PerCpu>; NR_CPUS] = [const {
    RacyCell::new(PerCpu {
        cpu: 0,
        apic_id: 0,
        irq_depth: AtomicU32::new(0),
        idle_esp: AtomicU32::new(0),
        call_gen: AtomicU32::new(0),
    })
}; NR_CPUS];

/// CPU `cpu`'s area: its address (the segment's base) after setting its
/// number.  Called by that CPU before it loads its GDT.
pub fn setup(cpu: usize, apic_id: u32) -> u32 {
    let p = PER_CPU[cpu].get();
    // SAFETY: only CPU `cpu` writes its own area, once, before anything
    // reads it through %gs.
    unsafe {
        (*p).cpu = cpu as u32;
        (*p).apic_id = apic_id;
    }
    p as u32
}

/// The running CPU's number (0: the boot CPU), Linux's
/// `smp_processor_id()`.  Valid once `gdt::init` ran on this CPU.
#[inline(always)]
pub fn smp_processor_id() -> usize {
    let cpu: u32;
    // SAFETY: %gs holds this CPU's PERCPU_SEL, whose segment starts at its
    // PerCpu; reading the first word has no side effects.
    unsafe {
        core::arch::asm!("mov {}, gs:[0]", out(reg) cpu, options(nostack, readonly, preserves_flags))
    };
    cpu as usize
}

/// The running CPU's area.
#[inline(always)]
pub fn this_cpu() -> &'static PerCpu {
    // SAFETY: after `setup`, the area is only read (its atomics change
    // through shared references).
    unsafe { &*PER_CPU[smp_processor_id()].get() }
}
