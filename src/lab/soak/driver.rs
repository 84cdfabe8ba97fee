//! The driver: one seeded operation at a time (vmalloc, vfree, touch, new
//! or dropped address space, new thread, dropped page tables, yield), and
//! the run from the first operation to the teardown.

use core::sync::atomic::Ordering;

use crate::arch::x86::cpu;
use crate::fixup;
use crate::mm::mm_struct::mm_alloc;
use crate::mm::{fault, frame, vmalloc};
use crate::println;
use crate::rand::Rng;
use crate::sched::{self};

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

    pub(super) fn op_touch(&mut self) {
        let (r, at) = (self.rng.next_u32(), self.rng.next_u32());
        let pick =
            with_shared(|s| (!s.areas.is_empty()).then(|| s.areas[r as usize % s.areas.len()]));
        if let Some(a) = pick {
            check_word(a.addr + at % a.pages * PAGE);
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
        sched::drop_lazy_mm();
    }

    pub(super) fn run(&mut self) {
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
    pub(super) fn teardown(&mut self) {
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
