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
//! Each level has its own entry type (`Pgd`, `Pmd`, `Pte`: Linux's
//! `pgd_t`, `pmd_t`, `pte_t`) and its own slot type (where such an entry
//! lives), so a value of one level cannot be written into another.  The
//! width of an entry in memory follows the mode.

use core::sync::atomic::Ordering;

use bitflags::bitflags;

use super::addr::__va;
pub use crate::mm::addr::{PhysAddr, VirtAddr};
use crate::mm::tlb::TlbFlush;
pub use crate::mm::PagingMode;

mod levels;
pub use levels::{Levels, ThreeLevel, TwoLevel};

/// Run the `Levels` function of the booted paging mode: one test of the
/// mode, then code compiled for it.
macro_rules! by_mode {
    ($f:ident($($a:expr),*)) => {
        if is_pae() {
            <ThreeLevel as Levels>::$f($($a),*)
        } else {
            <TwoLevel as Levels>::$f($($a),*)
        }
    };
}

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
#[inline(always)]
pub fn addr_mask() -> u64 {
    by_mode!(addr_mask())
}

/// The paging mode, written once by `paging_init` before any table exists
/// and only read after: a plain load, not an atomic.  The fault path
/// reads it at every step of every walk, and in a debug kernel an atomic
/// load is a chain of calls that the race explorer single-steps through.
static PAE_MODE: crate::racy_cell::RacyCell<bool> = crate::racy_cell::RacyCell::new(false);

/// Set once by `mm::init`, before any table exists.
pub fn set_mode(m: PagingMode) {
    // SAFETY: called once at boot, on one CPU, before anything reads it.
    unsafe { *PAE_MODE.get() = m == PagingMode::Pae };
}

#[inline(always)]
pub fn mode() -> PagingMode {
    if is_pae() {
        PagingMode::Pae
    } else {
        PagingMode::TwoLevel
    }
}

static NX: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Whether entries may carry NX: PAE on a CPU with NX, EFER.NXE set by
/// `paging_init` before any entry has the bit.
#[inline(always)]
pub fn nx_enabled() -> bool {
    NX.load(Ordering::Relaxed)
}

/// Set once by `paging_init`, after EFER.NXE.
pub fn set_nx(on: bool) {
    NX.store(on, Ordering::Relaxed);
}

#[inline(always)]
pub fn is_pae() -> bool {
    // SAFETY: written once before any reader (see `PAE_MODE`).
    unsafe { *PAE_MODE.get() }
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
    #[inline(always)]
    pub fn pgd_index(&self, addr: u32) -> usize {
        (addr >> self.pgdir_shift) as usize & (self.ptrs_per_pgd - 1)
    }

    /// Index in the pmd page (always 0 when folded).
    #[inline(always)]
    pub fn pmd_index(&self, addr: u32) -> usize {
        (addr >> self.pmd_shift) as usize & (self.ptrs_per_pmd - 1)
    }

    /// `__pte_offset(address)`.
    #[inline(always)]
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

#[inline(always)]
pub fn geometry() -> Geometry {
    Geometry::of(mode())
}

// ------------------------------------------------------------ entry values
//
// Linux's pgd_t, pmd_t and pte_t: one type per level, so that a pte value
// cannot be written where a pmd belongs (`set_pmd(pmd, pte)` does not
// compile).  Each holds the raw entry as 64 bits; in two-level mode only
// the low 32 exist.

macro_rules! entry_type {
    ($(#[$doc:meta])* $name:ident, $val:ident, $make:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        #[repr(transparent)]
        pub struct $name(u64);

        impl $name {
            /// The raw entry (Linux's `pgd_val` and friends).
            #[inline(always)]
            pub const fn val(self) -> u64 {
                self.0
            }

            /// The frame the entry points to.
            #[inline(always)]
            pub fn phys(self) -> u64 {
                self.0 & addr_mask()
            }

            /// The entry's flag bits (NX included in PAE).
            #[inline(always)]
            pub fn flags(self) -> PteFlags {
                PteFlags::from_bits_truncate(self.0)
            }
        }

        /// Linux's `__pgd(x)` and friends: an entry from its raw value.
        #[allow(non_snake_case)]
        pub const fn $make(val: u64) -> $name {
            $name(val)
        }

        /// Linux's `pgd_val(x)` and friends.
        pub const fn $val(e: $name) -> u64 {
            e.0
        }
    };
}

entry_type!(
    /// `pgd_t`: a PDE in two-level mode, a PDPTE in PAE.
    Pgd, pgd_val, __pgd
);
entry_type!(
    /// `pmd_t`: in two-level mode the folded pgd entry itself.
    Pmd, pmd_val, __pmd
);
entry_type!(
    /// `pte_t`.
    Pte, pte_val, __pte
);

/// The raw entry for a frame and flags; NX is dropped where the format has
/// no such bit or the CPU lacks it.
fn entry_bits(phys: u64, flags: PteFlags) -> u64 {
    let mut f = flags;
    if !is_pae() || !nx_enabled() {
        f.remove(PteFlags::NX);
    }
    (phys & addr_mask()) | f.bits()
}

/// `mk_pte(page, prot)`.
pub fn mk_pte(phys: u64, flags: PteFlags) -> Pte {
    Pte(entry_bits(phys, flags))
}

/// A pmd pointing to a PTE page: `__pmd(_KERNPG_TABLE + __pa(pte))`.
pub fn mk_pmd(phys: u64, flags: PteFlags) -> Pmd {
    Pmd(entry_bits(phys, flags))
}

/// A pgd pointing to a PMD page (PAE: `__pgd(1 + __pa(page))`) or, in
/// two-level mode, to a PTE page.
pub fn mk_pgd(phys: u64, flags: PteFlags) -> Pgd {
    Pgd(entry_bits(phys, flags))
}

// ------------------------------------------------------------ entry slots
//
// Where one entry lives: the kernel virtual address (in the direct map) of
// an entry of a given level.  Only the `*_offset` and `*_slot` functions
// make them, so a slot always points into a live table page.

macro_rules! slot_type {
    ($(#[$doc:meta])* $name:ident, $entry:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub struct $name(usize);

        impl $name {
            /// Read the entry (`*pgd` and friends).
            #[inline(always)]
            pub fn read(self) -> $entry {
                $entry(read_entry(self.0))
            }

            /// The kernel virtual address of the entry.
            #[inline(always)]
            pub fn addr(self) -> usize {
                self.0
            }
        }
    };
}

slot_type!(
    /// Where a `pgd_t` lives.
    PgdSlot, Pgd
);
slot_type!(
    /// Where a `pmd_t` lives; in two-level mode the same address as its pgd.
    PmdSlot, Pmd
);
slot_type!(
    /// Where a `pte_t` lives.
    PteSlot, Pte
);

#[inline(always)]
fn read_entry(va: usize) -> u64 {
    by_mode!(read_entry(va))
}

/// One volatile load of an entry (or a half of one) from a table page.
#[inline(always)]
fn read_raw<T: Copy + Into<u64>>(va: usize) -> u64 {
    // SAFETY: slots are only made by the `*_offset`/`*_slot` functions,
    // which point into live table pages in the direct map.
    unsafe { core::ptr::read_volatile(va as *const T) }.into()
}

/// A 32-bit store: two-level entries, and one half of a PAE entry.
#[inline(always)]
fn write_u32(va: usize, val: u32) {
    // SAFETY: as in `read_entry`; callers hold the lock of the table's mm
    // or run with interrupts off.
    unsafe { core::ptr::write_volatile(va as *mut u32, val) }
}

/// Linux 2.4 `__set_64bit` (include/asm-i386/system.h): one atomic 64-bit
/// store, a `lock cmpxchg8b` loop.  This is the "64bit move in a single
/// instruction so we can't be interrupted in the middle by an irq" of the
/// seed mail: a PAE pgd or pmd entry is never seen half written.
fn set_64bit(va: usize, val: u64) {
    let (low, high) = (val as u32, (val >> 32) as u32);
    // SAFETY: `va` is an 8-byte aligned entry in a live table page (as in
    // `read_entry`).  EBX cannot be named as an operand (LLVM reserves it),
    // so the low half is swapped into it around the loop and back.
    unsafe {
        core::arch::asm!(
            "xchg {low}, %ebx",
            "2:",
            "movl (%edi), %eax",
            "movl 4(%edi), %edx",
            "lock cmpxchg8b (%edi)",
            "jnz 2b",
            "xchg {low}, %ebx",
            low = inout(reg) low => _,
            in("edi") va,
            in("ecx") high,
            out("eax") _,
            out("edx") _,
            options(att_syntax),
        );
    }
}

/// `set_pte`.  PAE (2.4 pgtable-3level.h): "the pte being assigned *must*
/// be either not present or in a state where the hardware will not
/// attempt to update the pte", so two stores do: the high half (frame
/// bits 32+, NX) first, then, after a write barrier, the low half with the
/// present bit.
#[inline(always)]
pub fn set_pte(pte: PteSlot, val: Pte) {
    if is_pae() {
        write_u32(pte.0 + 4, (val.0 >> 32) as u32);
        core::sync::atomic::compiler_fence(Ordering::SeqCst); // smp_wmb()
        write_u32(pte.0, val.0 as u32);
    } else {
        write_u32(pte.0, val.0 as u32);
    }
}

/// `ptep_get_and_clear`: clear a live pte and return what it held.  PAE
/// (2.4 pgtable-3level.h): "xchg acts as a barrier before the setting of
/// the high bits": the low half (present bit) goes first, atomically, so
/// the CPU never sees a present entry with half its frame or NX gone.
/// This is what 2.4's vmalloc `free_area_pte` uses, and so do all our
/// unmaps; 2.4's `pte_clear` (`set_pte(xp, __pte(0))`, high half first)
/// is for entries the hardware cannot be using, and nothing here needs it.
pub fn ptep_get_and_clear(pte: PteSlot) -> Pte {
    // SAFETY: as in `read_entry`; the caller owns the mapping.
    let low =
        unsafe { (*(pte.0 as *const core::sync::atomic::AtomicU32)).swap(0, Ordering::SeqCst) };
    if is_pae() {
        let high = read_entry(pte.0) >> 32;
        write_u32(pte.0 + 4, 0);
        Pte(low as u64 | high << 32)
    } else {
        Pte(low as u64)
    }
}

/// `set_pmd` (see `Levels::set_pmd`).
#[inline(always)]
pub fn set_pmd(pmd: PmdSlot, val: Pmd) {
    by_mode!(set_pmd(pmd, val))
}

/// `set_pgd` (see `Levels::set_pgd`).
#[inline(always)]
pub fn set_pgd(pgd: PgdSlot, val: Pgd) {
    by_mode!(set_pgd(pgd, val))
}

/// `pmd_clear`.
pub fn pmd_clear(pmd: PmdSlot) -> TlbFlush {
    set_pmd(pmd, Pmd(0));
    TlbFlush::all()
}

/// `pgd_clear`: empties a PDPTE in PAE.  In two-level mode the pgd slot is
/// the folded pmd: callers clear it with `pmd_clear` (2.4's two-level
/// `pgd_clear` is a no-op).
pub fn pgd_clear(pgd: PgdSlot) {
    if is_pae() {
        set_pgd(pgd, Pgd(0))
    }
}

/// `pgd_present`: constant 1 in two-level mode, where the pmd is folded
/// into the pgd (Linux 2.4 `pgtable-2level.h`).
#[inline(always)]
pub fn pgd_present(pgd: Pgd) -> bool {
    by_mode!(pgd_present(pgd))
}

/// `pgd_none`: constant 0 in two-level mode.
#[inline(always)]
pub fn pgd_none(pgd: Pgd) -> bool {
    by_mode!(pgd_none(pgd))
}

#[inline(always)]
pub fn pmd_present(pmd: Pmd) -> bool {
    pmd.0 & PteFlags::PRESENT.bits() != 0
}

#[inline(always)]
pub fn pmd_none(pmd: Pmd) -> bool {
    pmd.0 == 0
}

/// A pmd that maps a large page (4 MiB, PAE 2 MiB) instead of a PTE page:
/// the boot directory's PSE entries.
#[inline(always)]
pub fn pmd_large(pmd: Pmd) -> bool {
    pmd.0 & PteFlags::PSE.bits() != 0
}

#[inline(always)]
pub fn pte_present(pte: Pte) -> bool {
    pte.0 & PteFlags::PRESENT.bits() != 0
}

#[inline(always)]
pub fn pte_none(pte: Pte) -> bool {
    pte.0 == 0
}

// ------------------------------------------------------------ the walk

/// `pgd_offset`: the pgd slot for `addr` in the directory at `pgd_phys`
/// (the PGD page in two-level mode, the PDPT in PAE).
#[inline(always)]
pub fn pgd_offset(pgd: PhysAddr, addr: VirtAddr) -> PgdSlot {
    by_mode!(pgd_offset(pgd.as_u32(), addr.as_u32()))
}

/// `pmd_offset`: in two-level mode the pgd slot itself, folded (Linux's
/// `pmd_offset(dir, address)` returns `(pmd_t *) dir`); in PAE the entry
/// in the PMD page the PDPTE points to.
#[inline(always)]
pub fn pmd_offset(pgd: PgdSlot, addr: VirtAddr) -> PmdSlot {
    by_mode!(pmd_offset(pgd, addr.as_u32()))
}

/// `pte_offset`: the entry in the PTE page the pmd points to.
#[inline(always)]
pub fn pte_offset(pmd: PmdSlot, addr: VirtAddr) -> PteSlot {
    by_mode!(pte_offset(pmd, addr.as_u32()))
}

/// Entry `index` of the directory at `pgd_phys`, for code that walks a
/// whole table (copying the kernel part, freeing user tables).
#[inline(always)]
pub fn pgd_slot(pgd: PhysAddr, index: usize) -> PgdSlot {
    by_mode!(pgd_slot(pgd.as_u32(), index))
}

/// Entry `index` of the PMD page at `pmd_phys` (PAE only: a two-level pmd
/// is the pgd slot, reached through `pmd_offset`).
#[inline(always)]
pub fn pmd_slot(pmd_phys: u32, index: usize) -> PmdSlot {
    debug_assert!(is_pae() && index < PAE.ptrs_per_pmd);
    PmdSlot(__va(pmd_phys) + index * PAE.entry_size)
}

/// Entry `index` of the PTE page at `pte_phys`.
#[inline(always)]
pub fn pte_slot(pte_phys: u32, index: usize) -> PteSlot {
    by_mode!(pte_slot(pte_phys, index))
}
