//! `setup_arch` for this kernel: from GRUB's boot information to the
//! parameters `kmain` gets (`BootParams`), and the one way a boot stops on
//! bad input (`boot_failure`).  `start_kernel` (init/main.rs) calls it.

use multiboot2::BootInformation;
use spin::Once;

use crate::cmdline::{self, Cmdline};
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

pub use crate::qemu::boot_failure;

pub fn params() -> Option<&'static BootParams> {
    PARAMS.get()
}

/// The architecture half of boot (Linux's `setup_arch` and
/// `parse_options`): the multiboot2 information, the command line, the
/// symbol table for oops reports.  A bad boot information block or a bad
/// command line stops the boot with a message.
pub fn setup_arch(magic: u32, info_phys: u32) -> &'static BootParams {
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

    // find_smp_config: while the boot directory still maps the ACPI
    // tables at the top of RAM.
    crate::arch::x86::mpparse::find_smp_config(info);

    PARAMS.call_once(|| BootParams {
        info,
        info_phys,
        raw_cmdline: raw,
        cmdline,
    })
}
