//! `switch_to(prev, next)`: save the callee-saved registers on the old
//! stack, switch ESP, and only then make `next` the current task, as
//! Linux 2.4's i386 `switch_to` does (there `current` is derived from ESP;
//! here it is this CPU's per-CPU word, percpu.rs).
//! The scheduler has already loaded next's CR3 (`switch_mm`) before this
//! runs: between the two, CR3 and `current` disagree.

use core::arch::global_asm;

extern "C" {
    /// Save state on the current stack into `*prev_esp`, resume the task
    /// whose saved stack pointer is `next_esp`, set `current = next`.
    pub fn switch_to(prev_esp: *mut u32, next_esp: u32, next: *const u8);
    /// Where a new kernel thread's first `switch_to` returns to.
    pub fn kernel_thread_entry();
}

global_asm!(
    r#"
    .text
    .globl switch_to
    .type switch_to, @function
switch_to:
    /* The unwind rules hold on both stacks: next's was left by its own
       switch_to with the same four registers above its return address. */
    .cfi_startproc
    movl 4(%esp), %eax
    movl 8(%esp), %edx
    movl 12(%esp), %ecx
    pushl %ebp
    .cfi_adjust_cfa_offset 4
    .cfi_offset %ebp, -8
    pushl %ebx
    .cfi_adjust_cfa_offset 4
    .cfi_offset %ebx, -12
    pushl %esi
    .cfi_adjust_cfa_offset 4
    .cfi_offset %esi, -16
    pushl %edi
    .cfi_adjust_cfa_offset 4
    .cfi_offset %edi, -20
    movl %esp, (%eax)
    movl %edx, %esp
    .globl switch_to_set_current
switch_to_set_current:
    movl %ecx, %gs:{current}
    popl %edi
    .cfi_adjust_cfa_offset -4
    popl %esi
    .cfi_adjust_cfa_offset -4
    popl %ebx
    .cfi_adjust_cfa_offset -4
    popl %ebp
    .cfi_adjust_cfa_offset -4
    ret
    .cfi_endproc
    .size switch_to, . - switch_to

    /* The first `ret` of switch_to in a new thread lands here, with the
       Task pointer on top of the stack: the call makes it the argument. */
    .globl kernel_thread_entry
    .type kernel_thread_entry, @function
kernel_thread_entry:
    /* A thread's first frame: nothing called it (`bt` ends here). */
    .cfi_startproc simple
    .cfi_def_cfa %esp, 4
    .cfi_undefined %eip
    xorl %ebp, %ebp
    call kernel_thread_start
    ud2
    .cfi_endproc
    .size kernel_thread_entry, . - kernel_thread_entry
"#,
    current = const super::percpu::CURRENT_OFFSET,
    options(att_syntax)
);
