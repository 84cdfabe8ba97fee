//! A seeded pseudo-random generator for tests, fuzzers and the soak: the
//! same seed gives the same sequence on every run, so a failure is
//! replayed by passing its seed back.  Not for anything secret.

/// xorshift32 (Marsaglia 2003).  The state is never 0: a zero seed is
/// replaced by a fixed odd constant.
#[derive(Clone, Debug)]
pub struct Rng(u32);

impl Rng {
    pub fn new(seed: u32) -> Self {
        Rng(if seed == 0 { 0x9E37_79B9 } else { seed })
    }

    pub fn next_u32(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x
    }

    /// Uniform in `0..n` (`n > 0`), by multiply-shift (no modulo bias
    /// worth the name at these sizes).
    pub fn below(&mut self, n: u32) -> u32 {
        ((self.next_u32() as u64 * n as u64) >> 32) as u32
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u32) -> bool {
        self.below(100) < percent
    }
}
