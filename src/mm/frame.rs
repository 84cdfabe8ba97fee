//! The physical frame allocator: a bitmap over low memory, fed by the
//! multiboot2 memory map.  Only RAM the direct map can reach (below
//! `MAXMEM`, 896 MiB) is managed; more is reported and ignored, as a 2.4
//! kernel without HIGHMEM does.  Running out is a normal `None`.

use spin::Mutex;

use super::addr::{MAXMEM, PAGE_SIZE};
use crate::arch::x86::cpu;

const MAX_FRAMES: usize = (MAXMEM as usize) / PAGE_SIZE;
const WORDS: usize = MAX_FRAMES / 32;

/// A bitmap allocator over frames `0..limit` (bit set = free).  Generic
/// over its storage so tests can build small ones from synthetic maps.
pub struct FrameAllocator<'a> {
    bits: &'a mut [u32],
    limit: usize,
    free: usize,
    hint: usize,
}

/// What `add_areas` made of a memory map.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MapStats {
    pub usable_frames: usize,
    /// Usable bytes above the limit, ignored.
    pub ignored_bytes: u64,
}

impl<'a> FrameAllocator<'a> {
    /// An allocator with no free frames, managing `0..limit_bytes`.
    pub fn new(bits: &'a mut [u32], limit_bytes: u64) -> Self {
        let limit = ((limit_bytes as usize) / PAGE_SIZE).min(bits.len() * 32);
        bits.iter_mut().for_each(|w| *w = 0);
        FrameAllocator {
            bits,
            limit,
            free: 0,
            hint: 0,
        }
    }

    /// Frame number of physical address `addr`, rounded down or up,
    /// clamped to `limit`.  Clamped in 64 bits, before the cast: an area
    /// above 16 TiB has a frame number past 2^32, which `as usize` would
    /// wrap into low memory on i386.
    fn pfn(&self, addr: u64, round_up: bool) -> usize {
        let pfn = if round_up {
            addr.div_ceil(PAGE_SIZE as u64)
        } else {
            addr / PAGE_SIZE as u64
        };
        pfn.min(self.limit as u64) as usize
    }

    /// Mark the whole frames inside each usable `(start, end)` free.
    pub fn add_areas(&mut self, usable: impl Iterator<Item = (u64, u64)>) -> MapStats {
        let mut s = MapStats::default();
        let limit_bytes = (self.limit * PAGE_SIZE) as u64;
        for (start, end) in usable {
            if end > limit_bytes {
                // Saturating: the loader's areas may overlap.
                s.ignored_bytes = s.ignored_bytes.saturating_add(end - start.max(limit_bytes));
            }
            let first = self.pfn(start, true);
            let last = self.pfn(end, false);
            for pfn in first..last.max(first) {
                if !self.is_free(pfn) {
                    self.set(pfn, true);
                    s.usable_frames += 1;
                }
            }
        }
        s
    }

    /// Take `[start, end)` out of the pool (kernel image, boot info...).
    pub fn reserve(&mut self, start: u64, end: u64) {
        let first = self.pfn(start, false);
        let last = self.pfn(end, true);
        for pfn in first..last.max(first) {
            if self.is_free(pfn) {
                self.set(pfn, false);
            }
        }
    }

    fn is_free(&self, pfn: usize) -> bool {
        pfn < self.limit && self.bits[pfn / 32] & (1 << (pfn % 32)) != 0
    }

    fn set(&mut self, pfn: usize, free: bool) {
        let (w, b) = (pfn / 32, 1u32 << (pfn % 32));
        if free {
            self.bits[w] |= b;
            self.free += 1;
        } else {
            self.bits[w] &= !b;
            self.free -= 1;
        }
    }

    /// One frame, or `None` when memory is exhausted.
    pub fn alloc(&mut self) -> Option<u32> {
        let words = self.limit.div_ceil(32);
        for i in 0..words {
            let w = (self.hint + i) % words;
            if self.bits[w] != 0 {
                let pfn = w * 32 + self.bits[w].trailing_zeros() as usize;
                if pfn >= self.limit {
                    continue;
                }
                self.set(pfn, false);
                self.hint = w;
                return Some((pfn * PAGE_SIZE) as u32);
            }
        }
        None
    }

    /// `n` physically contiguous frames (the lowest free run), or `None`.
    /// For boot-time carving (the kernel heap), where one scan of the
    /// bitmap is cheap; everything later takes single frames.
    pub fn alloc_contiguous(&mut self, n: usize) -> Option<u32> {
        if n == 0 {
            return None;
        }
        let mut run = 0;
        for pfn in 0..self.limit {
            run = if self.is_free(pfn) { run + 1 } else { 0 };
            if run == n {
                let first = pfn + 1 - n;
                (first..=pfn).for_each(|f| self.set(f, false));
                return Some((first * PAGE_SIZE) as u32);
            }
        }
        None
    }

    /// Give a frame back.  Freeing a free or unmanaged frame is refused:
    /// the caller (`free_frame`) turns that into a panic, since it is a
    /// kernel bug (Linux's "Bad page state").
    pub fn free(&mut self, phys: u32) -> Result<(), &'static str> {
        let pfn = phys as usize / PAGE_SIZE;
        if !(phys as usize).is_multiple_of(PAGE_SIZE) {
            return Err("free of unaligned frame");
        }
        if pfn >= self.limit {
            return Err("free of unmanaged frame");
        }
        if self.is_free(pfn) {
            return Err("double free of frame");
        }
        self.set(pfn, true);
        Ok(())
    }

    pub fn nr_free(&self) -> usize {
        self.free
    }

    pub fn is_frame_free(&self, phys: u32) -> bool {
        self.is_free(phys as usize / PAGE_SIZE)
    }
}

static BITMAP: Mutex<[u32; WORDS]> = Mutex::new([0; WORDS]);
static FRAMES: Mutex<Option<FrameAllocator<'static>>> = Mutex::new(None);
/// The physical ranges kept from the allocator at boot, kept for the
/// kernel's lifetime as Linux keeps `memblock.reserved`: "not free now"
/// cannot tell a reserved frame from one handed out since, and whoever
/// asks which frames belong to the image or the boot loader needs that.
static RESERVED: Mutex<([(u64, u64); MAX_RESERVED], usize)> =
    Mutex::new(([(0, 0); MAX_RESERVED], 0));
const MAX_RESERVED: usize = 64;

/// Build the global allocator from the boot memory map and reservations.
pub fn init(usable: impl Iterator<Item = (u64, u64)>, reserved: &[(u64, u64)]) -> MapStats {
    // The bitmap lives in .bss for the kernel's whole life: leak the guard.
    let bits: &'static mut [u32; WORDS] = spin::MutexGuard::leak(BITMAP.lock());
    let mut fa = FrameAllocator::new(bits, MAXMEM);
    let stats = fa.add_areas(usable);
    for &(s, e) in reserved {
        fa.reserve(s, e);
    }
    let mut kept = RESERVED.lock();
    let n = reserved.len().min(MAX_RESERVED);
    kept.0[..n].copy_from_slice(&reserved[..n]);
    kept.1 = n;
    drop(kept);
    *FRAMES.lock() = Some(fa);
    stats
}

fn with<R>(f: impl FnOnce(&mut FrameAllocator<'static>) -> R) -> R {
    // Interrupt handlers allocate too (page tables for vmalloc): the lock
    // is taken with interrupts off so they never spin on their own CPU.
    // The lock is a local so that it is released before `_irq` drops.
    let _irq = cpu::irq_save();
    let mut frames = FRAMES.lock();
    f(frames.as_mut().expect("frame allocator not initialised"))
}

/// `__get_free_page`: one frame (physical address), or `None`.
pub fn alloc_frame() -> Option<u32> {
    with(|fa| fa.alloc())
}

/// `n` physically contiguous frames, or `None` if no free run is that long.
pub fn alloc_contiguous(n: usize) -> Option<u32> {
    with(|fa| fa.alloc_contiguous(n))
}

/// A zeroed frame (`get_zeroed_page`).
pub fn alloc_zeroed_frame() -> Option<u32> {
    let f = alloc_frame()?;
    clear_page(f);
    Some(f)
}

/// `free_page`.
pub fn free_frame(phys: u32) {
    // Panic outside the lock, so a recovered test does not leave it held.
    if let Err(e) = with(|fa| fa.free(phys)) {
        panic!("{} {:#x}", e, phys);
    }
}

pub fn nr_free_frames() -> usize {
    with(|fa| fa.nr_free())
}

pub fn is_frame_free(phys: u32) -> bool {
    with(|fa| fa.is_frame_free(phys))
}

/// Linux's `memblock_is_reserved`: whether the frame at `phys` lies in a
/// range `init` kept from the allocator.
pub fn is_reserved(phys: u32) -> bool {
    let frame = phys as u64 & !(PAGE_SIZE as u64 - 1);
    let kept = RESERVED.lock();
    kept.0[..kept.1]
        .iter()
        .any(|&(s, e)| s < frame + PAGE_SIZE as u64 && frame < e)
}

/// The ranges `init` kept from the allocator (a copy), for the tests that
/// check `is_reserved` at their edges.
pub fn reserved_ranges() -> ([(u64, u64); MAX_RESERVED], usize) {
    *RESERVED.lock()
}

/// Zero a frame (`clear_page`), through the direct map, as 2.4's i386
/// `clear_page` does: `memset(page, 0, PAGE_SIZE)`, which for a count
/// that is a multiple of 4 is `rep ; stosl` (include/asm-i386/string.h,
/// `__constant_c_and_count_memset`).  One instruction, not the byte loop
/// `write_bytes` becomes in the unoptimised kernel: an experiment that
/// single-steps an allocation steps 1024 iterations, not 20,000.
pub fn clear_page(phys: u32) {
    // SAFETY: the frame was just allocated, is in the direct map, and no
    // one else has a reference to it; EDI/ECX are clobbered as declared,
    // and the direction flag is clear (the kernel never sets it).
    unsafe {
        core::arch::asm!(
            "rep stosl",
            inout("edi") super::addr::__va(phys) => _,
            inout("ecx") PAGE_SIZE / 4 => _,
            in("eax") 0u32,
            options(att_syntax, nostack, preserves_flags)
        )
    }
}
