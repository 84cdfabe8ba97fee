//! `start_kernel` (Linux init/main.c): called by boot/entry.s on the boot
//! stack, paging on with the boot page directory, interrupts off.  Each
//! step is named after the Linux function that does the same, in Linux's
//! order where the hardware allows (the serial console comes first here:
//! it is the only way anything reaches the user, and GRUB already set the
//! machine up for it).

use crate::arch::x86::{
    apic, cpu, gdt, idt, irq, nmi, percpu, smp, smp_config, smpboot, traps, tsc, tss,
};
use crate::boot::start::{setup_arch, BootParams};
use crate::mm::fixmap;
use crate::{console, println};

extern "Rust" {
    /// Defined by each kernel binary through `vmfault::kernel_main!`.
    fn __vmfault_kmain(params: &'static BootParams) -> !;
}

#[no_mangle]
extern "C" fn start_kernel(magic: u32, info_phys: u32) -> ! {
    // console_init, early: every later step may need to say why it failed.
    console::init();
    println!();
    println!(
        "vmfault {} (i386, Linux 2.4 lazy vmalloc PGD sync bench)",
        env!("CARGO_PKG_VERSION")
    );

    // trap_init: descriptor tables before anything else can fault, so a
    // fault gets an oops report rather than a triple fault.
    // The boot CPU is CPU 0 (its APIC ID is read once the APIC is mapped).
    let (t, df) = tss::init(0);
    gdt::init(0, t, df, percpu::setup(0, 0));
    tss::load();
    idt::init();
    traps::init();

    // setup_arch + parse_options: boot information, command line, symbols.
    let params = setup_arch(magic, info_phys);

    // paging_init and mem_init: frames, heap, swapper_pg_dir in the mode
    // the command line chose, init_mm, the vmalloc area, the #PF gate of
    // the chosen vmalloc_fault= version.
    crate::mm::init(params.info, params.info_phys, params.cmdline.paging);
    crate::mm::fault::set_vmalloc_fault(params.cmdline.vmalloc_fault);

    // init_IRQ: the 8259s, and the local APIC through its fixmap slot,
    // before the first mm_alloc so that every address space inherits it.
    if cpu::features().apic {
        let va = fixmap::set_fixmap_nocache(fixmap::FixedAddress::ApicBase, apic::phys_base());
        irq::init(Some(va));
    } else {
        irq::init(None);
    }

    // sched_init: the boot context becomes swapper (pid 0); preempt=.
    crate::sched::init();
    // 2.4.0-test11-pre2 to 2.4.3-pre6 vmalloc under the big kernel lock,
    // which is the scheduler's; mm sits below it and gets the two calls.
    crate::mm::vmalloc::set_kernel_lock(crate::sched::lock_kernel, crate::sched::unlock_kernel);
    crate::sched::set_preempt_model(params.cmdline.preempt);

    // time_init: a clock for printk_ratelimit, measured against the PIT.
    tsc::calibrate();

    // smp_init: start the other CPUs the firmware lists, up to smp= (they
    // park).
    smp::init();
    crate::sched::init_ipi();
    nmi::init();
    smpboot::smp_boot_cpus(params.cmdline.smp.map_or(smp_config::NR_CPUS, usize::from));

    // Every interrupt line is masked until a driver requests it, so this
    // only lets requested sources (timer, IPIs) in.
    cpu::sti();

    // rest_init: the binary's own main.
    // SAFETY: every kernel binary defines this symbol via `kernel_main!`.
    unsafe { __vmfault_kmain(params) }
}
