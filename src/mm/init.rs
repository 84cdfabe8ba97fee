//! `paging_init`: from the boot page directory to `swapper_pg_dir` in the
//! mode the command line asked for.  The frame allocator is fed first,
//! then the direct map of all low memory is built with 4 KiB pages in the
//! new directory, and the CPU switches to it (through the low-memory
//! `paging_switch` when PAE must be turned on).

use core::sync::atomic::{AtomicU32, Ordering};

use multiboot2::{BootInformation, MemoryAreaType};

use super::addr::{__va, high_memory, MAXMEM, PAGE_OFFSET, PAGE_SIZE};
use super::frame::{self, alloc_zeroed_frame};
use super::heap;
use super::pgtable::*;
use super::walk::map_page;
use crate::arch::x86::cpu;
use crate::mm::addr::PhysAddr;
use crate::mm::addr::VirtAddr;
use crate::qemu::boot_failure;
use crate::{pr_info, pr_warn, println};

// gdb reads this by its plain name (tests/host/gdb/vmfault-gdb.py).
#[no_mangle]
static SWAPPER_PG_DIR: AtomicU32 = AtomicU32::new(0);

/// Physical address of `swapper_pg_dir` (the PGD page in two-level mode,
/// the PDPT in PAE).
pub fn swapper_pg_dir() -> PhysAddr {
    PhysAddr::new(SWAPPER_PG_DIR.load(Ordering::Relaxed))
}

extern "C" {
    static _etext: u8;
    static __start_rodata: u8;
    static __end_rodata: u8;
    static __kernel_phys_start: u8;
    static __kernel_phys_end: u8;
    static boot_stack_guard: u8;
    static boot_stack_bottom: u8;
    static boot_stack_top: u8;
    fn paging_switch(cr3: u32, cr4: u32);
}

const MSR_EFER: u32 = 0xC000_0080;
const EFER_NXE: u64 = 1 << 11;

/// W^X for the kernel image (Linux's `mark_rodata_ro`, and NX where the
/// CPU has it): the boot code and `.text` read-only and executable,
/// `.rodata` read-only, everything else (data, bss, the rest of RAM)
/// writable and, in PAE mode with NX, not executable.  CR0.WP (set by the
/// entry code) makes read-only binding for the kernel too.
pub fn kernel_page_flags(pa: u64) -> PteFlags {
    // SAFETY: linker symbols; only their addresses are used.
    let (etext, ro0, ro1) = unsafe {
        (
            &_etext as *const u8 as u64 - PAGE_OFFSET as u64,
            &__start_rodata as *const u8 as u64 - PAGE_OFFSET as u64,
            &__end_rodata as *const u8 as u64 - PAGE_OFFSET as u64,
        )
    };
    if (0x10_0000..etext).contains(&pa) {
        PteFlags::PAGE_KERNEL_RO
    } else if (ro0..ro1).contains(&pa) {
        PteFlags::PAGE_KERNEL_RO | PteFlags::NX
    } else {
        PteFlags::PAGE_KERNEL | PteFlags::NX
    }
}

/// Swapper's stack (boot/entry.s) as `[bottom, top)`; the page below
/// `bottom` is left out of the direct map, a guard like a thread's.
pub fn boot_stack() -> (u32, u32) {
    // SAFETY: linker symbols; only their addresses are used.
    unsafe {
        (
            &boot_stack_bottom as *const u8 as u32,
            &boot_stack_top as *const u8 as u32,
        )
    }
}

fn boot_stack_guard_phys() -> u64 {
    // SAFETY: a linker symbol; only its address is used.
    unsafe { &boot_stack_guard as *const u8 as u64 - PAGE_OFFSET as u64 }
}

/// Physical ranges that must never be handed out: frame 0, the kernel
/// image, the boot information at `info_phys` and what it points to.
pub fn reserved_ranges(
    info: &BootInformation,
    info_phys: u32,
    out: &mut [(u64, u64); 64],
) -> usize {
    let mut n = 0;
    let mut add = |s: u64, e: u64| {
        if n < out.len() && e > s {
            out[n] = (s, e);
            n += 1;
        }
    };
    // Frame 0: the real-mode IVT and BIOS data.
    add(0, PAGE_SIZE as u64);
    // The secondary CPUs' real-mode entry (the STARTUP IPI's page).
    let tr = crate::arch::x86::trampoline::TRAMPOLINE_PHYS as u64;
    add(tr, tr + PAGE_SIZE as u64);
    // SAFETY: linker symbols, only their addresses are taken.
    let (ks, ke) = unsafe {
        (
            &__kernel_phys_start as *const u8 as u64,
            &__kernel_phys_end as *const u8 as u64,
        )
    };
    add(ks, ke);
    add(
        info_phys as u64,
        info_phys as u64 + info.total_size() as u64,
    );
    for m in info.module_tags() {
        add(m.start_address() as u64, m.end_address() as u64);
    }
    // Sections GRUB loaded outside the image (.symtab, .strtab, debug
    // info): their sh_addr is physical.
    if let Some(tag) = info.elf_sections_tag() {
        for s in tag.sections() {
            if s.sh_addr != 0 && s.sh_addr < PAGE_OFFSET as u64 && s.sh_size != 0 {
                add(s.sh_addr, s.sh_addr + s.sh_size);
            }
        }
    }
    n
}

/// Usable areas of the memory map as `(start, end)`.
pub fn usable_areas<'a>(info: &'a BootInformation) -> impl Iterator<Item = (u64, u64)> + 'a {
    info.memory_map_tag()
        .into_iter()
        .flat_map(|m| m.memory_areas().iter())
        .filter(|a| a.typ() == MemoryAreaType::Available)
        .map(|a| (a.start_address(), a.end_address()))
}

pub fn paging_init(info: &BootInformation, info_phys: u32, mode: PagingMode) {
    let features = cpu::features();
    if mode == PagingMode::Pae && !features.pae {
        boot_failure(format_args!("paging=pae but this CPU has no PAE"));
    }

    let mut reserved = [(0u64, 0u64); 64];
    let nres = reserved_ranges(info, info_phys, &mut reserved);
    let stats = frame::init(usable_areas(info), &reserved[..nres]);
    if stats.ignored_bytes > 0 {
        pr_warn!(
            "{} MiB of RAM above {} MiB ignored: the direct map ends there (no HIGHMEM)",
            stats.ignored_bytes >> 20,
            MAXMEM >> 20
        );
    }
    // The heap before the direct map's page tables, so that it gets the
    // low run right after the image; nothing allocates before mm::init is
    // done, and the boot page directory already maps it at __va.
    let heap_size = heap::size_for(stats.usable_frames as u64 * PAGE_SIZE as u64);
    match frame::alloc_contiguous(heap_size / PAGE_SIZE) {
        Some(phys) => heap::init(phys, heap_size),
        None => boot_failure(format_args!(
            "too little memory: no free run of {} KiB for the kernel heap ({} KiB of {} KiB usable RAM free after the kernel image)",
            heap_size >> 10,
            frame::nr_free_frames() * 4,
            stats.usable_frames * 4
        )),
    }
    let top = usable_areas(info)
        .map(|(_, e)| e.min(MAXMEM))
        .max()
        .unwrap_or(0)
        & !(PAGE_SIZE as u64 - 1);
    super::addr::set_high_memory(__va(top as u32));

    set_mode(mode);
    if mode == PagingMode::Pae && features.nx {
        // Before any entry carries NX: in PAE mode without EFER.NXE, bit 63
        // is reserved and every access through such an entry would fault.
        // SAFETY: EFER exists on every CPU that reports NX; NXE alone
        // changes nothing until PAE paging is on.
        unsafe { cpu::wrmsr(MSR_EFER, cpu::rdmsr(MSR_EFER) | EFER_NXE) };
        super::pgtable::set_nx(true);
    }
    let pgd = alloc_zeroed_frame()
        .unwrap_or_else(|| boot_failure(format_args!("no frame for swapper_pg_dir")));
    if mode == PagingMode::Pae {
        // The kernel PMD page: PDPT slot 3 covers PAGE_OFFSET..4 GiB and is
        // shared by every address space (2.4 get_pgd_slow copies it).
        let kpmd = alloc_zeroed_frame()
            .unwrap_or_else(|| boot_failure(format_args!("no frame for the kernel pmd")));
        set_pgd(
            pgd_offset(PhysAddr::new(pgd), VirtAddr::new(PAGE_OFFSET as u32)),
            mk_pgd(kpmd as u64, PteFlags::PDPTE),
        );
    }
    let mut pa = 0u64;
    let guard = boot_stack_guard_phys();
    while pa < top {
        if pa == guard {
            pa += PAGE_SIZE as u64;
            continue;
        }
        if let Err(e) = map_page(
            PhysAddr::new(pgd),
            VirtAddr::new((PAGE_OFFSET as u64 + pa) as u32),
            pa,
            kernel_page_flags(pa),
        ) {
            boot_failure(format_args!(
                "building the direct map at {:#x}: {:?}",
                pa, e
            ));
        }
        pa += PAGE_SIZE as u64;
    }
    SWAPPER_PG_DIR.store(pgd, Ordering::Relaxed);
    switch_to_swapper(mode, pgd);

    println!(
        "Paging: {} ({}), swapper_pg_dir at {:#010x}, direct map {:#010x}-{:#010x} ({} MiB)",
        if mode == PagingMode::Pae {
            "PAE, three-level"
        } else {
            "two-level"
        },
        mode.name(),
        pgd,
        PAGE_OFFSET,
        high_memory(),
        top >> 20
    );
    println!(
        "CPU features: PSE {}, PAE {}, PGE {}, NX {}, APIC {}{}",
        yes(features.pse),
        yes(features.pae),
        yes(features.pge),
        yes(features.nx),
        yes(features.apic),
        if nx_enabled() {
            " (NX enabled: EFER.NXE)"
        } else {
            ""
        }
    );
    let (heap_phys, heap_bytes) = heap::region();
    pr_info!(
        "Memory: {}k free of {}k usable, kernel heap {}k at {:#010x}",
        frame::nr_free_frames() * 4,
        stats.usable_frames * 4,
        heap_bytes >> 10,
        heap_phys
    );
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// Load the new directory.  Two-level to two-level is a CR3 write.
/// Turning PAE on needs paging off for a moment (CR4.PAE may not change
/// while CR0.PG is set), so the first 4 MiB are aliased 1:1 in the new
/// tables for `paging_switch`, which runs from low memory.
fn switch_to_swapper(mode: PagingMode, pgd: u32) {
    let flags = cpu::local_irq_save();
    match mode {
        PagingMode::TwoLevel => {
            // SAFETY: the new directory maps the kernel exactly where the
            // boot directory did (the whole direct map).
            unsafe { crate::arch::x86::mmu::load_cr3(pgd) };
        }
        PagingMode::Pae => {
            let low = pgd_slot(PhysAddr::new(pgd), 0);
            let kpmd = pgd_offset(PhysAddr::new(pgd), VirtAddr::new(PAGE_OFFSET as u32))
                .read()
                .phys() as u32;
            let alias = alloc_zeroed_frame()
                .unwrap_or_else(|| boot_failure(format_args!("no frame for the boot alias")));
            // Two 2 MiB pmd entries = the first 4 MiB, same PTE pages.
            for i in 0..2 {
                set_pmd(pmd_slot(alias, i), pmd_slot(kpmd, i).read());
            }
            set_pgd(low, mk_pgd(alias as u64, PteFlags::PDPTE));
            // SAFETY: the new tables map the kernel high and the first
            // 4 MiB (where paging_switch lives) 1:1; interrupts are off.
            unsafe { paging_switch(pgd, cpu::read_cr4() | cpu::CR4_PAE | cpu::CR4_PSE) };
            crate::arch::x86::tss::note_cr3(pgd);
            pgd_clear(low);
            cpu::flush_tlb();
            frame::free_frame(alias);
        }
    }
    cpu::restore_flags(flags);
}
