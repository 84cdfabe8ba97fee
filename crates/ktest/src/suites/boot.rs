//! The boot information as the kernel received and parsed it, and the
//! parser's handling of blocks a broken loader could hand over.

use multiboot2::MemoryAreaType;

use crate::case;
use crate::Suite;
use vmfault::boot::info::{self, BootInfoError, MULTIBOOT2_BOOTLOADER_MAGIC};
use vmfault::boot::start::params;

pub static SUITE: Suite = Suite {
    name: "boot",
    cases: &[
        case!(memory_map_nonempty_and_sorted),
        case!(usable_ram_matches_basic_meminfo),
        case!(kernel_image_in_usable_ram),
        case!(boot_loader_is_grub),
        case!(cmdline_reparses_to_boot_params),
        case!(wrong_magic_rejected),
        case!(truncated_info_rejected),
        case!(misaligned_info_rejected),
        case!(info_without_memory_map_rejected),
        case!(total_size_beyond_readable_rejected),
        case!(info_outside_boot_mapping_rejected),
        case!(bad_cmdline_tag_rejected),
        case!(malformed_tags_refused_with_message),
        case!(well_formed_tags_read_back),
        case!(overlapping_huge_areas_sum_saturates),
        case!(symbol_tables_outside_direct_map_refused),
        case!(symbols_name_kernel_functions),
        case!(tsc_calibrated_against_the_pit),
        case!(printk_ratelimit_allows_a_burst_then_counts),
    ],
};

fn p() -> &'static vmfault::BootParams {
    params().expect("boot params")
}

fn memory_map_nonempty_and_sorted() {
    let areas = p().info.memory_map_tag().unwrap().memory_areas();
    assert!(!areas.is_empty(), "empty memory map");
    assert!(areas.iter().any(|a| a.typ() == MemoryAreaType::Available));
    for w in areas.windows(2) {
        assert!(
            w[0].end_address() <= w[1].start_address(),
            "areas overlap or are unsorted: {:x?} {:x?}",
            w[0],
            w[1]
        );
    }
}

/// The memory map's usable total must agree with the loader's basic
/// memory info (lower + upper, in KiB): at least the upper memory, at
/// most everything below 4 GiB.
fn usable_ram_matches_basic_meminfo() {
    let usable = info::usable_bytes(p().info);
    let basic = p().info.basic_memory_info_tag().expect("basic meminfo tag");
    let upper = basic.memory_upper() as u64 * 1024;
    let lower = basic.memory_lower() as u64 * 1024;
    assert!(usable >= upper, "usable {} < upper {}", usable, upper);
    assert!(
        usable <= upper + lower + (1 << 20) + (3u64 << 30),
        "usable {} implausible",
        usable
    );
    assert!(usable >= 16 << 20, "less than 16 MiB usable: {}", usable);
}

fn kernel_image_in_usable_ram() {
    extern "C" {
        static __kernel_phys_start: u8;
        static __kernel_phys_end: u8;
    }
    // SAFETY: linker symbols; only their addresses are used.
    let (s, e) = unsafe {
        (
            &__kernel_phys_start as *const u8 as u64,
            &__kernel_phys_end as *const u8 as u64,
        )
    };
    assert_eq!(s, 0x10_0000, "kernel not loaded at 1 MiB");
    let areas = p().info.memory_map_tag().unwrap().memory_areas();
    assert!(
        areas.iter().any(|a| a.typ() == MemoryAreaType::Available
            && a.start_address() <= s
            && e <= a.end_address()),
        "kernel image {:#x}-{:#x} outside usable RAM",
        s,
        e
    );
}

fn boot_loader_is_grub() {
    let name = p()
        .info
        .boot_loader_name_tag()
        .expect("no loader name")
        .name()
        .unwrap();
    assert!(name.starts_with("GRUB"), "loader is {:?}", name);
}

fn cmdline_reparses_to_boot_params() {
    let again = vmfault::cmdline::parse(p().raw_cmdline, &mut |_| {}).expect("boot cmdline parses");
    assert_eq!(again, p().cmdline);
}

#[repr(C, align(8))]
struct Block([u8; 256]);

fn block(words: &[u32]) -> Block {
    let mut b = Block([0; 256]);
    for (i, w) in words.iter().enumerate() {
        b.0[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
    }
    b
}

fn wrong_magic_rejected() {
    let b = block(&[16, 0, 0, 8]);
    // SAFETY: the block is 64 readable bytes.
    let r = unsafe { info::load(0x2BAD_B002, b.0.as_ptr() as usize, 64) };
    assert!(
        matches!(r, Err(BootInfoError::BadMagic(0x2BAD_B002))),
        "{:?}",
        r.err()
    );
    let msg = alloc_free_fmt(&r.err().unwrap());
    assert!(
        msg.as_str().contains("not booted by a multiboot2 loader"),
        "{}",
        msg
    );
}

/// A header claiming 24 bytes whose last tag is not the end tag.
fn truncated_info_rejected() {
    let b = block(&[24, 0, 1, 16, 0, 0]);
    // SAFETY: as above.
    let r = unsafe { info::load(MULTIBOOT2_BOOTLOADER_MAGIC, b.0.as_ptr() as usize, 64) };
    assert!(matches!(r, Err(BootInfoError::Load(_))), "{:?}", r.err());
    let msg = alloc_free_fmt(&r.err().unwrap());
    assert!(
        msg.as_str().starts_with("malformed boot information"),
        "{}",
        msg
    );
}

fn misaligned_info_rejected() {
    let b = block(&[16, 0, 0, 8, 0]);
    // SAFETY: as above; the pointer stays inside the block.
    let r = unsafe { info::load(MULTIBOOT2_BOOTLOADER_MAGIC, b.0.as_ptr() as usize + 4, 60) };
    assert!(
        matches!(r, Err(BootInfoError::Misaligned(_))),
        "{:?}",
        r.err()
    );
}

/// Well formed (header + end tag) but no memory map: unusable for a kernel.
fn info_without_memory_map_rejected() {
    let b = block(&[16, 0, 0, 8]);
    // SAFETY: as above.
    let r = unsafe { info::load(MULTIBOOT2_BOOTLOADER_MAGIC, b.0.as_ptr() as usize, 64) };
    assert!(
        matches!(r, Err(BootInfoError::NoMemoryMap)),
        "{:?}",
        r.err()
    );
}

/// The header's total_size is input too: a size past what is mapped is
/// refused before the crate walks the tags.
fn total_size_beyond_readable_rejected() {
    let b = block(&[0xffff_fff8, 0, 0, 8]);
    // SAFETY: 64 readable bytes; load reads only the header before
    // refusing.
    let r = unsafe { info::load(MULTIBOOT2_BOOTLOADER_MAGIC, b.0.as_ptr() as usize, 64) };
    assert!(
        matches!(
            r,
            Err(BootInfoError::TooLarge {
                total_size: 0xffff_fff8,
                readable: 64
            })
        ),
        "{:?}",
        r.err()
    );
    let msg = alloc_free_fmt(&r.err().unwrap());
    assert!(msg.as_str().contains("4294967288"), "{}", msg);
    // SAFETY: as above; fewer than 8 readable bytes is refused unread.
    let r = unsafe { info::load(MULTIBOOT2_BOOTLOADER_MAGIC, b.0.as_ptr() as usize, 4) };
    assert!(
        matches!(r, Err(BootInfoError::Unreadable(4))),
        "{:?}",
        r.err()
    );
}

fn info_outside_boot_mapping_rejected() {
    let r = info::load_boot(MULTIBOOT2_BOOTLOADER_MAGIC, info::BOOT_MAPPED);
    assert!(
        matches!(r, Err(BootInfoError::OutsideBootMapping(0x4000_0000))),
        "{:?}",
        r.err()
    );
    // The magic is checked first: with a wrong one the address is noise.
    let r = info::load_boot(0, 0xffff_fff0);
    assert!(
        matches!(r, Err(BootInfoError::BadMagic(0))),
        "{:?}",
        r.err()
    );
}

/// A command-line tag without its NUL, or not UTF-8, stops the boot with
/// a message (`start_kernel` prints it) rather than a garbled parse.
fn bad_cmdline_tag_rejected() {
    for (word, why) in [
        (u32::from_le_bytes(*b"a\xff\0c"), "not valid UTF-8"),
        (u32::from_le_bytes(*b"abcd"), "not null terminated"),
    ] {
        // Header, cmdline tag of 12 bytes (4 of text), memory map tag
        // with no entries, end tag.
        let b = block(&[48, 0, 1, 12, word, 0, 6, 16, 24, 0, 0, 8]);
        // SAFETY: as above.
        let i = unsafe { info::load(MULTIBOOT2_BOOTLOADER_MAGIC, b.0.as_ptr() as usize, 64) }
            .expect("well framed");
        let e = info::boot_cmdline(&i).expect_err("bad string accepted");
        assert!(matches!(e, BootInfoError::BadCmdline(_)), "{:?}", e);
        let msg = alloc_free_fmt(&e);
        assert!(msg.as_str().contains(why), "{}", msg);
    }
}

/// A block of a header, `tags` (whole words, each tag padded to 8
/// bytes) and the end tag.
fn with_tags(tags: &[u32]) -> Block {
    let mut w = [0u32; 64];
    let n = tags.len();
    w[0] = (n as u32 + 4) * 4;
    w[2..2 + n].copy_from_slice(tags);
    w[n + 3] = 8;
    block(&w[..n + 4])
}

/// Tags whose framing is right but whose fields the multiboot2 crate
/// would `assert!` on (or overflow with) once the kernel reads them.
/// Found by the fuzz suite (`fuzz.bootinfo_*`); each must be refused at
/// load with a message naming the tag and the bad value.
fn malformed_tags_refused_with_message() {
    const MMAP: [u32; 4] = [6, 16, 24, 0];
    let cases: [(&[u32], &str); 10] = [
        (
            &[6, 20, 24, 0, 0xdead, 0],
            "tag 6 (memory map) of 20 bytes has size 20",
        ),
        (&[6, 16, 0, 0], "has entry_size 0 (expected 24)"),
        (
            &[6, 40, 24, 0, 0xffff_f000, 0xffff_ffff, 0x2000, 0, 1, 0],
            "memory map entry 0 at 0xfffffffffffff000 of length 0x2000",
        ),
        (
            &[4, 24, 639, 0x1f000, 0, 0, 6, 16, 24, 0],
            "tag 4 (basic memory information) of 24 bytes has size 24 (expected 16)",
        ),
        (&[4, 8, 6, 16, 24, 0], "has size 8 (expected 16)"),
        (
            &[3, 12, 0x1000, 0],
            "tag 3 (module) of 12 bytes has size 12",
        ),
        (&[3, 17, 0x2000, 0x1000, 0, 0], "has mod_end 4096"),
        (
            &[9, 20, 0, 64, 0, 0],
            "tag 9 (ELF sections) of 20 bytes has entsize 64",
        ),
        (&[9, 20, 0, 7, 0, 0], "has entsize 7"),
        (&[9, 16, 0, 40], "has size 16 (expected at least 20)"),
    ];
    for (tags, want) in cases {
        let mut t = [0u32; 16];
        t[..tags.len()].copy_from_slice(tags);
        t[tags.len()..tags.len() + 4].copy_from_slice(&MMAP);
        let b = with_tags(&t[..tags.len() + 4]);
        // SAFETY: 128 readable bytes.
        let r = unsafe { info::load(MULTIBOOT2_BOOTLOADER_MAGIC, b.0.as_ptr() as usize, 128) };
        let e = r.err().unwrap_or_else(|| panic!("{:x?} accepted", tags));
        assert!(
            matches!(
                e,
                BootInfoError::BadTag { .. } | BootInfoError::BadMemoryArea { .. }
            ),
            "{:?}",
            e
        );
        let msg = alloc_free_fmt(&e);
        assert!(msg.as_str().contains(want), "{:x?}: {}", tags, msg);
    }
}

/// The same tags, well formed, load and read back through the crate.
fn well_formed_tags_read_back() {
    let b = with_tags(&[
        3, 17, 0x1000, 0x2000, 0, 0, // module 0x1000-0x2000, empty cmdline
        4, 16, 639, 0x1f000, // basic meminfo
        6, 40, 24, 0, 0, 0, 0x9fc00, 0, 1, 0, // one usable area
        9, 20, 0, 40, 0, 0, // no ELF sections
    ]);
    // SAFETY: 128 readable bytes.
    let i = unsafe { info::load(MULTIBOOT2_BOOTLOADER_MAGIC, b.0.as_ptr() as usize, 128) }
        .expect("well formed");
    let m = i.module_tags().next().expect("module");
    assert_eq!((m.start_address(), m.end_address()), (0x1000, 0x2000));
    assert_eq!(i.basic_memory_info_tag().unwrap().memory_lower(), 639);
    assert_eq!(info::usable_bytes(&i), 0x9fc00);
    assert_eq!(i.elf_sections_tag().unwrap().sections().count(), 0);
}

/// Two overlapping usable areas of almost 2^64 bytes each: each is
/// valid, their sum is not a u64.  Found by the fuzz suite: the boot
/// log's `Usable RAM` line overflowed (a panic in a debug kernel).
fn overlapping_huge_areas_sum_saturates() {
    let b = with_tags(&[
        6,
        64,
        24,
        0, // memory map, two entries
        0,
        0,
        0xffff_0000,
        0xffff_ffff,
        1,
        0, // [0, 2^64 - 2^16) usable
        0x1000,
        0,
        0xffff_0000,
        0xffff_ffff,
        1,
        0, // the same, 4 KiB on
    ]);
    // SAFETY: 128 readable bytes.
    let i = unsafe { info::load(MULTIBOOT2_BOOTLOADER_MAGIC, b.0.as_ptr() as usize, 128) }
        .expect("well formed");
    assert_eq!(info::usable_bytes(&i), u64::MAX);
}

/// An ELF-sections tag naming a .symtab at physical 0xc013a528 (a
/// kernel virtual address where the physical one belongs).  Found by the
/// fuzz suite: `symbols::init` took `__va` of it, which overflows (a panic
/// in the debug kernel, a wild pointer in a release one).  Now it is
/// refused with a reason, and the boot goes on without symbols.
fn symbol_tables_outside_direct_map_refused() {
    for (symtab, ok) in [
        (0x0020_0000, true),
        (0xc013_a528, false),
        (0x37ff_ff00, false),
    ] {
        let mut t = [0u32; 40];
        t[..5].copy_from_slice(&[9, 140, 3, 40, 0]); // 3 ELF32 section headers
                                                     // [1] .symtab -> sh_link 2, [2] .strtab: name, type, flags, addr,
                                                     // offset, size, link, info, addralign, entsize.
        t[15..25].copy_from_slice(&[1, 2, 0, symtab, 0, 0x200, 2, 0, 4, 16]);
        t[25..35].copy_from_slice(&[9, 3, 0, 0x0030_0000, 0, 0x100, 0, 0, 1, 0]);
        t[36..40].copy_from_slice(&[6, 16, 24, 0]);
        let b = with_tags(&t);
        // SAFETY: 256 readable bytes.
        let i = unsafe { info::load(MULTIBOOT2_BOOTLOADER_MAGIC, b.0.as_ptr() as usize, 256) }
            .expect("well formed");
        let r = vmfault::symbols::find_tables(&i);
        if ok {
            assert_eq!(r.map(|t| t.symtab), Ok((symtab, 0x200)));
        } else {
            assert_eq!(
                r,
                Err(".symtab or its string table lies outside the direct map")
            );
        }
    }
}

fn symbols_name_kernel_functions() {
    assert!(
        vmfault::symbols::loaded(),
        "no symbol table: oops reports would show raw addresses"
    );
    let f = symbols_name_kernel_functions as *const () as u32;
    let s = vmfault::symbols::lookup(f + 1).expect("own address resolves");
    let mut buf = vmfault::fixed_buf::FixedBuf::<200>::new();
    let _ = core::fmt::Write::write_fmt(&mut buf, format_args!("{}", s));
    assert!(
        buf.as_str().contains("symbols_name_kernel_functions+0x1/"),
        "{}",
        buf
    );
    let (addr, _) = vmfault::symbols::lookup_name("start_kernel").expect("start_kernel by name");
    assert_eq!(vmfault::symbols::lookup(addr).map(|s| s.addr), Some(addr));
}

fn alloc_free_fmt(e: &BootInfoError) -> vmfault::fixed_buf::FixedBuf<200> {
    let mut b = vmfault::fixed_buf::FixedBuf::new();
    let _ = core::fmt::Write::write_fmt(&mut b, format_args!("{}", e));
    b
}

/// The TSC rate was measured at boot (the clock printk_ratelimit needs),
/// it is plausible for a TSC (TCG follows the host's: 10 MHz to 100 GHz),
/// and the clock moves forward across 10 ms of PIT channel 2.  No timing
/// is compared: under a loaded host a second measurement can differ a lot.
fn tsc_calibrated_against_the_pit() {
    use vmfault::arch::x86::{pit, tsc};
    let per_ms = tsc::cycles_per_ms();
    assert!(
        (10_000..100_000_000).contains(&per_ms),
        "TSC at {} kHz",
        per_ms
    );
    let before = tsc::now_ms().expect("no clock after boot");
    let cycles = pit::time_tsc_over_ms(10);
    let after = tsc::now_ms().expect("no clock after boot");
    assert!(cycles > 0, "the TSC stood still over a PIT gate");
    assert!(
        after >= before,
        "the clock went back: {} -> {}",
        before,
        after
    );
}

/// 100 messages in a row: at most a burst of 10 pass (fewer if earlier
/// output spent tokens), and every refused one is counted, so the next
/// message let through can say how many were suppressed.
fn printk_ratelimit_allows_a_burst_then_counts() {
    use vmfault::console::{printk_ratelimit, ratelimit_missed};
    let missed_before = ratelimit_missed();
    let passed = (0..100).filter(|_| printk_ratelimit()).count() as u64;
    assert!(passed <= 10, "{} of 100 passed in a burst", passed);
    // A message that passed after a suppression reset the count; count
    // only what came after the last one that passed.
    let missed = ratelimit_missed();
    assert!(missed >= 1, "nothing suppressed ({} passed)", passed);
    assert!(
        missed <= 100 - passed + missed_before,
        "{} missed, {} passed",
        missed,
        passed
    );
}
