//! IPIs between the CPUs: a fixed-vector round trip, 2.4's
//! `smp_call_function` (waits, refuses with interrupts off), and the NMI
//! that stops a wedged CPU.

use core::sync::atomic::{AtomicU32, Ordering};

use super::need_two_cpus;
use crate::wait_for;
use vmfault::arch::x86::entry::TrapFrame;
use vmfault::arch::x86::irq::{self, IrqFlags};
use vmfault::arch::x86::smp::{smp_call_function, CallError};
use vmfault::arch::x86::{apic, cpu};

const PING: u8 = 0xF6;
const PONG: u8 = 0xF7;
static PING_ON: AtomicU32 = AtomicU32::new(u32::MAX);
static PONGS: AtomicU32 = AtomicU32::new(0);
static BSP_APIC: AtomicU32 = AtomicU32::new(0);

fn ping(_: &mut TrapFrame) {
    PING_ON.store(
        vmfault::arch::x86::percpu::smp_processor_id() as u32,
        Ordering::SeqCst,
    );
    apic::send_ipi(BSP_APIC.load(Ordering::SeqCst) as u8, PONG);
}

fn pong(_: &mut TrapFrame) {
    PONGS.fetch_add(1, Ordering::SeqCst);
}

/// A fixed-vector IPI to the other CPU, whose handler answers with one
/// back: both ran, on the CPUs they were sent to.
pub(super) fn ipi_roundtrip() {
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
    RAN_ON[vmfault::arch::x86::percpu::smp_processor_id()].store(tag as u32, Ordering::SeqCst);
    // Long enough that a caller not waiting would return first.
    vmfault::arch::x86::tsc::udelay(2_000);
    SLOW_DONE.store(tag as u32, Ordering::SeqCst);
}

/// `smp_call_function(f, info, 1)` runs `f(info)` on every other CPU and
/// returns only after each finished it; the caller's CPU does not run it.
pub(super) fn call_function_waits() {
    need_two_cpus();
    for r in &RAN_ON {
        r.store(0, Ordering::SeqCst);
    }
    SLOW_DONE.store(0, Ordering::SeqCst);
    let n = smp_call_function(record_and_dawdle, 0x5eed, true).expect("smp_call_function");
    assert_eq!(n as usize, vmfault::arch::x86::smp::online().count() - 1);
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
        .take(vmfault::arch::x86::smp::online().count())
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
pub(super) fn call_function_refused_with_interrupts_off() {
    let f = cpu::local_irq_save();
    let r = smp_call_function(record_and_dawdle, 1, true);
    cpu::restore_flags(f);
    assert_eq!(r, Err(CallError::InterruptsOff));
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

pub(super) fn nothing(_: usize) {}

/// A CPU spinning with interrupts off answers no IPI (a call times out
/// and says how far it got), but takes an NMI: it reports where it was,
/// in the oops format, and goes back to its idle loop, where the next
/// call finds it.  Every other CPU is wedged (the call goes to all of
/// them), so each is stopped.
pub(super) fn nmi_stops_a_wedged_cpu() {
    need_two_cpus();
    let me = apic::id() as u8;
    let others: alloc::vec::Vec<u8> = vmfault::arch::x86::smp::online()
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
    let stopped = vmfault::arch::x86::nmi::stopped_count();
    let ((), out) = vmfault::console::capture(|| {
        for &id in &others {
            vmfault::arch::x86::nmi::stop_cpu(id);
        }
        assert!(
            wait_for(
                || vmfault::arch::x86::nmi::stopped_count() == stopped + others.len() as u32,
                50_000_000
            ),
            "the NMIs did not stop the other CPUs"
        );
    });
    let text = out.as_str();
    vmfault::println!("    # {}", text.lines().next().unwrap_or(""));
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
