//! The command-line fuzz targets: random text, soups of known and
//! unknown words, and valid command lines after typo-like edits, fed to
//! `cmdline::parse` exactly as `start_kernel` calls it.  The oracle is
//! `cmdline_model`, an independent implementation of the grammar: the
//! parse must agree with it on every input (values, unknown words, the
//! first bad word); a refusal must quote the bad key and value; an
//! accepted line must re-parse to the same values from its canonical form.

use core::fmt::Write;

use super::cmdline_model::{self, word_hash, HASH_INIT};
use super::text::{Text, TEXT_BYTES};
use super::{Target, Verdict};
use vmfault::cmdline::{parse, BadValue, Cmdline};
use vmfault::println;
use vmfault::rand::Rng;

// KEYS and GOOD_WORDS are frozen: the bootinfo fuzzer builds its command
// line tags from them, and its regression seeds (suites/fuzz.rs) replay
// inputs built with exactly these lists.  Keys and values added later
// (`preempt=`, `cr3`, `eager-lazy`) have their cases in the cmdline suite.
const KEYS: [&str; 7] = [
    "paging",
    "vmalloc_fault",
    "test",
    "loglevel",
    "experiment",
    "fuzz_seed",
    "fuzz_cases",
];
const GOOD_WORDS: [&str; 11] = [
    "2level", "pae", "legacy", "cli", "sync", "eager", "race", "bench", "0", "8", "0x10",
];
/// Characters that are not plain: NUL, controls, vertical tab (not a
/// separator for `split_ascii_whitespace`), NEL and no-break space
/// (Unicode spaces, no separators either), wide characters.
const ODD: [char; 16] = [
    '\0', '\t', '\n', '\r', '\x0b', '\x0c', '\x1b', '\x7f', '\u{85}', '\u{a0}', 'é', '€',
    '\u{2028}', '\u{3000}', '\u{feff}', '😀',
];
const GLOB: &[u8] = b"abcdefghijklmnopqrstuvwxyz_.*?,0123456789";

fn random_char(rng: &mut Rng) -> char {
    match rng.below(100) {
        0..=59 => GLOB[rng.below(GLOB.len())] as char,
        60..=69 => '=',
        70..=79 => ' ',
        80..=89 => (0x21 + rng.below(0x5e) as u8) as char,
        _ => *rng.pick(&ODD),
    }
}

/// Random text, mostly short, now and then close to the buffer's size;
/// whole keys and values are mixed in so known keys do turn up.
fn gen_random_text(rng: &mut Rng, t: &mut Text) {
    t.len = 0;
    let target = if rng.chance(10) {
        rng.range(400, TEXT_BYTES - 8)
    } else {
        rng.range(0, 100)
    };
    while t.len < target && t.room() >= 16 {
        match rng.below(100) {
            0..=9 => t.push(rng.pick(&KEYS)),
            10..=14 => t.push(rng.pick(&GOOD_WORDS)),
            _ => t.push_char(random_char(rng)),
        }
    }
}

/// A known key with a value it accepts, in one of its spellings.
fn good_token(rng: &mut Rng, t: &mut Text) {
    let key = rng.below(KEYS.len());
    let _ = write!(t, "{}=", KEYS[key]);
    match key {
        0 => t.push(rng.pick(&["2level", "pae"])),
        1 => t.push(rng.pick(&["legacy", "cli", "sync", "eager"])),
        2 => {
            for _ in 0..rng.range(1, 24) {
                t.push_char(GLOB[rng.below(GLOB.len())] as char);
            }
            if rng.chance(10) {
                t.push("=x");
            }
        }
        3 => {
            let l = rng.range(0, 8);
            let _ = match rng.below(4) {
                0 => write!(t, "0{}", l),
                1 => write!(t, "+{}", l),
                _ => write!(t, "{}", l),
            };
        }
        4 => t.push(rng.pick(&["race", "bench"])),
        5 => {
            let v = rng.next_u64() >> rng.below(64);
            let _ = match rng.below(3) {
                0 => write!(t, "{}", v),
                1 => write!(t, "{:#x}", v),
                _ => write!(t, "0X{:X}", v),
            };
        }
        _ => {
            let _ = write!(t, "{}", rng.range(1, 1_000_000));
        }
    }
}

/// A known key with a value it refuses, or a malformed word.
fn bad_token(rng: &mut Rng, t: &mut Text) {
    let (key, values): (&str, &[&str]) = *rng.pick(&[
        (
            "paging",
            &[
                "3level",
                "PAE",
                "2Level",
                "",
                "pae\u{a0}",
                "2levelx",
                "4level",
            ][..],
        ),
        (
            "vmalloc_fault",
            &["lazy", "SYNC", "", "sync,cli", "légacy"][..],
        ),
        ("test", &[""][..]),
        (
            "loglevel",
            &[
                "9",
                "-1",
                "256",
                "",
                "x",
                "+",
                "++1",
                "08x",
                "1\u{feff}",
                "+-1",
            ][..],
        ),
        ("experiment", &["all", "", "Race", "race\0"][..]),
        (
            "fuzz_seed",
            &[
                "",
                "0x",
                "-1",
                "+1",
                "0xg",
                "18446744073709551616",
                "0x1_0",
                "0x10000000000000000",
                "1e3",
            ][..],
        ),
        (
            "fuzz_cases",
            &["0", "1000001", "", "0x0", "99999999999999999999999", "-5"][..],
        ),
    ]);
    match rng.below(5) {
        0 => t.push(key),
        1 => {
            let _ = write!(t, "{}==", key);
        }
        _ => {
            let _ = write!(t, "{}={}", key, rng.pick(values));
        }
    }
}

const UNKNOWN: [&str; 14] = [
    "quiet",
    "root=/dev/hda1",
    "console=ttyS0,115200",
    "foo=",
    "=",
    "==",
    "=pae",
    "Paging=pae",
    "paging_=x",
    "pagin=pae",
    "ro",
    "init=/bin/sh",
    "vmalloc=128M",
    "PAGING",
];

fn separator(rng: &mut Rng, t: &mut Text) {
    for _ in 0..rng.range(1, 3) {
        t.push(rng.pick(&[" ", " ", " ", "\t", "\n", "\r", "\x0c"]));
    }
}

/// Words from the three pools, separated by runs of ASCII whitespace.
pub fn gen_token_soup(rng: &mut Rng, t: &mut Text) {
    t.len = 0;
    if rng.chance(20) {
        separator(rng, t);
    }
    for i in 0..rng.range(0, 12) {
        if i > 0 {
            separator(rng, t);
        }
        match rng.below(100) {
            0..=54 => good_token(rng, t),
            55..=79 => bad_token(rng, t),
            _ => t.push(rng.pick(&UNKNOWN)),
        }
    }
    if rng.chance(20) {
        separator(rng, t);
    }
}

/// A valid command line, then one to three edits of the kinds a typo or
/// a broken loader makes: tokens deleted, duplicated, swapped, glued,
/// inserted; keys recased; `=` dropped or doubled; values cut or extended;
/// bytes replaced; characters inserted.
fn gen_mutated_valid(rng: &mut Rng, t: &mut Text) {
    t.len = 0;
    let n = rng.range(1, 8);
    for i in 0..n {
        if i > 0 {
            t.push(" ");
        }
        if rng.chance(20) {
            t.push(rng.pick(&UNKNOWN));
        } else {
            good_token(rng, t);
        }
    }
    let mut scratch: Text = Text::new();
    for _ in 0..rng.range(1, 3) {
        let (ws, we) = pick_word(rng, t);
        match rng.below(12) {
            // Delete the word.
            0 => t.remove(ws, we),
            // Duplicate it, at the end or in place.
            1 => {
                scratch.len = 0;
                scratch.push(" ");
                scratch.push(&t.as_str()[ws..we]);
                let at = if rng.chance(50) { we } else { t.len };
                t.insert(at, scratch.as_str());
            }
            // Swap it with the last word.
            2 => {
                let (ls, le) = last_word(t);
                if le <= ws || ls >= we {
                    scratch.len = 0;
                    scratch.push(&t.as_str()[ws..we]);
                    let mut last: Text = Text::new();
                    last.push(&t.as_str()[ls..le]);
                    if ls > ws {
                        t.remove(ls, le);
                        t.insert(ls, scratch.as_str());
                        t.remove(ws, we);
                        t.insert(ws, last.as_str());
                    }
                }
            }
            // Insert a bad or unknown word before it.
            3 => {
                scratch.len = 0;
                if rng.chance(50) {
                    bad_token(rng, &mut scratch);
                } else {
                    scratch.push(rng.pick(&UNKNOWN));
                }
                scratch.push(" ");
                t.insert(ws, scratch.as_str());
            }
            // Upper-case its first byte.
            4 if we > ws => {
                t.buf[ws] = t.buf[ws].to_ascii_uppercase();
            }
            // Drop or double its `=`.
            5 | 6 => {
                if let Some(eq) = t.as_str()[ws..we].find('=') {
                    if rng.chance(50) {
                        t.remove(ws + eq, ws + eq + 1);
                    } else {
                        t.insert(ws + eq, "=");
                    }
                }
            }
            // Cut it short at a character boundary.
            7 if we > ws => {
                let mut cut = rng.range(ws, we - 1);
                while !t.as_str().is_char_boundary(cut) {
                    cut -= 1;
                }
                t.remove(cut, we);
            }
            // Append a character to it.
            8 => {
                let c = random_char(rng);
                t.insert(we, c.encode_utf8(&mut [0; 4]));
            }
            // Glue it to the next word.
            9 => {
                if we < t.len && t.buf[we] == b' ' {
                    t.remove(we, we + 1);
                }
            }
            // Replace one of its bytes by a random ASCII byte (the line is
            // ASCII so far, except what an earlier edit inserted: only
            // ASCII bytes are replaced, so it stays UTF-8).
            10 if we > ws => {
                let i = rng.range(ws, we - 1);
                if t.buf[i].is_ascii() {
                    t.buf[i] = rng.below(0x80) as u8;
                }
            }
            // Insert any character anywhere.
            _ => {
                let at = t.char_boundary(rng);
                let c = random_char(rng);
                t.insert(at, c.encode_utf8(&mut [0; 4]));
            }
        }
    }
}

/// Byte range of a random space-separated word (or an empty range).
fn pick_word(rng: &mut Rng, t: &Text) -> (usize, usize) {
    let s = t.as_str();
    let n = s.split(' ').count();
    let k = rng.below(n);
    let mut start = 0;
    for (i, w) in s.split(' ').enumerate() {
        if i == k {
            return (start, start + w.len());
        }
        start += w.len() + 1;
    }
    (0, 0)
}

fn last_word(t: &Text) -> (usize, usize) {
    let s = t.as_str();
    let start = s.rfind(' ').map(|i| i + 1).unwrap_or(0);
    (start, s.len())
}

fn check_cmdline(t: &Text) -> Verdict {
    let s = t.as_str();
    let want = cmdline_model::expect(s);
    let (mut n, mut h) = (0usize, HASH_INIT);
    let got = parse(s, &mut |w| {
        n += 1;
        h = word_hash(h, w);
    });
    assert!(
        (n, h) == (want.unknown, want.unknown_hash),
        "reported {} unknown words, the grammar has {} (or other ones)",
        n,
        want.unknown
    );
    match (got, want.result) {
        (Ok(c), Ok(m)) => {
            assert_eq!(c, m, "parsed differently from the grammar");
            round_trip(&c);
            Verdict::Accepted
        }
        (Err(e), Err((key, value))) => {
            assert_eq!((e.key, e.value), (key, value), "a different word refused");
            check_bad_value(s, &e);
            Verdict::Rejected
        }
        (got, want) => panic!("parse gave {:?}, the grammar says {:?}", got, want),
    }
}

/// The message names the key, quotes the very value from the input, and
/// lists what the key takes: `bad value 'V' for K= (allowed: A)`.
pub fn check_bad_value(s: &str, e: &BadValue) {
    let mut msg = Text::<{ TEXT_BYTES + 256 }>::new();
    let _ = write!(msg, "{}", e);
    let m = msg.as_str();
    let allowed = m
        .strip_prefix("bad value '")
        .and_then(|r| r.strip_prefix(e.value))
        .and_then(|r| r.strip_prefix("' for "))
        .and_then(|r| r.strip_prefix(e.key))
        .and_then(|r| r.strip_prefix("= (allowed: "))
        .and_then(|r| r.strip_suffix(')'));
    assert!(
        allowed.is_some_and(|a| !a.is_empty() && a == e.allowed),
        "message {:?}",
        m
    );
    // A value is quoted from the input itself (a word without `=` has
    // the empty value, which has no place in it).
    let (p, q) = (s.as_ptr() as usize, e.value.as_ptr() as usize);
    assert!(
        e.value.is_empty() || (p <= q && q + e.value.len() <= p + s.len()),
        "the bad value is not a slice of the input"
    );
}

/// An accepted command line printed in canonical form parses back to the
/// same values, with no unknown word.
fn round_trip(c: &Cmdline) {
    let mut r: Text = Text::new();
    let _ = write!(
        r,
        "paging={} vmalloc_fault={}",
        c.paging.name(),
        c.vmalloc_fault.name()
    );
    if let Some(g) = c.test {
        let _ = write!(r, " test={}", g);
    }
    if let Some(l) = c.loglevel {
        let _ = write!(r, " loglevel={}", l);
    }
    if c.experiment {
        r.push(" experiment=race");
    }
    if c.bench {
        r.push(" experiment=bench");
    }
    if c.soak {
        r.push(" experiment=soak");
    }
    if c.engine {
        r.push(" experiment=engine");
    }
    if let Some(h) = c.race {
        let _ = write!(r, " race={}", h);
    }
    let _ = write!(r, " soak_ops={} soak_seed={:#x}", c.soak_ops, c.soak_seed);
    if let Some(s) = c.fuzz_seed {
        let _ = write!(r, " fuzz_seed={:#x}", s);
    }
    if let Some(n) = c.fuzz_cases {
        let _ = write!(r, " fuzz_cases={}", n);
    }
    let mut unknown = 0;
    let again = parse(r.as_str(), &mut |_| unknown += 1)
        .unwrap_or_else(|e| panic!("canonical form {:?} refused: {}", r.as_str(), e));
    assert_eq!(unknown, 0, "canonical form has unknown words");
    assert_eq!(
        again,
        *c,
        "canonical form {:?} parses differently",
        r.as_str()
    );
}

fn show_text(t: &Text) {
    println!("    # input ({} bytes): {:?}", t.len, t.as_str());
}

pub static CMDLINE_RANDOM: Target<Text> = Target {
    name: "cmdline_random_text",
    salt: 1,
    min_accepted: 10,
    min_rejected: 10,
    generate: gen_random_text,
    check: check_cmdline,
    show: show_text,
};

pub static CMDLINE_SOUP: Target<Text> = Target {
    name: "cmdline_token_soup",
    salt: 2,
    min_accepted: 10,
    min_rejected: 10,
    generate: gen_token_soup,
    check: check_cmdline,
    show: show_text,
};

pub static CMDLINE_MUTATED: Target<Text> = Target {
    name: "cmdline_mutated_valid",
    salt: 3,
    min_accepted: 10,
    min_rejected: 10,
    generate: gen_mutated_valid,
    check: check_cmdline,
    show: show_text,
};

/// A token soup with the soak's keys spliced in, good and bad values
/// alike.  A target of its own, so that the soup (which the boot
/// information fuzzer's command-line tags also draw from) keeps its
/// sequence and the regression seeds keep hitting their bugs.
fn gen_soak_keys(rng: &mut Rng, t: &mut Text) {
    t.len = 0;
    if rng.chance(30) {
        gen_token_soup(rng, t);
    }
    for _ in 0..rng.range(1, 3) {
        if t.room() < 40 {
            break;
        }
        separator(rng, t);
        match rng.below(10) {
            0..=1 => t.push("experiment=soak"),
            2..=4 => {
                let _ = write!(t, "soak_ops={}", rng.range(1, 100_000_000));
            }
            5..=7 => {
                let _ = match rng.below(3) {
                    0 => write!(t, "soak_seed={:#x}", rng.next_u32()),
                    1 => write!(t, "soak_seed=0X{:X}", rng.next_u32()),
                    _ => write!(t, "soak_seed={}", rng.next_u32()),
                };
            }
            8 => {
                let v = rng.pick(&["0", "100000001", "", "1e6", "-1", "0x", "+5", "0x5F5E101"]);
                let _ = write!(t, "soak_ops={}", v);
            }
            _ => {
                let v = rng.pick(&["", "0x100000000", "4294967296", "seed", "+1", "0x1_0"]);
                let _ = write!(t, "soak_seed={}", v);
            }
        }
    }
}

pub static CMDLINE_SOAK_KEYS: Target<Text> = Target {
    name: "cmdline_soak_keys",
    salt: 6,
    min_accepted: 10,
    min_rejected: 10,
    generate: gen_soak_keys,
    check: check_cmdline,
    show: show_text,
};
