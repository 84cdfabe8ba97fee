//! In-kernel fuzzing of every input the kernel parses: the command line
//! (`cmdline.rs`) and the multiboot2 boot information (`bootinfo.rs`).
//! Seeded inputs, random and mutated, go through the very functions
//! `start_kernel` runs; the suite that runs them is `ktest/suites/fuzz.rs`.
//!
//! Iteration `i` of a target runs with seed `base + i` (`src/rand.rs`).
//! The base is fixed: a constant mixed with the target and with the
//! kernel configuration (paging mode, `vmalloc_fault=` version), so each
//! of the configurations `make test` boots fuzzes inputs of its own, the
//! same ones on every run.  It is printed as a KTAP diagnostic; a failing
//! iteration prints its input and the command line that replays it alone
//! (`test=fuzz.TARGET fuzz_seed=S fuzz_cases=1`).  `fuzz_seed=` and
//! `fuzz_cases=` override the base and the count (README, Fuzzing).

pub mod bootinfo;
pub mod cmdline;
pub mod cmdline_model;
pub mod mb2_block;
pub mod text;

use vmfault::fixup;
use vmfault::mm::{PagingMode, VmallocFaultVersion};
use vmfault::println;
use vmfault::rand::Rng;

/// Iterations per target unless `fuzz_cases=` says otherwise.
pub const CASES: u32 = 2000;
/// The constant in every base seed ("vmfault\0").
const SEED: u64 = 0x766d_6661_756c_7400;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Verdict {
    Accepted,
    Rejected,
}

/// One fuzz target: how to make an input from a seed, what must hold for
/// it (`check` panics when something does not), and how to print it.
pub struct Target<I: 'static> {
    pub name: &'static str,
    pub salt: u64,
    /// Share (percent) of inputs a full run must see accepted, and
    /// rejected: proof that the generator reaches both sides of the parser
    /// rather than bouncing off its first check.
    pub min_accepted: u32,
    pub min_rejected: u32,
    pub generate: fn(&mut Rng, &mut I),
    pub check: fn(&I) -> Verdict,
    pub show: fn(&I),
}

/// The base seed and iteration count of `t` in this boot.
pub fn plan<I>(t: &Target<I>) -> (u64, u32) {
    let c = vmfault::boot::start::params().map(|p| p.cmdline);
    let config = c.map_or(0, |c| {
        let paging = (c.paging == PagingMode::Pae) as u64;
        let version = VmallocFaultVersion::ALL
            .iter()
            .position(|v| *v == c.vmalloc_fault)
            .unwrap_or(0) as u64;
        paging * 4 + version
    });
    let seed = c
        .and_then(|c| c.fuzz_seed)
        .unwrap_or(SEED ^ (t.salt << 32) ^ (config << 48));
    (seed, c.and_then(|c| c.fuzz_cases).unwrap_or(CASES))
}

/// Run `t`'s iterations; fail on the first input that breaks its check.
pub fn run<I>(t: &Target<I>, input: &mut I) {
    let (base, cases) = plan(t);
    println!(
        "    # {}: fuzz_seed={:#x} fuzz_cases={}",
        t.name, base, cases
    );
    let (mut accepted, mut rejected) = (0u32, 0u32);
    for i in 0..cases {
        match one(t, input, base.wrapping_add(i as u64), i) {
            Verdict::Accepted => accepted += 1,
            Verdict::Rejected => rejected += 1,
        }
    }
    println!(
        "    # {}: {} inputs, {} accepted, {} rejected",
        t.name,
        accepted + rejected,
        accepted,
        rejected
    );
    assert_eq!(accepted + rejected, cases, "not every iteration ran");
    if cases == CASES {
        assert!(
            accepted * 100 >= t.min_accepted * cases,
            "only {} of {} inputs accepted: the generator misses the parser",
            accepted,
            cases
        );
        assert!(
            rejected * 100 >= t.min_rejected * cases,
            "only {} of {} inputs rejected: the generator misses the checks",
            rejected,
            cases
        );
    }
}

/// Iteration `i`, with `seed`: generate, check under a recovery point of
/// its own (so a panic or an exception deep in a parser still names the
/// input that caused it), and on failure print the input and fail.
pub fn one<I>(t: &Target<I>, input: &mut I, seed: u64, i: u32) -> Verdict {
    (t.generate)(&mut Rng::new(seed), input);
    let mut verdict = None;
    if let Err(c) = fixup::catch(false, || verdict = Some((t.check)(input))) {
        for (k, line) in c.msg.as_str().lines().enumerate() {
            if k == 0 {
                println!("    # {}: iteration {} failed: {}", t.name, i, line);
            } else {
                println!("    # {}", line);
            }
        }
        println!(
            "    # replay it alone: test=fuzz.{} fuzz_seed={:#x} fuzz_cases=1",
            t.name, seed
        );
        (t.show)(input);
        panic!(
            "fuzz.{} iteration {} (fuzz_seed={:#x}) failed: {}",
            t.name, i, seed, c.msg
        );
    }
    verdict.expect("check returned without a verdict")
}
