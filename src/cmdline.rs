//! The kernel command line: `key=value` words separated by spaces, as GRUB
//! passes them.  Known keys:
//!
//! | key | values | default |
//! |---|---|---|
//! | `paging=` | `2level`, `pae` | `2level` |
//! | `vmalloc_fault=` | `legacy`, `cli`, `cr3`, `sync`, `eager`, `eager-lazy` | `sync` |
//! | `preempt=` | `none` (2.4: kernel code runs until it yields), `full` (the timer preempts kernel code on interrupt exit, as from the 2.5 preempt patch) | `none` |
//! | `test=` | a glob over `suite.case` (`*`, `?`) | none: no tests run |
//! | `loglevel=` | `0`..`8` | `7` |
//! | `experiment=` | `race` (full race experiments), `engine` (the stepping engine's quick check), `bench` (benchmarks), `soak`, then exit; or `triple_fault` (question 1's control: the machine resets) | none |
//! | `race=` | replay handles, `SCENARIO:VERSION:MODE:NCPU:K` separated by commas (`lab/race/replay.rs` checks them), then exit | none |
//! | `fuzz_seed=` | the fuzz suite's base seed, decimal or `0x` hex (replays a failure) | built in |
//! | `fuzz_cases=` | iterations per fuzz case, `1`..`1000000` | built in |
//! | `smp=` | CPUs to run, `1`..`NR_CPUS` (8), the boot CPU included | every CPU the firmware lists |
//! | `nosmp` | (no value) the boot CPU only, as `smp=1` (Linux's `nosmp`) | |
//!
//! An unknown key is reported and ignored (Linux passes those on to init);
//! a bad value for a known key is an error that stops the boot, naming the
//! key and the values it takes.  Parsing is pure: no hardware, no heap, so
//! the tests exercise exactly the code the boot runs.

use core::fmt;

use crate::arch::x86::smp_config::NR_CPUS;
use crate::mm::{PagingMode, VmallocFaultVersion};

// smp='s `allowed` text below names the bound.
const _: () = assert!(NR_CPUS == 8);

/// Whether the timer may preempt kernel code, Linux's `CONFIG_PREEMPT_NONE`
/// and `CONFIG_PREEMPT`: 2.4 never rescheduled on return to kernel mode
/// (its `ret_from_intr` looks at `need_resched` only on the way back to
/// user mode); kernel preemption came with the preempt patch (2.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreemptModel {
    None,
    Full,
}

impl PreemptModel {
    pub const ALLOWED: &'static str = "none, full";
    pub const DEFAULT: Self = Self::None;

    pub const fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Full => "full",
        }
    }

    fn from_value(v: &str) -> Option<Self> {
        [Self::None, Self::Full].into_iter().find(|x| x.name() == v)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cmdline<'a> {
    pub paging: PagingMode,
    pub vmalloc_fault: VmallocFaultVersion,
    pub preempt: PreemptModel,
    /// `test=GLOB`: run the in-kernel suite, only the matching cases.
    pub test: Option<&'a str>,
    pub loglevel: Option<u8>,
    /// `experiment=race`: run every explorer and the long stress, print
    /// the results and exit (what `make experiments` boots).
    pub experiment: bool,
    /// `experiment=bench`: run the in-kernel benchmarks (`make bench`).
    pub bench: bool,
    /// `experiment=engine`: every explorer once, at a sample of its
    /// boundaries, then exit (what `make test` boots on the unoptimised
    /// kernel).
    pub engine: bool,
    /// `experiment=soak`: run the soak (`make soak`) and exit.
    pub soak: bool,
    /// `experiment=triple_fault`: question 1's control, a deliberate
    /// triple fault (`lab/race/triple_fault.rs`).
    pub triple_fault: bool,
    /// `race=H1,H2,...`: replay these explored runs and exit (the lab
    /// parses the handles).
    pub race: Option<&'a str>,
    /// `soak_ops=N`: operations of the soak.
    pub soak_ops: u32,
    /// `soak_seed=N`: the soak's seed (decimal or 0x hex), for replay.
    pub soak_seed: u32,
    /// `fuzz_seed=`: base seed of the fuzz suite (`ktest/suites/fuzz.rs`);
    /// iteration `i` of a fuzz case runs with seed `base + i`.
    pub fuzz_seed: Option<u64>,
    /// `fuzz_cases=`: iterations per fuzz case.
    pub fuzz_cases: Option<u32>,
    /// `smp=N` / `nosmp`: start at most N CPUs in all (None: every one).
    pub smp: Option<u8>,
}

impl Default for Cmdline<'_> {
    fn default() -> Self {
        Cmdline {
            paging: PagingMode::DEFAULT,
            vmalloc_fault: VmallocFaultVersion::DEFAULT,
            preempt: PreemptModel::DEFAULT,
            test: None,
            loglevel: None,
            experiment: false,
            bench: false,
            engine: false,
            soak: false,
            triple_fault: false,
            race: None,
            soak_ops: SOAK_OPS_DEFAULT,
            soak_seed: SOAK_SEED_DEFAULT,
            fuzz_seed: None,
            fuzz_cases: None,
            smp: None,
        }
    }
}

/// A bad value for a known key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadValue<'a> {
    pub key: &'static str,
    pub value: &'a str,
    pub allowed: &'static str,
}

impl fmt::Display for BadValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "bad value '{}' for {}= (allowed: {})",
            self.value, self.key, self.allowed
        )
    }
}

/// Parse `s`.  `unknown` is called with every word whose key is not known
/// (the caller reports it); the first bad value of a known key is returned.
pub fn parse<'a>(
    s: &'a str,
    unknown: &mut dyn FnMut(&'a str),
) -> Result<Cmdline<'a>, BadValue<'a>> {
    let mut c = Cmdline::default();
    for word in s.split_ascii_whitespace() {
        let (key, value) = match word.split_once('=') {
            Some((k, v)) => (k, v),
            None => (word, ""),
        };
        match key {
            "paging" => {
                c.paging = PagingMode::from_value(value).ok_or(BadValue {
                    key: "paging",
                    value,
                    allowed: PagingMode::ALLOWED,
                })?
            }
            "vmalloc_fault" => {
                c.vmalloc_fault = VmallocFaultVersion::from_value(value).ok_or(BadValue {
                    key: "vmalloc_fault",
                    value,
                    allowed: VmallocFaultVersion::ALLOWED,
                })?
            }
            "preempt" => {
                c.preempt = PreemptModel::from_value(value).ok_or(BadValue {
                    key: "preempt",
                    value,
                    allowed: PreemptModel::ALLOWED,
                })?
            }
            "test" => {
                if value.is_empty() {
                    return Err(BadValue {
                        key: "test",
                        value,
                        allowed: "a non-empty glob over suite.case, e.g. test=* or test=boot.*",
                    });
                }
                c.test = Some(value)
            }
            "race" => {
                if value.is_empty() {
                    return Err(BadValue {
                        key: "race",
                        value,
                        allowed: "replay handles SCENARIO:VERSION:MODE:NCPU:K, e.g. race=thread:legacy:2level:1cpu:21",
                    });
                }
                c.race = Some(value)
            }
            "experiment" => match value {
                "race" => c.experiment = true,
                "bench" => c.bench = true,
                "soak" => c.soak = true,
                "engine" => c.engine = true,
                "triple_fault" => c.triple_fault = true,
                _ => {
                    return Err(BadValue {
                        key: "experiment",
                        value,
                        allowed: "race, engine, bench, soak, triple_fault",
                    })
                }
            },
            "soak_ops" => {
                c.soak_ops = parse_u64(value)
                    .and_then(|n| u32::try_from(n).ok())
                    .filter(|n| (1..=SOAK_OPS_MAX).contains(n))
                    .ok_or(BadValue {
                        key: "soak_ops",
                        value,
                        allowed: "1..100000000",
                    })?
            }
            "soak_seed" => {
                c.soak_seed =
                    parse_u64(value)
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or(BadValue {
                            key: "soak_seed",
                            value,
                            allowed: "a 32-bit number, decimal or 0x hex",
                        })?
            }
            "loglevel" => {
                c.loglevel = Some(
                    value
                        .parse::<u8>()
                        .ok()
                        .filter(|l| *l <= 8)
                        .ok_or(BadValue {
                            key: "loglevel",
                            value,
                            allowed: "0..8",
                        })?,
                )
            }
            "fuzz_seed" => {
                c.fuzz_seed = Some(parse_u64(value).ok_or(BadValue {
                    key: "fuzz_seed",
                    value,
                    allowed: "a 64-bit number, decimal or 0x hex",
                })?)
            }
            "fuzz_cases" => {
                c.fuzz_cases = Some(
                    parse_u64(value)
                        .filter(|n| (1..=FUZZ_CASES_MAX as u64).contains(n))
                        .ok_or(BadValue {
                            key: "fuzz_cases",
                            value,
                            allowed: "1..1000000",
                        })? as u32,
                )
            }
            "smp" => {
                c.smp = Some(
                    value
                        .parse::<u8>()
                        .ok()
                        .filter(|n| (1..=NR_CPUS as u8).contains(n))
                        .ok_or(BadValue {
                            key: "smp",
                            value,
                            allowed: "1..8 (NR_CPUS)",
                        })?,
                )
            }
            "nosmp" => {
                if word != "nosmp" {
                    return Err(BadValue {
                        key: "nosmp",
                        value,
                        allowed: "no value: nosmp alone",
                    });
                }
                c.smp = Some(1)
            }
            _ => unknown(word),
        }
    }
    Ok(c)
}

/// `soak_ops=` and `soak_seed=` when not given (`make soak`'s defaults).
pub const SOAK_OPS_DEFAULT: u32 = 1_000_000;
pub const SOAK_SEED_DEFAULT: u32 = 0x2001_0223;

/// Most operations `soak_ops=` may ask for.
pub const SOAK_OPS_MAX: u32 = 100_000_000;

/// Most iterations `fuzz_cases=` may ask for.
pub const FUZZ_CASES_MAX: u32 = 1_000_000;

/// A decimal or `0x` hexadecimal number that fits 64 bits: digits only,
/// no sign (`u64::from_str` alone would also take a leading `+`).
fn parse_u64(v: &str) -> Option<u64> {
    let (digits, radix) = match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(h) => (h, 16),
        None => (v, 10),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}
