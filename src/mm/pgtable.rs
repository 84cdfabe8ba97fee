//! Page-table entries and the walk, with Linux's names, for both i386
//! formats at once: one kernel binary picks the mode at boot (`paging=`).
//!
//! | | two-level | PAE |
//! |---|---|---|
//! | pgd | 1024 x 4 MiB PDEs, 32-bit | 4 x 1 GiB PDPTEs, 64-bit |
//! | pmd | folded into the pgd | 512 x 2 MiB, 64-bit |
//! | pte | 1024 x 4 KiB, 32-bit | 512 x 4 KiB, 64-bit |
//!
//! The folding follows Linux 2.4's `pgtable-2level.h` to the letter:
//! `pgd_present()` is constant 1 and `pmd_offset()` returns the pgd slot
//! itself, so in two-level mode the real present bit is `pmd_present`.
//! The historical fault handlers depend on exactly this.
//!
//! Entries are handled as `u64` values in generic code; a `Slot` is the
//! kernel virtual address of one entry, and its width follows the mode.

use core::sync::atomic::{AtomicU8, Ordering};

use bitflags::bitflags;

use super::addr::{__va, PAGE_SIZE};
pub use crate::cmdline::PagingMode;

bitflags! {
    /// Entry flags, Linux's `_PAGE_*`.  The low twelve bits are the same in
    /// both formats; NX (bit 63) exists only in PAE entries.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct PteFlags: u64 {
        const PRESENT = 1 << 0;
        const RW = 1 << 1;
        const USER = 1 << 2;
        const PWT = 1 << 3;
        const PCD = 1 << 4;
        const ACCESSED = 1 << 5;
        const DIRTY = 1 << 6;
        /// 4 MiB (2 MiB in PAE) page in a directory entry.
        const PSE = 1 << 7;
        const GLOBAL = 1 << 8;
        const NX = 1 << 63;
    }
}

impl PteFlags {
    /// `_KERNPG_TABLE`: a kernel page-table page.
    pub const KERNPG_TABLE: Self = Self::PRESENT
        .union(Self::RW)
        .union(Self::ACCESSED)
        .union(Self::DIRTY);
    /// `_PAGE_TABLE`: a page-table page user mappings may sit under.
    pub const PAGE_TABLE: Self = Self::KERNPG_TABLE.union(Self::USER);
    /// `PAGE_KERNEL`.
    pub const PAGE_KERNEL: Self = Self::PRESENT
        .union(Self::RW)
        .union(Self::ACCESSED)
        .union(Self::DIRTY);
    /// `PAGE_KERNEL_RO`.
    pub const PAGE_KERNEL_RO: Self = Self::PRESENT.union(Self::ACCESSED);
    /// `PAGE_SHARED`: user read/write.
    pub const PAGE_SHARED: Self = Self::PAGE_KERNEL.union(Self::USER);
    /// A PAE PDPTE may only carry P (and cache bits): RW/US are reserved
    /// there, hence the seed's `set_pgd(pgd, __pgd(1 + __pa(page)))`.
    pub const PDPTE: Self = Self::PRESENT;
}

/// Bits of an entry that hold the physical frame address.
pub fn addr_mask() -> u64 {
    match mode() {
        PagingMode::TwoLevel => 0xFFFF_F000,
        PagingMode::Pae => 0x000F_FFFF_FFFF_F000,
    }
}

static MODE: AtomicU8 = AtomicU8::new(0);

/// Set once by `mm::init`, before any table exists.
pub fn set_mode(m: PagingMode) {
    MODE.store(if m == PagingMode::Pae { 1 } else { 0 }, Ordering::Relaxed);
}

pub fn mode() -> PagingMode {
    if MODE.load(Ordering::Relaxed) == 1 {
        PagingMode::Pae
    } else {
        PagingMode::TwoLevel
    }
}

pub fn is_pae() -> bool {
    mode() == PagingMode::Pae
}

/// Geometry of one format: Linux's `PGDIR_SHIFT`, `PTRS_PER_*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub pgdir_shift: u32,
    pub pmd_shift: u32,
    pub ptrs_per_pgd: usize,
    pub ptrs_per_pmd: usize,
    pub ptrs_per_pte: usize,
    pub entry_size: usize,
}

pub const TWO_LEVEL: Geometry = Geometry {
    pgdir_shift: 22,
    pmd_shift: 22,
    ptrs_per_pgd: 1024,
    ptrs_per_pmd: 1,
    ptrs_per_pte: 1024,
    entry_size: 4,
};

pub const PAE: Geometry = Geometry {
    pgdir_shift: 30,
    pmd_shift: 21,
    ptrs_per_pgd: 4,
    ptrs_per_pmd: 512,
    ptrs_per_pte: 512,
    entry_size: 8,
};

impl Geometry {
    pub fn of(m: PagingMode) -> Geometry {
        match m {
            PagingMode::TwoLevel => TWO_LEVEL,
            PagingMode::Pae => PAE,
        }
    }

    /// `pgd_index(address)`.
    pub fn pgd_index(&self, addr: u32) -> usize {
        (addr >> self.pgdir_shift) as usize & (self.ptrs_per_pgd - 1)
    }

    /// Index in the pmd page (always 0 when folded).
    pub fn pmd_index(&self, addr: u32) -> usize {
        (addr >> self.pmd_shift) as usize & (self.ptrs_per_pmd - 1)
    }

    /// `__pte_offset(address)`.
    pub fn pte_index(&self, addr: u32) -> usize {
        (addr >> 12) as usize & (self.ptrs_per_pte - 1)
    }

    /// Bytes one pgd entry maps (`PGDIR_SIZE`).
    pub fn pgdir_size(&self) -> u64 {
        1u64 << self.pgdir_shift
    }

    /// Bytes one pmd entry maps (`PMD_SIZE`).
    pub fn pmd_size(&self) -> u64 {
        1u64 << self.pmd_shift
    }

    /// First pgd slot of the kernel half (`USER_PTRS_PER_PGD`).
    pub fn user_ptrs_per_pgd(&self) -> usize {
        super::addr::PAGE_OFFSET >> self.pgdir_shift
    }
}

pub fn geometry() -> Geometry {
    Geometry::of(mode())
}

/// The kernel virtual address of one table entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot(pub usize);

impl Slot {
    /// Read the entry (`pgd_val(*pgd)` and friends).
    pub fn read(self) -> u64 {
        // SAFETY: slots are only made by the `*_offset` functions, which
        // point into live table pages in the direct map.
        unsafe {
            if is_pae() {
                core::ptr::read_volatile(self.0 as *const u64)
            } else {
                core::ptr::read_volatile(self.0 as *const u32) as u64
            }
        }
    }

    /// The one function that writes a page-table entry.  In PAE mode the
    /// high half (frame bits 32+, NX) goes first and the low half (with the
    /// present bit) last, so the CPU never sees a present entry with a
    /// stale high half (Linux 2.6 `set_pte` for PAE).
    fn write(self, val: u64) {
        // SAFETY: as in `read`; callers hold the lock of the table's mm or
        // run with interrupts off.
        unsafe {
            if is_pae() {
                let p = self.0 as *mut u32;
                core::ptr::write_volatile(p.add(1), (val >> 32) as u32);
                core::sync::atomic::compiler_fence(Ordering::SeqCst);
                core::ptr::write_volatile(p, val as u32);
            } else {
                core::ptr::write_volatile(self.0 as *mut u32, val as u32);
            }
        }
    }
}

/// `set_pgd`: in two-level mode this writes the PDE (the folded pmd); in
/// PAE it writes a PDPTE, which the CPU caches: the caller must reload CR3
/// if the PDPT is live (see `pmd_alloc`).
pub fn set_pgd(pgd: Slot, val: u64) {
    pgd.write(val)
}

/// `set_pmd`.
pub fn set_pmd(pmd: Slot, val: u64) {
    pmd.write(val)
}

/// `set_pte`.
pub fn set_pte(pte: Slot, val: u64) {
    pte.write(val)
}

/// `pte_clear`.
pub fn pte_clear(pte: Slot) {
    pte.write(0)
}

/// `pgd_present`: constant 1 in two-level mode, where the pmd is folded
/// into the pgd (Linux 2.4 `pgtable-2level.h`).
pub fn pgd_present(pgd: u64) -> bool {
    match mode() {
        PagingMode::TwoLevel => true,
        PagingMode::Pae => pgd & PteFlags::PRESENT.bits() != 0,
    }
}

/// `pgd_none`: constant 0 in two-level mode.
pub fn pgd_none(pgd: u64) -> bool {
    match mode() {
        PagingMode::TwoLevel => false,
        PagingMode::Pae => pgd == 0,
    }
}

pub fn pmd_present(pmd: u64) -> bool {
    pmd & PteFlags::PRESENT.bits() != 0
}

pub fn pmd_none(pmd: u64) -> bool {
    pmd == 0
}

pub fn pte_present(pte: u64) -> bool {
    pte & PteFlags::PRESENT.bits() != 0
}

pub fn pte_none(pte: u64) -> bool {
    pte == 0
}

/// The frame an entry points to.
pub fn entry_phys(e: u64) -> u64 {
    e & addr_mask()
}

/// Build an entry from a frame and flags (`mk_pte`, `__pmd`, ...); NX is
/// dropped where the format has no such bit or the CPU lacks it.
pub fn mk_entry(phys: u64, flags: PteFlags) -> u64 {
    let mut f = flags;
    if !is_pae() || !super::init::nx_enabled() {
        f.remove(PteFlags::NX);
    }
    (phys & addr_mask()) | f.bits()
}

/// `pgd_offset`: the pgd slot for `addr` in the directory at `pgd_phys`
/// (the PGD page in two-level mode, the PDPT in PAE).
pub fn pgd_offset(pgd_phys: u32, addr: u32) -> Slot {
    let g = geometry();
    Slot(__va(pgd_phys) + g.pgd_index(addr) * g.entry_size)
}

/// `pmd_offset`: in two-level mode the pgd slot itself (folded); in PAE
/// the entry in the PMD page the PDPTE points to.
pub fn pmd_offset(pgd: Slot, addr: u32) -> Slot {
    match mode() {
        PagingMode::TwoLevel => pgd,
        PagingMode::Pae => {
            let g = PAE;
            Slot(__va(entry_phys(pgd.read()) as u32) + g.pmd_index(addr) * g.entry_size)
        }
    }
}

/// `pte_offset`: the entry in the PTE page the pmd points to.
pub fn pte_offset(pmd: Slot, addr: u32) -> Slot {
    let g = geometry();
    Slot(__va(entry_phys(pmd.read()) as u32) + g.pte_index(addr) * g.entry_size)
}

/// Zero a freshly allocated table page (`clear_page`).
pub fn clear_page(phys: u32) {
    // SAFETY: the frame was just allocated, is in the direct map, and no
    // one else has a reference to it.
    unsafe { core::ptr::write_bytes(__va(phys) as *mut u8, 0, PAGE_SIZE) }
}
