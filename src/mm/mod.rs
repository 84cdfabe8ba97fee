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
/// heap (carved from them), `swapper_pg_dir` in the mode the command line
/// chose, `init_mm`, the vmalloc area, and the page-fault gate of the
/// chosen `vmalloc_fault=` version.
pub fn init(p: &crate::BootParams) {
    init::paging_init(p);
    let _ = mm_struct::init_mm();
    set_vmalloc_fault(p.cmdline.vmalloc_fault);
    vmalloc::init();
}

/// Put `vmalloc_fault=` version `v` in force: the page-fault gate and
/// handler of that Linux release, and whether vmalloc copies a new kernel
/// PGD entry into every directory itself (5.8's eager sync).  At boot from
/// the command line; the bench also switches versions within one boot to
/// compare them on the same memory.
pub fn set_vmalloc_fault(v: VmallocFaultVersion) {
    fault::init(v);
    vmalloc::set_version(v);
}
