//! `paging=`: which i386 page-table format the kernel runs with.  mm's
//! type (pgtable and the fault path are compiled once per mode); the
//! command line only names it.

/// Which i386 page-table format the kernel runs with (DESIGN.md section 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PagingMode {
    /// 1024-entry PGD of 4 MiB, pmd folded into the pgd.
    TwoLevel,
    /// 4-entry PDPT, 512-entry PMD of 2 MiB, 512-entry PTE, 64-bit entries.
    Pae,
}

impl PagingMode {
    pub const ALLOWED: &'static str = "2level, pae";
    pub const ALL: [Self; 2] = [Self::TwoLevel, Self::Pae];
    /// Without `paging=`.
    pub const DEFAULT: Self = Self::TwoLevel;

    pub const fn name(self) -> &'static str {
        match self {
            PagingMode::TwoLevel => "2level",
            PagingMode::Pae => "pae",
        }
    }

    /// The mode a `paging=` value names.
    pub fn from_value(v: &str) -> Option<Self> {
        match v {
            "2level" => Some(PagingMode::TwoLevel),
            "pae" => Some(PagingMode::Pae),
            _ => None,
        }
    }
}
