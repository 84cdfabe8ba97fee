//! The vmfault kernel users boot: `make run` (two-level paging) or
//! `make run PAGING=pae`.  It prints the boot log; with `test=GLOB` on the
//! command line it also runs the in-kernel suite and exits QEMU.
#![no_std]
#![no_main]

use vmfault::{println, BootParams};

vmfault::kernel_main!(kmain);

fn kmain(params: &'static BootParams) -> ! {
    if params.cmdline.bench {
        vmfault::lab::bench::run_all();
        vmfault::qemu::exit(vmfault::qemu::ExitCode::Success);
    }
    if params.cmdline.soak {
        let cfg = vmfault::lab::soak::SoakConfig {
            progress_every: 100_000,
            ..vmfault::lab::soak::SoakConfig::new(params.cmdline.soak_seed, params.cmdline.soak_ops)
        };
        let r = vmfault::lab::soak::run(cfg);
        vmfault::lab::soak::print_report(&cfg, &r);
        vmfault::qemu::exit(if r.clean() {
            vmfault::qemu::ExitCode::Success
        } else {
            vmfault::qemu::ExitCode::Failed
        });
    }
    if params.cmdline.triple_fault {
        vmfault::lab::race::triple_fault::run();
    }
    if params.cmdline.engine {
        vmfault::lab::race::experiments::engine_check();
        vmfault::qemu::exit(vmfault::qemu::ExitCode::Success);
    }
    if let Some(handles) = params.cmdline.race {
        vmfault::lab::race::replay::run(handles);
    }
    if params.cmdline.experiment {
        vmfault::lab::race::experiments::run_all();
        vmfault::qemu::exit(vmfault::qemu::ExitCode::Success);
    }
    if let Some(filter) = params.cmdline.test {
        vmfault::ktest::run_and_exit(filter);
    }
    vmfault::lab::demo::lazy_sync_demo();
    println!("vmfault: boot complete; leave QEMU with Ctrl-A X");
    vmfault::arch::x86::cpu::halt_forever()
}
