//! setjmp/longjmp for recovery points, written as one assembly routine so
//! no Rust frame ever "returns twice": `arch_catch` saves the callee-saved
//! registers, ESP, EFLAGS and a resume address, calls the function, and
//! returns 0; `longjmp` restores that state and makes the same
//! `arch_catch` call return the given non-zero code instead.  Linux's
//! exception-fixup table plays this role for `copy_from_user`.

use core::arch::global_asm;

/// Saved context of one recovery point.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct JmpBuf {
    ebx: u32,
    esi: u32,
    edi: u32,
    ebp: u32,
    esp: u32,
    eflags: u32,
    eip: u32,
}

impl JmpBuf {
    pub const fn new() -> Self {
        Self {
            ebx: 0,
            esi: 0,
            edi: 0,
            ebp: 0,
            esp: 0,
            eflags: 0,
            eip: 0,
        }
    }

    /// The stack pointer the resumed `arch_catch` will run on.
    pub fn esp(&self) -> u32 {
        self.esp
    }
}

extern "C" {
    fn arch_catch(buf: *mut JmpBuf, f: extern "C" fn(*mut u8), arg: *mut u8) -> u32;
    fn arch_longjmp(buf: *const JmpBuf, code: u32) -> !;
    /// Entry for a resume from the double-fault task: reads
    /// `DF_RESUME_BUF`/`DF_RESUME_CODE` since no arguments can be passed.
    pub fn arch_longjmp_df() -> !;
}

/// Run `f`; returns 0 if it returned, or the code given to `longjmp`.
pub fn catch<F: FnOnce()>(buf: &mut JmpBuf, f: F) -> u32 {
    extern "C" fn trampoline<F: FnOnce()>(arg: *mut u8) {
        // SAFETY: `arg` is the `Option<F>` below, alive for the whole call.
        let slot = unsafe { &mut *(arg as *mut Option<F>) };
        if let Some(f) = slot.take() {
            f()
        }
    }
    let mut slot = Some(f);
    // SAFETY: `buf` outlives the call; a longjmp only ever targets a buffer
    // whose `arch_catch` frame is still live (the recovery stack pops it
    // before `catch` returns).
    unsafe { arch_catch(buf, trampoline::<F>, &mut slot as *mut Option<F> as *mut u8) }
}

/// Resume the `arch_catch` that filled `buf`, returning `code` (non-zero).
///
/// # Safety
/// That `arch_catch` call must still be on the stack.
pub unsafe fn longjmp(buf: &JmpBuf, code: u32) -> ! {
    // SAFETY: guaranteed by the caller.
    unsafe { arch_longjmp(buf, code) }
}

#[no_mangle]
pub static mut DF_RESUME_BUF: *const JmpBuf = core::ptr::null();
#[no_mangle]
pub static mut DF_RESUME_CODE: u32 = 0;

global_asm!(
    r#"
    .text
    .globl arch_catch
    .type arch_catch, @function
arch_catch:
    /* A plain frame-pointer frame; a longjmp lands at 2: with this
       frame's EBP and ESP back, so the rules hold there too. */
    .cfi_startproc
    pushl %ebp
    .cfi_adjust_cfa_offset 4
    .cfi_offset %ebp, -8
    movl %esp, %ebp
    .cfi_def_cfa_register %ebp
    pushl %ebx
    .cfi_offset %ebx, -12
    pushl %esi
    .cfi_offset %esi, -16
    pushl %edi
    .cfi_offset %edi, -20
    movl 8(%ebp), %eax
    movl %ebx, 0(%eax)
    movl %esi, 4(%eax)
    movl %edi, 8(%eax)
    movl %ebp, 12(%eax)
    movl %esp, 16(%eax)
    pushfl
    popl 20(%eax)
    movl $2f, 24(%eax)
    pushl 16(%ebp)
    call *12(%ebp)
    addl $4, %esp
    xorl %eax, %eax
2:
    popl %edi
    popl %esi
    popl %ebx
    popl %ebp
    .cfi_def_cfa %esp, 4
    ret
    .cfi_endproc
    .size arch_catch, . - arch_catch

    .globl arch_longjmp
arch_longjmp:
    movl 4(%esp), %edx
    movl 8(%esp), %eax
arch_longjmp_regs:
    movl 0(%edx), %ebx
    movl 4(%edx), %esi
    movl 8(%edx), %edi
    movl 12(%edx), %ebp
    movl 16(%edx), %esp
    pushl 20(%edx)
    popfl
    jmp *24(%edx)

    .globl arch_longjmp_df
arch_longjmp_df:
    movl DF_RESUME_BUF, %edx
    movl DF_RESUME_CODE, %eax
    jmp arch_longjmp_regs
"#,
    options(att_syntax)
);
