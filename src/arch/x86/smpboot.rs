//! Starting the other CPUs (Linux 2.4 `smpboot.c`: `smp_boot_cpus`,
//! `do_boot_cpu`, `start_secondary`; xv6 `startothers`).  For each CPU the
//! MADT lists besides the running one: a guarded stack from the vmalloc
//! stack zone, a directory for the trampoline's jump into paging (the
//! kernel half of swapper_pg_dir, as every new directory has it, plus the
//! trampoline page 1:1), the trampoline copied to its reserved low page,
//! then INIT and two STARTUP IPIs (Intel SDM 3A 8.4.4.1: 10 ms after INIT,
//! 200 us between the two), and a wait of up to 5 s for it to call in, as
//! 2.4's `do_boot_cpu`.
//!
//! The AP loads swapper_pg_dir, enables its own local APIC, builds its
//! TSSes and GDT (percpu.rs: %gs gives `smp_processor_id`), loads the IDT
//! every CPU shares, makes its boot context its idle task (sched/idle.rs),
//! calls in with its APIC ID and CPU number, and enters its idle loop:
//! from there it runs the threads the run queue has for it and the IPIs
//! other CPUs send.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::mpparse;
use super::smp::{self, online};
use super::smp_config::NR_CPUS;
use super::trampoline::{self, TRAMPOLINE_PHYS};
use super::{apic, cpu, gdt, idt, percpu, tsc, tss};
use crate::arch::x86::page::VirtAddr;
use crate::mm::init::swapper_pg_dir;
use crate::mm::mm_struct::mm_alloc;
use crate::mm::pgtable::{nx_enabled, PteFlags};
use crate::mm::vmalloc::{vmalloc_stack, KernelStack};
use crate::mm::walk;

/// A secondary CPU's boot stack, then its idle task's.
const AP_STACK_SIZE: usize = 16 * 1024;
/// How long the BSP waits for a started CPU to call in (2.4: 5 s).
const CALLIN_TIMEOUT_US: u64 = 5_000_000;

/// APIC ID + 1 of the CPU that called in last (0: none yet).
static CALLIN: AtomicU32 = AtomicU32::new(0);
/// The CPU number the AP being started is to take (2.4: `cpucount`); one
/// AP starts at a time.
static BOOTING: AtomicU32 = AtomicU32::new(0);
/// The stack top of the AP being started (it notes it as its idle stack).
static BOOTING_ESP: AtomicU32 = AtomicU32::new(0);
/// What each CPU's `smp_processor_id()` said when it called in.
static SAID_ID: [AtomicU32; NR_CPUS] = [const { AtomicU32::new(u32::MAX) }; NR_CPUS];
/// Microseconds from the first STARTUP IPI to the call-in, per CPU slot.
static CALLIN_US: [AtomicU64; NR_CPUS] = [const { AtomicU64::new(0) }; NR_CPUS];

/// What CPU `i`'s own `smp_processor_id()` returned when it called in.
pub fn said_id(i: usize) -> Option<u32> {
    SAID_ID.get(i).map(|a| a.load(Ordering::Acquire))
}

/// How long CPU slot `i` (1 = the first AP) took to call in, in us.
pub fn callin_us(i: usize) -> Option<u64> {
    CALLIN_US.get(i).map(|a| a.load(Ordering::Relaxed))
}

/// `smp_boot_cpus`: start every CPU the firmware lists, up to `max_cpus`
/// in all.  Needs the local APIC, the TSC clock and the vmalloc area.
pub fn smp_boot_cpus(max_cpus: usize) {
    let me = if apic::present() { apic::id() as u8 } else { 0 };
    percpu::setup(0, me as u32);
    SAID_ID[0].store(percpu::smp_processor_id() as u32, Ordering::Release);
    smp::set_online(0, me);
    let Some(cfg) = mpparse::found().and_then(|f| f.config()) else {
        return;
    };
    if !apic::present() {
        crate::println!("SMP: no local APIC: one CPU");
        return;
    }
    let mut slot = 1;
    for c in cfg.cpus().iter().filter(|c| c.apic_id != me) {
        if slot >= max_cpus.min(NR_CPUS) {
            crate::println!(
                "SMP: APIC ID {} not started (smp= limit {})",
                c.apic_id,
                max_cpus
            );
            continue;
        }
        match do_boot_cpu(c.apic_id, slot) {
            Ok(us) => {
                crate::println!(
                    "SMP: CPU {} (APIC ID {}) called in {} us after its first STARTUP IPI",
                    slot,
                    c.apic_id,
                    us
                );
                slot += 1;
            }
            Err(why) => crate::println!("SMP: APIC ID {} not started: {}", c.apic_id, why),
        }
    }
    crate::println!("SMP: {} CPU(s) online", online().count());
}

fn do_boot_cpu(apic_id: u8, slot: usize) -> Result<u64, &'static str> {
    // The kernel half of swapper_pg_dir, the stack zone included (it is
    // copied into every directory), and the trampoline 1:1 (no GLOBAL
    // bit: it must not outlive this directory in the AP's TLB).
    let mm = mm_alloc().ok_or("no memory for the trampoline's directory")?;
    walk::map_page(
        mm.pgd,
        VirtAddr::new(TRAMPOLINE_PHYS),
        TRAMPOLINE_PHYS as u64,
        PteFlags::PAGE_KERNEL,
    )
    .map_err(|_| "no memory to map the trampoline")?;
    let stack = vmalloc_stack(AP_STACK_SIZE).ok_or("no memory for its stack")?;
    trampoline::install(trampoline::Start {
        cr3: (mm.pgd).as_u32(),
        cr4: cpu::read_cr4(),
        nxe: nx_enabled(),
        esp: stack.top,
        entry: secondary_startup as *const () as u32,
    });
    CALLIN.store(0, Ordering::SeqCst);
    BOOTING.store(slot as u32, Ordering::SeqCst);
    BOOTING_ESP.store(stack.top, Ordering::SeqCst);
    apic::send_init(apic_id);
    tsc::udelay(10_000);
    let t0 = cpu::rdtsc();
    for _ in 0..2 {
        apic::send_startup(apic_id, (TRAMPOLINE_PHYS >> 12) as u8);
        tsc::udelay(200);
    }
    while CALLIN.load(Ordering::SeqCst) != apic_id as u32 + 1 {
        if tsc::us_since(t0) > CALLIN_TIMEOUT_US {
            // It may still be running the trampoline through `mm`: keep
            // it, and the stack (2.4 also leaves a CPU that did not answer
            // alone).
            core::mem::forget(mm);
            return Err("no call-in within 5 s");
        }
        core::hint::spin_loop();
    }
    let us = tsc::us_since(t0);
    // It runs on swapper_pg_dir now, on `stack`, which stays its own.
    // The page is reserved: take it out of the directory, not back to the
    // frame allocator, before the directory goes.
    if let Some((_, flush)) = walk::unmap_page(mm.pgd, VirtAddr::new(TRAMPOLINE_PHYS)) {
        // This CPU ran on it until the switch to swapper_pg_dir above.
        flush.flush();
    }
    drop(mm);
    CALLIN_US[slot].store(us, Ordering::Relaxed);
    smp::set_online(slot, apic_id);
    Ok(us)
}

extern "C" {
    /// Where the trampoline jumps, in the high half: the AP's first frame.
    fn secondary_startup() -> !;
}

core::arch::global_asm!(
    r#"
    .text
    .globl secondary_startup
    .type secondary_startup, @function
secondary_startup:
    /* Nothing called it: `bt` on this CPU ends here. */
    .cfi_startproc simple
    .cfi_def_cfa %esp, 0
    .cfi_undefined %eip
    call {start}
    ud2
    .cfi_endproc
    .size secondary_startup, . - secondary_startup
"#,
    start = sym start_secondary,
    options(att_syntax)
);

/// The AP's first Rust code, on its own stack, paging on through the
/// trampoline's directory, interrupts off.
extern "C" fn start_secondary() -> ! {
    // SAFETY: swapper_pg_dir maps the kernel, and this stack (the stack
    // zone is in every directory).  (Not mmu::load_cr3 yet: it points
    // this CPU's double-fault task at the directory, and that task is set
    // up only below.)
    unsafe { cpu::write_cr3((swapper_pg_dir()).as_u32()) };
    apic::setup_this_cpu();
    let me = BOOTING.load(Ordering::SeqCst) as usize;
    let apic_id = apic::id();
    let (t, df) = tss::init(me);
    gdt::init(me, t, df, percpu::setup(me, apic_id));
    tss::load();
    idt::load();
    let top = BOOTING_ESP.load(Ordering::SeqCst);
    percpu::this_cpu().idle_esp.store(top, Ordering::SeqCst);
    // Its boot context becomes its idle task, on the stack it booted on.
    crate::sched::init_idle(
        me,
        KernelStack {
            base: top - AP_STACK_SIZE as u32,
            top,
        },
    );
    SAID_ID[me].store(percpu::smp_processor_id() as u32, Ordering::Release);
    CALLIN.store(apic_id + 1, Ordering::SeqCst);
    crate::sched::cpu_idle()
}
