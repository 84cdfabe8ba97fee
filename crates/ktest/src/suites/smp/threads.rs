//! The scheduler on two CPUs: threads of one address space running on
//! both at once, each taking its own lazy vmalloc fault into the shared
//! directory, and `current` belonging to the CPU that asks, inside the
//! fault handler too.

use core::sync::atomic::{AtomicU32, Ordering};

use super::need_two_cpus;
use crate::suites::vmalloc::area_with_slot_missing_from;
use crate::wait_for;
use vmfault::arch::x86::cpu;
use vmfault::arch::x86::percpu::smp_processor_id;
use vmfault::fixup;
use vmfault::mm::addr::PhysAddr;
use vmfault::mm::addr::VirtAddr;
use vmfault::mm::fault;
use vmfault::mm::mm_struct::mm_alloc;
use vmfault::mm::pgtable::{is_pae, pgd_offset, pmd_offset, pmd_present};
use vmfault::mm::vmalloc::{self, vfree};
use vmfault::mm::VmallocFaultVersion as V;
use vmfault::sched::{self, current, join, run_on};

extern crate alloc;

/// What a lazy vmalloc fault does under the booted version and mode: a
/// sync into the faulting directory (`Some(true)`), an oops (`Some(false)`:
/// the seed's `cli` patch checks `pgd_present`, always true on two
/// levels, so it never syncs there), or nothing (`None`: PAE shares the
/// kernel pmds, and eager versions synced the slot when it was mapped).
fn lazy_fault_syncs() -> Option<bool> {
    if is_pae() || !fault::version().lazy_only() {
        None
    } else {
        Some(fault::version() != V::Cli)
    }
}

/// An area and a page of it that `mm` lacks the PGD slot of, where a lazy
/// fault is possible; elsewhere any page of a fresh area.
fn area_for(mm: &vmfault::mm::mm_struct::MmStruct) -> (u32, u32) {
    if lazy_fault_syncs().is_some() {
        area_with_slot_missing_from(mm)
    } else {
        let p = vmalloc::vmalloc(4 << 20).expect("vmalloc").as_ptr() as u32;
        (p, p)
    }
}

fn slot_present(pgd: u32, va: u32) -> bool {
    pmd_present(
        pmd_offset(
            pgd_offset(PhysAddr::new(pgd), VirtAddr::new(va)),
            VirtAddr::new(va),
        )
        .read(),
    )
}

/// Write `marker` to `va` from init_mm (swapper stops borrowing first, so
/// the write takes no fault of its own).
fn mark(va: u32, marker: u32) {
    sched::drop_lazy_mm();
    // SAFETY: a page of a live vmalloc area of the case.
    unsafe { core::ptr::write_volatile(va as *mut u32, marker) };
}

const MARKS: [u32; 2] = [0xc0de_0000, 0xc0de_0001];
static ARRIVED: AtomicU32 = AtomicU32::new(0);
static CPU_OF: [AtomicU32; 2] = [const { AtomicU32::new(u32::MAX) }; 2];
static PID_OF: [AtomicU32; 2] = [const { AtomicU32::new(u32::MAX) }; 2];
static CR3_OF: [AtomicU32; 2] = [const { AtomicU32::new(0) }; 2];
static ADDR_OF: [AtomicU32; 2] = [const { AtomicU32::new(0) }; 2];
static READ_OF: [AtomicU32; 2] = [const { AtomicU32::new(0) }; 2];
static OOPSED: [AtomicU32; 2] = [const { AtomicU32::new(0) }; 2];

/// Thread `i` of the shared mm: note where it runs, wait until the other
/// runs too (so the two really overlap), then read its own stale page.
fn one_of_two(i: usize) {
    CPU_OF[i].store(smp_processor_id() as u32, Ordering::SeqCst);
    PID_OF[i].store(current().pid, Ordering::SeqCst);
    CR3_OF[i].store(cpu::read_cr3_pa(), Ordering::SeqCst);
    ARRIVED.fetch_add(1, Ordering::SeqCst);
    if !wait_for(|| ARRIVED.load(Ordering::SeqCst) >= 2, 50_000_000) {
        return;
    }
    let va = ADDR_OF[i].load(Ordering::SeqCst);
    // Under this CPU's own recovery point: the `cli` version oopses here.
    let r = fixup::catch(true, || {
        // SAFETY: a live page of the case's area.
        let v = unsafe { core::ptr::read_volatile(va as *const u32) };
        READ_OF[i].store(v, Ordering::SeqCst);
    });
    OOPSED[i].store(r.is_err() as u32, Ordering::SeqCst);
}

/// Two threads of one mm, pinned to CPU 0 and CPU 1, run at the same
/// time (each waits for the other to arrive), both with the mm's
/// directory in CR3, each `current` its own; each then reads a page of
/// its own PGD slot that the mm lacks, and the two lazy faults land in
/// the one directory, counted exactly.
pub(super) fn threads_of_one_mm_run_on_both_cpus() {
    need_two_cpus();
    let mm = mm_alloc().expect("mm");
    let (pa, sa) = area_for(&mm);
    let (pb, sb) = area_for(&mm);
    assert_ne!(sa >> 22, sb >> 22, "the two pages share a PGD slot");
    for (i, va) in [sa, sb].into_iter().enumerate() {
        mark(va, MARKS[i]);
        ADDR_OF[i].store(va, Ordering::SeqCst);
        READ_OF[i].store(0, Ordering::SeqCst);
        OOPSED[i].store(0, Ordering::SeqCst);
    }
    ARRIVED.store(0, Ordering::SeqCst);
    let before = fault::faults_of_pgd((mm.pgd).as_u32());
    let t = [
        run_on(0, "mm-cpu0", one_of_two, 0, Some(mm.clone())),
        run_on(1, "mm-cpu1", one_of_two, 1, Some(mm.clone())),
    ];
    for x in &t {
        join(x);
    }
    let faults = fault::faults_of_pgd((mm.pgd).as_u32()) - before;
    vfree(pa as *const u8).expect("vfree");
    vfree(pb as *const u8).expect("vfree");
    for (i, x) in t.iter().enumerate() {
        vmfault::println!(
            "    # {} (pid {}) ran on CPU {} with CR3 {:#x}",
            x.name,
            x.pid,
            CPU_OF[i].load(Ordering::SeqCst),
            CR3_OF[i].load(Ordering::SeqCst)
        );
        assert_eq!(
            CPU_OF[i].load(Ordering::SeqCst),
            i as u32,
            "{} ran elsewhere",
            x.name
        );
        assert_eq!(
            PID_OF[i].load(Ordering::SeqCst),
            x.pid,
            "{}'s current was another task",
            x.name
        );
        assert_eq!(
            CR3_OF[i].load(Ordering::SeqCst),
            mm.pgd.as_u32(),
            "{} ran outside its mm",
            x.name
        );
    }
    assert_eq!(
        ARRIVED.load(Ordering::SeqCst),
        2,
        "the threads never overlapped"
    );
    let oopsed = [0, 1].map(|i| OOPSED[i].load(Ordering::SeqCst) != 0);
    vmfault::println!(
        "    # {} lazy faults into the shared directory, oopses {:?}",
        faults,
        oopsed
    );
    match lazy_fault_syncs() {
        Some(false) => assert_eq!(oopsed, [true, true], "cli synced on two levels"),
        expect => {
            assert_eq!(oopsed, [false, false], "a lazy fault oopsed");
            for i in 0..2 {
                assert_eq!(
                    READ_OF[i].load(Ordering::SeqCst),
                    MARKS[i],
                    "thread {} read wrong",
                    i
                );
            }
            assert_eq!(
                faults,
                if expect.is_some() { 2 } else { 0 },
                "lazy faults counted"
            );
        }
    }
}

static STOP: AtomicU32 = AtomicU32::new(0);
static SPINNING: AtomicU32 = AtomicU32::new(0);
static SEEN_BEFORE: AtomicU32 = AtomicU32::new(u32::MAX);
static SEEN_AFTER: AtomicU32 = AtomicU32::new(u32::MAX);
static GOT: AtomicU32 = AtomicU32::new(0);
static LAZY_OOPS: AtomicU32 = AtomicU32::new(0);
static REPORT: spin::Mutex<Option<alloc::string::String>> = spin::Mutex::new(None);

/// CPU 0's side: be CPU 0's `current` (in another mm) until told to stop.
fn hold_cpu0(_: usize) {
    SPINNING.store(1, Ordering::SeqCst);
    wait_for(|| STOP.load(Ordering::SeqCst) != 0, 200_000_000);
}

/// CPU 1's side, while `hold_cpu0` runs on CPU 0: a lazy vmalloc fault,
/// then a bad access whose oops report names the task that faulted.
fn fault_on_cpu1(va: usize) {
    if wait_for(|| SPINNING.load(Ordering::SeqCst) != 0, 50_000_000) {
        SEEN_BEFORE.store(current().pid, Ordering::SeqCst);
        let r = fixup::catch(true, || {
            // SAFETY: a live page of the case's area.
            GOT.store(
                unsafe { core::ptr::read_volatile(va as *const u32) },
                Ordering::SeqCst,
            );
        });
        LAZY_OOPS.store(r.is_err() as u32, Ordering::SeqCst);
        let (_, out) = vmfault::console::capture(|| {
            // SAFETY: faults on purpose, under this CPU's recovery point.
            fixup::catch(false, || unsafe {
                core::ptr::read_volatile(0x0BAD_C000 as *const u32);
            })
            .is_err()
        });
        *REPORT.lock() = Some(out);
        SEEN_AFTER.store(current().pid, Ordering::SeqCst);
    }
    STOP.store(1, Ordering::SeqCst);
}

/// While CPU 0 runs one task in one mm, CPU 1 runs another in another mm
/// and takes a fault there.  The handler's `current` is CPU 1's task:
/// 2.4.1's handler syncs `tsk->active_mm`'s directory, so with a shared
/// `current` it would fill CPU 0's mm, fault again, and oops; and the
/// oops report, made inside the #PF path, names CPU 1 and its task.
pub(super) fn current_is_per_cpu_during_a_fault() {
    need_two_cpus();
    let (mm0, mm1) = (mm_alloc().expect("mm"), mm_alloc().expect("mm"));
    let (p, stale) = area_for(&mm1);
    assert!(
        !slot_present((mm0.pgd).as_u32(), stale) || lazy_fault_syncs().is_none(),
        "CPU 0's mm has the slot already"
    );
    mark(stale, 0xfeed_0001);
    for a in [&STOP, &SPINNING, &GOT, &LAZY_OOPS] {
        a.store(0, Ordering::SeqCst);
    }
    *REPORT.lock() = None;
    let (f0, f1) = (
        fault::faults_of_pgd((mm0.pgd).as_u32()),
        fault::faults_of_pgd((mm1.pgd).as_u32()),
    );
    let t1 = run_on(
        1,
        "cpu1-faulter",
        fault_on_cpu1,
        stale as usize,
        Some(mm1.clone()),
    );
    let t0 = run_on(0, "cpu0-holder", hold_cpu0, 0, Some(mm0.clone()));
    join(&t0);
    join(&t1);
    let (d0, d1) = (
        fault::faults_of_pgd((mm0.pgd).as_u32()) - f0,
        fault::faults_of_pgd((mm1.pgd).as_u32()) - f1,
    );
    let (in0, in1) = (
        slot_present((mm0.pgd).as_u32(), stale),
        slot_present((mm1.pgd).as_u32(), stale),
    );
    vmalloc::vfree(p as *const u8).expect("vfree");
    let report = REPORT.lock().take().unwrap_or_default();
    assert_eq!(
        SEEN_BEFORE.load(Ordering::SeqCst),
        t1.pid,
        "CPU 1 never ran its side"
    );
    assert_eq!(SEEN_AFTER.load(Ordering::SeqCst), t1.pid);
    let process = alloc::format!("Process cpu1-faulter (pid: {})", t1.pid);
    assert!(
        report.contains("CPU:    1") && report.contains(&process),
        "the oops on CPU 1 names another CPU or task: {}",
        report
    );
    vmfault::println!(
        "    # faults: CPU 0's mm {}, CPU 1's mm {}; slot in CPU 0's mm {}, in CPU 1's {}",
        d0,
        d1,
        in0,
        in1
    );
    assert_eq!(d0, 0, "the fault on CPU 1 synced CPU 0's mm");
    assert!(
        !in0 || lazy_fault_syncs().is_none(),
        "CPU 0's mm got the slot"
    );
    match lazy_fault_syncs() {
        Some(false) => assert_eq!(LAZY_OOPS.load(Ordering::SeqCst), 1, "cli synced"),
        expect => {
            assert_eq!(LAZY_OOPS.load(Ordering::SeqCst), 0, "the lazy fault oopsed");
            assert_eq!(GOT.load(Ordering::SeqCst), 0xfeed_0001);
            assert_eq!(d1, expect.is_some() as u32, "faults in CPU 1's mm");
            assert!(in1, "CPU 1's mm lacks the slot after its fault");
        }
    }
}
