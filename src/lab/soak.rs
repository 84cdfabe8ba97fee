//! The soak: a long random mix of everything the lazy PGD sync has to
//! survive at once, checked against a model as it goes.
//!
//! The driver (swapper) draws one operation at a time from a seeded
//! generator: vmalloc, vfree, a touch, a new address space, dropping one,
//! a new kernel thread (which touches areas from its own mm, so it takes
//! lazy vmalloc faults there), or a yield.  Meanwhile two timers run:
//! the PIT preempts threads at any instruction (inside `vmalloc_fault`
//! too), and the local APIC timer fires at a high rate into a 2.4-style
//! handler that runs with interrupts on and itself reads vmalloc memory,
//! so its own lazy faults nest inside whatever was interrupted.
//!
//! The model is the list of live areas (address, pages, pins) and the
//! pool of address spaces.  Every `check_every` operations the driver
//! lets the threads finish and checks the kernel against it: the area
//! tree's invariants, the set of live areas, every page's translation in
//! `swapper_pg_dir` and in every address space (equal, or not yet synced
//! where lazy sync allows it), the guard pages, and the exact free frame
//! count.  Every page carries a pattern derived from its address, read
//! back by every touch.
//!
//! Replay: the same `soak_seed=` gives the same sequence of draws (every
//! operation draws before it looks at any state), but what they meet
//! depends on where the timers land: a run with the same seed is similar,
//! not identical.

extern crate alloc;

use alloc::collections::BTreeSet;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};

use spin::Mutex;

use crate::arch::x86::entry::TrapFrame;
use crate::arch::x86::irq::{self, IrqFlags};
use crate::arch::x86::{apic, cpu};
use crate::cmdline::VmallocFaultVersion;
use crate::fixup;
use crate::mm::addr::PAGE_SIZE;
use crate::mm::mm_struct::{mm_alloc, MmStruct};
use crate::mm::pgtable::{is_pae, PteFlags};
use crate::mm::vm_area::VmFlags;
use crate::mm::{fault, frame, vmalloc, walk};
use crate::rand::Rng;
use crate::sched::{self, Task};
use crate::{print, println};

const PAGE: u32 = PAGE_SIZE as u32;
const MAX_AREAS: usize = 48;
const MAX_MMS: usize = 4;
const MAX_THREADS: usize = 4;
/// Addresses the timer handler reads; a slot is cleared, interrupts off,
/// before its area is freed.
const IRQ_SLOTS: usize = 8;

#[derive(Clone, Copy, Debug)]
pub struct SoakConfig {
    pub seed: u32,
    pub ops: u32,
    /// Model check (with the threads joined) every this many operations.
    pub check_every: u32,
    /// PIT preemption rate.
    pub preempt_hz: u32,
    /// Local APIC timer initial count for the vmalloc-touching interrupt.
    pub apic_count: u32,
    /// Print a progress line every this many operations (0: never).
    pub progress_every: u32,
}

impl SoakConfig {
    pub fn new(seed: u32, ops: u32) -> Self {
        SoakConfig {
            seed,
            ops,
            check_every: 5_000.min(ops.max(1)),
            preempt_hz: 1000,
            apic_count: 2_000,
            progress_every: 0,
        }
    }
}

/// What a soak did and found.
#[derive(Clone, Copy, Debug, Default)]
pub struct SoakReport {
    pub ops: u32,
    /// Oopses (or double faults) caught; the soak stops at the first.
    pub oopses: u32,
    pub oops_at_op: Option<u32>,
    pub vmallocs: u32,
    pub vmalloc_failures: u32,
    pub vfrees: u32,
    pub touches: u32,
    pub thread_touches: u32,
    pub irq_touches: u32,
    pub mms_created: u32,
    pub mms_dropped: u32,
    pub threads: u32,
    pub context_switches: u32,
    pub lazy_faults: u32,
    pub checks: u32,
    /// Areas an oops cut off mid-operation, freed at the end.
    pub orphans: u32,
    /// Times the empty slots' kernel page tables were freed.
    pub tables_dropped: u32,
    /// Disagreements between kernel and model (first ones are printed).
    pub model_errors: u32,
    /// Touches that read back a wrong pattern.
    pub corruptions: u32,
    /// Free frames missing at the end (kernel page tables, kept for good
    /// as in 2.4, are not counted as leaks).
    pub leaked_frames: i64,
    pub leaked_areas: i64,
}

impl SoakReport {
    pub fn clean(&self) -> bool {
        self.oopses == 0
            && self.model_errors == 0
            && self.corruptions == 0
            && self.leaked_frames == 0
            && self.leaked_areas == 0
    }
}

#[derive(Clone, Copy)]
struct Area {
    addr: u32,
    pages: u32,
    /// Threads touching the area right now: it is not freed while pinned.
    pins: u32,
}

/// What threads and the driver share, and what the clean-up after an oops
/// needs.  Kept in a static behind a lock taken with interrupts off, not
/// in the driver's own struct: a recovery point longjmps out of the
/// driver, and only memory that every change went through for sure can be
/// trusted afterwards.
struct Shared {
    areas: Vec<Area>,
    mms: Vec<Arc<MmStruct>>,
    threads: Vec<Arc<Task>>,
}

static SHARED: Mutex<Shared> = Mutex::new(Shared {
    areas: Vec::new(),
    mms: Vec::new(),
    threads: Vec::new(),
});
/// Operations done, for the same reason.
static OP: AtomicU32 = AtomicU32::new(0);
static IRQ_TARGETS: [AtomicU32; IRQ_SLOTS] = [const { AtomicU32::new(0) }; IRQ_SLOTS];
static IRQ_NEXT: AtomicU32 = AtomicU32::new(0);
static IRQ_TOUCHES: AtomicU32 = AtomicU32::new(0);
static THREAD_TOUCHES: AtomicU32 = AtomicU32::new(0);
static CORRUPTIONS: AtomicU32 = AtomicU32::new(0);
static MIX: AtomicU32 = AtomicU32::new(0);

fn with_shared<R>(f: impl FnOnce(&mut Shared) -> R) -> R {
    let flags = cpu::local_irq_save();
    let r = f(&mut SHARED.lock());
    cpu::restore_flags(flags);
    r
}

/// The word every page of a soak area starts with.
fn pattern(va: u32) -> u32 {
    va ^ MIX.load(Ordering::Relaxed)
}

fn check_word(va: u32) {
    // SAFETY: callers only pass pages of live soak areas, which are not
    // freed while pinned (threads), published (the timer) or held by the
    // driver itself.
    let v = unsafe { core::ptr::read_volatile(va as *const u32) };
    if v != pattern(va) {
        CORRUPTIONS.fetch_add(1, Ordering::SeqCst);
    }
}

/// The APIC timer handler: interrupts are on (no SA_INTERRUPT), so this
/// read may take a lazy vmalloc fault nested in whatever it interrupted,
/// and another timer tick may nest inside that fault.
fn soak_timer(_: &mut TrapFrame) {
    let i = IRQ_NEXT.fetch_add(1, Ordering::Relaxed) as usize % IRQ_SLOTS;
    let va = IRQ_TARGETS[i].load(Ordering::SeqCst);
    if va != 0 {
        check_word(va);
        IRQ_TOUCHES.fetch_add(1, Ordering::Relaxed);
    }
}

/// A worker thread: touches random live areas from its own address space
/// (or a borrowed one), pinning each while it reads, yielding now and then.
fn worker(seed: usize) {
    let mut rng = Rng::new(seed as u64);
    for _ in 0..1 + rng.below_u32(24) {
        let pick = with_shared(|s| {
            if s.areas.is_empty() {
                return None;
            }
            let i = rng.below_u32(s.areas.len() as u32) as usize;
            s.areas[i].pins += 1;
            Some(s.areas[i])
        });
        if let Some(a) = pick {
            let va = a.addr + rng.below_u32(a.pages) * PAGE;
            check_word(va);
            // SAFETY: pinned, so mapped; the second word is free for use.
            unsafe { core::ptr::write_volatile((va + 4) as *mut u32, seed as u32) };
            THREAD_TOUCHES.fetch_add(1, Ordering::Relaxed);
            with_shared(|s| {
                if let Some(x) = s.areas.iter_mut().find(|x| x.addr == a.addr) {
                    x.pins -= 1;
                }
            });
        }
        if rng.chance(30) {
            sched::yield_now();
        }
    }
}

struct Soak {
    cfg: SoakConfig,
    rng: Rng,
    report: SoakReport,
    /// Free frames + kernel page tables at the start.
    frames0: usize,
    /// Areas not ours (the start snapshot, stacks excluded).
    foreign: Vec<(u32, u32, VmFlags)>,
    mm_cost: usize,
}

fn our_areas_snapshot() -> Vec<(u32, u32, VmFlags)> {
    let mut v = Vec::new();
    vmalloc::areas_snapshot(&mut v);
    v.retain(|a| !a.2.contains(VmFlags::STACK));
    v
}

impl Soak {
    fn error(&mut self, args: core::fmt::Arguments) {
        self.report.model_errors += 1;
        if self.report.model_errors <= 5 {
            println!(
                "soak: op {}: model mismatch: {}",
                OP.load(Ordering::Relaxed),
                args
            );
        }
    }

    fn op_vmalloc(&mut self) {
        // Every draw first, whatever happens next, so that the sequence
        // of draws does not depend on timing.
        let (kind, big, medium, small) = (
            self.rng.below_u32(100),
            self.rng.below_u32(960),
            self.rng.below_u32(56),
            self.rng.below_u32(8),
        );
        let (publish, slot, at) = (
            self.rng.chance(50),
            self.rng.below_u32(IRQ_SLOTS as u32) as usize,
            self.rng.next_u32(),
        );
        if with_shared(|s| s.areas.len()) >= MAX_AREAS {
            return;
        }
        // Mostly small areas; now and then one that spans PGD slots, so
        // new kernel page tables (the lazily synced entries) keep coming.
        let pages = match kind {
            0 => 64 + big,
            1..=7 => 9 + medium,
            _ => 1 + small,
        };
        let Some(p) = vmalloc::vmalloc((pages * PAGE) as usize) else {
            self.report.vmalloc_failures += 1;
            return;
        };
        let addr = p.as_ptr() as u32;
        for i in 0..pages {
            let va = addr + i * PAGE;
            // SAFETY: fresh, mapped in init_mm; the first touch from this
            // mm may take the lazy fault, which is the point.
            unsafe { core::ptr::write_volatile(va as *mut u32, pattern(va)) };
        }
        with_shared(|s| {
            s.areas.push(Area {
                addr,
                pages,
                pins: 0,
            })
        });
        if publish {
            IRQ_TARGETS[slot].store(addr + at % pages * PAGE, Ordering::SeqCst);
        }
        self.report.vmallocs += 1;
    }

    fn op_vfree(&mut self) {
        let r = self.rng.next_u32();
        let victim = with_shared(|s| {
            let n = s.areas.len();
            (0..n)
                .map(|k| (r as usize + k) % n)
                .find(|&i| s.areas[i].pins == 0)
                .map(|i| s.areas.swap_remove(i))
        });
        let Some(a) = victim else { return };
        let flags = cpu::local_irq_save();
        for t in &IRQ_TARGETS {
            let va = t.load(Ordering::SeqCst);
            if va >= a.addr && va < a.addr + a.pages * PAGE {
                t.store(0, Ordering::SeqCst);
            }
        }
        cpu::restore_flags(flags);
        for i in 0..a.pages {
            check_word(a.addr + i * PAGE);
        }
        if let Err(e) = vmalloc::vfree(a.addr as *const u8) {
            self.error(format_args!("vfree({:#x}) refused: {:?}", a.addr, e));
        }
        self.report.vfrees += 1;
    }

    fn op_touch(&mut self) {
        let (r, at) = (self.rng.next_u32(), self.rng.next_u32());
        let pick =
            with_shared(|s| (!s.areas.is_empty()).then(|| s.areas[r as usize % s.areas.len()]));
        if let Some(a) = pick {
            check_word(a.addr + at % a.pages * PAGE);
            self.report.touches += 1;
        }
    }

    fn op_mm_alloc(&mut self) {
        if with_shared(|s| s.mms.len()) < MAX_MMS {
            match mm_alloc() {
                Some(mm) => {
                    with_shared(|s| s.mms.push(mm));
                    self.report.mms_created += 1;
                }
                None => self.report.vmalloc_failures += 1,
            }
        }
    }

    fn op_mm_drop(&mut self) {
        let r = self.rng.next_u32();
        // Threads running in it keep their own reference: the mm goes
        // when the last of them is reaped.
        let victim = with_shared(|s| {
            let n = s.mms.len();
            (n > 0).then(|| s.mms.swap_remove(r as usize % n))
        });
        if victim.is_some() {
            self.report.mms_dropped += 1;
        }
    }

    fn op_thread(&mut self) {
        let (own_mm, r, seed) = (
            self.rng.chance(80),
            self.rng.next_u32(),
            self.rng.next_u32() as usize,
        );
        let mm = with_shared(|s| {
            s.threads.retain(|t| t.state() == sched::State::Runnable);
            if s.threads.len() >= MAX_THREADS {
                return Err(());
            }
            let n = s.mms.len();
            Ok((own_mm && n > 0).then(|| s.mms[r as usize % n].clone()))
        });
        let Ok(mm) = mm else { return };
        if let Some(t) = sched::try_kernel_thread("soak", worker, seed, mm) {
            with_shared(|s| s.threads.push(t));
            self.report.threads += 1;
        }
    }

    /// Free the kernel page tables of every empty slot, in init_mm and in
    /// every directory: 2.4 never did, but without it the slots would
    /// all be synced after a while and the lazy path would go quiet.
    fn op_drop_tables(&mut self) {
        let start = vmalloc::vmalloc_start();
        vmalloc::drop_kernel_tables(start, vmalloc::STACK_ZONE_START - start);
        self.report.tables_dropped += 1;
    }

    fn step(&mut self) {
        match self.rng.below_u32(100) {
            0..=29 => self.op_vmalloc(),
            30..=54 => self.op_vfree(),
            55..=78 => self.op_touch(),
            79..=83 => self.op_mm_alloc(),
            84..=87 => self.op_mm_drop(),
            88..=93 => self.op_thread(),
            94..=95 => self.op_drop_tables(),
            _ => sched::yield_now(),
        }
    }

    /// Let every thread finish and be reaped, and stop borrowing an mm,
    /// so that frames are countable.
    fn quiesce(&mut self) {
        let threads = with_shared(|s| core::mem::take(&mut s.threads));
        for t in threads {
            sched::join(&t);
        }
        sched::yield_now();
        sched::drop_lazy_mm();
    }

    fn check(&mut self) {
        self.quiesce();
        self.report.checks += 1;
        if let Err(e) = vmalloc::check_areas() {
            self.error(format_args!("area tree: {}", e));
        }
        let areas: Vec<Area> = with_shared(|s| s.areas.clone());
        // The live areas are the model's plus the ones that were there.
        let mut got = our_areas_snapshot();
        got.retain(|a| !self.foreign.contains(a));
        let mut want: Vec<(u32, u32)> = areas
            .iter()
            .map(|a| (a.addr, (a.pages + 1) * PAGE))
            .collect();
        want.sort_unstable();
        let got: Vec<(u32, u32)> = got.iter().map(|a| (a.0, a.1)).collect();
        if got != want {
            self.error(format_args!(
                "{} live areas, the model has {}",
                got.len(),
                want.len()
            ));
        }
        // Translations: init_mm maps every page to a distinct, allocated
        // frame and leaves the guard page unmapped; every other address
        // space agrees, or (lazy two-level) has not synced the slot yet.
        let lazy_allowed = !is_pae() && fault::version() != VmallocFaultVersion::Eager;
        let reference = crate::mm::init::swapper_pg_dir();
        let mms: Vec<(u32, u32)> = with_shared(|s| s.mms.iter().map(|m| (m.pgd, m.id)).collect());
        let mut seen = BTreeSet::new();
        let mut pages = 0usize;
        for a in &areas {
            pages += a.pages as usize;
            for i in 0..=a.pages {
                let va = a.addr + i * PAGE;
                let k = walk::translate(reference, va).phys;
                if i == a.pages {
                    if k.is_some() {
                        self.error(format_args!("guard page {:#x} is mapped", va));
                    }
                    continue;
                }
                let Some(phys) = k else {
                    self.error(format_args!("{:#x} not mapped in init_mm", va));
                    continue;
                };
                if frame::is_frame_free(phys as u32) || !seen.insert(phys) {
                    self.error(format_args!(
                        "{:#x} maps a free or shared frame {:#x}",
                        va, phys
                    ));
                }
                for &(pgd, id) in &mms {
                    let w = walk::translate(pgd, va);
                    let unsynced = !w.pgd.flags().contains(PteFlags::PRESENT) && lazy_allowed;
                    if w.phys != k && !unsynced {
                        self.error(format_args!(
                            "{:#x}: mm {} maps {:?}, init_mm {:?}",
                            va, id, w.phys, k
                        ));
                    }
                }
            }
        }
        // Frames: what the model holds, exactly.
        let want = self.frames0 - pages - mms.len() * self.mm_cost;
        let now = vmalloc::free_frames_and_kept_tables();
        if now != want {
            self.error(format_args!(
                "{} free frames (+kernel tables), the model expects {}",
                now, want
            ));
        }
    }

    fn run(&mut self) {
        while OP.load(Ordering::Relaxed) < self.cfg.ops {
            self.step();
            let op = OP.fetch_add(1, Ordering::Relaxed) + 1;
            if op.is_multiple_of(self.cfg.check_every) {
                self.check();
            }
            if self.cfg.progress_every != 0 && op.is_multiple_of(self.cfg.progress_every) {
                println!(
                    "soak: {} ops, {} lazy faults, {} irq touches, {} model errors",
                    op,
                    fault::total_faults() - self.report.lazy_faults,
                    IRQ_TOUCHES.load(Ordering::Relaxed),
                    self.report.model_errors
                );
            }
        }
    }

    /// Free everything the soak holds.
    fn teardown(&mut self) {
        for t in &IRQ_TARGETS {
            t.store(0, Ordering::SeqCst);
        }
        self.quiesce();
        let areas = with_shared(|s| core::mem::take(&mut s.areas));
        for a in &areas {
            if vmalloc::vfree(a.addr as *const u8).is_err() {
                self.error(format_args!("teardown: vfree({:#x}) refused", a.addr));
            }
        }
        // Areas that are neither the model's nor there before: an oops cut
        // an operation short (a vmalloc half populated, a vfree between
        // leaving the model and the free).  Only an oops may leave them.
        let mut orphans = our_areas_snapshot();
        orphans.retain(|a| !self.foreign.contains(a));
        for (addr, _, _) in orphans {
            self.report.orphans += 1;
            if self.report.oopses == 0 {
                self.error(format_args!("area {:#x} is not in the model", addr));
            }
            let _ = vmalloc::vfree(addr as *const u8);
        }
        drop(with_shared(|s| core::mem::take(&mut s.mms)));
        self.quiesce();
    }
}

fn start_timers(cfg: &SoakConfig) {
    irq::request_irq(irq::LOCAL_TIMER_VECTOR, soak_timer, IrqFlags::empty());
    if apic::present() {
        apic::timer_periodic(irq::LOCAL_TIMER_VECTOR, cfg.apic_count);
    }
    sched::start_preemption(cfg.preempt_hz);
}

fn stop_timers() {
    if apic::present() {
        apic::timer_stop();
    }
    irq::free_irq(irq::LOCAL_TIMER_VECTOR);
    sched::stop_preemption();
}

/// Run a soak from the calling context (swapper).  An oops anywhere (in
/// the driver, a thread or the timer handler) stops it and is counted.
pub fn run(cfg: SoakConfig) -> SoakReport {
    sched::drop_lazy_mm();
    sched::yield_now();
    MIX.store(cfg.seed.rotate_left(7) ^ 0x5EED_F00D, Ordering::Relaxed);
    IRQ_TOUCHES.store(0, Ordering::Relaxed);
    THREAD_TOUCHES.store(0, Ordering::Relaxed);
    CORRUPTIONS.store(0, Ordering::Relaxed);
    // One address space's price in frames (directory, PAE pmds).
    let before = frame::nr_free_frames();
    let mm_cost = mm_alloc().map_or(0, |_mm| before - frame::nr_free_frames());
    OP.store(0, Ordering::Relaxed);
    let mut s = Soak {
        cfg,
        rng: Rng::new(cfg.seed as u64),
        report: SoakReport::default(),
        frames0: vmalloc::free_frames_and_kept_tables(),
        foreign: our_areas_snapshot(),
        mm_cost,
    };
    let areas0 = vmalloc::nr_areas();
    let faults0 = fault::total_faults();
    let switches0 = sched::context_switches();
    start_timers(&cfg);
    let caught = fixup::catch(false, || s.run());
    stop_timers();
    let op = OP.load(Ordering::Relaxed);
    s.report.ops = op;
    if let Err(c) = caught {
        s.report.oopses += 1;
        s.report.oops_at_op = Some(op);
        println!("soak: op {} (seed {:#x}): {}", op, cfg.seed, c.msg);
        // The threads still queued would touch areas from their stale
        // address spaces again, now outside any recovery point: the soak
        // is over for them too (2.4's oops would have killed just one,
        // but here their driver is gone).
        with_shared(|s| s.threads.iter().for_each(|t| sched::kill_stopped(t)));
    }
    s.report.lazy_faults = fault::total_faults() - faults0;
    s.report.context_switches = sched::context_switches() - switches0;
    s.report.irq_touches = IRQ_TOUCHES.load(Ordering::Relaxed);
    s.report.thread_touches = THREAD_TOUCHES.load(Ordering::Relaxed);
    s.report.corruptions = CORRUPTIONS.load(Ordering::Relaxed);
    if s.report.oopses == 0 {
        s.check();
    }
    s.teardown();
    s.report.leaked_areas = vmalloc::nr_areas() as i64 - areas0 as i64;
    s.report.leaked_frames = s.frames0 as i64 - vmalloc::free_frames_and_kept_tables() as i64;
    s.report
}

/// Print a report the way `make soak` reads it: human lines, then one
/// `SOAK|` line with every figure.
pub fn print_report(cfg: &SoakConfig, r: &SoakReport) {
    println!(
        "soak: seed {:#x}, {} ops: {} vmalloc ({} refused), {} vfree, {} touches, {} by threads, {} in interrupts",
        cfg.seed, r.ops, r.vmallocs, r.vmalloc_failures, r.vfrees, r.touches, r.thread_touches, r.irq_touches
    );
    println!(
        "soak: {} mms created, {} dropped, {} threads, {} context switches, {} lazy vmalloc faults, {} page-table drops, {} model checks",
        r.mms_created, r.mms_dropped, r.threads, r.context_switches, r.lazy_faults, r.tables_dropped, r.checks
    );
    println!(
        "soak: {} oopses, {} model errors, {} corrupted reads, {} leaked frames, {} leaked areas ({} cut off by the oops, freed)",
        r.oopses, r.model_errors, r.corruptions, r.leaked_frames, r.leaked_areas, r.orphans
    );
    print!(
        "SOAK|{}|{}|seed={:#x}|ops={}|oopses={}|model_errors={}|corruptions={}",
        if is_pae() { "pae" } else { "2level" },
        fault::version().name(),
        cfg.seed,
        r.ops,
        r.oopses,
        r.model_errors,
        r.corruptions
    );
    println!(
        "|leaked_frames={}|leaked_areas={}|lazy_faults={}|irq_touches={}|thread_touches={}|switches={}|checks={}|oops_at={}",
        r.leaked_frames,
        r.leaked_areas,
        r.lazy_faults,
        r.irq_touches,
        r.thread_touches,
        r.context_switches,
        r.checks,
        r.oops_at_op.map_or(-1, |op| op as i64)
    );
}
