//! Question 1's control (`experiment=triple_fault`).  The seed asks
//! whether three interleaved faults reset the CPU; the explorers answer
//! "no" for every pair they run, and a "no" is only a measurement if the
//! same kernel, on the same emulator, does reset when the rule says it
//! must.  This is that run: a `#PF` whose delivery faults while the
//! double-fault handler cannot be entered.
//!
//! The rule (Intel SDM Vol. 3A, 6.15, "Interrupt 8 - Double Fault
//! Exception", Table 6-5): a page fault while delivering a page fault is
//! a double fault; "if another exception occurs while attempting to call
//! the double-fault handler, the processor enters shutdown mode", which a
//! PC turns into a reset.  So: ESP at the bottom of a vmalloc'd stack (its
//! guard page below), the `#DF` gate made not present, and a touch of the
//! NULL page.  Delivering that `#PF` pushes into the guard page (`#PF`),
//! so `#DF`; delivering `#DF` finds no gate (`#NP`): shutdown.  The faults
//! the explorers nest are not like this: each is delivered on a mapped
//! stack and returns before the next comes, so none is raised *during
//! the delivery* of another, which is all that Table 6-5 counts.

use vmfault::arch::x86::idt;
use vmfault::mm::vmalloc::vmalloc_stack;
use vmfault::println;

/// Arm the control and fault: never returns on a CPU that follows the SDM.
pub fn run() -> ! {
    let Some(stack) = vmalloc_stack(4096) else {
        println!("EXPQ|control|failed=no stack");
        vmfault::qemu::exit(vmfault::qemu::ExitCode::Failed);
    };
    let sp = stack.base;
    println!(
        "EXPQ|control|armed|esp={:#010x}|guard={:#010x}|touch=0x00000000|df_gate=not present",
        sp,
        stack.guard_below()
    );
    vmfault::arch::x86::cpu::cli();
    idt::set_gate_not_present(8);
    // SAFETY: deliberately none: this ends the machine.  ESP moves to a
    // stack whose next push lands in an unmapped guard page, and the load
    // from address 0 faults.
    unsafe {
        core::arch::asm!(
            "mov esp, {sp}",
            "mov eax, dword ptr [0]",
            "ud2",
            sp = in(reg) sp,
            options(noreturn)
        )
    }
}
