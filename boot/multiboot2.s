/*
 * Multiboot2 header (spec section 3.1).  GRUB scans the first 32 KiB of the
 * image for it, so linker.ld keeps .multiboot2 first in the low .boot output
 * section.  Only the mandatory fields and the end tag: the kernel asks for
 * nothing special (no framebuffer, no relocation).
 */
    .section .multiboot2, "a"
    .balign 8
mb2_header_start:
    .long 0xE85250D6                        /* magic */
    .long 0                                 /* architecture: i386 protected mode */
    .long mb2_header_end - mb2_header_start /* header length */
    .long 0x100000000 - (0xE85250D6 + 0 + (mb2_header_end - mb2_header_start))
    .balign 8
    .short 0                                /* end tag: type 0 */
    .short 0                                /* flags */
    .long 8                                 /* size */
mb2_header_end:
