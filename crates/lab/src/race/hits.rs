//! Reaching boundary k of a recorded path with a breakpoint instead of
//! single-stepping to it: DR0 on boundary k's instruction fires once per
//! execution, so boundary k is the hit that comes after as many earlier
//! executions of the same instruction as the recording shows.

extern crate alloc;

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

/// For each boundary k of the recorded `eips`, how many times its
/// instruction ran at boundaries before k.
pub fn earlier_hits(eips: &[u32]) -> Vec<u32> {
    let mut seen = BTreeMap::<u32, u32>::new();
    eips.iter()
        .map(|&e| {
            let n = seen.entry(e).or_insert(0);
            *n += 1;
            *n - 1
        })
        .collect()
}
