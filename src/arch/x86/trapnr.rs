//! Exception vectors' names, as 2.4's `die()` prints them, and the bits
//! of the page-fault error code: the vocabulary the trap path, the fixup
//! and the oops report share.

/// Linux 2.4's names for the exceptions, as `die()` prints them.
pub const TRAP_NAMES: [&str; 32] = [
    "divide error",
    "debug",
    "nmi",
    "int3",
    "overflow",
    "bounds",
    "invalid operand",
    "device not available",
    "double fault",
    "coprocessor segment overrun",
    "invalid TSS",
    "segment not present",
    "stack segment",
    "general protection fault",
    "page fault",
    "spurious interrupt bug",
    "coprocessor error",
    "alignment check",
    "machine check",
    "simd coprocessor error",
    "virtualization exception",
    "control protection",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "security exception",
    "reserved",
];

/// The page-fault error code's bits (Intel SDM 3A 4.7), with the names
/// Linux gives them (`enum x86_pf_error_code`); 2.4 wrote the numbers.
pub const X86_PF_PROT: u32 = 1 << 0;
pub const X86_PF_WRITE: u32 = 1 << 1;
pub const X86_PF_USER: u32 = 1 << 2;
pub const X86_PF_RSVD: u32 = 1 << 3;
pub const X86_PF_INSTR: u32 = 1 << 4;
