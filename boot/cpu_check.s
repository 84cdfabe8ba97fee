/*
 * check_cpu: can this CPU run the kernel at all?  Called by _start before
 * its first write to CR4, paging off.  .boot.text is linked at its load
 * address (linker.ld), so its own symbols are physical; the host_abi
 * values it reads live in the kernel proper, used as symbol - PAGE_OFFSET.
 * Under QEMU, `-cpu 486` and `-cpu pentium` used to reset the kernel
 * before its first serial line (issue 15): the boot page directory sets
 * CR4.PSE, and the compiled code uses i686 instructions
 * (i386-kernel.json: "cpu": "i686"; `-cpu pentium` died on a CMOVE).
 * Linux 2.4's head.S checks the CPU the same way before it relies on it.
 *
 * Needed: CPUID itself (EFLAGS.ID can be toggled), leaf 1, and in
 * CPUID.1:EDX: PSE, TSC, CX8, CMOV.  What is optional (PAE, PGE, NX, the
 * local APIC) is checked later, in Rust, by whoever uses it.
 *
 * Returns with every register but EAX, ECX and EDX kept when the CPU has
 * them all; otherwise prints "vmfault: boot stopped: this CPU lacks ..." on
 * COM1 and leaves QEMU through isa-debug-exit with the failure code (the
 * host_abi values), or halts where there is no such device.
 */
    .set COM1, 0x3F8
    .set EFLAGS_ID, 0x200000

    .section .boot.text, "ax"
    .code32
    .globl check_cpu
    .type check_cpu, @function
check_cpu:
    push %ebx
    push %esi
    pushfl                              /* can EFLAGS.ID be toggled? */
    pop %eax
    mov %eax, %ecx
    xor $EFLAGS_ID, %eax
    push %eax
    popfl
    pushfl
    pop %eax
    push %ecx
    popfl                               /* as it was */
    xor %ecx, %eax
    test $EFLAGS_ID, %eax
    mov $cpu_lacks_cpuid, %esi
    jz cpu_refused
    xor %eax, %eax
    cpuid                               /* EAX: highest standard leaf */
    cmp $1, %eax
    mov $cpu_lacks_leaf1, %esi
    jb cpu_refused
    mov $1, %eax
    cpuid
    mov $cpu_required, %ebx
1:  mov (%ebx), %eax                    /* feature bit; 0 ends the table */
    test %eax, %eax
    jz 2f
    mov 4(%ebx), %esi                   /* its message */
    and %edx, %eax
    jz cpu_refused
    add $8, %ebx
    jmp 1b
2:  pop %esi
    pop %ebx
    ret
    .size check_cpu, . - check_cpu

/* ESI: the physical address of what the CPU lacks (NUL-terminated). */
cpu_refused:
    mov $COM1 + 3, %dx                  /* 8N1, divisor 1 (115200 baud) */
    mov $0x80, %al
    out %al, %dx
    mov $COM1, %dx
    mov $1, %al
    out %al, %dx
    mov $COM1 + 1, %dx
    xor %al, %al
    out %al, %dx
    mov $COM1 + 3, %dx
    mov $0x03, %al
    out %al, %dx
    mov %esi, %ebx
    mov $cpu_refused_prefix, %esi
    call early_puts
    mov %ebx, %esi
    call early_puts
    mov $cpu_refused_end, %esi
    call early_puts
    mov (VMFAULT_QEMU_EXIT_PORT - PAGE_OFFSET), %edx
    mov (VMFAULT_QEMU_EXIT_FAILED - PAGE_OFFSET), %eax
    out %eax, %dx
3:  cli
    hlt
    jmp 3b

/* Print the NUL-terminated string at ESI on COM1, polling. */
early_puts:
4:  movzbl (%esi), %ecx
    test %ecx, %ecx
    jz 6f
    mov $COM1 + 5, %dx                  /* line status: transmitter empty? */
5:  in %dx, %al
    test $0x20, %al
    pause
    jz 5b
    mov $COM1, %dx
    mov %cl, %al
    out %al, %dx
    inc %esi
    jmp 4b
6:  ret

    .balign 4
cpu_required:
    .long 1 << 3, cpu_lacks_pse
    .long 1 << 4, cpu_lacks_tsc
    .long 1 << 8, cpu_lacks_cx8
    .long 1 << 15, cpu_lacks_cmov
    .long 0, 0

cpu_refused_prefix:
    .asciz "vmfault: boot stopped: this CPU lacks "
cpu_refused_end:
    .asciz "\r\n"
cpu_lacks_cpuid:
    .asciz "CPUID (EFLAGS.ID cannot be toggled); the kernel needs an i686 with PSE, TSC, CX8 and CMOV"
cpu_lacks_leaf1:
    .asciz "CPUID leaf 1, which names the features the kernel needs (PSE, TSC, CX8, CMOV)"
cpu_lacks_pse:
    .asciz "PSE (CPUID.1:EDX bit 3): the boot page directory maps 4 MiB pages"
cpu_lacks_tsc:
    .asciz "TSC (CPUID.1:EDX bit 4): the kernel reads the time-stamp counter"
cpu_lacks_cx8:
    .asciz "CX8 (CPUID.1:EDX bit 8): the kernel's 64-bit atomics use CMPXCHG8B"
cpu_lacks_cmov:
    .asciz "CMOV (CPUID.1:EDX bit 15): the kernel is compiled for i686, which has it"
