//! i386 support: descriptor tables, interrupt entry, CPU state.
pub mod apic;
pub mod catch;
pub mod cpu;
pub mod dispatch;
pub mod entry;
pub mod gdt;
pub mod idt;
pub mod irq;
pub mod mmu;
pub mod pic;
pub mod pit;
pub mod switch;
pub mod trapnr;
pub mod traps;
pub mod tsc;
pub mod tss;
