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
    /* Unwind information (DWARF CFI, in .eh_frame: LLVM writes the
       signal-frame augmentation `S` only there) describes the hardware
       frame, as Linux 2.6's entry.S did with RING0_INT_FRAME,
       RING0_EC_FRAME and CFI_SIGNAL_FRAME: the caller of each entry is
       the interrupted code, its pc is the saved EIP, the instruction that
       was interrupted or faulted (`S`: gdb must not look it up at pc-1),
       and its stack pointer is the address just past the saved EFLAGS
       (ring 0: the CPU pushes no ESP/SS).  So `bt` from a handler walks
       through the trap frame into the interrupted function. */
    .macro FRAME_CPU cfa
    .cfi_startproc simple
    .cfi_signal_frame
    .cfi_def_cfa %esp, \cfa
    .cfi_offset %eip, -12
    .cfi_offset %eflags, -4
    .endm

    /* After `pushal` (SAVE_ALL): every register the interrupted code had
       is in the TrapFrame, 68 bytes below the interrupted ESP. */
    .macro FRAME_SAVED
    .cfi_offset %eax, -40
    .cfi_offset %ecx, -44
    .cfi_offset %edx, -48
    .cfi_offset %ebx, -52
    .cfi_offset %ebp, -60
    .cfi_offset %esi, -64
    .cfi_offset %edi, -68
    .endm

    .altmacro
    .macro TRAP_STUB n
    .balign 16
    .if (\n == 8) || (\n >= 10 && \n <= 14) || (\n == 17) || (\n == 21) || (\n == 29) || (\n == 30)
    FRAME_CPU 16
    .else
    FRAME_CPU 12
    pushl $0
    .cfi_adjust_cfa_offset 4
    .endif
    pushl $\n
    .cfi_adjust_cfa_offset 4
    jmp alltraps
    .cfi_endproc
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

    /* The segment registers and pusha, as both alltraps and error_code
       save them: the TrapFrame. */
    .macro SAVE_ALL
    pushl %ds
    .cfi_adjust_cfa_offset 4
    pushl %es
    .cfi_adjust_cfa_offset 4
    pushl %fs
    .cfi_adjust_cfa_offset 4
    pushl %gs
    .cfi_adjust_cfa_offset 4
    pushal
    .cfi_adjust_cfa_offset 32
    FRAME_SAVED
    .endm

    .globl alltraps
    .type alltraps, @function
alltraps:
    /* vector and error code above the CPU's three words */
    FRAME_CPU 20
    SAVE_ALL
    movw ${kds}, %ax
    movw %ax, %ds
    movw %ax, %es
    cld
    pushl %esp
    .cfi_adjust_cfa_offset 4
    call trap_dispatch
    addl $4, %esp
    .cfi_adjust_cfa_offset -4
    .globl trapret
trapret:
    popal
    .cfi_adjust_cfa_offset -32
    .cfi_same_value %eax
    .cfi_same_value %ecx
    .cfi_same_value %edx
    .cfi_same_value %ebx
    .cfi_same_value %ebp
    .cfi_same_value %esi
    .cfi_same_value %edi
    popl %gs
    .cfi_adjust_cfa_offset -4
    popl %fs
    .cfi_adjust_cfa_offset -4
    popl %es
    .cfi_adjust_cfa_offset -4
    popl %ds
    .cfi_adjust_cfa_offset -4
    addl $8, %esp
    .cfi_adjust_cfa_offset -8
    .globl trapret_iret
trapret_iret:
    iretl
    .cfi_endproc
    .size alltraps, . - alltraps

    /* 2.4 entry.S's `error_code`: an entry (mm/fault.rs `page_fault_*`)
       pushed its handler where a stub pushes the vector number; save the
       registers as alltraps does, put the vector (14, the only user) in
       that slot and call the handler directly: no handler table, no
       dispatch, as in 2.4, where `call *%edi` follows SAVE_ALL. */
    .globl error_code
    .type error_code, @function
error_code:
    /* the handler's address and the CPU's error code, EIP, CS, EFLAGS */
    FRAME_CPU 20
    SAVE_ALL
    movl 48(%esp), %edi
    movl $14, 48(%esp)
    movw ${kds}, %ax
    movw %ax, %ds
    movw %ax, %es
    cld
    pushl %esp
    .cfi_adjust_cfa_offset 4
    call *%edi
    addl $4, %esp
    .cfi_adjust_cfa_offset -4
    jmp trapret
    .cfi_endproc
    .size error_code, . - error_code

    /* The double-fault task: its TSS starts it here with the error code
       already pushed on its own stack.  Report, then iret: with NT set
       that switches back to the interrupted task, and the next double
       fault re-enters right after the iret.  A task switch leaves no
       frame to unwind into (the old task's state is in its TSS): this is
       the outermost frame. */
    .globl double_fault_task
    .type double_fault_task, @function
double_fault_task:
    .cfi_startproc simple
    .cfi_def_cfa %esp, 4
    .cfi_undefined %eip
    call double_fault_report
    addl $4, %esp
    iretl
    jmp double_fault_task
    .cfi_endproc
    .size double_fault_task, . - double_fault_task
"#,
    kds = const super::gdt::KERNEL_DS,
    options(att_syntax)
);
