//! Where the CPUs are (issue 15): the ACPI MADT and the MP table, both
//! read in setup_arch, must agree on the CPUs they both list, and the one
//! marked as the boot CPU must be the one running.  `make test` boots this
//! suite with one and with two CPUs (`-smp 2`).  Measured: with `-smp 2`,
//! SeaBIOS (QEMU 7.2) builds an MP table that lists the boot CPU only,
//! while QEMU's MADT lists both; the kernel goes by the MADT.

extern crate alloc;

use crate::arch::x86::mpparse;
use crate::arch::x86::smp_config::Source;
use core::sync::atomic::{AtomicU32, Ordering};

use crate::arch::x86::entry::TrapFrame;
use crate::arch::x86::irq::{self, IrqFlags};
use crate::arch::x86::smp::{smp_call_function, CallError};
use crate::arch::x86::{apic, cpu, smpboot};
use crate::case;
use crate::ktest::{skip, wait_for, Suite};

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
        case!(touch_after_vunmap_oopses_cleanly_on_cpu1),
        case!(nmi_stops_a_wedged_cpu),
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
    crate::println!("    # MADT: {:?}", madt.cpus());
    crate::println!("    # MP table: {:?}", mp.cpus());
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
    let online: alloc::vec::Vec<u8> = crate::arch::x86::smp::online().collect();
    // smp=N / nosmp: only the first N, the boot CPU included.
    let limit = crate::boot::start::params()
        .and_then(|p| p.cmdline.smp)
        .map_or(usize::MAX, usize::from);
    let listed: alloc::vec::Vec<u8> = c.cpus().iter().map(|x| x.apic_id).take(limit).collect();
    crate::println!("    # listed {:?}, online {:?}", listed, online);
    for i in 1..online.len() {
        crate::println!(
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
    use crate::arch::x86::percpu::smp_processor_id;
    assert_eq!(smp_processor_id(), 0, "the suite runs on the boot CPU");
    let n = crate::arch::x86::smp::online().count();
    for i in 0..n {
        assert_eq!(
            smpboot::said_id(i),
            Some(i as u32),
            "CPU {} read another number",
            i
        );
    }
    crate::println!("    # {} CPU(s), each read its own number", n);
}

fn need_two_cpus() -> u8 {
    if !apic::present() {
        skip("no local APIC");
    }
    let me = apic::id() as u8;
    crate::arch::x86::smp::online()
        .find(|&id| id != me)
        .unwrap_or_else(|| skip("one CPU online (make test boots this suite with -smp 2 too)"))
}

const PING: u8 = 0xF6;
const PONG: u8 = 0xF7;
static PING_ON: AtomicU32 = AtomicU32::new(u32::MAX);
static PONGS: AtomicU32 = AtomicU32::new(0);
static BSP_APIC: AtomicU32 = AtomicU32::new(0);

fn ping(_: &mut TrapFrame) {
    PING_ON.store(
        crate::arch::x86::percpu::smp_processor_id() as u32,
        Ordering::SeqCst,
    );
    apic::send_ipi(BSP_APIC.load(Ordering::SeqCst) as u8, PONG);
}

fn pong(_: &mut TrapFrame) {
    PONGS.fetch_add(1, Ordering::SeqCst);
}

/// A fixed-vector IPI to the other CPU, whose handler answers with one
/// back: both ran, on the CPUs they were sent to.
fn ipi_roundtrip() {
    let other = need_two_cpus();
    BSP_APIC.store(apic::id(), Ordering::SeqCst);
    PING_ON.store(u32::MAX, Ordering::SeqCst);
    PONGS.store(0, Ordering::SeqCst);
    irq::request_irq(PING, ping, IrqFlags::SA_INTERRUPT);
    irq::request_irq(PONG, pong, IrqFlags::SA_INTERRUPT);
    let rounds = 100;
    for i in 0..rounds {
        apic::send_ipi(other, PING);
        assert!(
            wait_for(|| PONGS.load(Ordering::SeqCst) > i, 50_000_000),
            "no answer to ping {}",
            i
        );
    }
    irq::free_irq(PING);
    irq::free_irq(PONG);
    assert_eq!(PONGS.load(Ordering::SeqCst), rounds);
    assert_eq!(PING_ON.load(Ordering::SeqCst), 1, "the ping ran on CPU 1");
}

static RAN_ON: [AtomicU32; 8] = [const { AtomicU32::new(0) }; 8];
static SLOW_DONE: AtomicU32 = AtomicU32::new(0);

fn record_and_dawdle(tag: usize) {
    RAN_ON[crate::arch::x86::percpu::smp_processor_id()].store(tag as u32, Ordering::SeqCst);
    // Long enough that a caller not waiting would return first.
    crate::arch::x86::tsc::udelay(2_000);
    SLOW_DONE.store(tag as u32, Ordering::SeqCst);
}

/// `smp_call_function(f, info, 1)` runs `f(info)` on every other CPU and
/// returns only after each finished it; the caller's CPU does not run it.
fn call_function_waits() {
    need_two_cpus();
    for r in &RAN_ON {
        r.store(0, Ordering::SeqCst);
    }
    SLOW_DONE.store(0, Ordering::SeqCst);
    let n = smp_call_function(record_and_dawdle, 0x5eed, true).expect("smp_call_function");
    assert_eq!(n as usize, crate::arch::x86::smp::online().count() - 1);
    assert_eq!(
        SLOW_DONE.load(Ordering::SeqCst),
        0x5eed,
        "returned before the function finished"
    );
    assert_eq!(
        RAN_ON[0].load(Ordering::SeqCst),
        0,
        "ran on the calling CPU"
    );
    for (i, r) in RAN_ON
        .iter()
        .enumerate()
        .take(crate::arch::x86::smp::online().count())
        .skip(1)
    {
        assert_eq!(r.load(Ordering::SeqCst), 0x5eed, "CPU {} did not run it", i);
    }
    // Without `wait`: back once every CPU has started it.
    SLOW_DONE.store(0, Ordering::SeqCst);
    smp_call_function(record_and_dawdle, 0xbeef, false).expect("smp_call_function");
    assert!(
        wait_for(|| SLOW_DONE.load(Ordering::SeqCst) == 0xbeef, 50_000_000),
        "the unwaited call never finished"
    );
}

/// 2.4: "You must not call this function with disabled interrupts": two
/// CPUs calling each other that way would wait for ever.
fn call_function_refused_with_interrupts_off() {
    let f = cpu::local_irq_save();
    let r = smp_call_function(record_and_dawdle, 1, true);
    cpu::restore_flags(f);
    assert_eq!(r, Err(CallError::InterruptsOff));
}

static READ_AT: AtomicU32 = AtomicU32::new(0);
static READ_GOT: AtomicU32 = AtomicU32::new(0);

fn read_there(_: usize) {
    // SAFETY: a vmap'd word the test keeps mapped while this runs.
    let v = unsafe { core::ptr::read_volatile(READ_AT.load(Ordering::SeqCst) as *const u32) };
    READ_GOT.store(v, Ordering::SeqCst);
}

fn read_on_cpu1(va: u32) -> u32 {
    READ_AT.store(va, Ordering::SeqCst);
    READ_GOT.store(0, Ordering::SeqCst);
    smp_call_function(read_there, 0, true).expect("smp_call_function");
    READ_GOT.load(Ordering::SeqCst)
}

/// 2.4's `flush_tlb_all` after vunmap (and vfree: the same
/// `unmap_kernel_range`).  CPU 1 reads a page through a vmap, so its TLB
/// holds the translation; the page is vunmapped and another frame vmapped
/// at the same address; CPU 1 reads again.  Without the shootdown its
/// stale TLB entry still leads to the first frame (measured: remove the
/// flush_tlb_all from unmap_kernel_range and this fails with 0xaaaa0001).
fn tlb_shootdown_after_vunmap() {
    use crate::mm::addr::__va;
    use crate::mm::frame::{alloc_frame, free_frame};
    use crate::mm::vmalloc::{vmap, vunmap};
    need_two_cpus();
    let (f1, f2) = (alloc_frame().expect("frame"), alloc_frame().expect("frame"));
    // SAFETY: two frames of this test's, through the direct map.
    unsafe {
        core::ptr::write_volatile(__va(f1) as *mut u32, 0xaaaa_0001);
        core::ptr::write_volatile(__va(f2) as *mut u32, 0xbbbb_0002);
    }
    let x = vmap(&[f1]).expect("vmap").as_ptr() as u32;
    assert_eq!(
        read_on_cpu1(x),
        0xaaaa_0001,
        "CPU 1 read the first mapping wrong"
    );
    vunmap(x as *const u8).expect("vunmap");
    let y = vmap(&[f2]).expect("vmap").as_ptr() as u32;
    let got = if y == x { Some(read_on_cpu1(y)) } else { None };
    vunmap(y as *const u8).expect("vunmap");
    free_frame(f1);
    free_frame(f2);
    let Some(got) = got else {
        skip("the second vmap got another address");
    };
    crate::println!("    # CPU 1 read {:#x} at {:#x} after the remap", got, y);
    assert_eq!(
        got, 0xbbbb_0002,
        "CPU 1 read the unmapped frame through a stale TLB entry"
    );
}

static WEDGED: AtomicU32 = AtomicU32::new(0);

/// Spin for ever with interrupts off (an IPI handler, SA_INTERRUPT).
#[inline(never)]
fn wedge(_: usize) {
    WEDGED.store(1, Ordering::SeqCst);
    loop {
        core::hint::spin_loop();
    }
}

fn nothing(_: usize) {}

/// A CPU spinning with interrupts off answers no IPI (a call times out
/// and says how far it got), but takes an NMI: it reports where it was,
/// in the oops format, and goes back to its idle loop, where the next
/// call finds it.  Every other CPU is wedged (the call goes to all of
/// them), so each is stopped.
fn nmi_stops_a_wedged_cpu() {
    need_two_cpus();
    let me = apic::id() as u8;
    let others: alloc::vec::Vec<u8> = crate::arch::x86::smp::online()
        .filter(|&id| id != me)
        .collect();
    WEDGED.store(0, Ordering::SeqCst);
    smp_call_function(wedge, 0, false).expect("smp_call_function");
    assert!(
        wait_for(|| WEDGED.load(Ordering::SeqCst) != 0, 50_000_000),
        "no CPU wedged"
    );
    let r = smp_call_function(nothing, 0, true);
    assert!(
        matches!(r, Err(CallError::Timeout { started: 0, .. })),
        "a wedged CPU answered: {:?}",
        r
    );
    let stopped = crate::arch::x86::nmi::stopped_count();
    let ((), out) = crate::console::capture(|| {
        for &id in &others {
            crate::arch::x86::nmi::stop_cpu(id);
        }
        assert!(
            wait_for(
                || crate::arch::x86::nmi::stopped_count() == stopped + others.len() as u32,
                50_000_000
            ),
            "the NMIs did not stop the other CPUs"
        );
    });
    let text = out.as_str();
    crate::println!("    # {}", text.lines().next().unwrap_or(""));
    assert!(text.contains("NMI: stopping CPU 1"), "{}", text);
    assert!(
        text.contains("CPU:    1"),
        "the report names another CPU: {}",
        text
    );
    assert!(
        text.contains("EIP is at") && text.contains("wedge"),
        "no report of where it was: {}",
        text
    );
    // Back in their idle loops: they answer again.
    assert_eq!(smp_call_function(nothing, 0, true), Ok(others.len() as u32));
}

static TOUCH_VEC: AtomicU32 = AtomicU32::new(0);
static TOUCH_CR2: AtomicU32 = AtomicU32::new(0);

fn touch_under_a_recovery_point(va: usize) {
    // SAFETY: a read the test expects to fault, under this CPU's own
    // recovery point.
    let c = crate::fixup::expect_fault(|| unsafe {
        core::ptr::read_volatile(va as *const u32);
    });
    let (v, cr2) = c.map_or((0, 0), |c| (c.vector, c.cr2));
    TOUCH_VEC.store(v, Ordering::SeqCst);
    TOUCH_CR2.store(cr2, Ordering::SeqCst);
}

/// After the shootdown, CPU 1's own touch of the vunmapped page faults,
/// and the oops ends at CPU 1's own recovery point (recovery points are
/// per CPU): CPU 1 answers the next call as before.
fn touch_after_vunmap_oopses_cleanly_on_cpu1() {
    use crate::mm::frame::{alloc_frame, free_frame};
    use crate::mm::vmalloc::{vmap, vunmap};
    need_two_cpus();
    let f = alloc_frame().expect("frame");
    let x = vmap(&[f]).expect("vmap").as_ptr() as u32;
    // Into CPU 1's TLB.
    read_on_cpu1(x);
    vunmap(x as *const u8).expect("vunmap");
    TOUCH_VEC.store(0, Ordering::SeqCst);
    smp_call_function(touch_under_a_recovery_point, x as usize, true).expect("smp_call_function");
    free_frame(f);
    assert_eq!(
        (
            TOUCH_VEC.load(Ordering::SeqCst),
            TOUCH_CR2.load(Ordering::SeqCst)
        ),
        (14, x),
        "CPU 1 read a vunmapped page without a page fault"
    );
    let others = crate::arch::x86::smp::online().count() as u32 - 1;
    assert_eq!(
        smp_call_function(nothing, 0, true),
        Ok(others),
        "CPU 1 did not come back"
    );
}
