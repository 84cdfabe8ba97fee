//! A page-table change the TLB may still hold the old translation of
//! (rmm's `PageFlush`): the functions that take a present entry away
//! (`walk::unmap_page`, `pmd_clear`, `unmap_kernel_page_at`) return a
//! `TlbFlush`, which the caller must `flush()` (this CPU, Linux's
//! `__flush_tlb_one`/`__flush_tlb`), `flush_all_cpus()` (2.4's
//! `flush_tlb_all`) or `ignore()`, saying why that is right there (a
//! directory no CPU runs on, a whole flush that follows).  Forgetting it
//! is a compile-time warning, and `make clippy` makes warnings errors.
//!
//! Installing an entry over a non-present one needs no flush on x86 (a
//! not-present entry is never cached), so `set_pmd`/`set_pte` on an empty
//! slot return nothing: the lazy sync in `vmalloc_fault` is such a write.

use crate::arch::x86::{cpu, smp};

#[derive(Debug, PartialEq, Eq)]
enum Scope {
    /// One page's translation.
    Page(u32),
    /// A whole page table's worth (a pmd entry): every translation.
    All,
}

#[must_use = "the TLB may still hold the old translation: flush() it, or ignore() it and say why"]
#[derive(Debug, PartialEq, Eq)]
pub struct TlbFlush(Scope);

impl TlbFlush {
    pub(crate) fn page(va: u32) -> TlbFlush {
        TlbFlush(Scope::Page(va))
    }

    pub(crate) fn all() -> TlbFlush {
        TlbFlush(Scope::All)
    }

    /// Flush this CPU's TLB of the change.
    pub fn flush(self) {
        match self.0 {
            Scope::Page(va) => cpu::flush_tlb_one(va as usize),
            Scope::All => cpu::flush_tlb(),
        }
    }

    /// Flush every online CPU's TLB (2.4's `flush_tlb_all`).
    pub fn flush_all_cpus(self) {
        smp::flush_tlb_all();
    }

    /// No flush: the caller knows no TLB holds the old translation (or
    /// flushes it another way); the call site says which.
    pub fn ignore(self) {}
}
