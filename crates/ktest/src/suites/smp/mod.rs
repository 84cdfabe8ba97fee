//! Two CPUs (issue 15).  Where the CPUs are: the ACPI MADT and the MP
//! table, both read in setup_arch, must agree on the CPUs they both list,
//! and the one marked as the boot CPU must be the one running.  `make test`
//! boots this suite with one and with two CPUs (`-smp 2`).  Measured: with
//! `-smp 2`, SeaBIOS (QEMU 7.2) builds an MP table that lists the boot CPU
//! only, while QEMU's MADT lists both; the kernel goes by the MADT.
//!
//! The rest, a file each: `ipi` (IPIs, `smp_call_function`, the NMI stop),
//! `shootdown` (TLB shootdown after vunmap and vfree), `threads` (the
//! scheduler on both CPUs, `current` per CPU).

extern crate alloc;

mod ipi;
mod shootdown;
mod threads;

use crate::case;
use crate::{skip, Suite};
use ipi::*;
use shootdown::*;
use threads::*;
use vmfault::arch::x86::mpparse;
use vmfault::arch::x86::smp_config::Source;
use vmfault::arch::x86::{apic, smpboot};

pub static SUITE: Suite = Suite {
    name: "smp",
    cases: &[
        case!(mp_table_cpus_are_the_madts),
        case!(boot_cpu_is_the_one_running),
        case!(ap_boots_and_reports_its_apic_id),
        case!(each_cpu_reads_its_own_number_through_gs),
        case!(ipi_roundtrip),
        case!(call_function_waits),
        case!(call_function_refused_with_interrupts_off),
        case!(tlb_shootdown_after_vunmap),
        case!(tlb_shootdown_after_vfree),
        case!(nmi_stops_a_wedged_cpu),
        case!(threads_of_one_mm_run_on_both_cpus),
        case!(current_is_per_cpu_during_a_fault),
    ],
};

fn mp_table_cpus_are_the_madts() {
    let f = mpparse::found().expect("find_smp_config did not run in setup_arch");
    let (madt, mp) = match (&f.madt, &f.mp_table) {
        (Ok(a), Ok(b)) => (a, b),
        (a, b) => skip(match (a, b) {
            (Err(_), Err(_)) => "neither an MADT nor an MP table",
            (Err(_), _) => "no MADT",
            _ => "no MP table",
        }),
    };
    assert_eq!(madt.source, Source::Madt);
    assert_eq!(mp.source, Source::MpTable);
    vmfault::println!("    # MADT: {:?}", madt.cpus());
    vmfault::println!("    # MP table: {:?}", mp.cpus());
    assert!(!madt.cpus().is_empty() && !mp.cpus().is_empty());
    for c in mp.cpus() {
        assert!(
            madt.cpus().contains(c),
            "the MP table lists {:?}, the MADT does not",
            c
        );
    }
    for t in [madt, mp] {
        assert_eq!(
            t.cpus().iter().filter(|c| c.boot).count(),
            1,
            "{}: exactly one boot CPU",
            t.source.name()
        );
    }
    assert_eq!(madt.lapic_phys, mp.lapic_phys);
    // The kernel goes by the MADT when there is one.
    assert_eq!(f.config().map(|c| c.source), Some(Source::Madt));
}

fn boot_cpu_is_the_one_running() {
    if !apic::present() {
        skip("no local APIC: no APIC ID to compare");
    }
    let c = mpparse::found()
        .and_then(|f| f.config())
        .unwrap_or_else(|| skip("no CPU list from the firmware"));
    let me = apic::id() as u8;
    let b = c
        .cpus()
        .iter()
        .find(|x| x.boot)
        .expect("no boot CPU listed");
    assert_eq!(b.apic_id, me, "the table's boot CPU is not the one running");
    assert_eq!(
        c.lapic_phys as u64,
        apic::phys_base(),
        "the table's local APIC address differs from IA32_APIC_BASE"
    );
}

/// Every CPU the MADT lists (up to `smp=`) came up through the trampoline
/// and called in with the APIC ID its own local APIC reports, which must
/// be the MADT's; under `nosmp` only the boot CPU runs.
fn ap_boots_and_reports_its_apic_id() {
    let c = mpparse::found()
        .and_then(|f| f.config())
        .unwrap_or_else(|| skip("no CPU list from the firmware"));
    if c.cpus().len() < 2 {
        skip("one CPU (make test boots this suite with -smp 2 too)");
    }
    let online: alloc::vec::Vec<u8> = vmfault::arch::x86::smp::online().collect();
    // smp=N / nosmp: only the first N, the boot CPU included.
    let limit = vmfault::boot::start::params()
        .and_then(|p| p.cmdline.smp)
        .map_or(usize::MAX, usize::from);
    let listed: alloc::vec::Vec<u8> = c.cpus().iter().map(|x| x.apic_id).take(limit).collect();
    vmfault::println!("    # listed {:?}, online {:?}", listed, online);
    for i in 1..online.len() {
        vmfault::println!(
            "    # CPU {} called in {} us after its first STARTUP IPI",
            i,
            smpboot::callin_us(i).unwrap_or(0)
        );
    }
    assert_eq!(
        online.first().copied(),
        Some(apic::id() as u8),
        "slot 0 is the boot CPU"
    );
    assert_eq!(
        online, listed,
        "every listed CPU online, with its APIC ID, in the MADT's order"
    );
}

/// `smp_processor_id()` reads %gs:0, each CPU's own per-CPU segment: 0 on
/// the boot CPU, and on each AP the number it was started as (recorded
/// when it called in, after loading its own GDT).
fn each_cpu_reads_its_own_number_through_gs() {
    use vmfault::arch::x86::percpu::smp_processor_id;
    assert_eq!(smp_processor_id(), 0, "the suite runs on the boot CPU");
    let n = vmfault::arch::x86::smp::online().count();
    for i in 0..n {
        assert_eq!(
            smpboot::said_id(i),
            Some(i as u32),
            "CPU {} read another number",
            i
        );
    }
    vmfault::println!("    # {} CPU(s), each read its own number", n);
}

/// The APIC ID of another online CPU, or skip.
pub(super) fn need_two_cpus() -> u8 {
    if !apic::present() {
        skip("no local APIC");
    }
    let me = apic::id() as u8;
    vmfault::arch::x86::smp::online()
        .find(|&id| id != me)
        .unwrap_or_else(|| skip("one CPU online (make test boots this suite with -smp 2 too)"))
}
