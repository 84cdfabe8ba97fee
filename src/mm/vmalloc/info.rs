//! What vmalloc can tell about itself: `/proc/vmallocinfo`, the area
//! tree's invariants, and the counters the experiments and the leak checks
//! read (kernel page tables kept, eager syncs).

use core::fmt::Write;
use core::sync::atomic::Ordering;

use super::*;
use crate::fixed_buf::FixedBuf;
use crate::mm::vm_area::{VmArea, VmFlags};

pub fn kernel_pgtable_pages() -> u32 {
    PGTABLE_PAGES.load(Ordering::Relaxed)
}

/// Free frames plus the kernel page tables vmalloc keeps for good: the
/// figure that anything giving back all it took leaves unchanged.
pub fn free_frames_and_kept_tables() -> usize {
    crate::mm::frame::nr_free_frames() + kernel_pgtable_pages() as usize
}

/// Entries vmalloc copied into other directories itself: 5.8's
/// `arch_sync_kernel_mappings` (eager, eager-lazy) and test10-pre1's
/// `set_pgdir`.
pub fn eager_syncs() -> u32 {
    crate::mm::sync_kernel_mappings::eager_syncs() + set_pgdir_syncs()
}

pub fn stack_syncs() -> u32 {
    STACK_SYNCS.load(Ordering::Relaxed)
}

/// The live area containing `addr` (guard page included).
pub fn find_vm_area(addr: u32) -> Option<VmArea> {
    with_vmlist(|v| v.find_vm_area(addr).copied())
}

pub fn nr_areas() -> usize {
    with_vmlist(|v| v.nr_areas())
}

/// Check the area tree's invariants (tests, soak).
pub fn check_areas() -> Result<(), &'static str> {
    with_vmlist(|v| v.check())
}

/// Snapshot of the live areas as (addr, size, flags) into `out`.
pub fn areas_snapshot(out: &mut alloc::vec::Vec<(u32, u32, VmFlags)>) {
    out.clear();
    with_vmlist(|v| out.extend(v.areas().map(|a| (a.addr, a.size, a.flags))));
}

/// `/proc/vmallocinfo`: one line per live area, on the console.
pub fn vmallocinfo() {
    let _ = vmallocinfo_to(&mut crate::console::Console);
}

/// `/proc/vmallocinfo` into any writer: a header with the number of
/// areas, then one line per live area.
pub fn vmallocinfo_to(w: &mut impl Write) -> core::fmt::Result {
    let mut lines = alloc::vec::Vec::new();
    with_vmlist(|v| lines.extend(v.areas().copied()));
    writeln!(w, "vmallocinfo: {} areas", lines.len())?;
    for a in lines {
        let mut kind = FixedBuf::<48>::new();
        if a.flags.contains(VmFlags::IOREMAP) {
            let _ = write!(kind, "phys={:#x} ioremap", a.phys_addr);
        } else if a.flags.contains(VmFlags::MAP) {
            let _ = kind.write_str("vmap");
        } else if a.flags.contains(VmFlags::STACK) {
            let _ = kind.write_str("stack");
        } else {
            let _ = kind.write_str("vmalloc");
        }
        writeln!(
            w,
            "{:#010x}-{:#010x} {:>8} {}:{} pages={} {}",
            a.addr,
            a.addr + a.size,
            a.size,
            a.caller.file(),
            a.caller.line(),
            // Mapped pages: a stack's guard page below is not one.
            a.nr_pages - a.flags.contains(VmFlags::STACK) as u32,
            kind
        )?;
    }
    Ok(())
}
