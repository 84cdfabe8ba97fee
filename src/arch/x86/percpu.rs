//! Per-CPU data and `smp_processor_id()`.  Each CPU's GDT (gdt.rs) has a
//! data segment at PERCPU_SEL whose base is that CPU's `PerCpu`; every CPU
//! loads the selector into %gs once and nothing reloads it (the entry
//! paths save and restore %gs, context switches leave it alone), so
//! `%gs:0` is the running CPU's number wherever the code runs, as Linux
//! x86-32 does with %fs from 2.6.21.  The alternative, the local APIC's ID
//! register, is an uncached MMIO read: under TCG every such read leaves
//! the translated code, on paths (the fault handler, `current`) that run
//! all the time.
//!
//! `current` lives here too, at %gs:4 (Linux 2.6.22's per-CPU
//! `current_task`): 2.4 derived it from ESP, which would tie a task to a
//! fixed stack size; the scheduler (sched/) owns what the word points at,
//! `switch_to` writes it.

use core::sync::atomic::{AtomicU32, Ordering};

use super::smp_config::NR_CPUS;
use crate::racy_cell::RacyCell;

/// What %gs points at.  `cpu` must stay the first field and `current` the
/// second: `smp_processor_id` reads %gs:0, `current` and `switch_to` use
/// %gs:4 ([`CURRENT_OFFSET`]).
#[repr(C)]
pub struct PerCpu {
    pub cpu: u32,
    /// The task running on this CPU (a `*const sched::Task`; null until
    /// the scheduler has given this CPU its idle task).
    pub current: AtomicU32,
    /// The local APIC ID of this CPU.
    pub apic_id: u32,
    /// Interrupt handlers running on this CPU (irq.rs: `do_irq` nesting).
    pub irq_depth: AtomicU32,
    /// A secondary CPU's idle stack top: where `smp::stop_this_cpu`
    /// restarts its idle loop.
    pub idle_esp: AtomicU32,
    /// The last `smp_call_function` call this CPU ran (smp.rs).
    pub call_gen: AtomicU32,
    /// Spinlocks the running task holds (`preempt_count`, as the preempt
    /// patch keeps it): under `preempt=full` no switch while it is not 0.
    /// Per CPU and swapped at every context switch, as x86 Linux's
    /// `__preempt_count` is (3.13 on); sched saves the task's.
    pub preempt_count: AtomicU32,
}

static PER_CPU: [RacyCell<PerCpu>; NR_CPUS] = [const {
    RacyCell::new(PerCpu {
        cpu: 0,
        current: AtomicU32::new(0),
        apic_id: 0,
        irq_depth: AtomicU32::new(0),
        idle_esp: AtomicU32::new(0),
        call_gen: AtomicU32::new(0),
        preempt_count: AtomicU32::new(0),
    })
}; NR_CPUS];

/// The GDT selector of the per-CPU data segment (entry 5 of each CPU's
/// GDT, gdt.rs), loaded into %gs.
pub const PERCPU_SEL: u16 = 0x28;

/// Where `current` sits in the per-CPU segment (switch.rs's `%gs:4`).
pub const CURRENT_OFFSET: usize = 4;
const _: () = assert!(core::mem::offset_of!(PerCpu, current) == CURRENT_OFFSET);

/// Where `irq_depth` sits in the per-CPU segment.
pub const IRQ_DEPTH_OFFSET: usize = 12;
const _: () = assert!(core::mem::offset_of!(PerCpu, irq_depth) == IRQ_DEPTH_OFFSET);

/// Where `preempt_count` sits in the per-CPU segment.
pub const PREEMPT_COUNT_OFFSET: usize = 24;
const _: () = assert!(core::mem::offset_of!(PerCpu, preempt_count) == PREEMPT_COUNT_OFFSET);

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
    gs_word::<0>() as usize
}

/// The word at `OFFSET` of this CPU's `PerCpu`, in one %gs-relative load:
/// no window in which a switch to another CPU could make it that CPU's.
#[inline(always)]
fn gs_word<const OFFSET: usize>() -> u32 {
    let w: u32;
    // SAFETY: %gs holds this CPU's PERCPU_SEL, whose segment starts at its
    // PerCpu; the callers' offsets are of aligned u32 fields (a 32-bit load
    // of one is atomic), and the load has no side effects.
    unsafe {
        core::arch::asm!(
            "mov {}, gs:[{off}]",
            out(reg) w,
            off = const OFFSET,
            options(nostack, readonly, preserves_flags)
        )
    };
    w
}

/// `smp_processor_id`, also before this CPU loaded its GDT (the boot
/// CPU's first prints; %gs then holds whatever the loader left): such a
/// CPU is taken for the boot CPU, the only one that runs code then.
#[inline(always)]
pub fn smp_processor_id_early() -> usize {
    let gs: u32;
    // SAFETY: reading a segment register has no side effects.
    unsafe {
        core::arch::asm!("mov {:e}, gs", out(reg) gs, options(nomem, nostack, preserves_flags))
    };
    if gs & 0xffff == PERCPU_SEL as u32 {
        smp_processor_id()
    } else {
        0
    }
}

/// The running CPU's area.
#[inline(always)]
pub fn this_cpu() -> &'static PerCpu {
    // SAFETY: after `setup`, the area is only read (its atomics change
    // through shared references).
    unsafe { &*PER_CPU[smp_processor_id()].get() }
}

/// CPU `cpu`'s area, read from another CPU (its `current`, its APIC ID).
pub fn per_cpu(cpu: usize) -> &'static PerCpu {
    // SAFETY: as `this_cpu`; `setup` wrote the plain fields before the CPU
    // was marked online, and the rest are atomics.
    unsafe { &*PER_CPU[cpu].get() }
}

/// This CPU's `current` word (0 before the scheduler set it), read with one
/// %gs-relative load: no window in which a migration could make it another
/// CPU's.
#[inline(always)]
pub fn current_word() -> u32 {
    gs_word::<CURRENT_OFFSET>()
}

/// This CPU's interrupt nesting depth, in one %gs-relative load (for a
/// #DB handler that may not call the code it steps: `irq::depth` is a
/// call).
#[inline(always)]
pub fn irq_depth_word() -> u32 {
    gs_word::<IRQ_DEPTH_OFFSET>()
}

/// This CPU's `preempt_count`, in one %gs-relative load (the #DB
/// handler's reading of the stepped code's count: no call, no lock).
#[inline(always)]
pub fn preempt_count_word() -> u32 {
    gs_word::<PREEMPT_COUNT_OFFSET>()
}

/// The running CPU's `preempt_count`, also before its GDT is loaded.
#[inline(always)]
pub fn preempt_count() -> &'static AtomicU32 {
    &per_cpu(smp_processor_id_early()).preempt_count
}

/// Set this CPU's `current` (the scheduler's recovery path; `switch_to`
/// writes it itself).
pub fn set_current_word(task: u32) {
    this_cpu().current.store(task, Ordering::SeqCst);
}
