//! A small seeded pseudo-random generator for the fuzzers, the soak and
//! the randomised tests: SplitMix64
//! (Steele, Lea, Flood, "Fast splittable pseudorandom number generators",
//! OOPSLA 2014; the seeder of java.util.SplittableRandom and xoshiro).
//! Every seed, 0 included, gives a full-period sequence, and consecutive
//! seeds give unrelated ones, so fuzz iteration `i` can simply use
//! `base + i` and be replayed on its own.  Not for anything but tests.

pub struct Rng {
    state: u64,
}

impl Rng {
    pub const fn new(seed: u64) -> Self {
        Rng { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// Uniform in `0..n` (`n > 0`), by Lemire's multiply-shift; the bias
    /// for the small `n` used here is far below what a fuzzer cares about.
    pub fn below(&mut self, n: usize) -> usize {
        debug_assert!(n > 0);
        ((self.next_u32() as u64 * n as u64) >> 32) as usize
    }

    /// `below` for 32-bit quantities (page counts, addresses).
    pub fn below_u32(&mut self, n: u32) -> u32 {
        self.below(n as usize) as u32
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u32) -> bool {
        self.below(100) < percent as usize
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            *b = self.next_u32() as u8;
        }
    }
}
