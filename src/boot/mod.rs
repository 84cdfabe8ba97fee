//! From GRUB to `kmain`: the multiboot2 entry (boot/*.s), the boot
//! information, and `start_kernel`.
pub mod info;
pub mod start;
