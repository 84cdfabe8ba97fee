//! Fuzzing of every input the kernel parses (`ktest/fuzz/`): the command
//! line and the multiboot2 boot information, `fuzz::CASES` seeded inputs
//! per target, fed to the functions the boot runs.  No panic, no
//! exception, every bad input refused with a message that names it.

use crate::case;
use crate::fuzz::bootinfo::{Mb2, BOOTINFO_MUTATED, BOOTINFO_RANDOM};
use crate::fuzz::cmdline::{CMDLINE_MUTATED, CMDLINE_RANDOM, CMDLINE_SOAK_KEYS, CMDLINE_SOUP};
use crate::fuzz::text::Text;
use crate::fuzz::{self, Target, Verdict};
use crate::Suite;

pub static SUITE: Suite = Suite {
    name: "fuzz",
    cases: &[
        case!(cmdline_random_text),
        case!(cmdline_token_soup),
        case!(cmdline_mutated_valid),
        case!(cmdline_soak_keys),
        case!(bootinfo_mutated),
        case!(bootinfo_random_tags),
        case!(regression_seeds),
    ],
};

fn cmdline_random_text() {
    fuzz::run(&CMDLINE_RANDOM, &mut Text::new());
}

fn cmdline_token_soup() {
    fuzz::run(&CMDLINE_SOUP, &mut Text::new());
}

fn cmdline_mutated_valid() {
    fuzz::run(&CMDLINE_MUTATED, &mut Text::new());
}

fn cmdline_soak_keys() {
    fuzz::run(&CMDLINE_SOAK_KEYS, &mut Text::new());
}

fn bootinfo_mutated() {
    fuzz::run(&BOOTINFO_MUTATED, &mut Mb2::new());
}

fn bootinfo_random_tags() {
    fuzz::run(&BOOTINFO_RANDOM, &mut Mb2::new());
}

/// Inputs of the boot-information targets that broke the kernel before
/// the fixes they led to (found by running these targets against the code
/// as it was; the commits name them), with what `load` must now say.
/// Replayed on every run, whatever `fuzz_seed=` says.
const FOUND: [(&Target<Mb2>, u64, Verdict, &str); 14] = [
    (
        &BOOTINFO_MUTATED,
        0x766f_6665_756c_7404,
        Verdict::Rejected,
        "memory map size not 16 + 24n: crate assert",
    ),
    (
        &BOOTINFO_MUTATED,
        0x766f_6665_756c_7405,
        Verdict::Rejected,
        "memory map entry_size not 24: accepted",
    ),
    (
        &BOOTINFO_MUTATED,
        0x766f_6665_756c_7437,
        Verdict::Rejected,
        "memory map under 16 bytes: crate assert",
    ),
    (
        &BOOTINFO_MUTATED,
        0x766f_6665_756c_7406,
        Verdict::Rejected,
        "area base + length overflows: accepted",
    ),
    (
        &BOOTINFO_RANDOM,
        0x766f_6664_756c_7402,
        Verdict::Rejected,
        "area base + length overflows: end_address overflow",
    ),
    (
        &BOOTINFO_RANDOM,
        0x766f_6664_756c_7405,
        Verdict::Rejected,
        "basic meminfo of 96 bytes: crate cast assert",
    ),
    (
        &BOOTINFO_MUTATED,
        0x766f_6665_756c_7413,
        Verdict::Rejected,
        "sized tag too small: crate cast assert",
    ),
    (
        &BOOTINFO_RANDOM,
        0x766f_6664_756c_7568,
        Verdict::Rejected,
        "module tag under 16 bytes: crate assert",
    ),
    (
        &BOOTINFO_MUTATED,
        0x766f_6665_756c_7402,
        Verdict::Rejected,
        "module ends before it starts: accepted",
    ),
    (
        &BOOTINFO_RANDOM,
        0x766f_6664_756c_7400,
        Verdict::Rejected,
        "ELF entsize neither 40 nor 64: crate panic",
    ),
    (
        &BOOTINFO_MUTATED,
        0x766f_6665_756c_742a,
        Verdict::Accepted,
        "usable RAM total overflows: sum overflow",
    ),
    (
        &BOOTINFO_MUTATED,
        0x766f_6665_756c_748f,
        Verdict::Accepted,
        "area above 16 TiB frees low frames",
    ),
    (
        &BOOTINFO_RANDOM,
        0x766f_6664_756c_741e,
        Verdict::Accepted,
        "area above 16 TiB frees low frames",
    ),
    (
        &BOOTINFO_MUTATED,
        0x766f_6665_756c_7417,
        Verdict::Accepted,
        ".symtab outside the direct map: __va overflow",
    ),
];

/// Seeds that found bugs, replayed on every run whatever the base seed.
fn regression_seeds() {
    let mut m = Mb2::new();
    for (i, &(target, seed, want, what)) in FOUND.iter().enumerate() {
        let got = fuzz::one(target, &mut m, seed, i as u32);
        assert_eq!(
            got, want,
            "fuzz.{} fuzz_seed={:#x} ({}): {}",
            target.name, seed, what, m.what
        );
    }
}
