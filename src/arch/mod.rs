//! Architecture code.  Only i386 exists; the module keeps Linux's layout.
pub mod x86;
