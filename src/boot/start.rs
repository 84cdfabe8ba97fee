//! `start_kernel`: called by boot/entry.s on the boot stack, paging on with
//! the boot page directory, interrupts off.

use multiboot2::BootInformation;
use spin::Once;

use crate::arch::x86::{gdt, idt, tss};
use crate::cmdline::{self, Cmdline};
use crate::qemu::{exit, ExitCode};
use crate::{console, pr_warn, println, symbols};

/// Everything `kmain` needs from the boot.
pub struct BootParams {
    pub info: &'static BootInformation<'static>,
    pub info_phys: u32,
    pub raw_cmdline: &'static str,
    pub cmdline: Cmdline<'static>,
}

static INFO: Once<BootInformation<'static>> = Once::new();
static PARAMS: Once<BootParams> = Once::new();

extern "Rust" {
    /// Defined by each kernel binary through `vmfault::kernel_main!`.
    fn __vmfault_kmain(params: &'static BootParams) -> !;
}

/// Stop the boot with a message the host runner and a user can read.
pub fn boot_failure(msg: core::fmt::Arguments) -> ! {
    println!("vmfault: boot stopped: {}", msg);
    exit(ExitCode::Failed)
}

pub fn params() -> Option<&'static BootParams> {
    PARAMS.get()
}

#[no_mangle]
extern "C" fn start_kernel(magic: u32, info_phys: u32) -> ! {
    console::init();
    println!();
    println!(
        "vmfault {} (i386, Linux 2.4 lazy vmalloc PGD sync bench)",
        env!("CARGO_PKG_VERSION")
    );

    // Descriptor tables first, so that anything below that faults gets an
    // oops report rather than a triple fault.
    let (t, df) = tss::init();
    gdt::init(t, df);
    tss::load();
    idt::init();
    // A clock for printk_ratelimit, before anything can print in bulk.
    crate::arch::x86::tsc::calibrate();

    let info = match crate::boot::info::load_boot(magic, info_phys) {
        Ok(i) => INFO.call_once(|| i),
        Err(e) => boot_failure(format_args!("{}", e)),
    };
    crate::boot::info::print(info, info_phys);

    let raw = crate::boot::info::boot_cmdline(info)
        .unwrap_or_else(|e| boot_failure(format_args!("{}", e)));
    println!("Kernel command line: {}", raw);
    let cmdline = match cmdline::parse(raw, &mut |w| {
        pr_warn!("vmfault: unknown command line parameter '{}' ignored", w)
    }) {
        Ok(c) => c,
        Err(e) => boot_failure(format_args!("{}", e)),
    };
    if let Some(l) = cmdline.loglevel {
        console::set_loglevel(l);
    }

    match symbols::init(info) {
        Ok(n) if n > 0 => {}
        Ok(_) => pr_warn!("vmfault: empty symbol table; oops reports show raw addresses"),
        Err(why) => pr_warn!(
            "vmfault: no symbol table ({}); oops reports show raw addresses",
            why
        ),
    }

    let params = PARAMS.call_once(|| BootParams {
        info,
        info_phys,
        raw_cmdline: raw,
        cmdline,
    });
    crate::mm::init(params);
    // Every interrupt line is masked until a driver requests it, so this
    // only lets requested sources (timer, IPIs) in.
    crate::arch::x86::cpu::sti();

    // SAFETY: every kernel binary defines this symbol via `kernel_main!`.
    unsafe { __vmfault_kmain(params) }
}
