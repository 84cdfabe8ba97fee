//! mm's view of the address layout: `__pa`/`__va`, `PAGE_OFFSET`,
//! `PhysAddr`/`VirtAddr` live below mm, in `arch::x86::page` (Linux's
//! asm/page.h), so that the arch code under mm can use them; mm names
//! them here as it always did.
pub use crate::arch::x86::page::*;
