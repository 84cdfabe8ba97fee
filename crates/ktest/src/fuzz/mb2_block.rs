//! Multiboot2 boot information blocks built by hand in an aligned buffer,
//! for the fuzz suite: the layout of the multiboot2 specification, section
//! 3.6 (an 8-byte header `total_size`, `reserved`, then tags of `type`,
//! `size` and payload, each starting 8-byte aligned, ending with the
//! 8-byte end tag).  The builder writes what it is told, well framed or
//! not; it never writes past the buffer.

/// Bytes a block can hold.
pub const BLOCK_BYTES: usize = 1536;

pub const TAG_END: u32 = 0;
pub const TAG_CMDLINE: u32 = 1;
pub const TAG_LOADER_NAME: u32 = 2;
pub const TAG_MODULE: u32 = 3;
pub const TAG_BASIC_MEMINFO: u32 = 4;
pub const TAG_MMAP: u32 = 6;
pub const TAG_ELF_SECTIONS: u32 = 9;

/// Size of one memory map entry (`base_addr`, `length`, `type`,
/// `reserved`) and of one ELF32 section header.
pub const MMAP_ENTRY: u32 = 24;
pub const ELF32_SHDR: u32 = 40;

/// The crate requires the block 8-byte aligned, as GRUB leaves it.
#[repr(C, align(8))]
pub struct Block {
    pub bytes: [u8; BLOCK_BYTES],
}

impl Block {
    pub const fn new() -> Self {
        Block {
            bytes: [0; BLOCK_BYTES],
        }
    }

    pub fn addr(&self) -> usize {
        self.bytes.as_ptr() as usize
    }

    pub fn u32_at(&self, off: usize) -> u32 {
        u32::from_le_bytes(self.bytes[off..off + 4].try_into().unwrap())
    }

    pub fn set_u32(&mut self, off: usize, v: u32) {
        self.bytes[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }

    pub fn set_u64(&mut self, off: usize, v: u64) {
        self.bytes[off..off + 8].copy_from_slice(&v.to_le_bytes());
    }
}

impl Default for Block {
    fn default() -> Self {
        Self::new()
    }
}

/// Where a tag was put: offset of its header and its type.
#[derive(Clone, Copy, Default)]
pub struct TagPos {
    pub off: usize,
    pub typ: u32,
}

pub const MAX_TAGS: usize = 24;

pub struct Builder<'a> {
    block: &'a mut Block,
    pub len: usize,
    open: Option<usize>,
    pub tags: [TagPos; MAX_TAGS],
    pub ntags: usize,
}

impl<'a> Builder<'a> {
    /// Zero the block and write a header whose size `finish` fills in.
    pub fn new(block: &'a mut Block) -> Self {
        block.bytes.fill(0);
        Builder {
            block,
            len: 8,
            open: None,
            tags: [TagPos::default(); MAX_TAGS],
            ntags: 0,
        }
    }

    /// Bytes left, keeping room for the end tag.
    pub fn room(&self) -> usize {
        BLOCK_BYTES.saturating_sub(self.len + 8 + 8)
    }

    pub fn bytes(&mut self, b: &[u8]) {
        let n = b.len().min(BLOCK_BYTES - self.len);
        self.block.bytes[self.len..self.len + n].copy_from_slice(&b[..n]);
        self.len += n;
    }

    pub fn u32(&mut self, v: u32) {
        self.bytes(&v.to_le_bytes());
    }

    pub fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }

    /// Start a tag; its size is what is written until `end_tag`.
    pub fn begin_tag(&mut self, typ: u32) {
        if self.ntags < MAX_TAGS {
            self.tags[self.ntags] = TagPos { off: self.len, typ };
            self.ntags += 1;
        }
        self.open = Some(self.len);
        self.u32(typ);
        self.u32(0);
    }

    /// Close the open tag: write its size, pad to 8 with zeros.
    pub fn end_tag(&mut self) {
        if let Some(off) = self.open.take() {
            let size = (self.len - off) as u32;
            self.block.set_u32(off + 4, size);
            self.len = (self.len + 7) & !7;
        }
    }

    /// A whole tag with `payload`.
    pub fn tag(&mut self, typ: u32, payload: &[u8]) {
        self.begin_tag(typ);
        self.bytes(payload);
        self.end_tag();
    }

    /// A NUL-terminated string tag (command line, loader name).
    pub fn string_tag(&mut self, typ: u32, s: &[u8]) {
        self.begin_tag(typ);
        self.bytes(s);
        self.bytes(&[0]);
        self.end_tag();
    }

    /// Write the end tag and the header's total size; returns it.
    pub fn finish(self) -> usize {
        let end = self.len.min(BLOCK_BYTES - 8);
        self.block.set_u32(end, TAG_END);
        self.block.set_u32(end + 4, 8);
        let total = end + 8;
        self.block.set_u32(0, total as u32);
        total
    }
}
