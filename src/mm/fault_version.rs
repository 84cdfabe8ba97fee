//! `vmalloc_fault=`: which Linux release's `vmalloc_fault` the page-fault
//! path runs.  mm's type (src/mm/fault.rs has a module per version); the
//! command line only names it.

/// Which historical `vmalloc_fault` the page-fault path runs (DESIGN.md
/// section 1 has the table of versions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmallocFaultVersion {
    /// Linux 2.4.0-test10-pre1 and before: no vmalloc fault; vmalloc
    /// writes a new kernel PGD entry into every task's directory itself
    /// (`set_pgdir`, include/asm-i386/pgalloc.h).
    SetPgdir,
    /// Linux 2.4.0-2.4.4.
    Legacy,
    /// The seed's patch (2.4.2aa, 23 Feb 2001).
    Cli,
    /// Linux 2.4.5-pre1: the pgd from CR3, 2.4.1's checks and trap gate.
    Cr3,
    /// Linux 2.4.5-pre2 and later (2.4.16, every 2.4.x after).
    Sync,
    /// Linux 5.8 (x86-32): `arch_sync_kernel_mappings` after mapping, no
    /// vmalloc fault (7f0a002b5a21).
    Eager,
    /// Linux 5.9+ (x86-32): 5.8's sync plus `vmalloc_fault` as the
    /// fallback again (4819e15f740e, Sep 2020).
    EagerLazy,
}

impl VmallocFaultVersion {
    pub const ALLOWED: &'static str = "set_pgdir, legacy, cli, cr3, sync, eager, eager-lazy";
    /// In the order Linux had them.
    pub const ALL: [Self; 7] = [
        Self::SetPgdir,
        Self::Legacy,
        Self::Cli,
        Self::Cr3,
        Self::Sync,
        Self::Eager,
        Self::EagerLazy,
    ];
    /// Without `vmalloc_fault=`.
    pub const DEFAULT: Self = Self::Sync;

    pub const fn name(self) -> &'static str {
        match self {
            Self::SetPgdir => "set_pgdir",
            Self::Legacy => "legacy",
            Self::Cli => "cli",
            Self::Cr3 => "cr3",
            Self::Sync => "sync",
            Self::Eager => "eager",
            Self::EagerLazy => "eager-lazy",
        }
    }

    /// The version a `vmalloc_fault=` value names.
    pub fn from_value(v: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.name() == v)
    }

    /// The handlers meant to be correct.  The 2.4.1 one and the seed's
    /// cli patch are the subjects of the race suite, which pins how they
    /// fail; soaks run the correct ones.
    pub const fn meant_correct(self) -> bool {
        matches!(
            self,
            Self::SetPgdir | Self::Sync | Self::Eager | Self::EagerLazy
        )
    }

    /// Meant correct with two CPUs too.  5.8's eager sync (`eager`)
    /// copies a new kernel PMD into the other directories only after the
    /// whole range is mapped, and has no vmalloc fault path to catch a
    /// touch from another address space in between: the 2020 x86-32
    /// regression, which another CPU (or, on one, a preempting task)
    /// can hit.  5.9 brought the lazy path back (`eager-lazy`).
    pub const fn meant_correct_on_smp(self) -> bool {
        matches!(self, Self::Sync | Self::EagerLazy)
    }

    /// 5.8 and later: vmalloc copies a new kernel PMD into every directory
    /// itself (`arch_sync_kernel_mappings`), so no lazy fault is needed
    /// unless someone slips into the window before that copy.
    pub const fn syncs_eagerly(self) -> bool {
        matches!(self, Self::Eager | Self::EagerLazy)
    }

    /// 2.4.0-test10-pre1: vmalloc copies a PGD entry it created into every
    /// directory after mapping that slot's part of the area (`set_pgdir`),
    /// and a kernel fault on it is `no_context`.
    pub const fn sets_pgdir(self) -> bool {
        matches!(self, Self::SetPgdir)
    }

    /// The versions whose only sync is the lazy fault (2.4.0-test10-pre2
    /// to 2.4.x): vmalloc copies no entry itself.
    pub const fn lazy_only(self) -> bool {
        !matches!(self, Self::SetPgdir | Self::Eager | Self::EagerLazy)
    }

    /// The versions whose `do_page_fault` has no `vmalloc_fault` path.
    pub const fn has_vmalloc_fault(self) -> bool {
        !matches!(self, Self::SetPgdir | Self::Eager)
    }
}
