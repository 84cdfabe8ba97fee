//! The driver: one seeded operation at a time (vmalloc, vfree, touch, new
//! or dropped address space, new thread, dropped page tables, yield), and
//! the run from the first operation to the teardown.

use core::sync::atomic::Ordering;

use vmfault::arch::x86::percpu::smp_processor_id;
use vmfault::fixup;
use vmfault::mm::mm_struct::mm_alloc;
use vmfault::mm::{fault, vmalloc};
use vmfault::println;
use vmfault::rand::Rng;
use vmfault::sched::{self};

use super::*;

impl Soak {
    pub(super) fn error(&mut self, args: core::fmt::Arguments) {
        self.report.model_errors += 1;
        if self.report.model_errors <= 5 {
            println!(
                "soak: op {}: model mismatch: {}",
                OP.load(Ordering::Relaxed),
                args
            );
        }
    }

    pub(super) fn op_vmalloc(&mut self) {
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
        let me = smp_processor_id() as u32;
        // Published before it enters the model: once there, the other
        // CPU's driver may pick it to free, and its unpublish must find
        // the address.
        if publish {
            // The owner first: a handler that sees the address sees it.
            IRQ_OWNER[slot].store(me, Ordering::SeqCst);
            IRQ_TARGETS[slot].store(addr + at % pages * PAGE, Ordering::SeqCst);
        }
        with_shared(|s| {
            s.areas.push(Area {
                addr,
                pages,
                pins: 0,
                cpu: me,
            })
        });
        self.report.vmallocs += 1;
    }

    pub(super) fn op_vfree(&mut self) {
        let r = self.rng.next_u32();
        let victim = with_shared(|s| {
            let n = s.areas.len();
            (0..n)
                .map(|k| (r as usize + k) % n)
                .find(|&i| s.areas[i].pins == 0)
                .map(|i| s.areas.swap_remove(i))
        });
        let Some(a) = victim else { return };
        unpublish(a.addr, a.addr + a.pages * PAGE);
        for i in 0..a.pages {
            check_word(a.addr + i * PAGE, a.cpu);
        }
        if let Err(e) = vmalloc::vfree(a.addr as *const u8) {
            self.error(format_args!("vfree({:#x}) refused: {:?}", a.addr, e));
        }
        self.report.vfrees += 1;
    }

    pub(super) fn op_touch(&mut self) {
        let (r, at) = (self.rng.next_u32(), self.rng.next_u32());
        // Pinned: the other CPU's driver may be about to free it.
        if let Some(a) = pin_random(r) {
            check_word(a.addr + at % a.pages * PAGE, a.cpu);
            unpin(&a);
            self.report.touches += 1;
        }
    }

    pub(super) fn op_mm_alloc(&mut self) {
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

    pub(super) fn op_mm_drop(&mut self) {
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

    pub(super) fn op_thread(&mut self) {
        let (own_mm, r, seed) = (
            self.rng.chance(80),
            self.rng.next_u32(),
            self.rng.next_u32() as usize,
        );
        let mm = with_shared(|s| {
            // A finished thread leaves the list only once it is off its
            // CPU: until then its stack is in use, and the model check's
            // `quiesce` must still wait for it (on two CPUs it may be
            // finishing its last switch on the other one).
            s.threads
                .retain(|t| t.state() == sched::State::Runnable || t.on_cpu().is_some());
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
    pub(super) fn op_drop_tables(&mut self) {
        let start = vmalloc::vmalloc_start();
        vmalloc::drop_kernel_tables(start, vmalloc::STACK_ZONE_START - start);
        self.report.tables_dropped += 1;
    }

    pub(super) fn step(&mut self) {
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
    pub(super) fn quiesce(&mut self) {
        let threads = with_shared(|s| core::mem::take(&mut s.threads));
        for t in threads {
            sched::join(&t);
        }
        sched::yield_now();
        sched::reap_all();
        sched::drop_lazy_mm();
    }

    /// CPU 0's operations (the whole budget when CPU 1 has no driver),
    /// with the model check every `check_every` operations of both.
    pub(super) fn run(&mut self) {
        let mut next_progress = self.cfg.progress_every;
        second::NEXT_CHECK.store(self.cfg.check_every, Ordering::SeqCst);
        while !second::STOP.load(Ordering::SeqCst) {
            match second::claim_op(self.cfg.ops) {
                second::Claim::Done => break,
                // No operation passes a check: both drivers stop at it,
                // and this one makes it, the other parked.
                second::Claim::CheckDue => {
                    second::park();
                    self.check();
                    second::NEXT_CHECK.fetch_add(self.cfg.check_every, Ordering::SeqCst);
                    second::unpark();
                    continue;
                }
                second::Claim::Claimed => self.step(),
            }
            let op = OP.load(Ordering::SeqCst);
            if self.cfg.progress_every != 0 && op >= next_progress {
                next_progress = op + self.cfg.progress_every;
                println!(
                    "soak: {} ops, {} lazy faults, {} irq touches, {} cross-CPU touches, {} model errors",
                    op,
                    fault::total_faults() - self.report.lazy_faults,
                    IRQ_TOUCHES.load(Ordering::Relaxed),
                    CROSS_CPU.load(Ordering::Relaxed),
                    self.report.model_errors
                );
            }
        }
    }

    /// Free everything the soak holds.
    pub(super) fn teardown(&mut self) {
        unpublish(0, u32::MAX);
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
            if !second::OOPSED.load(Ordering::SeqCst) {
                self.error(format_args!("area {:#x} is not in the model", addr));
            }
            let _ = vmalloc::vfree(addr as *const u8);
        }
        drop(with_shared(|s| core::mem::take(&mut s.mms)));
        self.quiesce();
    }
}

/// Run a soak from the calling context (swapper), with a second driver on
/// CPU 1 when `cfg.cpus` is 2 and CPU 1 is online.  An oops anywhere (in
/// a driver, a thread or a timer handler) stops it and is counted.
pub fn run(cfg: SoakConfig) -> SoakReport {
    sched::drop_lazy_mm();
    sched::yield_now();
    MIX.store(cfg.seed.rotate_left(7) ^ 0x5EED_F00D, Ordering::Relaxed);
    for c in [&IRQ_TOUCHES, &THREAD_TOUCHES, &CORRUPTIONS, &CROSS_CPU] {
        c.store(0, Ordering::Relaxed);
    }
    OP.store(0, Ordering::Relaxed);
    RECOVERIES0.store(fixup::recoveries(), Ordering::SeqCst);
    // Parked until the timers run; its stack and mm predate the count.
    let second = second::start(&cfg);
    let mut s = Soak::new(cfg, Rng::new(cfg.seed as u64));
    let areas0 = vmalloc::nr_areas();
    let faults0 = fault::total_faults();
    let switches0 = sched::context_switches();
    start_timers(&cfg);
    second::unpark();
    let caught = fixup::catch(false, || s.run());
    if let Err(c) = &caught {
        s.count_oops(c, 0);
        // The threads still queued would touch areas from their stale
        // address spaces again, now outside any recovery point: the soak
        // is over for them too (2.4's oops would have killed just one,
        // but here their driver is gone).
        with_shared(|s| s.threads.iter().for_each(|t| sched::kill_stopped(t)));
    }
    second::stop();
    stop_timers();
    s.report.ops = OP.load(Ordering::Relaxed).min(cfg.ops);
    s.report.lazy_faults = fault::total_faults() - faults0;
    s.report.context_switches = sched::context_switches() - switches0;
    s.report.irq_touches = IRQ_TOUCHES.load(Ordering::Relaxed);
    s.report.thread_touches = THREAD_TOUCHES.load(Ordering::Relaxed);
    s.report.corruptions = CORRUPTIONS.load(Ordering::Relaxed);
    s.report.cross_cpu_touches = CROSS_CPU.load(Ordering::Relaxed);
    s.report.cpus = 1 + second.is_some() as u32;
    if !second::OOPSED.load(Ordering::SeqCst) {
        s.check();
    }
    s.teardown();
    s.report.leaked_areas = vmalloc::nr_areas() as i64 - areas0 as i64;
    s.report.leaked_frames = s.frames0 as i64 - vmalloc::free_frames_and_kept_tables() as i64;
    if let Some(r1) = second::finish(second) {
        s.report.merge(&r1);
    }
    s.report
}
