//! Interrupt and exception entry, in the style of xv6's trapasm.S and
//! Linux 2.4's entry.S: 256 stubs of 16 bytes each push an error code (a 0
//! where the CPU pushes none) and the vector, then `alltraps` saves the
//! remaining state into a `TrapFrame` and calls `trap_dispatch`.

use core::arch::global_asm;

/// The saved state of an interrupted kernel context, lowest address first.
/// Ring 0 only: the CPU pushes no ESP/SS, so the interrupted stack pointer
/// is the address just past `eflags`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TrapFrame {
    // pusha
    pub edi: u32,
    pub esi: u32,
    pub ebp: u32,
    pub esp_pusha: u32,
    pub ebx: u32,
    pub edx: u32,
    pub ecx: u32,
    pub eax: u32,
    // segment registers
    pub gs: u32,
    pub fs: u32,
    pub es: u32,
    pub ds: u32,
    // stub
    pub vector: u32,
    pub error_code: u32,
    // CPU
    pub eip: u32,
    pub cs: u32,
    pub eflags: u32,
}

impl TrapFrame {
    /// The stack pointer of the interrupted code (same privilege level).
    pub fn interrupted_esp(&self) -> u32 {
        (&self.eflags as *const u32 as u32) + 4
    }
}

/// Size of one stub in `trap_stubs`; `stub_address(n)` relies on it.
pub const STUB_SIZE: u32 = 16;

extern "C" {
    static trap_stubs: u8;
}

/// Entry address for vector `n`.
pub fn stub_address(n: u8) -> u32 {
    // SAFETY: only the address of the symbol is taken.
    unsafe { &trap_stubs as *const u8 as u32 + n as u32 * STUB_SIZE }
}

global_asm!(
    r#"
    .altmacro
    .macro TRAP_STUB n
    .balign 16
    .if (\n == 8) || (\n >= 10 && \n <= 14) || (\n == 17) || (\n == 21) || (\n == 29) || (\n == 30)
    .else
    pushl $0
    .endif
    pushl $\n
    jmp alltraps
    .endm

    .text
    .balign 16
    .globl trap_stubs
    .type trap_stubs, @function
trap_stubs:
    .set vec, 0
    .rept 256
    TRAP_STUB %vec
    .set vec, vec + 1
    .endr
    .noaltmacro
    .size trap_stubs, . - trap_stubs

    .globl alltraps
    .type alltraps, @function
alltraps:
    pushl %ds
    pushl %es
    pushl %fs
    pushl %gs
    pushal
    movw ${kds}, %ax
    movw %ax, %ds
    movw %ax, %es
    cld
    pushl %esp
    call trap_dispatch
    addl $4, %esp
    .globl trapret
trapret:
    popal
    popl %gs
    popl %fs
    popl %es
    popl %ds
    addl $8, %esp
    iretl
    .size alltraps, . - alltraps

    /* 2.4 entry.S's `error_code`: an entry (mm/fault.rs `page_fault_*`)
       pushed its handler where a stub pushes the vector number; save the
       registers as alltraps does, put the vector (14, the only user) in
       that slot and call the handler directly: no handler table, no
       dispatch, as in 2.4, where `call *%edi` follows SAVE_ALL. */
    .globl error_code
    .type error_code, @function
error_code:
    pushl %ds
    pushl %es
    pushl %fs
    pushl %gs
    pushal
    movl 48(%esp), %edi
    movl $14, 48(%esp)
    movw ${kds}, %ax
    movw %ax, %ds
    movw %ax, %es
    cld
    pushl %esp
    call *%edi
    addl $4, %esp
    jmp trapret
    .size error_code, . - error_code

    /* The double-fault task: its TSS starts it here with the error code
       already pushed on its own stack.  Report, then iret: with NT set
       that switches back to the interrupted task, and the next double
       fault re-enters right after the iret. */
    .globl double_fault_task
    .type double_fault_task, @function
double_fault_task:
    call double_fault_report
    addl $4, %esp
    iretl
    jmp double_fault_task
    .size double_fault_task, . - double_fault_task
"#,
    kds = const super::gdt::KERNEL_DS,
    options(att_syntax)
);
