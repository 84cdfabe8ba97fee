//! A second, deliberately plain implementation of the command-line grammar
//! of `src/cmdline.rs`, written from its documentation (the key table)
//! rather than from its code: the fuzz suite's oracle.  For any string it
//! says what `cmdline::parse` must return and which words it must report
//! as unknown.  Byte-level throughout: words are runs of bytes that are
//! not ASCII whitespace (space, tab, LF, FF, CR, as Rust's
//! `split_ascii_whitespace` and the WHATWG define it; vertical tab and
//! Unicode spaces are not separators).

use vmfault::cmdline::{Cmdline, PreemptModel, FUZZ_CASES_MAX, SOAK_OPS_MAX};
use vmfault::mm::{PagingMode, VmallocFaultVersion};

/// What parsing a string must give.
pub struct Expected<'a> {
    /// The parsed command line, or the key and value of the first bad
    /// word.
    pub result: Result<Cmdline<'a>, (&'static str, &'a str)>,
    /// Unknown words reported before parsing ended, and a hash of them in
    /// order (`word_hash`).
    pub unknown: usize,
    pub unknown_hash: u64,
}

/// Where `word_hash` starts (FNV-1a's offset basis).
pub const HASH_INIT: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a over the words, each followed by a 0xff separator byte (which
/// no UTF-8 string contains), so the order and the boundaries count.
pub fn word_hash(mut h: u64, word: &str) -> u64 {
    for &b in word.as_bytes().iter().chain(&[0xff]) {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn is_separator(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0c' | b'\r')
}

/// `+` at most once, then one or more decimal digits: what `u8::from_str`
/// (Linux's `kstrtou8` too) takes.  Any number of leading zeros.
fn loglevel(v: &str) -> Option<u8> {
    let d = v.strip_prefix('+').unwrap_or(v);
    if d.is_empty() || !d.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut n: u32 = 0;
    for b in d.bytes() {
        n = (n * 10 + (b - b'0') as u32).min(1000);
    }
    (n <= 8).then_some(n as u8)
}

/// Digits only, decimal or after `0x`/`0X` hexadecimal, at most 64 bits.
fn number(v: &str) -> Option<u64> {
    // `0x` is ASCII: when the string starts with it, byte 2 is a
    // character boundary.
    let (d, radix) = if v.as_bytes().starts_with(b"0x") || v.as_bytes().starts_with(b"0X") {
        (&v[2..], 16u64)
    } else {
        (v, 10u64)
    };
    if d.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for b in d.bytes() {
        let digit = match b {
            b'0'..=b'9' => (b - b'0') as u64,
            b'a'..=b'f' if radix == 16 => (b - b'a' + 10) as u64,
            b'A'..=b'F' if radix == 16 => (b - b'A' + 10) as u64,
            _ => return None,
        };
        n = n.checked_mul(radix)?.checked_add(digit)?;
    }
    Some(n)
}

pub fn expect(s: &str) -> Expected<'_> {
    let mut c = Cmdline::default();
    let mut unknown = 0;
    let mut unknown_hash = HASH_INIT;
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if is_separator(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !is_separator(bytes[i]) {
            i += 1;
        }
        // Separators are ASCII, so both ends are character boundaries.
        let word = &s[start..i];
        let (key, value) = match word.bytes().position(|b| b == b'=') {
            Some(eq) => (&word[..eq], &word[eq + 1..]),
            None => (word, ""),
        };
        let bad = move |k: &'static str| Expected {
            result: Err((k, value)),
            unknown,
            unknown_hash,
        };
        match key {
            "paging" => match value {
                "2level" => c.paging = PagingMode::TwoLevel,
                "pae" => c.paging = PagingMode::Pae,
                _ => return bad("paging"),
            },
            "vmalloc_fault" => match value {
                "legacy" => c.vmalloc_fault = VmallocFaultVersion::Legacy,
                "cli" => c.vmalloc_fault = VmallocFaultVersion::Cli,
                "cr3" => c.vmalloc_fault = VmallocFaultVersion::Cr3,
                "sync" => c.vmalloc_fault = VmallocFaultVersion::Sync,
                "eager" => c.vmalloc_fault = VmallocFaultVersion::Eager,
                "eager-lazy" => c.vmalloc_fault = VmallocFaultVersion::EagerLazy,
                _ => return bad("vmalloc_fault"),
            },
            "preempt" => match value {
                "none" => c.preempt = PreemptModel::None,
                "full" => c.preempt = PreemptModel::Full,
                _ => return bad("preempt"),
            },
            "test" if value.is_empty() => return bad("test"),
            "test" => c.test = Some(value),
            // The lab checks the handles; the parser keeps any text.
            "race" if value.is_empty() => return bad("race"),
            "race" => c.race = Some(value),
            "experiment" => match value {
                "race" => c.experiment = true,
                "bench" => c.bench = true,
                "soak" => c.soak = true,
                "engine" => c.engine = true,
                "triple_fault" => c.triple_fault = true,
                _ => return bad("experiment"),
            },
            "soak_ops" => match number(value) {
                Some(n) if n >= 1 && n <= SOAK_OPS_MAX as u64 => c.soak_ops = n as u32,
                _ => return bad("soak_ops"),
            },
            "soak_seed" => match number(value) {
                Some(n) if n <= u32::MAX as u64 => c.soak_seed = n as u32,
                _ => return bad("soak_seed"),
            },
            "loglevel" => match loglevel(value) {
                Some(l) => c.loglevel = Some(l),
                None => return bad("loglevel"),
            },
            "fuzz_seed" => match number(value) {
                Some(n) => c.fuzz_seed = Some(n),
                None => return bad("fuzz_seed"),
            },
            "fuzz_cases" => match number(value) {
                Some(n) if n >= 1 && n <= FUZZ_CASES_MAX as u64 => c.fuzz_cases = Some(n as u32),
                _ => return bad("fuzz_cases"),
            },
            _ => {
                unknown += 1;
                unknown_hash = word_hash(unknown_hash, word);
            }
        }
    }
    Expected {
        result: Ok(c),
        unknown,
        unknown_hash,
    }
}
