//! vmfault: a freestanding i386 kernel that rebuilds Linux 2.4's lazy vmalloc
//! PGD sync (see `shared/seed/lkml-2001-02-23-vmalloc-pgd-race.txt`) and turns
//! it into an experiment bench.
//!
//! Boot order (`start_kernel`, src/init/main.rs, in Linux's init/main.c
//! order): serial console, traps, boot information and command line,
//! memory, interrupts, the scheduler, the clock, then the binary's `kmain`.
//!
//! This crate is the kernel core: `arch`, `boot`, `mm`, `sched`,
//! `console`, `symbols`, `oops`, `panic`, `fixup` (recovery points),
//! `cmdline` and helpers.  The floors above it are crates of their own,
//! so the compiler rejects an upward `use` (docs/layout.md):
//! `vmfault-lab` (crates/lab: the experiments), `vmfault-ktest`
//! (crates/ktest: the in-kernel test harness, suites and fuzzers) and
//! `vmfault-kernels` (crates/kernels: the kernel binaries).
#![no_std]

pub mod arch;
pub mod boot;
pub mod cmdline;
pub mod console;
pub mod fixed_buf;
pub mod fixup;
pub mod host_abi;
pub mod init;
extern crate alloc;
pub mod mm;
pub mod oops;
pub mod panic;
pub mod qemu;
pub mod racy_cell;
pub mod rand;
pub mod sched;
pub mod symbols;

pub use boot::start::BootParams;

/// Declares the function a kernel binary runs once the platform is up.
///
/// ```ignore
/// vmfault::kernel_main!(kmain);
/// fn kmain(params: &'static vmfault::BootParams) -> ! { ... }
/// ```
#[macro_export]
macro_rules! kernel_main {
    ($path:path) => {
        #[no_mangle]
        pub extern "Rust" fn __vmfault_kmain(params: &'static $crate::BootParams) -> ! {
            let f: fn(&'static $crate::BootParams) -> ! = $path;
            f(params)
        }
    };
}

core::arch::global_asm!(include_str!("../boot/multiboot2.s"), options(att_syntax));
core::arch::global_asm!(include_str!("../boot/entry.s"), options(att_syntax));
core::arch::global_asm!(include_str!("../boot/cpu_check.s"), options(att_syntax));
core::arch::global_asm!(include_str!("../boot/trampoline.s"), options(att_syntax));
