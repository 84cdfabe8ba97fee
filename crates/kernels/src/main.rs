//! The vmfault kernel users boot: `make run` (two-level paging) or
//! `make run PAGING=pae`.  It prints the boot log and runs the demo, or
//! what `experiment=` and `race=` ask for, all of it the lab's.  It links
//! no test harness: the suites run in the test kernels (`crates/kernels/tests/ktest.rs`,
//! `make test`), so `test=` here says so and stops.
#![no_std]
#![no_main]

use vmfault::{println, BootParams};

vmfault::kernel_main!(kmain);

fn kmain(params: &'static BootParams) -> ! {
    if params.cmdline.bench {
        vmfault_lab::bench::run_all();
        vmfault::qemu::exit(vmfault::qemu::ExitCode::Success);
    }
    if params.cmdline.soak {
        let cfg = vmfault_lab::soak::SoakConfig {
            progress_every: 100_000,
            ..vmfault_lab::soak::SoakConfig::new(params.cmdline.soak_seed, params.cmdline.soak_ops)
        };
        let r = vmfault_lab::soak::run(cfg);
        vmfault_lab::soak::print_report(&cfg, &r);
        vmfault::qemu::exit(if r.clean() {
            vmfault::qemu::ExitCode::Success
        } else {
            vmfault::qemu::ExitCode::Failed
        });
    }
    if params.cmdline.triple_fault {
        vmfault_lab::race::triple_fault::run();
    }
    if params.cmdline.engine {
        vmfault_lab::race::experiments::engine_check();
        vmfault::qemu::exit(vmfault::qemu::ExitCode::Success);
    }
    if let Some(handles) = params.cmdline.race {
        vmfault_lab::race::replay::run(handles);
    }
    if params.cmdline.experiment {
        vmfault_lab::race::experiments::run_all();
        vmfault::qemu::exit(vmfault::qemu::ExitCode::Success);
    }
    if let Some(filter) = params.cmdline.test {
        println!(
            "vmfault: test={} asks for the in-kernel suite, which only the test kernels carry: run `make test TEST='{}'`",
            filter, filter
        );
        vmfault::qemu::exit(vmfault::qemu::ExitCode::Failed);
    }
    vmfault_lab::demo::lazy_sync_demo();
    println!("vmfault: boot complete; leave QEMU with Ctrl-A X");
    vmfault::arch::x86::cpu::halt_forever()
}
