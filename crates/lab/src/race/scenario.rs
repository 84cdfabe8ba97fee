//! A victim address space with stale kernel PGD slots, and the targets
//! the outer touch and the nested test interrupts write to.

extern crate alloc;

use alloc::sync::Arc;

use vmfault::mm::addr::VirtAddr;
use vmfault::mm::addr::PAGE_SIZE;
use vmfault::mm::mm_struct::{mm_alloc, MmStruct};
use vmfault::mm::pgtable::{mode, pgd_offset, pmd_clear, pmd_offset, pmd_present, PagingMode};
use vmfault::mm::vmalloc::{vfree, vmalloc};

pub struct Scenario {
    pub mm: Arc<MmStruct>,
    /// A second address space, also made before the area: CPU B's
    /// process in the two-CPU explorer's "two processes" runs.
    pub mm_b: Arc<MmStruct>,
    area: u32,
    /// Outer touch (slot S1).
    pub x: u32,
    /// Nested interrupt's touch: another page of slot S1 (race 2).
    pub y: u32,
    /// Depth-2 runs: the first nested interrupt's touch, slot S2.
    pub z: u32,
    /// Depth-2 runs: the second nested interrupt's touch, slot S3.
    pub w: u32,
    /// Three nested levels: the third interrupt's touch, slot S4, in a
    /// second area (`add_fourth_slot`; 0 without one).
    pub v: u32,
    area4: u32,
}

/// Bytes vmalloc'd: enough to own three whole 4 MiB slots.
const AREA: usize = 16 << 20;
/// The fourth slot's area (three nested levels): one whole slot.
const AREA4: usize = 8 << 20;

impl Scenario {
    /// Frames one scenario takes: the area's pages, a page table for each
    /// of the up to five 4 MiB slots it overlaps, the victim mm's
    /// directory (PAE: PDPT and PMD pages), with slack for the threads
    /// that run in it.
    pub const FRAMES: usize = AREA / PAGE_SIZE + 16;
    /// What `add_fourth_slot` takes on top: its area and two page tables.
    pub const FOURTH_SLOT_FRAMES: usize = AREA4 / PAGE_SIZE + 2;

    /// How many scenarios the free frames have room for right now.  A
    /// 32 MiB machine has room for one: the tests size themselves by it
    /// rather than fail on a vmalloc that cannot succeed.
    pub fn room_for() -> usize {
        vmfault::mm::frame::nr_free_frames() / Self::FRAMES
    }

    /// The mm is created first, then the area: its slots are in init_mm
    /// only (two-level, lazy versions).
    pub fn new() -> Option<Scenario> {
        let mm = mm_alloc()?;
        let mm_b = mm_alloc()?;
        let area = vmalloc(AREA)?.as_ptr() as u32;
        let s1 = (area + (4 << 20) - 1) & !((4 << 20) - 1);
        let s2 = s1 + (4 << 20);
        let s3 = s2 + (4 << 20);
        let sc = Scenario {
            mm,
            mm_b,
            area,
            x: s1 + 0x1000,
            y: s1 + 0x2000 + PAGE_SIZE as u32,
            z: s2 + 0x3000,
            w: s3 + 0x4000,
            v: 0,
            area4: 0,
        };
        // Earlier experiments may have left kernel page tables in these
        // slots, which mm_alloc then copied.  Under the lazy versions,
        // clearing the copies recreates exactly the state of an mm created
        // before those page tables (restale is a no-op under eager).
        sc.restale();
        Some(sc)
    }

    /// A fourth stale slot for three nested levels: a second area, made
    /// after the mms as the first was, big enough to own a whole slot.
    pub fn add_fourth_slot(&mut self) -> bool {
        let Some(a) = vmalloc(AREA4) else {
            return false;
        };
        let a = a.as_ptr() as u32;
        let s4 = (a + (4 << 20) - 1) & !((4 << 20) - 1);
        self.area4 = a;
        self.v = s4 + 0x5000;
        self.restale();
        true
    }

    fn slot_present(&self, a: u32) -> bool {
        pmd_present(pmd_offset(pgd_offset(self.mm.pgd, VirtAddr::new(a)), VirtAddr::new(a)).read())
    }

    /// Are the targets' slots missing from the victim mm (as they must be
    /// before each run for the experiment to mean anything)?
    pub fn stale(&self) -> bool {
        !self.slot_present(self.x) && !self.slot_present(self.z) && !self.slot_present(self.w)
    }

    /// Is the outer touch's slot missing from CPU B's process too?
    pub fn stale_for_b(&self) -> bool {
        !pmd_present(
            pmd_offset(
                pgd_offset(self.mm_b.pgd, VirtAddr::new(self.x)),
                VirtAddr::new(self.x),
            )
            .read(),
        )
    }

    /// Undo what a run's vmalloc faults copied, so the next run starts
    /// from the same stale state.  Only meaningful in two-level mode: in
    /// PAE the kernel PMD is shared and nothing is ever stale.
    pub fn restale(&self) {
        // Under eager the entries were copied at vmalloc time; clearing
        // them would fake a state that version cannot reach.
        let lazy = vmfault::mm::fault::version().lazy_only();
        if lazy && mode() == PagingMode::TwoLevel {
            for pgd in [self.mm.pgd, self.mm_b.pgd] {
                for a in [self.x, self.z, self.w, self.v] {
                    if a != 0 {
                        // Between runs neither mm is loaded on a CPU
                        // (`drop_lazy_mm`); the CR3 load into it flushes.
                        pmd_clear(pmd_offset(
                            pgd_offset(pgd, VirtAddr::new(a)),
                            VirtAddr::new(a),
                        ))
                        .ignore();
                    }
                }
            }
        }
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        let _ = vfree(self.area as *const u8);
        // Leave no kernel page tables behind in these slots, so later
        // experiments and tests meet fresh slots again.
        vmfault::mm::vmalloc::drop_kernel_tables(self.area, AREA as u32);
        if self.area4 != 0 {
            let _ = vfree(self.area4 as *const u8);
            vmfault::mm::vmalloc::drop_kernel_tables(self.area4, AREA4 as u32);
        }
    }
}
