//! Fixed kernel mappings at the top of the address space (Linux's
//! fixmap), made in `swapper_pg_dir` during boot before any other address
//! space exists, so every mm inherits them and touching them never takes
//! a vmalloc fault.  The local APIC's registers live here, as in 2.4
//! (`FIX_APIC_BASE`): an interrupt handler must reach them from any mm.

use super::init::swapper_pg_dir;
use super::pgtable::PteFlags;
use super::walk::map_page;
use crate::mm::addr::VirtAddr;

/// Top of the fixmap; the slot 0xFFC00000-0xFFFFFFFF is above VMALLOC_END.
pub const FIXADDR_TOP: u32 = 0xFFFF_E000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum FixedAddress {
    ApicBase = 0,
}

pub const fn fix_to_virt(idx: FixedAddress) -> u32 {
    FIXADDR_TOP - ((idx as u32 + 1) << 12)
}

/// `set_fixmap_nocache(idx, phys)`.
pub fn set_fixmap_nocache(idx: FixedAddress, phys: u64) -> u32 {
    let va = fix_to_virt(idx);
    let flags = PteFlags::PAGE_KERNEL | PteFlags::PCD | PteFlags::PWT | PteFlags::NX;
    if let Err(e) = map_page(swapper_pg_dir(), VirtAddr::new(va), phys, flags) {
        crate::qemu::boot_failure(format_args!("fixmap {:?}: {:?}", idx, e));
    }
    va
}
