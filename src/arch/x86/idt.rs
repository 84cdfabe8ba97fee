//! The interrupt descriptor table, with Linux 2.4's vocabulary: an
//! *interrupt gate* clears IF on entry, a *trap gate* leaves it as it was.
//! That difference is the whole story of the seed's race: 2.4.0/2.4.1 used
//! `set_trap_gate(14, &page_fault)`, 2.4.5-pre2 switched to `set_intr_gate`.

use x86::dtables::{lidt, DescriptorTablePointer};
use x86::segmentation::{
    BuildDescriptor, Descriptor, DescriptorBuilder, GateDescriptorBuilder, SegmentSelector,
    TaskGateDescriptorBuilder,
};
use x86::Ring;

use super::entry::stub_address;
use super::gdt::KERNEL_CS;
use crate::racy_cell::RacyCell;

#[repr(C, align(8))]
struct Idt([Descriptor; 256]);

static IDT: RacyCell<Idt> = RacyCell::new(Idt([Descriptor::NULL; 256]));

/// What kind of gate a vector has right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GateKind {
    Interrupt,
    Trap,
    Task,
}

fn write(n: u8, d: Descriptor) {
    // SAFETY: an 8-byte descriptor store; callers change gates with
    // interrupts off or before the vector can fire.
    unsafe { (*IDT.get()).0[n as usize] = d };
}

fn cs() -> SegmentSelector {
    SegmentSelector::from_raw(KERNEL_CS)
}

/// `set_intr_gate(n, addr)` to vector `n`'s stub: IF is cleared on entry.
pub fn set_intr_gate(n: u8) {
    set_intr_gate_at(n, stub_address(n))
}

/// `set_trap_gate(n, addr)` to vector `n`'s stub: IF keeps the
/// interrupted context's value.
pub fn set_trap_gate(n: u8) {
    set_trap_gate_at(n, stub_address(n))
}

/// `set_intr_gate(n, addr)` to an entry of its own (the #PF entries).
pub fn set_intr_gate_at(n: u8, addr: u32) {
    let d = <DescriptorBuilder as GateDescriptorBuilder<u32>>::interrupt_descriptor(cs(), addr);
    write(n, d.present().dpl(Ring::Ring0).finish());
}

/// `set_trap_gate(n, addr)` to an entry of its own.
pub fn set_trap_gate_at(n: u8, addr: u32) {
    let d = <DescriptorBuilder as GateDescriptorBuilder<u32>>::trap_gate_descriptor(cs(), addr);
    write(n, d.present().dpl(Ring::Ring0).finish());
}

/// Where vector `n`'s gate enters: the first instruction the CPU runs for
/// it (the race explorers put their breakpoint there).
pub fn gate_address(n: u8) -> u32 {
    // SAFETY: an 8-byte read of our own table.
    let d = unsafe { (*IDT.get()).0[n as usize] };
    (d.lower & 0xFFFF) | (d.upper & 0xFFFF_0000)
}

/// `set_task_gate(n, tss_selector)`: a hardware task switch to that TSS.
pub fn set_task_gate(n: u8, tss: u16) {
    let d = DescriptorBuilder::task_gate_descriptor(SegmentSelector::from_raw(tss));
    write(n, d.present().dpl(Ring::Ring0).finish());
}

/// Make vector `n`'s gate an interrupt gate to its stub with the present
/// bit clear: delivering it raises `#NP` (SDM Vol. 3A 6.12.1; a null
/// descriptor, no gate type at all, would raise `#GP`), a deliberate
/// triple fault's last step (`lab::race::triple_fault`).
pub fn set_gate_not_present(n: u8) {
    let d = <DescriptorBuilder as GateDescriptorBuilder<u32>>::interrupt_descriptor(
        cs(),
        stub_address(n),
    );
    write(n, d.dpl(Ring::Ring0).finish());
}

/// The gate type currently installed for vector `n`.
pub fn gate_kind(n: u8) -> GateKind {
    // SAFETY: an 8-byte read of our own table.
    let d = unsafe { (*IDT.get()).0[n as usize] };
    match (d.upper >> 8) & 0xF {
        0xE => GateKind::Interrupt,
        0xF => GateKind::Trap,
        _ => GateKind::Task,
    }
}

/// Fill the table (every vector an interrupt gate to its stub, the double
/// fault a task gate) and load it.
pub fn init() {
    for n in 0..=255u8 {
        set_intr_gate(n);
    }
    set_task_gate(8, super::tss::df_selector());
    load();
}

/// Load the IDT: the boot CPU from `init`, a secondary CPU in
/// `start_secondary` (one table for all CPUs, as Linux 2.4's `idt_table`;
/// its double-fault task gate resolves in each CPU's own GDT).
pub fn load() {
    // SAFETY: filled by `init` before any CPU loads it; gates change later
    // only by single aligned writes (set_*_gate).
    let idt = unsafe { &*IDT.get() };
    let ptr = DescriptorTablePointer::new_from_slice(&idt.0);
    // SAFETY: the table lives in a static and every gate points at a stub.
    unsafe { lidt(&ptr) };
}
