//! The kernel's constants the host tools need, exported by symbol name:
//! `tests/host/vmfault_host/elf.py` reads them from the ELF the build
//! produced and `tests/host/gdb/vmfault-gdb.py` from gdb's symbol table,
//! so no Python file keeps a copy that could drift.  Each value is taken
//! from the definition the kernel's own code uses, never restated here.
//!
//! A number is a little-endian `u32`.  A list of names is their texts in
//! the kernel's order (a `BadArea` or `fault::VERSION` value indexes it),
//! each ended by a NUL, the list ended by one more NUL: plain bytes, so
//! a reader needs no Rust layout and no relocation.
//!
//! Nothing in the kernel reads these statics, so they sit in a section of
//! their own that linker.ld keeps (`KEEP`) past `--gc-sections`.

use crate::arch::x86::percpu;
use crate::cmdline;
use crate::mm::{addr, fault, vm_area, vmalloc};
use crate::mm::{PagingMode, VmallocFaultVersion};
use crate::qemu::{ExitCode, ISA_DEBUG_EXIT};
use crate::sched::KERNEL_STACK_SIZE;

/// `export! { NAME: TYPE = VALUE; ... }`: statics the host reads by
/// name.  The lab exports its own (`vmfault_lab::race::replay`) with it,
/// as `vmfault::host_abi::export`.
#[macro_export]
#[doc(hidden)]
macro_rules! host_abi_export {
    ($($(#[$doc:meta])* $name:ident: $ty:ty = $value:expr;)*) => {$(
        $(#[$doc])*
        #[no_mangle]
        #[used]
        #[link_section = ".rodata.vmfault_abi"]
        pub static $name: $ty = $value;
    )*};
}
pub use crate::host_abi_export as export;

/// Bytes `names` take as a list: each name and its NUL, then the last NUL.
pub const fn list_len(names: &[&str]) -> usize {
    let mut n = 1;
    let mut i = 0;
    while i < names.len() {
        n += names[i].len() + 1;
        i += 1;
    }
    n
}

/// `names` as a NUL-separated list; `N` must be `list_len(names)`.
pub const fn list<const N: usize>(names: &[&str]) -> [u8; N] {
    let mut out = [0u8; N];
    let mut at = 0;
    let mut i = 0;
    while i < names.len() {
        let b = names[i].as_bytes();
        let mut j = 0;
        while j < b.len() {
            // A NUL inside a name would split it for every reader.
            assert!(b[j] != 0);
            out[at] = b[j];
            at += 1;
            j += 1;
        }
        at += 1;
        i += 1;
    }
    assert!(at + 1 == N);
    out
}

const VERSION_NAMES: [&str; VmallocFaultVersion::ALL.len()] = {
    let mut out = [""; VmallocFaultVersion::ALL.len()];
    let mut i = 0;
    while i < out.len() {
        out[i] = VmallocFaultVersion::ALL[i].name();
        i += 1;
    }
    out
};

/// Which versions `$pred` holds for, in `VmallocFaultVersion::ALL` order
/// (a macro: a const fn cannot call the predicate through a pointer).
macro_rules! versions_where {
    ($pred:ident) => {{
        let mut mask = [false; VmallocFaultVersion::ALL.len()];
        let mut i = 0;
        while i < mask.len() {
            mask[i] = VmallocFaultVersion::ALL[i].$pred();
            i += 1;
        }
        mask
    }};
}

const fn count(mask: &[bool]) -> usize {
    let (mut i, mut n) = (0, 0);
    while i < mask.len() {
        n += mask[i] as usize;
        i += 1;
    }
    n
}

/// The names of the versions `mask` marks; `N` must be `count(mask)`.
const fn names_of<const N: usize>(mask: &[bool]) -> [&'static str; N] {
    let mut out = [""; N];
    let (mut i, mut n) = (0, 0);
    while i < mask.len() {
        if mask[i] {
            out[n] = VmallocFaultVersion::ALL[i].name();
            n += 1;
        }
        i += 1;
    }
    assert!(n == N);
    out
}

/// `VERSION_NAMES` without the versions not meant to be correct.
const CORRECT: [bool; VmallocFaultVersion::ALL.len()] = versions_where!(meant_correct);
const CORRECT_NAMES: [&str; count(&CORRECT)] = names_of(&CORRECT);

/// `CORRECT_NAMES` less the versions the 2020 window breaks on two CPUs.
const SMP_CORRECT: [bool; VmallocFaultVersion::ALL.len()] = versions_where!(meant_correct_on_smp);
const SMP_CORRECT_NAMES: [&str; count(&SMP_CORRECT)] = names_of(&SMP_CORRECT);

const DEFAULT_VERSION: [&str; 1] = [VmallocFaultVersion::DEFAULT.name()];
const DEFAULT_MODE: [&str; 1] = [PagingMode::DEFAULT.name()];

const MODE_NAMES: [&str; PagingMode::ALL.len()] = {
    let mut out = [""; PagingMode::ALL.len()];
    let mut i = 0;
    while i < out.len() {
        out[i] = PagingMode::ALL[i].name();
        i += 1;
    }
    out
};

export! {
    /// Linux's `PAGE_OFFSET`: the direct map's base.
    VMFAULT_PAGE_OFFSET: u32 = addr::PAGE_OFFSET as u32;
    VMFAULT_PAGE_SIZE: u32 = addr::PAGE_SIZE as u32;
    /// The most RAM the direct map holds (Linux 2.4 `MAXMEM`).
    VMFAULT_MAXMEM: u32 = addr::MAXMEM as u32;
    VMFAULT_VMALLOC_END: u32 = vmalloc::VMALLOC_END;
    VMFAULT_STACK_ZONE_START: u32 = vmalloc::STACK_ZONE_START;
    VMFAULT_KERNEL_STACK_SIZE: u32 = KERNEL_STACK_SIZE as u32;
    VMFAULT_STACK_GUARD_PAGES: u32 = vm_area::STACK_GUARD_PAGES;
    /// Each CPU's `PerCpu` (its size in the `PER_CPU` array) and where
    /// `current` sits in it.
    VMFAULT_PERCPU_SIZE: u32 = core::mem::size_of::<percpu::PerCpu>() as u32;
    VMFAULT_PERCPU_CURRENT_OFFSET: u32 = percpu::CURRENT_OFFSET as u32;
    /// The isa-debug-exit port and the values the kernel writes to it.
    VMFAULT_QEMU_EXIT_PORT: u32 = ISA_DEBUG_EXIT as u32;
    VMFAULT_QEMU_EXIT_SUCCESS: u32 = ExitCode::Success as u32;
    VMFAULT_QEMU_EXIT_FAILED: u32 = ExitCode::Failed as u32;
    /// Bochs's shutdown port (no isa-debug-exit there).
    VMFAULT_BOCHS_SHUTDOWN_PORT: u32 = crate::qemu::BOCHS_SHUTDOWN as u32;
    /// `vmalloc_fault=` values, in `VmallocFaultVersion::ALL` order.
    VMFAULT_VERSION_NAMES: [u8; list_len(&VERSION_NAMES)] = list(&VERSION_NAMES);
    /// The versions `VmallocFaultVersion::meant_correct`, in that order.
    VMFAULT_CORRECT_VERSIONS: [u8; list_len(&CORRECT_NAMES)] = list(&CORRECT_NAMES);
    /// The versions `VmallocFaultVersion::meant_correct_on_smp`.
    VMFAULT_SMP_CORRECT_VERSIONS: [u8; list_len(&SMP_CORRECT_NAMES)] = list(&SMP_CORRECT_NAMES);
    /// The one-name lists of what the kernel runs without the key.
    VMFAULT_VERSION_DEFAULT: [u8; list_len(&DEFAULT_VERSION)] = list(&DEFAULT_VERSION);
    VMFAULT_PAGING_DEFAULT: [u8; list_len(&DEFAULT_MODE)] = list(&DEFAULT_MODE);
    /// `paging=` values, in `PagingMode::ALL` order.
    VMFAULT_PAGING_NAMES: [u8; list_len(&MODE_NAMES)] = list(&MODE_NAMES);
    /// `soak_ops=` and `soak_seed=` when not given.
    VMFAULT_SOAK_OPS_DEFAULT: u32 = cmdline::SOAK_OPS_DEFAULT;
    VMFAULT_SOAK_SEED_DEFAULT: u32 = cmdline::SOAK_SEED_DEFAULT;
    /// `BadArea::describe` texts, indexed by the `BadArea` value.
    VMFAULT_BAD_AREA_TEXTS: [u8; list_len(&fault::BAD_AREA_TEXTS)] = list(&fault::BAD_AREA_TEXTS);
}
