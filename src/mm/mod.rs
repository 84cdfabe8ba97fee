//! Memory management: addresses, frames, page tables, address spaces,
//! vmalloc and the page-fault path.
pub mod addr;
pub mod fault;
pub mod fixmap;
pub mod frame;
pub mod heap;
pub mod init;
pub mod mm_struct;
pub mod pgtable;
pub mod vm_area;
pub mod vmalloc;
pub mod walk;

/// Bring up memory management: frames, the heap (carved from them),
/// `swapper_pg_dir` in the mode the command line chose.
pub fn init(p: &crate::BootParams) {
    init::paging_init(p);
    // Before the first mm_alloc, so every address space inherits it.
    if crate::arch::x86::cpu::features().apic {
        let va = fixmap::set_fixmap_nocache(
            fixmap::FixedAddress::ApicBase,
            crate::arch::x86::apic::phys_base(),
        );
        crate::arch::x86::irq::init(Some(va));
    } else {
        crate::arch::x86::irq::init(None);
    }
    let _ = mm_struct::init_mm();
    fault::init(p.cmdline.vmalloc_fault);
    vmalloc::init();
    crate::sched::init();
}
