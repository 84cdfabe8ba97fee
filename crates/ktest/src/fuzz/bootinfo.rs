//! The boot-information fuzz targets: valid multiboot2 blocks with one
//! rule broken (while building, or in the bytes afterwards), and blocks of
//! random tags.  Each goes through `boot::info::load` as the boot calls it;
//! what `load` accepts goes on through what `start_kernel` and
//! `paging_init` do with it: the boot log (`report`), the command line
//! (`boot_cmdline`, `cmdline::parse`), the frame allocator fed with
//! `usable_areas` minus `reserved_ranges`, and `symbols::find_tables`.
//!
//! What must hold: a well-formed block loads; a block broken in a way the
//! boot must refuse is refused, with a message naming the bad number where
//! there is one; no panic or exception; exactly the whole frames of usable
//! areas not touching a reserved range are free; symbol tables lie inside
//! the direct map.

use core::fmt::{self, Write};

use multiboot2::BootInformation;

use super::cmdline::{check_bad_value, gen_token_soup};
use super::mb2_block::*;
use super::text::Text;
use super::{Target, Verdict};
use vmfault::boot::info::{self, BootInfoError, MULTIBOOT2_BOOTLOADER_MAGIC};
use vmfault::cmdline::parse;
use vmfault::fixed_buf::FixedBuf;
use vmfault::mm::addr::{MAXMEM, PAGE_SIZE};
use vmfault::mm::frame::FrameAllocator;
use vmfault::println;
use vmfault::rand::Rng;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Expect {
    /// Well formed: `load` must take it.
    Accept,
    /// Malformed in a way the boot must refuse.
    Reject,
    /// Anything but a panic or an exception.
    Either,
}

pub struct Mb2 {
    block: Block,
    /// Bytes `load` is told it may read.
    readable: usize,
    expect: Expect,
    /// What was done to the block.
    pub what: &'static str,
    /// A number the refusal must mention (in decimal or hexadecimal).
    needle: Option<u64>,
    /// Where the builder put the tags (the end tag is not listed).
    tags: [TagPos; MAX_TAGS],
    ntags: usize,
}

impl Mb2 {
    pub const fn new() -> Self {
        Mb2 {
            block: Block::new(),
            readable: BLOCK_BYTES,
            expect: Expect::Accept,
            what: "",
            needle: None,
            tags: [TagPos { off: 0, typ: 0 }; MAX_TAGS],
            ntags: 0,
        }
    }

    /// The header's total size, clamped to the buffer.
    fn total(&self) -> usize {
        (self.block.u32_at(0) as usize).min(BLOCK_BYTES)
    }

    fn find(&self, typ: u32) -> Option<usize> {
        self.tags[..self.ntags]
            .iter()
            .find(|t| t.typ == typ)
            .map(|t| t.off)
    }

    fn any_tag(&self, rng: &mut Rng) -> Option<usize> {
        (self.ntags > 0).then(|| self.tags[rng.below(self.ntags)].off)
    }
}

impl Default for Mb2 {
    fn default() -> Self {
        Self::new()
    }
}

/// Where the fuzzer pretends GRUB put the block (for the reserved
/// ranges): inside the frames the small allocator below manages.
const FAKE_PHYS: u32 = 0x9000;
/// Frames of the small allocator: 1 MiB, so that BIOS-shaped maps, the
/// block and modules land inside it.
const FRAMES: usize = 256;

/// QEMU's map as GRUB reports it (the boot log's `mb2:` lines).
const BIOS_MAP: [(u64, u64, u32); 6] = [
    (0, 0x9fc00, 1),
    (0x9fc00, 0x400, 2),
    (0xf0000, 0x10000, 2),
    (0x10_0000, 0x7ee_0000, 1),
    (0x7fe_0000, 0x2_0000, 2),
    (0xfffc_0000, 0x4_0000, 2),
];

/// How the otherwise valid block is built: each knob breaks one rule of
/// the specification, or of the tags the kernel reads.
#[derive(Clone, Copy, Default)]
struct Shape {
    no_mmap: bool,
    /// Bytes appended to the memory map tag after its entries.
    mmap_trailing: usize,
    /// The memory map tag cut to 8 or 12 bytes (no entry_size/version).
    mmap_short: Option<u32>,
    /// One area whose base + length overflows 64 bits.
    overflow_area: bool,
    meminfo_size: Option<u32>,
    module_backwards: bool,
    module_short: Option<u32>,
    elf_entsize: Option<u32>,
    elf_short: Option<u32>,
    /// Random bytes (no NUL, bad UTF-8) in the command-line tag.
    cmdline_bytes: bool,
    /// A second memory map and command line.
    duplicates: bool,
}

/// A block as a loader could hand it over, tags in random order, with
/// the rule `shape` names broken; returns the number that breaks it.
fn build(rng: &mut Rng, m: &mut Mb2, shape: Shape) -> Option<u64> {
    let mut order = [0u8; 12];
    let mut n = 0;
    let mut add = |k: u8| {
        order[n] = k;
        n += 1;
    };
    if !shape.no_mmap {
        add(0);
    }
    if rng.chance(80) || shape.cmdline_bytes {
        add(1);
    }
    if rng.chance(70) {
        add(2);
    }
    if rng.chance(50) || shape.meminfo_size.is_some() {
        add(3);
    }
    if rng.chance(30) || shape.module_backwards || shape.module_short.is_some() {
        add(4);
    }
    if rng.chance(50) || shape.elf_entsize.is_some() || shape.elf_short.is_some() {
        add(5);
    }
    for _ in 0..rng.below(3) {
        add(6);
    }
    if shape.duplicates {
        add(0);
        add(1);
    }
    // Fisher-Yates: the specification fixes no tag order.
    for i in (1..n).rev() {
        order.swap(i, rng.below(i + 1));
    }
    let mut needle = None;
    let mut b = Builder::new(&mut m.block);
    for &k in &order[..n] {
        let broke = match k {
            0 => mmap_tag(rng, &mut b, shape),
            1 => {
                cmdline_tag(rng, &mut b, shape.cmdline_bytes);
                None
            }
            2 => {
                let name = *rng.pick(&[&b"GRUB 2.06-13+deb12u2"[..], b"vmfault fuzz", b""]);
                b.string_tag(TAG_LOADER_NAME, name);
                None
            }
            3 => {
                // mem_lower, mem_upper in KiB: 16 bytes in all.
                let size = shape.meminfo_size.unwrap_or(16);
                b.begin_tag(TAG_BASIC_MEMINFO);
                for i in 0..(size as usize - 8) / 4 {
                    b.u32(if i == 0 { 639 } else { rng.next_u32() >> 12 });
                }
                b.end_tag();
                shape.meminfo_size.map(|s| s as u64)
            }
            4 => module_tag(rng, &mut b, shape),
            5 => elf_tag(rng, &mut b, shape),
            _ => {
                // A tag the kernel never reads, well framed.
                let typ = *rng.pick(&[5, 7, 8, 10, 14, 15, 21, 0x1234, 0xffff_ffff]);
                let mut raw = [0u8; 48];
                let len = rng.range(0, raw.len());
                rng.fill(&mut raw[..len]);
                b.tag(typ, &raw[..len]);
                None
            }
        };
        needle = needle.or(broke);
    }
    m.ntags = b.ntags;
    m.tags = b.tags;
    b.finish();
    m.readable = BLOCK_BYTES;
    needle
}

fn cmdline_tag(rng: &mut Rng, b: &mut Builder, raw_bytes: bool) {
    if raw_bytes {
        let mut raw = [0u8; 48];
        let len = rng.range(0, raw.len());
        rng.fill(&mut raw[..len]);
        b.tag(TAG_CMDLINE, &raw[..len]);
    } else {
        let mut t = Text::new();
        gen_token_soup(rng, &mut t);
        t.truncate(160);
        b.string_tag(TAG_CMDLINE, &t.buf[..t.len]);
    }
}

/// An area anywhere: mostly in the first 2 MiB at any byte, else
/// somewhere in the 64-bit space (above 4 GiB, above 16 TiB, ...), of
/// any length that does not overflow.
fn random_area(rng: &mut Rng) -> (u64, u64, u32) {
    let base = match rng.below(10) {
        0..=5 => {
            let b = rng.below(2 << 20) as u64;
            if rng.chance(50) {
                b & !0xfff
            } else {
                b
            }
        }
        6..=7 => (1u64 << rng.range(20, 63)) | rng.below(1 << 20) as u64,
        _ => rng.next_u64() >> rng.below(64),
    };
    let room = u64::MAX - base;
    let len = match rng.below(4) {
        0 => 0,
        1 => rng.below(1 << 20) as u64,
        2 => rng.next_u64() >> rng.range(0, 63),
        _ => room - (rng.below(16) as u64).min(room),
    }
    .min(room);
    let typ = if rng.chance(50) {
        1
    } else {
        rng.range(0, 6) as u32
    };
    (base, len, typ)
}

fn mmap_tag(rng: &mut Rng, b: &mut Builder, shape: Shape) -> Option<u64> {
    b.begin_tag(TAG_MMAP);
    if let Some(size) = shape.mmap_short {
        if size >= 12 {
            b.u32(MMAP_ENTRY);
        }
        b.end_tag();
        return Some(size as u64);
    }
    b.u32(MMAP_ENTRY);
    b.u32(0);
    let n = rng.range(shape.overflow_area as usize, 10);
    let bad = rng.below(n.max(1));
    let bios = rng.chance(40);
    let mut needle = None;
    for i in 0..n {
        let (base, len, typ) = if shape.overflow_area && i == bad {
            let base = u64::MAX - rng.below(1 << 20) as u64;
            needle = Some(base);
            (base, (u64::MAX - base) + 1 + rng.below(1 << 30) as u64, 1)
        } else if let Some(&a) = BIOS_MAP.get(i).filter(|_| bios) {
            a
        } else {
            random_area(rng)
        };
        b.u64(base);
        b.u64(len);
        b.u32(typ);
        b.u32(0);
    }
    for _ in 0..shape.mmap_trailing {
        b.bytes(&[rng.next_u32() as u8]);
    }
    b.end_tag();
    if shape.mmap_trailing > 0 {
        return Some(16 + 24 * n as u64 + shape.mmap_trailing as u64);
    }
    needle
}

fn module_tag(rng: &mut Rng, b: &mut Builder, shape: Shape) -> Option<u64> {
    b.begin_tag(TAG_MODULE);
    let start = rng.below(1 << 20) as u32 & !0xfff;
    if let Some(size) = shape.module_short {
        if size >= 12 {
            b.u32(start);
        }
        b.end_tag();
        return Some(size as u64);
    }
    let len = rng.below(64 << 10) as u32;
    let (s, e) = if shape.module_backwards {
        (start + len + 1, start + len / 2)
    } else {
        (start, start + len)
    };
    b.u32(s);
    b.u32(e);
    b.bytes(b"module");
    b.bytes(&[0]);
    b.end_tag();
    shape.module_backwards.then_some(e as u64)
}

const SHT_SYMTAB: u32 = 2;
const SHT_STRTAB: u32 = 3;

fn elf_tag(rng: &mut Rng, b: &mut Builder, shape: Shape) -> Option<u64> {
    b.begin_tag(TAG_ELF_SECTIONS);
    if let Some(size) = shape.elf_short {
        for _ in 0..(size - 8) / 4 {
            b.u32(rng.below(64) as u32);
        }
        b.end_tag();
        return Some(size as u64);
    }
    let n = rng.range(0, 6);
    b.u32(n as u32);
    b.u32(shape.elf_entsize.unwrap_or(ELF32_SHDR));
    b.u32(rng.below(n + 1) as u32);
    // Half the time a .symtab (1) whose sh_link names a .strtab (2).
    let tables = n >= 3 && rng.chance(50);
    for i in 0..n {
        let typ = match i {
            1 if tables => SHT_SYMTAB,
            2 if tables => SHT_STRTAB,
            _ => *rng.pick(&[0, 1, SHT_SYMTAB, SHT_STRTAB, 8]),
        };
        let addr = match rng.below(4) {
            0 => 0,
            1 => rng.below(16 << 20) as u32,
            2 => 0xc010_0000 + rng.below(1 << 20) as u32,
            _ => rng.next_u32(),
        };
        let size = if rng.chance(70) {
            rng.below(64 << 10) as u32
        } else {
            rng.next_u32()
        };
        let link = if tables && i == 1 {
            2
        } else {
            rng.below(n + 1) as u32
        };
        // sh_name, sh_type, sh_flags, sh_addr, sh_offset, sh_size,
        // sh_link, sh_info, sh_addralign, sh_entsize
        for v in [
            rng.below(64) as u32,
            typ,
            0,
            addr,
            0,
            size,
            link,
            0,
            4,
            if typ == SHT_SYMTAB { 16 } else { 0 },
        ] {
            b.u32(v);
        }
    }
    b.end_tag();
    shape.elf_entsize.map(|e| e as u64)
}

const INTERESTING: [u32; 12] = [
    0,
    1,
    7,
    8,
    9,
    16,
    24,
    40,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_fff8,
    0xffff_ffff,
];

/// A valid block, then one thing done to it: a rule broken while
/// building, or the bytes changed afterwards.
fn gen_mutated(rng: &mut Rng, m: &mut Mb2) {
    let mut shape = Shape::default();
    let kind = rng.below(25);
    let (what, expect) = match kind {
        0..=1 => ("valid", Expect::Accept),
        2 => {
            shape.no_mmap = true;
            ("no memory map tag", Expect::Reject)
        }
        3 => {
            shape.mmap_trailing = rng.range(1, 23);
            ("memory map tag size not 16 + 24n", Expect::Reject)
        }
        4 => {
            shape.mmap_short = Some(*rng.pick(&[8, 12]));
            ("memory map tag without entry_size", Expect::Reject)
        }
        5 => {
            shape.overflow_area = true;
            ("memory area base + length overflows", Expect::Reject)
        }
        6 => {
            shape.meminfo_size = Some(*rng.pick(&[8, 12, 20, 24]));
            ("basic meminfo tag of a wrong size", Expect::Reject)
        }
        7 => {
            shape.module_backwards = true;
            ("module ends before it starts", Expect::Reject)
        }
        8 => {
            shape.module_short = Some(*rng.pick(&[8, 12]));
            ("module tag without mod_end", Expect::Reject)
        }
        9 => {
            shape.elf_entsize = Some(*rng.pick(&[0, 20, 39, 41, 64, 0xffff_ffff]));
            ("ELF sections entsize not ELF32's", Expect::Reject)
        }
        10 => {
            shape.elf_short = Some(*rng.pick(&[8, 12, 16]));
            ("ELF sections tag without its header", Expect::Reject)
        }
        11 => {
            shape.cmdline_bytes = true;
            ("command line of random bytes", Expect::Accept)
        }
        12 => {
            shape.duplicates = true;
            ("memory map and command line twice", Expect::Accept)
        }
        13 => ("total_size cut short", Expect::Reject),
        14 => ("total_size past the end tag", Expect::Reject),
        15 => ("total_size past the readable bytes", Expect::Reject),
        16 => ("fewer readable bytes than the header", Expect::Reject),
        17 => ("a tag of size 0", Expect::Reject),
        18 => ("a tag overflowing the block", Expect::Reject),
        19 => ("no end tag", Expect::Reject),
        20 => ("memory map entry_size not 24", Expect::Reject),
        21 => ("a tag size off by a few bytes", Expect::Either),
        22 => ("bits flipped", Expect::Either),
        23 => ("words overwritten", Expect::Either),
        _ => ("several of the above", Expect::Either),
    };
    m.what = what;
    m.expect = expect;
    m.needle = build(rng, m, shape);
    let total = m.total();
    match kind {
        13 => m.block.set_u32(0, rng.range(0, total - 1) as u32),
        14 => {
            let grown = total + 8 * rng.range(1, (BLOCK_BYTES - total) / 8);
            rng.fill(&mut m.block.bytes[total..grown]);
            m.block.set_u32(0, grown as u32);
        }
        15 => {
            if rng.chance(50) {
                m.readable = rng.range(8, total - 1);
                m.needle = Some(total as u64);
            } else {
                let claim = rng.range(BLOCK_BYTES + 1, u32::MAX as usize) as u32;
                m.block.set_u32(0, claim);
                m.needle = Some(claim as u64);
            }
        }
        16 => {
            m.readable = rng.range(0, 7);
            m.needle = Some(m.readable as u64);
        }
        17 => {
            if let Some(off) = m.any_tag(rng) {
                m.block.set_u32(off + 4, 0);
            } else {
                m.block.set_u32(total - 4, 0);
            }
        }
        18 => {
            let off = m.any_tag(rng).unwrap_or(total - 8);
            let over = (total - off) as u32 + rng.next_u32() % (1 << 30) + 1;
            m.block.set_u32(off + 4, over);
        }
        19 => m.block.set_u32(total - 8, rng.next_u32() | 1),
        20 => {
            let off = m.find(TAG_MMAP).expect("built with a memory map");
            let es = *rng.pick(&[0, 1, 8, 16, 20, 23, 25, 32, 48, 0xffff_ffff]);
            m.block.set_u32(off + 8, es);
            m.needle = Some(es as u64);
        }
        21..=24 => {
            let edits = if kind == 24 { rng.range(2, 4) } else { 1 };
            for _ in 0..edits {
                let k = if kind == 24 { rng.range(21, 23) } else { kind };
                scribble(rng, m, k, total);
            }
        }
        _ => {}
    }
}

/// One random edit of the bytes of a `total`-byte block.
fn scribble(rng: &mut Rng, m: &mut Mb2, kind: usize, total: usize) {
    match kind {
        21 => {
            if let Some(off) = m.any_tag(rng) {
                let size = m.block.u32_at(off + 4);
                let d = rng.range(1, 7) as u32;
                let new = if rng.chance(50) {
                    size.wrapping_add(d)
                } else {
                    size.wrapping_sub(d)
                };
                m.block.set_u32(off + 4, new);
            }
        }
        22 => {
            for _ in 0..rng.range(1, 6) {
                let bit = rng.below(total * 8);
                m.block.bytes[bit / 8] ^= 1 << (bit % 8);
            }
        }
        _ => {
            for _ in 0..rng.range(1, 3) {
                let off = rng.below(total / 4) * 4;
                let v = if rng.chance(70) {
                    *rng.pick(&INTERESTING)
                } else {
                    rng.next_u32()
                };
                m.block.set_u32(off, v);
            }
        }
    }
}

/// Tags of any type the kernel reads (and some it does not), of random
/// sizes with random payloads, framed correctly or not; or plain noise.
fn gen_random_tags(rng: &mut Rng, m: &mut Mb2) {
    m.expect = Expect::Either;
    m.needle = None;
    m.readable = BLOCK_BYTES;
    if rng.chance(20) {
        m.what = "noise";
        let total = 8 * rng.range(1, BLOCK_BYTES / 8);
        m.block.bytes.fill(0);
        rng.fill(&mut m.block.bytes[..total]);
        if rng.chance(70) {
            m.block.set_u32(0, total as u32);
        }
        if rng.chance(50) && total >= 16 {
            m.block.set_u32(total - 8, TAG_END);
            m.block.set_u32(total - 4, 8);
        }
        m.ntags = 0;
        return;
    }
    m.what = "random tags";
    let mut b = Builder::new(&mut m.block);
    // Usually a plausible memory map first, so that more blocks get past
    // `load` to the code that uses them.
    if rng.chance(70) {
        plausible_tag(rng, &mut b, TAG_MMAP);
    }
    for _ in 0..rng.range(0, 10) {
        let typ = if rng.chance(80) {
            rng.range(1, 10) as u32
        } else {
            rng.next_u32()
        };
        if b.room() < 300 {
            break;
        }
        if rng.chance(60) {
            plausible_tag(rng, &mut b, typ);
        } else {
            b.begin_tag(typ);
            for _ in 0..rng.range(0, 112) / 4 {
                b.u32(wild_u32(rng));
            }
            b.end_tag();
        }
    }
    m.ntags = b.ntags;
    m.tags = b.tags;
    b.finish();
    // Now and then break the framing too.
    if rng.chance(20) {
        let total = m.total();
        let kind = rng.range(21, 23);
        scribble(rng, m, kind, total);
    }
}

fn wild_u32(rng: &mut Rng) -> u32 {
    if rng.chance(40) {
        *rng.pick(&INTERESTING)
    } else {
        rng.next_u32()
    }
}

fn wild_u64(rng: &mut Rng) -> u64 {
    match rng.below(4) {
        0 => rng.next_u64(),
        1 => u64::MAX - rng.below(1 << 16) as u64,
        _ => rng.next_u64() >> rng.range(1, 63),
    }
}

/// A tag of type `typ` with the sizes the specification gives it, and
/// wild values in its fields (or, for other types, a random payload).
fn plausible_tag(rng: &mut Rng, b: &mut Builder, typ: u32) {
    b.begin_tag(typ);
    match typ {
        TAG_CMDLINE | TAG_LOADER_NAME => {
            for _ in 0..rng.range(0, 40) {
                b.bytes(&[rng.next_u32() as u8]);
            }
            if rng.chance(80) {
                b.bytes(&[0]);
            }
        }
        TAG_MODULE => {
            b.u32(wild_u32(rng));
            b.u32(wild_u32(rng));
            b.bytes(&[0]);
        }
        TAG_BASIC_MEMINFO => {
            b.u32(wild_u32(rng));
            b.u32(wild_u32(rng));
        }
        TAG_MMAP => {
            b.u32(MMAP_ENTRY);
            b.u32(0);
            for _ in 0..rng.range(0, 8) {
                let (base, len, t) = if rng.chance(70) {
                    random_area(rng)
                } else {
                    (wild_u64(rng), wild_u64(rng), wild_u32(rng))
                };
                b.u64(base);
                b.u64(len);
                b.u32(t);
                b.u32(wild_u32(rng));
            }
        }
        TAG_ELF_SECTIONS => {
            let n = rng.range(0, 5);
            b.u32(n as u32);
            b.u32(ELF32_SHDR);
            b.u32(wild_u32(rng));
            for _ in 0..n * 10 {
                b.u32(if rng.chance(50) {
                    rng.below(8) as u32
                } else {
                    wild_u32(rng)
                });
            }
        }
        _ => {
            for _ in 0..rng.range(0, 112) / 4 {
                b.u32(wild_u32(rng));
            }
        }
    }
    b.end_tag();
}

/// `n` in the text, in decimal or in hexadecimal digits.
fn mentions(text: &str, n: u64) -> bool {
    let mut d = FixedBuf::<24>::new();
    let _ = write!(d, "{}", n);
    let mut x = FixedBuf::<24>::new();
    let _ = write!(x, "{:x}", n);
    text.contains(d.as_str()) || text.contains(x.as_str())
}

/// Counts what `report` writes.
struct Sink(usize);

impl Write for Sink {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0 += s.len();
        Ok(())
    }
}

fn check_block(m: &Mb2) -> Verdict {
    assert!(m.readable <= BLOCK_BYTES);
    // SAFETY: the block is BLOCK_BYTES readable bytes, 8-byte aligned,
    // and nothing changes it while `info` lives.
    let r = unsafe { info::load(MULTIBOOT2_BOOTLOADER_MAGIC, m.block.addr(), m.readable) };
    match r {
        Ok(i) => {
            assert!(m.expect != Expect::Reject, "accepted: {}", m.what);
            use_like_the_boot(&i);
            Verdict::Accepted
        }
        Err(e) => {
            let mut msg = FixedBuf::<240>::new();
            let _ = write!(msg, "{}", e);
            assert!(
                m.expect != Expect::Accept,
                "well-formed block ({}) refused: {}",
                m.what,
                msg
            );
            assert!(!msg.as_str().is_empty(), "refused without a message");
            if let Some(n) = m.needle {
                assert!(
                    mentions(msg.as_str(), n),
                    "{}: the message does not name {:#x}: {}",
                    m.what,
                    n,
                    msg
                );
            }
            Verdict::Rejected
        }
    }
}

/// What `start_kernel` and `paging_init` do with an accepted block, on a
/// small frame allocator of their own, with the invariants that must hold.
fn use_like_the_boot(info: &BootInformation) {
    let mut sink = Sink(0);
    info::report(info, FAKE_PHYS, &mut sink).expect("report");
    assert!(sink.0 > 0);
    match info::boot_cmdline(info) {
        Ok(s) => {
            if let Err(e) = parse(s, &mut |_| {}) {
                check_bad_value(s, &e);
            }
        }
        Err(e) => {
            assert!(matches!(e, BootInfoError::BadCmdline(_)), "{:?}", e);
            let mut msg = FixedBuf::<240>::new();
            let _ = write!(msg, "{}", e);
            assert!(
                msg.as_str().starts_with("bad command line tag: "),
                "{}",
                msg
            );
        }
    }
    // The boot suite reads this one.
    let _ = info
        .basic_memory_info_tag()
        .map(|t| t.memory_lower() as u64 + t.memory_upper() as u64);

    check_frames(info);

    match vmfault::symbols::find_tables(info) {
        Ok(t) => {
            for (addr, size) in [t.symtab, t.strtab] {
                assert!(
                    addr as u64 + size as u64 <= MAXMEM,
                    "symbol table {:#x}+{:#x} outside the direct map",
                    addr,
                    size
                );
            }
        }
        Err(why) => assert!(!why.is_empty()),
    }
}

/// `paging_init`'s frame setup on `FRAMES` frames: free must be exactly
/// the frames wholly inside a usable area and touching no reserved range
/// (checked frame by frame against the areas, the plainest statement of
/// it), with the counts `add_areas` reports.
fn check_frames(info: &BootInformation) {
    let limit = (FRAMES * PAGE_SIZE) as u64;
    let mut usable = [(0u64, 0u64); 64];
    let mut nu = 0;
    let mut ignored = 0u64;
    for (s, e) in vmfault::mm::init::usable_areas(info) {
        if nu < usable.len() {
            usable[nu] = (s, e);
        }
        nu += 1;
        if e > limit {
            ignored = ignored.saturating_add(e - s.max(limit));
        }
    }
    let mut reserved = [(0u64, 0u64); 64];
    let nr = vmfault::mm::init::reserved_ranges(info, FAKE_PHYS, &mut reserved);
    let mut bits = [0u32; FRAMES / 32];
    let mut fa = FrameAllocator::new(&mut bits, limit);
    let stats = fa.add_areas(vmfault::mm::init::usable_areas(info));
    for &(s, e) in &reserved[..nr] {
        fa.reserve(s, e);
    }
    if nu > usable.len() {
        return; // more areas than the model keeps: no panic is all
    }
    let (mut in_areas, mut free) = (0, 0);
    for pfn in 0..FRAMES {
        let (lo, hi) = ((pfn * PAGE_SIZE) as u64, ((pfn + 1) * PAGE_SIZE) as u64);
        let mut whole = false;
        for &(s, e) in &usable[..nu] {
            whole |= s <= lo && hi <= e;
        }
        let mut hit = false;
        for &(s, e) in &reserved[..nr] {
            hit |= s < e && s < hi && lo < e;
        }
        in_areas += whole as usize;
        free += (whole && !hit) as usize;
        if fa.is_frame_free(lo as u32) != (whole && !hit) {
            panic!(
                "frame {:#x}: free {}, but usable {} and reserved {}",
                lo,
                !(whole && !hit),
                whole,
                hit
            );
        }
    }
    assert_eq!(stats.usable_frames, in_areas, "usable frame count");
    assert_eq!(stats.ignored_bytes, ignored, "ignored bytes");
    assert_eq!(fa.nr_free(), free, "free frame count");
}

fn show_block(m: &Mb2) {
    println!(
        "    # block: {}; expected {:?}; readable {}; total_size {:#x}",
        m.what,
        m.expect,
        m.readable,
        m.block.u32_at(0)
    );
    let total = m.total().max(16);
    for (i, row) in m.block.bytes[..total].chunks(32).enumerate() {
        let mut line = FixedBuf::<120>::new();
        for b in row {
            let _ = write!(line, "{:02x}", b);
        }
        println!("    # {:04x}: {}", i * 32, line);
    }
}

pub static BOOTINFO_MUTATED: Target<Mb2> = Target {
    name: "bootinfo_mutated",
    salt: 4,
    min_accepted: 10,
    min_rejected: 30,
    generate: gen_mutated,
    check: check_block,
    show: show_block,
};

pub static BOOTINFO_RANDOM: Target<Mb2> = Target {
    name: "bootinfo_random_tags",
    salt: 5,
    min_accepted: 1,
    min_rejected: 30,
    generate: gen_random_tags,
    check: check_block,
    show: show_block,
};
