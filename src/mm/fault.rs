//! The page-fault path: the `#PF` entries, `do_page_fault` and the six
//! historical versions of `vmalloc_fault`, chosen at boot by
//! `vmalloc_fault=`.
//!
//! | version | Linux | #PF gate | which pgd | what it checks |
//! |---|---|---|---|---|
//! | `set_pgdir` | 2.4.0-test10-pre1 | trap | - | no vmalloc fault: vmalloc copies a new pgd into every task's directory (`set_pgdir`) |
//! | `legacy` | 2.4.0-2.4.4 | trap (IF untouched) | `tsk->active_mm` | pgd absent -> copy pgd; else pmd present or reference pmd absent -> bad_area; else copy pmd |
//! | `cli` | 2.4.2aa (the seed's patch) | trap | `tsk->active_mm` | save_flags, cli; copy pgd iff absent here and present in reference; else bad_area |
//! | `cr3` | 2.4.5-pre1 | trap | CR3 | 2.4.1's checks |
//! | `sync` | 2.4.5-pre2 and later (2.4.16) | interrupt, IF back on after CR2 is saved | CR3 | copy pgd and pmd unconditionally, check only the reference side |
//! | `eager` | 5.8 (x86-32) | interrupt | - | no vmalloc fault: vmalloc syncs after mapping (`sync_kernel_mappings`) |
//! | `eager-lazy` | 5.9+ (x86-32) | interrupt | CR3 | `vmalloc_sync_one`, then the reference pte |
//!
//! The code of each version follows its Linux source line by line, on top
//! of this kernel's faithful `pgtable-2level.h` folding (`pgd_present()`
//! is 1 in two-level mode).  The consequences are measured, not assumed:
//! see the vmalloc and race suites and docs/experiments.md.

use core::sync::atomic::{AtomicU32, AtomicU8, Ordering};

pub use super::addr::TASK_SIZE;
use super::fault_stats::count_fault;
pub use super::fault_stats::{faults_in_slot, faults_of_pgd, total_faults};
use super::init::swapper_pg_dir;
use super::pgtable::*;
use super::sync_kernel_mappings::vmalloc_sync_one;
use crate::arch::x86::entry::TrapFrame;
use crate::arch::x86::trapnr::{X86_PF_PROT, X86_PF_RSVD, X86_PF_USER};
use crate::arch::x86::{cpu, idt, traps};
use crate::mm::VmallocFaultVersion;
use crate::println;

/// Index in `VmallocFaultVersion::ALL` of the booted version (for the
/// reports: the path itself is chosen by the #PF entry `init` installs).
static VERSION: AtomicU8 = AtomicU8::new(u8::MAX);

pub fn version() -> VmallocFaultVersion {
    let i = VERSION.load(Ordering::Relaxed) as usize;
    VmallocFaultVersion::ALL
        .get(i)
        .copied()
        .unwrap_or(VmallocFaultVersion::DEFAULT)
}

/// Put `vmalloc_fault=` version `v` in force: the page-fault gate and
/// handler of that Linux release, and whether vmalloc copies a new kernel
/// PGD entry into every directory itself (5.8's eager sync).  At boot from
/// the command line; the bench also switches versions within one boot to
/// compare them on the same memory.
pub fn set_vmalloc_fault(v: VmallocFaultVersion) {
    init(v);
    super::vmalloc::set_version(v);
}

/// Install `do_page_fault` for vector 14 with the gate type the version
/// used: 2.4.0's `set_trap_gate(14, &page_fault)`, 2.4.5-pre2's
/// `set_intr_gate(14, &page_fault)`.
pub fn init(v: VmallocFaultVersion) {
    let i = VmallocFaultVersion::ALL.iter().position(|x| *x == v);
    VERSION.store(i.map_or(u8::MAX, |i| i as u8), Ordering::Relaxed);
    let entry = page_fault_entry(v, is_pae());
    let _irq = cpu::irq_save();
    match v {
        VmallocFaultVersion::SetPgdir
        | VmallocFaultVersion::Legacy
        | VmallocFaultVersion::Cli
        | VmallocFaultVersion::Cr3 => idt::set_trap_gate_at(14, entry),
        VmallocFaultVersion::Sync | VmallocFaultVersion::Eager | VmallocFaultVersion::EagerLazy => {
            idt::set_intr_gate_at(14, entry)
        }
    }
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
/// The interrupt nesting depth the last bad_area ran at (0: a task's own
/// fault, 1: a fault inside an interrupt handler, ...): which level of a
/// nested run died.
static LAST_BAD_AREA_DEPTH: AtomicU32 = AtomicU32::new(0);

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

    pub fn from_u8(v: u8) -> Self {
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

/// The interrupt depth (`irq::depth()`) the most recent bad_area ran at.
pub fn last_bad_area_depth() -> u32 {
    LAST_BAD_AREA_DEPTH.load(Ordering::Relaxed)
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

// ---------------------------------------------------------------- the entries
//
// 2.4's entry.S: `ENTRY(page_fault) pushl $ SYMBOL_NAME(do_page_fault);
// jmp error_code`.  Here one such entry exists per version and paging
// mode, each pushing the `do_page_fault` of a module compiled for that
// pair (`legacy_2level`, `sync_pae`, ...), so the handler tests neither
// (issue 14); `init` points vector 14 at the pair the kernel booted
// with.  `error_code` (arch/x86/entry.rs) saves the registers and calls
// the pushed handler directly, as 2.4's does.
//
// Each module's `do_page_fault` and `vmalloc_fault` are plain functions
// with Linux's names, so a plain gdb's `break vmalloc_fault` and `break
// do_page_fault` stop in the booted version's (one location per module;
// only the booted one runs), and `do_page_fault` calls its own module's
// `vmalloc_fault` directly: no dispatcher on the path.  5.8 (`eager_*`)
// has no `vmalloc_fault` (7f0a002b5a21 removed it).

/// One version compiled for one paging mode, as its module's
/// `do_page_fault` sees it.
pub trait Handler {
    /// The module's `vmalloc_fault`: 0 (`BadArea::None`) when the entry
    /// was synced, else the `BadArea`.
    fn vmalloc_fault(address: u32) -> u8;
}

macro_rules! page_fault_entries {
    ($($v:ident, $l:ident => $m:ident, $label:ident: $body:ident $(, $vf:ident)?;)*) => {
        $(
            #[doc = concat!("`vmalloc_fault=", stringify!($v), "` compiled for `", stringify!($l),
                            "`: its `do_page_fault` (`", stringify!($body), "`) and its `#PF` entry `",
                            stringify!($label), "`.")]
            pub mod $m {
                use super::*;

                /// What the `#PF` entry calls.
                pub extern "C" fn do_page_fault(frame: &mut TrapFrame) {
                    $body::<This>(frame)
                }

                $(
                    /// The `vmalloc_fault:` path of this version's
                    /// `do_page_fault` (a label in 2.4, a `noinline`
                    /// function from 2.6 on).  `finish` in gdb prints what
                    /// it returns: 0 when the entry was synced, else the
                    /// `BadArea`.
                    #[inline(never)]
                    pub extern "C" fn $vf(address: u32) -> u8 {
                        vmalloc_fault_of::<$l>(VmallocFaultVersion::$v, address)
                    }
                )?

                pub struct This;

                impl Handler for This {
                    #[inline(always)]
                    fn vmalloc_fault(_address: u32) -> u8 {
                        $(return $vf(_address);)?
                        #[allow(unreachable_code)]
                        {
                            unreachable!("2.4.0-test10-pre1 and 5.8 have no vmalloc_fault")
                        }
                    }
                }

                core::arch::global_asm!(
                    concat!(".globl ", stringify!($label)),
                    concat!(".type ", stringify!($label), ", @function"),
                    ".balign 16",
                    concat!(stringify!($label), ":"),
                    // The CPU's frame with its error code (arch/x86/entry.rs
                    // says why the caller is the faulting instruction).
                    ".cfi_startproc simple",
                    ".cfi_signal_frame",
                    ".cfi_def_cfa %esp, 16",
                    ".cfi_offset %eip, -12",
                    ".cfi_offset %eflags, -4",
                    "pushl ${h}",
                    ".cfi_adjust_cfa_offset 4",
                    "jmp error_code",
                    ".cfi_endproc",
                    concat!(".size ", stringify!($label), ", . - ", stringify!($label)),
                    h = sym do_page_fault,
                    options(att_syntax)
                );
            }
        )*

        extern "C" {
            $(fn $label();)*
        }

        /// The address of the `page_fault` entry for `v` in this mode.
        fn page_fault_entry(v: VmallocFaultVersion, pae: bool) -> u32 {
            $(
                if v == VmallocFaultVersion::$v && pae == <$l as Levels>::PAE {
                    return $label as unsafe extern "C" fn() as usize as u32;
                }
            )*
            unreachable!("no page_fault entry for vmalloc_fault={}", v.name())
        }
    };
}

page_fault_entries! {
    SetPgdir, TwoLevel => set_pgdir_2level, page_fault_set_pgdir_2level: do_page_fault_set_pgdir;
    SetPgdir, ThreeLevel => set_pgdir_pae, page_fault_set_pgdir_pae: do_page_fault_set_pgdir;
    Legacy, TwoLevel => legacy_2level, page_fault_legacy_2level: do_page_fault_legacy, vmalloc_fault;
    Legacy, ThreeLevel => legacy_pae, page_fault_legacy_pae: do_page_fault_legacy, vmalloc_fault;
    Cli, TwoLevel => cli_2level, page_fault_cli_2level: do_page_fault_cli, vmalloc_fault;
    Cli, ThreeLevel => cli_pae, page_fault_cli_pae: do_page_fault_cli, vmalloc_fault;
    Cr3, TwoLevel => cr3_2level, page_fault_cr3_2level: do_page_fault_cr3, vmalloc_fault;
    Cr3, ThreeLevel => cr3_pae, page_fault_cr3_pae: do_page_fault_cr3, vmalloc_fault;
    Sync, TwoLevel => sync_2level, page_fault_sync_2level: do_page_fault_sync, vmalloc_fault;
    Sync, ThreeLevel => sync_pae, page_fault_sync_pae: do_page_fault_sync, vmalloc_fault;
    Eager, TwoLevel => eager_2level, page_fault_eager_2level: do_page_fault_eager;
    Eager, ThreeLevel => eager_pae, page_fault_eager_pae: do_page_fault_eager;
    EagerLazy, TwoLevel => eager_lazy_2level, page_fault_eager_lazy_2level: do_page_fault_eager_lazy, vmalloc_fault;
    EagerLazy, ThreeLevel => eager_lazy_pae, page_fault_eager_lazy_pae: do_page_fault_eager_lazy, vmalloc_fault;
}

/// Version `v`'s `vmalloc_fault` for format `L` (each module's
/// `vmalloc_fault` is this with `v` a constant).
#[inline(always)]
fn vmalloc_fault_of<L: Levels>(v: VmallocFaultVersion, address: u32) -> u8 {
    let r = match v {
        VmallocFaultVersion::Legacy => vmalloc_fault_legacy::<L>(address),
        VmallocFaultVersion::Cli => vmalloc_fault_cli::<L>(address),
        VmallocFaultVersion::Cr3 => vmalloc_fault_cr3::<L>(address),
        VmallocFaultVersion::Sync => vmalloc_fault_sync::<L>(address),
        // test10-pre1 and 5.8 have none: their `do_page_fault`s never
        // call this.
        VmallocFaultVersion::SetPgdir | VmallocFaultVersion::Eager => Err(BadArea::NoContext),
        VmallocFaultVersion::EagerLazy => vmalloc_fault_5_9::<L>(address),
    };
    match r {
        Ok(()) => BadArea::None as u8,
        Err(why) => why as u8,
    }
}

/// Whatever `vmalloc_fault` could not fix ends in `bad_area_nosemaphore`.
#[inline(always)]
fn vmalloc_fault_or_die<H: Handler>(frame: &mut TrapFrame, address: u32) {
    let why = H::vmalloc_fault(address);
    if why != BadArea::None as u8 {
        bad_area_nosemaphore(frame, address, BadArea::from_u8(why));
    }
}

// ---------------------------------------------------------------- the path
//
// Each `do_page_fault_*` starts with the CR2 read: under the trap-gate
// versions an interrupt may already have run (and faulted, and
// overwritten CR2) before it.  Only kernel-mode faults exist here, so
// everything that is not a vmalloc fault goes to `no_context`.

/// `do_page_fault` of 2.4.0-test10-pre1 (arch/i386/mm/fault.c, commit
/// 3f51b44787 of the history mirror), through a trap gate.  It has no
/// vmalloc path: every fault goes to the mm's vmas,
///
/// ```c
/// if (in_interrupt() || !mm)
///         goto no_context;
/// down(&mm->mmap_sem);
/// vma = find_vma(mm, address);
/// if (!vma)
///         goto bad_area;
/// ```
///
/// and no vma lies above `TASK_SIZE`, so a kernel-mode fault on a vmalloc
/// address ends in `bad_area`, then `no_context` (`if (!(error_code &
/// 4)) goto no_context;` for a supervisor fault): an oops.  vmalloc's
/// `set_pgdir` is supposed to make the fault impossible.  This kernel has
/// no user vmas, so the same path is the CR2 read and the oops.
// Generic like every version's body, though it walks no table.
#[allow(clippy::extra_unused_type_parameters)]
#[inline(always)]
fn do_page_fault_set_pgdir<H: Handler>(frame: &mut TrapFrame) {
    // __asm__("movl %%cr2,%0":"=r" (address));
    let address = cpu::read_cr2();
    bad_area_nosemaphore(frame, address, BadArea::NoContext);
}

/// `do_page_fault` of 2.4.0-2.4.4, through a trap gate (IF as the
/// faulting code had it).
#[inline(always)]
fn do_page_fault_legacy<H: Handler>(frame: &mut TrapFrame) {
    // __asm__("movl %%cr2,%0":"=r" (address));
    let address = cpu::read_cr2();
    // if (address >= TASK_SIZE) goto vmalloc_fault;
    if address < TASK_SIZE {
        bad_area_nosemaphore(frame, address, BadArea::NoContext);
    }
    vmalloc_fault_or_die::<H>(frame, address);
}

/// 2.4.2aa's `do_page_fault` with the seed's patch: 2.4.1's trap-gate
/// entry and test, the patched `vmalloc_fault`.
#[inline(always)]
fn do_page_fault_cli<H: Handler>(frame: &mut TrapFrame) {
    let address = cpu::read_cr2();
    if address < TASK_SIZE {
        bad_area_nosemaphore(frame, address, BadArea::NoContext);
    }
    vmalloc_fault_or_die::<H>(frame, address);
}

/// `do_page_fault` of 2.4.5-pre1: 2.4.4's, with a `vmalloc_fault` that
/// takes the pgd from CR3.
#[inline(always)]
fn do_page_fault_cr3<H: Handler>(frame: &mut TrapFrame) {
    let address = cpu::read_cr2();
    if address < TASK_SIZE {
        bad_area_nosemaphore(frame, address, BadArea::NoContext);
    }
    vmalloc_fault_or_die::<H>(frame, address);
}

/// `do_page_fault` of 2.4.5-pre2 and later: an interrupt gate, IF back on
/// once CR2 is saved, and only a kernel-mode not-present fault goes to
/// `vmalloc_fault`.
#[inline(always)]
fn do_page_fault_sync<H: Handler>(frame: &mut TrapFrame) {
    let address = cpu::read_cr2();
    // "It's safe to allow irq's after cr2 has been saved"
    if frame.eflags & cpu::EFLAGS_IF != 0 {
        cpu::sti();
    }
    // if (address >= TASK_SIZE && !(error_code & 5)) goto vmalloc_fault;
    if address < TASK_SIZE || frame.error_code & (X86_PF_PROT | X86_PF_USER) != 0 {
        bad_area_nosemaphore(frame, address, BadArea::NoContext);
    }
    vmalloc_fault_or_die::<H>(frame, address);
}

/// 5.8 x86-32: `vmalloc_fault()` is gone (7f0a002b5a21);
/// `arch_sync_kernel_mappings` is supposed to make it unnecessary, so
/// every kernel fault oopses.  5.x handles a kernel-address fault with
/// interrupts still off (IF is re-enabled only for user addresses).
// Generic like every version's body, though it walks no table.
#[allow(clippy::extra_unused_type_parameters)]
#[inline(always)]
fn do_page_fault_eager<H: Handler>(frame: &mut TrapFrame) {
    let address = cpu::read_cr2();
    bad_area_nosemaphore(frame, address, BadArea::NoContext);
}

/// 5.9+ x86-32 (`exc_page_fault` -> `do_kern_addr_fault`), interrupts off:
///
/// ```c
/// if (!(hw_error_code & (X86_PF_RSVD | X86_PF_USER | X86_PF_PROT))) {
///         if (vmalloc_fault(address) >= 0)
///                 return;
/// }
/// ```
#[inline(always)]
fn do_page_fault_eager_lazy<H: Handler>(frame: &mut TrapFrame) {
    let address = cpu::read_cr2();
    if frame.error_code & (X86_PF_RSVD | X86_PF_PROT | X86_PF_USER) != 0 {
        bad_area_nosemaphore(frame, address, BadArea::NoContext);
    }
    vmalloc_fault_or_die::<H>(frame, address);
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
#[inline(always)]
pub fn vmalloc_fault_legacy<L: Levels>(address: u32) -> Result<(), BadArea> {
    let tsk = crate::sched::current();
    sync_by_2_4_1_checks::<L>(tsk.active_mm_pgd(), address)
}

/// The body 2.4.0-2.4.5-pre1 share: 2.4.1's checks and copies on the
/// directory at `pgd_phys` (`tsk->active_mm->pgd`, or from 2.4.5-pre1 on
/// the one in CR3: the one line that version changed).
#[inline(always)]
fn sync_by_2_4_1_checks<L: Levels>(pgd_phys: u32, address: u32) -> Result<(), BadArea> {
    let pgd = L::pgd_offset(pgd_phys, address);
    let pgd_k = L::pgd_offset((swapper_pg_dir()).as_u32(), address);

    if !L::pgd_present(L::read_pgd(pgd)) {
        if !L::pgd_present(L::read_pgd(pgd_k)) {
            return Err(BadArea::RefPgdAbsent);
        }
        L::set_pgd(pgd, L::read_pgd(pgd_k));
        count_fault(pgd_phys, address);
        return Ok(());
    }

    let pmd = L::pmd_offset(pgd, address);
    let pmd_k = L::pmd_offset(pgd_k, address);

    if pmd_present(L::read_pmd(pmd)) || !pmd_present(L::read_pmd(pmd_k)) {
        return Err(if pmd_present(L::read_pmd(pmd)) {
            BadArea::PmdAlreadyPresent
        } else {
            BadArea::RefPmdAbsent
        });
    }
    L::set_pmd(pmd, L::read_pmd(pmd_k));
    count_fault(pgd_phys, address);
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
#[inline(always)]
pub fn vmalloc_fault_cli<L: Levels>(address: u32) -> Result<(), BadArea> {
    let tsk = crate::sched::current();
    let mm_pgd = tsk.active_mm_pgd();
    let pgd = L::pgd_offset(mm_pgd, address);
    let pgd_k = L::pgd_offset((swapper_pg_dir()).as_u32(), address);

    let flags = cpu::save_flags();
    cpu::cli();
    if !L::pgd_present(L::read_pgd(pgd)) && L::pgd_present(L::read_pgd(pgd_k)) {
        L::set_pgd(pgd, L::read_pgd(pgd_k));
        cpu::restore_flags(flags);
        count_fault(mm_pgd, address);
        return Ok(());
    }
    cpu::restore_flags(flags);
    Err(BadArea::CliPgdCheck)
}

/// `vmalloc_fault` of Linux 2.4.5-pre1 ("fix nasty lazy kernel page table
/// update problem"): the one-line change from 2.4.4 is where the pgd
/// comes from; every check stays 2.4.1's, and the gate stays a trap gate.
///
/// ```c
/// /*
///  * Do _not_ use "tsk" here. We might be inside
///  * an interrupt in the middle of a task switch..
///  */
/// asm("movl %%cr3,%0":"=r" (pgd));
/// pgd = offset + (pgd_t *)__va(pgd);
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
#[inline(always)]
pub fn vmalloc_fault_cr3<L: Levels>(address: u32) -> Result<(), BadArea> {
    sync_by_2_4_1_checks::<L>(cpu::read_cr3_pa(), address)
}

/// `vmalloc_fault` of Linux 2.4.5-pre2, unchanged through 2.4.16 and the
/// rest of 2.4:
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
#[inline(always)]
pub fn vmalloc_fault_sync<L: Levels>(address: u32) -> Result<(), BadArea> {
    let cr3 = cpu::read_cr3_pa();
    let pgd = L::pgd_offset(cr3, address);
    let pgd_k = L::pgd_offset((swapper_pg_dir()).as_u32(), address);
    if !L::pgd_present(L::read_pgd(pgd_k)) {
        return Err(BadArea::RefPgdAbsent);
    }
    // In PAE this rewrites the kernel PDPTE with the value it already has
    // (the kernel PMD page is shared), so no CR3 reload is needed.
    L::set_pgd(pgd, L::read_pgd(pgd_k));
    let pmd = L::pmd_offset(pgd, address);
    let pmd_k = L::pmd_offset(pgd_k, address);
    if !pmd_present(L::read_pmd(pmd_k)) {
        return Err(BadArea::RefPmdAbsent);
    }
    L::set_pmd(pmd, L::read_pmd(pmd_k));
    let pte_k = L::pte_offset(pmd_k, address);
    if !pte_present(L::read_pte(pte_k)) {
        return Err(BadArea::RefPteAbsent);
    }
    count_fault(cr3, address);
    Ok(())
}

/// `vmalloc_fault` as 4819e15f740e brought it back for x86-32 (5.9):
///
/// ```c
/// /* Make sure we are in vmalloc area: */
/// if (!(address >= VMALLOC_START && address < VMALLOC_END))
///         return -1;
/// /* Do _not_ use "current" here. ... */
/// pgd_paddr = read_cr3_pa();
/// pmd_k = vmalloc_sync_one(__va(pgd_paddr), address);
/// if (!pmd_k)
///         return -1;
/// if (pmd_large(*pmd_k))
///         return 0;
/// pte_k = pte_offset_kernel(pmd_k, address);
/// if (!pte_present(*pte_k))
///         return -1;
/// return 0;
/// ```
#[inline(always)]
pub fn vmalloc_fault_5_9<L: Levels>(address: u32) -> Result<(), BadArea> {
    if !(address >= super::vmalloc::vmalloc_start() && address < super::vmalloc::VMALLOC_END) {
        return Err(BadArea::NoContext);
    }
    let cr3 = cpu::read_cr3_pa();
    let pmd_k = vmalloc_sync_one::<L>(cr3, address)
        .0
        .ok_or(BadArea::RefPmdAbsent)?;
    if !pmd_large(L::read_pmd(pmd_k)) {
        let pte_k = L::pte_offset(pmd_k, address);
        if !pte_present(L::read_pte(pte_k)) {
            return Err(BadArea::RefPteAbsent);
        }
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
    LAST_BAD_AREA_DEPTH.store(crate::arch::x86::irq::depth(), Ordering::Relaxed);
    if !crate::fixup::quiet() && !crate::oops::silenced() {
        println!("vmalloc_fault={}: {}", version().name(), why.describe());
    }
    traps::die_with_cr2(frame, address)
}
