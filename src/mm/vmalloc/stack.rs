//! Kernel thread stacks in the stack zone at the top of the vmalloc area,
//! with a guard page below and above (Linux 4.9's `CONFIG_VMAP_STACK`),
//! and what an overflow report says about where ESP ended up.

use core::panic::Location;

use super::*;
use crate::mm::addr::PAGE_SIZE;
use crate::mm::frame::alloc_frame;
use crate::mm::vm_area::VmFlags;
use crate::pr_warn;

/// A kernel thread stack: `[base, top)` is mapped; the page below `base`
/// and the page at `top` are guards.
#[derive(Clone, Copy, Debug)]
pub struct KernelStack {
    pub base: u32,
    pub top: u32,
}

impl KernelStack {
    /// The page an overflow runs into.
    pub fn guard_below(&self) -> u32 {
        self.base - PAGE_SIZE as u32
    }

    /// Where an overflowing `esp` ended up: an oops report must say where
    /// ESP really is, not where it was supposed to stop.
    pub fn overflow_position(&self, esp: u32) -> OverflowPosition {
        let guard = self.guard_below();
        if esp >= self.base {
            OverflowPosition::OnStack
        } else if esp >= guard {
            OverflowPosition::InGuard { guard }
        } else {
            OverflowPosition::BelowGuard {
                guard,
                bytes: guard - esp,
            }
        }
    }
}

/// An ESP relative to a [`KernelStack`] and its guard page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OverflowPosition {
    /// Still within `[base, top)`: the fault was not the overflow itself.
    OnStack,
    /// In the guard page: the guard did its work.
    InGuard { guard: u32 },
    /// Below the guard page: the guard did not stop it (it was mapped, or
    /// one frame jumped over it).
    BelowGuard { guard: u32, bytes: u32 },
}

impl core::fmt::Display for OverflowPosition {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            OverflowPosition::OnStack => write!(f, "still on its stack"),
            OverflowPosition::InGuard { guard } => {
                write!(f, "into the guard page at {:08x}", guard)
            }
            OverflowPosition::BelowGuard { guard, bytes } => write!(
                f,
                "past the guard page at {:08x}, {} bytes below it",
                guard, bytes
            ),
        }
    }
}

/// A kernel thread stack from the stack zone (Linux 4.9's
/// `CONFIG_VMAP_STACK`, which moved x86 stacks into vmalloc space for the
/// guard page).  Its PGD entry is copied into every address space at
/// once, whatever `vmalloc_fault` version runs: the lazy sync cannot
/// serve a stack, because the page fault that would sync it needs that
/// stack to push its frame on - the CPU double-faults instead.  Linux
/// met the same wall (4.14 `sync_current_stack_to_mm`: "If our current
/// stack is in vmalloc space and isn't mapped in the new pgd, we'll
/// double-fault").  The zone is kept apart from other areas, so the
/// eager copy never hides a lazy fault an experiment is counting.
#[track_caller]
pub fn vmalloc_stack(size: usize) -> Option<KernelStack> {
    let caller = Location::caller();
    let size = check_size(size, "vmalloc_stack")?;
    let area = with_vmlist(|v| v.get_stack_area(size, caller));
    let Some(area) = area else {
        pr_warn!(
            "vmalloc_stack: the stack zone has no free gap of {:#x} bytes (plus two guard pages)",
            size
        );
        return None;
    };
    if !populate(&area, 1, PteFlags::PAGE_KERNEL | PteFlags::NX, true, |_| {
        alloc_frame().map(|f| f as u64)
    }) {
        pr_warn!("vmalloc_stack: out of memory for a {:#x}-byte stack", size);
        return None;
    }
    let base = area.addr + PAGE_SIZE as u32;
    Some(KernelStack {
        base,
        top: base + size,
    })
}

/// Free a stack from `vmalloc_stack`.
pub fn vfree_stack(stack: &KernelStack) -> Result<(), FreeError> {
    release(
        stack.guard_below() as *const u8,
        VmFlags::STACK,
        "vfree_stack",
    )
}
