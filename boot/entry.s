/*
 * Kernel entry, straight from GRUB: 32-bit protected mode, paging off,
 * EAX = multiboot2 magic, EBX = physical address of the boot information.
 *
 * The kernel is linked at PAGE_OFFSET + 1 MiB but runs here at its load
 * address, so every symbol below is used as (symbol - PAGE_OFFSET) until
 * paging is on.  Like Linux 2.4's head.S we build a throw-away page
 * directory: 4 MiB PSE pages mapping the first 4 MiB 1:1 (for the jump) and
 * the first 1 GiB of physical memory at PAGE_OFFSET (so Rust can read the
 * boot information wherever GRUB put it).  mm::init replaces it with
 * swapper_pg_dir in the paging mode chosen on the command line.
 */
    .set PAGE_OFFSET, 0xC0000000
    .set PDE_4M_KERNEL, 0x83            /* PS | RW | P */
    .set CR0_PG_WP, 0x80010000
    .set CR4_PSE, 0x10

    .section .boot.text, "ax"
    .code32
    .globl _start
_start:
    cli
    cld
    mov $(boot_stack_top - PAGE_OFFSET), %esp
    mov %eax, %edi                      /* keep the magic */
    mov %ebx, %esi                      /* keep the info pointer */
    call check_cpu                      /* boot/cpu_check.s: or stop here */

    mov $(boot_pgdir - PAGE_OFFSET), %edx
    movl $PDE_4M_KERNEL, (%edx)         /* 0..4 MiB identity */
    mov $PDE_4M_KERNEL, %eax
    mov $768, %ecx                      /* PAGE_OFFSET >> 22 */
2:  mov %eax, (%edx,%ecx,4)
    add $0x400000, %eax
    inc %ecx
    cmp $1024, %ecx
    jne 2b

    mov %edx, %cr3
    mov %cr4, %eax
    or $CR4_PSE, %eax
    mov %eax, %cr4
    mov %cr0, %eax
    or $CR0_PG_WP, %eax
    mov %eax, %cr0

    mov $start_high, %eax
    jmp *%eax

/*
 * paging_switch(new_cr3, new_cr4): switch between two-level and PAE paging.
 * CR4.PAE may not change while CR0.PG is set (Intel SDM 4.1.2), so this
 * runs from the identity-mapped low half: turn paging off, load CR4 and
 * CR3, turn paging back on and return to the high-half caller.  The caller must
 * have identity-mapped the first 4 MiB in the new tables and run with
 * interrupts off.
 */
    .globl paging_switch
paging_switch:
    mov 4(%esp), %edx                   /* new cr3 */
    mov 8(%esp), %ecx                   /* new cr4 */
    mov %cr0, %eax                      /* no stack use until paging is back */
    and $0x7FFFFFFF, %eax
    mov %eax, %cr0                      /* paging off */
    mov %ecx, %cr4
    mov %edx, %cr3
    or $0x80000000, %eax
    mov %eax, %cr0                      /* paging on, new mode */
    ret

    .text
    .type start_high, @function
start_high:
    /* The boot CPU's first frame: `bt` ends here (no caller). */
    .cfi_startproc simple
    .cfi_def_cfa %esp, 0
    .cfi_undefined %eip
    mov $boot_stack_top, %esp
    xor %ebp, %ebp                      /* ends the frame-pointer call trace */
    push %esi                           /* info (physical) */
    push %edi                           /* magic */
    call start_kernel
4:  cli
    hlt
    jmp 4b
    .cfi_endproc
    .size start_high, . - start_high

    .section .bss
    .balign 4096
    .globl boot_pgdir
boot_pgdir:
    .skip 4096
    /* Unmapped by paging_init: swapper's stack overflow double-faults
       into a report instead of running into boot_pgdir. */
    .globl boot_stack_guard
boot_stack_guard:
    .skip 4096
    .globl boot_stack_bottom
boot_stack_bottom:
    .skip 32768
    .globl boot_stack_top
boot_stack_top:
