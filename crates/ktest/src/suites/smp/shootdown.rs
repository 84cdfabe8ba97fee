//! TLB shootdown (2.4's `flush_tlb_all` at the end of
//! `vmfree_area_pages`): after vunmap and vfree, CPU 1 must not reach the
//! page through a translation its TLB kept.

use core::sync::atomic::{AtomicU32, Ordering};

use super::ipi::nothing;
use super::need_two_cpus;
use crate::skip;
use vmfault::arch::x86::smp::smp_call_function;

static READ_AT: AtomicU32 = AtomicU32::new(0);
static READ_GOT: AtomicU32 = AtomicU32::new(0);

fn read_there(_: usize) {
    // SAFETY: a vmap'd word the test keeps mapped while this runs.
    let v = unsafe { core::ptr::read_volatile(READ_AT.load(Ordering::SeqCst) as *const u32) };
    READ_GOT.store(v, Ordering::SeqCst);
}

fn read_on_cpu1(va: u32) -> u32 {
    READ_AT.store(va, Ordering::SeqCst);
    READ_GOT.store(0, Ordering::SeqCst);
    smp_call_function(read_there, 0, true).expect("smp_call_function");
    READ_GOT.load(Ordering::SeqCst)
}

/// 2.4's `flush_tlb_all` after vunmap (and vfree: the same
/// `unmap_kernel_range`).  CPU 1 reads a page through a vmap, so its TLB
/// holds the translation; the page is vunmapped and another frame vmapped
/// at the same address; CPU 1 reads again.  Without the shootdown its
/// stale TLB entry still leads to the first frame (measured: remove the
/// flush_tlb_all from unmap_kernel_range and this fails with 0xaaaa0001).
pub(super) fn tlb_shootdown_after_vunmap() {
    use vmfault::mm::addr::__va;
    use vmfault::mm::frame::{alloc_frame, free_frame};
    use vmfault::mm::vmalloc::{vmap, vunmap};
    need_two_cpus();
    let (f1, f2) = (alloc_frame().expect("frame"), alloc_frame().expect("frame"));
    // SAFETY: two frames of this test's, through the direct map.
    unsafe {
        core::ptr::write_volatile(__va(f1) as *mut u32, 0xaaaa_0001);
        core::ptr::write_volatile(__va(f2) as *mut u32, 0xbbbb_0002);
    }
    let x = vmap(&[f1]).expect("vmap").as_ptr() as u32;
    assert_eq!(
        read_on_cpu1(x),
        0xaaaa_0001,
        "CPU 1 read the first mapping wrong"
    );
    vunmap(x as *const u8).expect("vunmap");
    let y = vmap(&[f2]).expect("vmap").as_ptr() as u32;
    let got = if y == x { Some(read_on_cpu1(y)) } else { None };
    vunmap(y as *const u8).expect("vunmap");
    free_frame(f1);
    free_frame(f2);
    let Some(got) = got else {
        skip("the second vmap got another address");
    };
    vmfault::println!("    # CPU 1 read {:#x} at {:#x} after the remap", got, y);
    assert_eq!(
        got, 0xbbbb_0002,
        "CPU 1 read the unmapped frame through a stale TLB entry"
    );
}

static TOUCH_VEC: AtomicU32 = AtomicU32::new(0);
static TOUCH_CR2: AtomicU32 = AtomicU32::new(0);

fn touch_under_a_recovery_point(va: usize) {
    // SAFETY: a read the test expects to fault, under this CPU's own
    // recovery point.
    let c = vmfault::fixup::expect_fault(|| unsafe {
        READ_GOT.store(core::ptr::read_volatile(va as *const u32), Ordering::SeqCst);
    });
    let (v, cr2) = c.map_or((0, 0), |c| (c.vector, c.cr2));
    TOUCH_VEC.store(v, Ordering::SeqCst);
    TOUCH_CR2.store(cr2, Ordering::SeqCst);
}

/// The issue's own case: CPU 1 reads a vmalloc'd page, so its TLB holds
/// the translation; CPU 0 vfrees it; CPU 1 touches it again.  With 2.4's
/// `flush_tlb_all` the touch page-faults, and the oops ends at CPU 1's
/// own recovery point, after which CPU 1 answers calls as before.
/// Without the remote flush CPU 1 reads the freed frame through its stale
/// TLB entry (measured: take `call_others` out of `flush_tlb_all` and
/// this fails, CPU 1 reading the page's marker after the vfree).
pub(super) fn tlb_shootdown_after_vfree() {
    use vmfault::mm::vmalloc::{vfree, vmalloc};
    need_two_cpus();
    let x = vmalloc(4096).expect("vmalloc").as_ptr() as u32;
    // SAFETY: the page just allocated.
    unsafe { core::ptr::write_volatile(x as *mut u32, 0x5ca1_ab1e) };
    // Into CPU 1's TLB.
    assert_eq!(read_on_cpu1(x), 0x5ca1_ab1e, "CPU 1 read the page wrong");
    vfree(x as *const u8).expect("vfree");
    TOUCH_VEC.store(0, Ordering::SeqCst);
    TOUCH_CR2.store(0, Ordering::SeqCst);
    READ_GOT.store(0, Ordering::SeqCst);
    smp_call_function(touch_under_a_recovery_point, x as usize, true).expect("smp_call_function");
    assert_eq!(
        (
            TOUCH_VEC.load(Ordering::SeqCst),
            TOUCH_CR2.load(Ordering::SeqCst)
        ),
        (14, x),
        "CPU 1 read freed memory through its stale TLB (it read {:#x})",
        READ_GOT.load(Ordering::SeqCst)
    );
    let others = vmfault::arch::x86::smp::online().count() as u32 - 1;
    assert_eq!(
        smp_call_function(nothing, 0, true),
        Ok(others),
        "CPU 1 did not come back"
    );
}
