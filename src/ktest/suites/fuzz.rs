//! Fuzzing of the inputs the kernel parses (`ktest/fuzz/`): the command
//! line, `fuzz::CASES` seeded inputs per target, fed to the functions the
//! boot runs.  No panic, no
//! exception, every bad input refused with a message that names it.

use crate::case;
use crate::ktest::fuzz;
use crate::ktest::fuzz::cmdline::{CMDLINE_MUTATED, CMDLINE_RANDOM, CMDLINE_SOUP};
use crate::ktest::fuzz::text::Text;
use crate::ktest::Suite;

pub static SUITE: Suite = Suite {
    name: "fuzz",
    cases: &[
        case!(cmdline_random_text),
        case!(cmdline_token_soup),
        case!(cmdline_mutated_valid),
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
