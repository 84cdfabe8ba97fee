//! i386 support: descriptor tables, interrupt entry, CPU state.
pub mod catch;
pub mod cpu;
pub mod entry;
pub mod gdt;
pub mod idt;
pub mod switch;
pub mod traps;
pub mod tss;
