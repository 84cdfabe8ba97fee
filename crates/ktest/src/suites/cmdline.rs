//! The command-line parser and the test filter, as pure functions: the
//! same code `start_kernel` runs, fed strings no boot could produce.

use crate::case;
use crate::glob::{glob_match, selects};
use crate::Suite;
use vmfault::cmdline::{parse, BadValue, Cmdline, PreemptModel};
use vmfault::fixed_buf::FixedBuf;
use vmfault::mm::{PagingMode, VmallocFaultVersion};

pub static SUITE: Suite = Suite {
    name: "cmdline",
    cases: &[
        case!(empty_gives_defaults),
        case!(every_good_value_parses),
        case!(unknown_keys_reported_and_ignored),
        case!(bad_paging_names_key_and_values),
        case!(bad_vmalloc_fault_names_key_and_values),
        case!(key_without_value_is_bad),
        case!(loglevel_range_checked),
        case!(soak_numbers_checked),
        case!(smp_and_nosmp_checked),
        case!(last_value_wins),
        case!(fuzz_parameters_parse),
        case!(glob_matching),
        case!(filter_selects_suites_and_cases),
    ],
};

fn ok(s: &str) -> Cmdline<'_> {
    parse(s, &mut |_| {}).unwrap_or_else(|e| panic!("{:?} rejected: {}", s, e))
}

fn bad(s: &str) -> BadValue<'_> {
    match parse(s, &mut |_| {}) {
        Ok(c) => panic!("{:?} accepted as {:?}", s, c),
        Err(e) => e,
    }
}

fn text(e: &BadValue) -> FixedBuf<200> {
    let mut b = FixedBuf::new();
    let _ = core::fmt::Write::write_fmt(&mut b, format_args!("{}", e));
    b
}

fn empty_gives_defaults() {
    let c = ok("");
    assert_eq!(c.paging, PagingMode::TwoLevel);
    assert_eq!(c.vmalloc_fault, VmallocFaultVersion::Sync);
    assert_eq!(c.test, None);
    assert_eq!(c.loglevel, None);
    assert_eq!(ok("   "), c);
}

fn every_good_value_parses() {
    assert_eq!(ok("paging=pae").paging, PagingMode::Pae);
    assert_eq!(ok("paging=2level").paging, PagingMode::TwoLevel);
    for v in VmallocFaultVersion::ALL {
        let mut b = FixedBuf::<40>::new();
        let _ = core::fmt::Write::write_fmt(&mut b, format_args!("vmalloc_fault={}", v.name()));
        assert_eq!(ok(b.as_str()).vmalloc_fault, v);
    }
    let c = ok("paging=pae vmalloc_fault=legacy test=boot.* loglevel=4");
    assert_eq!(c.test, Some("boot.*"));
    assert_eq!(c.loglevel, Some(4));
    assert_eq!(c.vmalloc_fault, VmallocFaultVersion::Legacy);
    assert!(ok("experiment=race").experiment);
    assert!(!c.experiment);
    assert_eq!(bad("experiment=all").key, "experiment");
    assert_eq!(
        c.preempt,
        PreemptModel::None,
        "2.4 has no kernel preemption"
    );
    assert_eq!(ok("preempt=full").preempt, PreemptModel::Full);
    assert_eq!(ok("preempt=full preempt=none").preempt, PreemptModel::None);
    for v in ["voluntary", "", "Full", "none,full"] {
        let mut b = FixedBuf::<40>::new();
        let _ = core::fmt::Write::write_fmt(&mut b, format_args!("preempt={}", v));
        let e = bad(b.as_str());
        assert_eq!(
            (e.key, e.value, e.allowed),
            ("preempt", v, PreemptModel::ALLOWED)
        );
    }
}

fn unknown_keys_reported_and_ignored() {
    let mut seen = [""; 4];
    let mut n = 0;
    let c = parse("quiet paging=pae root=/dev/hda1 foo=", &mut |w| {
        seen[n] = w;
        n += 1;
    })
    .expect("unknown keys must not stop the boot");
    assert_eq!(c.paging, PagingMode::Pae);
    assert_eq!(&seen[..n], &["quiet", "root=/dev/hda1", "foo="]);
}

fn bad_paging_names_key_and_values() {
    let e = bad("paging=3level");
    assert_eq!(
        e,
        BadValue {
            key: "paging",
            value: "3level",
            allowed: "2level, pae"
        }
    );
    assert_eq!(
        text(&e).as_str(),
        "bad value '3level' for paging= (allowed: 2level, pae)"
    );
}

fn bad_vmalloc_fault_names_key_and_values() {
    let e = bad("paging=pae vmalloc_fault=lazy");
    assert_eq!(e.key, "vmalloc_fault");
    assert_eq!(e.value, "lazy");
    assert!(
        text(&e).as_str().contains(VmallocFaultVersion::ALLOWED),
        "{}",
        text(&e)
    );
}

fn key_without_value_is_bad() {
    assert_eq!(bad("paging").key, "paging");
    assert_eq!(bad("test=").key, "test");
    assert_eq!(bad("vmalloc_fault=").value, "");
}

fn loglevel_range_checked() {
    assert_eq!(ok("loglevel=0").loglevel, Some(0));
    assert_eq!(ok("loglevel=8").loglevel, Some(8));
    assert_eq!(bad("loglevel=9").key, "loglevel");
    assert_eq!(bad("loglevel=-1").key, "loglevel");
    assert_eq!(bad("loglevel=x").key, "loglevel");
}

/// `smp=N` (1..NR_CPUS) and Linux's bare `nosmp`.
fn smp_and_nosmp_checked() {
    assert_eq!(ok("").smp, None);
    assert_eq!(ok("smp=1").smp, Some(1));
    assert_eq!(ok("smp=8").smp, Some(8));
    assert_eq!(ok("nosmp").smp, Some(1));
    assert_eq!(ok("smp=4 nosmp").smp, Some(1));
    for s in ["smp=0", "smp=9", "smp=-1", "smp=x", "smp="] {
        let e = bad(s);
        assert_eq!(e.key, "smp", "{}", s);
        assert!(text(&e).as_str().contains("1..8"), "{}", text(&e));
    }
    assert_eq!(bad("nosmp=1").key, "nosmp");
    assert_eq!(bad("nosmp=").key, "nosmp");
}

/// Linux semantics: a repeated parameter's last value counts.
fn last_value_wins() {
    assert_eq!(ok("paging=pae paging=2level").paging, PagingMode::TwoLevel);
    // ... but a bad value anywhere still stops the boot.
    assert_eq!(bad("paging=bogus paging=pae").value, "bogus");
}

/// `fuzz_seed=` takes any 64-bit number (a replay of a logged seed),
/// `fuzz_cases=` a bounded count; both strictly digits.
fn fuzz_parameters_parse() {
    let c = ok("fuzz_seed=0x766d6661756c7400 fuzz_cases=1");
    assert_eq!(c.fuzz_seed, Some(0x766d_6661_756c_7400));
    assert_eq!(c.fuzz_cases, Some(1));
    assert_eq!(ok("fuzz_seed=0").fuzz_seed, Some(0));
    assert_eq!(
        ok("fuzz_seed=18446744073709551615").fuzz_seed,
        Some(u64::MAX)
    );
    assert_eq!(ok("fuzz_cases=1000000").fuzz_cases, Some(1_000_000));
    assert_eq!(ok("").fuzz_seed, None);
    for v in [
        "fuzz_seed=",
        "fuzz_seed=0x",
        "fuzz_seed=+1",
        "fuzz_seed=-1",
        "fuzz_seed=0x1g",
        "fuzz_seed=18446744073709551616",
        "fuzz_seed=0x10000000000000000",
    ] {
        assert_eq!(bad(v).key, "fuzz_seed", "{}", v);
    }
    for v in [
        "fuzz_cases=0",
        "fuzz_cases=1000001",
        "fuzz_cases=x",
        "fuzz_cases",
    ] {
        assert_eq!(bad(v).key, "fuzz_cases", "{}", v);
    }
}

fn glob_matching() {
    assert!(glob_match("*", ""));
    assert!(glob_match("*", "boot.x"));
    assert!(glob_match("boot.*", "boot.memory_map"));
    assert!(!glob_match("boot.*", "bootx.memory_map"));
    assert!(glob_match("b?ot.*map", "boot.memory_map"));
    assert!(glob_match("*.*fault*", "traps.double_fault_reported"));
    assert!(!glob_match("traps", "traps.x"));
    assert!(!glob_match("?", ""));
    assert!(glob_match("a*b*c", "aXXbYYc"));
    assert!(!glob_match("a*b*c", "aXXbYY"));
}

fn filter_selects_suites_and_cases() {
    assert!(selects("boot", "boot", "anything"));
    assert!(!selects("boot", "traps", "boot"));
    assert!(selects("traps.*fault*", "traps", "double_fault_reported"));
    assert!(!selects("traps.*fault*", "traps", "invalid_opcode_caught"));
    assert!(selects("*", "x", "y"));
    assert!(selects("frames.*,paging.*", "paging", "pae_address_split"));
    assert!(selects("frames.*,paging.*", "frames", "x"));
    assert!(!selects("frames.*,paging.*", "sched", "x"));
    // Exclusions: alone they start from everything; they win over a match.
    assert!(!selects("-race.slow", "race", "slow"));
    assert!(selects("-race.slow", "race", "stress"));
    assert!(selects("-race.slow", "boot", "x"));
    assert!(!selects("race,-race.st*", "race", "stress"));
    assert!(selects("race,-race.st*", "race", "slow"));
    assert!(!selects("race,-race.st*", "boot", "x"));
    assert!(!selects("-race", "race", "anything"));
}

fn soak_numbers_checked() {
    let c = ok("experiment=soak soak_ops=1000 soak_seed=0x20010223");
    assert!(c.soak);
    assert_eq!((c.soak_ops, c.soak_seed), (1000, 0x2001_0223));
    assert_eq!(ok("soak_seed=42").soak_seed, 42);
    for s in [
        "soak_ops=0",
        "soak_ops=-1",
        "soak_ops=100000001",
        "soak_ops=1e6",
    ] {
        let e = bad(s);
        assert_eq!(e.key, "soak_ops", "{}", s);
        assert!(text(&e).as_str().contains("1..100000000"), "{}", text(&e));
    }
    for s in [
        "soak_seed=0x",
        "soak_seed=0x1_0000_0000",
        "soak_seed=seed",
        "soak_seed=",
    ] {
        assert_eq!(bad(s).key, "soak_seed", "{}", s);
    }
}
