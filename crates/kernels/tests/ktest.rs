//! The test kernel `cargo test` and `make test` boot: the whole in-kernel
//! suite (or the `test=` glob from the command line), KTAP on COM1.
#![no_std]
#![no_main]

use vmfault::BootParams;

vmfault::kernel_main!(kmain);

fn kmain(params: &'static BootParams) -> ! {
    vmfault_ktest::run_and_exit(params.cmdline.test.unwrap_or("*"))
}
