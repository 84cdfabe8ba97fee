//! Kernel threads, `current`/`active_mm` and the CR3 switch.

extern crate alloc;

use core::sync::atomic::{AtomicU32, Ordering};
use vmfault::mm::addr::PhysAddr;

use crate::case;
use crate::Suite;
use vmfault::arch::x86::cpu;
use vmfault::fixup::{catch, CaughtKind};
use vmfault::mm::addr::__va;
use vmfault::mm::addr::VirtAddr;
use vmfault::mm::addr::PAGE_SIZE;
use vmfault::mm::frame;
use vmfault::mm::mm_struct::{init_mm, mm_alloc};
use vmfault::mm::vmalloc::{self, KernelStack};
use vmfault::mm::walk::readable;
use vmfault::sched::{self, current, join, kernel_thread, State};

pub static SUITE: Suite = Suite {
    name: "sched",
    cases: &[
        case!(overflow_position_says_where_esp_is),
        case!(thread_runs_and_is_reaped),
        case!(two_mms_10000_switches_each_sees_own_page),
        case!(kernel_thread_borrows_active_mm),
        case!(oops_in_thread_kills_only_that_thread),
        case!(thread_stack_has_guard_pages_and_is_synced_everywhere),
        case!(stack_overflow_reported_by_double_fault_task),
        case!(swapper_stack_overflow_reported),
    ],
};

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn bump(n: usize) {
    for _ in 0..n {
        COUNTER.fetch_add(1, Ordering::SeqCst);
        sched::yield_now();
    }
}

fn thread_runs_and_is_reaped() {
    let frames = vmalloc::free_frames_and_kept_tables();
    let areas = vmalloc::nr_areas();
    let tasks = sched::nr_tasks();
    COUNTER.store(0, Ordering::SeqCst);
    let t = kernel_thread("bump", bump, 10, None);
    assert_ne!(t.pid, 0);
    assert_eq!(join(&t), State::Zombie);
    assert_eq!(COUNTER.load(Ordering::SeqCst), 10);
    drop(t);
    sched::yield_now(); // reaping happens after a switch
    assert_eq!(sched::nr_tasks(), tasks);
    assert_eq!(
        vmalloc::free_frames_and_kept_tables(),
        frames,
        "the thread's stack leaked"
    );
    assert_eq!(vmalloc::nr_areas(), areas, "the stack area was not freed");
    assert_eq!(current().pid, 0);
}

const VA: u32 = 0x4000_0000;
const ROUNDS: u32 = 5000;
static SEEN_WRONG: AtomicU32 = AtomicU32::new(0);
static ROUNDS_DONE: AtomicU32 = AtomicU32::new(0);

/// Each thread reads the word at VA in its own mm, expects its marker,
/// then yields: ROUNDS times each.
fn reader(marker: usize) {
    for _ in 0..ROUNDS {
        // SAFETY: VA is mapped in this thread's mm (set up by the test).
        let v = unsafe { core::ptr::read_volatile(VA as *const u32) };
        if v != marker as u32
            || PhysAddr::new(cpu::read_cr3()) != current().mm.as_ref().unwrap().pgd
        {
            SEEN_WRONG.fetch_add(1, Ordering::SeqCst);
        }
        ROUNDS_DONE.fetch_add(1, Ordering::SeqCst);
        sched::yield_now();
    }
}

fn two_mms_10000_switches_each_sees_own_page() {
    let frames = frame::nr_free_frames();
    SEEN_WRONG.store(0, Ordering::SeqCst);
    ROUNDS_DONE.store(0, Ordering::SeqCst);
    let switches = sched::context_switches();
    {
        let (a, b) = (mm_alloc().expect("mm"), mm_alloc().expect("mm"));
        for (mm, marker) in [(&a, 0xAAAA_0001u32), (&b, 0xBBBB_0002)] {
            let f = mm.map_user_page(VA).expect("map");
            // SAFETY: fresh frame, direct-mapped.
            unsafe { core::ptr::write_volatile(__va(f) as *mut u32, marker) };
        }
        // On one CPU, so that every yield is a switch between the two.
        let ta = sched::run_here("reader-a", reader, 0xAAAA_0001, Some(a));
        let tb = sched::run_here("reader-b", reader, 0xBBBB_0002, Some(b));
        join(&ta);
        join(&tb);
    }
    sched::yield_now();
    assert_eq!(ROUNDS_DONE.load(Ordering::SeqCst), 2 * ROUNDS);
    assert_eq!(
        SEEN_WRONG.load(Ordering::SeqCst),
        0,
        "a thread saw the other mm's page"
    );
    assert!(
        sched::context_switches() - switches >= 2 * ROUNDS,
        "fewer than 10,000 switches"
    );
    // Lazy TLB, as in 2.4: swapper has no mm, so it kept the last thread's
    // mm as its active_mm (and in CR3) after switching back.
    assert_eq!(current().pid, 0);
    assert_eq!(PhysAddr::new(cpu::read_cr3_pa()), current().active_mm().pgd);
    assert_ne!(
        current().active_mm().pgd,
        init_mm().pgd,
        "swapper did not borrow"
    );
    sched::drop_lazy_mm();
    assert_eq!(PhysAddr::new(cpu::read_cr3_pa()), init_mm().pgd);
    assert_eq!(frame::nr_free_frames(), frames, "mms or stacks leaked");
}

static BORROWED: AtomicU32 = AtomicU32::new(u32::MAX);
static BORROWED_CR3: AtomicU32 = AtomicU32::new(0);

fn with_mm(_: usize) {
    sched::yield_now();
}

fn lazy(_: usize) {
    BORROWED.store(current().active_mm().id, Ordering::SeqCst);
    BORROWED_CR3.store(cpu::read_cr3_pa(), Ordering::SeqCst);
}

/// 2.4's lazy TLB: a kernel thread without an mm runs on the previous
/// task's `active_mm` and does not touch CR3.
fn kernel_thread_borrows_active_mm() {
    sched::yield_now();
    let frames = vmalloc::free_frames_and_kept_tables();
    let mm = mm_alloc().expect("mm");
    let (id, pgd) = (mm.id, mm.pgd);
    let a = sched::run_here("has-mm", with_mm, 0, Some(mm));
    let b = sched::run_here("lazy", lazy, 0, None);
    join(&a);
    join(&b);
    assert_eq!(
        BORROWED.load(Ordering::SeqCst),
        id,
        "lazy thread did not borrow prev's mm"
    );
    assert_eq!(PhysAddr::new(BORROWED_CR3.load(Ordering::SeqCst)), pgd);
    // The borrow holds a reference (2.4's `atomic_inc(&oldmm->mm_count)`
    // in `schedule`) and gives it back (`mmdrop`): once both threads are
    // reaped and swapper stops borrowing, the mm's directory is freed.
    drop((a, b));
    sched::yield_now();
    sched::drop_lazy_mm();
    assert_eq!(
        vmalloc::free_frames_and_kept_tables(),
        frames,
        "the mm the lazy thread borrowed was never released"
    );
}

fn faulting(_: usize) {
    // SAFETY: faults on purpose; the recovery point of the test case
    // catches it and this thread dies.
    unsafe { core::ptr::read_volatile(0x0BAD_B000 as *const u32) };
}

fn oops_in_thread_kills_only_that_thread() {
    let t = sched::run_here("faulty", faulting, 0, None);
    let c = vmfault::fixup::expect_fault(|| {
        join(&t);
    })
    .expect("thread fault not caught");
    assert_eq!(c.cr2, 0x0BAD_B000);
    assert_eq!(t.state(), State::Dead);
    assert_eq!(current().pid, 0, "recovery did not return to swapper");
    // swapper had yielded to the dying thread, so it sat in the queue; it
    // runs now and must not stay queued (copies would pile up per oops).
    assert!(
        !sched::is_queued(sched::current_ptr()),
        "running task left in the run queue"
    );
    // The scheduler still works.
    COUNTER.store(0, Ordering::SeqCst);
    let u = kernel_thread("bump", bump, 3, None);
    join(&u);
    assert_eq!(COUNTER.load(Ordering::SeqCst), 3);
}

fn idle(_: usize) {}

/// The stack is mapped between two unmapped guard pages, in the stack
/// zone, and its PGD entry is already in an address space made before
/// it: a stack cannot wait for a lazy vmalloc fault.
fn thread_stack_has_guard_pages_and_is_synced_everywhere() {
    let mm = mm_alloc().expect("mm");
    let t = kernel_thread("idle", idle, 0, None);
    let st = t.stack().expect("a thread has a vmalloc stack");
    assert!(vmalloc::is_stack_zone_addr(st.base), "{:#x}", st.base);
    assert_eq!(st.top - st.base, sched::KERNEL_STACK_SIZE as u32);
    let area = vmalloc::find_vm_area(st.base).expect("stack area");
    assert!(area.flags.contains(vmfault::mm::vm_area::VmFlags::STACK));
    for pgd in [init_mm().pgd, mm.pgd] {
        let mapped = |va: u32| {
            vmfault::mm::walk::translate(pgd, VirtAddr::new(va))
                .phys
                .is_some()
        };
        assert!(mapped(st.base), "stack base not mapped in pgd {:#x}", pgd);
        assert!(mapped(st.top - 4), "stack top not mapped in pgd {:#x}", pgd);
        assert!(!mapped(st.guard_below()), "guard below the stack is mapped");
        assert!(!mapped(st.top), "guard above the stack is mapped");
    }
    assert!(!readable(st.base - PAGE_SIZE as u32));
    join(&t);
    if vmfault::mm::pgtable::is_pae() {
        return; // one kernel pmd for everyone: nothing to sync
    }
    // The stack above sits in a slot every directory copied at its birth.
    // Take stacks until one needs a new page table in a slot `mm` has never
    // seen: that stack must be mapped in `mm` already, copied eagerly.
    const SLOT: u32 = 4 << 20;
    const SLOTS: usize = (vmalloc::STACK_ZONE_SIZE / SLOT) as usize;
    let slot_of = |va: u32| ((va - vmalloc::STACK_ZONE_START) / SLOT) as usize;
    let mut fresh = [false; SLOTS];
    for (i, f) in fresh.iter_mut().enumerate() {
        let va = vmalloc::STACK_ZONE_START + i as u32 * SLOT;
        *f = !vmfault::mm::walk::translate(init_mm().pgd, VirtAddr::new(va))
            .pgd
            .flags()
            .contains(vmfault::mm::pgtable::PteFlags::PRESENT);
    }
    let syncs = vmalloc::stack_syncs();
    let mut taken = alloc::vec::Vec::new();
    let mut landed = None;
    while let Some(s) = vmalloc::vmalloc_stack(sched::KERNEL_STACK_SIZE) {
        taken.push(s);
        if fresh[slot_of(s.base)] || fresh[slot_of(s.top - 1)] {
            landed = Some(s);
            break;
        }
    }
    let result = landed.map(|s| {
        let w = vmfault::mm::walk::translate(mm.pgd, VirtAddr::new(s.base));
        (
            w.phys,
            vmfault::mm::walk::translate(init_mm().pgd, VirtAddr::new(s.base)).phys,
        )
    });
    let syncs_now = vmalloc::stack_syncs();
    for s in &taken {
        vmalloc::vfree_stack(s).expect("vfree_stack");
    }
    let Some((in_mm, in_init)) = result else {
        crate::skip("every slot of the stack zone already has its page table");
    };
    assert!(in_init.is_some(), "the new stack is not mapped in init_mm");
    assert_eq!(
        in_mm, in_init,
        "the new stack's slot was not copied into an older mm"
    );
    assert!(syncs_now > syncs, "no stack-zone PGD entry was copied");
}

#[inline(never)]
fn recurse(depth: u32) -> u32 {
    let frame = core::hint::black_box([depth as u8; 512]);
    if depth == u32::MAX {
        return 0;
    }
    recurse(depth + 1).wrapping_add(core::hint::black_box(frame)[7] as u32)
}

/// Run `f` under a recovery point (full report printed), expecting the
/// double-fault task to name an overflow of `st` with `report`, and the
/// saved ESP to lie in `st`'s guard page: a report that names the guard
/// while ESP is elsewhere (a mapped guard lets it run a page lower) fails.
fn expect_overflow(report: &str, st: KernelStack, f: impl FnOnce()) -> vmfault::fixup::Caught {
    let c = catch(false, f).expect_err("the overflow was not caught");
    assert_eq!(c.kind, CaughtKind::DoubleFault, "{}", c.msg);
    assert!(c.msg.as_str().starts_with(report), "{}", c.msg);
    let guard = st.guard_below();
    assert!(
        (guard..st.base).contains(&c.esp),
        "saved esp {:08x} is not in the guard page {:08x}-{:08x}: {}",
        c.esp,
        guard,
        st.base,
        c.msg
    );
    let mut want = vmfault::fixed_buf::FixedBuf::<64>::new();
    let _ = core::fmt::Write::write_fmt(
        &mut want,
        format_args!("into the guard page at {:08x}", guard),
    );
    assert!(c.msg.as_str().ends_with(want.as_str()), "{}", c.msg);
    c
}

fn overflow(_: usize) {
    core::hint::black_box(recurse(0));
}

/// Unbounded recursion in a thread runs into the guard page; the #PF
/// cannot push its frame there, so the CPU raises a double fault, and
/// the double-fault task (its own TSS and stack) names the thread.  The
/// thread dies; the kernel and its memory carry on.
fn stack_overflow_reported_by_double_fault_task() {
    sched::yield_now();
    let frames = vmalloc::free_frames_and_kept_tables();
    let areas = vmalloc::nr_areas();
    let t = sched::run_here("overflow", overflow, 0, None);
    let st = t.stack().expect("stack");
    let c = expect_overflow("kernel stack overflow in thread overflow", st, || {
        join(&t);
    });
    let sym = vmfault::symbols::lookup(c.eip).expect("symbol for the faulting EIP");
    let mut b = vmfault::fixed_buf::FixedBuf::<200>::new();
    let _ = core::fmt::Write::write_fmt(&mut b, format_args!("{}", sym));
    // The push that hit the guard is recurse's own, or that of the memset
    // it calls to fill its frame.
    assert!(
        b.as_str().contains("recurse") || b.as_str().contains("memset"),
        "{}",
        b
    );
    assert_eq!(t.state(), State::Dead);
    assert_eq!(current().pid, 0);
    drop(t);
    sched::yield_now();
    assert_eq!(
        vmalloc::nr_areas(),
        areas,
        "the dead thread's stack was not freed"
    );
    assert_eq!(
        vmalloc::free_frames_and_kept_tables(),
        frames,
        "frames leaked"
    );
    // And threads still run.
    COUNTER.store(0, Ordering::SeqCst);
    let u = kernel_thread("bump", bump, 3, None);
    join(&u);
    assert_eq!(COUNTER.load(Ordering::SeqCst), 3);
}

/// Swapper runs on the boot stack, which has its own unmapped page below
/// it: the same overflow there is reported and the test case resumes.
fn swapper_stack_overflow_reported() {
    let (bottom, _) = vmfault::mm::init::boot_stack();
    assert!(
        !readable(bottom - PAGE_SIZE as u32),
        "no guard below the boot stack"
    );
    assert!(readable(bottom));
    let st = current().stack().expect("swapper's boot stack");
    assert_eq!(st.base, bottom);
    expect_overflow(
        "kernel stack overflow in thread swapper (pid 0)",
        st,
        || {
            core::hint::black_box(recurse(0));
        },
    );
    assert_eq!(current().pid, 0);
}

/// What a stack-overflow report says about ESP (`KernelStack::
/// overflow_position`): on the stack, in the guard page, or so many bytes
/// below it, at each edge.
fn overflow_position_says_where_esp_is() {
    use vmfault::mm::vmalloc::OverflowPosition as P;
    let k = KernelStack {
        base: 0xfe01_0000,
        top: 0xfe02_0000,
    };
    let guard = 0xfe00_f000;
    assert_eq!(k.guard_below(), guard);
    assert_eq!(k.overflow_position(k.top - 4), P::OnStack);
    assert_eq!(k.overflow_position(k.base), P::OnStack);
    assert_eq!(k.overflow_position(k.base - 1), P::InGuard { guard });
    assert_eq!(k.overflow_position(guard), P::InGuard { guard });
    assert_eq!(
        k.overflow_position(guard - 1),
        P::BelowGuard { guard, bytes: 1 }
    );
    assert_eq!(
        k.overflow_position(guard - 0x1234),
        P::BelowGuard {
            guard,
            bytes: 0x1234
        }
    );
}
