//! The Rust half of boot/trampoline.s: where the secondary CPUs' real-mode
//! entry lives, and how a copy of it is made ready for one of them.

use crate::arch::x86::page::{__va, PAGE_SIZE};

/// The page the STARTUP IPI points at (vector 0x08), reserved by
/// `mm::init::reserved_ranges` before the frame allocator starts; the
/// assembler half knows it as TRAMPOLINE_BASE.
pub const TRAMPOLINE_PHYS: u32 = 0x8000;

extern "C" {
    static trampoline_start: u8;
    static trampoline_end: u8;
    static tr_cr3: u32;
    static tr_cr4: u32;
    static tr_nxe: u32;
    static tr_esp: u32;
    static tr_entry: u32;
}

/// What the trampoline loads before it jumps into the kernel.
pub struct Start {
    /// The directory it turns paging on with (the trampoline page 1:1).
    pub cr3: u32,
    /// The boot CPU's CR4 (PSE, PAE, PGE).
    pub cr4: u32,
    /// Set EFER.NXE, as the boot CPU did.
    pub nxe: bool,
    /// The stack it runs `entry` on.
    pub esp: u32,
    /// Where it jumps, in the kernel's high half.
    pub entry: u32,
}

/// Where field `f` of the trampoline lands in its copy.
fn field(f: *const u32) -> *mut u32 {
    // SAFETY: linker symbols; only their addresses are taken.
    let start = unsafe { &trampoline_start as *const u8 as usize };
    (__va(TRAMPOLINE_PHYS) + (f as usize - start)) as *mut u32
}

/// Copy the trampoline to its page and fill in `s` (one AP starts at a
/// time, so one copy serves them all in turn).
pub fn install(s: Start) {
    // SAFETY: linker symbols bracketing the trampoline's bytes; the
    // destination is the reserved page, direct-mapped, nobody else's.
    unsafe {
        let start = &trampoline_start as *const u8;
        let len = &trampoline_end as *const u8 as usize - start as usize;
        assert!(len <= PAGE_SIZE, "the trampoline outgrew its page");
        core::ptr::copy_nonoverlapping(start, __va(TRAMPOLINE_PHYS) as *mut u8, len);
        field(&raw const tr_cr3).write_volatile(s.cr3);
        field(&raw const tr_cr4).write_volatile(s.cr4);
        field(&raw const tr_nxe).write_volatile(s.nxe as u32);
        field(&raw const tr_esp).write_volatile(s.esp);
        field(&raw const tr_entry).write_volatile(s.entry);
    }
}
