//! Task-state segments.  The kernel never uses hardware task switching for
//! scheduling; it needs a TSS for the running context only so that a double
//! fault can go through a *task gate* to a second TSS with its own stack
//! and page tables.  That way a blown kernel stack (the #PF cannot even be
//! pushed) still ends in a report, not a triple fault and a reset.  Each
//! CPU has both, and its own double-fault stack: the IDT's task gate names
//! DF_TSS_SEL, which each CPU's own GDT resolves (gdt.rs).

use core::mem::size_of;
use x86::bits32::task::TaskStateSegment;
use x86::segmentation::SegmentSelector;

use super::gdt::{DF_TSS_SEL, KERNEL_CS, KERNEL_DS, PERCPU_SEL};
use super::percpu::smp_processor_id;
use super::smp_config::NR_CPUS;
use crate::racy_cell::RacyCell;

const DF_STACK_SIZE: usize = 16 * 1024;

#[repr(C, align(4096))]
struct Stack([u8; DF_STACK_SIZE]);

static TSS: [RacyCell<TaskStateSegment>; NR_CPUS] =
    [const { RacyCell::new(TaskStateSegment::new()) }; NR_CPUS];
static DF_TSS: [RacyCell<TaskStateSegment>; NR_CPUS] =
    [const { RacyCell::new(TaskStateSegment::new()) }; NR_CPUS];
static DF_STACK: [RacyCell<Stack>; NR_CPUS] =
    [const { RacyCell::new(Stack([0; DF_STACK_SIZE])) }; NR_CPUS];

extern "C" {
    /// boot/../entry stub that loops: call the report, iret back.
    fn double_fault_task();
}

fn base_limit(t: &RacyCell<TaskStateSegment>) -> (u32, u32) {
    (t.get() as u32, size_of::<TaskStateSegment>() as u32 - 1)
}

/// Prepare CPU `cpu`'s two TSSes (run by that CPU, interrupts off);
/// returns (base, limit) of each for its GDT.
pub fn init(cpu: usize) -> ((u32, u32), (u32, u32)) {
    // SAFETY: only CPU `cpu` touches its TSSes, and not yet through a
    // task switch.
    let df = unsafe { &mut *DF_TSS[cpu].get() };
    // SAFETY: as above.
    let tss = unsafe { &mut *TSS[cpu].get() };
    let no_io_bitmap = size_of::<TaskStateSegment>() as u16;
    tss.iobp_offset = no_io_bitmap;
    df.iobp_offset = no_io_bitmap;
    df.eip = double_fault_task as *const () as u32;
    df.esp = DF_STACK[cpu].get() as u32 + DF_STACK_SIZE as u32;
    df.ebp = 0;
    df.eflags = 0x2; // IF off: the report runs with interrupts masked.
    df.cs = KERNEL_CS;
    df.ss = KERNEL_DS;
    df.ds = KERNEL_DS;
    df.es = KERNEL_DS;
    df.fs = KERNEL_DS;
    // The report asks smp_processor_id() too.
    df.gs = PERCPU_SEL;
    df.cr3 = super::cpu::read_cr3();
    (base_limit(&TSS[cpu]), base_limit(&DF_TSS[cpu]))
}

/// Load the task register with the kernel's own TSS (after the GDT).
pub fn load() {
    // SAFETY: the GDT holds an available TSS descriptor at TSS_SEL.
    unsafe { x86::task::load_tr(SegmentSelector::from_raw(super::gdt::TSS_SEL)) }
}

/// Keep the double-fault task on the page tables that were live when the
/// fault hit: the task switch loads CR3 from the DF TSS, and the report
/// wants to walk the faulting address space.
pub fn note_cr3(cr3: u32) {
    // SAFETY: a plain store of one field of this CPU's DF task, which is
    // not running (it runs with IF off and never calls write_cr3).
    unsafe { (*DF_TSS[smp_processor_id()].get()).cr3 = cr3 };
}

/// The state the CPU saved into the kernel TSS when the double fault
/// switched tasks away from it.
pub fn interrupted_state() -> TaskStateSegment {
    // SAFETY: read from this CPU's DF task, while its kernel task is
    // suspended.
    unsafe { *TSS[smp_processor_id()].get() }
}

/// Make the suspended kernel task resume at `eip` with `esp`, IF off,
/// when the double-fault task irets back to it.
pub fn redirect_interrupted(eip: u32, esp: u32, cr3: u32) {
    // SAFETY: this CPU's kernel task is suspended while its DF task runs.
    let tss = unsafe { &mut *TSS[smp_processor_id()].get() };
    tss.eip = eip;
    tss.esp = esp;
    tss.eflags = 0x2;
    tss.cr3 = cr3;
}

/// The double-fault task's own TSS selector, for the IDT task gate.
pub const fn df_selector() -> u16 {
    DF_TSS_SEL
}
