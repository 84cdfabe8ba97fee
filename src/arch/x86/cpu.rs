//! The few named functions through which the kernel changes CPU state:
//! control registers, the interrupt flag, halting.  Everything else calls
//! these instead of writing inline assembly, so each hardware-state change
//! has one place to read and one place to break on in gdb.

use x86::bits32::eflags::{self, EFlags};
use x86::controlregs;
use x86::debugregs::{BreakCondition, BreakSize, Breakpoint};

/// EFLAGS as saved by `save_flags`; Linux 2.4's `unsigned long flags`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flags(pub u32);

impl Flags {
    pub fn irqs_enabled(self) -> bool {
        self.0 & EFlags::FLAGS_IF.bits() != 0
    }
}

/// `__save_flags(flags)` of the seed's patch.
#[inline(always)]
pub fn save_flags() -> Flags {
    // SAFETY: reading EFLAGS has no side effects.
    Flags(unsafe { eflags::read() }.bits())
}

/// `__cli()`: mask maskable interrupts on this CPU.
#[inline(always)]
pub fn cli() {
    // SAFETY: we run at CPL 0; masking interrupts cannot break memory safety.
    unsafe { x86::irq::disable() }
}

/// `__sti()`: unmask maskable interrupts on this CPU.
#[inline(always)]
pub fn sti() {
    // SAFETY: we run at CPL 0 with a valid IDT loaded.
    unsafe { x86::irq::enable() }
}

/// `__restore_flags(flags)`: put IF back the way `save_flags` found it.
#[inline(always)]
pub fn restore_flags(flags: Flags) {
    if flags.irqs_enabled() {
        sti();
    } else {
        cli();
    }
}

/// Linux's `local_irq_save`: save flags and cli in one step.
#[inline(always)]
pub fn local_irq_save() -> Flags {
    let f = save_flags();
    cli();
    f
}

/// `local_irq_save(flags)` ... `local_irq_restore(flags)` as a scope:
/// interrupts stay masked until the guard drops, on every way out,
/// including an early return.  Code that quotes a Linux version's own
/// `__save_flags`/`__cli`/`__restore_flags` sequence (the seed's patch)
/// keeps those calls, so the reader sees the original.
#[must_use = "interrupts are restored when the guard drops"]
pub struct IrqSave(Flags);

/// Mask interrupts until the returned guard drops.
#[inline(always)]
pub fn irq_save() -> IrqSave {
    IrqSave(local_irq_save())
}

impl Drop for IrqSave {
    #[inline(always)]
    fn drop(&mut self) {
        restore_flags(self.0);
    }
}

pub fn irqs_enabled() -> bool {
    save_flags().irqs_enabled()
}

/// Halt until the next interrupt.
pub fn hlt() {
    // SAFETY: hlt only waits for an interrupt.
    unsafe { core::arch::asm!("hlt", options(nomem, nostack)) }
}

/// Linux's `safe_halt`: `sti; hlt` as one pair, so an interrupt that
/// arrives between them still ends the HLT (STI's one-instruction shadow).
pub fn safe_halt() {
    // SAFETY: enables interrupts and waits for one; the idle loop's job.
    unsafe { core::arch::asm!("sti; hlt", options(nomem, nostack)) }
}

/// Stop this CPU for good.
pub fn halt_forever() -> ! {
    loop {
        cli();
        hlt();
    }
}

pub fn read_cr0() -> u32 {
    // SAFETY: reading a control register at CPL 0 has no side effects.
    unsafe { controlregs::cr0() }.bits() as u32
}

/// `movl %cr2`.  Inline asm, not `x86::controlregs::cr2`: that one is a
/// call even in a debug kernel's fault path, and the instructions before
/// this read are the race window the explorers measure (issue 14).
#[inline(always)]
pub fn read_cr2() -> u32 {
    let address: u32;
    // SAFETY: CPL 0; reading CR2 has no side effect.
    unsafe {
        core::arch::asm!("movl %cr2, {}", out(reg) address, options(att_syntax, nomem, nostack, preserves_flags))
    };
    address
}

pub fn read_cr3() -> u32 {
    // SAFETY: as above.
    unsafe { controlregs::cr3() as u32 }
}

/// The physical address of the live page directory (two-level) or PDPT
/// (PAE, 32-byte aligned): CR3 without its low flag bits.
pub fn read_cr3_pa() -> u32 {
    read_cr3() & !0x1f
}

pub fn read_cr4() -> u32 {
    // SAFETY: as above.
    unsafe { controlregs::cr4() }.bits() as u32
}

/// Load a new page-table root.  This also flushes all non-global TLB
/// entries and, in PAE mode, reloads the four PDPTEs the CPU caches.
///
/// # Safety
/// `cr3` must point to page tables that map the running kernel.
/// A raw CR3 write: to switch directories use `mmu::load_cr3`, which
/// also keeps the double-fault task on the live tables.
pub unsafe fn write_cr3(cr3: u32) {
    // SAFETY: the caller guarantees the new tables map the kernel.
    unsafe { controlregs::cr3_write(cr3 as u64) };
}

/// # Safety
/// The new CR4 must be compatible with the current paging state.
pub unsafe fn write_cr4(cr4: u32) {
    // SAFETY: the caller guarantees compatibility.
    unsafe { controlregs::cr4_write(controlregs::Cr4::from_bits_truncate(cr4 as usize)) }
}

/// Invalidate the TLB entry for one virtual address (`__flush_tlb_one`).
pub fn flush_tlb_one(addr: usize) {
    // SAFETY: invlpg only drops a cached translation.
    unsafe { x86::tlb::flush(addr) }
}

/// Flush the whole non-global TLB (`__flush_tlb`).
pub fn flush_tlb() {
    // SAFETY: reloading CR3 with its own value keeps the same tables.
    unsafe { write_cr3(read_cr3()) }
}

/// Read a model-specific register.
///
/// # Safety
/// The MSR must exist on this CPU.
pub unsafe fn rdmsr(msr: u32) -> u64 {
    // SAFETY: the caller guarantees the MSR exists.
    unsafe { x86::msr::rdmsr(msr) }
}

/// # Safety
/// The MSR must exist and the value must be valid for it.
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: the caller guarantees validity.
    unsafe { x86::msr::wrmsr(msr, value) }
}

/// CPU features the paging code cares about.
#[derive(Clone, Copy, Debug, Default)]
pub struct Features {
    pub pse: bool,
    pub pae: bool,
    pub pge: bool,
    pub apic: bool,
    pub nx: bool,
    pub tsc: bool,
}

pub fn features() -> Features {
    use core::arch::x86::__cpuid;
    let std = __cpuid(1);
    // Leaf 0x80000000 reports the highest extended leaf.
    let max_ext = __cpuid(0x8000_0000).eax;
    let nx = if max_ext >= 0x8000_0001 {
        __cpuid(0x8000_0001).edx & (1 << 20) != 0
    } else {
        false
    };
    Features {
        pse: std.edx & (1 << 3) != 0,
        tsc: std.edx & (1 << 4) != 0,
        pae: std.edx & (1 << 6) != 0,
        apic: std.edx & (1 << 9) != 0,
        pge: std.edx & (1 << 13) != 0,
        nx,
    }
}

/// Read the time-stamp counter (secondary figures only: under TCG it is
/// not a hardware clock).
pub fn rdtsc() -> u64 {
    // SAFETY: rdtsc has no side effects.
    unsafe { x86::time::rdtsc() }
}

/// EFLAGS.TF: single-step trap after each instruction.
pub const EFLAGS_TF: u32 = eflags::EFlags::FLAGS_TF.bits();
/// EFLAGS.IF.
pub const EFLAGS_IF: u32 = eflags::EFlags::FLAGS_IF.bits();
/// EFLAGS.RF: resume without re-triggering an instruction breakpoint.
pub const EFLAGS_RF: u32 = eflags::EFlags::FLAGS_RF.bits();
/// CR4.PSE: 4 MiB pages in two-level directories.
pub const CR4_PSE: u32 = controlregs::Cr4::CR4_ENABLE_PSE.bits() as u32;
/// CR4.PAE: three-level paging with 64-bit entries.
pub const CR4_PAE: u32 = controlregs::Cr4::CR4_ENABLE_PAE.bits() as u32;
/// DR6.B0: breakpoint 0 hit; DR6.BS: single step.
pub const DR6_B0: u32 = 1 << 0;
pub const DR6_B1: u32 = 1 << 1;
pub const DR6_B2: u32 = 1 << 2;
pub const DR6_B3: u32 = 1 << 3;
pub const DR6_BS: u32 = 1 << 14;

/// Arm debug register `bp` (global) on `addr`.
fn arm_breakpoint(bp: Breakpoint, addr: u32, condition: BreakCondition, size: BreakSize) {
    // SAFETY: CPL 0; DR0-DR3/DR7 only change when the CPU raises #DB, and
    // a breakpoint only adds #DB exceptions, which the kernel handles.
    unsafe {
        bp.configure(addr as usize, condition, size);
        bp.enable_global();
    }
}

fn disarm_breakpoint(bp: Breakpoint) {
    // SAFETY: as above.
    unsafe { bp.disable_global() }
}

/// Arm debug register 0 as an execution breakpoint at `addr` (global).
pub fn set_exec_breakpoint(addr: u32) {
    arm_breakpoint(
        Breakpoint::Dr0,
        addr,
        BreakCondition::Instructions,
        BreakSize::Bytes1,
    );
}

pub fn clear_exec_breakpoint() {
    disarm_breakpoint(Breakpoint::Dr0);
}

/// DR1: a #DB right after any write to the 4 bytes at `addr` (a trap:
/// the write is done when the handler runs).
pub fn set_write_watchpoint(addr: u32) {
    arm_breakpoint(
        Breakpoint::Dr1,
        addr,
        BreakCondition::DataWrites,
        BreakSize::Bytes4,
    );
}

pub fn clear_write_watchpoint() {
    disarm_breakpoint(Breakpoint::Dr1);
}

/// DR2: a second execution breakpoint, independent of DR0's.
pub fn set_exec_breakpoint2(addr: u32) {
    arm_breakpoint(
        Breakpoint::Dr2,
        addr,
        BreakCondition::Instructions,
        BreakSize::Bytes1,
    );
}

pub fn clear_exec_breakpoint2() {
    disarm_breakpoint(Breakpoint::Dr2);
}

/// DR3: a third execution breakpoint, independent of DR0's and DR2's.
pub fn set_exec_breakpoint3(addr: u32) {
    arm_breakpoint(
        Breakpoint::Dr3,
        addr,
        BreakCondition::Instructions,
        BreakSize::Bytes1,
    );
}

pub fn clear_exec_breakpoint3() {
    disarm_breakpoint(Breakpoint::Dr3);
}

/// Read and clear DR6 (the #DB handler's first act).
pub fn take_dr6() -> u32 {
    // SAFETY: CPL 0.
    unsafe {
        let v = x86::debugregs::dr6().bits() as u32;
        x86::debugregs::dr6_write(x86::debugregs::Dr6::empty());
        v
    }
}
