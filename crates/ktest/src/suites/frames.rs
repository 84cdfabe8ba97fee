//! The frame allocator, on the real memory map and on synthetic ones with
//! the shapes a BIOS can hand over.

extern crate alloc;

use alloc::vec;

use crate::case;
use crate::Suite;
use vmfault::mm::addr::{__va, MAXMEM, PAGE_OFFSET, PAGE_SIZE};
use vmfault::mm::frame::{self, FrameAllocator};

pub static SUITE: Suite = Suite {
    name: "frames",
    cases: &[
        case!(boot_information_reserved_exactly),
        case!(heap_is_a_sixteenth_of_usable_ram),
        case!(trampoline_page_is_reserved),
        case!(alloc_all_free_all_restores_count),
        case!(allocated_frames_are_distinct_ram),
        case!(frame_zero_and_kernel_are_reserved),
        case!(reserved_ranges_have_exact_edges),
        case!(map_with_hole_below_1mib),
        case!(ram_above_896mib_ignored_with_count),
        case!(unaligned_areas_keep_whole_frames_only),
        case!(reservations_split_areas),
        case!(exhaustion_is_none_and_double_free_refused),
        case!(contiguous_run_is_lowest_fit_and_skips_holes),
        case!(areas_above_16tib_stay_out_of_low_memory),
    ],
};

/// Chain every free frame through its own first word (no heap needed for
/// 220k frames), check the count, then give them all back.
fn alloc_all_free_all_restores_count() {
    let before = frame::nr_free_frames();
    let mut head: u32 = u32::MAX;
    let mut n = 0usize;
    while let Some(f) = frame::alloc_frame() {
        // SAFETY: the frame is ours and in the direct map.
        unsafe { core::ptr::write_volatile(__va(f) as *mut u32, head) };
        head = f;
        n += 1;
    }
    assert_eq!(n, before, "could not allocate every free frame");
    assert_eq!(frame::nr_free_frames(), 0);
    while head != u32::MAX {
        // SAFETY: written above; the frame is still ours.
        let next = unsafe { core::ptr::read_volatile(__va(head) as *const u32) };
        frame::free_frame(head);
        head = next;
    }
    assert_eq!(frame::nr_free_frames(), before);
}

fn allocated_frames_are_distinct_ram() {
    let a = frame::alloc_frame().expect("frame");
    let b = frame::alloc_frame().expect("frame");
    assert_ne!(a, b);
    assert_eq!(a as usize % PAGE_SIZE, 0);
    assert!((a as u64) < MAXMEM && (b as u64) < MAXMEM);
    // SAFETY: both frames are ours and direct-mapped.
    unsafe {
        core::ptr::write_volatile(__va(a) as *mut u32, 0xaaaa_aaaa);
        core::ptr::write_volatile(__va(b) as *mut u32, 0x5555_5555);
        assert_eq!(core::ptr::read_volatile(__va(a) as *const u32), 0xaaaa_aaaa);
    }
    assert!(!frame::is_frame_free(a));
    frame::free_frame(a);
    frame::free_frame(b);
    assert!(frame::is_frame_free(a));
}

extern "C" {
    static __kernel_phys_start: u8;
    static __kernel_phys_end: u8;
}

/// Every frame of `[start, end)` was kept from the allocator at boot and
/// is not free now; returns how many frames that is.
fn assert_reserved(what: &str, start: u64, end: u64) -> usize {
    let mut n = 0;
    let mut pa = start & !(PAGE_SIZE as u64 - 1);
    while pa < end && pa < MAXMEM {
        // Both: a frame given out as free at boot may be in use by now
        // (the heap takes the first run after the image), which would
        // hide a missing reservation from the second check.
        assert!(
            frame::is_reserved(pa as u32),
            "{} frame {:#x} ({:#x}-{:#x}) was not reserved at boot",
            what,
            pa,
            start,
            end
        );
        assert!(
            !frame::is_frame_free(pa as u32),
            "{} frame {:#x} ({:#x}-{:#x}) is free",
            what,
            pa,
            start,
            end
        );
        n += 1;
        pa += PAGE_SIZE as u64;
    }
    vmfault::println!(
        "    # {}: {:#x}-{:#x}, {} frames reserved",
        what,
        start,
        end,
        n
    );
    n
}

/// The ranges come from the linker and the boot information itself, not
/// from `mm::init::reserved_ranges`, which is what is under test.
fn frame_zero_and_kernel_are_reserved() {
    assert_reserved("frame 0", 0, PAGE_SIZE as u64);
    // SAFETY: linker symbols; only their addresses are taken.
    let (ks, ke) = unsafe {
        (
            &__kernel_phys_start as *const u8 as u64,
            &__kernel_phys_end as *const u8 as u64,
        )
    };
    assert!(
        ke > ks + 0x40000,
        "image {:#x}-{:#x} implausibly small",
        ks,
        ke
    );
    assert_reserved("kernel image", ks, ke);

    let p = vmfault::boot::start::params().expect("boot params");
    let info = p.info;
    let ip = p.info_phys as u64;
    assert_reserved("boot information", ip, ip + info.total_size() as u64);

    // GRUB loads .symtab and .strtab outside the image and reports where
    // in the ELF-sections tag (their sh_addr is physical there).
    let t = vmfault::symbols::find_tables(info).expect("symbol tables in the ELF-sections tag");
    for (what, (a, len)) in [(".symtab", t.symtab), (".strtab", t.strtab)] {
        assert!(len > 0, "{} is empty", what);
        assert_reserved(what, a as u64, a as u64 + len as u64);
    }
    // Any other section loaded outside the higher-half image.
    let tag = info.elf_sections_tag().expect("ELF-sections tag");
    for s in tag.sections() {
        let outside = (s.sh_addr < ks || s.sh_addr >= ke) && s.sh_addr < PAGE_OFFSET as u64;
        let seen = [t.symtab.0, t.strtab.0].contains(&(s.sh_addr as u32));
        if s.sh_addr != 0 && s.sh_size != 0 && outside && !seen {
            assert_reserved("ELF section", s.sh_addr, s.sh_addr + s.sh_size);
        }
    }

    let mut modules = 0;
    for m in info.module_tags() {
        assert_reserved("module", m.start_address() as u64, m.end_address() as u64);
        modules += 1;
    }
    if modules == 0 {
        vmfault::println!("    # no multiboot2 modules loaded: none to check");
    }
}

fn small(limit: u64) -> alloc::vec::Vec<u32> {
    vec![0u32; (limit as usize / PAGE_SIZE).div_ceil(32)]
}

fn map_with_hole_below_1mib() {
    let mut bits = small(MAXMEM);
    let mut fa = FrameAllocator::new(&mut bits, MAXMEM);
    let s = fa.add_areas([(0, 0x9fc00), (0x100000, 0x800000)].into_iter());
    assert_eq!(s.usable_frames, 159 + 1792);
    assert_eq!(s.ignored_bytes, 0);
    assert!(fa.is_frame_free(0x9e000));
    assert!(
        !fa.is_frame_free(0x9f000),
        "partial frame under the EBDA counted"
    );
    assert!(!fa.is_frame_free(0xa0000), "VGA hole counted as RAM");
    assert!(!fa.is_frame_free(0xff000));
    assert!(fa.is_frame_free(0x100000));
    assert!(!fa.is_frame_free(0x800000));
}

fn ram_above_896mib_ignored_with_count() {
    let mut bits = small(MAXMEM);
    let mut fa = FrameAllocator::new(&mut bits, MAXMEM);
    let s = fa.add_areas([(0x100000, 0x4000_0000), (0x1_0000_0000, 0x1_1000_0000)].into_iter());
    assert_eq!(
        s.usable_frames,
        ((MAXMEM - 0x100000) / PAGE_SIZE as u64) as usize
    );
    assert_eq!(s.ignored_bytes, (0x4000_0000 - MAXMEM) + 0x1000_0000);
    assert!(fa.is_frame_free((MAXMEM - 4096) as u32));
}

fn unaligned_areas_keep_whole_frames_only() {
    let mut bits = small(1 << 20);
    let mut fa = FrameAllocator::new(&mut bits, 1 << 20);
    let s = fa.add_areas([(0x1800, 0x5000), (0x7fff, 0x8001)].into_iter());
    assert_eq!(s.usable_frames, 3, "only frames 2, 3, 4 are whole");
    assert!(fa.is_frame_free(0x2000) && fa.is_frame_free(0x4000));
    assert!(!fa.is_frame_free(0x1000) && !fa.is_frame_free(0x5000) && !fa.is_frame_free(0x7000));
}

fn reservations_split_areas() {
    let mut bits = small(1 << 24);
    let mut fa = FrameAllocator::new(&mut bits, 1 << 24);
    fa.add_areas([(0, 0x400000)].into_iter());
    fa.reserve(0, 0x1000);
    fa.reserve(0x100000, 0x180800); // ends mid-frame: that frame is reserved too
    assert_eq!(fa.nr_free(), 1024 - 1 - 0x81);
    assert!(!fa.is_frame_free(0x180000));
    assert!(fa.is_frame_free(0x181000));
}

fn exhaustion_is_none_and_double_free_refused() {
    let mut bits = small(1 << 20);
    let mut fa = FrameAllocator::new(&mut bits, 1 << 20);
    fa.add_areas([(0x10000, 0x12000)].into_iter());
    let a = fa.alloc().unwrap();
    let b = fa.alloc().unwrap();
    assert_eq!(fa.alloc(), None, "exhaustion must be None, not a panic");
    assert_eq!(fa.free(a), Ok(()));
    assert_eq!(fa.free(a), Err("double free of frame"));
    assert_eq!(fa.free(0x123), Err("free of unaligned frame"));
    assert_eq!(fa.free(0x200000), Err("free of unmanaged frame"));
    assert_eq!(fa.free(b), Ok(()));
    assert_eq!(fa.nr_free(), 2);
}

/// The boot heap comes from `alloc_contiguous`: the lowest run long enough,
/// never across a reserved frame, `None` (not a partial run) if none is.
fn contiguous_run_is_lowest_fit_and_skips_holes() {
    let mut bits = small(1 << 20);
    let mut fa = FrameAllocator::new(&mut bits, 1 << 20);
    fa.add_areas([(0x10000, 0x20000)].into_iter()); // frames 0x10..0x20
    fa.reserve(0x13000, 0x14000); // a hole: runs 0x10..0x13 and 0x14..0x20
    assert_eq!(fa.alloc_contiguous(4), Some(0x14000), "crossed the hole");
    assert_eq!(fa.alloc_contiguous(3), Some(0x10000));
    assert_eq!(fa.nr_free(), 16 - 1 - 4 - 3);
    assert!(!fa.is_frame_free(0x17000) && fa.is_frame_free(0x18000));
    assert_eq!(
        fa.alloc_contiguous(9),
        None,
        "only 8 frames are left in one run"
    );
    assert_eq!(fa.alloc_contiguous(0), None);
    assert_eq!(fa.alloc_contiguous(8), Some(0x18000));
    assert_eq!(fa.nr_free(), 0);
}

/// A usable area at 2^52 + 0x24b38 (from a fuzzed memory map): its first
/// frame number, 2^40 + 0x25, was cast to a 32-bit usize before it was
/// clamped, became 0x25, and frames 0x25..limit of low memory, holes and
/// all, were handed out as RAM.  Found by the fuzz suite
/// (`fuzz.bootinfo_mutated`); reservations had the same cast.
fn areas_above_16tib_stay_out_of_low_memory() {
    let mut bits = small(1 << 20);
    let mut fa = FrameAllocator::new(&mut bits, 1 << 20);
    let base = (1u64 << 52) + 0x24b38;
    let s = fa.add_areas([(base, base + 0x3d_5254), (1 << 44, (1 << 44) + (1 << 20))].into_iter());
    assert_eq!((s.usable_frames, fa.nr_free()), (0, 0), "low frames freed");
    assert_eq!(s.ignored_bytes, 0x3d_5254 + (1 << 20));

    fa.add_areas([(0, 1 << 20)].into_iter());
    fa.reserve(1 << 44, (1 << 44) + 0x5000);
    fa.reserve((1 << 44) - 0x1000, 1 << 44);
    assert_eq!(fa.nr_free(), 256, "low frames reserved");

    // The ignored total saturates rather than overflows.
    let s = fa.add_areas([(0, u64::MAX), (0, u64::MAX)].into_iter());
    assert_eq!(s.ignored_bytes, u64::MAX);
}

/// `is_reserved` at the edges of every range `init` kept: its first and
/// last byte are reserved, the frame just below and the one just past it
/// are not (unless another range holds them), and a frame the allocator
/// hands out never is.  (Mutation run, issue 12: a predicate that said
/// yes to everything passed `frame_zero_and_kernel_are_reserved`.)
fn reserved_ranges_have_exact_edges() {
    let (ranges, n) = frame::reserved_ranges();
    let ranges = &ranges[..n];
    assert!(n > 0, "no reservation recorded");
    let page = PAGE_SIZE as u64;
    let held = |pa: u64| ranges.iter().any(|&(s, e)| s < pa + page && pa < e);
    for &(s, e) in ranges {
        if e <= s || e > MAXMEM {
            continue;
        }
        assert!(
            frame::is_reserved(s as u32),
            "first byte {:#x} of {:#x}-{:#x}",
            s,
            s,
            e
        );
        assert!(
            frame::is_reserved((e - 1) as u32),
            "last byte {:#x} of {:#x}-{:#x}",
            e - 1,
            s,
            e
        );
        let below = (s & !(page - 1)).wrapping_sub(page);
        if s >= page && !held(below) {
            assert!(
                !frame::is_reserved(below as u32),
                "frame {:#x} below {:#x}-{:#x}",
                below,
                s,
                e
            );
            assert!(!frame::is_reserved((below + page / 2) as u32));
        }
        let past = (e + page - 1) & !(page - 1);
        if past < MAXMEM && !held(past) {
            assert!(
                !frame::is_reserved(past as u32),
                "frame {:#x} past {:#x}-{:#x}",
                past,
                s,
                e
            );
            assert!(!frame::is_reserved((past + page - 1) as u32));
        }
    }
    let f = frame::alloc_frame().expect("frame");
    let reserved = frame::is_reserved(f) || frame::is_reserved(f + PAGE_SIZE as u32 / 2);
    frame::free_frame(f);
    assert!(!reserved, "an allocated frame {:#x} counts as reserved", f);
}

/// The secondary CPUs' trampoline page is kept from the frame allocator
/// (smpboot copies code there whenever a CPU starts), and only that page.
fn trampoline_page_is_reserved() {
    use vmfault::arch::x86::trampoline::TRAMPOLINE_PHYS;
    let t = TRAMPOLINE_PHYS;
    assert!(frame::is_reserved(t), "the trampoline page is not reserved");
    assert!(!frame::is_frame_free(t), "the trampoline page is free");
    let (ranges, n) = frame::reserved_ranges();
    assert!(
        ranges[..n].contains(&(t as u64, t as u64 + PAGE_SIZE as u64)),
        "no reservation of exactly [{:#x}, {:#x})",
        t,
        t + PAGE_SIZE as u32
    );
}

/// The multiboot2 information is a reservation of its own, exactly its
/// bytes (the kernel keeps reading it: the command line, the tags), not
/// merely covered by whatever took the frames after the image.
fn boot_information_reserved_exactly() {
    let p = vmfault::boot::start::params().expect("boot params");
    let (s, e) = (
        p.info_phys as u64,
        p.info_phys as u64 + p.info.total_size() as u64,
    );
    let (ranges, n) = frame::reserved_ranges();
    assert!(
        ranges[..n].contains(&(s, e)),
        "no reservation of exactly [{:#x}, {:#x})",
        s,
        e
    );
}

/// The kernel heap is 1/16 of usable RAM, 1 to 8 MiB, page-aligned
/// (`heap::size_for`), and what paging_init gave it.
fn heap_is_a_sixteenth_of_usable_ram() {
    let usable = vmfault::boot::info::usable_bytes(vmfault::boot::start::params().unwrap().info);
    let (_, size) = vmfault::mm::heap::region();
    assert_eq!(
        size,
        vmfault::mm::heap::size_for(usable),
        "usable RAM {:#x}",
        usable
    );
    assert!((1 << 20..=8 << 20).contains(&size), "heap of {:#x}", size);
}
