//! Linux 2.4's `vmlist`, reproduced as the baseline for `make bench`: an
//! address-sorted singly linked list searched first-fit from the start
//! on every `get_vm_area`, and walked again by `vfree` to find the area
//! (2.4 mm/vmalloc.c).  O(n) per call; the kernel itself uses
//! `vm_area::AreaAllocator` instead.

extern crate alloc;

use alloc::boxed::Box;

use vmfault::mm::addr::PAGE_SIZE;

struct VmStruct {
    next: Option<Box<VmStruct>>,
    addr: u32,
    size: u32,
}

pub struct Vmlist24 {
    start: u32,
    end: u32,
    head: Option<Box<VmStruct>>,
    len: usize,
}

impl Vmlist24 {
    pub fn new(start: u32, end: u32) -> Self {
        Vmlist24 {
            start,
            end,
            head: None,
            len: 0,
        }
    }

    /// 2.4 `get_vm_area`: `size += PAGE_SIZE`, then
    /// `for (p = &vmlist; (tmp = *p) ; p = &tmp->next) { if (size + addr <
    /// (unsigned long) tmp->addr) break; addr = tmp->size + (unsigned long)
    /// tmp->addr; ... }`.
    pub fn get_vm_area(&mut self, size: u32) -> Option<u32> {
        let size = size + PAGE_SIZE as u32;
        let mut addr = self.start;
        let mut p = &mut self.head;
        loop {
            match p {
                Some(tmp) if size + addr >= tmp.addr => {
                    addr = tmp.size + tmp.addr;
                    if addr > self.end - size {
                        return None;
                    }
                    p = &mut p.as_mut().unwrap().next;
                }
                _ => break,
            }
        }
        if addr + size > self.end {
            return None;
        }
        let rest = p.take();
        *p = Some(Box::new(VmStruct {
            next: rest,
            addr,
            size,
        }));
        self.len += 1;
        Some(addr)
    }

    /// 2.4 `vfree`: walk the list for the area starting at `addr`.
    pub fn remove(&mut self, addr: u32) -> bool {
        let mut p = &mut self.head;
        loop {
            match p {
                None => return false,
                Some(tmp) if tmp.addr == addr => {
                    let next = tmp.next.take();
                    *p = next;
                    self.len -= 1;
                    return true;
                }
                Some(_) => p = &mut p.as_mut().unwrap().next,
            }
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for Vmlist24 {
    fn drop(&mut self) {
        // Iteratively, so a long list does not recurse through Box drops.
        let mut cur = self.head.take();
        while let Some(mut n) = cur {
            cur = n.next.take();
        }
    }
}
