//! The page-fault path: `do_page_fault` and the four historical versions
//! of `vmalloc_fault`, chosen at boot by `vmalloc_fault=`.
//!
//! | version | Linux | #PF gate | which pgd | what it checks |
//! |---|---|---|---|---|
//! | `legacy` | 2.4.0/2.4.1 | trap (IF untouched) | `tsk->active_mm` | pgd absent -> copy pgd; else pmd present or reference pmd absent -> bad_area; else copy pmd |
//! | `cli` | 2.4.2aa (the seed's patch) | trap | `tsk->active_mm` | save_flags, cli; copy pgd iff absent here and present in reference; else bad_area |
//! | `sync` | 2.4.16+ | interrupt, IF back on after CR2 is saved | CR3 | copy pgd and pmd unconditionally, check only the reference side |
//! | `eager` | 5.8 (x86-32) | interrupt | - | no lazy fault: vmalloc syncs every pgd at map time |
//!
//! The code of each version follows its Linux source line by line, on top
//! of this kernel's faithful `pgtable-2level.h` folding (`pgd_present()`
//! is 1 in two-level mode).  The consequences are measured, not assumed:
//! see the vmalloc suite and the README.

use core::sync::atomic::{AtomicU32, AtomicU8, Ordering};

use super::addr::PAGE_OFFSET;
use super::fault_stats::count_fault;
pub use super::fault_stats::{faults_in_slot, faults_of_pgd, total_faults};
use super::init::swapper_pg_dir;
use super::pgtable::*;
use crate::arch::x86::entry::TrapFrame;
use crate::arch::x86::trapnr::{X86_PF_PROT, X86_PF_USER};
use crate::arch::x86::{cpu, dispatch, idt, traps};
use crate::cmdline::VmallocFaultVersion;
use crate::println;

/// Linux's `TASK_SIZE`: the user/kernel split.
pub const TASK_SIZE: u32 = PAGE_OFFSET as u32;

static VERSION: AtomicU8 = AtomicU8::new(2);

pub fn version() -> VmallocFaultVersion {
    VmallocFaultVersion::ALL[VERSION.load(Ordering::Relaxed) as usize]
}

/// Install `do_page_fault` for vector 14 with the gate type the version
/// used: 2.4.0's `set_trap_gate(14, &page_fault)`, 2.4.16's
/// `set_intr_gate(14, &page_fault)`.
pub fn init(v: VmallocFaultVersion) {
    let i = VmallocFaultVersion::ALL
        .iter()
        .position(|x| *x == v)
        .unwrap_or(2);
    VERSION.store(i as u8, Ordering::Relaxed);
    let _irq = cpu::irq_save();
    match v {
        VmallocFaultVersion::Legacy | VmallocFaultVersion::Cli => idt::set_trap_gate(14),
        VmallocFaultVersion::Sync | VmallocFaultVersion::Eager => idt::set_intr_gate(14),
    }
    dispatch::register_handler(14, Some(do_page_fault));
}

// ---------------------------------------------------------------- counters
//
// The fault path must take no lock ("NOTE! We MUST NOT take any locks for
// this case", 2.4 fault.c), so the counters are plain atomics.  The lazy
// syncs are counted in `fault_stats`, which address spaces reset too.

// gdb reads these by their plain names (tests/host/gdb/vmfault-gdb.py).
#[no_mangle]
static BAD_AREAS: AtomicU32 = AtomicU32::new(0);
static LAST_BAD_AREA: AtomicU8 = AtomicU8::new(0);

/// Why a vmalloc fault ended in `bad_area`/`no_context`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum BadArea {
    None = 0,
    /// Reference (init_mm) pgd not present.
    RefPgdAbsent = 1,
    /// legacy: the pmd of the current mm is already present.
    PmdAlreadyPresent = 2,
    /// Reference pmd not present.
    RefPmdAbsent = 3,
    /// cli: pgd present here or absent in the reference.
    CliPgdCheck = 4,
    /// sync: reference pte not present (guard page, freed memory).
    RefPteAbsent = 5,
    /// A kernel fault outside the lazy-sync path (user address, protection
    /// fault, or the eager version, which has no vmalloc_fault).
    NoContext = 6,
}

/// What each `BadArea` means, indexed by its value: the oops report
/// prints it, and gdb's `vm-faults` reads it from this ELF.
pub const BAD_AREA_TEXTS: [&str; 7] = [
    "none",
    "init_mm's pgd entry is not present",
    "pmd already present in this mm (2.4.1 check: `if (pmd_present(*pmd) || ...)`)",
    "init_mm's pmd entry is not present",
    "pgd present here or absent in init_mm (seed patch: `if (!pgd_present(*pgd) && pgd_present(*pgd_k))`)",
    "init_mm's pte is not present (guard page or freed memory)",
    "kernel fault outside the vmalloc lazy-sync path",
];

impl BadArea {
    pub fn describe(self) -> &'static str {
        BAD_AREA_TEXTS[self as usize]
    }

    fn from_u8(v: u8) -> Self {
        [
            BadArea::None,
            BadArea::RefPgdAbsent,
            BadArea::PmdAlreadyPresent,
            BadArea::RefPmdAbsent,
            BadArea::CliPgdCheck,
            BadArea::RefPteAbsent,
            BadArea::NoContext,
        ][v as usize]
    }
}

pub fn bad_areas() -> u32 {
    BAD_AREAS.load(Ordering::Relaxed)
}

/// Reason of the most recent bad_area.
pub fn last_bad_area() -> BadArea {
    BadArea::from_u8(LAST_BAD_AREA.load(Ordering::Relaxed))
}

/// The serial "vmalloc fault statistics" report.
pub fn show_stats() {
    println!(
        "vmalloc_fault={}: {} lazy syncs, {} bad areas, {} eager syncs",
        version().name(),
        total_faults(),
        bad_areas(),
        super::vmalloc::eager_syncs()
    );
    super::fault_stats::show_counts();
}

// ---------------------------------------------------------------- the path

/// The page-fault handler.  Its first instruction that matters reads CR2:
/// under the trap-gate versions an interrupt may already have run (and
/// faulted, and overwritten CR2) before it.
fn do_page_fault(frame: &mut TrapFrame) {
    // __asm__("movl %%cr2,%0":"=r" (address));
    let address = cpu::read_cr2();
    let error_code = frame.error_code;
    let v = version();
    if matches!(v, VmallocFaultVersion::Sync | VmallocFaultVersion::Eager) {
        // 2.4.16: "It's safe to allow irq's after cr2 has been saved"
        if frame.eflags & cpu::EFLAGS_IF != 0 {
            cpu::sti();
        }
    }
    let to_vmalloc_fault = match v {
        // 2.4.1: if (address >= TASK_SIZE) goto vmalloc_fault;
        VmallocFaultVersion::Legacy | VmallocFaultVersion::Cli => address >= TASK_SIZE,
        // 2.4.16: if (address >= TASK_SIZE && !(error_code & 5)): a
        // kernel-mode access to a page not present.
        VmallocFaultVersion::Sync => {
            address >= TASK_SIZE && error_code & (X86_PF_PROT | X86_PF_USER) == 0
        }
        // 5.8 x86-32: vmalloc_fault() is gone; arch_sync_kernel_mappings
        // is supposed to make it unnecessary.
        VmallocFaultVersion::Eager => false,
    };
    let why = if to_vmalloc_fault {
        vmalloc_fault(address)
    } else {
        BadArea::NoContext as u8
    };
    if why != BadArea::None as u8 {
        bad_area_nosemaphore(frame, address, BadArea::from_u8(why));
    }
}

/// The `vmalloc_fault:` label of `do_page_fault`, as one function with a
/// C name so gdb (`break vmalloc_fault`) and oops traces find it under
/// Linux's name.  Returns 0 (`BadArea::None`) when the entry was synced.
#[no_mangle]
#[inline(never)]
pub extern "C" fn vmalloc_fault(address: u32) -> u8 {
    let r = match version() {
        VmallocFaultVersion::Legacy => vmalloc_fault_legacy(address),
        VmallocFaultVersion::Cli => vmalloc_fault_cli(address),
        VmallocFaultVersion::Sync => vmalloc_fault_sync(address),
        VmallocFaultVersion::Eager => Err(BadArea::NoContext),
    };
    match r {
        Ok(()) => BadArea::None as u8,
        Err(why) => why as u8,
    }
}

/// `vmalloc_fault` of Linux 2.4.0/2.4.1 (arch/i386/mm/fault.c), the code
/// the seed's diff removes:
///
/// ```c
/// pgd = tsk->active_mm->pgd + offset;
/// pgd_k = init_mm.pgd + offset;
/// if (!pgd_present(*pgd)) {
///         if (!pgd_present(*pgd_k))
///                 goto bad_area_nosemaphore;
///         set_pgd(pgd, *pgd_k);
///         return;
/// }
/// pmd = pmd_offset(pgd, address);
/// pmd_k = pmd_offset(pgd_k, address);
/// if (pmd_present(*pmd) || !pmd_present(*pmd_k))
///         goto bad_area_nosemaphore;
/// set_pmd(pmd, *pmd_k);
/// return;
/// ```
#[inline(never)]
pub fn vmalloc_fault_legacy(address: u32) -> Result<(), BadArea> {
    let tsk = crate::sched::current();
    let mm_pgd = tsk.active_mm_pgd();
    let pgd = pgd_offset(mm_pgd, address);
    let pgd_k = pgd_offset(swapper_pg_dir(), address);

    if !pgd_present(pgd.read()) {
        if !pgd_present(pgd_k.read()) {
            return Err(BadArea::RefPgdAbsent);
        }
        set_pgd(pgd, pgd_k.read());
        count_fault(mm_pgd, address);
        return Ok(());
    }

    let pmd = pmd_offset(pgd, address);
    let pmd_k = pmd_offset(pgd_k, address);

    if pmd_present(pmd.read()) || !pmd_present(pmd_k.read()) {
        return Err(if pmd_present(pmd.read()) {
            BadArea::PmdAlreadyPresent
        } else {
            BadArea::RefPmdAbsent
        });
    }
    set_pmd(pmd, pmd_k.read());
    count_fault(mm_pgd, address);
    Ok(())
}

/// The seed's patch (Andrea Arcangeli, 2.4.2aa, 23 Feb 2001):
///
/// ```c
/// pgd = tsk->active_mm->pgd + offset;
/// pgd_k = init_mm.pgd + offset;
/// __save_flags(flags);
/// __cli();
/// if (!pgd_present(*pgd) && pgd_present(*pgd_k)) {
///         set_pgd(pgd, *pgd_k);
///         __restore_flags(flags);
///         return;
/// }
/// __restore_flags(flags);
/// goto bad_area_nosemaphore;
/// ```
#[inline(never)]
pub fn vmalloc_fault_cli(address: u32) -> Result<(), BadArea> {
    let tsk = crate::sched::current();
    let mm_pgd = tsk.active_mm_pgd();
    let pgd = pgd_offset(mm_pgd, address);
    let pgd_k = pgd_offset(swapper_pg_dir(), address);

    let flags = cpu::save_flags();
    cpu::cli();
    if !pgd_present(pgd.read()) && pgd_present(pgd_k.read()) {
        set_pgd(pgd, pgd_k.read());
        cpu::restore_flags(flags);
        count_fault(mm_pgd, address);
        return Ok(());
    }
    cpu::restore_flags(flags);
    Err(BadArea::CliPgdCheck)
}

/// `vmalloc_fault` of Linux 2.4.16:
///
/// ```c
/// /*
///  * Synchronize this task's top level page-table
///  * with the 'reference' page table.
///  *
///  * Do _not_ use "tsk" here. We might be inside
///  * an interrupt in the middle of a task switch..
///  */
/// asm("movl %%cr3,%0":"=r" (pgd));
/// pgd = offset + (pgd_t *)__va(pgd);
/// pgd_k = init_mm.pgd + offset;
/// if (!pgd_present(*pgd_k))
///         goto no_context;
/// set_pgd(pgd, *pgd_k);
/// pmd = pmd_offset(pgd, address);
/// pmd_k = pmd_offset(pgd_k, address);
/// if (!pmd_present(*pmd_k))
///         goto no_context;
/// set_pmd(pmd, *pmd_k);
/// pte_k = pte_offset(pmd_k, address);
/// if (!pte_present(*pte_k))
///         goto no_context;
/// return;
/// ```
#[inline(never)]
pub fn vmalloc_fault_sync(address: u32) -> Result<(), BadArea> {
    let cr3 = cpu::read_cr3_pa();
    let pgd = pgd_offset(cr3, address);
    let pgd_k = pgd_offset(swapper_pg_dir(), address);
    if !pgd_present(pgd_k.read()) {
        return Err(BadArea::RefPgdAbsent);
    }
    // In PAE this rewrites the kernel PDPTE with the value it already has
    // (the kernel PMD page is shared), so no CR3 reload is needed.
    set_pgd(pgd, pgd_k.read());
    let pmd = pmd_offset(pgd, address);
    let pmd_k = pmd_offset(pgd_k, address);
    if !pmd_present(pmd_k.read()) {
        return Err(BadArea::RefPmdAbsent);
    }
    set_pmd(pmd, pmd_k.read());
    let pte_k = pte_offset(pmd_k, address);
    if !pte_present(pte_k.read()) {
        return Err(BadArea::RefPteAbsent);
    }
    count_fault(cr3, address);
    Ok(())
}

/// `bad_area_nosemaphore` -> `no_context` for a kernel-mode fault: the
/// 2.4 oops (`Unable to handle kernel paging request ...`, `*pde = ...`
/// for this mm and for init_mm), then `die`.
fn bad_area_nosemaphore(frame: &mut TrapFrame, address: u32, why: BadArea) -> ! {
    cpu::cli();
    BAD_AREAS.fetch_add(1, Ordering::Relaxed);
    LAST_BAD_AREA.store(why as u8, Ordering::Relaxed);
    if !crate::fixup::quiet() && !crate::oops::silenced() {
        println!("vmalloc_fault={}: {}", version().name(), why.describe());
    }
    traps::die_with_cr2(frame, address)
}
