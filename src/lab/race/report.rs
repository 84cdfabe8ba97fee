//! Tabulating failing boundaries: consecutive boundaries in the same
//! function with the same outcome become one line,
//! `function+0x10..+0x4a  Oops(PmdAlreadyPresent)  x 37`.

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::explorer::Outcome;

pub fn failure_groups(failing: &[(usize, u32, Outcome)]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < failing.len() {
        let (k0, eip0, o) = failing[i];
        let sym = crate::symbols::lookup(eip0);
        let name = sym.map(|s| s.name).unwrap_or("?");
        let base = sym.map_or(eip0, |s| s.addr);
        let mut j = i;
        while j + 1 < failing.len() {
            let (k, eip, o2) = failing[j + 1];
            let same = crate::symbols::lookup(eip).map(|s| s.name) == sym.map(|s| s.name);
            if k != failing[j].0 + 1 || o2 != o || !same {
                break;
            }
            j += 1;
        }
        let (k1, eip1, _) = failing[j];
        out.push(format!(
            "boundaries {}..{}: {:#}+{:#x}..+{:#x} {:?} x {}",
            k0,
            k1,
            rustc_demangle::demangle(name),
            eip0 - base,
            eip1 - base,
            o,
            j - i + 1
        ));
        i = j + 1;
    }
    out
}
