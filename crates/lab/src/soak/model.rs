//! The soak's model: the live areas it made (address, pages, pins) and
//! the address spaces it holds, the pattern every page carries, and the
//! check of the kernel against the model that runs every `check_every`
//! operations.

use alloc::collections::BTreeSet;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};

use vmfault::arch::x86::percpu::smp_processor_id;
use vmfault::arch::x86::spinlock::SpinLock;
use vmfault::mm::mm_struct::{mm_alloc, MmStruct};
use vmfault::mm::pgtable::{is_pae, PteFlags};
use vmfault::mm::vm_area::VmFlags;
use vmfault::mm::{fault, frame, vmalloc, walk};
use vmfault::rand::Rng;
use vmfault::sched::Task;

use super::*;
use vmfault::mm::addr::PhysAddr;
use vmfault::mm::addr::VirtAddr;

#[derive(Clone, Copy)]
pub(super) struct Area {
    pub(super) addr: u32,
    pub(super) pages: u32,
    /// Threads touching the area right now: it is not freed while pinned.
    pub(super) pins: u32,
    /// The CPU that made it (a touch from another CPU is a cross-CPU one).
    pub(super) cpu: u32,
}

/// What threads and the driver share, and what the clean-up after an oops
/// needs.  Kept in a static behind a lock taken with interrupts off, not
/// in the driver's own struct: a recovery point longjmps out of the
/// driver, and only memory that every change went through for sure can be
/// trusted afterwards.
pub(super) struct Shared {
    pub(super) areas: Vec<Area>,
    pub(super) mms: Vec<Arc<MmStruct>>,
    pub(super) threads: Vec<Arc<Task>>,
}

pub(super) static SHARED: SpinLock<Shared> = SpinLock::new(Shared {
    areas: Vec::new(),
    mms: Vec::new(),
    threads: Vec::new(),
});
/// Operations done, for the same reason.
pub(super) static OP: AtomicU32 = AtomicU32::new(0);
pub(super) static IRQ_TARGETS: [AtomicU32; IRQ_SLOTS] = [const { AtomicU32::new(0) }; IRQ_SLOTS];
/// The CPU that made the area each slot points into.
pub(super) static IRQ_OWNER: [AtomicU32; IRQ_SLOTS] = [const { AtomicU32::new(0) }; IRQ_SLOTS];
/// Timer handlers reading through each slot right now, per CPU: a vfree
/// waits for none to hold the slot's old address.  Per CPU so that an
/// oops in a handler (which never counts itself out) can be forgotten by
/// the CPU it happened on (`forget_readers`).
pub(super) static IRQ_READERS: [[AtomicU32; IRQ_SLOTS]; 2] =
    [const { [const { AtomicU32::new(0) }; IRQ_SLOTS] }; 2];
pub(super) static IRQ_NEXT: AtomicU32 = AtomicU32::new(0);
pub(super) static IRQ_TOUCHES: AtomicU32 = AtomicU32::new(0);
pub(super) static THREAD_TOUCHES: AtomicU32 = AtomicU32::new(0);
pub(super) static CORRUPTIONS: AtomicU32 = AtomicU32::new(0);
/// Touches of an area made on another CPU.
pub(super) static CROSS_CPU: AtomicU32 = AtomicU32::new(0);
pub(super) static MIX: AtomicU32 = AtomicU32::new(0);
/// `fixup::recoveries()` when the soak started: once it moves, an oops
/// ended the run, and the timer handlers stop reading (a failing read
/// would fault again at every tick, also in the instant after the
/// recovery, before the timer is stopped).
pub(super) static RECOVERIES0: AtomicU32 = AtomicU32::new(0);

pub(super) fn with_shared<R>(f: impl FnOnce(&mut Shared) -> R) -> R {
    f(&mut SHARED.lock_irqsave())
}

/// The word every page of a soak area starts with.
pub(super) fn pattern(va: u32) -> u32 {
    va ^ MIX.load(Ordering::Relaxed)
}

/// Read the word at `va` of an area CPU `owner` made, and check it.
pub(super) fn check_word(va: u32, owner: u32) {
    // SAFETY: callers only pass pages of live soak areas, which are not
    // freed while pinned (threads, drivers), published (the timer) or
    // held by the driver itself.
    let v = unsafe { core::ptr::read_volatile(va as *const u32) };
    if v != pattern(va) {
        CORRUPTIONS.fetch_add(1, Ordering::SeqCst);
    }
    if owner != smp_processor_id() as u32 {
        CROSS_CPU.fetch_add(1, Ordering::Relaxed);
    }
}

/// Pin a random live area (so that no driver frees it), or `None`.
pub(super) fn pin_random(r: u32) -> Option<Area> {
    with_shared(|s| {
        if s.areas.is_empty() {
            return None;
        }
        let i = r as usize % s.areas.len();
        s.areas[i].pins += 1;
        Some(s.areas[i])
    })
}

pub(super) fn unpin(a: &Area) {
    with_shared(|s| {
        if let Some(x) = s.areas.iter_mut().find(|x| x.addr == a.addr) {
            x.pins -= 1;
        }
    });
}

pub(super) struct Soak {
    pub(super) cfg: SoakConfig,
    pub(super) rng: Rng,
    pub(super) report: SoakReport,
    /// Free frames + kernel page tables at the start.
    pub(super) frames0: usize,
    /// Areas not ours (the start snapshot, stacks excluded).
    pub(super) foreign: Vec<(u32, u32, VmFlags)>,
    pub(super) mm_cost: usize,
}

impl Soak {
    /// A driver with its generator, and the figures the checks compare
    /// against, measured now.
    pub(super) fn new(cfg: SoakConfig, rng: Rng) -> Self {
        // One address space's price in frames (directory, PAE pmds).
        let before = frame::nr_free_frames();
        let mm_cost = mm_alloc().map_or(0, |_mm| before - frame::nr_free_frames());
        Soak {
            cfg,
            rng,
            report: SoakReport::default(),
            frames0: vmalloc::free_frames_and_kept_tables(),
            foreign: our_areas_snapshot(),
            mm_cost,
        }
    }
}

pub(super) fn our_areas_snapshot() -> Vec<(u32, u32, VmFlags)> {
    let mut v = Vec::new();
    vmalloc::areas_snapshot(&mut v);
    v.retain(|a| !a.2.contains(VmFlags::STACK));
    v
}

impl Soak {
    pub(super) fn check(&mut self) {
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
        let lazy_allowed = !is_pae() && fault::version().lazy_only();
        let reference = vmfault::mm::init::swapper_pg_dir();
        let mms: Vec<(vmfault::mm::addr::PhysAddr, u32)> =
            with_shared(|s| s.mms.iter().map(|m| (m.pgd, m.id)).collect());
        let mut seen = BTreeSet::new();
        let mut pages = 0usize;
        for a in &areas {
            pages += a.pages as usize;
            for i in 0..=a.pages {
                let va = a.addr + i * PAGE;
                let k = walk::translate(reference, VirtAddr::new(va)).phys;
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
                    let w = walk::translate(PhysAddr::new((pgd).as_u32()), VirtAddr::new(va));
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
            // What else holds frames now: the tasks alive (swapper, the
            // idle tasks, the second driver, unreaped threads) and the
            // kernel page tables counted, for whoever chases it.
            self.error(format_args!(
                "{} free frames (+kernel tables), the model expects {} ({} tasks, {} kernel page tables, {} mms in the model)",
                now,
                want,
                vmfault::sched::nr_tasks(),
                vmalloc::kernel_pgtable_pages(),
                mms.len()
            ));
        }
    }
}
