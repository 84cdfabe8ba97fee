//! Tabulating failing boundaries: consecutive boundaries in the same
//! function with the same outcome become one line,
//! `function+0x10..+0x4a  Oops(PmdAlreadyPresent)  x 37`; and the strip
//! of every boundary's outcome, one `EXPS` line that the host draws
//! (tests/host/vmfault_host/strips.py) and maps to source lines.

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::outcome::{Mark, Outcome};

/// `EXPS|name|total|start:code:eip,...`: each item starts a run of
/// boundaries with one mark.  The eip names the source line the host
/// labels the picture with: the boundary's own instruction, or, when that
/// is inside a library helper (`core::ptr::write_volatile`, an atomic),
/// the last kernel instruction before it, the line that called it.
pub fn print_strip(name: &str, eips: &[u32], marks: &[Mark]) {
    let mut runs = String::new();
    for (k, m) in marks.iter().enumerate() {
        if k == 0 || marks[k - 1] != *m {
            if k > 0 {
                runs.push(',');
            }
            runs.push_str(&format!("{}:{}:{:x}", k, m.code(), kernel_eip(eips, k)));
        }
    }
    vmfault::println!("EXPS|{}|{}|{}", name, marks.len(), runs);
    print_path(name, eips);
}

/// `EXPP|name|eip,eip,...`: every boundary's instruction, in hex, so the
/// host can put two emulators' paths side by side and name the first
/// instruction where they part (tests/host/vmfault_host/compare.py).
pub fn print_path(name: &str, eips: &[u32]) {
    vmfault::print!("EXPP|{}|", name);
    for (k, e) in eips.iter().enumerate() {
        vmfault::print!("{}{:x}", if k == 0 { "" } else { "," }, e);
    }
    vmfault::println!();
}

pub fn failure_groups(failing: &[(usize, u32, Outcome)]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < failing.len() {
        let (k0, eip0, o) = failing[i];
        let sym = vmfault::symbols::lookup(eip0);
        let name = sym.map(|s| s.name).unwrap_or("?");
        let base = sym.map_or(eip0, |s| s.addr);
        let mut j = i;
        while j + 1 < failing.len() {
            let (k, eip, o2) = failing[j + 1];
            let same = vmfault::symbols::lookup(eip).map(|s| s.name) == sym.map(|s| s.name);
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

/// The kernel's own code: its Rust (the core `vmfault` and the floors
/// above it, `vmfault_lab`, `vmfault_ktest`) and its assembly (unmangled
/// names).  A library function instantiated for a kernel type
/// (`drop_in_place::<vmfault::...>`) is the library's: what counts is the
/// crate the path starts in.
fn is_kernel_symbol(name: &str) -> bool {
    match first_crate(name) {
        Some(c) => c == "vmfault" || c.starts_with("vmfault_"),
        None => !(name.starts_with("_R") || name.starts_with("_ZN")),
    }
}

/// The crate a mangled name's path starts in: v0 (`_R...Cs<hash>_7vmfault`)
/// or legacy (`_ZN7vmfault...`).
pub fn first_crate(name: &str) -> Option<&str> {
    let rest = if let Some(v0) = name.strip_prefix("_R") {
        let at = v0.find("Cs")?;
        let after = &v0[at + 2..];
        &after[after.find('_')? + 1..]
    } else {
        name.strip_prefix("_ZN")?
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let len: usize = rest[..digits].parse().ok()?;
    rest.get(digits..digits + len)
}

/// How far back `kernel_eip` looks for a kernel instruction.
const CALLER_LOOKBACK: usize = 200;

fn kernel_eip(eips: &[u32], k: usize) -> u32 {
    let mut syms = vmfault::symbols::Lookups::default();
    let mut own = |e: u32| syms.lookup(e).is_some_and(|s| is_kernel_symbol(s.name));
    let before = eips
        .get(..=k)
        .unwrap_or(&[])
        .iter()
        .rev()
        .take(CALLER_LOOKBACK)
        .find(|&&e| own(e))
        .copied();
    // Boundary 0 may itself be in the helper (the store a watchpoint
    // caught): then the kernel line it returns to.
    let after = || {
        eips.get(k..)
            .unwrap_or(&[])
            .iter()
            .take(CALLER_LOOKBACK)
            .find(|&&e| own(e))
            .copied()
    };
    before.or_else(after).or(eips.get(k).copied()).unwrap_or(0)
}
