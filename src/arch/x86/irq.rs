//! Interrupt requests, Linux 2.4 style (arch/i386/kernel/irq.c): `do_IRQ`
//! acknowledges the source, and unless the handler asked for
//! `SA_INTERRUPT`, re-enables interrupts before running it
//! (`handle_IRQ_event`: `if (!(action->flags & SA_INTERRUPT)) __sti();`).
//! So handlers nest: an interrupt arriving inside a handler, or inside a
//! page fault that handler takes, runs right there on the same stack.

use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use super::entry::TrapFrame;
use super::percpu::this_cpu;
use super::{apic, cpu, dispatch, pic};
use crate::racy_cell::RacyCell;

/// Linux's `LOCAL_TIMER_VECTOR`.
pub const LOCAL_TIMER_VECTOR: u8 = 0xEF;
/// PIT tick: IRQ 0 through the PIC.
pub const TIMER_IRQ_VECTOR: u8 = pic::IRQ_BASE;

bitflags::bitflags! {
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct IrqFlags: u32 {
        /// Run the handler with interrupts off (2.4's SA_INTERRUPT).
        const SA_INTERRUPT = 1 << 0;
    }
}

#[derive(Clone, Copy)]
struct Action {
    handler: fn(&mut TrapFrame),
    flags: IrqFlags,
}

static ACTIONS: RacyCell<[Option<Action>; 256]> = RacyCell::new([None; 256]);
static COUNTS: [AtomicU32; 256] = [const { AtomicU32::new(0) }; 256];
static SPURIOUS: AtomicU32 = AtomicU32::new(0);
/// What runs when the outermost handler is done (interrupts off): the
/// scheduler's preemption point, which `sched::init` registers
/// (`set_irq_exit`).  A function pointer, so that the interrupt layer
/// stays below the scheduler that uses it (request_irq, the IPIs); 2.4's
/// `ret_from_intr` jumps to `schedule` from entry.S, the glue above both.
static IRQ_EXIT: AtomicUsize = AtomicUsize::new(0);

/// Register the outermost interrupt exit's hook (the scheduler's
/// preemption point).
pub fn set_irq_exit(f: fn()) {
    IRQ_EXIT.store(f as usize, Ordering::SeqCst);
}

/// Bring up the PIC (all lines masked) and the local APIC.
pub fn init(apic_va: Option<u32>) {
    pic::init();
    dispatch::register_handler(apic::SPURIOUS_VECTOR, Some(spurious_apic));
    // IRQ 7 and 15 are where the 8259 reports spurious interrupts.
    for irq in [7u8, 15] {
        dispatch::register_handler(pic::IRQ_BASE + irq, Some(do_irq));
    }
    if let Some(va) = apic_va {
        apic::init(va);
    }
}

/// `request_irq`: route `vector` to `handler`.  A PIC vector is unmasked.
pub fn request_irq(vector: u8, handler: fn(&mut TrapFrame), flags: IrqFlags) {
    let _irq = cpu::irq_save();
    // SAFETY: interrupts are off, so no do_irq reads the slot meanwhile.
    unsafe { (*ACTIONS.get())[vector as usize] = Some(Action { handler, flags }) };
    dispatch::register_handler(vector, Some(do_irq));
    if let Some(irq) = pic_irq(vector) {
        pic::unmask(irq);
    }
}

/// `free_irq`.
pub fn free_irq(vector: u8) {
    let _irq = cpu::irq_save();
    if let Some(irq) = pic_irq(vector) {
        pic::mask(irq);
    }
    // SAFETY: as above.
    unsafe { (*ACTIONS.get())[vector as usize] = None };
    dispatch::register_handler(vector, None);
}

fn pic_irq(vector: u8) -> Option<u8> {
    (pic::IRQ_BASE..pic::IRQ_BASE + 16)
        .contains(&vector)
        .then(|| vector - pic::IRQ_BASE)
}

/// Interrupts being handled right now on this CPU (nesting depth).
pub fn depth() -> u32 {
    this_cpu().irq_depth.load(Ordering::SeqCst)
}

pub fn count(vector: u8) -> u32 {
    COUNTS[vector as usize].load(Ordering::Relaxed)
}

/// Spurious interrupts seen (PIC IRQ 7/15 not in service, APIC 0xFF,
/// vectors nobody requested): counted, never fatal.
pub fn spurious_count() -> u32 {
    SPURIOUS.load(Ordering::Relaxed) + dispatch::spurious_count()
}

fn spurious_apic(_: &mut TrapFrame) {
    SPURIOUS.fetch_add(1, Ordering::Relaxed);
}

/// Back to the nesting depth a recovery point was set at: the handlers
/// an oops abandoned mid-flight never came back through `do_irq`.
pub fn restore_depth(d: u32) {
    this_cpu().irq_depth.store(d, Ordering::SeqCst);
}

fn do_irq(frame: &mut TrapFrame) {
    let vector = frame.vector as u8;
    let pic = pic_irq(vector);
    // SAFETY: a copy of one slot; writers mask interrupts.
    let action = unsafe { (*ACTIONS.get())[vector as usize] };
    if let Some(irq) = pic {
        if (irq == 7 || irq == 15) && !pic::in_service(irq) {
            SPURIOUS.fetch_add(1, Ordering::Relaxed);
            if irq == 15 {
                pic::mask_and_ack(2); // the master saw the cascade
                pic::unmask(2);
            }
            return;
        }
        pic::mask_and_ack(irq);
    } else {
        apic::eoi();
    }
    let Some(action) = action else {
        SPURIOUS.fetch_add(1, Ordering::Relaxed);
        return;
    };
    COUNTS[vector as usize].fetch_add(1, Ordering::Relaxed);
    this_cpu().irq_depth.fetch_add(1, Ordering::SeqCst);
    if !action.flags.contains(IrqFlags::SA_INTERRUPT) {
        cpu::sti();
    }
    (action.handler)(frame);
    cpu::cli();
    let d = this_cpu().irq_depth.fetch_sub(1, Ordering::SeqCst) - 1;
    if let Some(irq) = pic {
        pic::unmask(irq);
    }
    // Leaving the outermost handler: the place to preempt (2.4 does it on
    // the way back to user mode; these are all kernel threads).
    if d == 0 {
        let f = IRQ_EXIT.load(Ordering::Relaxed);
        if f != 0 {
            // SAFETY: only `set_irq_exit` stores here, a `fn()`.
            let f: fn() = unsafe { core::mem::transmute::<usize, fn()>(f) };
            f();
        }
    }
}
