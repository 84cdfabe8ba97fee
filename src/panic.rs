//! The panic handler.  Inside a test case a panic (a failed `assert!`)
//! fails that case through its recovery point; anywhere else it prints
//! Linux's `Kernel panic - not syncing:` line with message and location
//! and ends the run with a failure status.

use core::panic::PanicInfo;

use crate::fixup::{self, Caught};

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    crate::console::force_unlock();
    if fixup::armed() {
        // The harness prints the message as the case's diagnostic.
        fixup::recover_or_fail(Caught::panic(info));
    }
    crate::println!("Kernel panic - not syncing: {}", info);
    crate::qemu::exit(crate::qemu::ExitCode::Failed)
}
