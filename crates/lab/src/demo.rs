//! The boot-time demonstration `make run` shows: one lazy PGD sync, from
//! address-space creation to the copied entry, narrated on the console.

use core::sync::atomic::{AtomicU32, Ordering};

use crate::dump::show_translation;
use vmfault::arch::x86::smp;
use vmfault::arch::x86::smp_config::NR_CPUS;
use vmfault::mm::addr::VirtAddr;
use vmfault::mm::mm_struct::mm_alloc;
use vmfault::mm::pgtable::{mode, pgd_offset, pmd_offset, pmd_present, PagingMode};
use vmfault::mm::{fault, vmalloc};
use vmfault::println;
use vmfault::sched::{current, join, run_here};

static ADDR: AtomicU32 = AtomicU32::new(0);

fn first_touch(_: usize) {
    let p = ADDR.load(Ordering::SeqCst);
    let t = current();
    println!(
        "[{} pid {}] running in mm with pgd {:#010x}; before the first touch:",
        t.name,
        t.pid,
        t.active_mm_pgd()
    );
    show_translation(p);
    let before = fault::total_faults();
    println!("[{} pid {}] writing to {:#010x} ...", t.name, t.pid, p);
    // SAFETY: vmalloc'd by the demo; the fault path makes it reachable.
    unsafe { core::ptr::write_volatile(p as *mut u32, 0x2001_0223) };
    println!(
        "[{} pid {}] write done: {} vmalloc fault(s) taken; after:",
        t.name,
        t.pid,
        fault::total_faults() - before
    );
    show_translation(p);
}

/// Each other CPU's share of the demo: it runs on the boot CPU, and the
/// others only answer the TLB shootdowns of its vfree (2.4's
/// `flush_tlb_all`: the freed area may still be in their TLBs).
fn other_cpus(before: &[u32; NR_CPUS]) {
    for cpu in (1..NR_CPUS).filter(|&c| smp::cpu_online(c)) {
        let n = smp::shootdowns(cpu) - before[cpu];
        println!(
            "[CPU {}] answered {} TLB shootdown IPI(s) during the demo (vfree's flush_tlb_all); it ran no demo code",
            cpu, n
        );
    }
}

pub fn lazy_sync_demo() {
    let before: [u32; NR_CPUS] = core::array::from_fn(smp::shootdowns);
    println!();
    println!(
        "=== lazy vmalloc PGD sync (vmalloc_fault={}, paging={}) ===",
        fault::version().name(),
        mode().name()
    );
    let Some(mm) = mm_alloc() else {
        println!("demo: no memory for an address space");
        return;
    };
    println!(
        "mm_alloc: new mm {} (pgd {:#010x}), kernel part copied from swapper_pg_dir",
        mm.id, mm.pgd
    );
    let size = 4 << 20;
    let Some(p) = vmalloc::vmalloc(size) else {
        println!("demo: vmalloc failed");
        return;
    };
    // Point at a page in a slot the new mm does not have yet, if any.
    let p = p.as_ptr() as u32;
    let target = (p..p + size as u32)
        .step_by(4 << 20)
        .chain(core::iter::once(p + size as u32 - 4))
        .find(|&a| {
            !pmd_present(pmd_offset(pgd_offset(mm.pgd, VirtAddr::new(a)), VirtAddr::new(a)).read())
        })
        .unwrap_or(p);
    ADDR.store(target, Ordering::SeqCst);
    println!(
        "vmalloc({:#x}) = {:#010x}: page tables written into init_mm only",
        size, p
    );
    match mode() {
        PagingMode::TwoLevel => println!(
            "two-level: the new PGD entry is missing from mm {} until it touches it",
            mm.id
        ),
        PagingMode::Pae => println!(
            "PAE: the kernel PMD page is shared, so mm {} sees it at once",
            mm.id
        ),
    }
    let t = run_here("demo", first_touch, 0, Some(mm));
    let r = vmfault::fixup::catch(false, || {
        join(&t);
    });
    if let Err(c) = r {
        println!("demo: the touching thread was killed by an oops: {}", c.msg);
    }
    vmfault::sched::drop_lazy_mm();
    fault::show_stats();
    vmalloc::vmallocinfo();
    let _ = vmalloc::vfree(p as *const u8);
    other_cpus(&before);
    println!("=== end of demo ===");
}
