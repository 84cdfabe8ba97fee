//! Memory management: addresses, frames, page tables, address spaces,
//! vmalloc and the page-fault path.
pub mod addr;
pub mod fault;
pub mod fault_stats;
pub mod fault_version;
pub mod fixmap;
pub mod frame;
pub mod heap;
pub mod init;
pub mod mm_struct;
pub mod paging_mode;
pub mod pgtable;
pub mod sync_kernel_mappings;
pub mod tlb;
pub mod vm_area;
pub mod vmalloc;
pub mod walk;

pub use fault_version::VmallocFaultVersion;
pub use paging_mode::PagingMode;

/// Bring up memory management (`paging_init`, `mem_init`): frames, the
/// heap (carved from them), `swapper_pg_dir` in the mode `paging=` chose,
/// `init_mm`, the vmalloc area.  The page-fault gate of the chosen
/// `vmalloc_fault=` version is the fault path's (`fault::set_vmalloc_fault`,
/// a floor above: it is arch glue, as 2.4's arch/i386/mm/fault.c).
pub fn init(info: &multiboot2::BootInformation, info_phys: u32, paging: PagingMode) {
    init::paging_init(info, info_phys, paging);
    let _ = mm_struct::init_mm();
    vmalloc::init();
}
