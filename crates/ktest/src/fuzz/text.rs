//! A fixed-size text buffer for generated command lines: whole UTF-8
//! characters only, and the byte-level edits the mutators make.

use core::fmt::{self, Write};

use vmfault::rand::Rng;

/// What a command line may take up here.
pub const TEXT_BYTES: usize = 1024;

/// A command line (or a message) under construction: always valid UTF-8 (only whole
/// characters go in), as `cmdline::parse` takes `&str`.  Invalid UTF-8 is
/// the boot information's business (`boot_cmdline`), fuzzed below.
pub struct Text<const N: usize = TEXT_BYTES> {
    pub buf: [u8; N],
    pub len: usize,
}

impl<const N: usize> Text<N> {
    pub const fn new() -> Self {
        Text {
            buf: [0; N],
            len: 0,
        }
    }

    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.buf[..self.len]).expect("generator wrote invalid UTF-8")
    }

    pub fn room(&self) -> usize {
        N - self.len
    }

    /// Append `s` if it fits whole.
    pub fn push(&mut self, s: &str) {
        if s.len() <= self.room() {
            self.buf[self.len..self.len + s.len()].copy_from_slice(s.as_bytes());
            self.len += s.len();
        }
    }

    pub fn push_char(&mut self, c: char) {
        self.push(c.encode_utf8(&mut [0; 4]));
    }

    /// Cut to at most `n` bytes, at a character boundary.
    pub fn truncate(&mut self, n: usize) {
        let mut n = n.min(self.len);
        while n > 0 && n < self.len && self.buf[n] & 0xc0 == 0x80 {
            n -= 1;
        }
        self.len = n;
    }

    pub fn char_boundary(&self, rng: &mut Rng) -> usize {
        let s = self.as_str();
        let mut i = rng.range(0, self.len);
        while !s.is_char_boundary(i) {
            i -= 1;
        }
        i
    }

    pub fn insert(&mut self, at: usize, s: &str) {
        if s.len() <= self.room() {
            self.buf.copy_within(at..self.len, at + s.len());
            self.buf[at..at + s.len()].copy_from_slice(s.as_bytes());
            self.len += s.len();
        }
    }

    pub fn remove(&mut self, from: usize, to: usize) {
        self.buf.copy_within(to..self.len, from);
        self.len -= to - from;
    }
}

impl<const N: usize> Write for Text<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push(s);
        Ok(())
    }
}

impl<const N: usize> Default for Text<N> {
    fn default() -> Self {
        Self::new()
    }
}
