//! `experiment=bench`: the in-kernel half of `make bench`.  Prints
//! `BENCH|...` lines; tests/host/bench.py adds the host-side figures and
//! draws the pictures.  Under TCG, time is not hardware time: the fault
//! path is reported in instructions (single-step counts), everything else
//! as ratios of TSC readings taken in the same run.

extern crate alloc;

use alloc::vec::Vec;
use core::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

use crate::race::explorer;
use crate::step_count;
use crate::vmlist24::Vmlist24;
use vmfault::arch::x86::cpu;
use vmfault::mm::addr::PAGE_SIZE;
use vmfault::mm::mm_struct::mm_alloc;
use vmfault::mm::vm_area::{AreaAllocator, VmFlags, SMALL_MAX, SMALL_MIN};
use vmfault::mm::VmallocFaultVersion as V;
use vmfault::mm::{fault, frame, vmalloc};
use vmfault::println;

fn median(v: &mut [u64]) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

/// Item 1: instructions from the #PF entry to `iret`.
fn fault_path() {
    let bare = explorer::measure_bare_exception();
    println!("BENCH|fault|bare_exception|instructions={}", bare);
    let booted = fault::version();
    for v in V::ALL {
        vmfault::mm::fault::set_vmalloc_fault(v);
        match explorer::measure_fault_path() {
            Some((n, out, cr2)) => println!(
                "BENCH|fault|{}|instructions={}|outcome={:?}|ratio_to_bare={:.2}|cr2_read_at={}",
                v.name(),
                n,
                out,
                n as f64 / bare.max(1) as f64,
                cr2.map_or(-1, |c| c as i64)
            ),
            None => println!("BENCH|fault|{}|instructions=0|outcome=no-fault", v.name()),
        }
    }
    vmfault::mm::fault::set_vmalloc_fault(booted);
    // A first touch of a mapped page: one instruction, no exception (the
    // first page warms QEMU's translation of this code; the second counts).
    let p = vmalloc::vmalloc(2 * PAGE_SIZE).unwrap().as_ptr() as u32;
    let mut tsc = 0;
    for page in 0..2 {
        let t0 = cpu::rdtsc();
        // SAFETY: just allocated.
        unsafe { core::ptr::write_volatile((p + page * PAGE_SIZE as u32) as *mut u32, 1) };
        tsc = cpu::rdtsc() - t0;
    }
    println!("BENCH|fault|mapped_first_touch|instructions=1|tsc={}", tsc);
    let _ = vmalloc::vfree(p as *const u8);
}

/// The allocators item 2 compares, behind one face: reserve one page
/// (plus its guard page) and give it back.
trait OnePageAllocator {
    fn get(&mut self) -> u32;
    fn put(&mut self, addr: u32);
}

impl OnePageAllocator for AreaAllocator {
    fn get(&mut self) -> u32 {
        let here = core::panic::Location::caller();
        self.get_vm_area(PAGE_SIZE as u32, VmFlags::ALLOC, here)
            .expect("area")
            .addr
    }
    fn put(&mut self, addr: u32) {
        self.remove_vm_area(addr).expect("live area");
    }
}

impl OnePageAllocator for Vmlist24 {
    fn get(&mut self) -> u32 {
        self.get_vm_area(PAGE_SIZE as u32).expect("area")
    }
    fn put(&mut self, addr: u32) {
        assert!(self.remove(addr), "live area");
    }
}

/// One timed operation: vmalloc, touch and vfree of one page.
fn timed_op(a: &mut impl OnePageAllocator, frame: u32) -> u64 {
    let t0 = cpu::rdtsc();
    let va = a.get();
    one_page(va, frame);
    a.put(va);
    cpu::rdtsc() - t0
}

/// What `count_call`'s argumentless functions work on: the allocator
/// being counted, or the frame `one_page` maps.
static COUNTED: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());
static COUNTED_FRAME: AtomicU32 = AtomicU32::new(0);

fn counted_pair<A: OnePageAllocator>() {
    // SAFETY: `count_pair` stores a pointer to its `&mut A` argument
    // before calling this through `count_call` and clears it after, and
    // nothing else runs meanwhile (interrupts are off while counting).
    let a = unsafe { &mut *(COUNTED.load(Ordering::Relaxed) as *mut A) };
    let va = a.get();
    a.put(va);
}

fn counted_nothing() {
    // The same load as `counted_pair`'s, so the difference is the pair.
    core::hint::black_box(COUNTED.load(Ordering::Relaxed));
}

/// The list's own heap traffic per operation: one 12-byte `VmStruct`
/// allocated (by get) and freed (by remove), through this kernel's heap
/// (linked_list_allocator, first fit), where 2.4 had the slab.
fn counted_heap_pair() {
    drop(core::hint::black_box(alloc::boxed::Box::new([0u32; 3])));
}

fn counted_one_page() {
    let va = COUNTED.load(Ordering::Relaxed) as u32;
    one_page(va, COUNTED_FRAME.load(Ordering::Relaxed));
}

/// The address `counted_put` gives back.
static COUNTED_ADDR: AtomicU32 = AtomicU32::new(0);

fn counted_get() {
    // SAFETY: as in `counted_pair`: `switch_costs` points COUNTED at its
    // allocator around the count.
    let a = unsafe { &mut *(COUNTED.load(Ordering::Relaxed) as *mut AreaAllocator) };
    COUNTED_ADDR.store(a.get(), Ordering::Relaxed);
}

fn counted_put() {
    // SAFETY: as in `counted_get`.
    let a = unsafe { &mut *(COUNTED.load(Ordering::Relaxed) as *mut AreaAllocator) };
    a.put(COUNTED_ADDR.load(Ordering::Relaxed));
}

/// What the kernel's allocator pays to change representation, in
/// instructions: the get that takes it past `SMALL_MAX` live areas into
/// the trees, beside the get before it (the array's dearest in this
/// pattern, `SMALL_MAX` - 1 areas to scan), and the remove that takes it
/// below `SMALL_MIN` back to the array, beside the remove before it (in
/// the trees).
fn switch_costs(start: u32, end: u32) {
    let mut a = AreaAllocator::new(start, end);
    let count = |a: &mut AreaAllocator, f: fn()| {
        COUNTED.store(a as *mut AreaAllocator as *mut (), Ordering::Relaxed);
        let n = step_count::count_call(f) - step_count::count_call(counted_nothing);
        COUNTED.store(core::ptr::null_mut(), Ordering::Relaxed);
        n
    };
    let mut live = Vec::new();
    while live.len() < SMALL_MAX - 1 {
        live.push(a.get());
    }
    let plain_get = count(&mut a, counted_get);
    live.push(COUNTED_ADDR.load(Ordering::Relaxed));
    assert!(a.is_small());
    let to_trees = count(&mut a, counted_get);
    live.push(COUNTED_ADDR.load(Ordering::Relaxed));
    assert!(!a.is_small());
    while live.len() > SMALL_MIN + 1 {
        a.put(live.pop().unwrap());
    }
    COUNTED_ADDR.store(live.pop().unwrap(), Ordering::Relaxed);
    let plain_put = count(&mut a, counted_put);
    COUNTED_ADDR.store(live.pop().unwrap(), Ordering::Relaxed);
    assert!(!a.is_small());
    let to_small = count(&mut a, counted_put);
    assert!(a.is_small());
    println!(
        "BENCH|scaling_switch|instructions|small_max={}|small_min={}|get_to_max={}|get_to_trees={}|remove_to_min={}|remove_to_small={}",
        SMALL_MAX, SMALL_MIN, plain_get, to_trees, plain_put, to_small
    );
}

/// Instructions of one `get` plus its `put` on `a`, the allocator alone
/// (median of 3: the heap's state may differ between the three).
fn count_pair<A: OnePageAllocator>(a: &mut A) -> u32 {
    COUNTED.store(a as *mut A as *mut (), Ordering::Relaxed);
    let mut n: Vec<u64> = (0..3)
        .map(|_| {
            (step_count::count_call(counted_pair::<A>) - step_count::count_call(counted_nothing))
                as u64
        })
        .collect();
    COUNTED.store(core::ptr::null_mut(), Ordering::Relaxed);
    median(&mut n) as u32
}

/// One n of item 2: the three allocators, each holding n - 1 areas, and
/// each round's median TSC for each.
struct ScalingSet {
    n: usize,
    areas: AreaAllocator,
    trees: AreaAllocator,
    list: Vmlist24,
    medians: [Vec<u64>; 3],
}

/// Item 2: vmalloc + touch + vfree of one page with n live areas: the
/// kernel's area allocator, the three B-trees it was until issue 28
/// (`AreaAllocator::trees_only`, kept as the reference) and 2.4's linear first-fit
/// vmlist, in the same run.  Under TCG a TSC reading moves with the
/// host's load, so the figure is the median of `ROUNDS` rounds' medians
/// of `OPS` operations each.  Every n's allocators are built first and
/// each round visits every n, so a burst of host load lands in one round
/// of every n rather than on all rounds of one.  Within an n each
/// allocator runs its `OPS` in one block, the blocks' order rotating each
/// round: taking turns operation by operation instead made every
/// operation of one allocator follow one of another's, the kernel's
/// always the list's, whose walk of 16384 nodes left it the host's cold
/// caches (the kernel's trees then read 1.2-1.3x a copy of the
/// same trees, on equal instruction counts).  The deterministic figure is the instruction count
/// (single-stepped) of one get plus its remove, the allocator alone: the
/// page's map, touch and unmap, which every column pays the same, is
/// counted once on its own (`one_page_instructions`), and so is the heap
/// allocation and free inside the list's count (`vmlist24_heap_`).
fn scaling() {
    const OPS: usize = 200;
    const ROUNDS: usize = 5;
    let base = vmalloc::reserve_range(200 << 20).expect("range for the scaling bench");
    let (start, end) = (base, base + (200 << 20));
    let old_db = step_count::install();
    let mut sets: Vec<ScalingSet> = [16usize, SMALL_MAX, 256, 4096, 16384]
        .into_iter()
        .map(|n| {
            let mut s = ScalingSet {
                n,
                areas: AreaAllocator::new(start, end),
                trees: AreaAllocator::trees_only(start, end, end),
                list: Vmlist24::new(start, end),
                medians: Default::default(),
            };
            // n - 1 live areas of one page (plus guard), like many small
            // vmallocs; the bench's own is the n-th.
            for _ in 0..n - 1 {
                s.areas.get();
                s.trees.get();
                s.list.get();
            }
            s
        })
        .collect();
    let f = frame::alloc_frame().expect("frame");
    for round in 0..ROUNDS {
        for s in &mut sets {
            for k in 0..3 {
                let which = (k + round) % 3;
                let mut t: Vec<u64> = (0..OPS)
                    .map(|_| match which {
                        0 => timed_op(&mut s.areas, f),
                        1 => timed_op(&mut s.trees, f),
                        _ => timed_op(&mut s.list, f),
                    })
                    .collect();
                s.medians[which].push(median(&mut t));
            }
        }
    }
    for mut s in sets {
        let instructions = [
            count_pair(&mut s.areas),
            count_pair(&mut s.trees),
            count_pair(&mut s.list),
        ];
        let heap =
            step_count::count_call(counted_heap_pair) - step_count::count_call(counted_nothing);
        let va = s.areas.get();
        COUNTED.store(va as *mut (), Ordering::Relaxed);
        COUNTED_FRAME.store(f, Ordering::Relaxed);
        let page =
            step_count::count_call(counted_one_page) - step_count::count_call(counted_nothing);
        COUNTED.store(core::ptr::null_mut(), Ordering::Relaxed);
        s.areas.put(va);
        let [a, b, l] = s.medians.each_mut().map(|m| median(m));
        println!(
            "BENCH|scaling|n={}|areas_tsc={}|btree_tsc={}|vmlist24_tsc={}|areas_instructions={}|btree_instructions={}|vmlist24_instructions={}|vmlist24_heap_instructions={}|one_page_instructions={}|rounds={}|ops={}|areas_repr={}",
            s.n,
            a,
            b,
            l,
            instructions[0],
            instructions[1],
            instructions[2],
            heap,
            page,
            ROUNDS,
            OPS,
            if s.areas.is_small() { "array" } else { "trees" },
        );
    }
    frame::free_frame(f);
    switch_costs(start, end);
    step_count::uninstall(old_db);
    vmalloc::release_range(base);
    // Fresh slots for the lazy/eager bench.
    vmalloc::drop_kernel_tables(base, 200 << 20);
}

fn one_page(va: u32, f: u32) {
    vmalloc::map_kernel_page_at(va, f as u64).expect("map");
    // SAFETY: mapped just above.
    unsafe { core::ptr::write_volatile(va as *mut u32, va) };
    if let Some((_, flush)) = vmalloc::unmap_kernel_page_at(va) {
        flush.flush();
    }
}

/// Item 3: N address spaces, M new kernel PGD slots: vmalloc plus a
/// first touch of every slot from every address space, lazy (`sync`)
/// versus eager.
fn lazy_vs_eager() {
    let booted = fault::version();
    // The first configuration also pays for QEMU translating the code:
    // run it once unreported.
    for (i, n) in [1usize, 1, 8, 64, 256].into_iter().enumerate() {
        let mms: Vec<_> = (0..n).map(|_| mm_alloc().expect("mm")).collect();
        for m in [1usize, 16] {
            for v in [V::Sync, V::Eager] {
                vmfault::mm::fault::set_vmalloc_fault(v);
                let faults0 = fault::total_faults();
                let syncs0 = vmalloc::eager_syncs();
                // One page in each of M fresh slots: the cost under test is
                // the page tables and their sync, not populating 4 MiB.
                let range = vmalloc::reserve_range((m + 1) * (4 << 20)).expect("range");
                let p = (range + (4 << 20) - 1) & !((4 << 20) - 1);
                let frames: Vec<u32> = (0..m)
                    .map(|_| frame::alloc_frame().expect("frame"))
                    .collect();
                let t0 = cpu::rdtsc();
                // As the version's vmalloc maps: 2.4's page by page, or
                // 5.8's map_kernel_range_noflush, whose sync walks every
                // PMD step from the slot to VMALLOC_END.
                for (s, f) in frames.iter().enumerate() {
                    vmalloc::map_pages_at(p + s as u32 * (4 << 20), &[*f as u64]).expect("map");
                }
                let f = cpu::local_irq_save();
                for mm in &mms {
                    // SAFETY: every mm maps the kernel.
                    unsafe { vmfault::arch::x86::mmu::load_cr3((mm.pgd).as_u32()) };
                    for s in 0..m as u32 {
                        // SAFETY: vmalloc'd above.
                        unsafe { core::ptr::read_volatile((p + s * (4 << 20)) as *const u32) };
                    }
                }
                // SAFETY: back to init_mm.
                unsafe {
                    vmfault::arch::x86::mmu::load_cr3(
                        (vmfault::mm::init::swapper_pg_dir()).as_u32(),
                    )
                };
                cpu::restore_flags(f);
                let t1 = cpu::rdtsc();
                if i > 0 {
                    println!(
                    "BENCH|lazy_eager|mms={}|slots={}|version={}|tsc={}|faults={}|eager_syncs={}",
                    n,
                    m,
                    v.name(),
                    t1 - t0,
                    fault::total_faults() - faults0,
                    vmalloc::eager_syncs() - syncs0
                );
                }
                for (s, f) in frames.iter().enumerate() {
                    if let Some((_, flush)) =
                        vmalloc::unmap_kernel_page_at(p + s as u32 * (4 << 20))
                    {
                        flush.flush();
                    }
                    frame::free_frame(*f);
                }
                vmalloc::release_range(range);
                vmalloc::drop_kernel_tables(range, ((m + 1) * (4 << 20)) as u32);
            }
        }
    }
    vmfault::mm::fault::set_vmalloc_fault(booted);
}

/// Two CPUs (`make bench` boots `experiment=bench` with `-smp 2` for
/// this): an IPI round trip (CPU 0 -> CPU 1 -> CPU 0) and one
/// `smp_call_function(noop, 0, wait)`, each timed over `ROUNDS` by the
/// TSC, in host nanoseconds under round-robin TCG; then the same paths in
/// instructions, single-stepped (`step_count`): the sender's `send_ipi`,
/// and on CPU 1 the whole entry of each vector, stub to `iret`.  The
/// callers' waits are spin loops whose length is host timing, so they
/// are not counted.
fn smp_ipis() {
    use core::sync::atomic::{AtomicU32, Ordering};
    use vmfault::arch::x86::entry::TrapFrame;
    use vmfault::arch::x86::irq::{self, IrqFlags};
    use vmfault::arch::x86::smp::{online, smp_call_function};
    use vmfault::arch::x86::{apic, cpu, tsc};
    const PING: u8 = 0xF8;
    const PONG: u8 = 0xF9;
    const ROUNDS: u32 = 1000;
    static BSP: AtomicU32 = AtomicU32::new(0);
    static PONGS: AtomicU32 = AtomicU32::new(0);
    fn ping(_: &mut TrapFrame) {
        apic::send_ipi(BSP.load(Ordering::SeqCst) as u8, PONG);
    }
    fn pong(_: &mut TrapFrame) {
        PONGS.fetch_add(1, Ordering::SeqCst);
    }
    fn noop(_: usize) {}
    let me = apic::id() as u8;
    let Some(other) = online().find(|&id| id != me) else {
        println!("BENCH|smp|ipi|cpus=1");
        return;
    };
    BSP.store(me as u32, Ordering::SeqCst);
    PONGS.store(0, Ordering::SeqCst);
    irq::request_irq(PING, ping, IrqFlags::SA_INTERRUPT);
    irq::request_irq(PONG, pong, IrqFlags::SA_INTERRUPT);
    let ns = |cycles: u64| cycles * 1_000_000 / tsc::cycles_per_ms().max(1);
    let t0 = cpu::rdtsc();
    for i in 0..ROUNDS {
        apic::send_ipi(other, PING);
        while PONGS.load(Ordering::SeqCst) <= i {
            core::hint::spin_loop();
        }
    }
    let ipi = ns(cpu::rdtsc() - t0) / ROUNDS as u64;
    irq::free_irq(PING);
    irq::free_irq(PONG);
    let t0 = cpu::rdtsc();
    for _ in 0..ROUNDS {
        smp_call_function(noop, 0, true).expect("smp_call_function");
    }
    let call = ns(cpu::rdtsc() - t0) / ROUNDS as u64;
    println!(
        "BENCH|smp|ipi|cpus={}|roundtrip_ns={}|call_function_ns={}",
        online().count(),
        ipi,
        call
    );

    // Instructions.  CPU 1 arms its own DR0 from inside a call, so the
    // call that arms it is past its stub already.
    fn arm(vector: usize) {
        step_count::arm_vector(vector as u8);
    }
    fn send_one() {
        apic::send_ipi(OTHER.load(Ordering::SeqCst) as u8, PING);
    }
    fn nothing() {}
    static OTHER: AtomicU32 = AtomicU32::new(0);
    OTHER.store(other as u32, Ordering::SeqCst);
    let old = step_count::install();
    irq::request_irq(PING, |_| {}, IrqFlags::SA_INTERRUPT);
    let on_cpu1 = |vector: u8, send: &dyn Fn()| -> u32 {
        smp_call_function(arm, vector as usize, true).expect("smp_call_function");
        send();
        let t0 = cpu::rdtsc();
        loop {
            if let Some(n) = step_count::vector_count(1) {
                break n;
            }
            assert!(
                tsc::us_since(t0) < 1_000_000,
                "CPU 1 never took vector {:#x}",
                vector
            );
            core::hint::spin_loop();
        }
    };
    let fixed = on_cpu1(PING, &|| apic::send_ipi(other, PING));
    let called = on_cpu1(vmfault::arch::x86::smp::CALL_FUNCTION_VECTOR, &|| {
        smp_call_function(noop, 0, true).expect("smp_call_function");
    });
    let send = step_count::count_call(send_one) - step_count::count_call(nothing);
    irq::free_irq(PING);
    step_count::uninstall(old);
    println!(
        "BENCH|smp|instructions|send_ipi={}|fixed_vector_receive={}|call_function_receive={}",
        send, fixed, called
    );
}

pub fn run_all() {
    println!("BENCH|begin|paging={}", vmfault::mm::pgtable::mode().name());
    if vmfault::arch::x86::smp::online().count() > 1 {
        // The other sections are one-CPU figures: with two, only this.
        smp_ipis();
        println!("BENCH|end");
        return;
    }
    fault_path();
    scaling();
    lazy_vs_eager();
    println!("BENCH|explorer-start");
    if let Some(r) = explorer::explore(explorer::Variant::Thread, false, 1) {
        let us = r.run_cycles * 1000 / vmfault::arch::x86::tsc::cycles_per_ms().max(1);
        println!(
            "BENCH|explorer|runs={}|stepped={}|runs_us={}",
            r.runs, r.stepped, us
        );
    }
    println!("BENCH|explorer-end");
    println!("BENCH|end");
}
