//! The two 8259A PICs, remapped so IRQ 0-15 arrive at vectors 0x20-0x2F
//! instead of on top of the CPU exceptions (after GRUB, IRQ0 would land on
//! vector 8, the double fault).  Acknowledged the way Linux 2.4's
//! `mask_and_ack_8259A` does: mask the line, then EOI, so the handler can
//! run with interrupts enabled without being re-entered by its own line.

use x86::io::{inb, outb};

pub const IRQ_BASE: u8 = 0x20;
const PIC1_CMD: u16 = 0x20;
const PIC1_DATA: u16 = 0x21;
const PIC2_CMD: u16 = 0xA0;
const PIC2_DATA: u16 = 0xA1;
const EOI: u8 = 0x20;

fn io_wait() {
    // SAFETY: port 0x80 is the POST diagnostic port, a harmless delay.
    unsafe { outb(0x80, 0) }
}

/// ICW1-4: edge triggered, cascaded, vectors 0x20/0x28, 8086 mode; then
/// every line masked until a driver asks for it.
pub fn init() {
    // SAFETY: the PIC ports belong to this driver; interrupts are off.
    unsafe {
        for (port, val) in [
            (PIC1_CMD, 0x11),
            (PIC2_CMD, 0x11),
            (PIC1_DATA, IRQ_BASE),
            (PIC2_DATA, IRQ_BASE + 8),
            (PIC1_DATA, 4),
            (PIC2_DATA, 2),
            (PIC1_DATA, 1),
            (PIC2_DATA, 1),
            (PIC1_DATA, 0xFF),
            (PIC2_DATA, 0xFF),
        ] {
            outb(port, val);
            io_wait();
        }
    }
}

fn data_port(irq: u8) -> (u16, u8) {
    if irq < 8 {
        (PIC1_DATA, irq)
    } else {
        (PIC2_DATA, irq - 8)
    }
}

pub fn mask(irq: u8) {
    let (port, bit) = data_port(irq);
    // SAFETY: PIC data port read-modify-write; callers have interrupts off.
    unsafe { outb(port, inb(port) | (1 << bit)) }
}

pub fn unmask(irq: u8) {
    let (port, bit) = data_port(irq);
    if irq >= 8 {
        unmask(2); // the cascade
    }
    // SAFETY: as above.
    unsafe { outb(port, inb(port) & !(1 << bit)) }
}

/// `mask_and_ack_8259A`.
pub fn mask_and_ack(irq: u8) {
    mask(irq);
    // SAFETY: EOI to the PIC(s) that delivered the IRQ.
    unsafe {
        if irq >= 8 {
            outb(PIC2_CMD, EOI);
        }
        outb(PIC1_CMD, EOI);
    }
}

/// In-service register: is `irq` a real interrupt or a spurious IRQ 7/15?
pub fn in_service(irq: u8) -> bool {
    let (cmd, bit) = if irq < 8 {
        (PIC1_CMD, irq)
    } else {
        (PIC2_CMD, irq - 8)
    };
    // SAFETY: OCW3 "read ISR", then read it back.
    unsafe {
        outb(cmd, 0x0B);
        inb(cmd) & (1 << bit) != 0
    }
}
