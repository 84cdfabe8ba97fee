//! Oops reports in the shape of Linux 2.4's `die()`/`show_registers()`
//! (arch/i386/kernel/traps.c) and `do_page_fault`'s no_context path
//! (arch/i386/mm/fault.c): the reason line, `*pde`, EIP with its symbol,
//! registers, control registers, a stack dump, a frame-pointer call trace
//! and the code bytes at EIP.

use crate::mm::addr::PhysAddr;
use core::fmt::Write;

use crate::arch::x86::cpu;
use crate::arch::x86::entry::TrapFrame;
use crate::arch::x86::trapnr::{
    TRAP_NAMES, X86_PF_INSTR, X86_PF_PROT, X86_PF_RSVD, X86_PF_USER, X86_PF_WRITE,
};
use crate::fixed_buf::FixedBuf;
use crate::mm::addr::VirtAddr;
use crate::mm::walk::{probe, readable, Walk};
use crate::{print, println, symbols};

const STACK_WORDS: u32 = 24;
const TRACE_DEPTH: usize = 16;

/// The #PF error code in words, e.g. `supervisor write, page not present`.
pub fn decode_pf_error(ec: u32) -> FixedBuf<96> {
    let mut s = FixedBuf::new();
    let _ = write!(
        s,
        "{} {}{}, {}",
        if ec & X86_PF_USER != 0 {
            "user"
        } else {
            "supervisor"
        },
        if ec & X86_PF_INSTR != 0 {
            "instruction fetch"
        } else if ec & X86_PF_WRITE != 0 {
            "write"
        } else {
            "read"
        },
        if ec & X86_PF_RSVD != 0 {
            " (reserved bit set)"
        } else {
            ""
        },
        if ec & X86_PF_PROT != 0 {
            "protection violation"
        } else {
            "page not present"
        }
    );
    s
}

/// The first line of a page-fault oops, exactly as 2.4 words it.
pub fn pf_headline(cr2: u32) -> FixedBuf<96> {
    let mut s = FixedBuf::new();
    let what = if cr2 < 4096 {
        "NULL pointer dereference"
    } else {
        "paging request"
    };
    let _ = write!(
        s,
        "Unable to handle kernel {} at virtual address {:08x}",
        what, cr2
    );
    s
}

/// Linux 2.4 prints the PGD (and, in PAE, PMD) entry for the address.
pub fn print_pde(addr: u32) {
    print_entries("", &probe(addr));
    // And the reference directory, which the lazy sync copies from.
    let swapper = crate::mm::init::swapper_pg_dir();
    if swapper.as_u32() != 0 && PhysAddr::new(cpu::read_cr3_pa()) != swapper {
        print_entries(
            "init_mm: ",
            &crate::mm::walk::translate(swapper, VirtAddr::new(addr)),
        );
    }
}

/// One line of directory entries, in 2.4's `*pde = ` shape (PAE: the
/// PDPTE and the PMD entry, 64 bits wide).
fn print_entries(prefix: &str, w: &Walk) {
    let pae = crate::mm::pgtable::is_pae();
    if pae {
        print!("{}*pdpte = {:016x}", prefix, w.pgd.val());
        if let Some(pmd) = w.pmd {
            print!("  *pmd = {:016x}", pmd.val());
        }
    } else {
        print!("{}*pde = {:08x}", prefix, w.pgd.val());
    }
    if let Some(pte) = w.pte {
        print!("  *pte = {:0w$x}", pte.val(), w = if pae { 16 } else { 8 });
    }
    println!();
}

fn print_symbol(addr: u32) {
    match symbols::lookup(addr) {
        Some(s) => println!("EIP is at {}", s),
        None => println!("EIP is at {:08x} (no symbol)", addr),
    }
}

/// `show_stack` and `show_trace`: raw words above ESP, then return
/// addresses found by walking the EBP chain (the kernel is built with
/// frame pointers).  Every read is checked against the live page tables
/// first: a report must never fault.
pub fn show_stack_and_trace(esp: u32, ebp: u32, eip: u32) {
    print!("Stack:");
    for i in 0..STACK_WORDS {
        let a = esp.wrapping_add(i * 4);
        if !readable(a) {
            print!(" <unmapped {:08x}>", a);
            break;
        }
        if i > 0 && i % 8 == 0 {
            print!("\n      ");
        }
        // SAFETY: `readable` just checked the translation exists.
        print!(" {:08x}", unsafe {
            core::ptr::read_volatile(a as *const u32)
        });
    }
    println!();
    println!("Call Trace:");
    println!(" [<{:08x}>] {}", eip, sym_or_blank(eip));
    let mut fp = ebp;
    for _ in 0..TRACE_DEPTH {
        if fp == 0 || fp & 3 != 0 || !readable(fp) || !readable(fp + 4) {
            break;
        }
        // SAFETY: both words were checked readable above.
        let (next, ret) = unsafe {
            (
                core::ptr::read_volatile(fp as *const u32),
                core::ptr::read_volatile((fp + 4) as *const u32),
            )
        };
        if ret == 0 {
            break;
        }
        println!(" [<{:08x}>] {}", ret, sym_or_blank(ret));
        if next <= fp {
            break;
        }
        fp = next;
    }
}

fn sym_or_blank(addr: u32) -> FixedBuf<200> {
    let mut s = FixedBuf::new();
    if let Some(sym) = symbols::lookup(addr) {
        let _ = write!(s, "{}", sym);
    }
    s
}

fn show_code(eip: u32) {
    print!("Code:");
    for i in 0..16 {
        let a = eip.wrapping_add(i);
        if !readable(a & !3) {
            print!(" Bad EIP value.");
            break;
        }
        // SAFETY: checked readable.
        print!(" {:02x}", unsafe {
            core::ptr::read_volatile(a as *const u8)
        });
    }
    println!();
}

#[allow(clippy::too_many_arguments)]
fn show_registers(
    eip: u32,
    cs: u32,
    eflags: u32,
    r: [u32; 8],    // eax ebx ecx edx esi edi ebp esp
    segs: [u32; 4], // ds es fs gs
    ss: u32,
    cr2: u32,
) {
    println!("CPU:    {}", crate::arch::x86::percpu::smp_processor_id());
    println!("EIP:    {:04x}:[<{:08x}>]    Not tainted", cs & 0xffff, eip);
    print_symbol(eip);
    println!("EFLAGS: {:08x}", eflags);
    println!(
        "eax: {:08x}   ebx: {:08x}   ecx: {:08x}   edx: {:08x}",
        r[0], r[1], r[2], r[3]
    );
    println!(
        "esi: {:08x}   edi: {:08x}   ebp: {:08x}   esp: {:08x}",
        r[4], r[5], r[6], r[7]
    );
    println!(
        "ds: {:04x}   es: {:04x}   fs: {:04x}   gs: {:04x}   ss: {:04x}",
        segs[0] & 0xffff,
        segs[1] & 0xffff,
        segs[2] & 0xffff,
        segs[3] & 0xffff,
        ss & 0xffff
    );
    println!(
        "cr0: {:08x}   cr2: {:08x}   cr3: {:08x}   cr4: {:08x}",
        cpu::read_cr0(),
        cr2,
        cpu::read_cr3(),
        cpu::read_cr4()
    );
    println!(
        "Process {} (pid: {})",
        crate::oops::current_comm(),
        crate::oops::current_pid()
    );
}

/// Name of the running task, for the `Process` line.
pub fn current_comm() -> &'static str {
    if crate::sched::is_initialised() {
        crate::sched::current().name
    } else {
        "swapper"
    }
}

pub fn current_pid() -> u32 {
    if crate::sched::is_initialised() {
        crate::sched::current().pid
    } else {
        0
    }
}

static SILENT: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Experiments that provoke thousands of expected oopses turn reports off
/// (their outcomes are recorded and tabulated instead).
pub fn set_silent(on: bool) {
    SILENT.store(on, core::sync::atomic::Ordering::SeqCst);
}

pub fn silenced() -> bool {
    SILENT.load(core::sync::atomic::Ordering::SeqCst)
}

/// Report an exception described by a trap frame.
pub fn report_trap(f: &TrapFrame, cr2: u32) {
    crate::console::force_unlock();
    if silenced() {
        return;
    }
    let name = TRAP_NAMES
        .get(f.vector as usize)
        .copied()
        .unwrap_or("interrupt");
    if crate::fixup::quiet() {
        print!("oops (expected): {}: {:04x}", name, f.error_code & 0xffff);
        if f.vector == 14 {
            print!(" at virtual address {:08x}", cr2);
        }
        println!(", eip {:08x} {}", f.eip, sym_or_blank(f.eip));
        return;
    }
    if f.vector == 14 {
        println!("{}", pf_headline(cr2));
        println!(" printing eip:");
        println!("{:08x}", f.eip);
        print_pde(cr2);
        println!(
            "Oops: {:04x} [{}]",
            f.error_code & 0xffff,
            decode_pf_error(f.error_code)
        );
    } else {
        println!("{}: {:04x}", name, f.error_code & 0xffff);
    }
    let esp = f.interrupted_esp();
    show_registers(
        f.eip,
        f.cs,
        f.eflags,
        [f.eax, f.ebx, f.ecx, f.edx, f.esi, f.edi, f.ebp, esp],
        [f.ds, f.es, f.fs, f.gs],
        crate::arch::x86::gdt::KERNEL_DS as u32,
        cr2,
    );
    show_stack_and_trace(esp, f.ebp, f.eip);
    show_code(f.eip);
}

/// Report a double fault from the state saved in the kernel's TSS.
pub fn report_double_fault(t: &x86::bits32::task::TaskStateSegment, error_code: u32) {
    crate::console::force_unlock();
    let (eip, esp, ebp) = (t.eip, t.esp, t.ebp);
    println!("double fault: {:04x}", error_code & 0xffff);
    if let Some(t) = crate::sched::stack_overflow_at(esp) {
        let st = t.stack().expect("an overflowed stack");
        println!(
            "kernel stack overflow in thread {} (pid {}): esp {:08x} ran off the bottom of its stack {:08x}-{:08x} {}",
            t.name,
            t.pid,
            esp,
            st.base,
            st.top,
            st.overflow_position(esp)
        );
    } else if !readable(esp.wrapping_sub(4)) {
        println!(
            "esp {:08x} (kernel stack is not mapped: blown kernel stack?)",
            esp
        );
    } else {
        println!("esp {:08x}", esp);
    }
    show_registers(
        eip,
        t.cs as u32,
        t.eflags,
        [t.eax, t.ebx, t.ecx, t.edx, t.esi, t.edi, ebp, esp],
        [t.ds as u32, t.es as u32, t.fs as u32, t.gs as u32],
        t.ss as u32,
        cpu::read_cr2(),
    );
    show_stack_and_trace(esp, ebp, eip);
}
