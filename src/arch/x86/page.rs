//! Kernel virtual <-> physical for the direct map, Linux's `__pa`/`__va`
//! (asm/page.h: below mm, which names it as `mm::addr`).
//! All RAM below `MAXMEM` (896 MiB, as 2.4's i386) is mapped at
//! `PAGE_OFFSET + phys`.

use core::sync::atomic::{AtomicU32, Ordering};

pub const PAGE_OFFSET: usize = 0xC000_0000;
pub const PAGE_SIZE: usize = 4096;
pub const PAGE_SHIFT: u32 = 12;
/// Most physical memory the direct map can hold (Linux 2.4 `MAXMEM`).
pub const MAXMEM: u64 = 896 << 20;
/// Physical memory the boot page directory maps at `PAGE_OFFSET`
/// (boot/entry.s): the first GiB.  The boot information block and the
/// ACPI tables read before paging_init must lie inside it.
pub const BOOT_MAPPED: u32 = 1 << 30;
/// Linux's `TASK_SIZE` (5.x: `TASK_SIZE_MAX`): the user/kernel split.
pub const TASK_SIZE: u32 = PAGE_OFFSET as u32;
/// The end of the vmalloc area: this kernel's own choice, leaving the top
/// 16 MiB to the fixmap.  2.4.1's `pgtable.h` ends it two pages (a guard)
/// below the kmap window or the fixmap: `# define VMALLOC_END
/// (PKMAP_BASE-2*PAGE_SIZE)` with `CONFIG_HIGHMEM`, else
/// `(FIXADDR_START-2*PAGE_SIZE)` (2.4.0: `(FIXADDR_START)`); this kernel
/// has no highmem and a smaller fixmap.  Here with the other layout
/// constants, because 5.8's sync walks up to it as well as vmalloc.
pub const VMALLOC_END: u32 = 0xFF00_0000;

/// A physical address: what CR3, a page-table entry's frame field and
/// the frame allocator hold (a directory or table page: below `MAXMEM`,
/// so 32 bits; a PAE entry may point higher, and keeps its `u64`).  Its
/// own type, as rmm's `PhysicalAddress`, so that the mm API cannot be
/// given a virtual address where a physical one belongs: `pgd_offset`
/// takes the directory as a `PhysAddr` and the address as a `VirtAddr`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct PhysAddr(u32);

/// A virtual address (kernel or user).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct VirtAddr(u32);

impl PhysAddr {
    #[inline(always)]
    pub const fn new(pa: u32) -> PhysAddr {
        PhysAddr(pa)
    }

    #[inline(always)]
    pub const fn as_u32(self) -> u32 {
        self.0
    }

    #[inline(always)]
    pub const fn as_u64(self) -> u64 {
        self.0 as u64
    }
}

impl VirtAddr {
    #[inline(always)]
    pub const fn new(va: u32) -> VirtAddr {
        VirtAddr(va)
    }

    #[inline(always)]
    pub const fn as_u32(self) -> u32 {
        self.0
    }

    #[inline(always)]
    pub const fn as_usize(self) -> usize {
        self.0 as usize
    }
}

impl core::fmt::LowerHex for PhysAddr {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::LowerHex::fmt(&self.0, f)
    }
}

impl core::fmt::LowerHex for VirtAddr {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::LowerHex::fmt(&self.0, f)
    }
}

/// Physical address of a direct-mapped kernel virtual address.
#[allow(non_snake_case)]
#[inline]
pub fn __pa(vaddr: usize) -> u32 {
    (vaddr - PAGE_OFFSET) as u32
}

/// Direct-mapped kernel virtual address of a physical address.
#[allow(non_snake_case)]
#[inline]
pub fn __va(paddr: u32) -> usize {
    paddr as usize + PAGE_OFFSET
}

static HIGH_MEMORY: AtomicU32 = AtomicU32::new(0);

/// End of the direct map, as a kernel virtual address (Linux's
/// `high_memory`); 0 until `paging_init` has measured RAM.
pub fn high_memory() -> usize {
    HIGH_MEMORY.load(Ordering::Relaxed) as usize
}

/// Set once by `paging_init`.
pub fn set_high_memory(va: usize) {
    HIGH_MEMORY.store(va as u32, Ordering::Relaxed);
}

pub const fn page_align_up(x: usize) -> usize {
    (x + PAGE_SIZE - 1) & !(PAGE_SIZE - 1)
}

pub const fn page_align_down(x: usize) -> usize {
    x & !(PAGE_SIZE - 1)
}
