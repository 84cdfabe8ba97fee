//! The vmalloc area allocator as it was before issue 28: three B-trees
//! (busy by address, free by address, free by (size, address)) at every
//! size.  The kernel's `vm_area::AreaAllocator` now keeps few areas in one
//! sorted array and moves to these trees only above a threshold; this copy
//! stays, unchanged, for two jobs: `make bench` times and counts it beside
//! the kernel's (the before and after of one run), and the differential
//! test in the vmalloc suite replays random operation sequences on both,
//! so every address the kernel's allocator returns is the one this one
//! returned (the experiments' counts depend on those addresses).

extern crate alloc;

use alloc::collections::{BTreeMap, BTreeSet};
use core::panic::Location;

use vmfault::mm::addr::PAGE_SIZE;
use vmfault::mm::vm_area::{VmArea, VmFlags, STACK_GUARD_PAGES};

pub struct TreeAreas {
    start: u32,
    /// Start of the stack zone (`end` when there is none).
    fence: u32,
    end: u32,
    busy: BTreeMap<u32, VmArea>,
    free_by_addr: BTreeMap<u32, u32>,
    free_by_size: BTreeSet<(u32, u32)>,
}

impl TreeAreas {
    /// An allocator over `[start, end)`, all free.
    pub fn new(start: u32, end: u32) -> Self {
        Self::with_stack_zone(start, end, end)
    }

    /// An allocator over `[start, end)` whose `[fence, end)` part is kept
    /// for `get_stack_area`.
    pub fn with_stack_zone(start: u32, fence: u32, end: u32) -> Self {
        assert!(start <= fence && fence <= end);
        let mut a = TreeAreas {
            start,
            fence,
            end,
            busy: BTreeMap::new(),
            free_by_addr: BTreeMap::new(),
            free_by_size: BTreeSet::new(),
        };
        if fence > start {
            a.insert_free(start, fence - start);
        }
        if end > fence {
            a.insert_free(fence, end - fence);
        }
        a
    }

    pub fn stack_zone(&self) -> (u32, u32) {
        (self.fence, self.end)
    }

    fn insert_free(&mut self, addr: u32, size: u32) {
        self.free_by_addr.insert(addr, size);
        self.free_by_size.insert((size, addr));
    }

    fn remove_free(&mut self, addr: u32, size: u32) {
        self.free_by_addr.remove(&addr);
        self.free_by_size.remove(&(size, addr));
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
        let fence = self.fence;
        let &(gap, addr) = self
            .free_by_size
            .range((size, 0)..)
            .find(|&&(_, a)| a < fence)?;
        Some(self.take(gap, addr, size, flags, caller))
    }

    /// The largest free range below the stack zone: (address, size).
    pub fn largest_gap(&self) -> Option<(u32, u32)> {
        self.free_by_size
            .iter()
            .rev()
            .find(|&&(_, a)| a < self.fence)
            .map(|&(size, addr)| (addr, size))
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
        let (&addr, &gap) = self
            .free_by_addr
            .range(self.fence..)
            .find(|&(_, &g)| g >= size)?;
        Some(self.take(gap, addr, size, VmFlags::STACK, caller))
    }

    fn take(
        &mut self,
        gap: u32,
        addr: u32,
        size: u32,
        flags: VmFlags,
        caller: &'static Location<'static>,
    ) -> VmArea {
        self.remove_free(addr, gap);
        if gap > size {
            self.insert_free(addr + size, gap - size);
        }
        let area = VmArea {
            addr,
            size,
            flags,
            nr_pages: (size / PAGE_SIZE as u32) - 1,
            phys_addr: 0,
            caller,
        };
        self.busy.insert(addr, area);
        area
    }

    /// Record details of a live area (ioremap's physical address).
    pub fn update(&mut self, area: VmArea) {
        if let Some(a) = self.busy.get_mut(&area.addr) {
            *a = area;
        }
    }

    /// `remove_vm_area`: the area starting exactly at `addr`, merged back
    /// into the free ranges.  `None` if no live area starts there.
    pub fn remove_vm_area(&mut self, addr: u32) -> Option<VmArea> {
        let area = self.busy.remove(&addr)?;
        let (mut start, mut size) = (area.addr, area.size);
        if let Some((&pa, &ps)) = self.free_by_addr.range(..start).next_back() {
            if pa + ps == start && start != self.fence {
                self.remove_free(pa, ps);
                start = pa;
                size += ps;
            }
        }
        if let Some(&ns) = self.free_by_addr.get(&(start + size)) {
            if start + size != self.fence {
                self.remove_free(start + size, ns);
                size += ns;
            }
        }
        self.insert_free(start, size);
        Some(area)
    }

    /// The live area whose range (guard page included) contains `addr`.
    pub fn find_vm_area(&self, addr: u32) -> Option<&VmArea> {
        let (_, a) = self.busy.range(..=addr).next_back()?;
        (addr < a.addr + a.size).then_some(a)
    }

    pub fn nr_areas(&self) -> usize {
        self.busy.len()
    }

    pub fn areas(&self) -> impl Iterator<Item = &VmArea> {
        self.busy.values()
    }

    /// Check every invariant; returns a description of the first broken
    /// one.  Busy and free ranges tile `[start, end)` exactly, free
    /// neighbours are merged (except across the fence), no range crosses
    /// the fence, stacks live above it and nothing else does, and the two
    /// free indexes agree.
    pub fn check(&self) -> Result<(), &'static str> {
        if self.free_by_addr.len() != self.free_by_size.len() {
            return Err("free indexes differ in size");
        }
        for (&a, &s) in &self.free_by_addr {
            if !self.free_by_size.contains(&(s, a)) {
                return Err("free range missing from the size index");
            }
        }
        let mut ranges: alloc::vec::Vec<(u32, u32, bool)> = self
            .busy
            .values()
            .map(|a| (a.addr, a.size, true))
            .chain(self.free_by_addr.iter().map(|(&a, &s)| (a, s, false)))
            .collect();
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
        for a in self.busy.values() {
            if a.flags.contains(VmFlags::STACK) != (a.addr >= self.fence) {
                return Err("a stack outside the stack zone, or an area inside it");
            }
        }
        Ok(())
    }
}
