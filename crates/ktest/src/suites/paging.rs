//! Both page-table formats: address splitting, the walker against real
//! loads and stores, the direct map, and `init_mm` / `mm_alloc`.

use crate::case;
use crate::skip;
use crate::Suite;
use vmfault::arch::x86::cpu;
use vmfault::fixup::expect_fault;
use vmfault::mm::addr::high_memory;
use vmfault::mm::addr::PhysAddr;
use vmfault::mm::addr::VirtAddr;
use vmfault::mm::addr::{__va, PAGE_OFFSET, PAGE_SIZE};
use vmfault::mm::frame;
use vmfault::mm::init::swapper_pg_dir;
use vmfault::mm::mm_struct::{init_mm, mm_alloc};
use vmfault::mm::pgtable::*;
use vmfault::mm::walk::{self, translate};
use vmfault::mm::PagingMode;

pub static SUITE: Suite = Suite {
    name: "paging",
    cases: &[
        case!(swapper_stack_has_a_guard_page_below),
        case!(two_level_address_split),
        case!(pae_address_split),
        case!(mode_matches_cmdline_and_cr4),
        case!(map_translate_unmap_agree_with_loads_and_stores),
        case!(direct_map_covers_all_ram),
        case!(new_mm_kernel_part_equals_swapper),
        case!(kernel_pmd_shared_only_in_pae),
        case!(new_kernel_pgd_slot_stale_only_in_two_level),
        case!(pdpt_change_reloads_cr3),
        case!(mm_alloc_free_1000_times_leaks_nothing),
        case!(two_level_pgd_present_is_folded),
        case!(map_refuses_a_mapped_page_and_unmap_spares_its_neighbour),
        case!(free_user_tables_clears_every_entry),
        case!(walk_reads_the_boot_directorys_large_pages),
        case!(walk_follows_no_table_outside_the_direct_map),
        case!(probe_and_readable_see_the_live_tables),
    ],
};

/// Hand-computed: 0xC8812345 = 11 0010001000 0000010010 001101000101.
fn two_level_address_split() {
    let g = TWO_LEVEL;
    let a = 0xC881_2345;
    assert_eq!(g.pgd_index(a), 0x322);
    assert_eq!(g.pmd_index(a), 0, "folded pmd has one entry");
    assert_eq!(g.pte_index(a), 0x012);
    assert_eq!(a & 0xfff, 0x345);
    assert_eq!(g.user_ptrs_per_pgd(), 768);
    assert_eq!(g.pgdir_size(), 4 << 20);
    assert_eq!(g.pgd_index(0xFFFF_FFFF), 1023);
}

/// Same address in PAE: 11 | 001000100 | 000010010 | 001101000101.
fn pae_address_split() {
    let g = PAE;
    let a = 0xC881_2345;
    assert_eq!(g.pgd_index(a), 3);
    assert_eq!(g.pmd_index(a), 0x044);
    assert_eq!(g.pte_index(a), 0x012);
    assert_eq!(g.user_ptrs_per_pgd(), 3);
    assert_eq!(g.pmd_size(), 2 << 20);
    assert_eq!(g.pmd_index(0xBFFF_FFFF), 511);
    assert_eq!(g.pgd_index(0x4000_0000), 1);
}

fn mode_matches_cmdline_and_cr4() {
    let want = vmfault::boot::start::params().unwrap().cmdline.paging;
    assert_eq!(mode(), want);
    let pae = cpu::read_cr4() & cpu::CR4_PAE != 0;
    assert_eq!(
        pae,
        want == PagingMode::Pae,
        "CR4.PAE disagrees with paging="
    );
    assert_eq!(PhysAddr::new(cpu::read_cr3_pa()), init_mm().pgd);
    assert_eq!(init_mm().pgd, swapper_pg_dir());
    // NX exists only in PAE entries: paging_init turns it on there, on a
    // CPU that has it, and nowhere else.
    assert_eq!(
        vmfault::mm::pgtable::nx_enabled(),
        want == PagingMode::Pae && cpu::features().nx,
        "NX enabled in the wrong mode"
    );
}

const USER_VA: u32 = 0x4000_0000;

fn map_translate_unmap_agree_with_loads_and_stores() {
    let mm = mm_alloc().expect("mm");
    let frame = mm.map_user_page(USER_VA + 0x3000).expect("map");
    let w = mm.translate(USER_VA + 0x3abc);
    assert_eq!(w.phys, Some(frame as u64 + 0xabc));
    let flags = w.pte.unwrap().flags();
    assert!(flags.contains(PteFlags::PRESENT | PteFlags::RW | PteFlags::USER));
    let old = cpu::read_cr3();
    // SAFETY: mm's directory maps the whole kernel.
    unsafe { vmfault::arch::x86::mmu::load_cr3((mm.pgd).as_u32()) };
    // SAFETY: just mapped; the direct-map alias is the same frame.
    unsafe {
        core::ptr::write_volatile((USER_VA + 0x3abc) as *mut u32, 0xdead_beef);
        assert_eq!(
            core::ptr::read_volatile((__va(frame) + 0xabc) as *const u32),
            0xdead_beef
        );
        core::ptr::write_volatile((__va(frame) + 0x10) as *mut u32, 0x1234_5678);
        assert_eq!(
            core::ptr::read_volatile((USER_VA + 0x3010) as *const u32),
            0x1234_5678
        );
    }
    assert!(mm.unmap_user_page(USER_VA + 0x3000));
    assert_eq!(mm.translate(USER_VA + 0x3000).phys, None);
    // SAFETY: faults on purpose inside a recovery point.
    let c = expect_fault(|| unsafe {
        core::ptr::read_volatile((USER_VA + 0x3010) as *const u32);
    })
    .expect("access after unmap did not fault");
    // SAFETY: back to the directory we came with.
    unsafe { vmfault::arch::x86::mmu::load_cr3(old) };
    assert_eq!((c.vector, c.cr2), (14, USER_VA + 0x3010));
}

fn direct_map_covers_all_ram() {
    let p = vmfault::boot::start::params().unwrap();
    let mut checked = 0;
    for (s, e) in vmfault::mm::init::usable_areas(p.info) {
        let e = e.min((high_memory() - PAGE_OFFSET) as u64);
        let first = s.div_ceil(PAGE_SIZE as u64);
        let last = e / PAGE_SIZE as u64;
        for pfn in [first, (first + last) / 2, last.saturating_sub(1)] {
            if pfn < first || pfn >= last {
                continue;
            }
            let pa = (pfn as u32) << 12;
            let w = translate(swapper_pg_dir(), VirtAddr::new(__va(pa) as u32));
            assert_eq!(w.phys, Some(pa as u64), "direct map of {:#x}", pa);
            // SAFETY: the translation exists (checked above).
            unsafe { core::ptr::read_volatile(__va(pa) as *const u32) };
            checked += 1;
        }
    }
    assert!(checked >= 3);
    assert_eq!(
        translate(swapper_pg_dir(), VirtAddr::new(high_memory() as u32)).phys,
        None,
        "mapped past high_memory"
    );
}

fn kernel_part(pgd: u32) -> (usize, usize) {
    let g = geometry();
    (
        __va(pgd) + g.user_ptrs_per_pgd() * g.entry_size,
        (g.ptrs_per_pgd - g.user_ptrs_per_pgd()) * g.entry_size,
    )
}

fn new_mm_kernel_part_equals_swapper() {
    let mm = mm_alloc().expect("mm");
    let (a, n) = kernel_part((mm.pgd).as_u32());
    let (b, _) = kernel_part((swapper_pg_dir()).as_u32());
    // SAFETY: both directories are live, direct-mapped pages.
    let (x, y) = unsafe {
        (
            core::slice::from_raw_parts(a as *const u8, n),
            core::slice::from_raw_parts(b as *const u8, n),
        )
    };
    assert!(x == y, "kernel part differs from swapper_pg_dir");
    assert_ne!(mm.pgd, swapper_pg_dir());
}

fn kernel_pmd_shared_only_in_pae() {
    let a = mm_alloc().expect("mm");
    let b = mm_alloc().expect("mm");
    let k = PAGE_OFFSET as u32;
    let (ea, eb) = (
        pgd_offset(a.pgd, VirtAddr::new(k)).read(),
        pgd_offset(b.pgd, VirtAddr::new(k)).read(),
    );
    match mode() {
        PagingMode::Pae => {
            assert_eq!(ea.phys(), eb.phys(), "kernel PMD page not shared");
            assert_eq!(
                ea.phys(),
                pgd_offset(swapper_pg_dir(), VirtAddr::new(k)).read().phys()
            );
        }
        PagingMode::TwoLevel => {
            assert_ne!(a.pgd, b.pgd);
            assert_eq!(ea, eb, "copied kernel PDEs should be equal");
            assert_ne!(
                pgd_offset(a.pgd, VirtAddr::new(k)).addr(),
                pgd_offset(b.pgd, VirtAddr::new(k)).addr(),
                "PGD pages shared"
            );
        }
    }
}

/// The premise of the seed: a kernel mapping made in `init_mm` after an
/// mm was created is missing from that mm in two-level mode (its PGD is a
/// copy) and visible at once in PAE (the kernel PMD page is shared).
fn new_kernel_pgd_slot_stale_only_in_two_level() {
    let before = mm_alloc().expect("mm");
    // A kernel address in a slot nothing uses yet: 4 MiB below 4 GiB.
    let va = 0xFF80_0000u32;
    assert_eq!(
        translate(swapper_pg_dir(), VirtAddr::new(va)).phys,
        None,
        "test slot in use"
    );
    let f = frame::alloc_zeroed_frame().expect("frame");
    walk::map_page(
        swapper_pg_dir(),
        VirtAddr::new(va),
        f as u64,
        PteFlags::PAGE_KERNEL,
    )
    .expect("map");
    let after = mm_alloc().expect("mm");
    let seen_before = before.translate(va).phys;
    let seen_after = after.translate(va).phys;
    // Undo: unmap, free the page and the page table the map created.
    if let Some((_, flush)) = walk::unmap_page(swapper_pg_dir(), VirtAddr::new(va)) {
        flush.flush();
    }
    frame::free_frame(f);
    let pmd = pmd_offset(
        pgd_offset(swapper_pg_dir(), VirtAddr::new(va)),
        VirtAddr::new(va),
    );
    frame::free_frame(pmd.read().phys() as u32);
    // The page's own entry was flushed above; the table held nothing else.
    pmd_clear(pmd).ignore();
    assert_eq!(
        seen_after,
        Some(f as u64),
        "mm created after the mapping lacks it"
    );
    match mode() {
        PagingMode::TwoLevel => assert_eq!(seen_before, None, "older mm saw a new PGD slot"),
        PagingMode::Pae => assert_eq!(seen_before, Some(f as u64), "shared kernel PMD not shared"),
    }
}

/// PAE: filling an empty PDPTE of the live directory must reload CR3: the
/// CPU loads the four PDPTEs into registers at CR3 load (SDM 3A 4.4.1),
/// hence `__flush_tlb()` after `set_pgd` in 2.4's `pmd_alloc`.  QEMU's TCG
/// does not model those registers (it reads the PDPTE from memory on
/// every walk), so a missing reload cannot be seen through the PDPTE.  It
/// can be seen through the reload's other effect, which TCG does model: a
/// CR3 write drops every non-global TLB entry.  So a stale translation is
/// left in the TLB on purpose, a new PDPTE is filled, and the stale
/// translation must be gone afterwards.
fn pdpt_change_reloads_cr3() {
    if mode() != PagingMode::Pae {
        skip("no PDPT in two-level mode");
    }
    const SECOND_VA: u32 = 0x8000_0000;
    let swapper = swapper_pg_dir();
    assert_eq!(PhysAddr::new(cpu::read_cr3_pa()), swapper);
    for va in [USER_VA, SECOND_VA] {
        assert!(
            !pgd_present(pgd_offset(swapper, VirtAddr::new(va)).read()),
            "PDPTE {} of init_mm in use",
            PAE.pgd_index(va)
        );
    }
    let [old, new, other] = [0xAAAA_0001u32, 0xBBBB_0002, 0xCCCC_0003].map(|marker| {
        let f = frame::alloc_zeroed_frame().expect("frame");
        // SAFETY: a fresh frame of ours, reached through the direct map.
        unsafe { core::ptr::write_volatile(__va(f) as *mut u32, marker) };
        f
    });
    let read = |va: u32| {
        // SAFETY: `va` is mapped below, to one of our frames.
        unsafe { core::ptr::read_volatile(va as *const u32) }
    };
    walk::map_page(
        swapper,
        VirtAddr::new(USER_VA),
        old as u64,
        PteFlags::PAGE_KERNEL,
    )
    .expect("map");
    assert_eq!(read(USER_VA), 0xAAAA_0001);
    // Repoint the pte without invlpg: the TLB keeps USER_VA -> old.
    let pte = walk::find_pte(swapper, VirtAddr::new(USER_VA)).expect("pte");
    set_pte(pte, mk_pte(new as u64, PteFlags::PAGE_KERNEL));
    let stale = read(USER_VA) == 0xAAAA_0001;
    // A new PDPTE (slot 2) in the live directory: pmd_alloc reloads CR3.
    walk::map_page(
        swapper,
        VirtAddr::new(SECOND_VA),
        other as u64,
        PteFlags::PAGE_KERNEL,
    )
    .expect("map");
    let after = read(USER_VA);
    assert_eq!(read(SECOND_VA), 0xCCCC_0003);
    let freed = walk::free_user_tables(swapper, true);
    cpu::flush_tlb();
    frame::free_frame(old);
    assert_eq!(freed, 6, "two pages, two PTE pages, two PMD pages");
    if !stale {
        skip("QEMU's TLB did not keep the stale translation, so a flush cannot be seen");
    }
    assert_eq!(
        after, 0xBBBB_0002,
        "new PDPTE without CR3 reload: the TLB still maps {:#x} to the old frame",
        USER_VA
    );
}

fn mm_alloc_free_1000_times_leaks_nothing() {
    let before = frame::nr_free_frames();
    let live = vmfault::mm::mm_struct::PGD_LIST.lock().len();
    for i in 0..1000u32 {
        let mm = mm_alloc().expect("mm_alloc failed");
        if i % 100 == 0 {
            mm.map_user_page(USER_VA + i * 4096).expect("map");
        }
    }
    assert_eq!(frame::nr_free_frames(), before, "frames leaked");
    assert_eq!(
        vmfault::mm::mm_struct::PGD_LIST.lock().len(),
        live,
        "pgd_list keeps dead mms"
    );
}

/// Linux 2.4 pgtable-2level.h: `pgd_present()` is 1 and `pmd_offset()`
/// is the pgd slot.  The historical fault handlers rely on this.
fn two_level_pgd_present_is_folded() {
    if mode() != PagingMode::TwoLevel {
        // PAE folds nothing: the kernel PDPTE is present and points to a
        // pmd page of its own; an empty user PDPTE is absent.
        let kpgd = pgd_offset(swapper_pg_dir(), VirtAddr::new(0xC000_0000));
        assert!(pgd_present(kpgd.read()), "kernel PDPTE absent");
        assert!(!pgd_none(kpgd.read()));
        let kpmd = pmd_offset(kpgd, VirtAddr::new(0xC000_0000));
        assert_ne!(
            kpmd.addr(),
            kpgd.addr(),
            "PAE pmd_offset folded onto the pgd slot"
        );
        assert_eq!(
            kpmd.addr(),
            __va(kpgd.read().phys() as u32),
            "pmd_offset does not index the page the PDPTE names"
        );
        let upgd = pgd_offset(swapper_pg_dir(), VirtAddr::new(USER_VA));
        assert!(pgd_none(upgd.read()), "user PDPTE of init_mm in use");
        assert!(!pgd_present(upgd.read()));
        return;
    }
    assert!(
        pgd_present(__pgd(0)),
        "two-level pgd_present must be constant 1"
    );
    assert!(!pgd_none(__pgd(0)));
    let pgd = pgd_offset(swapper_pg_dir(), VirtAddr::new(0xC000_0000));
    assert_eq!(
        pmd_offset(pgd, VirtAddr::new(0xC000_0000)).addr(),
        pgd.addr()
    );
    assert!(pmd_present(
        pmd_offset(pgd, VirtAddr::new(0xC000_0000)).read()
    ));
}

/// `map_page` refuses a page that is mapped already, and taking a page
/// down (`ptep_get_and_clear`) touches its own entry only: the entry next
/// to it keeps every bit, NX and the high half included.
fn map_refuses_a_mapped_page_and_unmap_spares_its_neighbour() {
    let mm = mm_alloc().expect("mm");
    // NX (in PAE with NX) gives the neighbour a high half to lose.
    let a = frame::alloc_zeroed_frame().expect("frame");
    walk::map_page(
        mm.pgd,
        VirtAddr::new(USER_VA),
        a as u64,
        PteFlags::PAGE_SHARED | PteFlags::NX,
    )
    .expect("map");
    let b = mm.map_user_page(USER_VA + 0x1000).expect("map");
    assert_eq!(
        walk::map_page(
            mm.pgd,
            VirtAddr::new(USER_VA),
            b as u64,
            PteFlags::PAGE_SHARED
        ),
        Err(walk::MapError::AlreadyMapped),
        "a mapped page was mapped again"
    );
    assert_eq!(mm.translate(USER_VA).phys, Some(a as u64));
    let pte = |va: u32| {
        walk::find_pte(mm.pgd, VirtAddr::new(va))
            .expect("pte")
            .read()
    };
    let before = pte(USER_VA);
    let unmapped = walk::unmap_page(mm.pgd, VirtAddr::new(USER_VA + 0x1000)).map(|(f, flush)| {
        flush.flush();
        f
    });
    assert_eq!(unmapped, Some(b as u64));
    frame::free_frame(b);
    assert!(
        pte_none(pte(USER_VA + 0x1000)),
        "the unmapped entry is not empty"
    );
    assert_eq!(
        pte(USER_VA),
        before,
        "unmapping a page changed its neighbour's entry"
    );
}

/// `free_user_tables` (an mm's teardown) clears the entries that pointed
/// to the tables it frees, so nothing can reach a freed page table.
fn free_user_tables_clears_every_entry() {
    let mm = mm_alloc().expect("mm");
    let far = USER_VA + (8 << 20); // another 4 MiB slot, another 2 MiB pmd
    mm.map_user_page(USER_VA).expect("map");
    mm.map_user_page(far).expect("map");
    let freed = walk::free_user_tables(mm.pgd, true);
    assert!(freed >= 4, "{} frames freed", freed);
    for va in [USER_VA, far] {
        let w = mm.translate(va);
        assert_eq!(w.phys, None);
        match mode() {
            PagingMode::TwoLevel => assert!(
                pmd_none(
                    pmd_offset(pgd_offset(mm.pgd, VirtAddr::new(va)), VirtAddr::new(va)).read()
                ),
                "the pde of {:#x} still points to a freed page table",
                va
            ),
            PagingMode::Pae => assert!(
                pgd_none(w.pgd),
                "the pdpte of {:#x} still points to a freed pmd page",
                va
            ),
        }
    }
}

extern "C" {
    static boot_pgdir: u8;
}

/// A 4 MiB PSE entry (the boot directory head.S-style entry.s builds):
/// the walk adds the offset inside the large page to its frame.
fn walk_reads_the_boot_directorys_large_pages() {
    if is_pae() {
        crate::skip("the boot directory is a two-level one; this kernel runs PAE tables");
    }
    // SAFETY: only the symbol's address is taken.
    let dir = vmfault::mm::addr::__pa(unsafe { &boot_pgdir as *const u8 as usize });
    for va in [0xC123_4567u32, 0xC000_0FFF, 0xC3FF_FFFC] {
        let w = vmfault::mm::walk::translate(PhysAddr::new(dir), VirtAddr::new(va));
        assert_eq!(w.pte, None, "{:#x}: a large page has no pte", va);
        assert_eq!(
            w.phys,
            Some((va - 0xC000_0000) as u64),
            "{:#x} through the boot directory",
            va
        );
    }
}

/// An entry that points outside the direct map (a corrupt or foreign
/// table) is reported, never followed; one just at its end neither.
fn walk_follows_no_table_outside_the_direct_map() {
    use vmfault::mm::walk;
    let mm = mm_alloc().expect("mm");
    let va = 0x1000_0000u32;
    assert!(
        walk::find_pte(mm.pgd, VirtAddr::new(va)).is_none(),
        "a pte slot under an empty pmd"
    );
    let end = vmfault::mm::addr::__pa(vmfault::mm::addr::high_memory()) as u64;
    let pmd = pmd_offset(pgd_offset(mm.pgd, VirtAddr::new(va)), VirtAddr::new(va));
    for table in [end, 0xF000_0000] {
        set_pmd(pmd, mk_pmd(table, PteFlags::PAGE_TABLE));
        let w = walk::translate(mm.pgd, VirtAddr::new(va));
        assert_eq!(
            (w.pte, w.phys),
            (None, None),
            "followed a table at {:#x}",
            table
        );
    }
    // A directory no CPU runs on, about to be freed.
    pmd_clear(pmd).ignore();
    drop(mm);
}

/// `probe` walks the live tables (CR3), as the oops report's `*pde =`
/// lines do, and `readable` says whether 4 bytes can be read there: both
/// must agree with a walk of the same directory and with what faults.
fn probe_and_readable_see_the_live_tables() {
    static WORD: u32 = 0x5eed;
    let here = &WORD as *const u32 as u32;
    assert_eq!(
        walk::probe(here).phys,
        translate(PhysAddr::new(cpu::read_cr3_pa()), VirtAddr::new(here)).phys
    );
    assert_eq!(
        walk::probe(here).phys,
        Some(vmfault::mm::addr::__pa(here as usize) as u64)
    );
    assert!(walk::readable(here));
    assert!(
        walk::probe(0x1000).phys.is_none() && !walk::readable(0x1000),
        "the first pages are unmapped"
    );
    // A vmalloc page followed by its guard page: its last word is
    // readable, a word straddling into the guard page is not.
    let p = vmfault::mm::vmalloc::vmalloc(PAGE_SIZE)
        .expect("vmalloc")
        .as_ptr() as u32;
    let last = p + PAGE_SIZE as u32 - 4;
    let (ok_last, straddle, guard) = (
        walk::readable(last),
        walk::readable(last + 1),
        walk::readable(p + PAGE_SIZE as u32),
    );
    let _ = vmfault::mm::vmalloc::vfree(p as *const u8);
    assert!(ok_last, "the page's last word at {:#x}", last);
    assert!(
        !straddle,
        "a word running into the guard page at {:#x}",
        last + 1
    );
    assert!(!guard, "the guard page at {:#x}", p + PAGE_SIZE as u32);
}

/// Swapper's stack (boot/entry.s) as `boot_stack` gives it holds the stack
/// this suite runs on, and the page below it is out of the direct map: an
/// overflow there double-faults into a report instead of running into
/// the boot page directory.
fn swapper_stack_has_a_guard_page_below() {
    let (bottom, top) = vmfault::mm::init::boot_stack();
    let esp: u32;
    // SAFETY: reads the stack pointer.
    unsafe { core::arch::asm!("mov {}, esp", out(reg) esp) };
    if vmfault::sched::current().pid != 0 {
        skip("not running on swapper's stack");
    }
    assert!(
        bottom < top && top - bottom >= 16 * 1024,
        "{:#x}-{:#x}",
        bottom,
        top
    );
    assert!(
        (bottom..top).contains(&esp),
        "esp {:#x} outside {:#x}-{:#x}",
        esp,
        bottom,
        top
    );
    assert!(
        vmfault::mm::walk::readable(bottom),
        "the stack's lowest page is not mapped"
    );
    assert!(
        !vmfault::mm::walk::readable(bottom - PAGE_SIZE as u32),
        "the page below swapper's stack is mapped"
    );
}
