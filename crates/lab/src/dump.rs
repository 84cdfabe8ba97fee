//! The serial dump of one address's translation, in `init_mm` and in the
//! current address space side by side: the picture of a lazy PGD sync
//! (used by tests, the boot demo and the gdb helpers' cross-checks).

use core::fmt::{self, Write};

use vmfault::arch::x86::cpu;
use vmfault::fixed_buf::FixedBuf;
use vmfault::mm::addr::PhysAddr;
use vmfault::mm::addr::VirtAddr;
use vmfault::mm::pgtable::{is_pae, PteFlags};
use vmfault::mm::walk::{translate, Walk};
use vmfault::println;

/// `P RW U A D PS G NX` for the set bits.
pub fn flags_str(e: u64) -> FixedBuf<48> {
    let mut s = FixedBuf::new();
    let f = PteFlags::from_bits_truncate(e);
    for (bit, name) in [
        (PteFlags::PRESENT, "P"),
        (PteFlags::RW, "RW"),
        (PteFlags::USER, "U"),
        (PteFlags::ACCESSED, "A"),
        (PteFlags::DIRTY, "D"),
        (PteFlags::PSE, "PS"),
        (PteFlags::GLOBAL, "G"),
        (PteFlags::NX, "NX"),
    ] {
        if f.contains(bit) {
            let _ = write!(
                s,
                "{}{}",
                if s.as_str().is_empty() { "" } else { " " },
                name
            );
        }
    }
    if s.as_str().is_empty() {
        let _ = s.write_str("-");
    }
    s
}

struct Entry(u64);

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if is_pae() {
            write!(f, "{:016x} [{}]", self.0, flags_str(self.0))
        } else {
            write!(f, "{:08x} [{}]", self.0, flags_str(self.0))
        }
    }
}

pub fn print_walk(label: &str, dir: u32, w: &Walk) {
    let lvl = if is_pae() { "pdpte" } else { "pgd" };
    vmfault::print!(
        "  {:<8} dir {:#010x}: {} {}",
        label,
        dir,
        lvl,
        Entry(w.pgd.val())
    );
    if let Some(pmd) = w.pmd {
        vmfault::print!("  pmd {}", Entry(pmd.val()));
    }
    if let Some(pte) = w.pte {
        vmfault::print!("  pte {}", Entry(pte.val()));
    }
    match w.phys {
        Some(p) => println!("  -> phys {:#x}", p),
        None => println!("  -> not mapped"),
    }
}

/// Print `va`'s translation in `init_mm` and in the directory CR3 holds.
pub fn show_translation(va: u32) {
    let swapper = vmfault::mm::init::swapper_pg_dir();
    let cr3 = cpu::read_cr3_pa();
    println!("translation of {:#010x}:", va);
    print_walk(
        "init_mm",
        (swapper).as_u32(),
        &translate(swapper, VirtAddr::new(va)),
    );
    print_walk(
        "current",
        cr3,
        &translate(PhysAddr::new(cr3), VirtAddr::new(va)),
    );
}
