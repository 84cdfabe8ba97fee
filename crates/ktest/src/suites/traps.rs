//! Exceptions raised on purpose: each must reach `die`, print its oops,
//! and be caught by the recovery point with the right vector, error code
//! and CR2; a double fault must come through its task gate.

use core::arch::asm;

use crate::case;
use crate::Suite;
use vmfault::arch::x86::idt;
use vmfault::arch::x86::trapnr::{X86_PF_INSTR, X86_PF_PROT, X86_PF_WRITE};
use vmfault::fixup::{catch, expect_fault, Caught, CaughtKind};
use vmfault::mm::addr::VirtAddr;
use vmfault::oops::{decode_pf_error, pf_headline};

pub static SUITE: Suite = Suite {
    name: "traps",
    cases: &[
        case!(divide_error_caught),
        case!(invalid_opcode_caught),
        case!(general_protection_caught),
        case!(page_fault_read_caught_with_cr2),
        case!(page_fault_write_caught_with_cr2),
        case!(breakpoint_caught),
        case!(fault_eip_names_the_function),
        case!(oops_wording_matches_linux_2_4),
        case!(double_fault_reported_through_task_gate),
        case!(double_fault_twice),
        case!(nested_recovery_points),
        case!(idt_gate_types),
        case!(write_to_kernel_text_oopses),
        case!(write_to_rodata_oopses),
        case!(jump_into_vmalloc_data_oopses),
        case!(jump_into_kernel_static_oopses),
        case!(jump_into_kernel_heap_oopses),
        case!(jump_into_direct_map_page_oopses),
        case!(fault_at_task_size_is_a_kernel_address),
        case!(not_present_fault_at_task_size_enters_vmalloc_fault),
        case!(fault_at_vmalloc_end_is_outside_5_9s_range),
    ],
};

/// An address no page table maps: user half, never used by the kernel.
const UNMAPPED: u32 = 0x0BAD_0120;

#[inline(never)]
fn raise_divide_error() {
    // SAFETY: faults on purpose; the recovery point resumes elsewhere.
    unsafe {
        asm!("xor %edx, %edx", "xor %eax, %eax", "xor %ecx, %ecx", "div %ecx", out("eax") _, out("edx") _, out("ecx") _, options(att_syntax))
    }
}

#[inline(never)]
fn raise_invalid_opcode() {
    // SAFETY: as above.
    unsafe { asm!("ud2") }
}

#[inline(never)]
fn raise_general_protection() {
    // Selector 0x1230 indexes far past the GDT's end: #GP(0x1230).
    // SAFETY: as above; the load faults, so DS never changes.
    unsafe { asm!("mov $0x1230, %ax", "mov %ax, %ds", out("eax") _, options(att_syntax)) }
}

#[inline(never)]
fn raise_page_fault_read(addr: u32) -> u32 {
    // SAFETY: as above.
    unsafe { core::ptr::read_volatile(addr as *const u32) }
}

#[inline(never)]
fn raise_page_fault_write(addr: u32) {
    // SAFETY: as above.
    unsafe { core::ptr::write_volatile(addr as *mut u32, 0x5a5a5a5a) }
}

/// Point ESP at an unmapped page and fault: the CPU cannot push the #UD
/// frame, nor then the #PF frame: a fault while delivering a page fault is
/// a double fault.
#[inline(never)]
fn raise_double_fault() {
    // SAFETY: never returns; the double-fault task sends us back to the
    // recovery point, which restores ESP.
    unsafe { asm!("mov ${}, %esp", "ud2", const UNMAPPED, options(att_syntax, noreturn)) }
}

fn expect(f: fn(), vector: u32) -> Caught {
    let c = expect_fault(f).unwrap_or_else(|| panic!("no exception, expected vector {}", vector));
    assert_eq!(c.kind, CaughtKind::Exception);
    assert_eq!(c.vector, vector, "{}", c.msg);
    c
}

fn divide_error_caught() {
    let c = expect(raise_divide_error, 0);
    assert_eq!(c.error_code, 0);
}

fn invalid_opcode_caught() {
    expect(raise_invalid_opcode, 6);
}

fn general_protection_caught() {
    let c = expect(raise_general_protection, 13);
    assert_eq!(
        c.error_code, 0x1230,
        "error code must be the faulting selector"
    );
}

fn page_fault_read_caught_with_cr2() {
    let c = expect(
        || {
            raise_page_fault_read(UNMAPPED);
        },
        14,
    );
    assert_eq!(c.cr2, UNMAPPED);
    assert_eq!(c.error_code, 0, "supervisor read of a not-present page");
}

fn page_fault_write_caught_with_cr2() {
    let c = expect(|| raise_page_fault_write(UNMAPPED + 0x1000), 14);
    assert_eq!(c.cr2, UNMAPPED + 0x1000);
    assert_eq!(
        c.error_code, X86_PF_WRITE,
        "supervisor write of a not-present page"
    );
}

fn breakpoint_caught() {
    // SAFETY: int3 traps to the (unhandled, so fatal) #BP path.
    let c = expect(|| unsafe { asm!("int3") }, 3);
    assert_eq!(c.error_code, 0);
}

fn fault_eip_names_the_function() {
    let c = expect(raise_invalid_opcode, 6);
    let s = vmfault::symbols::lookup(c.eip).expect("faulting EIP has a symbol");
    let mut b = vmfault::fixed_buf::FixedBuf::<200>::new();
    let _ = core::fmt::Write::write_fmt(&mut b, format_args!("{}", s));
    assert!(b.as_str().contains("raise_invalid_opcode+"), "{}", b);
}

fn oops_wording_matches_linux_2_4() {
    assert_eq!(
        pf_headline(0xc880_1000).as_str(),
        "Unable to handle kernel paging request at virtual address c8801000"
    );
    assert_eq!(
        pf_headline(0x10).as_str(),
        "Unable to handle kernel NULL pointer dereference at virtual address 00000010"
    );
    assert_eq!(
        decode_pf_error(0).as_str(),
        "supervisor read, page not present"
    );
    assert_eq!(
        decode_pf_error(3).as_str(),
        "supervisor write, protection violation"
    );
    assert_eq!(
        decode_pf_error(0x11).as_str(),
        "supervisor instruction fetch, protection violation"
    );
    assert_eq!(decode_pf_error(4).as_str(), "user read, page not present");
}

fn double_fault_reported_through_task_gate() {
    let c = catch(false, raise_double_fault).expect_err("no double fault");
    assert_eq!(c.kind, CaughtKind::DoubleFault, "{}", c.msg);
    assert_eq!(c.vector, 8);
    let s = vmfault::symbols::lookup(c.eip).expect("symbol for the faulting EIP");
    let mut b = vmfault::fixed_buf::FixedBuf::<200>::new();
    let _ = core::fmt::Write::write_fmt(&mut b, format_args!("{}", s));
    assert!(b.as_str().contains("raise_double_fault"), "{}", b);
}

/// The double-fault task irets back and must be ready for the next one.
fn double_fault_twice() {
    for _ in 0..2 {
        let c = expect_fault(raise_double_fault).expect("no double fault");
        assert_eq!(c.kind, CaughtKind::DoubleFault);
    }
    // And ordinary exceptions still work afterwards.
    expect(raise_invalid_opcode, 6);
}

fn nested_recovery_points() {
    let outer = catch(true, || {
        let inner = expect_fault(raise_invalid_opcode).expect("inner fault");
        assert_eq!(inner.vector, 6);
        raise_divide_error();
    });
    let c = outer.expect_err("outer fault not caught");
    assert_eq!(c.vector, 0, "the outer point caught the second fault");
}

/// At boot every exception has an interrupt gate and #DF a task gate.
fn idt_gate_types() {
    assert_eq!(idt::gate_kind(8), idt::GateKind::Task);
    for v in [0u8, 6, 13] {
        assert_eq!(idt::gate_kind(v), idt::GateKind::Interrupt, "vector {}", v);
    }
}

/// W^X: the kernel's own text and read-only data refuse writes (CR0.WP),
/// and vmalloc data refuses execution where NX exists.
fn write_to_kernel_text_oopses() {
    let target = write_to_kernel_text_oopses as *const () as u32;
    // SAFETY: faults on purpose (text is mapped read-only).
    let c = expect_fault(|| unsafe { core::ptr::write_volatile(target as *mut u8, 0xCC) })
        .expect("kernel text is writable");
    assert_eq!((c.vector, c.cr2), (14, target));
    assert_eq!(
        c.error_code & (X86_PF_PROT | X86_PF_WRITE),
        X86_PF_PROT | X86_PF_WRITE,
        "not a write protection violation"
    );
}

static RODATA_WORD: u32 = 0x1234_5678;

fn write_to_rodata_oopses() {
    // The address only (black_box): the write is meant to be refused by
    // the MMU, not to be reasoned about by the compiler.
    let target = core::hint::black_box(core::ptr::addr_of!(RODATA_WORD) as usize) as u32;
    // SAFETY: faults on purpose (.rodata is mapped read-only).
    let c = expect_fault(|| unsafe { core::ptr::write_volatile(target as *mut u32, 0) })
        .expect(".rodata is writable");
    assert_eq!((c.vector, c.cr2), (14, target));
    assert_eq!(
        c.error_code & (X86_PF_PROT | X86_PF_WRITE),
        X86_PF_PROT | X86_PF_WRITE
    );
    assert_eq!(RODATA_WORD, 0x1234_5678);
}

/// NX is only as good as the mode that has it: PAE with EFER.NXE.  A
/// two-level entry has no NX bit at all (Linux 2.4 i386 had none either).
/// Asked of the CPU and the mode, not of the kernel's own NX flag: a
/// kernel that forgot to enable NX must fail these cases, not skip them.
fn require_nx() {
    if !(vmfault::arch::x86::cpu::features().nx && vmfault::mm::pgtable::is_pae()) {
        let why = if vmfault::mm::pgtable::is_pae() {
            "no NX: this CPU does not report it (CPUID 0x80000001 EDX bit 20)"
        } else {
            "no NX in two-level mode: a two-level entry has no NX bit"
        };
        crate::skip(why);
    }
}

/// Write a `ret` at `p` and call it: with NX the fetch of that very byte
/// must fault, as an instruction fetch from a present page (error code
/// P | I/D), with CR2 = `p`.  Without NX the `ret` runs and returns, and
/// the case fails with `what`.
fn expect_nx_fault(p: *mut u8, what: &str) {
    // SAFETY: `p` is writable kernel memory the caller owns; the call is
    // meant to be refused by the MMU before the `ret` runs.
    let c = expect_fault(|| unsafe {
        core::ptr::write_volatile(p, 0xC3);
        let f: extern "C" fn() = core::mem::transmute(p);
        f();
    })
    .unwrap_or_else(|| panic!("{} executed: it is mapped without NX", what));
    assert_eq!((c.vector, c.cr2), (14, p as u32), "{}", c.msg);
    assert_eq!(
        c.error_code & (X86_PF_PROT | X86_PF_INSTR),
        X86_PF_PROT | X86_PF_INSTR,
        "not an instruction-fetch protection fault: error code {:#x}",
        c.error_code
    );
}

fn jump_into_vmalloc_data_oopses() {
    require_nx();
    let p = vmfault::mm::vmalloc::vmalloc(4096)
        .expect("vmalloc")
        .as_ptr();
    expect_nx_fault(p, "vmalloc data");
    vmfault::mm::vmalloc::vfree(p).unwrap();
}

/// A writable `static` sits in .data: the direct map of the kernel image
/// (mm/init.rs `kernel_page_flags`) must give it NX.
static NX_STATIC: vmfault::racy_cell::RacyCell<[u8; 16]> =
    vmfault::racy_cell::RacyCell::new([0; 16]);

fn jump_into_kernel_static_oopses() {
    require_nx();
    expect_nx_fault(NX_STATIC.get().cast(), "a static in .data");
}

fn jump_into_kernel_heap_oopses() {
    require_nx();
    let mut b = alloc::boxed::Box::new([0u8; 16]);
    expect_nx_fault(b.as_mut_ptr(), "the kernel heap");
}

/// A frame straight from the allocator, reached through the direct map
/// (the part of RAM outside the kernel image).
fn jump_into_direct_map_page_oopses() {
    require_nx();
    let f = vmfault::mm::frame::alloc_frame().expect("frame");
    expect_nx_fault(vmfault::mm::addr::__va(f) as *mut u8, "a direct-map page");
    vmfault::mm::frame::free_frame(f);
}

/// The same boundary for a not-present fault, which reaches `vmalloc_fault`
/// under 2.4.5-pre2's `!(error_code & 5)` test too: the direct map's first
/// page (the real-mode IVT, unused since protected mode) is taken out of
/// the shared kernel page table for one read.  Each version's
/// 2.4 `vmalloc_fault` then finds the kernel entries present and the pte
/// absent, and says so in its own words.
fn not_present_fault_at_task_size_enters_vmalloc_fault() {
    use vmfault::mm::addr::TASK_SIZE;
    use vmfault::mm::fault::{last_bad_area, version, BadArea};
    use vmfault::mm::pgtable::{__pte, set_pte};
    use vmfault::mm::VmallocFaultVersion as V;
    let slot = vmfault::mm::walk::find_pte(
        vmfault::mm::init::swapper_pg_dir(),
        VirtAddr::new(TASK_SIZE),
    )
    .expect("the direct map's first page has a pte");
    let saved = slot.read();
    let f = vmfault::arch::x86::cpu::local_irq_save();
    set_pte(slot, __pte(0));
    vmfault::arch::x86::cpu::flush_tlb_one(TASK_SIZE as usize);
    // SAFETY: a read the MMU refuses (the pte is cleared just above).
    let c = expect_fault(|| unsafe {
        core::ptr::read_volatile(TASK_SIZE as *const u8);
    });
    set_pte(slot, saved);
    vmfault::arch::x86::cpu::flush_tlb_one(TASK_SIZE as usize);
    vmfault::arch::x86::cpu::restore_flags(f);
    let c = c.expect("a read at TASK_SIZE with its pte cleared did not fault");
    assert_eq!((c.vector, c.cr2), (14, TASK_SIZE), "{}", c.msg);
    assert_eq!(c.error_code & X86_PF_PROT, 0, "not a not-present fault");
    let why = last_bad_area();
    vmfault::println!("    # bad area at TASK_SIZE (not present): {:?}", why);
    // NoContext would mean TASK_SIZE was taken for a user address.
    let want = match version() {
        V::Legacy | V::Cr3 => BadArea::PmdAlreadyPresent,
        V::Cli => BadArea::CliPgdCheck,
        V::Sync => BadArea::RefPteAbsent,
        // test10-pre1 and 5.8 have no vmalloc_fault; 5.9's returns at
        // once outside VMALLOC_START..VMALLOC_END.
        V::SetPgdir | V::Eager | V::EagerLazy => BadArea::NoContext,
    };
    assert_eq!(why, want);
}

/// 5.9's `vmalloc_fault` returns at once unless VMALLOC_START <= address <
/// VMALLOC_END.  VMALLOC_END itself (the page above the stack zone, which
/// nothing maps) is outside: a read there must reach no_context under
/// `eager-lazy`.  2.4's handlers test only TASK_SIZE and go on to the
/// tables.
fn fault_at_vmalloc_end_is_outside_5_9s_range() {
    use vmfault::mm::fault::{last_bad_area, version, BadArea};
    use vmfault::mm::vmalloc::VMALLOC_END;
    use vmfault::mm::VmallocFaultVersion as V;
    if vmfault::mm::walk::readable(VMALLOC_END) {
        crate::skip("VMALLOC_END is mapped in this kernel");
    }
    // SAFETY: a read of an unmapped kernel address, under a recovery point.
    let c = expect_fault(|| unsafe {
        core::ptr::read_volatile(VMALLOC_END as *const u32);
    })
    .expect("a read at VMALLOC_END did not fault");
    assert_eq!((c.vector, c.cr2), (14, VMALLOC_END), "{}", c.msg);
    let why = last_bad_area();
    vmfault::println!("    # bad area at VMALLOC_END: {:?}", why);
    match version() {
        V::SetPgdir | V::Eager | V::EagerLazy => assert_eq!(why, BadArea::NoContext),
        _ => assert_ne!(
            why,
            BadArea::NoContext,
            "2.4 took VMALLOC_END for a user address"
        ),
    }
}

/// `if (address >= TASK_SIZE) goto vmalloc_fault;` (2.4.0-2.4.5-pre1):
/// TASK_SIZE itself is a kernel address.  The one kernel-mode fault this
/// kernel can take there is an NX fetch from the direct map's first page
/// (PAE with NX).  The trap-gate versions take it into `vmalloc_fault`,
/// which finds the kernel PMD present and gives up with its own reason;
/// 2.4.5-pre2 and 5.x send a protection fault straight to no_context.
fn fault_at_task_size_is_a_kernel_address() {
    use vmfault::mm::fault::{last_bad_area, version, BadArea};
    use vmfault::mm::VmallocFaultVersion as V;
    require_nx();
    let p = vmfault::mm::addr::TASK_SIZE as *mut u8;
    // SAFETY: the real-mode IVT's first byte, unused since protected
    // mode; restored below.
    let saved = unsafe { core::ptr::read_volatile(p) };
    expect_nx_fault(p, "TASK_SIZE (the direct map's first page)");
    // SAFETY: as above.
    unsafe { core::ptr::write_volatile(p, saved) };
    let why = last_bad_area();
    vmfault::println!("    # bad area at TASK_SIZE: {:?}", why);
    match version() {
        V::Legacy | V::Cli | V::Cr3 => assert_ne!(
            why,
            BadArea::NoContext,
            "TASK_SIZE taken for a user address"
        ),
        // test10-pre1: no vmalloc path at all.
        V::SetPgdir | V::Sync | V::Eager | V::EagerLazy => {
            assert_eq!(why, BadArea::NoContext)
        }
    }
}
