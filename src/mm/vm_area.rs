//! The vmalloc area allocator.  Linux 2.4 kept a linear, address-sorted
//! `vmlist` and searched it first-fit: O(n) per call.  Like Linux 5.2's
//! augmented free-area tree, this one answers every question in O(log n)
//! once there are many areas, from three indexes:
//!
//! - `busy`: live areas keyed by start address (lookup for vfree, for the
//!   fault path's "is this a guard page" question, and for vmallocinfo);
//! - `free_by_addr`: free ranges keyed by start, to merge neighbours;
//! - `free_by_size`: the same free ranges keyed by (size, start), so the
//!   smallest gap that fits is one ordered-set lookup.
//!
//! The trees are `alloc::collections` B-trees: balanced, well kept, not
//! hand-written.  Every area carries one guard page after it, as 2.4's
//! `get_vm_area` does (`size += PAGE_SIZE`).
//!
//! A kernel lives at a few dozen areas, and there the trees cost more than
//! 2.4's list: a get plus a remove is eleven B-tree operations of 40 to
//! 370 instructions each, 2155 in all at 16 areas against the list's 713
//! (issue 28, `make bench`).  So up to `SMALL_MAX` live areas the
//! allocator keeps no trees at all: the areas sit in one `Vec` sorted by
//! address, whose capacity is kept, and the free ranges are the gaps
//! between them, found by a scan (best fit and first fit alike) as the
//! list's was, but without its allocation per area.  One area more moves
//! everything into the trees; back below `SMALL_MIN` it moves back.  The
//! two thresholds apart keep an allocator that hovers near one of them
//! from rebuilding on every call.  Both answer every question alike, to
//! the address: the gaps between sorted areas, split at the fence, are
//! exactly the merged free ranges the trees hold.
//!
//! The top of the range can be fenced off as a zone for kernel thread
//! stacks (`with_stack_zone`): ordinary areas never land there and free
//! ranges never merge across the fence, so the PGD slots of the stack
//! zone hold stacks only (see `vmalloc::vmalloc_stack` for why).

extern crate alloc;

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;
use core::panic::Location;

use super::addr::PAGE_SIZE;

bitflags::bitflags! {
    /// What an area maps (Linux's `VM_*`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct VmFlags: u32 {
        /// Pages allocated by vmalloc, freed by vfree.
        const ALLOC = 1 << 0;
        /// Frames given by the caller of vmap.
        const MAP = 1 << 1;
        /// A physical range given to ioremap.
        const IOREMAP = 1 << 2;
        /// A kernel thread stack: a guard page below it as well as above.
        const STACK = 1 << 3;
    }
}

/// Unmapped pages around a stack area: one below, where an overflow runs,
/// and the guard page every area has above.
pub const STACK_GUARD_PAGES: u32 = 2;

/// One live area (Linux's `struct vm_struct`).
#[derive(Clone, Copy, Debug)]
pub struct VmArea {
    pub addr: u32,
    /// Bytes, including the trailing guard page.
    pub size: u32,
    pub flags: VmFlags,
    pub nr_pages: u32,
    /// For ioremap: the physical start.
    pub phys_addr: u64,
    pub caller: &'static Location<'static>,
}

impl VmArea {
    /// Bytes usable by the caller (without the guard page).
    pub fn usable(&self) -> u32 {
        self.size - PAGE_SIZE as u32
    }

    pub fn guard_page(&self) -> u32 {
        self.addr + self.usable()
    }
}

/// Up to this many live areas the allocator keeps them in one sorted
/// array; one more and it builds the trees.  At 64 the array's scan and
/// shift still cost less than the trees' bookkeeping (`make bench`).
pub const SMALL_MAX: usize = 64;
/// A remove that leaves fewer live areas than this goes back to the array.
pub const SMALL_MIN: usize = 32;

pub struct AreaAllocator {
    start: u32,
    /// Start of the stack zone (`end` when there is none).
    fence: u32,
    end: u32,
    repr: Repr,
    /// Moves between the array and the trees (false: the trees at every
    /// size, `trees_only`).
    adaptive: bool,
}

enum Repr {
    /// At most `SMALL_MAX` live areas, sorted by address; the free ranges
    /// are the gaps between them, split at the fence.
    Small(Vec<VmArea>),
    Trees(Trees),
}

struct Trees {
    busy: BTreeMap<u32, VmArea>,
    free_by_addr: BTreeMap<u32, u32>,
    free_by_size: BTreeSet<(u32, u32)>,
}

/// `areas()`: the array's or the busy tree's areas.  (Two Options
/// flattened and chained did it without a type of its own, at 1.5 KB of
/// text for each caller's instance.)
enum Areas<'a> {
    Small(core::slice::Iter<'a, VmArea>),
    Trees(alloc::collections::btree_map::Values<'a, u32, VmArea>),
}

impl<'a> Iterator for Areas<'a> {
    type Item = &'a VmArea;

    fn next(&mut self) -> Option<&'a VmArea> {
        match self {
            Areas::Small(i) => i.next(),
            Areas::Trees(i) => i.next(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            Areas::Small(i) => i.size_hint(),
            Areas::Trees(i) => i.size_hint(),
        }
    }
}

/// The free ranges of `[lo, hi)` between `areas`, which are sorted and lie
/// inside it: (address, size, index in `areas` of the first area after the
/// range, where an area placed there goes), in address order.
fn gaps(areas: &[VmArea], lo: u32, hi: u32) -> impl Iterator<Item = (u32, u32, usize)> + '_ {
    let mut at = lo;
    (0..=areas.len()).filter_map(move |i| {
        let next = areas.get(i).map_or(hi, |a| a.addr);
        // Saturating: areas that overlap (a broken array) leave no gap, and
        // `check` reports the overlap itself.
        let gap = (at, next.saturating_sub(at), i);
        if let Some(a) = areas.get(i) {
            at = a.addr + a.size;
        }
        (gap.1 > 0).then_some(gap)
    })
}

/// Best fit among the gaps below the fence of the sorted `areas`: the
/// address of the smallest gap of at least `size` bytes, the lowest among
/// equals, and the index where an area placed there goes.  The hot path
/// of a small allocator: the fence is found by a binary search, so the
/// scan's loop tests nothing else, and it stops at a gap of exactly
/// `size`, which nothing after it can beat.
fn small_best_fit(areas: &[VmArea], start: u32, fence: u32, size: u32) -> Option<(u32, usize)> {
    let k = areas.partition_point(|a| a.addr < fence);
    // (gap, address, index) of the best so far.
    let mut best: Option<(u32, u32, usize)> = None;
    let mut at = start;
    let below = &areas[..k];
    let mut i = 0;
    loop {
        // Most gaps between live areas are too small (none at all, when
        // areas are packed): step over those in a loop that tests only that.
        while i < below.len() && below[i].addr - at < size {
            at = below[i].addr + below[i].size;
            i += 1;
        }
        let Some(a) = below.get(i) else { break };
        let gap = a.addr - at;
        // Strictly smaller: of equal gaps the first, lowest, stays.
        if best.is_none_or(|(b, _, _)| gap < b) {
            if gap == size {
                return Some((at, i));
            }
            best = Some((gap, at, i));
        }
        at = a.addr + a.size;
        i += 1;
    }
    let gap = fence - at;
    if gap >= size && best.is_none_or(|(b, _, _)| gap < b) {
        best = Some((gap, at, k));
    }
    best.map(|(_, addr, i)| (addr, i))
}

fn new_area(addr: u32, size: u32, flags: VmFlags, caller: &'static Location<'static>) -> VmArea {
    VmArea {
        addr,
        size,
        flags,
        nr_pages: (size / PAGE_SIZE as u32) - 1,
        phys_addr: 0,
        caller,
    }
}

impl Trees {
    /// The trees of the sorted `areas`, their free ranges from the gaps.
    fn from_sorted(areas: &[VmArea], start: u32, fence: u32, end: u32) -> Self {
        let mut t = Trees {
            busy: BTreeMap::new(),
            free_by_addr: BTreeMap::new(),
            free_by_size: BTreeSet::new(),
        };
        // One by one, not `collect`: its bulk build is cheaper (15,500
        // instructions for the move, against 25,500) but sorts its input
        // first, and the stable sort it monomorphizes for (u32, VmArea)
        // is 5.5 KB of text for a move made at most once every 32 calls.
        for a in areas {
            t.busy.insert(a.addr, *a);
        }
        let k = areas.partition_point(|a| a.addr < fence);
        for (addr, size, _) in gaps(&areas[..k], start, fence).chain(gaps(&areas[k..], fence, end))
        {
            t.insert_free(addr, size);
        }
        t
    }

    fn insert_free(&mut self, addr: u32, size: u32) {
        self.free_by_addr.insert(addr, size);
        self.free_by_size.insert((size, addr));
    }

    fn remove_free(&mut self, addr: u32, size: u32) {
        self.free_by_addr.remove(&addr);
        self.free_by_size.remove(&(size, addr));
    }

    /// Carve `area` out of the bottom of the free range `(addr, gap)`.
    fn take(&mut self, gap: u32, area: VmArea) {
        self.remove_free(area.addr, gap);
        if gap > area.size {
            self.insert_free(area.addr + area.size, gap - area.size);
        }
        self.busy.insert(area.addr, area);
    }

    fn remove(&mut self, addr: u32, fence: u32) -> Option<VmArea> {
        let area = self.busy.remove(&addr)?;
        let (mut start, mut size) = (area.addr, area.size);
        if let Some((&pa, &ps)) = self.free_by_addr.range(..start).next_back() {
            if pa + ps == start && start != fence {
                self.remove_free(pa, ps);
                start = pa;
                size += ps;
            }
        }
        if let Some(&ns) = self.free_by_addr.get(&(start + size)) {
            if start + size != fence {
                self.remove_free(start + size, ns);
                size += ns;
            }
        }
        self.insert_free(start, size);
        Some(area)
    }
}

impl AreaAllocator {
    /// An allocator over `[start, end)`, all free.
    pub fn new(start: u32, end: u32) -> Self {
        Self::with_stack_zone(start, end, end)
    }

    /// An allocator over `[start, end)` whose `[fence, end)` part is kept
    /// for `get_stack_area`.
    pub fn with_stack_zone(start: u32, fence: u32, end: u32) -> Self {
        assert!(start <= fence && fence <= end);
        AreaAllocator {
            start,
            fence,
            end,
            // One more than SMALL_MAX: the insert that triggers the move
            // to the trees must not grow the array first.
            repr: Repr::Small(Vec::with_capacity(SMALL_MAX + 1)),
            adaptive: true,
        }
    }

    /// The allocator as it was before issue 28: the three trees at every
    /// size, never the array.  For `make bench`'s before column and the
    /// vmalloc suite's differential test (the array must answer as the
    /// trees do, to the address).
    pub fn trees_only(start: u32, fence: u32, end: u32) -> Self {
        assert!(start <= fence && fence <= end);
        AreaAllocator {
            start,
            fence,
            end,
            repr: Repr::Trees(Trees::from_sorted(&[], start, fence, end)),
            adaptive: false,
        }
    }

    pub fn stack_zone(&self) -> (u32, u32) {
        (self.fence, self.end)
    }

    /// Whether the areas sit in the sorted array (at most `SMALL_MAX` of
    /// them) rather than in the trees.
    pub fn is_small(&self) -> bool {
        matches!(self.repr, Repr::Small(_))
    }

    /// `get_vm_area`: reserve `size` bytes plus a guard page.  Best fit:
    /// the smallest free range that is large enough, lowest address among
    /// equals.  `None` if no gap fits.
    pub fn get_vm_area(
        &mut self,
        size: u32,
        flags: VmFlags,
        caller: &'static Location<'static>,
    ) -> Option<VmArea> {
        let size = size.checked_add(PAGE_SIZE as u32)?;
        let (start, fence) = (self.start, self.fence);
        match &mut self.repr {
            Repr::Small(v) => {
                let (addr, i) = small_best_fit(v, start, fence, size)?;
                let area = new_area(addr, size, flags, caller);
                self.small_insert(i, area);
                Some(area)
            }
            Repr::Trees(t) => {
                let &(gap, addr) = t
                    .free_by_size
                    .range((size, 0)..)
                    .find(|&&(_, a)| a < fence)?;
                let area = new_area(addr, size, flags, caller);
                t.take(gap, area);
                Some(area)
            }
        }
    }

    /// The largest free range below the stack zone: (address, size); the
    /// highest address among equals.
    pub fn largest_gap(&self) -> Option<(u32, u32)> {
        match &self.repr {
            Repr::Small(v) => {
                let k = v.partition_point(|a| a.addr < self.fence);
                // `max_by_key` keeps the last of equals: the highest address,
                // as the trees' (size, address) order gives.
                gaps(&v[..k], self.start, self.fence)
                    .max_by_key(|&(_, g, _)| g)
                    .map(|(addr, size, _)| (addr, size))
            }
            Repr::Trees(t) => t
                .free_by_size
                .iter()
                .rev()
                .find(|&&(_, a)| a < self.fence)
                .map(|&(size, addr)| (addr, size)),
        }
    }

    /// Reserve a stack of `size` bytes in the stack zone: a guard page
    /// below it (where an overflow runs), the stack, and the usual guard
    /// page above.  Lowest address first, so stacks pack into few PGD
    /// slots.
    pub fn get_stack_area(
        &mut self,
        size: u32,
        caller: &'static Location<'static>,
    ) -> Option<VmArea> {
        let size = size.checked_add(STACK_GUARD_PAGES * PAGE_SIZE as u32)?;
        let (fence, end) = (self.fence, self.end);
        match &mut self.repr {
            Repr::Small(v) => {
                let k = v.partition_point(|a| a.addr < fence);
                let (addr, _, i) = gaps(&v[k..], fence, end).find(|&(_, g, _)| g >= size)?;
                let area = new_area(addr, size, VmFlags::STACK, caller);
                self.small_insert(k + i, area);
                Some(area)
            }
            Repr::Trees(t) => {
                let (&addr, &gap) = t.free_by_addr.range(fence..).find(|&(_, &g)| g >= size)?;
                let area = new_area(addr, size, VmFlags::STACK, caller);
                t.take(gap, area);
                Some(area)
            }
        }
    }

    /// Put `area` at index `i` of the sorted array, and move to the trees
    /// if that makes one area too many.
    fn small_insert(&mut self, i: usize, area: VmArea) {
        let Repr::Small(v) = &mut self.repr else {
            unreachable!("small_insert on the trees")
        };
        v.insert(i, area);
        if v.len() > SMALL_MAX {
            self.move_to_trees();
        }
    }

    // The two moves are rare (at least SMALL_MAX - SMALL_MIN operations
    // apart) and long (about 25,500 and 5,000 instructions, `make
    // bench`): out of line and cold, so that the compiler lays out and
    // allocates registers for the hot paths that call them without them.
    #[cold]
    #[inline(never)]
    fn move_to_trees(&mut self) {
        if let Repr::Small(v) = &self.repr {
            self.repr = Repr::Trees(Trees::from_sorted(v, self.start, self.fence, self.end));
        }
    }

    #[cold]
    #[inline(never)]
    fn move_to_array(&mut self) {
        if let Repr::Trees(t) = &self.repr {
            let mut v = Vec::with_capacity(SMALL_MAX + 1);
            v.extend(t.busy.values().copied());
            self.repr = Repr::Small(v);
        }
    }

    /// Record details of a live area (ioremap's physical address).
    pub fn update(&mut self, area: VmArea) {
        let slot = match &mut self.repr {
            Repr::Small(v) => v
                .binary_search_by_key(&area.addr, |a| a.addr)
                .ok()
                .map(|i| &mut v[i]),
            Repr::Trees(t) => t.busy.get_mut(&area.addr),
        };
        if let Some(a) = slot {
            *a = area;
        }
    }

    /// `remove_vm_area`: the area starting exactly at `addr`, merged back
    /// into the free ranges.  `None` if no live area starts there.
    pub fn remove_vm_area(&mut self, addr: u32) -> Option<VmArea> {
        match &mut self.repr {
            Repr::Small(v) => {
                let i = v.binary_search_by_key(&addr, |a| a.addr).ok()?;
                // The last area (the newest, often) needs no shift: pop
                // it rather than call memmove for nothing.
                if i + 1 == v.len() {
                    v.pop()
                } else {
                    Some(v.remove(i))
                }
            }
            Repr::Trees(t) => {
                let area = t.remove(addr, self.fence)?;
                if self.adaptive && t.busy.len() < SMALL_MIN {
                    self.move_to_array();
                }
                Some(area)
            }
        }
    }

    /// The live area whose range (guard page included) contains `addr`.
    pub fn find_vm_area(&self, addr: u32) -> Option<&VmArea> {
        let a = match &self.repr {
            Repr::Small(v) => &v[v.partition_point(|a| a.addr <= addr).checked_sub(1)?],
            Repr::Trees(t) => t.busy.range(..=addr).next_back()?.1,
        };
        (addr < a.addr + a.size).then_some(a)
    }

    pub fn nr_areas(&self) -> usize {
        match &self.repr {
            Repr::Small(v) => v.len(),
            Repr::Trees(t) => t.busy.len(),
        }
    }

    /// The live areas in address order.
    pub fn areas(&self) -> impl Iterator<Item = &VmArea> {
        match &self.repr {
            Repr::Small(v) => Areas::Small(v.iter()),
            Repr::Trees(t) => Areas::Trees(t.busy.values()),
        }
    }

    /// Check every invariant; returns a description of the first broken
    /// one.  Busy and free ranges tile `[start, end)` exactly, free
    /// neighbours are merged (except across the fence), no range crosses
    /// the fence, stacks live above it and nothing else does, the two
    /// free indexes agree, and each representation holds the number of
    /// areas its thresholds allow.
    pub fn check(&self) -> Result<(), &'static str> {
        let mut ranges: Vec<(u32, u32, bool)> = match &self.repr {
            Repr::Small(v) => {
                if v.len() > SMALL_MAX {
                    return Err("more than SMALL_MAX areas in the sorted array");
                }
                if !v.windows(2).all(|w| w[0].addr < w[1].addr) {
                    return Err("the array is not sorted by address");
                }
                let k = v.partition_point(|a| a.addr < self.fence);
                v.iter()
                    .map(|a| (a.addr, a.size, true))
                    .chain(
                        gaps(&v[..k], self.start, self.fence)
                            .chain(gaps(&v[k..], self.fence, self.end))
                            .map(|(a, s, _)| (a, s, false)),
                    )
                    .collect()
            }
            Repr::Trees(t) => {
                if self.adaptive && t.busy.len() < SMALL_MIN {
                    return Err("fewer than SMALL_MIN areas in the trees");
                }
                if t.free_by_addr.len() != t.free_by_size.len() {
                    return Err("free indexes differ in size");
                }
                for (&a, &s) in &t.free_by_addr {
                    if !t.free_by_size.contains(&(s, a)) {
                        return Err("free range missing from the size index");
                    }
                }
                t.busy
                    .values()
                    .map(|a| (a.addr, a.size, true))
                    .chain(t.free_by_addr.iter().map(|(&a, &s)| (a, s, false)))
                    .collect()
            }
        };
        ranges.sort_unstable();
        let mut at = self.start;
        let mut prev_free = false;
        for (a, s, busy) in ranges {
            if a != at {
                return Err("ranges overlap or leave a hole");
            }
            if !busy && prev_free && a != self.fence {
                return Err("two free neighbours not merged");
            }
            if a < self.fence && a + s > self.fence {
                return Err("a range crosses the stack-zone fence");
            }
            if s == 0 || !(s as usize).is_multiple_of(PAGE_SIZE) {
                return Err("range size not a positive page multiple");
            }
            prev_free = !busy;
            at = a + s;
        }
        if at != self.end {
            return Err("ranges do not reach the end of the area");
        }
        for a in self.areas() {
            if a.flags.contains(VmFlags::STACK) != (a.addr >= self.fence) {
                return Err("a stack outside the stack zone, or an area inside it");
            }
        }
        Ok(())
    }
}
