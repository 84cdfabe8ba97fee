//! Memory management: addresses, frames, page tables, address spaces,
//! vmalloc and the page-fault path.
pub mod addr;
pub mod probe;
