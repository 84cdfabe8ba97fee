//! Switching page directories.  Every switch goes through `load_cr3`,
//! which also points the double-fault task at the new tables: the task
//! switch a double fault makes loads CR3 from that task's TSS, and its
//! report walks the address space that faulted.  (Kept apart from `cpu`,
//! which only touches the register, and `tss`, which only holds the
//! segments, so neither needs the other.)

use super::{cpu, tss};

/// Load `pgd` into CR3 (a full non-global TLB flush, and in PAE a reload
/// of the four PDPTEs) and keep the double-fault task in step.
///
/// # Safety
/// `pgd` must point to page tables that map the running kernel.
pub unsafe fn load_cr3(pgd: u32) {
    // SAFETY: the caller guarantees the tables map the kernel.
    unsafe { cpu::write_cr3(pgd) };
    tss::note_cr3(pgd);
}
