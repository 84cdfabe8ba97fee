/*
 * The secondary CPU's first code (Linux 2.4 trampoline.S, xv6
 * entryother.S).  The STARTUP IPI starts the AP in real mode at
 * TRAMPOLINE_BASE (vector 0x08: 0x8000); smpboot.rs copies the bytes
 * between trampoline_start and trampoline_end there, into a page reserved
 * before the frame allocator started, and fills in the tr_* words below.
 *
 * Real mode -> protected mode (a flat GDT of its own, in this page) ->
 * the BSP's CR4 (PSE, PAE, PGE) and, when the BSP set it, EFER.NXE
 * (otherwise every NX entry is a reserved-bit fault on the AP) -> CR3 =
 * tr_cr3, a directory with the kernel half of swapper_pg_dir plus this
 * page mapped 1:1 -> paging on -> tr_esp, and a jump to tr_entry in the
 * kernel's high half (start_secondary), which loads swapper_pg_dir.
 *
 * Everything here runs from the copy: every address is
 * (label - trampoline_start + TRAMPOLINE_BASE).
 */
    .set TRAMPOLINE_BASE, 0x8000
    .set MSR_EFER, 0xC0000080
    .set EFER_NXE, 0x800

    .section .rodata.trampoline, "a"
    .globl trampoline_start
    .code16
trampoline_start:
    cli
    cld
    xor %ax, %ax
    mov %ax, %ds
    lgdtl (tr_gdt_ptr - trampoline_start + TRAMPOLINE_BASE)
    mov %cr0, %eax
    or $1, %eax                         /* PE */
    mov %eax, %cr0
    ljmpl $0x08, $(tr_protected - trampoline_start + TRAMPOLINE_BASE)

    .code32
tr_protected:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov %ax, %fs
    mov %ax, %gs
    mov (tr_cr4 - trampoline_start + TRAMPOLINE_BASE), %eax
    mov %eax, %cr4
    cmpl $0, (tr_nxe - trampoline_start + TRAMPOLINE_BASE)
    je 1f
    mov $MSR_EFER, %ecx
    rdmsr
    or $EFER_NXE, %eax
    wrmsr
1:  mov (tr_cr3 - trampoline_start + TRAMPOLINE_BASE), %eax
    mov %eax, %cr3
    mov %cr0, %eax
    or $0x80010000, %eax                /* PG | WP, as the BSP */
    mov %eax, %cr0
    mov (tr_esp - trampoline_start + TRAMPOLINE_BASE), %esp
    xor %ebp, %ebp                      /* ends the call trace */
    mov (tr_entry - trampoline_start + TRAMPOLINE_BASE), %eax
    jmp *%eax

    .balign 8
tr_gdt:
    .quad 0
    .quad 0x00CF9A000000FFFF            /* 0x08: flat 32-bit code */
    .quad 0x00CF92000000FFFF            /* 0x10: flat data */
tr_gdt_ptr:
    .word 3 * 8 - 1
    .long tr_gdt - trampoline_start + TRAMPOLINE_BASE

    /* Filled in by smpboot.rs in the copy, before the STARTUP IPI. */
    .balign 4
    .globl tr_cr3, tr_cr4, tr_nxe, tr_esp, tr_entry
tr_cr3:     .long 0
tr_cr4:     .long 0
tr_nxe:     .long 0
tr_esp:     .long 0
tr_entry:   .long 0
    .globl trampoline_end
trampoline_end:
    .text
