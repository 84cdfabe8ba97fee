//! A kernel that panics outside any test case.  The host runner expects
//! the `Kernel panic - not syncing:` line with message and location, and a
//! failure exit status: a panic must never look like a pass.
//!
//! expect-exit: failure
//! expect-serial: Kernel panic - not syncing: panicked at crates/kernels/tests/panic_exit.rs:
//! expect-serial: deliberate panic outside a test case
#![no_std]
#![no_main]

use vmfault::BootParams;

vmfault::kernel_main!(kmain);

fn kmain(_params: &'static BootParams) -> ! {
    panic!("deliberate panic outside a test case")
}
